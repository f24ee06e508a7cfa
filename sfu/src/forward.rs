//! The forwarding core: which packet goes out on a downstream slot, with which sequence number
//! and timestamp. Pure: packets and `now` come in as arguments, decisions come out.
//!
//! A *slot* is one downstream stream that every subscriber of a room receives: the chair's voice,
//! the chair's camera, the voice of the house that holds the floor, its camera. The source that
//! feeds a slot changes (the floor passes from one house to another, a publisher reconnects with
//! a new SSRC); subscribers must see one continuous stream all the same, because a browser treats
//! a jump in sequence numbers as loss and a jump back as duplicates. The [`SlotForwarder`]
//! therefore rewrites sequence numbers and timestamps so that each new source continues where the
//! previous one stopped, and, for video, holds the new source back until it sends a keyframe.
//!
//! What must stay true: for one source, `out = in + offset` (mod 2^16 and 2^32), so reordering
//! and retransmissions keep their relative order; across a switch, the first output sequence
//! number is the previous one plus one.

use std::time::{Duration, Instant};

use crate::keyframe::VideoCodec;

/// What a slot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Opus audio, 48 kHz clock.
    Audio,
    /// Video in the given codec, 90 kHz clock.
    Video(VideoCodec),
}

impl SlotKind {
    /// RTP clock rate of the slot's codec.
    pub fn clock_rate(self) -> u32 {
        match self {
            SlotKind::Audio => 48_000,
            SlotKind::Video(_) => 90_000,
        }
    }

    /// The smallest timestamp step to leave between two sources: one 20 ms audio frame, or
    /// one frame at 30 fps.
    fn min_ts_step(self) -> u32 {
        match self {
            SlotKind::Audio => 960,
            SlotKind::Video(_) => 3_000,
        }
    }
}

/// The header fields the forwarder reads from an incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// The publisher's SSRC (a new one from the same source is a switch).
    pub ssrc: u32,
    /// The publisher's sequence number, wrapping at 2^16.
    pub seq: u16,
    /// The publisher's RTP timestamp, in the codec's clock (48 or 90 kHz), wrapping at 2^32.
    pub ts: u32,
}

/// The rewritten header fields for the outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    /// Sequence number on the slot: the source's plus the mapping's offset, mod 2^16.
    pub seq: u16,
    /// Timestamp on the slot: the source's plus the mapping's offset, mod 2^32.
    pub ts: u32,
    /// Whether the packet starts a keyframe (always false for audio). Subscribers that joined
    /// late start at such a packet.
    pub keyframe_start: bool,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The packet's source does not feed this slot now.
    NotCurrentSource,
    /// The slot switched to this source and waits for its keyframe.
    AwaitingKeyframe,
    /// The packet is older than the source's first forwarded packet.
    TooOld,
}

/// The forwarder's decision on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the packet with these header fields.
    Forward(OutHeader),
    /// Do not send it.
    Drop(DropReason),
}

/// Identifies a publisher's stream within a room (the room assigns these).
pub type SourceId = u64;

/// Sequence number and timestamp continuity for one downstream slot.
#[derive(Debug)]
pub struct SlotForwarder {
    kind: SlotKind,
    source: Option<SourceId>,
    mapping: Option<Mapping>,
    last_out: Option<(u16, u32, Instant)>,
    waiting_keyframe: bool,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    ssrc: u32,
    first_in_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
}

impl SlotForwarder {
    /// A slot with no source.
    pub fn new(kind: SlotKind) -> Self {
        Self {
            kind,
            source: None,
            mapping: None,
            last_out: None,
            waiting_keyframe: false,
        }
    }

    /// The slot's kind.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }

    /// The source that feeds the slot now.
    pub fn source(&self) -> Option<SourceId> {
        self.source
    }

    /// Whether the slot waits for a keyframe from its source before forwarding.
    pub fn waiting_keyframe(&self) -> bool {
        self.waiting_keyframe
    }

    /// Feed the slot from `source` (or from nothing). Returns whether the new source must be
    /// asked for a keyframe.
    pub fn set_source(&mut self, source: Option<SourceId>) -> bool {
        if self.source == source {
            return false;
        }
        self.source = source;
        self.mapping = None;
        let video = matches!(self.kind, SlotKind::Video(_));
        self.waiting_keyframe = video && source.is_some();
        self.waiting_keyframe
    }

