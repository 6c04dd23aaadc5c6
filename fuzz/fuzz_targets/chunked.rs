#![no_main]
// See handoff::fuzzing::chunked for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::chunked(data));
