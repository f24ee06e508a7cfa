//! Sample-rate conversion with `rubato`'s FFT resampler: the chain's 48 kHz down to 8 kHz for
//! G.711, and announcement files up or down to 48 kHz.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

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

/// Convert a whole mono clip at `rate` to 48 kHz.
pub fn to_chain_rate(samples: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut fft = Fft::<f32>::new(rate as usize, RATE as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?;
    let mut out = vec![0f32; fft.process_all_needed_output_len(samples.len())];
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| e.to_string())?;
    let cap = out.len();
    let mut output = InterleavedSlice::new_mut(&mut out[..], 1, cap).map_err(|e| e.to_string())?;
    let (_, produced) = fft
        .process_all_into_buffer(&input, &mut output, samples.len(), None)
        .map_err(|e| e.to_string())?;
    out.truncate(produced);
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

    #[test]
    fn a_tone_keeps_its_pitch_and_level_at_8_khz() {
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        for f in sine(440.0, 0.5, 100) {
            out.extend_from_slice(d.process(&f));
        }
        let tail = &out[4000..];
        let hz = zero_crossing_hz(tail, 8000.0);
        assert!((hz - 440.0).abs() < 4.4, "{hz}");
        let peak = tail.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{peak}");
    }

    #[test]
    fn removes_what_8_khz_cannot_carry() {
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        for f in sine(6000.0, 0.5, 50) {
            out.extend_from_slice(d.process(&f));
        }
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
}
