//! RTP packets out and RTCP receiver reports in, for the RTP outputs. Pure.

use bytes::{Bytes, BytesMut};
use rtc_shared::marshal::{Marshal, Unmarshal};

use crate::engine::Encoded;

/// One output's RTP stream: its SSRC, sequence numbers and timestamps. The timestamp follows
/// the hub's tick count, so a pause (the relay stopped) leaves the gap a receiver expects, and
/// the first packet after a pause carries the marker bit (a new talk spurt, RFC 3551 §4.1).
#[derive(Debug, Clone)]
pub struct RtpStream {
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    ts_base: u32,
    last_tick: Option<u64>,
}

impl RtpStream {
    /// A stream with its SSRC and payload type; `seed` picks the initial sequence number and
    /// timestamp (RFC 3550 asks for random ones).
    pub fn new(ssrc: u32, payload_type: u8, seed: u32) -> Self {
        Self {
            ssrc,
            payload_type,
            seq: seed as u16,
            ts_base: seed.rotate_left(13),
            last_tick: None,
        }
    }

    /// The stream's synchronisation source id (made per output from its id and start).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The packet carrying `frame` at hub tick `tick`.
    pub fn packet(&mut self, frame: &Encoded, tick: u64) -> Bytes {
        let marker = self.last_tick.is_none_or(|t| t + 1 != tick);
        self.last_tick = Some(tick);
        let p = rtc_rtp::packet::Packet {
            header: rtc_rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type,
                sequence_number: self.seq,
                timestamp: self
                    .ts_base
                    .wrapping_add((tick as u32).wrapping_mul(frame.samples)),
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: frame.payload.clone(),
        };
        self.seq = self.seq.wrapping_add(1);
        // Marshalling a plain header with a payload cannot fail.
        p.marshal().unwrap_or_default().freeze()
    }
}

/// What a receiver report says about one of our streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reception {
    /// Our SSRC it is about.
    pub ssrc: u32,
    /// Fraction lost, 0..1.
    pub fraction_lost: f32,
    /// Interarrival jitter in the codec clock's units.
    pub jitter: u32,
}

/// The report blocks of an RTCP datagram (RR or SR); anything else, or garbage, gives none.
pub fn reception_reports(datagram: &[u8]) -> Vec<Reception> {
    let mut buf = Bytes::copy_from_slice(datagram);
    let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut buf) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut visit = |p: &dyn rtc_rtcp::packet::Packet| {
        let any = p.as_any();
        let blocks =
            if let Some(rr) = any.downcast_ref::<rtc_rtcp::receiver_report::ReceiverReport>() {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<rtc_rtcp::sender_report::SenderReport>() {
                &sr.reports
            } else {
                return;
            };
        for b in blocks {
            out.push(Reception {
                ssrc: b.ssrc,
                fraction_lost: b.fraction_lost as f32 / 256.0,
                jitter: b.jitter,
            });
        }
    };
    for p in &packets {
        if let Some(c) = p
            .as_any()
            .downcast_ref::<rtc_rtcp::compound_packet::CompoundPacket>()
        {
            for inner in &c.0 {
                visit(inner.as_ref());
            }
        } else {
            visit(p.as_ref());
        }
    }
    out
}

/// Parse an RTP packet (tests and the fuzz target).
pub fn parse(datagram: &[u8]) -> Option<rtc_rtp::packet::Packet> {
    let mut b = BytesMut::from(datagram).freeze();
    rtc_rtp::packet::Packet::unmarshal(&mut b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;
    use crate::engine::FeedKey;

    fn frame(samples: u32) -> Encoded {
        Encoded {
            codec: Codec::Pcmu,
            payload: Bytes::from(vec![0xFF; 160]),
            samples,
            arrived: None,
            feed: FeedKey::Silence,
        }
    }

    #[test]
    fn sequence_timestamp_and_marker_follow_the_ticks() {
        let mut s = RtpStream::new(0x1234, 0, 65_535);
        let a = parse(&s.packet(&frame(160), 10)).unwrap();
        let b = parse(&s.packet(&frame(160), 11)).unwrap();
        let c = parse(&s.packet(&frame(160), 20)).unwrap();
        assert_eq!(
            (a.header.marker, b.header.marker, c.header.marker),
            (true, false, true)
        );
        assert_eq!(
            b.header.sequence_number,
            a.header.sequence_number.wrapping_add(1)
        );
        assert_eq!(a.header.sequence_number, 65_535);
        assert_eq!(b.header.timestamp.wrapping_sub(a.header.timestamp), 160);
        assert_eq!(c.header.timestamp.wrapping_sub(b.header.timestamp), 9 * 160);
        assert_eq!(
            (a.header.ssrc, a.header.payload_type, a.payload.len()),
            (0x1234, 0, 160)
        );
    }

    #[test]
    fn receiver_reports_are_read_and_garbage_is_not() {
        let rr = rtc_rtcp::receiver_report::ReceiverReport {
            ssrc: 1,
            reports: vec![rtc_rtcp::reception_report::ReceptionReport {
                ssrc: 0x1234,
                fraction_lost: 64,
                jitter: 480,
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = rr.marshal().unwrap();
        let got = reception_reports(&bytes);
        assert_eq!(
            got,
            vec![Reception {
                ssrc: 0x1234,
                fraction_lost: 0.25,
                jitter: 480
            }]
        );
        assert!(reception_reports(&[0x80, 0xC9, 0, 7, 1, 2]).is_empty());
        assert!(reception_reports(b"").is_empty());
    }
}
