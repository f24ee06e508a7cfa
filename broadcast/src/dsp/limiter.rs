//! A look-ahead true-peak limiter: no sample, and no peak between samples, leaves above the
//! ceiling (EBU R128 asks -1 dBTP). Lossy codecs and the receivers' DACs reconstruct the
//! waveform between samples, so the sample peak alone is not enough.
//!
//! Peaks between samples are estimated by 4× polyphase interpolation (a Kaiser-windowed sinc,
//! as BS.1770-4 Annex 2 describes). The gain follows the classic look-ahead design: the
//! needed gain, an instant-attack/exponential-release envelope, a sliding minimum over the
//! look-ahead, then a moving average of the same length, so the gain is already down when the
//! peak leaves the delay line and never changes abruptly.

use std::collections::VecDeque;

use super::{db_to_gain, Frame, RATE};

/// Look-ahead, samples (5 ms).
pub const LOOKAHEAD: usize = 240;
const TAPS: usize = 8; // per phase
const PHASES: usize = 4;
const HALF: usize = TAPS / 2;

/// Added delay, samples.
pub const DELAY: usize = LOOKAHEAD - 1 + HALF;

/// The limiter for one output.
#[derive(Debug, Clone)]
pub struct TruePeakLimiter {
    ceiling: f32,
    release: f32,
    taps: [[f32; TAPS]; PHASES - 1],
    history: [f32; TAPS],
    env: f32,
    mins: VecDeque<(u64, f32)>,
    avg: VecDeque<f32>,
    avg_sum: f64,
    delay: VecDeque<f32>,
    n: u64,
    reduction: f32,
}

fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > 1e-12 * sum {
        term *= (x / (2.0 * k)).powi(2);
        sum += term;
        k += 1.0;
    }
    sum
}

impl TruePeakLimiter {
    /// A limiter with its ceiling in dBTP.
    pub fn new(ceiling_dbtp: f64) -> Self {
        let beta = 5.0;
        let mut taps = [[0f32; TAPS]; PHASES - 1];
        for (p, row) in taps.iter_mut().enumerate() {
            let frac = (p + 1) as f64 / PHASES as f64;
            for (k, t) in row.iter_mut().enumerate() {
                // Distance from the interpolated point to input sample k (history index).
                let x = k as f64 - (HALF as f64 - 1.0) - frac;
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let r = x / (HALF as f64);
                let w = if r.abs() <= 1.0 {
                    bessel_i0(beta * (1.0 - r * r).sqrt()) / bessel_i0(beta)
                } else {
                    0.0
                };
                *t = (sinc * w) as f32;
            }
        }
        let release_s = 0.15;
        Self {
            ceiling: db_to_gain(ceiling_dbtp),
            release: (1.0 - (-1.0 / (release_s * RATE as f64)).exp()) as f32,
            taps,
            history: [0.0; TAPS],
            env: 1.0,
            mins: VecDeque::with_capacity(LOOKAHEAD + 1),
            avg: VecDeque::from(vec![1.0; LOOKAHEAD]),
            avg_sum: LOOKAHEAD as f64,
            delay: VecDeque::from(vec![0.0; LOOKAHEAD - 1]),
            n: 0,
            reduction: 1.0,
        }
    }

    /// The deepest gain reduction in the last frame, dB (0 when nothing was limited).
    pub fn reduction_db(&self) -> f64 {
        20.0 * (self.reduction as f64).log10()
    }

    /// Limit one frame in place (the output is [`DELAY`] samples late).
    pub fn process(&mut self, frame: &mut Frame) {
        self.reduction = 1.0;
        for s in frame.iter_mut() {
            let x = *s;
            self.history.copy_within(1.., 0);
            self.history[TAPS - 1] = x;
            // The sample in the middle of the history, and the points just after it.
            let mut peak = self.history[HALF - 1].abs();
            for row in &self.taps {
                let v: f32 = row.iter().zip(&self.history).map(|(a, b)| a * b).sum();
                peak = peak.max(v.abs());
            }
            let need = if peak > self.ceiling {
                self.ceiling / peak
            } else {
                1.0
            };
            self.env = if need < self.env {
                need
            } else {
                self.env + (1.0 - self.env) * self.release
            };
            // Sliding minimum over the look-ahead (monotonic queue).
            while self.mins.back().is_some_and(|&(_, v)| v >= self.env) {
                self.mins.pop_back();
            }
            self.mins.push_back((self.n, self.env));
            while self
                .mins
                .front()
                .is_some_and(|&(i, _)| i + (LOOKAHEAD as u64) <= self.n)
            {
                self.mins.pop_front();
            }
            let min = self.mins.front().map_or(1.0, |&(_, v)| v);
            // Moving average of the minimum: the gain ramps down over the look-ahead.
            self.avg_sum += min as f64 - self.avg.pop_front().unwrap_or(1.0) as f64;
            self.avg.push_back(min);
            let g = ((self.avg_sum / LOOKAHEAD as f64) as f32).min(1.0);
            self.reduction = self.reduction.min(g);
            // The interpolation looks HALF samples back: the delay line holds the rest.
            self.delay.push_back(self.history[HALF - 1]);
            let out = self.delay.pop_front().unwrap_or(0.0);
            *s = out * g;
            self.n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::sine;
    use crate::dsp::FRAME;
    use ebur128::{EbuR128, Mode};

    fn true_peak_db(frames: &[Frame]) -> f64 {
        let mut m = EbuR128::new(1, RATE, Mode::TRUE_PEAK).unwrap();
        for f in frames {
            m.add_frames_f32(f).unwrap();
        }
        20.0 * m.true_peak(0).unwrap().log10()
    }

    #[test]
    fn keeps_true_peaks_under_the_ceiling() {
        // 11 kHz near full scale has inter-sample peaks above its samples.
        for (hz, amp) in [(997.0, 2.0), (11_025.0, 0.99), (440.0, 1.5)] {
            let mut lim = TruePeakLimiter::new(-1.0);
            let mut frames = sine(hz, amp, 100);
            for f in &mut frames {
                lim.process(f);
            }
            let tp = true_peak_db(&frames);
            assert!(tp <= -0.9, "{hz} Hz at {amp}: {tp:.2} dBTP");
            assert!(tp > -2.0, "{hz} Hz limited too hard: {tp:.2} dBTP");
        }
    }

    #[test]
    fn leaves_quiet_audio_alone_apart_from_the_delay() {
        let mut lim = TruePeakLimiter::new(-1.0);
        let input = sine(440.0, 0.3, 10);
        let mut frames = input.clone();
        for f in &mut frames {
            lim.process(f);
        }
        let flat_in: Vec<f32> = input.iter().flatten().copied().collect();
        let flat_out: Vec<f32> = frames.iter().flatten().copied().collect();
        for i in DELAY..flat_out.len() {
            assert!(
                (flat_out[i] - flat_in[i - DELAY]).abs() < 1e-5,
                "sample {i}"
            );
        }
        assert_eq!(lim.reduction_db(), 0.0);
        assert_eq!(flat_out.len(), 10 * FRAME);
    }

    #[test]
    fn recovers_after_a_burst() {
        let mut lim = TruePeakLimiter::new(-1.0);
        let mut loud = sine(440.0, 2.0, 10);
        for f in &mut loud {
            lim.process(f);
        }
        assert!(lim.reduction_db() < -6.0);
        let mut quiet = sine(440.0, 0.3, 100);
        for f in &mut quiet {
            lim.process(f);
        }
        assert!(lim.reduction_db() > -0.01, "{}", lim.reduction_db());
    }
}
