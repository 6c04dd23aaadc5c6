#![no_main]
// See handoff::fuzzing::wire for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::wire(data));
