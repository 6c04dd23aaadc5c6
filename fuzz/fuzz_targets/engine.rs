#![no_main]
// See handoff::fuzzing::engine for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::engine(data));