    /// Decide on one packet from `source`.
    pub fn on_packet(
        &mut self,
        source: SourceId,
        h: InHeader,
        payload: &[u8],
        now: Instant,
    ) -> Verdict {
        if self.source != Some(source) {
            return Verdict::Drop(DropReason::NotCurrentSource);
        }
        let keyframe_start = match self.kind {
            SlotKind::Audio => false,
            SlotKind::Video(codec) => codec.is_keyframe_start(payload),
        };
        self.on_flagged_packet(source, h, keyframe_start, now)
    }

    /// [`Self::on_packet`] for a packet already known to start a keyframe or not.
    pub fn on_flagged_packet(
        &mut self,
        source: SourceId,
        h: InHeader,
        keyframe_start: bool,
        now: Instant,
    ) -> Verdict {
        if self.source != Some(source) {
            return Verdict::Drop(DropReason::NotCurrentSource);
        }
        // A new SSRC from the same source (a publisher that restarted its encoder) is a switch
        // too: it needs a fresh mapping, and for video a keyframe.
        if let Some(m) = self.mapping {
            if m.ssrc != h.ssrc {
                self.mapping = None;
                self.waiting_keyframe = matches!(self.kind, SlotKind::Video(_));
            }
        }
        if self.waiting_keyframe && !keyframe_start {
            return Verdict::Drop(DropReason::AwaitingKeyframe);
        }
        self.waiting_keyframe = false;
        let m = match self.mapping {
            Some(m) => m,
            None => {
                let m = self.new_mapping(h, now);
                self.mapping = Some(m);
                m
            }
        };
        // Packets from before the mapping started would map onto sequence numbers already
        // used by the previous source.
        if (h.seq.wrapping_sub(m.first_in_seq) as i16) < 0 {
            return Verdict::Drop(DropReason::TooOld);
        }
        let seq = h.seq.wrapping_add(m.seq_offset);
        let ts = h.ts.wrapping_add(m.ts_offset);
        match self.last_out {
            Some((last_seq, _, _)) if (seq.wrapping_sub(last_seq) as i16) <= 0 => {
                // A retransmission or a reordered packet: forward it, keep the newest as last.
            }
            _ => self.last_out = Some((seq, ts, now)),
        }
        Verdict::Forward(OutHeader {
            seq,
            ts,
            keyframe_start,
        })
    }

