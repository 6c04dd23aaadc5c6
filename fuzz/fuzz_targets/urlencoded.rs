#![no_main]
// See handoff::fuzzing::urlencoded for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::urlencoded(data));
