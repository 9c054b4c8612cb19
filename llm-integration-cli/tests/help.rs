//! Every command and subcommand of the `llm-integration` binary answers
//! `--help` and `-h` (exit 0, a text naming it). The commands are walked,
//! not listed: the command language from the core's grammar (its `help`
//! subcommands included), and the binary's own commands (`login`,
//! `completions`, `help`) from what its top-level help lists.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use llm_integration_core::command::grammar;

fn llm_integration(args: &[String]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_llm-integration"))
        .args(args)
        .env_remove("LLM_INTEGRATION_TOKEN")
        .env_remove("LLM_INTEGRATION_SERVER")
        .env("LLM_INTEGRATION_CLI_CONFIG", "/nonexistent/cli.toml")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every path of subcommands under `command`, depth first (not into a
/// `help` subcommand, whose own subcommands only name its siblings).
fn walk(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_owned());
        out.push(path.clone());
        if sub.get_name() != "help" {
            walk(sub, &path, out);
        }
    }
}

/// The command names a help text lists under `Commands:`.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_and_subcommand_answers_help() {
    let (code, top, stderr) = llm_integration(&["--help".into()]);
    assert_eq!(code, 0, "{stderr}");
    let listed = listed_commands(&top);

    // Built, the grammar has its `help` subcommands too.
    let mut language = grammar();
    language.build();
    let mut paths = Vec::new();
    walk(&language, &[], &mut paths);
    assert!(paths.len() > 10, "{paths:?}");
    for command in language.get_subcommands() {
        assert!(
            listed.iter().any(|l| l == command.get_name()),
            "the top-level help does not list {}:\n{top}",
            command.get_name()
        );
    }
    // The binary's own commands, from its help.
    for name in &listed {
        if !paths.iter().any(|p| p == std::slice::from_ref(name)) {
            paths.push(vec![name.clone()]);
        }
    }
    for own in ["login", "completions"] {
        assert!(listed.iter().any(|l| l == own), "{own} not listed:\n{top}");
    }

    for path in &paths {
        let named = format!("llm-integration {}", path.join(" "));
        for flag in ["--help", "-h"] {
            let mut args = path.clone();
            args.push(flag.into());
            let (code, stdout, stderr) = llm_integration(&args);
            assert_eq!(code, 0, "{args:?}: {stderr}");
            assert!(
                stdout.contains(&format!("Usage: {named}")),
                "{args:?} does not name the command:\n{stdout}"
            );
            assert!(stdout.ends_with('\n'), "{args:?}");
        }
        // `help PATH` shows the same page as `PATH --help`.
        let mut args = vec!["help".to_owned()];
        args.extend(path.iter().cloned());
        let (code, stdout, stderr) = llm_integration(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stdout.contains(&format!("Usage: {named}")),
            "{args:?}:\n{stdout}"
        );
    }

    // `help` lists what `--help` lists.
    let (code, help, _) = llm_integration(&["help".into()]);
    assert_eq!(code, 0);
    assert_eq!(listed_commands(&help), listed);
}

#[test]
fn help_comes_before_the_server_and_mistakes_are_usage_errors() {
    // No server, no token: help never needs them.
    let (code, stdout, _) = llm_integration(&["login".into(), "--help".into()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--token-file"), "{stdout}");
    let (code, stdout, _) = llm_integration(&["completions".into(), "--help".into()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("bash") && stdout.contains("zsh"),
        "{stdout}"
    );
    // Nothing at all: the top-level help, as a usage error.
    let (code, stdout, stderr) = llm_integration(&[]);
    assert_eq!(code, 2);
    assert!(
        stdout.is_empty() && stderr.contains("Usage: llm-integration"),
        "{stderr}"
    );
    for args in [
        vec!["login", "--bogus"],
        vec!["completions"],
        vec!["completions", "tcsh"],
        vec!["help", "nonsense"],
        vec!["nonsense"],
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (code, _, stderr) = llm_integration(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
}
