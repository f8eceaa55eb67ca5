//! A `mix` scenario (TOML): parsed and checked as a whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = edgerun_runtime::mix::Scenario::parse(text);
    }
});
