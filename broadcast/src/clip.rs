//! Announcement audio: decoded from a WAV or Ogg/Opus file to 48 kHz mono, with its
//! integrated loudness measured so it plays at the same level as the meeting.
//!
//! # Bounds
//! A file's decoded size is bounded before any sample is decoded: a WAV header gives the
//! duration (data length ÷ block size ÷ rate) and the file's own length bounds what a lying
//! header can claim; anything over [`MAX_SECONDS`], over [`MAX_CHANNELS`] channels or outside
//! [`MIN_RATE`]..=[`MAX_RATE`] is refused from the header. Ogg/Opus is counted as it decodes
//! and stops at [`MAX_SECONDS`]. Decoding streams: samples are mixed to mono and resampled a
//! chunk at a time, so nothing but the result is ever held, and [`inspect`] (what an upload
//! needs: is it playable, how long, how loud) holds no samples at all. A [`Clip`] keeps 16-bit
//! samples: at most [`MAX_SECONDS`] × 48 000 × 2 bytes (346 MB for an hour).

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

use ebur128::{EbuR128, Mode};

use crate::dsp::resample::StreamResampler;
use crate::dsp::{chime, Frame, FRAME, RATE, SILENCE};

/// Longest announcement accepted: one hour.
pub const MAX_SECONDS: u64 = 3600;
/// Most channels a WAV may have (they are mixed to mono).
pub const MAX_CHANNELS: u16 = 8;
/// Lowest sample rate accepted, Hz.
pub const MIN_RATE: u32 = 8_000;
/// Highest sample rate accepted, Hz.
pub const MAX_RATE: u32 = 192_000;

/// Why a file cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    /// Neither WAV nor Ogg/Opus; convert it (`ffmpeg -i in.mp3 out.wav`).
    #[error("unsupported audio format: give a WAV or an Ogg/Opus file")]
    Format,
    /// The file is damaged or uses an encoding this hub does not read.
    #[error("cannot decode the file: {0}")]
    Decode(String),
    /// No audio in it.
    #[error("the file holds no audio")]
    Empty,
    /// Longer than [`MAX_SECONDS`]; cut it.
    #[error("the file is longer than {MAX_SECONDS} s")]
    TooLong,
    /// A sample rate or channel count outside the bounds; convert it
    /// (`ffmpeg -i in.wav -ac 1 -ar 48000 out.wav`).
    #[error("{0}")]
    Shape(String),
}

/// What [`inspect`] finds in a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipInfo {
    /// Duration at 48 kHz, in 20 ms frames (the last one padded with silence).
    pub frames: usize,
    /// Integrated loudness, LUFS (minus infinity for silence).
    pub lufs: f64,
}

impl ClipInfo {
    /// Duration, seconds.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 * FRAME as f64 / RATE as f64
    }
}

/// Decoded audio, 48 kHz mono, cut into 20 ms frames of 16-bit samples.
#[derive(Debug, Clone)]
pub struct Clip {
    frames: Arc<[[i16; FRAME]]>,
    lufs: f64,
}

/// Check a file from its header and measure it, holding no samples: what an upload needs.
pub fn inspect(bytes: &[u8]) -> Result<ClipInfo, ClipError> {
    inspect_reader(Cursor::new(bytes))
}

/// [`inspect`] a file read as it goes (an upload written to disk), holding neither the file
/// nor its samples.
pub fn inspect_reader(reader: impl Read + Seek) -> Result<ClipInfo, ClipError> {
    let mut meter = Meter::new();
    let mut frames = 0usize;
    decode_frames(reader, &mut |f: &Frame| {
        meter.add(f);
        frames += 1;
    })?;
    Ok(ClipInfo {
        frames,
        lufs: meter.lufs(),
    })
}

