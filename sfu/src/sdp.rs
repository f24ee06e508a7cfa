//! SDP from outside: bounds, validation, and the edits the UDP mux needs.

use std::net::{IpAddr, SocketAddr};

use webrtc::peer_connection::RTCSessionDescription;

/// Largest SDP accepted. Browsers send 5–15 KiB for a few m-lines.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most media sections accepted in one offer.
pub const MAX_MEDIA_SECTIONS: usize = 16;

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Larger than [`MAX_SDP_BYTES`]; send a smaller offer.
    #[error("SDP is {0} bytes; the limit is {MAX_SDP_BYTES}")]
    TooLarge(usize),
    /// Not SDP, or not parseable; the parser's message says where.
    #[error("invalid SDP: {0}")]
    Invalid(String),
    /// No audio or video section to negotiate.
    #[error("the offer has no audio or video section")]
    NoMedia,
    /// More than [`MAX_MEDIA_SECTIONS`] media sections.
    #[error("the offer has {0} media sections; the limit is {MAX_MEDIA_SECTIONS}")]
    TooManySections(usize),
    /// A trickle-ICE fragment that cannot be used; the message says why.
    #[error("invalid ICE fragment: {0}")]
    Fragment(String),
    /// More than [`MAX_OFFER_CANDIDATES`] distinct candidates; send fewer (a browser sends a
    /// handful).
    #[error("the offer has {0} distinct ICE candidates; the limit is {MAX_OFFER_CANDIDATES}")]
    TooManyCandidates(usize),
}

/// Check an offer from outside and turn it into a session description.
pub fn parse_offer(sdp: &str) -> Result<RTCSessionDescription, SdpError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge(sdp.len()));
    }
    if !sdp.starts_with("v=0") {
        return Err(SdpError::Invalid("an SDP starts with v=0".into()));
    }
    let sections = sdp
        .lines()
        .filter(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
        .count();
    let all_sections = sdp.lines().filter(|l| l.starts_with("m=")).count();
    if all_sections > MAX_MEDIA_SECTIONS {
        return Err(SdpError::TooManySections(all_sections));
    }
    if sections == 0 {
        return Err(SdpError::NoMedia);
    }
    RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| SdpError::Invalid(e.to_string()))
}

/// The session's ICE username fragment (the first `a=ice-ufrag`).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// Replace the address of every UDP host candidate with the mux's advertised address, and
/// drop duplicates that result. TCP and relay candidates are left alone.
pub fn rewrite_candidates(sdp: &str, advertised: SocketAddr) -> String {
    rewrite_candidates_with_tcp(sdp, advertised, None)
}

