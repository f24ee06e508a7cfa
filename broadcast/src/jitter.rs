//! One Opus input: a small adaptive jitter buffer in front of a libopus decoder.
//!
//! Packets are pushed as they arrive (RTP sequence number and payload); the mixer pulls one
//! 20 ms frame per tick. A missing packet is rebuilt from the next one's in-band FEC when that
//! has arrived (Opus LBRR, which the SFU negotiates), otherwise concealed by libopus (PLC).
//! After 200 ms with nothing the input goes idle and gives silence without concealment.
//!
//! Depth adapts: it starts at one packet ahead, grows by one after each underrun (up to
//! [`MAX_TARGET`]) and shrinks again after 10 s without one, so a clean link stays at about
//! 20 ms of buffering and a jittery one buys what it needs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dsp::{Frame, FRAME, RATE};

/// Most packets held ahead of the playout point before the oldest is dropped.
pub const MAX_TARGET: usize = 4;
const IDLE_AFTER: u32 = 10;
const MAX_QUEUE: usize = 50;

/// What a pull gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// Decoded audio; `arrived` is when the newest packet in it reached the hub.
    Audio {
        /// Arrival of the newest packet decoded.
        arrived: Instant,
    },
    /// A lost packet, rebuilt from FEC or concealed.
    Concealed,
    /// Nothing to play: silence.
    Idle,
}

/// Counters of one input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Packets decoded.
    pub decoded: u64,
    /// Lost packets rebuilt from the next packet's FEC.
    pub fec: u64,
    /// Lost packets concealed by PLC.
    pub concealed: u64,
    /// Packets that arrived after their turn, or beyond the buffer.
    pub dropped: u64,
    /// Packets libopus refused.
    pub corrupt: u64,
}

/// An Opus input with its jitter buffer.
pub struct OpusInput {
    decoder: opus::Decoder,
    queue: BTreeMap<u64, (Bytes, Instant)>,
    last_ext: Option<u64>,
    next: Option<u64>,
    pcm: VecDeque<f32>,
    scratch: Vec<f32>,
    target: usize,
    misses: u32,
    last_underrun: Option<Instant>,
    playing: bool,
    stats: InputStats,
}

impl std::fmt::Debug for OpusInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusInput")
            .field("queued", &self.queue.len())
            .field("target", &self.target)
            .field("playing", &self.playing)
            .finish()
    }
}

impl Default for OpusInput {
    fn default() -> Self {
        Self::new()
    }
}

impl OpusInput {
    /// A mono 48 kHz input (stereo packets are downmixed by libopus).
    pub fn new() -> Self {
        Self {
            decoder: opus::Decoder::new(RATE, opus::Channels::Mono)
                .expect("48 kHz mono is a valid Opus decoder"),
            queue: BTreeMap::new(),
            last_ext: None,
            next: None,
            pcm: VecDeque::with_capacity(4 * FRAME),
            scratch: vec![0.0; 5760],
            target: 1,
            misses: 0,
            last_underrun: None,
            playing: false,
            stats: InputStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> InputStats {
        self.stats
    }

    /// Whether the input is playing (not idle).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.last_ext {
            None => (1u64 << 16) + seq as u64,
            Some(last) => {
                let base = last & !0xFFFF;
                let cands = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
                cands
                    .iter()
                    .map(|b| b + seq as u64)
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(base + seq as u64)
            }
        };
        if self.last_ext.is_none_or(|l| ext > l) {
            self.last_ext = Some(ext);
        }
        ext
    }

    /// A packet arrived.
    pub fn push(&mut self, seq: u16, payload: Bytes, arrived: Instant) {
        if payload.is_empty() {
            return;
        }
        let ext = self.extend(seq);
        if self.next.is_some_and(|n| ext < n) || self.queue.contains_key(&ext) {
            self.stats.dropped += 1;
            return;
        }
        // A big jump (the publisher restarted, or a new source) starts over.
        if self.next.is_some_and(|n| ext > n + 500) {
            self.queue.clear();
            self.next = None;
            self.playing = false;
        }
        self.queue.insert(ext, (payload, arrived));
        while self.queue.len() > MAX_QUEUE {
            self.queue.pop_first();
            self.stats.dropped += 1;
        }
    }