impl Clip {
    /// Decode a file's bytes (WAV or Ogg/Opus, recognised by their magic bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, ClipError> {
        let mut frames = Vec::with_capacity(frames_bound(bytes));
        let mut meter = Meter::new();
        decode_frames(Cursor::new(bytes), &mut |f: &Frame| {
            meter.add(f);
            frames.push(quantise(f));
        })?;
        Ok(Self {
            frames: frames.into(),
            lufs: meter.lufs(),
        })
    }

    /// The synthesised chime.
    pub fn chime() -> Self {
        Self::from_frames(&chime::chime())
    }

    /// From 48 kHz mono samples.
    pub fn from_samples(samples: &[f32]) -> Self {
        let frames: Vec<Frame> = samples
            .chunks(FRAME)
            .map(|c| {
                let mut f = SILENCE;
                f[..c.len()].copy_from_slice(c);
                f
            })
            .collect();
        Self::from_frames(&frames)
    }

    fn from_frames(frames: &[Frame]) -> Self {
        let mut meter = Meter::new();
        for f in frames {
            meter.add(f);
        }
        Self {
            frames: frames.iter().map(quantise).collect(),
            lufs: meter.lufs(),
        }
    }

    /// Frame `i`, if the clip is that long.
    pub fn frame(&self, i: usize) -> Option<Frame> {
        let q = self.frames.get(i)?;
        let mut f = SILENCE;
        for (d, s) in f.iter_mut().zip(q) {
            *d = *s as f32 / 32768.0;
        }
        Some(f)
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it has no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Duration, seconds.
    pub fn seconds(&self) -> f64 {
        self.frames.len() as f64 * FRAME as f64 / RATE as f64
    }

    /// Integrated loudness, LUFS (minus infinity for silence), measured before the samples
    /// were rounded to 16 bits.
    pub fn lufs(&self) -> f64 {
        self.lufs
    }

    /// Memory the samples take, bytes.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.frames)
    }
}

fn quantise(f: &Frame) -> [i16; FRAME] {
    let mut q = [0i16; FRAME];
    for (d, s) in q.iter_mut().zip(f) {
        *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    }
    q
}

/// BS.1770 integrated loudness, fed a frame at a time.
struct Meter(EbuR128);

impl Meter {
    fn new() -> Self {
        Self(EbuR128::new(1, RATE, Mode::I).expect("mono 48 kHz is supported"))
    }
    fn add(&mut self, f: &Frame) {
        // Cannot fail for a mono frame of f32s.
        let _ = self.0.add_frames_f32(f);
    }
    fn lufs(&self) -> f64 {
        self.0.loudness_global().unwrap_or(f64::NEG_INFINITY)
    }
}

/// 48 kHz samples cut into 20 ms frames for a sink; the last frame is padded with silence.
struct Framer<'a> {
    cur: Frame,
    n: usize,
    total: u64,
    sink: &'a mut dyn FnMut(&Frame),
}

impl Framer<'_> {
    fn push(&mut self, mut s: &[f32]) -> Result<(), ClipError> {
        self.total += s.len() as u64;
        if self.total > MAX_SECONDS * RATE as u64 {
            return Err(ClipError::TooLong);
        }
        while !s.is_empty() {
            let k = (FRAME - self.n).min(s.len());
            self.cur[self.n..self.n + k].copy_from_slice(&s[..k]);
            self.n += k;
            s = &s[k..];
            if self.n == FRAME {
                (self.sink)(&self.cur);
                self.n = 0;
            }
        }
        Ok(())
    }
    fn finish(mut self) -> Result<(), ClipError> {
        if self.total == 0 {
            return Err(ClipError::Empty);
        }
        if self.n > 0 {
            self.cur[self.n..].fill(0.0);
            (self.sink)(&self.cur);
        }
        Ok(())
    }
}

/// The most 20 ms frames a file of this size can decode to (for reserving memory: a header
/// may claim more than the file holds).
fn frames_bound(bytes: &[u8]) -> usize {
    let Ok(r) = hound::WavReader::new(Cursor::new(bytes)) else {
        return 0;
    };
    let spec = r.spec();
    let block = (spec.bits_per_sample as usize).div_ceil(8) * spec.channels.max(1) as usize;
    let held = bytes.len() / block.max(1);
    let claimed = r.duration() as usize;
    let at_48k = held.min(claimed) as u64 * RATE as u64 / spec.sample_rate.max(1) as u64;
    (at_48k.min(MAX_SECONDS * RATE as u64) as usize).div_ceil(FRAME) + 1
}

/// Decode a file into 48 kHz mono frames, streaming.
fn decode_frames(
    mut reader: impl Read + Seek,
    sink: &mut dyn FnMut(&Frame),
) -> Result<(), ClipError> {
    let mut framer = Framer {
        cur: SILENCE,
        n: 0,
        total: 0,
        sink,
    };
    let mut magic = Vec::with_capacity(4);
    (&mut reader)
        .take(4)
        .read_to_end(&mut magic)
        .and_then(|_| reader.seek(SeekFrom::Start(0)))
        .map_err(|e| ClipError::Decode(e.to_string()))?;
    match &magic[..] {
        b"RIFF" => decode_wav(reader, &mut framer)?,
        b"OggS" => decode_ogg_opus(reader, &mut framer)?,
        _ => return Err(ClipError::Format),
    }
    framer.finish()
}

