//! Announcement audio held in memory: decoded once from a WAV or Ogg/Opus file to 48 kHz mono,
//! with its integrated loudness measured so it plays at the same level as the meeting.

use std::io::Cursor;
use std::sync::Arc;

use crate::dsp::loudness::integrated_lufs;
use crate::dsp::resample::to_chain_rate;
use crate::dsp::{chime, Frame, FRAME, RATE, SILENCE};

/// Longest announcement accepted: one hour.
pub const MAX_SECONDS: usize = 3600;

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
    /// Longer than [`MAX_SECONDS`].
    #[error("the file is longer than {MAX_SECONDS} s")]
    TooLong,
}

/// Decoded audio, 48 kHz mono, cut into 20 ms frames.
#[derive(Debug, Clone)]
pub struct Clip {
    frames: Arc<[Frame]>,
    lufs: f64,
}

impl Clip {
    /// Decode a file's bytes (WAV or Ogg/Opus, recognised by their magic bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, ClipError> {
        let samples = if bytes.starts_with(b"RIFF") {
            decode_wav(bytes)?
        } else if bytes.starts_with(b"OggS") {
            decode_ogg_opus(bytes)?
        } else {
            return Err(ClipError::Format);
        };
        if samples.is_empty() {
            return Err(ClipError::Empty);
        }
        Ok(Self::from_samples(&samples))
    }

    /// The synthesised chime.
    pub fn chime() -> Self {
        Self::from_frames(chime::chime())
    }

    /// From 48 kHz mono samples.
    pub fn from_samples(samples: &[f32]) -> Self {
        let frames = samples
            .chunks(FRAME)
            .map(|c| {
                let mut f = SILENCE;
                f[..c.len()].copy_from_slice(c);
                f
            })
            .collect();
        Self::from_frames(frames)
    }

    fn from_frames(frames: Vec<Frame>) -> Self {
        let lufs = integrated_lufs(&frames);
        Self {
            frames: frames.into(),
            lufs,
        }
    }

    /// Frame `i`, if the clip is that long.
    pub fn frame(&self, i: usize) -> Option<&Frame> {
        self.frames.get(i)
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

    /// Integrated loudness, LUFS (minus infinity for silence).
    pub fn lufs(&self) -> f64 {
        self.lufs
    }
}

fn check_len(n: usize, rate: u32) -> Result<(), ClipError> {
    if n / rate.max(1) as usize > MAX_SECONDS {
        return Err(ClipError::TooLong);
    }
    Ok(())
}

fn decode_wav(bytes: &[u8]) -> Result<Vec<f32>, ClipError> {
    let err = |e: hound::Error| ClipError::Decode(e.to_string());
    let mut r = hound::WavReader::new(Cursor::new(bytes)).map_err(err)?;
    let spec = r.spec();
    let ch = spec.channels.max(1) as usize;
    check_len(r.duration() as usize, spec.sample_rate)?;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(err)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample.clamp(8, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(err)?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    to_chain_rate(&mono, spec.sample_rate).map_err(ClipError::Decode)
}

fn decode_ogg_opus(bytes: &[u8]) -> Result<Vec<f32>, ClipError> {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let head = reader
        .read_packet()
        .map_err(|e| ClipError::Decode(e.to_string()))?
        .ok_or(ClipError::Empty)?;
    if !head.data.starts_with(b"OpusHead") || head.data.len() < 19 {
        return Err(ClipError::Decode("the Ogg stream is not Opus".into()));
    }
    let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]) as usize;
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Mono)
        .map_err(|e| ClipError::Decode(e.to_string()))?;
    let mut out = Vec::new();
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
        out.extend_from_slice(&buf[..n]);
        check_len(out.len(), RATE)?;
    }
    Ok(out.split_off(pre_skip.min(out.len())))
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
}
