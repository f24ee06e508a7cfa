//! SDP offers and trickle-ICE fragments from outside: the checks, the candidate rewrites and
//! the fragment edits never panic; the UDP rewrite keeps every line that is not a candidate,
//! and a parsed fragment's credentials land in the description it is applied to. The remote
//! candidate checks never panic; a filtered offer keeps every other line, holds only
//! candidates that pass the check, and never more than the cap.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line splits the input: a fragment, then a description.
    let (frag_text, sdp) = text.split_once("\n---\n").unwrap_or((text, text));
    let _ = dinh_sfu::sdp::parse_offer(sdp);
    let _ = dinh_sfu::sdp::ice_ufrag(sdp);
    let udp = "192.0.2.1:5000".parse().unwrap();
    let out = dinh_sfu::sdp::rewrite_candidates(sdp, udp);
    let kept = |s: &str| s.lines().filter(|l| !l.starts_with("a=candidate:")).count();
    assert_eq!(kept(sdp), kept(&out));
    let _ = dinh_sfu::sdp::rewrite_candidates_with_tcp(sdp, udp, Some(udp));
    let _ = dinh_sfu::sdp::ice_fragment(sdp);
    use dinh_sfu::sdp::{check_candidate, filter_offer_candidates, CandidatePolicy};
    let lan = CandidatePolicy {
        loopback: false,
        link_local: false,
    };
    for line in frag_text.lines() {
        let _ = check_candidate(line, lan);
    }
    if let Ok((filtered, dropped)) = filter_offer_candidates(sdp, lan) {
        let cands = |s: &str| s.lines().filter(|l| l.starts_with("a=candidate:")).count();
        assert_eq!(kept(sdp), kept(&filtered));
        assert_eq!(cands(sdp), cands(&filtered) + dropped);
        for l in filtered.lines().filter(|l| l.starts_with("a=candidate:")) {
            assert!(check_candidate(l, lan).is_ok(), "{l}");
        }
    }
    if let Ok(frag) = dinh_sfu::sdp::parse_ice_fragment(frag_text) {
        let applied = dinh_sfu::sdp::apply_ice_fragment(sdp, &frag);
        if let (Some(u), Some(_)) = (&frag.ufrag, dinh_sfu::sdp::ice_ufrag(sdp)) {
            assert_eq!(dinh_sfu::sdp::ice_ufrag(&applied), Some(u.as_str()));
        }
    }
});
