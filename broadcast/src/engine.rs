//! The bridge's core: every 20 ms [`Engine::tick`] turns the rooms' Opus packets and the
//! running announcements into one encoded frame per (feed, output format), and says which
//! outputs each frame goes to. Pure: packets and `now` come in as arguments; no sockets.
//!
//! # What each output plays
//! The highest-priority announcement that targets it (emergency, then priority, then normal;
//! the most recent first among equals); otherwise its room's meeting while the room's relay
//! runs (a [`OutputSpec::follows_relay`] output) or always (the room's HTTP stream).
//! Otherwise nothing: an RTP output sends no packets (paging adapters switch their amplifier
//! off), a [`OutputSpec::continuous`] one (Ogg over HTTP or Icecast) gets encoded silence so
//! its listeners stay connected.
//!
//! # Encoding once
//! A feed is mixed, filtered and levelled once. Outputs that play the same feed in the same
//! [`Format`] (codec, loudness target, gain) share one encoder, so a hundred clusters with
//! two formats cost two encodes per frame.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clip::Clip;
use crate::config::Codec;
use crate::dsp::filter::{BandError, SpeechBand};
use crate::dsp::g711;
use crate::dsp::limiter::TruePeakLimiter;
use crate::dsp::loudness::{Leveller, LevellerSettings, REFERENCE_LUFS};
use crate::dsp::resample::{Downsampler, NARROW_FRAME};
use crate::dsp::{db_to_gain, mix_into, Frame, SILENCE};
use crate::jitter::{InputStats, OpusInput, Pulled};

/// Ceiling of every output, dBTP (EBU R128).
pub const CEILING_DBTP: f64 = -1.0;

/// Which of a room's voices a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Voice {
    /// The chair's microphone.
    Chair,
    /// The microphone of the house holding the floor.
    Floor,
}

/// Priorities of Vietnamese commune radio (Circular 39/2020/TT-BTTTT).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Ordinary bulletins.
    #[default]
    Normal,
    /// Urgent notices.
    Priority,
    /// Disaster, fire, epidemic: interrupts everything on every cluster.
    Emergency,
}

/// How an output's audio is made; outputs with equal formats share one encode per frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Format {
    /// What its receivers decode.
    pub codec: Codec,
    /// Loudness target, LUFS.
    pub target_lufs: f64,
    /// Extra gain, dB.
    pub gain_db: f64,
}

impl Format {
    fn key(&self) -> FormatKey {
        (
            self.codec,
            (self.target_lufs * 10.0).round() as i32,
            (self.gain_db * 10.0).round() as i32,
        )
    }
}

type FormatKey = (Codec, i32, i32);

/// An output the engine feeds (a cluster, or a room's HTTP stream).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// Unique among outputs: a cluster's id, or `room:ROOM` for a room's HTTP stream.
    pub id: String,
    /// The room whose meeting it plays.
    pub room: String,
    /// How its audio is made.
    pub format: Format,
    /// Plays the room only while the room's relay runs (clusters); otherwise always (the
    /// room's HTTP stream).
    pub follows_relay: bool,
    /// Gets encoded silence when it has nothing to play (Ogg streams keep their listeners).
    pub continuous: bool,
}

/// Where an announcement's audio comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A decoded file; the announcement ends with it.
    Clip(Clip),
    /// A room's live voice (the chair speaking an emergency call); ends when stopped.
    Room(String),
}

/// Which outputs an announcement plays on. There is no "every output of every room": a chair
/// speaks for one room, and the bridge never lets one room's request reach another's
/// loudspeakers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every output of this room: its clusters and its HTTP stream.
    Room(String),
    /// These outputs (ids).
    Outputs(Vec<String>),
}

/// An announcement to play.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Unique among running announcements.
    pub id: String,
    /// Which announcement an output plays when several target it (then the most recent).
    pub priority: Priority,
    /// Where the audio comes from; a clip's announcement ends with the clip.
    pub source: Source,
    /// The outputs it plays on.
    pub targets: Targets,
    /// Play the chime first.
    pub chime: bool,
}

/// What feeds an output for one frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedKey {
    /// A room's meeting.
    Room(String),
    /// An announcement.
    Announcement(String),
    /// Encoded silence (a continuous output with nothing to play).
    Silence,
}

