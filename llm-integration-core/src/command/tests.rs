use super::*;

#[test]
fn explore() {
    let k = "sk-test-SECRETVALUE-1234567890";
    let lines = [
        format!("integrations show llm --openai-key={k}"),
        format!("integrations show llm --openai-key {k}"),
        format!("integrations add llm --name x --openai-kee={k}"),
        format!("integrations add llm --name x --openai-keyy {k}"),
        format!("integrations add llm --name x --openai=byok --openai-key= {k}"),
        format!("integrations add llm --name x --openai={k}"),
        format!("integrations add llm --name x --openai=chatgpt --openai-account={k}"),
        format!("integrations add llm --name x --openai=byok --openai-key -{k}"),
        format!("integrations add llm --name x --openai=byok --openai-key={k} --help"),
        format!("integrations add llm --name x --openai=byok --openai-key={k} 'unclosed"),
        format!("integrations add llm --name x --openai=byok --openai-key={k} --anthropic=byok --anthropic-key={k}"),
        "integrations add llm --name x --comment=".to_string(),
        "integrations help add".to_string(),
        "help".to_string(),
        "integrations add llm -h".to_string(),
        "integrations edit llm --comment=".to_string(),
        "tag -d".to_string(),
        "integrations add llm".to_string(),
        "integrations add llm --name llm --openai-key=- --openai=byok --fireworks=byok --fireworks-key=-".to_string(),
    ];
    for l in lines {
        let r = parse_command_line(&l);
        println!("=== {l:?}\n{:#?}", r);
        if let Ok(Parsed::Command(c)) = &r {
            println!("DISPLAY {}", c);
            println!("REPARSE {:?}", parse_command_line(&c.to_string()));
        }
    }
}
