#![no_main]
// See handoff::fuzzing::multipart for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::multipart(data));