/// One encoded frame.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The codec of `payload`.
    pub codec: Codec,
    /// Payload: an Opus packet, or 160 G.711 bytes.
    pub payload: Bytes,
    /// Duration in the codec's RTP clock.
    pub samples: u32,
    /// Arrival of the newest meeting packet in it, for latency figures.
    pub arrived: Option<Instant>,
    /// What it carries.
    pub feed: FeedKey,
}

/// One frame and the outputs it goes to.
#[derive(Debug, Clone)]
pub struct Send {
    /// Ids of the outputs that get this frame.
    pub outputs: Vec<String>,
    /// The encoded frame, shared by every output of the same codec.
    pub frame: Arc<Encoded>,
}

/// The result of one tick.
#[derive(Debug, Default)]
pub struct Tick {
    /// Frames to send.
    pub sends: Vec<Send>,
    /// Announcements that played to their end in this tick.
    pub finished: Vec<String>,
}

/// Errors of the engine's commands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The id is taken; pick another or remove the old one first.
    #[error("'{0}' already exists")]
    Exists(String),
    /// No such output or announcement.
    #[error("there is no '{0}'")]
    NotFound(String),
    /// The speech band is not valid.
    #[error(transparent)]
    Band(#[from] BandError),
    /// The encoder refused its settings.
    #[error("encoder: {0}")]
    Encoder(String),
}

/// How the DSP chain runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineSettings {
    /// High-pass corner, Hz.
    pub band_low_hz: f32,
    /// Low-pass corner, Hz.
    pub band_high_hz: f32,
    /// Opus bitrate of the outputs, bit/s.
    pub opus_bitrate: i32,
    /// How the leveller moves toward the reference loudness.
    pub leveller: LevellerSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            band_low_hz: 150.0,
            band_high_hz: 7000.0,
            opus_bitrate: 32_000,
            leveller: LevellerSettings::default(),
        }
    }
}

struct RoomFeed {
    inputs: [OpusInput; 2],
    band: SpeechBand,
    leveller: Leveller,
    relay: bool,
}

struct Active {
    ann: Announcement,
    order: u64,
    chime_pos: Option<usize>,
    pos: usize,
    clip_gain: f32,
    chime_gain: f32,
    band: SpeechBand,
}

enum Coder {
    Opus(Box<opus::Encoder>),
    G711 { down: Box<Downsampler>, alaw: bool },
}

struct Variant {
    gain: f32,
    limiter: TruePeakLimiter,
    coder: Coder,
    used: bool,
}

/// The bridge's core.
pub struct Engine {
    settings: EngineSettings,
    rooms: HashMap<String, RoomFeed>,
    outputs: BTreeMap<String, OutputSpec>,
    announcements: Vec<Active>,
    variants: HashMap<(FeedKey, FormatKey), Variant>,
    next_order: u64,
    chime: Clip,
    idle: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("outputs", &self.outputs.len())
            .field("announcements", &self.announcements.len())
            .finish()
    }
}

/// Static gain that brings a clip to the reference loudness (silence stays as it is).
fn clip_gain(clip: &Clip) -> f32 {
    if clip.lufs().is_finite() {
        db_to_gain((REFERENCE_LUFS - clip.lufs()).clamp(-30.0, 30.0))
    } else {
        1.0
    }
}

impl Engine {
    /// An engine with no outputs.
    pub fn new(settings: EngineSettings) -> Result<Self, EngineError> {
        SpeechBand::new(settings.band_low_hz, settings.band_high_hz)?;
        Ok(Self {
            settings,
            rooms: HashMap::new(),
            outputs: BTreeMap::new(),
            announcements: Vec::new(),
            variants: HashMap::new(),
            next_order: 0,
            chime: Clip::chime(),
            idle: std::collections::HashSet::new(),
        })
    }

    fn band(&self) -> SpeechBand {
        SpeechBand::new(self.settings.band_low_hz, self.settings.band_high_hz)
            .expect("checked in Engine::new")
    }