/// As [`rewrite_candidates`], and with `tcp` (the shared ICE-TCP port) every passive TCP
/// host candidate gets that address and active ones are dropped (the hub never dials out).
pub fn rewrite_candidates_with_tcp(sdp: &str, udp: SocketAddr, tcp: Option<SocketAddr>) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut seen = std::collections::HashSet::new();
    let mut section = 0usize;
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if body.starts_with("m=") {
            section += 1;
        }
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ type ...
            let mut f: Vec<&str> = rest.split(' ').collect();
            let host = f.len() >= 8 && f[7] == "host";
            let to = match f.get(2) {
                Some(t) if host && t.eq_ignore_ascii_case("udp") => Some(udp),
                Some(t) if host && t.eq_ignore_ascii_case("tcp") => match tcp {
                    Some(_) if !body.contains(" tcptype passive") => continue,
                    other => other,
                },
                _ => None,
            };
            if let Some(to) = to {
                let ip = to.ip().to_string();
                let port = to.port().to_string();
                f[4] = &ip;
                f[5] = &port;
                let key = (
                    section,
                    f[1].to_ascii_lowercase(),
                    f[2].to_ascii_lowercase(),
                );
                if !seen.insert(key) {
                    continue;
                }
                out.push_str("a=candidate:");
                out.push_str(&f.join(" "));
                out.push_str(ending);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// Largest trickle-ICE fragment accepted.
pub const MAX_FRAGMENT_BYTES: usize = 16 * 1024;
/// Most candidates accepted in one fragment.
pub const MAX_FRAGMENT_CANDIDATES: usize = 64;

/// An SDP fragment as WHIP and WHEP `PATCH` carry it (RFC 8840
/// `application/trickle-ice-sdpfrag`): new ICE credentials for a restart, candidates, or both.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IceFragment {
    /// `a=ice-ufrag`.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// Candidates, each `candidate:...` with the `a=mid` of its section.
    pub candidates: Vec<(Option<String>, String)>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Parse a trickle-ICE fragment. Unknown attributes are ignored (RFC 8840 allows more than
/// ICE lines); anything that is not an SDP line, a malformed candidate, credentials that are
/// not ICE characters of the right length (RFC 8839 §5.4), or too much of anything is refused.
pub fn parse_ice_fragment(text: &str) -> Result<IceFragment, SdpError> {
    let bad = |m: String| SdpError::Fragment(m);
    if text.len() > MAX_FRAGMENT_BYTES {
        return Err(bad(format!(
            "{} bytes; the limit is {MAX_FRAGMENT_BYTES}",
            text.len()
        )));
    }
    let mut frag = IceFragment::default();
    let mut mid: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let n = n + 1;
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            mid = None;
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            return Err(bad(format!("line {n} is not an a= or m= line")));
        };
        if let Some(v) = attr.strip_prefix("ice-ufrag:") {
            frag.ufrag = Some(ice_chars(v, 4, "ice-ufrag", n)?);
        } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
            frag.pwd = Some(ice_chars(v, 22, "ice-pwd", n)?);
        } else if let Some(v) = attr.strip_prefix("mid:") {
            mid = Some(v.trim().to_owned());
        } else if attr.starts_with("candidate:") {
            // foundation component transport priority address port typ type
            let fields = attr.split(' ').filter(|f| !f.is_empty()).count();
            if fields < 8 || !attr.contains(" typ ") {
                return Err(bad(format!("line {n}: a candidate needs eight fields")));
            }
            if frag.candidates.len() == MAX_FRAGMENT_CANDIDATES {
                return Err(bad(format!(
                    "more than {MAX_FRAGMENT_CANDIDATES} candidates"
                )));
            }
            frag.candidates.push((mid.clone(), attr.to_owned()));
        } else if attr == "end-of-candidates" {
            frag.end_of_candidates = true;
        }
    }
    if frag.ufrag.is_some() != frag.pwd.is_some() {
        return Err(bad("ice-ufrag and ice-pwd come together".into()));
    }
    Ok(frag)
}

fn ice_chars(v: &str, min: usize, what: &str, line: usize) -> Result<String, SdpError> {
    let v = v.trim();
    let ok = (min..=256).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(SdpError::Fragment(format!(
            "line {line}: {what} must be {min} to 256 ICE characters (letters, digits, + and /)"
        )))
    }
}