    fn new_mapping(&self, h: InHeader, now: Instant) -> Mapping {
        match self.last_out {
            None => Mapping {
                ssrc: h.ssrc,
                first_in_seq: h.seq,
                seq_offset: 0,
                ts_offset: 0,
            },
            Some((last_seq, last_ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let step = ts_for(elapsed, self.kind.clock_rate()).max(self.kind.min_ts_step());
                let out_seq = last_seq.wrapping_add(1);
                let out_ts = last_ts.wrapping_add(step);
                Mapping {
                    ssrc: h.ssrc,
                    first_in_seq: h.seq,
                    seq_offset: out_seq.wrapping_sub(h.seq),
                    ts_offset: out_ts.wrapping_sub(h.ts),
                }
            }
        }
    }
}

fn ts_for(elapsed: Duration, clock_rate: u32) -> u32 {
    let ticks = elapsed.as_micros() * u128::from(clock_rate) / 1_000_000;
    u32::try_from(ticks).unwrap_or(u32::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d];
    const VP8_DELTA: &[u8] = &[0x10, 0x01, 0x00];

    fn h(ssrc: u32, seq: u16, ts: u32) -> InHeader {
        InHeader { ssrc, seq, ts }
    }

    fn fwd(v: Verdict) -> OutHeader {
        match v {
            Verdict::Forward(o) => o,
            Verdict::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    /// A slot of `kind` forwarding source 1, and the time its packets arrive.
    fn forwarding_1(kind: SlotKind) -> (SlotForwarder, Instant) {
        let mut s = SlotForwarder::new(kind);
        s.set_source(Some(1));
        (s, Instant::now())
    }

    #[test]
    fn first_source_passes_unchanged() {
        let t = Instant::now();
        let mut s = SlotForwarder::new(SlotKind::Audio);
        assert!(!s.set_source(Some(1)));
        let o = fwd(s.on_packet(1, h(10, 500, 9000), &[1], t));
        assert_eq!((o.seq, o.ts), (500, 9000));
    }

    #[test]
    fn other_sources_are_dropped() {
        let (mut s, t) = forwarding_1(SlotKind::Audio);
        assert_eq!(
            s.on_packet(2, h(20, 1, 1), &[1], t),
            Verdict::Drop(DropReason::NotCurrentSource)
        );
        s.set_source(None);
        assert_eq!(
            s.on_packet(1, h(10, 1, 1), &[1], t),
            Verdict::Drop(DropReason::NotCurrentSource)
        );
    }

    #[test]
    fn switch_continues_sequence_and_timestamp() {
        let (mut s, t) = forwarding_1(SlotKind::Audio);
        fwd(s.on_packet(1, h(10, 65_535, 1000), &[1], t));
        s.set_source(Some(2));
        let o = fwd(s.on_packet(2, h(20, 7, 555), &[1], t + Duration::from_millis(100)));
        assert_eq!(o.seq, 0, "wraps to 0 after 65535");
        // 100 ms at 48 kHz = 4800 ticks later.
        assert_eq!(o.ts, 1000 + 4800);
        let o2 = fwd(s.on_packet(2, h(20, 8, 555 + 960), &[1], t));
        assert_eq!((o2.seq, o2.ts), (1, 1000 + 4800 + 960));
    }

    #[test]
    fn quick_switch_still_advances_timestamp_by_a_frame() {
        let (mut s, t) = forwarding_1(SlotKind::Audio);
        fwd(s.on_packet(1, h(10, 1, 1000), &[1], t));
        s.set_source(Some(2));
        let o = fwd(s.on_packet(2, h(20, 1, 0), &[1], t));
        assert_eq!(o.ts, 1960);
    }

    #[test]
    fn video_switch_waits_for_keyframe() {
        let t = Instant::now();
        let mut s = SlotForwarder::new(SlotKind::Video(VideoCodec::Vp8));
        assert!(s.set_source(Some(1)), "a new video source needs a keyframe");
        assert_eq!(
            s.on_packet(1, h(10, 1, 0), VP8_DELTA, t),
            Verdict::Drop(DropReason::AwaitingKeyframe)
        );
        let o = fwd(s.on_packet(1, h(10, 2, 3000), VP8_KEY, t));
        assert!(o.keyframe_start);
        assert!(!fwd(s.on_packet(1, h(10, 3, 6000), VP8_DELTA, t)).keyframe_start);
    }

    #[test]
    fn new_ssrc_from_same_source_is_remapped() {
        let (mut s, t) = forwarding_1(SlotKind::Video(VideoCodec::Vp8));
        fwd(s.on_packet(1, h(10, 100, 0), VP8_KEY, t));
        assert_eq!(
            s.on_packet(1, h(11, 9, 0), VP8_DELTA, t),
            Verdict::Drop(DropReason::AwaitingKeyframe)
        );
        let o = fwd(s.on_packet(1, h(11, 10, 0), VP8_KEY, t));
        assert_eq!(o.seq, 101);
    }

    #[test]
    fn retransmissions_keep_their_mapping_and_stale_packets_drop() {
        let (mut s, t) = forwarding_1(SlotKind::Audio);
        fwd(s.on_packet(1, h(10, 1, 0), &[1], t));
        s.set_source(Some(2));
        fwd(s.on_packet(2, h(20, 50, 0), &[1], t));
        fwd(s.on_packet(2, h(20, 52, 0), &[1], t));
        // 51 arrives late (or as a retransmission): maps between 50 and 52.
        assert_eq!(fwd(s.on_packet(2, h(20, 51, 0), &[1], t)).seq, 3);
        assert_eq!(
            s.on_packet(2, h(20, 49, 0), &[1], t),
            Verdict::Drop(DropReason::TooOld)
        );
        // The newest stays the reference for the next switch.
        s.set_source(Some(1));
        assert_eq!(fwd(s.on_packet(1, h(10, 9, 0), &[1], t)).seq, 5);
    }
}
