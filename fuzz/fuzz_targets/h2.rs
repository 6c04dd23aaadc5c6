#![no_main]
// See handoff::fuzzing::h2 for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::h2(data));
