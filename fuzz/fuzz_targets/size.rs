//! Budget strings: parsed exactly, and a parsed size prints back to itself.
#![no_main]

use edgerun_runtime::size::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = parse_size(text) {
        assert_eq!(parse_size(&bytes.to_string()).ok(), Some(bytes), "{text:?}");
    }
});
