//! Fuzzes the command-line parser: arbitrary bytes are parsed as a command
//! line, and any command that parses must print back to a line that parses
//! to the same (key-redacted) command. See
//! `llm_integration_core::fuzzing::command_line`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    llm_integration_core::fuzzing::command_line(data)
});
