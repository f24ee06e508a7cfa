//! Simulcast: the chair's browser sends the same picture at two or three sizes, each an RTP
//! stream named by a RID (RFC 8851, RFC 8852, RFC 8853), and each house gets the one its link
//! and its choice allow. A house on a weak 4G link gets the small picture instead of none; a
//! house on fibre gets the sharp one; neither costs the chair's uplink more than one upload.
//!
//! Pure, like [`crate::forward`]: layers, packets and `now` come in, decisions come out.
//!
//! - [`layer_for_rid`] orders a publisher's RIDs into layers, 0 the smallest picture.
//! - [`LayerActivity`] knows which layers are flowing: a browser pauses its larger layers when
//!   its own uplink estimate drops, and a subscriber must then fall back, not freeze.
//! - [`pick_layer`] chooses a subscriber's layer from what flows and what it asked for.
//! - [`LayerSwitch`] is one subscriber's view of a video slot: it stays on its layer until the
//!   new layer sends a keyframe (a switch never shows a broken picture, and never a frozen one
//!   while it waits), and rewrites sequence numbers and timestamps so the subscriber's decoder
//!   sees one continuous stream across switches.
//!
//! A slot's layers are first made continuous per layer across source switches (the floor
//! passing from house to house) by one [`SlotForwarder`] per layer; [`LayerSwitch`] then works
//! in that per-layer space.

use std::time::{Duration, Instant};

use crate::forward::{InHeader, OutHeader, SlotForwarder, SlotKind, SourceId, Verdict};

/// At most this many simulcast layers per video source (browsers send up to three).
pub const MAX_LAYERS: usize = 3;

/// A layer that sent nothing for this long is paused (browsers pause the larger layers when
/// their uplink estimate drops, and send nothing on them at all).
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(1000);

/// The layer a publisher's RID names, 0 the smallest picture, given the layers its other RIDs
/// already hold (`taken`, a bit per layer). `None` when all layers are taken.
///
/// Known names: `q`, `h`, `f` (quarter, half, full: LiveKit's and our chair page's), `l`, `m`
/// (low, mid), `low`, `mid`, `high`, `full`, and the digits `0`, `1`, `2`. In the `l`, `m`,
/// `h` convention `h` is the largest: it lands above `m` when `m` came first. Other names take
/// the middle layer, or the nearest free one.
pub fn layer_for_rid(rid: &str, taken: u8) -> Option<u8> {
    let want: u8 = match rid.to_ascii_lowercase().as_str() {
        "q" | "l" | "lo" | "low" | "0" => 0,
        "h" | "m" | "mid" | "medium" | "1" => 1,
        "f" | "hi" | "high" | "full" | "2" => 2,
        _ => 1,
    };
    let free = |l: u8| (l as usize) < MAX_LAYERS && taken & (1 << l) == 0;
    [
        want,
        want + 1,
        want.wrapping_sub(1),
        want + 2,
        want.wrapping_sub(2),
    ]
    .into_iter()
    .find(|&l| free(l))
}

/// When each layer of a source last carried a packet.
#[derive(Debug, Default, Clone)]
pub struct LayerActivity {
    seen: [Option<Instant>; MAX_LAYERS],
}

impl LayerActivity {
    /// A packet of `layer` arrived at `now`.
    pub fn saw(&mut self, layer: u8, now: Instant) {
        if let Some(s) = self.seen.get_mut(layer as usize) {
            *s = Some(now);
        }
    }

    /// The layers flowing at `now`, a bit per layer.
    pub fn active(&self, now: Instant) -> u8 {
        self.seen
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT))
            .fold(0, |m, (i, _)| m | 1 << i)
    }
}

/// The layer a subscriber should receive: the largest that flows, or the smallest when it
/// asked for low quality. `None` when nothing flows.
pub fn pick_layer(active: u8, low: bool) -> Option<u8> {
    let mut flowing = (0..MAX_LAYERS as u8).filter(|l| active & (1 << l) != 0);
    if low {
        flowing.next()
    } else {
        flowing.next_back()
    }
}

