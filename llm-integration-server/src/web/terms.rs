//! The command language's words in the page's terms: a message of the
//! parser or the executor names flags (`--name`, `--openai-key`,
//! `'<SPEC>'`); the page shows it with the names of its fields (`Name`,
//! `OpenAI API key`, `Apply to`), the substance unchanged. Text between
//! backticks is a command to type elsewhere and is kept as written.

use llm_integration_core::Provider;

use super::pages::{provider_title, source_title};

/// `message` with each flag or placeholder the page has a field for
/// replaced by that field's label; flags without a field stay.
pub fn in_form_terms(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("`{part}`")
            } else {
                translate(part)
            }
        })
        .collect()
}

/// Instructions about standard input or `--flag=VALUE` syntax, which a
/// form has no use for, in the form's words.
fn phrases(text: &str) -> String {
    let mut out = text.to_owned();
    for p in Provider::ALL {
        let title = provider_title(p);
        for (from, to) in [
            (
                format!("add --{p}-key=KEY, or --{p}-key=- to read it from standard input"),
                format!("paste it in {title} API key"),
            ),
            (
                format!("add --{p}-url=https://HOST/v1"),
                format!("give the {title} endpoint URL"),
            ),
            (
                " (or 'Name: -' to read the value from standard input)".to_owned(),
                String::new(),
            ),
            (
                "; give 'Name: value', or 'Name: -' to read it from standard input".to_owned(),
                "; give the header's value".to_owned(),
            ),
        ] {
            out = out.replace(&from, &to);
        }
    }
    out
}

/// The field label for a flag (without `--`) and its value, if the page
/// has one.
fn flag_term(flag: &str, value: Option<&str>) -> Option<String> {
    let fixed = match flag {
        "name" => Some("Name"),
        "team" => Some("Owner"),
        "comment" => Some("Comment"),
        "fields" => Some("Fields"),
        "attach" => Some("Apply to"),
        "openai-account" => Some("ChatGPT account"),
        _ => None,
    };
    if let Some(term) = fixed {
        return Some(match (flag, value) {
            ("team", Some(team)) => format!("Owner Team {team}"),
            _ => term.to_owned(),
        });
    }
    for p in Provider::ALL {
        let title = provider_title(p);
        let Some(rest) = flag.strip_prefix(p.as_str()) else {
            continue;
        };
        return match rest {
            "" => Some(match value {
                Some(source) if source_title(source) != "no source" => {
                    format!("{title} source {}", source_title(source))
                }
                _ => title.to_owned(),
            }),
            "-key" => Some(format!("{title} API key")),
            "-url" => Some(format!("{title} endpoint URL")),
            "-header" => Some(format!("{title} header")),
            _ => None,
        };
    }
    None
}

/// The field label for a placeholder (`NAME` of `<NAME>`), if any.
fn placeholder_term(name: &str) -> Option<&'static str> {
    match name {
        "NAME" => Some("Name"),
        "NEW_NAME" => Some("New name"),
        "SPEC" => Some("Apply to"),
        "TEAM" => Some("Owner"),
        "ACCOUNT" => Some("ChatGPT account"),
        "FIELDS" => Some("Fields"),
        "COMMENT" => Some("Comment"),
        _ => None,
    }
}

/// A quoted argument of a parser message (`--name <NAME>`, `<SPEC>`) as
/// the field's label.
fn quoted_term(inner: &str) -> Option<String> {
    if let Some(flag) = inner.strip_prefix("--") {
        let flag = flag.split([' ', '=']).next().unwrap_or("");
        return flag_term(flag, None);
    }
    inner
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .and_then(placeholder_term)
        .map(str::to_owned)
}

fn translate(text: &str) -> String {
    let text = phrases(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(['\'', '-', '<', 'N']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // `'--name <NAME>'`, `'<SPEC>'`: the parser's quoted argument.
        if let Some(after) = rest.strip_prefix('\'') {
            if let Some(end) = after.find('\'') {
                if let Some(term) = quoted_term(&after[..end]) {
                    out.push_str(&term);
                    rest = &after[end + 1..];
                    continue;
                }
            }
        }
        // `--flag` or `--flag=value`.
        if let Some(after) = rest.strip_prefix("--") {
            let at_word_start = out
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '-');
            let flag_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .unwrap_or(after.len());
            let flag = after[..flag_len].trim_end_matches('-');
            let tail = &after[flag.len()..];
            let (value, consumed) = match tail.strip_prefix('=') {
                Some(v) => {
                    let n = v
                        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | ':'))
                        .unwrap_or(v.len());
                    (Some(&v[..n]), 1 + n)
                }
                // `--team eng` names the team after a space.
                None if flag == "team" => match tail.strip_prefix(' ') {
                    Some(v) if v.starts_with(|c: char| c.is_ascii_alphanumeric()) => {
                        let n = v
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                            .unwrap_or(v.len());
                        (Some(&v[..n]), 1 + n)
                    }
                    _ => (None, 0),
                },
                None => (None, 0),
            };
            if at_word_start {
                if let Some(term) = flag_term(flag, value) {
                    out.push_str(&term);
                    rest = &tail[consumed..];
                    continue;
                }
            }
        }
        // `<SPEC>` unquoted.
        if let Some(after) = rest.strip_prefix('<') {
            if let Some(end) = after.find('>') {
                if let Some(term) = placeholder_term(&after[..end]) {
                    out.push_str(term);
                    rest = &after[end + 1..];
                    continue;
                }
            }
        }
        // `NEW_NAME` as a word.
        if let Some(after) = rest.strip_prefix("NEW_NAME") {
            if !after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                out.push_str("New name");
                rest = after;
                continue;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::in_form_terms;

    #[test]
    fn flags_become_field_labels() {
        for (from, to) in [
            (
                "invalid value 'Bad Name!' for '--name <NAME>': integration names use a-z, 0-9 and -",
                "invalid value 'Bad Name!' for Name: integration names use a-z, 0-9 and -",
            ),
            (
                "invalid value 'tag:' for '<SPEC>': give the tag's name",
                "invalid value 'tag:' for Apply to: give the tag's name",
            ),
            (
                "an integration named llm already exists; pick another --name, or change it with `integrations edit llm --name x`",
                "an integration named llm already exists; pick another Name, or change it with `integrations edit llm --name x`",
            ),
            (
                "--openai=byok needs the key: add --openai-key=KEY, or --openai-key=- to read it from standard input",
                "OpenAI source API Key needs the key: paste it in OpenAI API key",
            ),
            (
                "--openai=chatgpt: team integrations (--team eng) cannot use a ChatGPT subscription; use --openai=gateway or --openai=byok",
                "OpenAI source ChatGPT subscription: team integrations (Owner Team eng) cannot use a ChatGPT subscription; use OpenAI source LLM gateway or OpenAI source API Key",
            ),
            (
                "rename: a already has that name; give a different NEW_NAME",
                "rename: a already has that name; give a different New name",
            ),
            (
                "--comment looks like it holds an API key",
                "Comment looks like it holds an API key",
            ),
            // Words that only look like flags stay.
            (
                "model gpt-5--mini and --verbose stay; sk-ant-x too",
                "model gpt-5--mini and --verbose stay; sk-ant-x too",
            ),
        ] {
            assert_eq!(in_form_terms(from), to, "{from}");
        }
    }
}
