//! SDP from outside: bounds, validation, and the edits the UDP mux needs.

use std::net::SocketAddr;

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