/// One subscriber's view of a simulcast video slot.
#[derive(Debug)]
pub struct LayerSwitch {
    // Each layer is a "source" of this forwarder: it keeps the output continuous across
    // switches exactly as the slot's forwarder does across publishers.
    out: SlotForwarder,
    current: Option<u8>,
    target: Option<u8>,
}

impl LayerSwitch {
    /// A subscriber that has received nothing yet (it starts at a keyframe of its target).
    pub fn new(kind: SlotKind) -> Self {
        Self {
            out: SlotForwarder::new(kind),
            current: None,
            target: None,
        }
    }

    /// The layer being sent now.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer wanted; it becomes [`Self::current`] at its next keyframe.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Want `target`. Returns whether a keyframe of it must be asked for: it differs from
    /// the layer being sent, which goes on until that keyframe arrives.
    pub fn set_target(&mut self, target: Option<u8>) -> bool {
        if target == self.target {
            return false;
        }
        self.target = target;
        target.is_some() && target != self.current
    }

    /// Stop until the next keyframe of the target layer (the subscriber missed packets, or
    /// video resumes after the low-bandwidth mode). Numbering continues from where it stopped.
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Decide on a packet of `layer` (its header in the layer's continuous numbering):
    /// the subscriber's header fields, or `None` to skip it.
    pub fn on_packet(
        &mut self,
        layer: u8,
        h: InHeader,
        keyframe_start: bool,
        now: Instant,
    ) -> Option<OutHeader> {
        if self.target == Some(layer) && self.current != Some(layer) && keyframe_start {
            self.current = Some(layer);
            self.out.set_source(Some(SourceId::from(layer)));
        }
        if self.current != Some(layer) {
            return None;
        }
        let h = InHeader {
            ssrc: u32::from(layer),
            ..h
        };
        match self
            .out
            .on_flagged_packet(SourceId::from(layer), h, keyframe_start, now)
        {
            Verdict::Forward(out) => Some(out),
            Verdict::Drop(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyframe::VideoCodec;

    const VIDEO: SlotKind = SlotKind::Video(VideoCodec::Vp8);

    fn h(seq: u16, ts: u32) -> InHeader {
        InHeader { ssrc: 0, seq, ts }
    }

    /// A switch to `layer` that has forwarded `first`, a keyframe of it, and the time it did.
    fn playing(layer: u8, first: InHeader) -> (LayerSwitch, Instant) {
        let t = Instant::now();
        let mut s = LayerSwitch::new(VIDEO);
        s.set_target(Some(layer));
        s.on_packet(layer, first, true, t).unwrap();
        (s, t)
    }

    #[test]
    fn rids_order_into_layers() {
        // q/h/f in any arrival order.
        assert_eq!(layer_for_rid("f", 0), Some(2));
        assert_eq!(layer_for_rid("q", 0b100), Some(0));
        assert_eq!(layer_for_rid("h", 0b101), Some(1));
        // l/m/h: h lands above m.
        assert_eq!(layer_for_rid("l", 0), Some(0));
        assert_eq!(layer_for_rid("m", 0b001), Some(1));
        assert_eq!(layer_for_rid("h", 0b011), Some(2));
        // Unknown names share out what is free; a fourth has no layer.
        assert_eq!(layer_for_rid("a", 0), Some(1));
        assert_eq!(layer_for_rid("b", 0b010), Some(2));
        assert_eq!(layer_for_rid("c", 0b110), Some(0));
        assert_eq!(layer_for_rid("d", 0b111), None);
        assert_eq!(layer_for_rid("F", 0), Some(2), "case does not matter");
    }

    #[test]
    fn paused_layers_stop_counting_as_active() {
        let t = Instant::now();
        let mut a = LayerActivity::default();
        assert_eq!(a.active(t), 0);
        a.saw(0, t);
        a.saw(2, t);
        a.saw(7, t); // out of range: ignored
        assert_eq!(a.active(t + Duration::from_millis(500)), 0b101);
        a.saw(0, t + Duration::from_millis(900));
        assert_eq!(a.active(t + LAYER_TIMEOUT), 0b001, "layer 2 paused");
    }

    #[test]
    fn picks_largest_or_smallest_flowing_layer() {
        assert_eq!(pick_layer(0b111, false), Some(2));
        assert_eq!(pick_layer(0b111, true), Some(0));
        assert_eq!(pick_layer(0b011, false), Some(1));
        assert_eq!(pick_layer(0b110, true), Some(1));
        assert_eq!(pick_layer(0b001, false), Some(0));
        assert_eq!(pick_layer(0, false), None);
    }

    #[test]
    fn starts_at_a_keyframe_of_its_layer() {
        let t = Instant::now();
        let mut s = LayerSwitch::new(VIDEO);
        assert!(s.set_target(Some(1)), "ask for a keyframe to start");
        assert!(!s.set_target(Some(1)), "once");
        assert_eq!(s.on_packet(1, h(10, 100), false, t), None, "mid-picture");
        assert_eq!(s.on_packet(0, h(50, 900), true, t), None, "not its layer");
        let first = s.on_packet(1, h(11, 3100), true, t).unwrap();
        assert_eq!(
            (first.seq, first.ts),
            (11, 3100),
            "first mapping keeps numbers"
        );
        assert_eq!(s.on_packet(1, h(12, 3100), false, t).unwrap().seq, 12);
        assert_eq!(s.current(), Some(1));
    }

    #[test]
    fn switch_waits_for_keyframe_and_continues_numbering() {
        let (mut s, t) = playing(2, h(1000, 90_000));
        let last = s.on_packet(2, h(1001, 90_000), false, t).unwrap();
        // The link got worse: down to layer 0. Layer 2 goes on until layer 0's keyframe.
        assert!(s.set_target(Some(0)));
        let t1 = t + Duration::from_millis(33);
        assert_eq!(s.on_packet(0, h(7, 5_000), false, t1), None);
        let still = s.on_packet(2, h(1002, 93_000), false, t1).unwrap();
        assert_eq!(
            still.seq,
            last.seq.wrapping_add(1),
            "no freeze while waiting"
        );
        let t2 = t + Duration::from_millis(66);
        let switched = s.on_packet(0, h(8, 8_000), true, t2).unwrap();
        assert_eq!(
            switched.seq,
            still.seq.wrapping_add(1),
            "one continuous stream"
        );
        assert!(
            switched.ts.wrapping_sub(still.ts) >= 2_970,
            "time moves on by the gap: {} -> {}",
            still.ts,
            switched.ts
        );
        assert!(switched.keyframe_start);
        assert_eq!(
            s.on_packet(2, h(1003, 96_000), false, t2),
            None,
            "old layer off"
        );
        assert_eq!(
            s.on_packet(0, h(9, 8_000), false, t2).unwrap().seq,
            switched.seq + 1
        );
        assert_eq!(s.current(), Some(0));
    }

    #[test]
    fn reset_waits_for_next_keyframe_without_renumbering() {
        let (mut s, t) = playing(0, h(100, 0));
        s.reset();
        assert!(
            !s.set_target(Some(0)),
            "same target: the caller asks for the keyframe"
        );
        assert_eq!(s.on_packet(0, h(101, 0), false, t), None);
        let k = s.on_packet(0, h(150, 9_000), true, t).unwrap();
        assert_eq!(
            k.seq, 150,
            "a gap the decoder sees as loss, not a renumbering"
        );
    }

    #[test]
    fn no_target_keeps_the_current_layer() {
        let (mut s, t) = playing(1, h(1, 0));
        assert!(!s.set_target(None));
        assert!(s.on_packet(1, h(2, 0), false, t).is_some());
    }
}
