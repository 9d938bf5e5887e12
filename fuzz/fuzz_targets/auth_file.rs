#![no_main]
// The property lives in lkg-fuzz-checks, shared with the stable corpus replay.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lkg_fuzz_checks::auth_file(data));