/// `sdp` with the fragment applied: its ICE credentials replace the session's, and when the
/// fragment brings credentials or candidates, the old candidates are dropped and the new ones
/// follow the first media section (the bundle's transport). Used to turn an ICE-restart
/// fragment into a full offer, and by clients to turn the hub's reply into a full answer.
pub fn apply_ice_fragment(sdp: &str, frag: &IceFragment) -> String {
    let replace = frag.ufrag.is_some() || !frag.candidates.is_empty();
    let mut out = String::with_capacity(sdp.len() + 128 * frag.candidates.len());
    let mut sections = 0;
    let add_candidates = |out: &mut String| {
        for (_, c) in &frag.candidates {
            out.push_str("a=");
            out.push_str(c);
            out.push_str("\r\n");
        }
        if frag.end_of_candidates {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in sdp.lines() {
        let body = line.trim_end();
        if body.starts_with("m=") {
            sections += 1;
            if sections == 2 && replace {
                add_candidates(&mut out);
            }
        }
        if let (Some(_), Some(u)) = (body.strip_prefix("a=ice-ufrag:"), &frag.ufrag) {
            out.push_str(&format!("a=ice-ufrag:{u}\r\n"));
            continue;
        }
        if let (Some(_), Some(p)) = (body.strip_prefix("a=ice-pwd:"), &frag.pwd) {
            out.push_str(&format!("a=ice-pwd:{p}\r\n"));
            continue;
        }
        if replace && (body.starts_with("a=candidate:") || body == "a=end-of-candidates") {
            continue;
        }
        out.push_str(body);
        out.push_str("\r\n");
    }
    if sections == 1 && replace {
        add_candidates(&mut out);
    }
    out
}

/// The ICE part of a description as a trickle-ICE fragment: its credentials and the
/// candidates of its first media section (what a restarted session answers a `PATCH` with).
pub fn ice_fragment(answer: &str) -> String {
    let mut out = String::new();
    let mut lines = answer.lines().map(str::trim_end);
    let ufrag = ice_ufrag(answer).unwrap_or_default();
    let pwd = answer
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-pwd:"))
        .unwrap_or_default();
    out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    if let Some(m) = lines.find(|l| l.starts_with("m=")) {
        out.push_str(m);
        out.push_str("\r\n");
        for l in lines.take_while(|l| !l.starts_with("m=")) {
            if l.starts_with("a=mid:") || l.starts_with("a=candidate:") {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

/// Most distinct remote candidates (transport, address, port) accepted in one offer: a
/// machine with a few interfaces, both IP versions, UDP and TCP, a reflexive and a relayed
/// address stays far below it, and each one makes the hub send connectivity checks.
pub const MAX_OFFER_CANDIDATES: usize = 32;

/// Which remote candidate addresses the hub sends connectivity checks (STUN) to. A client
/// names the addresses and ports; without this, it could make the hub probe services on the
/// hub's own machine (loopback) or its link (link-local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidatePolicy {
    /// Accept loopback addresses (127.0.0.0/8, ::1).
    pub loopback: bool,
    /// Accept link-local addresses (169.254.0.0/16, fe80::/10).
    pub link_local: bool,
}

impl CandidatePolicy {
    /// The policy for a hub whose media is reached at `addrs`: loopback candidates only when
    /// the hub itself listens on a loopback address (a test, a hub for one machine),
    /// link-local ones only when it listens on a link-local address.
    pub fn for_hub(addrs: &[IpAddr]) -> Self {
        Self {
            loopback: addrs.iter().any(|a| a.is_loopback()),
            link_local: addrs.iter().any(|a| is_link_local(*a)),
        }
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Why a remote candidate is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateRefusal {
    /// Not `foundation component transport priority address port typ type ...`.
    #[error("not a candidate line")]
    Malformed,
    /// The address is a name (an mDNS `.local` name, say), which the hub does not resolve.
    #[error("the address is not an IP address")]
    NotAnAddress,
    /// A loopback address, and the hub does not listen on one.
    #[error("a loopback address")]
    Loopback,
    /// A link-local address, and the hub does not listen on one.
    #[error("a link-local address")]
    LinkLocal,
    /// An unspecified, multicast or broadcast address, or port 0 for UDP.
    #[error("an address or port no peer can have")]
    Unroutable,
}

/// Check one remote candidate (`candidate:...`, with or without `a=`) against `policy`.
pub fn check_candidate(line: &str, policy: CandidatePolicy) -> Result<(), CandidateRefusal> {
    let body = line.trim();
    let body = body.strip_prefix("a=").unwrap_or(body);
    let Some(rest) = body.strip_prefix("candidate:") else {
        return Err(CandidateRefusal::Malformed);
    };
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    if f.len() < 8 || f[6] != "typ" {
        return Err(CandidateRefusal::Malformed);
    }
    let Ok(ip) = f[4].parse::<IpAddr>() else {
        return Err(CandidateRefusal::NotAnAddress);
    };
    let Ok(port) = f[5].parse::<u16>() else {
        return Err(CandidateRefusal::Malformed);
    };
    // TCP active candidates carry port 9 or 0 (RFC 6544); a UDP one at port 0 is nowhere.
    if port == 0 && f[2].eq_ignore_ascii_case("udp") {
        return Err(CandidateRefusal::Unroutable);
    }
    let unroutable = match ip {
        IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
    };
    if unroutable {
        return Err(CandidateRefusal::Unroutable);
    }
    let ip = match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() && !policy.loopback {
        return Err(CandidateRefusal::Loopback);
    }
    if is_link_local(ip) && !policy.link_local {
        return Err(CandidateRefusal::LinkLocal);
    }
    Ok(())
}

/// An offer with the remote candidates the hub will not use (see [`check_candidate`])
/// removed, and how many were removed. More than [`MAX_OFFER_CANDIDATES`] distinct
/// candidates is an error, however many would be removed.
pub fn filter_offer_candidates(
    sdp: &str,
    policy: CandidatePolicy,
) -> Result<(String, usize), SdpError> {
    let mut distinct = std::collections::HashSet::new();
    let mut out = String::with_capacity(sdp.len());
    let mut dropped = 0;
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            let f: Vec<&str> = rest.split_ascii_whitespace().collect();
            let key = (
                f.get(2).map(|t| t.to_ascii_lowercase()),
                f.get(4).copied(),
                f.get(5).copied(),
            );
            if distinct.insert(key) && distinct.len() > MAX_OFFER_CANDIDATES {
                let n = sdp
                    .lines()
                    .filter(|l| l.starts_with("a=candidate:"))
                    .count();
                return Err(SdpError::TooManyCandidates(n.max(distinct.len())));
            }
            if check_candidate(body, policy).is_err() {
                dropped += 1;
                continue;
            }
        }
        out.push_str(line);
    }
    Ok((out, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_udp_host_candidates_only() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\n\
a=candidate:2 1 udp 2130706431 127.0.0.1 40002 typ host\r\n\
a=candidate:3 1 tcp 1671430143 127.0.0.1 40003 typ host tcptype passive\r\n\
a=candidate:4 1 udp 16777215 203.0.113.9 3478 typ relay raddr 0.0.0.0 rport 0\r\n\
a=ice-ufrag:abcd\r\n";
        let out = rewrite_candidates(sdp, "192.0.2.7:5000".parse().unwrap());
        assert!(out.contains("a=candidate:1 1 udp 2130706431 192.0.2.7 5000 typ host\r\n"));
        assert!(
            !out.contains("40002"),
            "duplicate host candidate dropped: {out}"
        );
        assert!(out.contains("127.0.0.1 40003 typ host tcptype passive"));
        assert!(out.contains("203.0.113.9 3478 typ relay"));
        assert_eq!(ice_ufrag(&out), Some("abcd"));
    }

    #[test]
    fn rewrites_tcp_candidates_to_the_shared_port() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\n\
a=candidate:3 1 tcp 1671430143 127.0.0.1 40003 typ host tcptype passive\r\n\
a=candidate:5 1 tcp 1671430143 127.0.0.1 40005 typ host tcptype passive\r\n\
a=candidate:4 1 tcp 1015023359 127.0.0.1 9 typ host tcptype active\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=candidate:3 1 tcp 1671430143 127.0.0.1 40003 typ host tcptype passive\r\n";
        let out = rewrite_candidates_with_tcp(
            sdp,
            "192.0.2.7:5000".parse().unwrap(),
            Some("192.0.2.7:5001".parse().unwrap()),
        );
        assert!(out.contains("a=candidate:1 1 udp 2130706431 192.0.2.7 5000 typ host\r\n"));
        assert_eq!(
            out.matches("192.0.2.7 5001 typ host tcptype passive")
                .count(),
            2,
            "one passive candidate per section: {out}"
        );
        assert!(!out.contains("tcptype active"), "{out}");
        assert!(!out.contains("4000"), "{out}");
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:oldU\r\n\
a=ice-pwd:oldpasswordoldpassword\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 4000 typ host\r\na=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:oldU\r\n\
a=ice-pwd:oldpasswordoldpassword\r\n";

    #[test]
    fn parses_trickle_and_restart_fragments() {
        let trickle = parse_ice_fragment(
            "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\n\
a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n\
a=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(trickle.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(trickle.candidates.len(), 2);
        assert_eq!(trickle.candidates[0].0.as_deref(), Some("0"));
        assert!(trickle.candidates[1]
            .1
            .starts_with("candidate:473322822 1 tcp"));
        assert!(trickle.end_of_candidates);
        let restart =
            parse_ice_fragment("a=ice-ufrag:ysXw\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\n").unwrap();
        assert!(restart.candidates.is_empty());
        assert_eq!(restart.pwd.as_deref(), Some("vw5LmwG4y/e6dPP/zAP9Gp5k"));
    }

    #[test]
    fn refuses_bad_fragments() {
        for (text, why) in [
            ("hello", "line 1 is not"),
            ("a=candidate:1 1 udp\r\n", "eight fields"),
            (
                "a=ice-ufrag:ab\r\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\r\n",
                "ice-ufrag must",
            ),
            ("a=ice-ufrag:abcd\r\na=ice-pwd:short\r\n", "ice-pwd must"),
            (
                "a=ice-ufrag:ab;d\r\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\r\n",
                "ice-ufrag must",
            ),
            ("a=ice-ufrag:abcd\r\n", "come together"),
        ] {
            let e = parse_ice_fragment(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let many = "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\n".repeat(65);
        assert!(parse_ice_fragment(&many)
            .unwrap_err()
            .to_string()
            .contains("more than 64"));
        let huge = "a=x\n".repeat(5000);
        assert!(parse_ice_fragment(&huge)
            .unwrap_err()
            .to_string()
            .contains("limit"));
    }

    #[test]
    fn applies_a_restart_fragment_to_an_offer() {
        let frag = parse_ice_fragment(
            "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword\r\n\
a=candidate:9 1 udp 2130706431 10.0.0.2 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        let out = apply_ice_fragment(OFFER, &frag);
        assert_eq!(out.matches("a=ice-ufrag:newU\r\n").count(), 2);
        assert_eq!(
            out.matches("a=ice-pwd:newpasswordnewpassword\r\n").count(),
            2
        );
        assert!(!out.contains("oldU") && !out.contains("10.0.0.1"), "{out}");
        // The new candidate sits in the first section, before the second m= line.
        let cand = out.find("10.0.0.2 5000").unwrap();
        assert!(cand < out.find("m=video").unwrap(), "{out}");
        assert_eq!(ice_ufrag(&out), Some("newU"));
        // The answer's fragment carries the credentials and the first section's candidates.
        let reply = ice_fragment(&out);
        let back = parse_ice_fragment(&reply).unwrap();
        assert_eq!(back.ufrag.as_deref(), Some("newU"));
        assert_eq!(back.candidates.len(), 1);
        assert_eq!(back.candidates[0].0.as_deref(), Some("0"));
        // Only candidates: credentials stay.
        let trickle = parse_ice_fragment("a=candidate:9 1 udp 1 10.0.0.3 6000 typ host\n").unwrap();
        let out = apply_ice_fragment(OFFER, &trickle);
        assert!(out.contains("a=ice-ufrag:oldU") && out.contains("10.0.0.3 6000"));
    }

    const HUB_ON_LAN: CandidatePolicy = CandidatePolicy {
        loopback: false,
        link_local: false,
    };

    #[test]
    fn candidates_to_the_hubs_own_machine_or_link_are_refused() {
        let c = |addr: &str| format!("candidate:1 1 udp 2130706431 {addr} 40000 typ host");
        for (addr, why) in [
            ("127.0.0.1", Some(CandidateRefusal::Loopback)),
            ("127.3.2.1", Some(CandidateRefusal::Loopback)),
            ("::1", Some(CandidateRefusal::Loopback)),
            ("::ffff:127.0.0.1", Some(CandidateRefusal::Loopback)),
            ("169.254.10.1", Some(CandidateRefusal::LinkLocal)),
            ("fe80::1", Some(CandidateRefusal::LinkLocal)),
            ("0.0.0.0", Some(CandidateRefusal::Unroutable)),
            ("224.0.0.251", Some(CandidateRefusal::Unroutable)),
            ("255.255.255.255", Some(CandidateRefusal::Unroutable)),
            ("ff02::1", Some(CandidateRefusal::Unroutable)),
            ("3e1f0a2b-1c2d.local", Some(CandidateRefusal::NotAnAddress)),
            ("localhost", Some(CandidateRefusal::NotAnAddress)),
            ("192.168.1.20", None),
            ("10.0.0.7", None),
            ("203.0.113.9", None),
            ("2001:db8::7", None),
        ] {
            assert_eq!(check_candidate(&c(addr), HUB_ON_LAN).err(), why, "{addr}");
        }
        assert_eq!(
            check_candidate("candidate:1 1 udp 1 192.0.2.1 0 typ host", HUB_ON_LAN),
            Err(CandidateRefusal::Unroutable)
        );
        assert_eq!(
            check_candidate(
                "candidate:1 1 tcp 1 192.0.2.1 9 typ host tcptype active",
                HUB_ON_LAN
            ),
            Ok(())
        );
        assert_eq!(
            check_candidate("a=candidate:1 1 udp", HUB_ON_LAN),
            Err(CandidateRefusal::Malformed)
        );
        // A hub that itself listens on loopback (a test, one machine) accepts loopback.
        let local = CandidatePolicy::for_hub(&["127.0.0.1".parse().unwrap()]);
        assert_eq!(check_candidate(&c("127.0.0.1"), local), Ok(()));
        assert_eq!(
            check_candidate(&c("fe80::1"), local),
            Err(CandidateRefusal::LinkLocal)
        );
        let lan = CandidatePolicy::for_hub(&["192.168.1.2".parse().unwrap()]);
        assert_eq!(lan, HUB_ON_LAN);
    }

    #[test]
    fn offers_lose_unusable_candidates_and_too_many_are_refused() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 192.168.1.20 40000 typ host\r\n\
a=candidate:2 1 udp 2130706431 127.0.0.1 22 typ host\r\n\
a=candidate:3 1 udp 2130706431 fe80::1 40002 typ host\r\n\
a=ice-ufrag:abcd\r\n";
        let (out, dropped) = filter_offer_candidates(offer, HUB_ON_LAN).unwrap();
        assert_eq!(dropped, 2);
        assert!(out.contains("192.168.1.20 40000"), "{out}");
        assert!(!out.contains("127.0.0.1") && !out.contains("fe80"), "{out}");
        assert!(out.contains("a=ice-ufrag:abcd\r\n"));
        // The same candidates repeated in every bundled section count once...
        let bundled = format!(
            "{offer}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n{}",
            &offer[offer.find("a=cand").unwrap()..]
        );
        assert_eq!(filter_offer_candidates(&bundled, HUB_ON_LAN).unwrap().1, 4);
        // ...but 900 ports the client chose are refused whole.
        let mut many = String::from("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
        for p in 0..900 {
            many.push_str(&format!(
                "a=candidate:{p} 1 udp 2130706431 192.168.1.20 {} typ host\r\n",
                10_000 + p
            ));
        }
        assert_eq!(
            filter_offer_candidates(&many, HUB_ON_LAN).unwrap_err(),
            SdpError::TooManyCandidates(900)
        );
        let at_limit: String = many
            .lines()
            .take(2 + MAX_OFFER_CANDIDATES)
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(filter_offer_candidates(&at_limit, HUB_ON_LAN).unwrap().1, 0);
    }

    #[test]
    fn refuses_bad_offers() {
        assert_eq!(
            parse_offer("hello").unwrap_err(),
            SdpError::Invalid("an SDP starts with v=0".into())
        );
        assert!(matches!(
            parse_offer(&"v=0\n".repeat(20_000)),
            Err(SdpError::TooLarge(_))
        ));
        assert_eq!(
            parse_offer("v=0\r\ns=-\r\n").unwrap_err(),
            SdpError::NoMedia
        );
        let many = format!(
            "v=0\r\n{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(17)
        );
        assert_eq!(
            parse_offer(&many).unwrap_err(),
            SdpError::TooManySections(17)
        );
        assert!(matches!(
            parse_offer("v=0\r\nm=audio x\r\n"),
            Err(SdpError::Invalid(_))
        ));
    }
}