    fn room_mut(&mut self, room: &str) -> &mut RoomFeed {
        if !self.rooms.contains_key(room) {
            let feed = RoomFeed {
                inputs: [OpusInput::new(), OpusInput::new()],
                band: self.band(),
                leveller: Leveller::new(self.settings.leveller),
                relay: false,
            };
            self.rooms.insert(room.to_owned(), feed);
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    /// Add an output.
    pub fn add_output(&mut self, spec: OutputSpec) -> Result<(), EngineError> {
        if self.outputs.contains_key(&spec.id) {
            return Err(EngineError::Exists(spec.id));
        }
        self.room_mut(&spec.room.clone());
        self.outputs.insert(spec.id.clone(), spec);
        Ok(())
    }

    /// Remove an output.
    pub fn remove_output(&mut self, id: &str) -> Result<(), EngineError> {
        self.outputs
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| EngineError::NotFound(id.to_owned()))
    }

    /// Mark an output as having nobody to hear it (an HTTP stream with no listener): it is
    /// not encoded while so. The feed is still decoded and levelled, so that a listener who
    /// comes gets the right level at once.
    pub fn set_idle(&mut self, output: &str, idle: bool) {
        if idle {
            if !self.idle.contains(output) {
                self.idle.insert(output.to_owned());
            }
        } else {
            self.idle.remove(output);
        }
    }

    /// Every output the engine feeds, in no set order.
    pub fn outputs(&self) -> impl Iterator<Item = &OutputSpec> {
        self.outputs.values()
    }

    /// A packet of a room's voice arrived.
    pub fn push(&mut self, room: &str, voice: Voice, seq: u16, payload: Bytes, now: Instant) {
        let i = voice as usize;
        self.room_mut(room).inputs[i].push(seq, payload, now);
    }

    /// Start or stop a room's relay to its clusters.
    pub fn set_relay(&mut self, room: &str, on: bool) {
        self.room_mut(room).relay = on;
    }

    /// Whether a room's relay runs.
    pub fn relay(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.relay)
    }

    /// Jitter-buffer counters of a room's voices.
    pub fn input_stats(&self, room: &str) -> Option<[InputStats; 2]> {
        self.rooms
            .get(room)
            .map(|r| [r.inputs[0].stats(), r.inputs[1].stats()])
    }

    /// Start an announcement.
    pub fn announce(&mut self, ann: Announcement) -> Result<(), EngineError> {
        if self.announcements.iter().any(|a| a.ann.id == ann.id) {
            return Err(EngineError::Exists(ann.id));
        }
        if let Targets::Outputs(ids) = &ann.targets {
            if let Some(missing) = ids.iter().find(|id| !self.outputs.contains_key(*id)) {
                return Err(EngineError::NotFound(missing.clone()));
            }
        }
        if let Source::Room(room) = &ann.source {
            self.room_mut(&room.clone());
        }
        let clip_gain = match &ann.source {
            Source::Clip(c) => clip_gain(c),
            Source::Room(_) => 1.0,
        };
        self.next_order += 1;
        self.announcements.push(Active {
            chime_pos: ann.chime.then_some(0),
            ann,
            order: self.next_order,
            pos: 0,
            clip_gain,
            chime_gain: clip_gain_of_chime(&self.chime),
            band: self.band(),
        });
        Ok(())
    }

