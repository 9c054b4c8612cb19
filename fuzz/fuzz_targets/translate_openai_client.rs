//! Fuzzes the OpenAI-client translations (Responses and Chat Completions
//! clients served by Anthropic): arbitrary bytes are translated as a
//! request, a whole answer, an error body and an upstream stream; a
//! translated request must alternate turns, a translated stream must end
//! in exactly one terminal event. See
//! `llm_integration_core::fuzzing::translate_openai_client`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    llm_integration_core::fuzzing::translate_openai_client(data)
});