    fn decode(&mut self, payload: &[u8], fec: bool) -> bool {
        // Concealment and FEC produce as many samples as the buffer asks: one packet's worth
        // (20 ms, what browsers send). A normal decode may hold up to 120 ms.
        let len = if fec || payload.is_empty() {
            FRAME
        } else {
            self.scratch.len()
        };
        match self
            .decoder
            .decode_float(payload, &mut self.scratch[..len], fec)
        {
            Ok(n) if n > 0 => {
                self.pcm.extend(&self.scratch[..n]);
                true
            }
            _ => false,
        }
    }

    /// One 20 ms frame into `out`.
    pub fn pull(&mut self, out: &mut Frame, now: Instant) -> Pulled {
        if self
            .last_underrun
            .is_some_and(|t| now - t > Duration::from_secs(10))
            && self.target > 1
        {
            self.target -= 1;
            self.last_underrun = Some(now);
        }
        if !self.playing {
            // Start when the buffer holds its target depth.
            if self.queue.len() < self.target {
                out.fill(0.0);
                return Pulled::Idle;
            }
            self.playing = true;
            self.misses = 0;
            self.pcm.clear();
            self.next = self.queue.first_key_value().map(|(k, _)| *k);
        }
        // Too far behind (a burst after a stall): drop the oldest to get back to the target.
        // Every frame of lateness held above is one more queued packet when they arrive.
        while self.queue.len() > self.target + 2 {
            if let Some((k, _)) = self.queue.pop_first() {
                self.stats.dropped += 1;
                self.next = Some(k + 1);
            }
        }
        let mut result = Pulled::Concealed;
        while self.pcm.len() < FRAME {
            let Some(next) = self.next else { break };
            if let Some((payload, arrived)) = self.queue.remove(&next) {
                self.next = Some(next + 1);
                self.misses = 0;
                if self.decode(&payload, false) {
                    self.stats.decoded += 1;
                    result = Pulled::Audio { arrived };
                } else {
                    self.stats.corrupt += 1;
                    self.decode(&[], false);
                }
                continue;
            }
            // The packet is missing.
            self.misses += 1;
            if self.misses > IDLE_AFTER {
                self.playing = false;
                self.queue.clear();
                self.pcm.clear();
                out.fill(0.0);
                return Pulled::Idle;
            }
            // Rebuilt from the next packet's in-band FEC when that is here.
            let fec = self.queue.get(&(next + 1)).map(|(p, _)| p.clone());
            if fec.is_some_and(|p| self.decode(&p, true)) {
                self.next = Some(next + 1);
                self.stats.fec += 1;
                break;
            }
            if self.queue.is_empty() && self.target < MAX_TARGET {
                // Underrun: nothing newer has come either. Conceal this frame but keep the
                // place: the buffer grows by one frame, so that a packet that is merely late
                // still plays, and a lost one can be rebuilt from its successor's FEC.
                self.target += 1;
                self.last_underrun = Some(now);
                self.decode(&[], false);
                self.stats.concealed += 1;
                break;
            }
            // Lost for good: conceal it and move on.
            self.next = Some(next + 1);
            self.decode(&[], false);
            self.stats.concealed += 1;
            break;
        }
        if self.pcm.len() < FRAME {
            // PLC gives exactly the last packet's duration; top up with more concealment.
            while self.pcm.len() < FRAME {
                if !self.decode(&[], false) {
                    self.pcm
                        .extend(std::iter::repeat_n(0.0, FRAME - self.pcm.len()));
                }
            }
        }
        for (o, s) in out.iter_mut().zip(self.pcm.drain(..FRAME)) {
            *o = s;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::sine;

    fn encoded(frames: usize, fec: bool) -> Vec<Bytes> {
        let mut enc =
            opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        if fec {
            enc.set_inband_fec(true).unwrap();
            enc.set_packet_loss_perc(20).unwrap();
        }
        sine(440.0, 0.3, frames)
            .iter()
            .map(|f| Bytes::from(enc.encode_vec_float(f, 1500).unwrap()))
            .collect()
    }

    /// An empty input, the time it starts at, and a frame to pull into.
    fn start() -> (OpusInput, Instant, [f32; FRAME]) {
        (OpusInput::new(), Instant::now(), [0f32; FRAME])
    }

    #[test]
    fn plays_in_order_despite_reordering_and_counts_nothing_lost() {
        let pkts = encoded(50, false);
        let (mut input, t0, mut out) = start();
        let mut audio = 0;
        // Pairs swapped on the way.
        for (i, pair) in pkts.chunks(2).enumerate() {
            let base = ((i * 2) as u16).wrapping_add(65_530); // crosses the sequence wrap
            for (j, p) in pair.iter().enumerate().rev() {
                input.push(base.wrapping_add(j as u16), p.clone(), t0);
            }
            for _ in 0..pair.len() {
                if matches!(input.pull(&mut out, t0), Pulled::Audio { .. }) {
                    audio += 1;
                }
            }
        }
        let s = input.stats();
        assert_eq!(s.decoded, 50);
        assert_eq!((s.fec, s.concealed, s.dropped), (0, 0, 0));
        assert_eq!(audio, 50);
    }

    #[test]
    fn a_lost_packet_comes_back_from_fec_when_the_next_one_is_there() {
        let pkts = encoded(30, true);
        let (mut input, t0, mut out) = start();
        // One packet of buffering; packet 10 is lost, 11 arrives before 10's turn.
        input.push(0, pkts[0].clone(), t0);
        for (i, p) in pkts.iter().enumerate().skip(1) {
            if i != 10 {
                input.push(i as u16, p.clone(), t0);
            }
            input.pull(&mut out, t0);
        }
        let s = input.stats();
        assert_eq!(s.fec, 1, "{s:?}");
        assert_eq!(s.decoded, 28); // and packet 29 waits in the buffer
        assert_eq!(input.queued(), 1);
    }

    #[test]
    fn underruns_deepen_the_buffer_then_silence_goes_idle() {
        let pkts = encoded(5, false);
        let (mut input, t0, mut out) = start();
        input.push(0, pkts[0].clone(), t0);
        assert!(matches!(input.pull(&mut out, t0), Pulled::Audio { .. }));
        // Nothing more arrives: concealment, then idle.
        assert_eq!(input.pull(&mut out, t0), Pulled::Concealed);
        assert!(input.target > 1);
        let mut idle = false;
        for _ in 0..12 {
            idle |= input.pull(&mut out, t0) == Pulled::Idle;
        }
        assert!(idle);
        assert!(!input.is_playing());
        assert!(out.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn a_loss_behind_an_underrun_is_rebuilt_from_fec_once_the_buffer_has_grown() {
        let pkts = encoded(20, true);
        let (mut input, t0, mut out) = start();
        // Packets arrive just after each tick; packet 3 is lost.
        for (i, p) in pkts.iter().enumerate() {
            input.pull(&mut out, t0);
            if i != 3 {
                input.push(i as u16, p.clone(), t0);
            }
        }
        let s = input.stats();
        // The first underrun grew the buffer; then the loss of 3 was rebuilt from 4's FEC.
        assert_eq!(s.fec, 1, "{s:?}");
        assert!(input.target >= 2);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let (mut input, t0, mut out) = start();
        input.push(1, Bytes::from_static(&[0xFF; 3]), t0);
        input.push(2, Bytes::from_static(&[0x00]), t0);
        for _ in 0..3 {
            input.pull(&mut out, t0);
        }
        assert!(out.iter().all(|s| s.is_finite()));
    }
}
