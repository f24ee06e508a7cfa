//! Signalling frames from outside: never panic; anything accepted serialises back and parses
//! to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = dinh_sfu::signal::parse_client(text) {
            let again = serde_json::to_string(&m).unwrap();
            assert_eq!(dinh_sfu::signal::parse_client(&again).ok(), Some(m));
        }
    }
});
