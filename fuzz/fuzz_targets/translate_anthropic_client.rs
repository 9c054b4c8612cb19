//! Fuzzes the translation of an Anthropic Messages client's traffic for
//! OpenAI-family upstreams: arbitrary bytes are translated as a request
//! (Chat Completions and Responses, OpenAI and Fireworks), as whole
//! answers, as an error body, and fed to both stream transducers, which
//! must give the same bytes for any split and a well-formed Anthropic
//! event stream. See
//! `llm_integration_core::fuzzing::translate_anthropic_client`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    llm_integration_core::fuzzing::translate_anthropic_client(data)
});