/// Samples per channel read at a time.
const WAV_CHUNK: usize = 4800;

fn decode_wav(reader: impl Read, out: &mut Framer<'_>) -> Result<(), ClipError> {
    let err = |e: hound::Error| ClipError::Decode(e.to_string());
    let mut r = hound::WavReader::new(reader).map_err(err)?;
    let spec = r.spec();
    if !(1..=MAX_CHANNELS).contains(&spec.channels) {
        return Err(ClipError::Shape(format!(
            "{} channels: 1 to {MAX_CHANNELS} are accepted",
            spec.channels
        )));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(ClipError::Shape(format!(
            "sample rate {} Hz: {MIN_RATE} to {MAX_RATE} Hz are accepted",
            spec.sample_rate
        )));
    }
    // The header's duration, checked before any sample is read.
    if r.duration() as u64 > MAX_SECONDS * spec.sample_rate as u64 {
        return Err(ClipError::TooLong);
    }
    let ch = spec.channels as usize;
    let mut resampler = StreamResampler::new(spec.sample_rate).map_err(ClipError::Decode)?;
    let mut mono = Vec::with_capacity(WAV_CHUNK);
    let mut failed = None;
    let mut emit = |s: &[f32]| {
        if failed.is_none() {
            if let Err(e) = out.push(s) {
                failed = Some(e);
            }
        }
    };
    let mut frame = [0f32; MAX_CHANNELS as usize];
    let mut k = 0;
    let mut add = |v: f32, mono: &mut Vec<f32>| {
        frame[k] = v;
        k += 1;
        if k == ch {
            mono.push(frame[..ch].iter().sum::<f32>() / ch as f32);
            k = 0;
        }
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for v in r.samples::<f32>() {
                add(v.map_err(err)?, &mut mono);
                if mono.len() == WAV_CHUNK {
                    resampler
                        .push(&mono, &mut emit)
                        .map_err(ClipError::Decode)?;
                    mono.clear();
                }
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample.clamp(8, 32) - 1)) as f32;
            for v in r.samples::<i32>() {
                add(v.map_err(err)? as f32 * scale, &mut mono);
                if mono.len() == WAV_CHUNK {
                    resampler
                        .push(&mono, &mut emit)
                        .map_err(ClipError::Decode)?;
                    mono.clear();
                }
            }
        }
    }
    resampler
        .push(&mono, &mut emit)
        .map_err(ClipError::Decode)?;
    resampler.finish(&mut emit).map_err(ClipError::Decode)?;
    failed.map_or(Ok(()), Err)
}

