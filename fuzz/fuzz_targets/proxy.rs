#![no_main]
// See handoff::fuzzing::proxy for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::proxy(data));
