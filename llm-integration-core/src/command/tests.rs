//! Tests of the command language: every command parses into the
//! expected typed [`Command`], bad input is refused with a message naming the
//! flag and the fix, help is help, keys never show, and every valid command
//! prints back as a line that parses to the same (redacted) command.

use super::*;
use crate::domain::ReflectionField;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A recognisable key used by the key-safety tests.
const KEY: &str = "sk-test-SECRETVALUE-1234567890";

fn name(s: &str) -> IntegrationName {
    s.parse().expect("valid integration name")
}

fn team(s: &str) -> TeamName {
    s.parse().expect("valid team name")
}

fn account(s: &str) -> AccountName {
    s.parse().expect("valid account name")
}

fn vm(s: &str) -> VmName {
    s.parse().expect("valid VM name")
}

fn tag(s: &str) -> TagName {
    s.parse().expect("valid tag")
}

fn spec(s: &str) -> AttachmentSpec {
    s.parse().expect("valid attachment spec")
}

fn fields(s: &str) -> ReflectionFields {
    s.parse().expect("valid reflection fields")
}

fn personal(s: &str) -> IntegrationRef {
    IntegrationRef {
        name: name(s),
        team: None,
    }
}

fn of_team(s: &str, t: &str) -> IntegrationRef {
    IntegrationRef {
        name: name(s),
        team: Some(team(t)),
    }
}

fn value_key(s: &str) -> KeyInput {
    KeyInput::Value(SecretString::from(s.to_owned()))
}

fn byok_value(s: &str) -> Option<SourceChoice> {
    Some(SourceChoice::Byok(Some(value_key(s))))
}

fn byok_stdin() -> Option<SourceChoice> {
    Some(SourceChoice::Byok(Some(KeyInput::Stdin)))
}

fn add_llm(n: &str) -> AddLlm {
    AddLlm {
        name: name(n),
        team: None,
        providers: ProviderChoices::default(),
        translate: None,
        comment: None,
        attach: Vec::new(),
    }
}

fn edit(target: IntegrationRef) -> Edit {
    Edit {
        target,
        providers: ProviderChoices::default(),
        translate: None,
        comment: None,
        fields: None,
    }
}

/// Parses `line`, expecting a command.
fn parse(line: &str) -> CommandLine {
    match parse_command_line(line) {
        Ok(Parsed::Command(c)) => c,
        Ok(Parsed::Help(h)) => panic!("{line:?}: expected a command, got help:\n{h}"),
        Err(e) => panic!("{line:?}: expected a command, got error: {}", e.message),
    }
}

/// Parses `line`, expecting a command without `--json`.
fn command(line: &str) -> Command {
    let parsed = parse(line);
    assert!(!parsed.json, "{line:?}: unexpected json");
    parsed.command
}

/// Parses `line`, expecting an error; returns its message.
fn error(line: &str) -> String {
    match parse_command_line(line) {
        Err(e) => {
            assert_eq!(e.to_string(), e.message, "Display of CommandError");
            e.message
        }
        Ok(other) => panic!("{line:?}: expected an error, got {other:?}"),
    }
}

/// Parses `line`, expecting help text.
fn help(line: &str) -> String {
    match parse_command_line(line) {
        Ok(Parsed::Help(h)) => h,
        other => panic!("{line:?}: expected help, got {other:?}"),
    }
}

/// Every 8-character window of `secret` (by chars).
fn windows8(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .collect()
}

/// Asserts that `text` holds neither `secret` nor any 8-character piece of it.
fn assert_no_secret(text: &str, secret: &str, context: &str) {
    assert!(
        !text.contains(secret),
        "{context}: the key appears in:\n{text}"
    );
    for w in windows8(secret) {
        assert!(
            !text.contains(&w),
            "{context}: the key fragment {w:?} appears in:\n{text}"
        );
    }
}

/// Flags that take no value (so `--json` may follow them).
const BOOLEAN_FLAGS: [&str; 6] = ["--json", "--list", "--verify", "--delete", "-d", "--help"];

// ---------------------------------------------------------------------------
// 1. Happy path: every command of the language
// ---------------------------------------------------------------------------