fn decode_ogg_opus(reader: impl Read + Seek, out: &mut Framer<'_>) -> Result<(), ClipError> {
    let mut reader = ogg::PacketReader::new(reader);
    let head = reader
        .read_packet()
        .map_err(|e| ClipError::Decode(e.to_string()))?
        .ok_or(ClipError::Empty)?;
    if !head.data.starts_with(b"OpusHead") || head.data.len() < 19 {
        return Err(ClipError::Decode("the Ogg stream is not Opus".into()));
    }
    let mut pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]) as usize;
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Mono)
        .map_err(|e| ClipError::Decode(e.to_string()))?;
    let mut buf = vec![0f32; 5760];
    let mut first = true;
    while let Some(p) = reader
        .read_packet()
        .map_err(|e| ClipError::Decode(e.to_string()))?
    {
        if first && p.data.starts_with(b"OpusTags") {
            first = false;
            continue;
        }
        first = false;
        let n = dec
            .decode_float(&p.data, &mut buf, false)
            .map_err(|e| ClipError::Decode(e.to_string()))?;
        let skip = pre_skip.min(n);
        pre_skip -= skip;
        out.push(&buf[skip..n])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, secs: f32) -> Vec<u8> {
        let mut cur = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for n in 0..(rate as f32 * secs) as usize {
            let v = (2.0 * std::f32::consts::PI * 440.0 * n as f32 / rate as f32).sin() * 8000.0;
            for _ in 0..channels {
                w.write_sample(v as i16).unwrap();
            }
        }
        w.finalize().unwrap();
        cur.into_inner()
    }

    #[test]
    fn decodes_wav_at_any_rate_and_channel_count() {
        for (rate, ch) in [(48_000, 1), (44_100, 2), (16_000, 1)] {
            let c = Clip::decode(&wav(rate, ch, 1.0)).unwrap();
            assert!((c.seconds() - 1.0).abs() < 0.05, "{rate}: {}", c.seconds());
            // 8000/32768 peak sine: about -15.3 dBFS RMS, about -16 LUFS.
            assert!((c.lufs() + 15.9).abs() < 1.0, "{rate}: {}", c.lufs());
        }
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        assert!(matches!(
            Clip::decode(b"ID3\x04mp3..."),
            Err(ClipError::Format)
        ));
        assert!(matches!(
            Clip::decode(b"RIFF\0\0"),
            Err(ClipError::Decode(_))
        ));
        assert!(matches!(
            Clip::decode(b"OggS\0garbage"),
            Err(ClipError::Decode(_) | ClipError::Empty)
        ));
    }

    #[test]
    fn the_chime_is_a_clip() {
        let c = Clip::chime();
        assert!(c.len() > 100 && c.lufs().is_finite());
    }

    fn wav_header(rate: u32, channels: u16, bits: u16, claimed_samples: u32) -> Vec<u8> {
        // A canonical 44-byte header whose data chunk claims `claimed_samples` per channel.
        let block = channels as u32 * bits as u32 / 8;
        let data = claimed_samples * block;
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&(36 + data).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * block).to_le_bytes());
        h.extend_from_slice(&(block as u16).to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data.to_le_bytes());
        h
    }

    #[test]
    fn a_header_over_the_bounds_is_refused_before_any_sample_is_decoded() {
        // An hour and a second of 8-bit mono at 8 kHz, claimed by a header with 1 s of data
        // after it: refused from the header alone.
        let mut f = wav_header(8000, 1, 8, 8000 * 3601);
        f.extend(std::iter::repeat_n(128u8, 8000));
        assert!(matches!(Clip::decode(&f), Err(ClipError::TooLong)));
        assert!(matches!(inspect(&f), Err(ClipError::TooLong)));
        let nine = wav_header(8000, 9, 16, 10);
        assert!(
            matches!(Clip::decode(&nine), Err(ClipError::Shape(m)) if m.contains("9 channels"))
        );
        let slow = wav_header(4000, 1, 16, 10);
        assert!(matches!(inspect(&slow), Err(ClipError::Shape(m)) if m.contains("4000 Hz")));
    }

    #[test]
    fn a_lying_header_reserves_no_more_than_the_file_holds() {
        // The header claims an hour; the file holds 0.1 s.
        let mut f = wav_header(48_000, 1, 16, 48_000 * 3600);
        f.extend(std::iter::repeat_n(0u8, 9600));
        assert!(frames_bound(&f) <= 7, "{}", frames_bound(&f));
        // Decoding stops at the end of what is there, with a clear error.
        assert!(matches!(Clip::decode(&f), Err(ClipError::Decode(_))));
    }

    #[test]
    fn inspecting_measures_what_decoding_keeps() {
        let f = wav(44_100, 2, 2.0);
        let info = inspect(&f).unwrap();
        let clip = Clip::decode(&f).unwrap();
        assert_eq!(info.frames, clip.len());
        assert!((info.lufs - clip.lufs()).abs() < 1e-9);
        assert!((info.seconds() - 2.0).abs() < 0.03, "{}", info.seconds());
        // 16-bit samples: 1920 bytes a frame.
        assert_eq!(clip.bytes(), clip.len() * 1920);
        // Within one 16-bit step of the decoded float.
        let peak = (0..clip.len())
            .flat_map(|i| clip.frame(i).unwrap())
            .fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 8000.0 / 32768.0).abs() < 0.01, "{peak}");
    }

    #[test]
    fn eight_bit_wavs_decode() {
        let mut f = wav_header(16_000, 1, 8, 16_000);
        f.extend((0..16_000).map(|n| {
            (128.0 + 100.0 * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16_000.0).sin())
                as u8
        }));
        let c = Clip::decode(&f).unwrap();
        assert!((c.seconds() - 1.0).abs() < 0.03, "{}", c.seconds());
        assert!(c.lufs() > -20.0, "{}", c.lufs());
    }
}
