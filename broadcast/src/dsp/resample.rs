//! Sample-rate conversion with `rubato`'s FFT resampler: the chain's 48 kHz down to 8 kHz for
//! G.711, and announcement files up or down to 48 kHz.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::{Frame, FRAME, RATE};

/// Samples in a 20 ms frame at 8 kHz.
pub const NARROW_FRAME: usize = 160;

/// 48 kHz frames to 8 kHz frames, streaming (the anti-alias filter is rubato's).
pub struct Downsampler {
    fft: Fft<f32>,
    out: [f32; NARROW_FRAME],
}

impl std::fmt::Debug for Downsampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Downsampler")
    }
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    /// A 48 kHz to 8 kHz converter taking 20 ms frames.
    pub fn new() -> Self {
        Self {
            // Fixed sizes on both sides with a whole ratio: cannot fail.
            fft: Fft::new(RATE as usize, 8000, FRAME, 1, FixedSync::Both)
                .expect("48 kHz to 8 kHz in 960-sample chunks is valid"),
            out: [0.0; NARROW_FRAME],
        }
    }

    /// Added delay, samples at 8 kHz.
    pub fn delay(&self) -> usize {
        self.fft.output_delay()
    }

    /// Convert one frame.
    pub fn process(&mut self, frame: &Frame) -> &[f32; NARROW_FRAME] {
        let input = InterleavedSlice::new(&frame[..], 1, FRAME).expect("one channel, one frame");
        let mut out =
            InterleavedSlice::new_mut(&mut self.out[..], 1, NARROW_FRAME).expect("one frame");
        if self
            .fft
            .process_into_buffer(&input, &mut out, None)
            .is_err()
        {
            self.out = [0.0; NARROW_FRAME];
        }
        &self.out
    }
}

/// A mono stream at `rate` converted to 48 kHz piece by piece, so that a long file never has
/// to be in memory twice (once at its rate, once at the chain's). The output is the same as
/// converting the whole clip at once: the resampler's start-up delay is dropped, and
/// [`StreamResampler::finish`] pads the tail until exactly `ceil(len × 48000 / rate)` samples
/// came out.
pub struct StreamResampler {
    fft: Option<Box<Fft<f32>>>,
    pending: Vec<f32>,
    out: Vec<f32>,
    to_trim: usize,
    taken: u64,
    emitted: u64,
    ratio: f64,
}

crate::debug_fields!(StreamResampler: ratio);

/// Input samples per resampler call.
const CHUNK: usize = 1024;

impl StreamResampler {
    /// A converter from `rate` Hz (a passthrough at 48 kHz).
    pub fn new(rate: u32) -> Result<Self, String> {
        let fft = if rate == RATE {
            None
        } else {
            let f = Fft::<f32>::new(rate as usize, RATE as usize, CHUNK, 1, FixedSync::Input)
                .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?;
            Some(Box::new(f))
        };
        let (to_trim, out_len) = fft
            .as_ref()
            .map_or((0, 0), |f| (f.output_delay(), f.output_frames_max()));
        Ok(Self {
            fft,
            pending: Vec::with_capacity(CHUNK),
            out: vec![0.0; out_len],
            to_trim,
            taken: 0,
            emitted: 0,
            ratio: RATE as f64 / rate.max(1) as f64,
        })
    }