fn happy_cases() -> Vec<(&'static str, Command)> {
    vec![
        // list
        ("integrations list", Command::List),
        // show / remove
        ("integrations show llm", Command::Show(personal("llm"))),
        (
            "integrations show shared --team eng",
            Command::Show(of_team("shared", "eng")),
        ),
        (
            "integrations show shared --team=eng",
            Command::Show(of_team("shared", "eng")),
        ),
        (
            "integrations remove old-llm",
            Command::Remove(personal("old-llm")),
        ),
        (
            "integrations remove --team eng shared",
            Command::Remove(of_team("shared", "eng")),
        ),
        // rename
        (
            "integrations rename llm llm2",
            Command::Rename {
                target: personal("llm"),
                new_name: name("llm2"),
            },
        ),
        (
            "integrations rename shared shared-2 --team=eng",
            Command::Rename {
                target: of_team("shared", "eng"),
                new_name: name("shared-2"),
            },
        ),
        // attach / detach
        (
            "integrations attach chatgpt-llm vm:devbox",
            Command::Attach {
                target: personal("chatgpt-llm"),
                spec: AttachmentSpec::Vm(vm("devbox")),
            },
        ),
        (
            "integrations attach llm tag:gpu_box",
            Command::Attach {
                target: personal("llm"),
                spec: AttachmentSpec::Tag(tag("gpu_box")),
            },
        ),
        (
            "integrations attach llm auto:all --team eng",
            Command::Attach {
                target: of_team("llm", "eng"),
                spec: AttachmentSpec::AutoAll,
            },
        ),
        (
            "integrations detach llm tag:llm",
            Command::Detach {
                target: personal("llm"),
                spec: AttachmentSpec::Tag(tag("llm")),
            },
        ),
        (
            "integrations detach --team=eng llm vm:ci-1",
            Command::Detach {
                target: of_team("llm", "eng"),
                spec: AttachmentSpec::Vm(vm("ci-1")),
            },
        ),
        // test
        (
            "integrations test llm",
            Command::Test {
                target: personal("llm"),
                provider: None,
            },
        ),
        (
            "integrations test llm --provider anthropic",
            Command::Test {
                target: personal("llm"),
                provider: Some(Provider::Anthropic),
            },
        ),
        (
            "integrations test llm --provider=openai --team eng",
            Command::Test {
                target: of_team("llm", "eng"),
                provider: Some(Provider::OpenAi),
            },
        ),
        (
            "integrations test llm --provider fireworks",
            Command::Test {
                target: personal("llm"),
                provider: Some(Provider::Fireworks),
            },
        ),
        // setup chatgpt
        (
            "integrations setup chatgpt --name work",
            Command::SetupChatgpt(ChatgptSetup::Connect(account("work"))),
        ),
        (
            "integrations setup chatgpt --name=home-2",
            Command::SetupChatgpt(ChatgptSetup::Connect(account("home-2"))),
        ),
        (
            "integrations setup chatgpt --list",
            Command::SetupChatgpt(ChatgptSetup::List),
        ),
        (
            "integrations setup chatgpt --verify",
            Command::SetupChatgpt(ChatgptSetup::Verify),
        ),
        (
            "integrations setup chatgpt --name work --delete",
            Command::SetupChatgpt(ChatgptSetup::Delete(account("work"))),
        ),
        (
            "integrations setup chatgpt --delete --name=work",
            Command::SetupChatgpt(ChatgptSetup::Delete(account("work"))),
        ),
        // login-link
        ("login-link", Command::LoginLink),
        // tag
        (
            "tag devbox llm gpu",
            Command::Tag {
                delete: false,
                vm: vm("devbox"),
                tags: vec![tag("llm"), tag("gpu")],
            },
        ),
        (
            "tag devbox gpu_box 0",
            Command::Tag {
                delete: false,
                vm: vm("devbox"),
                tags: vec![tag("gpu_box"), tag("0")],
            },
        ),
        (
            "tag -d devbox gpu",
            Command::Tag {
                delete: true,
                vm: vm("devbox"),
                tags: vec![tag("gpu")],
            },
        ),
        (
            "tag --delete devbox gpu llm",
            Command::Tag {
                delete: true,
                vm: vm("devbox"),
                tags: vec![tag("gpu"), tag("llm")],
            },
        ),
        (
            "tag devbox -d gpu",
            Command::Tag {
                delete: true,
                vm: vm("devbox"),
                tags: vec![tag("gpu")],
            },
        ),
        // add llm
        ("integrations add llm --name x", Command::AddLlm(add_llm("x"))),
        (
            "integrations add llm --name eng-llm --team eng --anthropic=gateway --openai byok \
             --openai-key=- --fireworks disabled --comment 'two words' \
             --attach vm:devbox --attach=tag:gpu --attach vm:devbox",
            Command::AddLlm(AddLlm {
                name: name("eng-llm"),
                team: Some(team("eng")),
                providers: ProviderChoices {
                    anthropic: Some(SourceChoice::Gateway),
                    openai: byok_stdin(),
                    fireworks: Some(SourceChoice::Disabled),
                },
                translate: None,
                comment: Some("two words".into()),
                // duplicates dropped, order kept
                attach: vec![spec("vm:devbox"), spec("tag:gpu")],
            }),
        ),
        (
            "integrations add llm --name a --anthropic=byok --anthropic-key sk-ant-xyz",
            Command::AddLlm(AddLlm {
                providers: ProviderChoices {
                    anthropic: byok_value("sk-ant-xyz"),
                    ..ProviderChoices::default()
                },
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --name a --fireworks=byok --fireworks-key=fw_abc --openai=byok --openai-key=-",
            Command::AddLlm(AddLlm {
                providers: ProviderChoices {
                    anthropic: None,
                    openai: byok_stdin(),
                    fireworks: byok_value("fw_abc"),
                },
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --name a --openai=chatgpt --openai-account work",
            Command::AddLlm(AddLlm {
                providers: ProviderChoices {
                    openai: Some(SourceChoice::Chatgpt(account("work"))),
                    ..ProviderChoices::default()
                },
                ..add_llm("a")
            }),
        ),
        (
            r#"integrations add llm --name a --comment "say \"hi\" it's ok""#,
            Command::AddLlm(AddLlm {
                comment: Some(r#"say "hi" it's ok"#.into()),
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --name a --comment='héllo wörld 🦀 日本'",
            Command::AddLlm(AddLlm {
                comment: Some("héllo wörld 🦀 日本".into()),
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --name a --comment ''",
            Command::AddLlm(AddLlm {
                comment: Some(String::new()),
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --name a --translate=off",
            Command::AddLlm(AddLlm {
                translate: Some(Switch::Off),
                ..add_llm("a")
            }),
        ),
        (
            "integrations add llm --comment=--not-a-flag --name a",
            Command::AddLlm(AddLlm {
                comment: Some("--not-a-flag".into()),
                ..add_llm("a")
            }),
        ),
        // add reflection
        (
            "integrations add reflection --name r",
            Command::AddReflection(AddReflection {
                name: name("r"),
                team: None,
                fields: ReflectionFields::ALL,
                comment: None,
                attach: Vec::new(),
            }),
        ),
        (
            "integrations add reflection --name r --fields 'tags, email' --team eng \
             --comment 'who am i' --attach auto:all --attach auto:all",
            Command::AddReflection(AddReflection {
                name: name("r"),
                team: Some(team("eng")),
                fields: [ReflectionField::Email, ReflectionField::Tags]
                    .into_iter()
                    .collect(),
                comment: Some("who am i".into()),
                attach: vec![AttachmentSpec::AutoAll],
            }),
        ),
        (
            "integrations add reflection --name r --fields=default_port",
            Command::AddReflection(AddReflection {
                name: name("r"),
                team: None,
                fields: [ReflectionField::DefaultPort].into_iter().collect(),
                comment: None,
                attach: Vec::new(),
            }),
        ),
        // edit
        (
            "integrations edit llm --openai=byok",
            Command::Edit(Edit {
                providers: ProviderChoices {
                    openai: Some(SourceChoice::Byok(None)),
                    ..ProviderChoices::default()
                },
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations edit llm --translate on",
            Command::Edit(Edit {
                translate: Some(Switch::On),
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations edit llm --comment ''",
            Command::Edit(Edit {
                comment: Some(String::new()),
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations edit reflection --fields email --comment 'just email'",
            Command::Edit(Edit {
                fields: Some(fields("email")),
                comment: Some("just email".into()),
                ..edit(personal("reflection"))
            }),
        ),
        (
            "integrations edit llm --openai=chatgpt --openai-account=work --fireworks gateway",
            Command::Edit(Edit {
                providers: ProviderChoices {
                    openai: Some(SourceChoice::Chatgpt(account("work"))),
                    fireworks: Some(SourceChoice::Gateway),
                    ..ProviderChoices::default()
                },
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations edit shared --team eng --fireworks=byok --fireworks-key=- --anthropic=disabled",
            Command::Edit(Edit {
                providers: ProviderChoices {
                    anthropic: Some(SourceChoice::Disabled),
                    openai: None,
                    fireworks: byok_stdin(),
                },
                ..edit(of_team("shared", "eng"))
            }),
        ),
    ]
}

#[test]
fn every_command_parses_into_its_typed_form() {
    for (line, expected) in happy_cases() {
        assert_eq!(
            parse(line),
            CommandLine {
                command: expected,
                json: false
            },
            "{line}"
        );
    }
}

#[test]
fn json_is_accepted_anywhere() {
    for (line, expected) in happy_cases() {
        let words = shell_words::split(line).expect("splits");
        let mut positions = 0;
        for i in 0..=words.len() {
            // Not between a flag and its value.
            if i > 0 {
                let prev = &words[i - 1];
                if prev.starts_with('-')
                    && !prev.contains('=')
                    && !BOOLEAN_FLAGS.contains(&prev.as_str())
                {
                    continue;
                }
            }
            let mut with_json = words.clone();
            with_json.insert(i, "--json".into());
            let joined = shell_words::join(&with_json);
            assert_eq!(
                parse(&joined),
                CommandLine {
                    command: expected.clone(),
                    json: true
                },
                "{joined}"
            );
            positions += 1;
        }
        // At least: first, after the first word, and last (a one-word
        // command has two positions in all).
        let wanted = (words.len() + 1).min(3);
        assert!(
            positions >= wanted,
            "{line}: only {positions} positions tried"
        );
    }
}

#[test]
fn json_given_twice_is_an_error_naming_it() {
    let msg = error("integrations list --json --json");
    assert!(msg.contains("--json"), "{msg}");
}

#[test]
fn equals_and_space_forms_are_the_same() {
    let pairs = [
        (
            "integrations add llm --name=a --openai=byok --openai-key=- --team=eng --comment=hi --attach=tag:x",
            "integrations add llm --name a --openai byok --openai-key - --team eng --comment hi --attach tag:x",
        ),
        (
            "integrations add llm --name=a --openai=chatgpt --openai-account=work",
            "integrations add llm --name a --openai chatgpt --openai-account work",
        ),
        (
            "integrations add reflection --name=r --fields=email,tags --attach=auto:all",
            "integrations add reflection --name r --fields email,tags --attach auto:all",
        ),
        (
            "integrations edit llm --anthropic=byok --anthropic-key=sk-1234",
            "integrations edit llm --anthropic byok --anthropic-key sk-1234",
        ),
        (
            "integrations test llm --provider=openai --team=eng",
            "integrations test llm --provider openai --team eng",
        ),
        (
            "integrations setup chatgpt --name=work --delete",
            "integrations setup chatgpt --name work --delete",
        ),
        (
            "integrations show llm --team=eng",
            "integrations show llm --team eng",
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(parse(a), parse(b), "{a}  vs  {b}");
    }
}

#[test]
fn flag_order_does_not_matter() {
    let a = parse(
        "integrations add llm --attach tag:llm --fireworks=disabled --anthropic=disabled \
         --openai-key=- --openai=byok --name openai-key",
    );
    let b = parse(
        "integrations add llm --name openai-key --openai=byok --openai-key=- \
         --anthropic=disabled --fireworks=disabled --attach tag:llm",
    );
    assert_eq!(a, b);
}

#[test]
fn quoting_styles_give_the_same_comment() {
    for line in [
        "integrations edit llm --comment 'two words'",
        "integrations edit llm --comment \"two words\"",
        "integrations edit llm --comment two\\ words",
        "integrations edit llm '--comment=two words'",
        "integrations edit llm --comment=two' 'words",
    ] {
        assert_eq!(
            command(line),
            Command::Edit(Edit {
                comment: Some("two words".into()),
                ..edit(personal("llm"))
            }),
            "{line}"
        );
    }
}

#[test]
fn comment_limit_is_in_characters() {
    let exactly = "é".repeat(MAX_COMMENT_CHARS);
    let line = shell_words::join(["integrations", "edit", "llm", "--comment", &exactly]);
    assert_eq!(
        command(&line),
        Command::Edit(Edit {
            comment: Some(exactly.clone()),
            ..edit(personal("llm"))
        })
    );
    let too_long = format!("{exactly}é");
    let line = shell_words::join(["integrations", "edit", "llm", "--comment", &too_long]);
    let msg = error(&line);
    assert!(msg.contains("--comment is 501 characters long"), "{msg}");
}

#[test]
fn a_key_shaped_comment_is_refused_everywhere_a_comment_goes() {
    for line in [
        "integrations add llm --name a --comment 'my key sk-ant-api03-AAAAAAAAAAAAAAAAAAAA'",
        "integrations add reflection --name r --comment fw_ZZZZZZZZZZZZZZZZZZZZ",
        "integrations edit llm --comment=sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let msg = error(line);
        assert!(
            msg.contains("--comment looks like it holds an API key or token"),
            "{line}: {msg}"
        );
        assert!(
            msg.contains("VMs can read comments through reflection"),
            "{msg}"
        );
        assert!(
            !msg.contains("AAAAAAAA") && !msg.contains("ZZZZZZZZ"),
            "the key is not echoed: {msg}"
        );
    }
    // Model names and short prefixes are not keys.
    for comment in ["gpt-5.5 for sk-x tests", "uses fw_ and sk- prefixes"] {
        let line = shell_words::join(["integrations", "edit", "llm", "--comment", comment]);
        assert_eq!(
            command(&line),
            Command::Edit(Edit {
                comment: Some(comment.into()),
                ..edit(personal("llm"))
            })
        );
    }
}

#[test]
fn name_boundaries() {
    let longest = "a".repeat(63);
    assert_eq!(
        command(&format!("integrations show {longest}")),
        Command::Show(personal(&longest))
    );
    for ok in ["a", "0", "a-b", "9lives", "x--y"] {
        assert_eq!(
            command(&format!("integrations remove {ok}")),
            Command::Remove(personal(ok)),
            "{ok}"
        );
    }
}

#[test]
fn shell_comment_is_ignored() {
    assert_eq!(command("integrations list # show them all"), Command::List);
}

// ---------------------------------------------------------------------------
// 2. The seed's exact lines
// ---------------------------------------------------------------------------

#[test]
fn seed_lines_parse() {
    let cases: Vec<(&str, Command)> = vec![
        (
            "integrations add llm --name llm --attach auto:all",
            Command::AddLlm(AddLlm {
                attach: vec![AttachmentSpec::AutoAll],
                ..add_llm("llm")
            }),
        ),
        (
            "integrations add llm --name openai-key --openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach tag:llm",
            Command::AddLlm(AddLlm {
                providers: ProviderChoices {
                    anthropic: Some(SourceChoice::Disabled),
                    openai: byok_stdin(),
                    fireworks: Some(SourceChoice::Disabled),
                },
                attach: vec![AttachmentSpec::Tag(tag("llm"))],
                ..add_llm("openai-key")
            }),
        ),
        (
            "integrations edit llm --anthropic=byok --anthropic-key=-",
            Command::Edit(Edit {
                providers: ProviderChoices {
                    anthropic: byok_stdin(),
                    ..ProviderChoices::default()
                },
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations edit llm --openai=disabled",
            Command::Edit(Edit {
                providers: ProviderChoices {
                    openai: Some(SourceChoice::Disabled),
                    ..ProviderChoices::default()
                },
                ..edit(personal("llm"))
            }),
        ),
        (
            "integrations add llm --name chatgpt-llm --openai=chatgpt --openai-account=work --anthropic=disabled --fireworks=disabled --attach auto:all",
            Command::AddLlm(AddLlm {
                providers: ProviderChoices {
                    anthropic: Some(SourceChoice::Disabled),
                    openai: Some(SourceChoice::Chatgpt(account("work"))),
                    fireworks: Some(SourceChoice::Disabled),
                },
                attach: vec![AttachmentSpec::AutoAll],
                ..add_llm("chatgpt-llm")
            }),
        ),
        (
            "integrations add reflection --name reflection --fields all --attach auto:all",
            Command::AddReflection(AddReflection {
                name: name("reflection"),
                team: None,
                fields: ReflectionFields::ALL,
                comment: None,
                attach: vec![AttachmentSpec::AutoAll],
            }),
        ),
        (
            "integrations attach chatgpt-llm vm:devbox",
            Command::Attach {
                target: personal("chatgpt-llm"),
                spec: AttachmentSpec::Vm(vm("devbox")),
            },
        ),
    ];
    for (line, expected) in cases {
        let parsed = parse(line);
        assert_eq!(parsed.command, expected, "{line}");
        assert!(!parsed.json, "{line}");
        // Every seed line also prints back to itself, modulo canonical form.
        assert_eq!(
            command(&parsed.command.to_string()),
            expected.redacted(),
            "{line}"
        );
    }
}

#[test]
fn seed_lines_read_stdin_exactly_when_a_key_is_dash() {
    let stdin = [
        "integrations add llm --name openai-key --openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach tag:llm",
        "integrations edit llm --anthropic=byok --anthropic-key=-",
    ];
    for line in stdin {
        assert!(command(line).reads_stdin(), "{line}");
    }
    let no_stdin = [
        "integrations add llm --name llm --attach auto:all",
        "integrations edit llm --openai=disabled",
        "integrations edit llm --openai=byok",
        "integrations edit llm --openai=byok --openai-key=sk-abc",
        "integrations add llm --name chatgpt-llm --openai=chatgpt --openai-account=work --anthropic=disabled --fireworks=disabled --attach auto:all",
        "integrations add reflection --name reflection --fields all --attach auto:all",
        "integrations attach chatgpt-llm vm:devbox",
    ];
    for line in no_stdin {
        assert!(!command(line).reads_stdin(), "{line}");
    }
}

// ---------------------------------------------------------------------------
// 3. Bad input: the message names the flag or value and the fix
// ---------------------------------------------------------------------------

#[test]
fn bad_input_names_the_problem_and_the_fix() {
    let long_name = "a".repeat(64);
    let long_comment = "x".repeat(MAX_COMMENT_CHARS + 1);
    let cases: Vec<(String, Vec<&str>)> = vec![
        // unknown flags and subcommands
        (
            "integrations list --bogus".into(),
            vec!["'--bogus'", "Usage: integrations list", "--help"],
        ),
        (
            "integrations add llm --name x --commnet hi".into(),
            vec!["'--commnet'", "a similar argument exists: '--comment'"],
        ),
        (
            "integrations frob".into(),
            vec!["unrecognized subcommand 'frob'", "Usage: integrations", "--help"],
        ),
        (
            "frob".into(),
            vec!["unrecognized subcommand 'frob'", "--help"],
        ),
        (
            "integrations add proxy --name x".into(),
            vec!["'proxy'", "Usage: integrations add", "--help"],
        ),
        (
            "integrations show llm extra".into(),
            vec!["unexpected argument 'extra'", "Usage: integrations show"],
        ),
        (
            "integrations edit llm --translate=maybe".into(),
            vec!["'maybe'", "--translate", "on, off"],
        ),
        (
            "integrations edit reflection --fields email --translate off".into(),
            vec!["--fields applies to reflection integrations", "--translate"],
        ),
        // bad names
        (
            "integrations show LLM".into(),
            vec!["'LLM'", "<NAME>", "uppercase", "use lowercase"],
        ),
        (
            "integrations add llm --name a.b".into(),
            vec!["'a.b'", "--name <NAME>", "'.'", "use only lowercase letters, digits and '-'"],
        ),
        (
            "integrations show a_b".into(),
            vec!["'a_b'", "'_'", "use only lowercase letters, digits and '-'"],
        ),
        (
            format!("integrations add reflection --name {long_name}"),
            vec!["--name <NAME>", "64 characters long", "the limit is 63"],
        ),
        (
            "integrations add llm --name=-llm".into(),
            vec!["'-llm'", "--name <NAME>", "starts or ends with '-'"],
        ),
        (
            "integrations rename llm llm-".into(),
            vec!["'llm-'", "<NEW_NAME>", "starts or ends with '-'"],
        ),
        (
            "integrations show llm --team Eng".into(),
            vec!["'Eng'", "--team <TEAM>", "use lowercase"],
        ),
        (
            "tag Devbox gpu".into(),
            vec!["'Devbox'", "<VM>", "use lowercase"],
        ),
        (
            "tag devbox gpu.box".into(),
            vec!["'gpu.box'", "<TAGS>", "use only lowercase letters, digits, '-' and '_'"],
        ),
        // bad attachment specs
        (
            "integrations attach llm devbox".into(),
            vec!["'devbox'", "<SPEC>", "no ':'", "use vm:NAME, tag:NAME or auto:all"],
        ),
        (
            "integrations add llm --name x --attach host:x".into(),
            vec!["--attach <SPEC>", "\"host\" is not an attachment kind", "use vm:NAME, tag:NAME or auto:all"],
        ),
        (
            "integrations detach llm auto:some".into(),
            vec!["'auto:some'", "the only automatic attachment is auto:all"],
        ),
        (
            "integrations add reflection --name r --attach vm:BAD".into(),
            vec!["'vm:BAD'", "--attach <SPEC>", "use lowercase", "use vm:NAME, tag:NAME or auto:all"],
        ),
        // sources
        (
            "integrations add llm --name x --openai=apikey".into(),
            vec!["'apikey'", "--openai <SRC>", "use gateway, byok, chatgpt, custom or disabled"],
        ),
        (
            "integrations edit llm --fireworks=Gateway".into(),
            vec!["'Gateway'", "--fireworks <SRC>", "use gateway, byok, chatgpt, custom or disabled"],
        ),
        (
            "integrations add llm --name x --anthropic=chatgpt".into(),
            vec!["--anthropic=chatgpt", "only be the openai source", "use gateway, byok, custom or disabled for anthropic"],
        ),
        (
            "integrations edit llm --fireworks=chatgpt --openai-account=work".into(),
            vec!["--fireworks=chatgpt", "use gateway, byok, custom or disabled for fireworks"],
        ),
        (
            "integrations add llm --name x --team eng --openai=chatgpt --openai-account=work".into(),
            vec!["--openai=chatgpt", "--team eng", "use --openai=gateway or --openai=byok"],
        ),
        (
            "integrations edit shared --team eng --openai=chatgpt --openai-account=work".into(),
            vec!["--openai=chatgpt", "--team eng", "use --openai=gateway or --openai=byok"],
        ),
        (
            "integrations add llm --name x --openai=chatgpt".into(),
            vec!["--openai=chatgpt needs --openai-account=ACCOUNT", "integrations setup chatgpt --name ACCOUNT"],
        ),
        (
            "integrations add llm --name x --openai-account=work".into(),
            vec!["--openai-account is only used with --openai=chatgpt", "add --openai=chatgpt or remove --openai-account"],
        ),
        (
            "integrations edit llm --openai=byok --openai-account=work".into(),
            vec!["--openai-account is only used with --openai=chatgpt", "add --openai=chatgpt or remove --openai-account"],
        ),
        (
            "integrations add llm --name x --openai=chatgpt --openai-account=Work".into(),
            vec!["'Work'", "--openai-account <ACCOUNT>", "use lowercase"],
        ),
        // keys
        (
            "integrations add llm --name x --anthropic-key=sk-abc".into(),
            vec!["--anthropic-key is only used with --anthropic=byok", "add --anthropic=byok or remove --anthropic-key"],
        ),
        (
            "integrations edit llm --openai=gateway --openai-key=-".into(),
            vec!["--openai-key", "not --openai=gateway", "use --openai=byok or remove --openai-key"],
        ),
        (
            "integrations edit llm --fireworks=disabled --fireworks-key=fw-1".into(),
            vec!["--fireworks-key", "not --fireworks=disabled", "use --fireworks=byok or remove --fireworks-key"],
        ),
        (
            "integrations add llm --name x --openai=chatgpt --openai-account=work --openai-key=-".into(),
            vec!["--openai-key", "not --openai=chatgpt", "use --openai=byok or remove --openai-key"],
        ),
        (
            "integrations add llm --name x --fireworks=byok".into(),
            vec!["--fireworks=byok needs the key", "--fireworks-key=KEY", "--fireworks-key=- to read it from standard input"],
        ),
        (
            "integrations add llm --name x --openai=byok --openai-key=".into(),
            vec!["--openai-key is empty", "give the key, or - to read it from standard input"],
        ),
        (
            "integrations edit llm --anthropic=byok --anthropic-key ''".into(),
            vec!["--anthropic-key is empty", "give the key, or - to read it from standard input"],
        ),
        (
            "integrations add llm --name x --openai=byok --openai-key".into(),
            vec!["a value is required for '--openai-key <KEY|->'", "--help"],
        ),
        (
            "integrations add llm --name x --openai=byok --openai-key=a --openai-key=b".into(),
            vec!["'--openai-key <KEY|->' cannot be used multiple times", "Usage: integrations add llm"],
        ),
        // edit
        (
            "integrations edit llm".into(),
            vec!["edit llm: nothing to change", "--anthropic, --openai, --fireworks, --translate, --comment or --fields", "integrations edit --help"],
        ),
        (
            "integrations edit llm --team eng".into(),
            vec!["edit llm: nothing to change", "--comment"],
        ),
        (
            "integrations edit r --fields email --openai=disabled".into(),
            vec!["--fields", "provider flags", "give one or the other"],
        ),
        // comments
        (
            format!("integrations add llm --name x --comment {long_comment}"),
            vec!["--comment is 501 characters long", "the limit is 500"],
        ),
        (
            "integrations add llm --name x --comment 'line one\nline two'".into(),
            vec!["--comment contains a control character", "use one line of text"],
        ),
        (
            "integrations edit llm --comment 'tab\there'".into(),
            vec!["--comment contains a control character", "use one line of text"],
        ),
        (
            format!("integrations add reflection --name r --comment {long_comment}"),
            vec!["--comment is 501 characters long", "the limit is 500"],
        ),
        // shell quoting
        (
            "integrations add llm --name x --comment 'unclosed".into(),
            vec!["cannot split the command line", "close every quote"],
        ),
        (
            "integrations add llm --name x --comment \"unclosed".into(),
            vec!["cannot split the command line", "close every quote"],
        ),
        // setup chatgpt
        (
            "integrations setup chatgpt".into(),
            vec!["setup chatgpt", "give --name ACCOUNT to connect an account", "--list", "--verify", "--name ACCOUNT --delete"],
        ),
        (
            "integrations setup chatgpt --list --name work".into(),
            vec!["'--list' cannot be used with '--name <ACCOUNT>'", "Usage: integrations setup chatgpt"],
        ),
        (
            "integrations setup chatgpt --list --verify".into(),
            vec!["'--list' cannot be used with '--verify'", "Usage: integrations setup chatgpt"],
        ),
        (
            "integrations setup chatgpt --verify --name work".into(),
            vec!["'--verify' cannot be used with '--name <ACCOUNT>'", "Usage: integrations setup chatgpt"],
        ),
        (
            "integrations setup chatgpt --delete".into(),
            vec!["--name <ACCOUNT>", "Usage: integrations setup chatgpt --name <ACCOUNT> --delete"],
        ),
        (
            "integrations setup chatgpt --name Work".into(),
            vec!["'Work'", "--name <ACCOUNT>", "use lowercase"],
        ),
        (
            "integrations setup claude --name work".into(),
            vec!["'claude'", "Usage: integrations setup"],
        ),
        // tag
        (
            "tag devbox".into(),
            vec!["<TAGS>", "Usage: tag <VM> <TAGS>..."],
        ),
        (
            "tag -d devbox".into(),
            vec!["<TAGS>", "Usage: tag --delete <VM> <TAGS>..."],
        ),
        // rename
        (
            "integrations rename llm llm".into(),
            vec!["rename: llm already has that name", "give a different NEW_NAME"],
        ),
        // reflection fields
        (
            "integrations add reflection --name r --fields email,phone".into(),
            vec!["--fields <all|LIST>", "\"phone\"", "use all or a comma-separated list of email, integrations, tags, comment, default_port"],
        ),
        (
            "integrations edit r --fields ''".into(),
            vec!["--fields <all|LIST>", "use all or a comma-separated list"],
        ),
        // test --provider
        (
            "integrations test llm --provider google".into(),
            vec!["'google'", "--provider <PROVIDER>", "use anthropic, openai or fireworks"],
        ),
        (
            "integrations test llm --provider OpenAI".into(),
            vec!["'OpenAI'", "--provider <PROVIDER>", "use anthropic, openai or fireworks"],
        ),
        // missing required things
        (
            "integrations add llm".into(),
            vec!["--name <NAME>", "Usage: integrations add llm --name <NAME>"],
        ),
        (
            "integrations show".into(),
            vec!["<NAME>", "Usage: integrations show <NAME>"],
        ),
        (
            "integrations attach llm".into(),
            vec!["<SPEC>", "Usage: integrations attach"],
        ),
        (
            "integrations add llm --name a --name b".into(),
            vec!["'--name <NAME>' cannot be used multiple times"],
        ),
        // --json does not rescue a bad line
        (
            "integrations list --json --bogus".into(),
            vec!["'--bogus'"],
        ),
    ];
    assert!(cases.len() >= 25);
    for (line, needles) in &cases {
        let msg = error(line);
        assert!(!msg.trim().is_empty(), "{line:?}: empty message");
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{line:?}: message lacks {needle:?}:\n{msg}"
            );
        }
    }
}

#[test]
fn leading_dash_positional_name_is_refused() {
    // clap reads `-llm` as short flags; the line is refused either way and
    // clap says how to pass it as a value.
    let msg = error("integrations show -llm");
    assert!(msg.contains("'-l'"), "{msg}");
    assert!(msg.contains("'-- -l'"), "{msg}");
    // Passed as a value, the name rule itself refuses it.
    let msg = error("integrations show -- -llm");
    assert!(msg.contains("'-llm'"), "{msg}");
    assert!(msg.contains("starts or ends with '-'"), "{msg}");
}

#[test]
fn validation_messages_are_exact() {
    // Messages produced by the validation layer (not clap) are whole
    // sentences with no clap decoration.
    let cases = [
        (
            "integrations add llm --name x --anthropic=chatgpt",
            "--anthropic=chatgpt: a ChatGPT subscription can only be the openai source; use gateway, byok, custom or disabled for anthropic",
        ),
        (
            "integrations add llm --name x --openai=chatgpt",
            "--openai=chatgpt needs --openai-account=ACCOUNT; connect an account first with `integrations setup chatgpt --name ACCOUNT`",
        ),
        (
            "integrations add llm --name x --team eng --openai=chatgpt --openai-account=w",
            "--openai=chatgpt: team integrations (--team eng) cannot use a ChatGPT subscription; use --openai=gateway or --openai=byok",
        ),
        (
            "integrations edit llm --openai-key=abc",
            "--openai-key is only used with --openai=byok or --openai=custom; add --openai=byok or remove --openai-key",
        ),
        (
            "integrations edit llm --openai=gateway --openai-key=abc",
            "--openai-key is only used with --openai=byok or --openai=custom, not --openai=gateway; use --openai=byok or remove --openai-key",
        ),
        (
            "integrations add llm --name x --anthropic=byok",
            "--anthropic=byok needs the key: add --anthropic-key=KEY, or --anthropic-key=- to read it from standard input",
        ),
        (
            "integrations rename a a",
            "rename: a already has that name; give a different NEW_NAME",
        ),
        (
            "integrations edit llm",
            "edit llm: nothing to change; give --anthropic, --openai, --fireworks, --translate, --comment or --fields (see `integrations edit --help`)",
        ),
        (
            "integrations setup chatgpt",
            "setup chatgpt: give --name ACCOUNT to connect an account, --list, --verify, or --name ACCOUNT --delete",
        ),
        (
            "integrations show 'x",
            "cannot split the command line: missing closing quote; close every quote",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(error(line), expected, "{line}");
    }
}

#[test]
fn errors_are_reported_in_provider_order() {
    // anthropic is checked before openai before fireworks, so the first
    // offending provider in that order is the one named.
    let msg = error("integrations add llm --name x --fireworks=chatgpt --anthropic=byok");
    assert!(msg.starts_with("--anthropic=byok needs the key"), "{msg}");
}

#[test]
fn parse_args_agrees_with_parse_command_line() {
    let lines = [
        "integrations add llm --name x --openai=byok --openai-key=sk-abc --comment 'a b'",
        "tag -d devbox gpu",
        "integrations setup chatgpt --list --json",
        "integrations edit llm",
        "integrations add llm --name x --openai=chatgpt",
        "integrations --help",
        "",
    ];
    for line in lines {
        let args = shell_words::split(line).expect("splits");
        assert_eq!(parse_args(args), parse_command_line(line), "{line}");
    }
}

#[test]
fn arbitrary_text_never_panics() {
    for line in [
        "\u{0}",
        "integrations \u{0} list",
        "integrations add llm --name \u{7f}",
        "''",
        "\"\"",
        "--",
        "-- integrations list",
        "integrations -- list",
        "tag -- devbox gpu",
        "integrations add llm --name x --comment=\u{200b}",
        "\\",
        "integrations add llm --name x --openai-key=- --openai-key=- --openai=byok",
        "integrations edit llm --openai=byok --openai-key -",
    ] {
        let _ = parse_command_line(line);
    }
}

// ---------------------------------------------------------------------------
// 4. Help
// ---------------------------------------------------------------------------

#[test]
fn help_on_every_command_lists_its_flags() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("--help", vec!["integrations", "tag", "--json"]),
        ("-h", vec!["integrations", "tag"]),
        ("help", vec!["integrations", "tag"]),
        ("", vec!["Usage:", "integrations", "tag"]),
        (
            "integrations --help",
            vec![
                "list", "add", "edit", "show", "remove", "rename", "attach", "detach", "setup",
                "test",
            ],
        ),
        ("integrations", vec!["list", "add", "edit", "setup"]),
        ("integrations help", vec!["list", "add", "edit"]),
        (
            "integrations list --help",
            vec!["--json", "Usage: integrations list"],
        ),
        ("integrations add --help", vec!["llm", "reflection"]),
        ("integrations help add", vec!["llm", "reflection"]),
        ("integrations add", vec!["llm", "reflection"]),
        (
            "integrations add llm --help",
            vec![
                "--name",
                "--anthropic",
                "--openai",
                "--fireworks",
                "--anthropic-key",
                "--openai-key",
                "--fireworks-key",
                "--openai-account",
                "--team",
                "--comment",
                "--attach",
                "gateway",
                "byok",
                "chatgpt",
                "disabled",
                "auto:all",
                "--json",
            ],
        ),
        (
            "integrations add llm -h",
            vec!["--openai-key", "--openai-account"],
        ),
        (
            "integrations add reflection --help",
            vec![
                "--name",
                "--fields",
                "--team",
                "--comment",
                "--attach",
                "email",
                "default_port",
            ],
        ),
        (
            "integrations edit --help",
            vec![
                "<NAME>",
                "--team",
                "--anthropic",
                "--openai",
                "--fireworks",
                "--anthropic-key",
                "--openai-key",
                "--fireworks-key",
                "--openai-account",
                "--comment",
                "--fields",
            ],
        ),
        (
            "integrations show --help",
            vec!["<NAME>", "--team", "--json"],
        ),
        ("integrations remove --help", vec!["<NAME>", "--team"]),
        (
            "integrations rename --help",
            vec!["<NAME>", "<NEW_NAME>", "--team"],
        ),
        (
            "integrations attach --help",
            vec!["<NAME>", "<SPEC>", "--team", "vm:devbox", "auto:all"],
        ),
        (
            "integrations detach --help",
            vec!["<NAME>", "<SPEC>", "--team"],
        ),
        (
            "integrations test --help",
            vec!["<NAME>", "--provider", "--team"],
        ),
        ("integrations setup --help", vec!["chatgpt"]),
        ("integrations setup", vec!["chatgpt"]),
        (
            "integrations setup chatgpt --help",
            vec!["--name", "--list", "--verify", "--delete"],
        ),
        ("tag --help", vec!["-d", "--delete", "<VM>", "<TAGS>"]),
        ("help tag", vec!["-d", "<VM>", "<TAGS>"]),
        // --help wins over the arguments after it, even invalid ones.
        ("integrations add llm --help --name X", vec!["--openai-key"]),
        ("integrations edit llm --json --help", vec!["--fields"]),
    ];
    for (line, needles) in cases {
        let text = help(line);
        for needle in needles {
            assert!(
                text.contains(needle),
                "{line:?}: help lacks {needle:?}:\n{text}"
            );
        }
    }
}

#[test]
fn grammar_is_consistent() {
    let mut g = grammar();
    g.clone().debug_assert();
    let rendered = g.render_long_help().to_string();
    assert!(rendered.contains("integrations"), "{rendered}");
    let integrations = g
        .find_subcommand_mut("integrations")
        .expect("integrations subcommand");
    for sub in [
        "list", "add", "edit", "show", "remove", "rename", "attach", "detach", "setup", "test",
    ] {
        assert!(
            integrations.find_subcommand(sub).is_some(),
            "missing subcommand {sub}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Key safety
// ---------------------------------------------------------------------------

#[test]
fn parsed_keys_never_show_in_debug_or_display() {
    let lines = [
        format!("integrations add llm --name x --openai=byok --openai-key={KEY}"),
        format!("integrations add llm --name x --openai=byok --openai-key {KEY}"),
        format!("integrations add llm --name x --anthropic=byok '--anthropic-key={KEY}' --comment 'a key'"),
        format!("integrations add llm --name x --fireworks-key=\"{KEY}\" --fireworks=byok --team eng"),
        format!("integrations edit llm --openai=byok --openai-key={KEY} --anthropic=byok --anthropic-key=-"),
        format!("integrations edit llm --fireworks=byok --fireworks-key {KEY} --json"),
    ];
    for line in &lines {
        let parsed = match parse_command_line(line) {
            Ok(Parsed::Command(c)) => c,
            other => panic!("{line}: {other:?}"),
        };
        let Parsed::Command(again) = parse_command_line(line).expect("parses") else {
            unreachable!()
        };
        assert_eq!(parsed, again);
        // The key itself is kept for the executor.
        let providers = match &parsed.command {
            Command::AddLlm(a) => &a.providers,
            Command::Edit(e) => &e.providers,
            other => panic!("{other:?}"),
        };
        let held = Provider::ALL.iter().any(|p| {
            matches!(providers.get(*p), Some(SourceChoice::Byok(Some(k))) if *k == value_key(KEY))
        });
        assert!(held, "{line}: the key was not kept");

        for (what, text) in [
            ("Debug", format!("{parsed:?}")),
            ("pretty Debug", format!("{parsed:#?}")),
            ("Debug of Command", format!("{:?}", parsed.command)),
            ("Display", parsed.to_string()),
            ("Display of Command", parsed.command.to_string()),
            ("to_args", parsed.command.to_args().join(" ")),
            (
                "Debug of redacted",
                format!("{:?}", parsed.command.redacted()),
            ),
            ("Display of redacted", parsed.command.redacted().to_string()),
        ] {
            assert_no_secret(&text, KEY, &format!("{line}: {what}"));
        }
    }
}

#[test]
fn display_prints_keys_as_dash() {
    let cmd = command(&format!(
        "integrations add llm --name x --openai=byok --openai-key={KEY}"
    ));
    let shown = cmd.to_string();
    assert!(shown.contains("--openai-key=-"), "{shown}");
    assert_eq!(
        cmd.to_args(),
        [
            "integrations",
            "add",
            "llm",
            "--name=x",
            "--openai=byok",
            "--openai-key=-"
        ]
    );
    let cmd = command(&format!(
        "integrations edit llm --anthropic=byok --anthropic-key {KEY} --fireworks=byok"
    ));
    assert_eq!(
        cmd.to_args(),
        [
            "integrations",
            "edit",
            "llm",
            "--anthropic=byok",
            "--anthropic-key=-",
            "--fireworks=byok"
        ]
    );
}

#[test]
fn key_debug_is_redacted() {
    assert_eq!(format!("{:?}", value_key(KEY)), "Value([REDACTED])");
    assert_eq!(format!("{:?}", KeyInput::Stdin), "Stdin");
    assert_eq!(value_key(KEY), value_key(KEY));
    assert_ne!(value_key(KEY), value_key("other"));
    assert_ne!(value_key("-"), KeyInput::Stdin);
}

#[test]
fn errors_beside_a_key_never_show_it() {
    let lines = [
        // key with a source that takes none
        format!("integrations add llm --name x --openai=gateway --openai-key={KEY}"),
        format!("integrations edit llm --openai=disabled --openai-key {KEY}"),
        format!("integrations add llm --name x --openai=chatgpt --openai-account=w --openai-key={KEY}"),
        // key without a source
        format!("integrations edit llm --anthropic-key={KEY}"),
        // unknown flags beside a key, both forms, before and after
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --bogus"),
        format!("integrations add llm --name x --openai=byok --openai-key {KEY} --bogus"),
        format!("integrations add llm --bogus --name x --openai=byok --openai-key {KEY}"),
        format!("integrations add llm --name x --openai-kee={KEY}"),
        format!("integrations add llm --name x --openai-keyy {KEY}"),
        // a key flag on a command that has none
        format!("integrations show llm --openai-key={KEY}"),
        format!("integrations show llm --openai-key {KEY}"),
        format!("tag devbox gpu --fireworks-key={KEY}"),
        // other invalid values beside a key
        format!("integrations add llm --name X --openai=byok --openai-key {KEY}"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --attach vm:BAD"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --anthropic=wat"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --anthropic=chatgpt"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --fireworks=byok"),
        format!("integrations add llm --name x --team eng --openai=chatgpt --openai-account=w --anthropic=byok --anthropic-key={KEY}"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --openai-account=w"),
        format!("integrations edit r --fields email --openai=byok --openai-key={KEY}"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --comment 'a\nb'"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --comment {}", "c".repeat(600)),
        // the key given twice, to the same or to two flags
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --openai-key={KEY}"),
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --name y"),
        // positional junk after a key
        format!("integrations add llm --name x --openai=byok --openai-key {KEY} extra"),
        // an unclosed quote
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} 'oops"),
        format!("integrations add llm --name x --openai=byok \"--openai-key={KEY}"),
        // a key starting with a dash
        format!("integrations add llm --name x --openai=byok --openai-key -{KEY}"),
    ];
    for line in &lines {
        let msg = error(line);
        assert_no_secret(&msg, KEY, line);
        assert_no_secret(&format!("{:?}", parse_command_line(line)), KEY, line);
    }
}

#[test]
fn help_beside_a_key_never_shows_it() {
    for line in [
        format!("integrations add llm --name x --openai=byok --openai-key={KEY} --help"),
        format!("integrations edit llm --anthropic-key {KEY} -h"),
    ] {
        let text = help(&line);
        assert!(text.contains("--openai-key"), "{text}");
        assert_no_secret(&text, KEY, &line);
    }
}

#[test]
fn redacted_replaces_only_key_values() {
    let cmd = command(&format!(
        "integrations add llm --name x --anthropic=byok --anthropic-key={KEY} --openai=chatgpt \
         --openai-account=work --fireworks=disabled --comment hi --attach auto:all"
    ));
    let Command::AddLlm(add) = cmd.redacted() else {
        panic!("not AddLlm")
    };
    assert_eq!(add.providers.anthropic, byok_stdin());
    assert_eq!(
        add.providers.openai,
        Some(SourceChoice::Chatgpt(account("work")))
    );
    assert_eq!(add.providers.fireworks, Some(SourceChoice::Disabled));
    assert_eq!(add.comment.as_deref(), Some("hi"));
    assert_eq!(add.attach, vec![AttachmentSpec::AutoAll]);
    // Commands without keys are unchanged.
    for (line, _) in happy_cases() {
        let c = command(line);
        if !format!("{c:?}").contains("Value(") {
            assert_eq!(c.redacted(), c, "{line}");
        }
    }
}

// ---------------------------------------------------------------------------
// Other accessors
// ---------------------------------------------------------------------------

#[test]
fn read_only_commands() {
    let read_only = [
        "integrations list",
        "integrations show llm",
        "integrations test llm --provider openai",
        "integrations setup chatgpt --list",
        "integrations setup chatgpt --verify",
    ];
    for line in read_only {
        assert!(command(line).is_read_only(), "{line}");
    }
    let writes = [
        "integrations add llm --name x",
        "integrations add reflection --name r",
        "integrations edit llm --comment x",
        "integrations remove llm",
        "integrations rename llm x",
        "integrations attach llm auto:all",
        "integrations detach llm auto:all",
        "integrations setup chatgpt --name work",
        "integrations setup chatgpt --name work --delete",
        "tag devbox gpu",
        "tag -d devbox gpu",
    ];
    for line in writes {
        assert!(!command(line).is_read_only(), "{line}");
    }
}

#[test]
fn provider_choices_accessors() {
    let Command::AddLlm(add) = command(
        "integrations add llm --name x --anthropic=gateway --openai=byok --openai-key=- \
         --fireworks=disabled",
    ) else {
        panic!("not AddLlm")
    };
    let p = &add.providers;
    assert!(!p.is_empty());
    assert!(p.reads_stdin());
    assert_eq!(p.get(Provider::Anthropic), Some(&SourceChoice::Gateway));
    assert_eq!(
        p.get(Provider::OpenAi).map(SourceChoice::kind),
        Some(SourceKind::Byok)
    );
    assert_eq!(
        p.get(Provider::Fireworks).map(SourceChoice::kind),
        Some(SourceKind::Disabled)
    );
    assert_eq!(
        SourceChoice::Chatgpt(account("w")).kind(),
        SourceKind::Chatgpt
    );
    assert_eq!(SourceChoice::Byok(None).kind(), SourceKind::Byok);
    assert!(ProviderChoices::default().is_empty());
    assert!(!ProviderChoices::default().reads_stdin());
}

#[test]
fn canonical_lines_are_stable() {
    let cases = [
        ("integrations list", "integrations list"),
        (
            "integrations show llm --team eng",
            "integrations show llm --team=eng",
        ),
        (
            "integrations add llm --attach auto:all --name llm",
            "integrations add llm --name=llm --attach=auto:all",
        ),
        (
            "integrations add reflection --name r",
            "integrations add reflection --name=r --fields=all",
        ),
        (
            "integrations edit llm --comment \"it's\"",
            "integrations edit llm '--comment=it'\\''s'",
        ),
        (
            "integrations setup chatgpt --delete --name w",
            "integrations setup chatgpt --name=w --delete",
        ),
        ("tag -d devbox gpu", "tag -d devbox gpu"),
        (
            "integrations test llm --provider openai",
            "integrations test llm --provider=openai",
        ),
    ];
    for (line, canonical) in cases {
        let parsed = parse(line);
        assert_eq!(parsed.command.to_string(), canonical, "{line}");
        let with_json = CommandLine {
            command: parsed.command.clone(),
            json: true,
        };
        assert_eq!(with_json.to_string(), format!("{canonical} --json"));
        assert_eq!(command(canonical), parsed.command, "{canonical}");
    }
}

// ---------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------

/// A command holding two keys given on the command line prints both keys
/// as `-`; several `-` keys are read one line each from standard input, so
/// the printed line parses back.
#[test]
fn two_key_values_round_trip() {
    let cmd = command(
        "integrations add llm --name x --openai=byok --openai-key=sk-one \
         --anthropic=byok --anthropic-key=sk-two",
    );
    let shown = cmd.to_string();
    assert_eq!(
        parse_command_line(&shown).map_err(|e| e.message),
        Ok(Parsed::Command(CommandLine {
            command: cmd.redacted(),
            json: false
        })),
        "{shown}"
    );
}

/// A key given to the wrong flag, or separated from `--P-key=` by a space,
/// is never echoed in the error message: no error message ever contains a
/// key.
#[test]
fn misplaced_key_is_not_echoed() {
    for line in [
        format!("integrations add llm --name x --openai=byok --openai-key= {KEY}"),
        format!("integrations add llm --name x --openai={KEY}"),
        format!("integrations add llm --name x --openai=chatgpt --openai-account={KEY}"),
    ] {
        assert_no_secret(&error(&line), KEY, &line);
    }
}

// ---------------------------------------------------------------------------
// 6. Round trip (property tests)
// ---------------------------------------------------------------------------

mod round_trip {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::strategy::Union;

    /// A DNS label: `[a-z0-9-]{1,63}`, no leading or trailing `-`.
    fn label() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z][a-z0-9]{0,7}",
            2 => "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            1 => "[a-z0-9]{63}",
        ]
    }

    /// A tag: as a label, with `_` allowed.
    fn tag_label() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_][a-z0-9_]{0,7}",
            2 => "[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?",
        ]
    }

    fn integration_name() -> impl Strategy<Value = IntegrationName> {
        label().prop_map(|s| IntegrationName::new(s).expect("valid"))
    }

    fn team_name() -> impl Strategy<Value = TeamName> {
        label().prop_map(|s| TeamName::new(s).expect("valid"))
    }

    fn account_name() -> impl Strategy<Value = AccountName> {
        label().prop_map(|s| AccountName::new(s).expect("valid"))
    }

    fn vm_name() -> impl Strategy<Value = VmName> {
        label().prop_map(|s| VmName::new(s).expect("valid"))
    }

    fn tag_name() -> impl Strategy<Value = TagName> {
        tag_label().prop_map(|s| TagName::new(s).expect("valid"))
    }

    fn attachment() -> impl Strategy<Value = AttachmentSpec> {
        prop_oneof![
            Just(AttachmentSpec::AutoAll),
            vm_name().prop_map(AttachmentSpec::Vm),
            tag_name().prop_map(AttachmentSpec::Tag),
        ]
    }

    fn attachments() -> impl Strategy<Value = Vec<AttachmentSpec>> {
        vec(attachment(), 0..5).prop_map(|specs| {
            let mut out: Vec<AttachmentSpec> = Vec::new();
            for s in specs {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            out
        })
    }

    fn comment_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            3 => Just(' '),
            2 => select(vec![
                '\'', '"', '\\', '#', '$', '=', '-', '`', '!', '*', '?', '~', ';', '&', '|',
                '(', ')', '{', '}', '[', ']', '<', '>', '%', ',', ':', 'é', 'ß', '日', '🦀',
                '\u{a0}', '\u{2028}', '\u{200b}', '\u{feff}',
            ]),
            1 => any::<char>().prop_filter("one line", |c| !c.is_control()),
        ]
    }

    fn comment_text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => vec(comment_char(), 0..40),
            1 => vec(comment_char(), MAX_COMMENT_CHARS - 3..=MAX_COMMENT_CHARS),
        ]
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn comment() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(comment_text())
    }

    fn reflection_fields() -> impl Strategy<Value = ReflectionFields> {
        vec(select(ReflectionField::ALL.to_vec()), 1..=5)
            .prop_map(|fs| fs.into_iter().collect::<ReflectionFields>())
    }

    /// A key: from standard input, or a value.
    fn key_input() -> impl Strategy<Value = KeyInput> {
        prop_oneof![
            Just(KeyInput::Stdin),
            "sk-[A-Za-z0-9_]{16,40}".prop_map(|k| KeyInput::Value(SecretString::from(k))),
            // Keys can hold anything but be empty or exactly "-".
            "[!-~]{2,30}".prop_map(|k| KeyInput::Value(SecretString::from(k))),
        ]
    }

    /// One provider's choice. `may_key`: this provider may carry a key
    /// (at most one provider does; see `two_key_values_round_trip`).
    fn choice(
        provider: Provider,
        adding: bool,
        personal: bool,
        may_key: bool,
    ) -> BoxedStrategy<Option<SourceChoice>> {
        let mut options: Vec<BoxedStrategy<Option<SourceChoice>>> = vec![
            Just(None).boxed(),
            Just(Some(SourceChoice::Gateway)).boxed(),
            Just(Some(SourceChoice::Disabled)).boxed(),
        ];
        if may_key {
            options.push(
                key_input()
                    .prop_map(|k| Some(SourceChoice::Byok(Some(k))))
                    .boxed(),
            );
        }
        if !adding {
            // edit keeps the stored key when none is given
            options.push(Just(Some(SourceChoice::Byok(None))).boxed());
        }
        if provider == Provider::OpenAi && personal {
            options.push(
                account_name()
                    .prop_map(|a| Some(SourceChoice::Chatgpt(a)))
                    .boxed(),
            );
        }
        Union::new(options).boxed()
    }

    fn providers(adding: bool, personal: bool) -> impl Strategy<Value = ProviderChoices> {
        // 0..3: which provider may carry a key; 3: none.
        (0usize..4).prop_flat_map(move |key_slot| {
            (
                choice(Provider::Anthropic, adding, personal, key_slot == 0),
                choice(Provider::OpenAi, adding, personal, key_slot == 1),
                choice(Provider::Fireworks, adding, personal, key_slot == 2),
            )
                .prop_map(|(anthropic, openai, fireworks)| ProviderChoices {
                    anthropic,
                    openai,
                    fireworks,
                })
        })
    }

    fn integration_ref() -> impl Strategy<Value = IntegrationRef> {
        (integration_name(), proptest::option::of(team_name()))
            .prop_map(|(name, team)| IntegrationRef { name, team })
    }

    fn switch() -> impl Strategy<Value = Switch> {
        prop_oneof![Just(Switch::On), Just(Switch::Off)]
    }

    fn add_llm() -> impl Strategy<Value = Command> {
        (integration_name(), proptest::option::of(team_name())).prop_flat_map(|(name, team)| {
            let personal = team.is_none();
            (
                providers(true, personal),
                comment(),
                attachments(),
                proptest::option::of(switch()),
            )
                .prop_map(move |(providers, comment, attach, translate)| {
                    Command::AddLlm(AddLlm {
                        name: name.clone(),
                        team: team.clone(),
                        providers,
                        translate,
                        comment,
                        attach,
                    })
                })
        })
    }

    fn add_reflection() -> impl Strategy<Value = Command> {
        (
            integration_name(),
            proptest::option::of(team_name()),
            reflection_fields(),
            comment(),
            attachments(),
        )
            .prop_map(|(name, team, fields, comment, attach)| {
                Command::AddReflection(AddReflection {
                    name,
                    team,
                    fields,
                    comment,
                    attach,
                })
            })
    }

    fn edit() -> impl Strategy<Value = Command> {
        integration_ref().prop_flat_map(|target| {
            let personal = target.team.is_none();
            let shape = prop_oneof![
                (
                    providers(false, personal).prop_filter("a provider flag", |p| !p.is_empty()),
                    comment(),
                    proptest::option::of(switch()),
                )
                    .prop_map(|(p, c, t)| (p, t, c, None)),
                (reflection_fields(), comment()).prop_map(|(f, c)| (
                    ProviderChoices::default(),
                    None,
                    c,
                    Some(f)
                )),
                comment_text().prop_map(|c| (ProviderChoices::default(), None, Some(c), None)),
                switch().prop_map(|t| (ProviderChoices::default(), Some(t), None, None)),
            ];
            shape.prop_map(move |(providers, translate, comment, fields)| {
                Command::Edit(Edit {
                    target: target.clone(),
                    providers,
                    translate,
                    comment,
                    fields,
                })
            })
        })
    }

    fn setup() -> impl Strategy<Value = Command> {
        prop_oneof![
            account_name().prop_map(ChatgptSetup::Connect),
            Just(ChatgptSetup::List),
            Just(ChatgptSetup::Verify),
            account_name().prop_map(ChatgptSetup::Delete),
        ]
        .prop_map(Command::SetupChatgpt)
    }

    pub(super) fn any_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            Just(Command::List),
            integration_ref().prop_map(Command::Show),
            add_llm(),
            add_reflection(),
            edit(),
            integration_ref().prop_map(Command::Remove),
            (integration_ref(), integration_name())
                .prop_filter("a different name", |(r, n)| r.name != *n)
                .prop_map(|(target, new_name)| Command::Rename { target, new_name }),
            (integration_ref(), attachment())
                .prop_map(|(target, spec)| Command::Attach { target, spec }),
            (integration_ref(), attachment())
                .prop_map(|(target, spec)| Command::Detach { target, spec }),
            (
                integration_ref(),
                proptest::option::of(select(Provider::ALL.to_vec()))
            )
                .prop_map(|(target, provider)| Command::Test { target, provider }),
            setup(),
            (any::<bool>(), vm_name(), vec(tag_name(), 1..5))
                .prop_map(|(delete, vm, tags)| Command::Tag { delete, vm, tags }),
        ]
    }

    fn key_values(cmd: &Command) -> Vec<String> {
        let providers = match cmd {
            Command::AddLlm(a) => &a.providers,
            Command::Edit(e) => &e.providers,
            _ => return Vec::new(),
        };
        Provider::ALL
            .iter()
            .filter_map(|p| match providers.get(*p) {
                Some(SourceChoice::Byok(Some(KeyInput::Value(k)))) => {
                    Some(k.expose_secret().to_owned())
                }
                _ => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn display_parses_back_to_the_redacted_command(cmd in any_command()) {
            let line = cmd.to_string();
            let parsed = parse_command_line(&line).map_err(|e| e.message);
            prop_assert_eq!(
                parsed,
                Ok(Parsed::Command(CommandLine { command: cmd.redacted(), json: false })),
                "line: {}", line
            );
            // The canonical arguments, as a CLI would receive them, agree.
            let from_args = parse_args(cmd.to_args()).map_err(|e| e.message);
            prop_assert_eq!(
                from_args,
                Ok(Parsed::Command(CommandLine { command: cmd.redacted(), json: false }))
            );
            // Printing is idempotent once redacted.
            prop_assert_eq!(cmd.redacted().to_string(), line.clone());
            prop_assert_eq!(cmd.redacted().redacted(), cmd.redacted());
        }

        #[test]
        fn command_line_display_keeps_json(cmd in any_command(), json in any::<bool>()) {
            let line = CommandLine { command: cmd.clone(), json };
            let text = line.to_string();
            prop_assert_eq!(text.ends_with(" --json"), json);
            let parsed = parse_command_line(&text).map_err(|e| e.message);
            prop_assert_eq!(
                parsed,
                Ok(Parsed::Command(CommandLine { command: cmd.redacted(), json })),
                "line: {}", text
            );
        }

        #[test]
        fn keys_never_print(cmd in any_command()) {
            for key in key_values(&cmd) {
                let shown = cmd.to_string();
                let debug = format!("{cmd:?}");
                // A key of a few characters ("an", "RE") is found in the
                // command's own words; from 8 on, finding it means a leak.
                if key.len() >= 8 {
                    prop_assert!(!shown.contains(&key), "Display shows the key: {}", shown);
                    prop_assert!(!debug.contains(&key), "Debug shows the key: {}", debug);
                }
                prop_assert!(shown.contains("-key=-"), "{}", shown);
            }
            // A command reads stdin after redaction exactly when it holds a key.
            let holds_key = !key_values(&cmd).is_empty() || cmd.reads_stdin();
            prop_assert_eq!(cmd.redacted().reads_stdin(), holds_key);
        }

        #[test]
        fn errors_beside_a_key_never_show_it(
            key in "sk-[A-Za-z0-9]{20,40}",
            provider in select(Provider::ALL.to_vec()),
            equals in any::<bool>(),
            before in any::<bool>(),
            junk in select(vec![
                "--bogus",
                "--name=Bad",
                "--attach=nope",
                "--attach vm:Bad",
                "--anthropic=wat",
                "--openai=gateway",
                "--fireworks=chatgpt",
                "--team=eng --openai=chatgpt --openai-account=w",
                "--openai-account=w",
                "--comment='a\nb'",
                "--fields=all",
                "extra",
                "'unclosed",
                "--help",
                "--json --json",
            ]),
        ) {
            let key_flag = if equals {
                format!("--{provider}-key={key}")
            } else {
                format!("--{provider}-key {key}")
            };
            let body = format!("--{provider}=byok {key_flag}");
            let line = if before {
                format!("integrations add llm {junk} --name x {body}")
            } else {
                format!("integrations add llm --name x {body} {junk}")
            };
            let outcome = parse_command_line(&line);
            let text = match &outcome {
                Ok(Parsed::Help(h)) => h.clone(),
                Ok(Parsed::Command(c)) => format!("{c:?} {c}"),
                Err(e) => e.message.clone(),
            };
            for w in windows8(&key) {
                prop_assert!(!text.contains(&w), "{:?} shows {:?}:\n{}", line, w, text);
            }
        }

        #[test]
        fn random_word_soup_never_panics_and_round_trips(
            words in vec(select(vec![
                "integrations", "list", "show", "add", "llm", "reflection", "edit", "remove",
                "rename", "attach", "detach", "setup", "chatgpt", "test", "tag", "-d", "--json",
                "--name", "--name=x", "--team=eng", "--anthropic=byok", "--openai=chatgpt",
                "--openai-account=w", "--fireworks=disabled", "--openai-key=-", "--anthropic-key=sk-abc",
                "--comment", "'a b'", "--fields=email", "--attach=auto:all", "vm:devbox", "--list",
                "--verify", "--delete", "--provider=openai", "x", "y", "gpu", "Bad", "'", "--",
            ]), 0..10),
        ) {
            let line = words.join(" ");
            if let Ok(Parsed::Command(parsed)) = parse_command_line(&line) {
                prop_assume!(key_values(&parsed.command).len() + usize::from(parsed.command.reads_stdin()) <= 1);
                let again = parse_command_line(&parsed.to_string()).map_err(|e| e.message);
                prop_assert_eq!(
                    again,
                    Ok(Parsed::Command(CommandLine {
                        command: parsed.command.redacted(),
                        json: parsed.json
                    })),
                    "line: {}", line
                );
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(line in any::<String>()) {
            let _ = parse_command_line(&line);
        }
    }
}

// ---------------------------------------------------------------------------
// ssh-key
// ---------------------------------------------------------------------------

const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAC39l57VUEyfVFcE9UCuAjat7IPjLzWpqm9opwtTp1X alice@laptop";

fn ssh_key_command(line: &str) -> Result<SshKeyCommand, String> {
    match parse_command_line(line).map_err(|e| e.message)? {
        Parsed::Command(CommandLine {
            command: Command::SshKey(k),
            ..
        }) => Ok(k),
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn ssh_key_commands_parse_quoted_or_as_words_and_print_back() {
    let quoted = ssh_key_command(&format!("ssh-key add '{SSH_KEY}'")).unwrap();
    assert_eq!(quoted, SshKeyCommand::Add(SSH_KEY.into()));
    // Over `ssh HOST ssh-key add $(cat key.pub)` the quotes are gone.
    assert_eq!(
        ssh_key_command(&format!("ssh-key add {SSH_KEY}")).unwrap(),
        quoted
    );
    let command = Command::SshKey(quoted);
    assert_eq!(
        parse_command_line(&command.to_string()).unwrap(),
        Parsed::Command(CommandLine {
            command,
            json: false
        })
    );
    assert_eq!(
        ssh_key_command("ssh-key list").unwrap(),
        SshKeyCommand::List
    );
    let fingerprint = "SHA256:DfSpoLwW/2hWfwo0b74OmUmLwcU6Z7QjBGDskPBdTzU";
    assert_eq!(
        ssh_key_command(&format!("ssh-key remove {fingerprint}")).unwrap(),
        SshKeyCommand::Remove(fingerprint.into())
    );
    assert!(Command::SshKey(SshKeyCommand::List).is_read_only());
    assert!(!Command::SshKey(SshKeyCommand::Remove(fingerprint.into())).is_read_only());
}

#[test]
fn ssh_key_mistakes_are_refused_with_the_fix() {
    for (line, expect) in [
        ("ssh-key add", "KEY"),
        ("ssh-key add notakey", "not a public key line"),
        ("ssh-key add 'ssh-ed25519 AAAA$$$'", "not a public key line"),
        (
            "ssh-key add '-----BEGIN OPENSSH PRIVATE KEY----- b3Bl'",
            "that is a private key",
        ),
        ("ssh-key add 'ssh-ed25519 AAAA\nx'", "newline"),
        ("ssh-key remove MD5:aa:bb", "SHA256:"),
        ("ssh-key remove", "FINGERPRINT"),
    ] {
        let err = ssh_key_command(line).unwrap_err();
        assert!(err.contains(expect), "{line:?}: {err}");
    }
    let long = format!(
        "ssh-key add 'ssh-ed25519 {}'",
        "A".repeat(MAX_SSH_KEY_BYTES)
    );
    assert!(ssh_key_command(&long).unwrap_err().contains("at most"));
}

// ---------------------------------------------------------------------------
// Custom endpoints
// ---------------------------------------------------------------------------

#[test]
fn custom_sources_parse_with_their_url_and_authentication() {
    let Command::AddLlm(add) = command(
        "integrations add llm --name local --openai=custom --openai-url=https://models.example.com/v1/ --openai-key=-",
    ) else {
        panic!("not add llm");
    };
    let Some(SourceChoice::Custom {
        url: Some(url),
        auth: Some(auth),
    }) = &add.providers.openai
    else {
        panic!("{:?}", add.providers.openai);
    };
    assert_eq!(url.as_str(), "https://models.example.com/v1");
    assert_eq!(auth, &EndpointAuthInput::Bearer(KeyInput::Stdin));
    assert_eq!(add.providers.stdin_providers(), vec![Provider::OpenAi]);

    let Command::Edit(edit) = command(&format!(
        "integrations edit local --anthropic=custom --anthropic-url=https://gw.example.com --anthropic-header='X-Team-Key: {KEY}'"
    )) else {
        panic!("not edit");
    };
    let Some(SourceChoice::Custom {
        auth: Some(EndpointAuthInput::Header { name, value }),
        ..
    }) = &edit.providers.anthropic
    else {
        panic!("{:?}", edit.providers.anthropic);
    };
    assert_eq!(name, "x-team-key");
    assert_eq!(value, &value_key(KEY));
    // Printed, the value is never shown, and the line parses back.
    let printed = Command::Edit(edit.clone()).to_string();
    assert!(!printed.contains(KEY), "{printed}");
    assert!(
        printed.contains("'--anthropic-header=x-team-key: -'"),
        "{printed}"
    );
    assert_eq!(command(&printed), Command::Edit(edit).redacted());

    // On edit the URL may be left out (the stored one is kept).
    let Command::Edit(edit) =
        command("integrations edit local --fireworks=custom --fireworks-key=-")
    else {
        panic!("not edit");
    };
    assert!(matches!(
        edit.providers.fireworks,
        Some(SourceChoice::Custom {
            url: None,
            auth: Some(_)
        })
    ));
}

#[test]
fn custom_source_mistakes_name_the_flag_and_the_fix() {
    for (line, says) in [
        ("integrations add llm --name x --openai=custom", "--openai=custom needs the endpoint: add --openai-url="),
        ("integrations add llm --name x --openai-url=https://m.example.com", "--openai-url is only used with --openai=custom"),
        ("integrations add llm --name x --openai=byok --openai-key=k --openai-header='a: b'", "--openai-header is only used with --openai=custom"),
        ("integrations add llm --name x --openai=custom --openai-url=ftp://m.example.com", "--openai-url: invalid endpoint URL"),
        ("integrations add llm --name x --openai=custom --openai-url=https://u:p@m.example.com", "credentials do not belong in the URL"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-key=k --openai-header='a: b'", "not both"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-header=nocolon", "'Name: value'"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-header='x-key:'", "has no value"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-header='Host: evil'", "set by the gateway itself"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-header='Authorization: Bearer x'", "--openai-key"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-header='bad name: x'", "not a header name"),
        ("integrations add llm --name x --openai=custom --openai-url=https://m.example.com --openai-key=", "--openai-key is empty"),
        ("integrations add llm --name x --openai=gateway --openai-key=k", "--openai=byok or --openai=custom"),
    ] {
        let message = error(line);
        assert!(message.contains(says), "{line}: {message}");
        assert!(!message.contains(KEY));
    }
}

/// A key-shaped value is not echoed even when only a part of its argument
/// is quoted; a long ordinary name is echoed as typed.
#[test]
fn key_shaped_parts_are_redacted_and_names_are_not() {
    let line = "integrations attach llm tag:sk-ant-api03-SecretKeyValue0123456789";
    let msg = error(line);
    assert!(!msg.contains("SecretKeyValue"), "{msg}");
    let long = "an-ordinary-but-rather-long-integration-name-";
    let msg = error(&format!("integrations add llm --name {long}"));
    assert!(msg.contains(long), "{msg}");
}
