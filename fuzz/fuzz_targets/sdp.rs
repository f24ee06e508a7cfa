//! SDP offers from outside: the checks and the candidate rewrite never panic, and the rewrite
//! keeps every line that is not a UDP host candidate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dinh_sfu::sdp::parse_offer(text);
        let _ = dinh_sfu::sdp::ice_ufrag(text);
        let out = dinh_sfu::sdp::rewrite_candidates(text, "192.0.2.1:5000".parse().unwrap());
        let kept = |s: &str| s.lines().filter(|l| !l.starts_with("a=candidate:")).count();
        assert_eq!(kept(text), kept(&out));
    }
});