    /// Convert `samples`; whatever is ready goes to `sink`.
    pub fn push(&mut self, samples: &[f32], sink: &mut impl FnMut(&[f32])) -> Result<(), String> {
        self.taken += samples.len() as u64;
        if self.fft.is_none() {
            self.emitted += samples.len() as u64;
            sink(samples);
            return Ok(());
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let n = (CHUNK - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.pending.len() == CHUNK {
                self.run(None, None, sink)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Convert what is left and pad the tail; the stream is then complete.
    pub fn finish(mut self, sink: &mut impl FnMut(&[f32])) -> Result<(), String> {
        if self.fft.is_none() {
            return Ok(());
        }
        let expected = (self.ratio * self.taken as f64).ceil() as u64;
        let partial = self.pending.len();
        self.pending.resize(CHUNK, 0.0);
        // The last partial chunk, then zeros, until the delayed tail is out.
        self.run(Some(partial), Some(expected), sink)?;
        self.pending.fill(0.0);
        while self.emitted < expected {
            self.run(Some(0), Some(expected), sink)?;
        }
        Ok(())
    }

    /// One resampler call on `pending`; `partial` is how much of it is real input (the
    /// rest is padding), `limit` the total the stream may emit.
    fn run(
        &mut self,
        partial: Option<usize>,
        limit: Option<u64>,
        sink: &mut impl FnMut(&[f32]),
    ) -> Result<(), String> {
        let fft = self.fft.as_mut().expect("run only with a resampler");
        let input =
            InterleavedSlice::new(&self.pending[..], 1, CHUNK).map_err(|e| e.to_string())?;
        let cap = self.out.len();
        let mut output =
            InterleavedSlice::new_mut(&mut self.out[..], 1, cap).map_err(|e| e.to_string())?;
        let indexing = partial.map(|p| Indexing::new().partial_len(p));
        let (_, produced) = fft
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| e.to_string())?;
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        let mut ready = &self.out[skip..produced];
        if let Some(limit) = limit {
            let room = limit.saturating_sub(self.emitted) as usize;
            ready = &ready[..ready.len().min(room)];
        }
        self.emitted += ready.len() as u64;
        sink(ready);
        Ok(())
    }
}

/// Convert a whole mono clip at `rate` to 48 kHz.
pub fn to_chain_rate(samples: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    let mut out = Vec::new();
    let mut r = StreamResampler::new(rate)?;
    r.push(samples, &mut |s: &[f32]| out.extend_from_slice(s))?;
    r.finish(&mut |s: &[f32]| out.extend_from_slice(s))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::sine;

    fn zero_crossing_hz(x: &[f32], rate: f64) -> f64 {
        let z = x
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        z as f64 * rate / 2.0 / x.len() as f64
    }

    /// `frames` of a tone of `hz` at amplitude 0.5, through one downsampler to 8 kHz.
    fn downsampled(hz: f64, frames: usize) -> Vec<f32> {
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        for f in sine(hz, 0.5, frames) {
            out.extend_from_slice(d.process(&f));
        }
        out
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level_at_8_khz() {
        let out = downsampled(440.0, 100);
        let tail = &out[4000..];
        let hz = zero_crossing_hz(tail, 8000.0);
        assert!((hz - 440.0).abs() < 4.4, "{hz}");
        let peak = tail.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{peak}");
    }

    #[test]
    fn removes_what_8_khz_cannot_carry() {
        let out = downsampled(6000.0, 50);
        let peak = out[2000..].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak < 0.01, "6 kHz aliased at {peak}");
    }

    #[test]
    fn files_at_other_rates_come_to_48_khz() {
        let rate = 44_100u32;
        let x: Vec<f32> = (0..rate)
            .map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / rate as f32).sin())
            .collect();
        let y = to_chain_rate(&x, rate).unwrap();
        assert!((y.len() as i64 - 48_000).abs() < 100, "{}", y.len());
        let hz = zero_crossing_hz(&y[1000..47_000], 48_000.0);
        assert!((hz - 1000.0).abs() < 5.0, "{hz}");
    }

    #[test]
    fn streaming_in_any_pieces_matches_converting_the_whole_clip() {
        for rate in [8_000u32, 22_050, 44_100, 96_000] {
            let x: Vec<f32> = (0..rate as usize * 3 / 2 + 17)
                .map(|n| (n as f32 * 0.013).sin() * 0.5)
                .collect();
            // The reference: rubato converting the clip in one call.
            let mut fft =
                Fft::<f32>::new(rate as usize, RATE as usize, CHUNK, 1, FixedSync::Input).unwrap();
            let input = InterleavedSlice::new(&x[..], 1, x.len()).unwrap();
            let whole = fft.process_all(&input, x.len(), None).unwrap().take_data();
            for piece in [1usize, 777, 5000] {
                let mut out = Vec::new();
                let mut r = StreamResampler::new(rate).unwrap();
                for c in x.chunks(piece) {
                    r.push(c, &mut |s: &[f32]| out.extend_from_slice(s))
                        .unwrap();
                }
                r.finish(&mut |s: &[f32]| out.extend_from_slice(s)).unwrap();
                assert_eq!(out.len(), whole.len(), "{rate} Hz in pieces of {piece}");
                let worst = out
                    .iter()
                    .zip(&whole)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst < 1e-5,
                    "{rate} Hz in pieces of {piece}: off by {worst}"
                );
            }
        }
    }
}
