#![no_main]
// See handoff::fuzzing::head for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::head(data));