    /// Stop an announcement now.
    pub fn stop_announcement(&mut self, id: &str) -> Result<(), EngineError> {
        let before = self.announcements.len();
        self.announcements.retain(|a| a.ann.id != id);
        if self.announcements.len() == before {
            return Err(EngineError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Running announcements: id and priority.
    pub fn announcements(&self) -> impl Iterator<Item = (&str, Priority)> {
        self.announcements
            .iter()
            .map(|a| (a.ann.id.as_str(), a.ann.priority))
    }

    /// What an output plays now.
    pub fn selection(&self, output: &str) -> Option<FeedKey> {
        let spec = self.outputs.get(output)?;
        self.select(spec)
    }

    fn select(&self, spec: &OutputSpec) -> Option<FeedKey> {
        let best = self
            .announcements
            .iter()
            .filter(|a| match &a.ann.targets {
                Targets::Room(room) => *room == spec.room,
                Targets::Outputs(ids) => ids.contains(&spec.id),
            })
            .max_by_key(|a| (a.ann.priority, a.order));
        if let Some(a) = best {
            return Some(FeedKey::Announcement(a.ann.id.clone()));
        }
        let room = self.rooms.get(&spec.room)?;
        if !spec.follows_relay || room.relay {
            return Some(FeedKey::Room(spec.room.clone()));
        }
        spec.continuous.then_some(FeedKey::Silence)
    }

    /// Advance 20 ms.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick::default();
        // 1. Every room's meeting, levelled. Inputs are pulled every tick to keep time.
        let mut room_frames: HashMap<String, (Frame, Option<Instant>)> = HashMap::new();
        for (name, room) in &mut self.rooms {
            let mut mix = SILENCE;
            let mut arrived = None;
            let mut active = false;
            for input in &mut room.inputs {
                let mut f = SILENCE;
                match input.pull(&mut f, now) {
                    Pulled::Audio { arrived: a } => {
                        arrived = arrived.max(Some(a));
                        active = true;
                    }
                    Pulled::Concealed => active = true,
                    Pulled::Idle => continue,
                }
                mix_into(&mut mix, &f);
            }
            room.band.process(&mut mix);
            if active {
                room.leveller.process(&mut mix);
            }
            room_frames.insert(name.clone(), (mix, arrived));
        }
        // 2. Announcements.
        let mut ann_frames: HashMap<String, (Frame, Option<Instant>)> = HashMap::new();
        for a in &mut self.announcements {
            let mut f = SILENCE;
            let mut arrived = None;
            if let Some(p) = a.chime_pos {
                match self.chime.frame(p) {
                    Some(c) => {
                        f = c;
                        for s in &mut f {
                            *s *= a.chime_gain;
                        }
                        a.chime_pos = Some(p + 1);
                    }
                    None => a.chime_pos = None,
                }
            }
            if a.chime_pos.is_none() {
                match &a.ann.source {
                    Source::Clip(clip) => match clip.frame(a.pos) {
                        Some(c) => {
                            f = c;
                            a.band.process(&mut f);
                            for s in &mut f {
                                *s *= a.clip_gain;
                            }
                            a.pos += 1;
                        }
                        None => {
                            tick.finished.push(a.ann.id.clone());
                            continue;
                        }
                    },
                    Source::Room(r) => {
                        if let Some((rf, ar)) = room_frames.get(r) {
                            f = *rf;
                            arrived = *ar;
                        }
                    }
                }
            }
            ann_frames.insert(a.ann.id.clone(), (f, arrived));
        }
        self.announcements
            .retain(|a| !tick.finished.contains(&a.ann.id));
        // 3. Who plays what, grouped by (feed, format).
        let mut groups: BTreeMap<(FeedKey, FormatKey), (Format, Vec<String>)> = BTreeMap::new();
        for spec in self.outputs.values() {
            if self.idle.contains(&spec.id) {
                continue;
            }
            let Some(feed) = self.select(spec) else {
                continue;
            };
            groups
                .entry((feed, spec.format.key()))
                .or_insert_with(|| (spec.format, Vec::new()))
                .1
                .push(spec.id.clone());
        }
        // 4. Encode once per group.
        for v in self.variants.values_mut() {
            v.used = false;
        }
        for ((feed, _), (format, outputs)) in groups {
            let (frame, arrived) = match &feed {
                FeedKey::Room(r) => room_frames.get(r).copied().unwrap_or((SILENCE, None)),
                FeedKey::Announcement(a) => ann_frames.get(a).copied().unwrap_or((SILENCE, None)),
                FeedKey::Silence => (SILENCE, None),
            };
            let key = (feed.clone(), format.key());
            if !self.variants.contains_key(&key) {
                match new_variant(&format, self.settings.opus_bitrate) {
                    Ok(v) => {
                        self.variants.insert(key.clone(), v);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create an encoder");
                        continue;
                    }
                }
            }
            let v = self.variants.get_mut(&key).expect("inserted above");
            v.used = true;
            let Some((payload, samples)) = v.encode(frame) else {
                continue;
            };
            tick.sends.push(Send {
                outputs,
                frame: Arc::new(Encoded {
                    codec: format.codec,
                    payload,
                    samples,
                    arrived,
                    feed,
                }),
            });
        }
        // Encoders nobody used this tick are dropped: the next user starts clean.
        self.variants.retain(|_, v| v.used);
        tick
    }
}

fn clip_gain_of_chime(chime: &Clip) -> f32 {
    clip_gain(chime)
}

fn new_variant(format: &Format, bitrate: i32) -> Result<Variant, EngineError> {
    let coder = match format.codec {
        Codec::Opus => {
            let enc = || -> Result<opus::Encoder, opus::Error> {
                let mut e =
                    opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
                e.set_bitrate(opus::Bitrate::Bits(bitrate))?;
                // Receivers on 4G lose packets: in-band FEC lets them rebuild one.
                e.set_inband_fec(true)?;
                e.set_packet_loss_perc(5)?;
                Ok(e)
            };
            Coder::Opus(Box::new(
                enc().map_err(|e| EngineError::Encoder(e.to_string()))?,
            ))
        }
        Codec::Pcmu | Codec::Pcma => Coder::G711 {
            down: Box::new(Downsampler::new()),
            alaw: format.codec == Codec::Pcma,
        },
    };
    Ok(Variant {
        gain: db_to_gain(format.target_lufs - REFERENCE_LUFS + format.gain_db),
        limiter: TruePeakLimiter::new(CEILING_DBTP),
        coder,
        used: true,
    })
}

impl Variant {
    fn encode(&mut self, mut frame: Frame) -> Option<(Bytes, u32)> {
        for s in &mut frame {
            *s *= self.gain;
        }
        self.limiter.process(&mut frame);
        match &mut self.coder {
            Coder::Opus(e) => {
                let mut buf = [0u8; 1275];
                match e.encode_float(&frame, &mut buf) {
                    Ok(n) => Some((Bytes::copy_from_slice(&buf[..n]), 960)),
                    Err(err) => {
                        tracing::warn!(error = %err, "Opus encode failed");
                        None
                    }
                }
            }
            Coder::G711 { down, alaw } => {
                let narrow = down.process(&frame);
                let mut out = Vec::with_capacity(NARROW_FRAME);
                for &s in narrow.iter() {
                    let x = g711::to_i16(s);
                    out.push(if *alaw {
                        g711::alaw_encode(x)
                    } else {
                        g711::ulaw_encode(x)
                    });
                }
                Some((Bytes::from(out), NARROW_FRAME as u32))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::sine;
    use crate::dsp::FRAME;
    use std::time::Duration;

    fn out(id: &str, codec: Codec, target: f64, relay: bool, continuous: bool) -> OutputSpec {
        OutputSpec {
            id: id.into(),
            room: "demo".into(),
            format: Format {
                codec,
                target_lufs: target,
                gain_db: 0.0,
            },
            follows_relay: relay,
            continuous,
        }
    }

    /// An engine of the default settings with `outputs`.
    fn engine(outputs: impl IntoIterator<Item = OutputSpec>) -> Engine {
        let mut e = Engine::new(EngineSettings::default()).unwrap();
        for o in outputs {
            e.add_output(o).unwrap();
        }
        e
    }

    /// An engine fed a 440 Hz tone at `amp` from the chair for `secs`; returns each output's
    /// frames, decoded back to 48 kHz (G.711 at 8 kHz).
    fn run(
        engine: &mut Engine,
        amp: f32,
        frames: usize,
        mut each: impl FnMut(usize, &mut Engine),
    ) -> HashMap<String, Vec<f32>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut decoders: HashMap<String, opus::Decoder> = HashMap::new();
        let mut got: HashMap<String, Vec<f32>> = HashMap::new();
        let t0 = Instant::now();
        for (i, f) in sine(440.0, amp, frames).iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let p = enc.encode_vec_float(f, 1500).unwrap();
            engine.push("demo", Voice::Chair, i as u16, p.into(), now);
            each(i, engine);
            for send in engine.tick(now).sends {
                for o in &send.outputs {
                    let pcm: Vec<f32> = match send.frame.codec {
                        Codec::Opus => {
                            let d = decoders.entry(o.clone()).or_insert_with(|| {
                                opus::Decoder::new(48_000, opus::Channels::Mono).unwrap()
                            });
                            let mut buf = [0f32; FRAME];
                            let n = d
                                .decode_float(&send.frame.payload, &mut buf, false)
                                .unwrap();
                            buf[..n].to_vec()
                        }
                        Codec::Pcmu => send
                            .frame
                            .payload
                            .iter()
                            .map(|c| g711::ulaw_decode(*c) as f32 / 32768.0)
                            .collect(),
                        Codec::Pcma => send
                            .frame
                            .payload
                            .iter()
                            .map(|c| g711::alaw_decode(*c) as f32 / 32768.0)
                            .collect(),
                    };
                    got.entry(o.clone()).or_default().extend(pcm);
                }
            }
        }
        got
    }

    fn lufs(samples: &[f32], rate: u32) -> f64 {
        let mut m = ebur128::EbuR128::new(1, rate, ebur128::Mode::I).unwrap();
        m.add_frames_f32(samples).unwrap();
        m.loudness_global().unwrap()
    }

    #[test]
    fn each_output_reaches_its_loudness_target_whatever_the_input_level() {
        for amp in [0.03, 0.5] {
            let mut e = engine([
                out("opus-16", Codec::Opus, -16.0, true, false),
                out("opus-23", Codec::Opus, -23.0, true, false),
                out("pcmu-18", Codec::Pcmu, -18.0, true, false),
                out("pcma-18", Codec::Pcma, -18.0, true, false),
            ]);
            e.set_relay("demo", true);
            let got = run(&mut e, amp, 600, |_, _| {});
            // After the leveller has settled (6 s on).
            for (id, target, rate) in [
                ("opus-16", -16.0, 48_000),
                ("opus-23", -23.0, 48_000),
                ("pcmu-18", -18.0, 8_000),
                ("pcma-18", -18.0, 8_000),
            ] {
                let s = &got[id];
                let l = lufs(&s[s.len() / 2..], rate);
                assert!((l - target).abs() < 1.0, "amp {amp}, {id}: {l:.2} LUFS");
            }
        }
    }

    #[test]
    fn one_encode_per_feed_and_format_however_many_outputs() {
        let mut e = Engine::new(EngineSettings::default()).unwrap();
        for i in 0..50 {
            e.add_output(out(&format!("a{i}"), Codec::Opus, -16.0, true, false))
                .unwrap();
            e.add_output(out(&format!("b{i}"), Codec::Pcmu, -16.0, true, false))
                .unwrap();
        }
        e.set_relay("demo", true);
        e.push(
            "demo",
            Voice::Chair,
            0,
            Bytes::from_static(&[0xF8, 0xFF, 0xFE]),
            Instant::now(),
        );
        let t = e.tick(Instant::now());
        assert_eq!(t.sends.len(), 2);
        assert!(t.sends.iter().all(|s| s.outputs.len() == 50));
    }

    #[test]
    fn clusters_play_only_while_the_relay_runs_but_the_room_stream_always_does() {
        let mut e = engine([
            out("rtp", Codec::Opus, -16.0, true, false),
            out("ice", Codec::Opus, -16.0, true, true),
            out("room:demo", Codec::Opus, -16.0, false, true),
        ]);
        assert_eq!(e.selection("rtp"), None);
        assert_eq!(e.selection("ice"), Some(FeedKey::Silence));
        assert_eq!(e.selection("room:demo"), Some(FeedKey::Room("demo".into())));
        let t = e.tick(Instant::now());
        let mut sent: Vec<&String> = t.sends.iter().flat_map(|s| &s.outputs).collect();
        sent.sort();
        assert_eq!(sent, ["ice", "room:demo"]);
        e.set_relay("demo", true);
        assert_eq!(e.selection("rtp"), Some(FeedKey::Room("demo".into())));
        assert_eq!(e.selection("ice"), Some(FeedKey::Room("demo".into())));
    }

    #[test]
    fn an_emergency_interrupts_every_output_then_the_meeting_resumes() {
        let mut e = engine([
            out("a", Codec::Opus, -16.0, true, false),
            out("b", Codec::Pcmu, -16.0, true, false),
            out("room:demo", Codec::Opus, -16.0, false, true),
        ]);
        e.set_relay("demo", true);
        // A scheduled normal bulletin on "a" only, then an emergency everywhere.
        let bulletin = Clip::from_samples(&vec![0.1; 48_000 * 10]);
        e.announce(Announcement {
            id: "bulletin".into(),
            priority: Priority::Normal,
            source: Source::Clip(bulletin),
            targets: Targets::Outputs(vec!["a".into()]),
            chime: false,
        })
        .unwrap();
        assert_eq!(
            e.selection("a"),
            Some(FeedKey::Announcement("bulletin".into()))
        );
        assert_eq!(e.selection("b"), Some(FeedKey::Room("demo".into())));
        let alarm: Vec<f32> = sine(1000.0, 0.5, 50).into_iter().flatten().collect();
        e.announce(Announcement {
            id: "flood".into(),
            priority: Priority::Emergency,
            source: Source::Clip(Clip::from_samples(&alarm)),
            targets: Targets::Room("demo".into()),
            chime: true,
        })
        .unwrap();
        for id in ["a", "b", "room:demo"] {
            assert_eq!(
                e.selection(id),
                Some(FeedKey::Announcement("flood".into())),
                "{id}"
            );
        }
        // Chime (about 2.3 s) plus 1 s of alarm, then it ends by itself.
        let mut finished = Vec::new();
        for _ in 0..200 {
            finished.extend(e.tick(Instant::now()).finished);
        }
        assert_eq!(finished, ["flood"]);
        assert_eq!(
            e.selection("a"),
            Some(FeedKey::Announcement("bulletin".into()))
        );
        assert_eq!(e.selection("b"), Some(FeedKey::Room("demo".into())));
        assert_eq!(e.selection("room:demo"), Some(FeedKey::Room("demo".into())));
        assert_eq!(
            e.stop_announcement("flood"),
            Err(EngineError::NotFound("flood".into()))
        );
    }

    #[test]
    fn a_live_emergency_carries_the_room_voice_to_other_rooms_clusters() {
        let mut e = engine([OutputSpec {
            room: "other".into(),
            ..out("x", Codec::Opus, -16.0, true, false)
        }]);
        e.announce(Announcement {
            id: "live".into(),
            priority: Priority::Emergency,
            source: Source::Room("demo".into()),
            targets: Targets::Room("other".into()),
            chime: false,
        })
        .unwrap();
        let got = run(&mut e, 0.3, 300, |_, _| {});
        let l = lufs(&got["x"][48_000 * 3..], 48_000);
        assert!((l + 16.0).abs() < 1.0, "{l}");
        e.stop_announcement("live").unwrap();
        assert_eq!(e.selection("x"), None);
    }

    #[test]
    fn a_room_wide_announcement_stays_in_its_room() {
        let mut e = engine([
            out("a", Codec::Opus, -16.0, true, false),
            OutputSpec {
                room: "other".into(),
                ..out("x", Codec::Opus, -16.0, true, false)
            },
        ]);
        e.set_relay("other", true);
        e.announce(Announcement {
            id: "flood".into(),
            priority: Priority::Emergency,
            source: Source::Clip(Clip::chime()),
            targets: Targets::Room("demo".into()),
            chime: false,
        })
        .unwrap();
        assert_eq!(
            e.selection("a"),
            Some(FeedKey::Announcement("flood".into()))
        );
        assert_eq!(e.selection("x"), Some(FeedKey::Room("other".into())));
    }

    #[test]
    fn an_output_nobody_hears_is_not_encoded() {
        let mut e = engine([out("room:demo", Codec::Opus, -16.0, false, true)]);
        e.set_idle("room:demo", true);
        assert!(e.tick(Instant::now()).sends.is_empty());
        e.set_idle("room:demo", false);
        assert_eq!(e.tick(Instant::now()).sends.len(), 1);
    }

    #[test]
    fn bad_commands_are_refused_and_change_nothing() {
        let mut e = engine([out("a", Codec::Opus, -16.0, true, false)]);
        assert_eq!(
            e.add_output(out("a", Codec::Opus, -16.0, true, false)),
            Err(EngineError::Exists("a".into()))
        );
        let ann = Announcement {
            id: "n".into(),
            priority: Priority::Normal,
            source: Source::Clip(Clip::chime()),
            targets: Targets::Outputs(vec!["nope".into()]),
            chime: false,
        };
        assert_eq!(e.announce(ann), Err(EngineError::NotFound("nope".into())));
        assert_eq!(e.announcements().count(), 0);
        assert!(Engine::new(EngineSettings {
            band_low_hz: 9000.0,
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn latency_through_the_core_is_a_frame_or_two() {
        let mut e = engine([out("a", Codec::Opus, -16.0, true, false)]);
        e.set_relay("demo", true);
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let t0 = Instant::now();
        let mut worst = Duration::ZERO;
        for (i, f) in sine(440.0, 0.3, 100).iter().enumerate() {
            // Packets arrive 7 ms before each tick.
            let tick_at = t0 + Duration::from_millis(20 * i as u64 + 20);
            e.push(
                "demo",
                Voice::Chair,
                i as u16,
                enc.encode_vec_float(f, 1500).unwrap().into(),
                tick_at - Duration::from_millis(7),
            );
            for s in e.tick(tick_at).sends {
                if let Some(a) = s.frame.arrived {
                    worst = worst.max(tick_at - a);
                }
            }
        }
        assert!(worst <= Duration::from_millis(27), "{worst:?}");
    }
}
