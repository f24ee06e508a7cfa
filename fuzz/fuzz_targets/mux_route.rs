//! Datagrams on the media port: the STUN ufrag parser never panics or reads out of bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(u) = dinh_sfu::mux::stun_request_ufrag(data) {
        assert!(!u.is_empty() && !u.contains(':'));
    }
});
