//! Fuzzes the routing engine: arbitrary bytes are read as
//! `VM_ID\nHOST\nMETHOD\nTARGET\nMODEL` and routed against a small fixed
//! snapshot; a forwarded request's upstream path must stay under its
//! provider's `/v1` and pass path checks. See
//! `llm_integration_core::fuzzing::route`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    llm_integration_core::fuzzing::route(data)
});
