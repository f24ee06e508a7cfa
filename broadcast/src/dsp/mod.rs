//! The DSP chain, pure: frames in, frames out. No sockets, no clock, no tokio.
//!
//! Every frame is [`FRAME`] samples of mono audio at [`RATE`] (20 ms), `f32` in -1..1.
//!
//! The order on the meeting's path: decode ([`crate::jitter`]) → mix → [`filter::SpeechBand`]
//! → [`loudness::Leveller`] (measured once per feed) → per output format: gain, then
//! [`limiter::TruePeakLimiter`], then [`resample`] and [`g711`] for legacy paging adapters.

pub mod chime;
pub mod filter;
pub mod g711;
pub mod limiter;
pub mod loudness;
pub mod resample;

/// Sample rate of the whole chain.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = 960;

/// One 20 ms mono frame.
pub type Frame = [f32; FRAME];

/// A silent frame.
pub const SILENCE: Frame = [0.0; FRAME];

/// Linear gain for `db` decibels.
pub fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Add `src` into `dst`.
pub fn mix_into(dst: &mut Frame, src: &Frame) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A sine at `hz` and peak `amp`, `frames` frames long, starting at sample `start`.
    pub fn sine(hz: f64, amp: f32, frames: usize) -> Vec<Frame> {
        (0..frames)
            .map(|f| {
                let mut fr = SILENCE;
                for (i, s) in fr.iter_mut().enumerate() {
                    let n = (f * FRAME + i) as f64;
                    *s = amp * (2.0 * std::f64::consts::PI * hz * n / RATE as f64).sin() as f32;
                }
                fr
            })
            .collect()
    }

    /// RMS level in dBFS of some frames.
    pub fn rms_db(frames: &[Frame]) -> f64 {
        let (sum, n) = frames
            .iter()
            .flatten()
            .fold((0f64, 0usize), |(s, n), x| (s + (*x as f64).powi(2), n + 1));
        10.0 * (sum / n as f64).log10()
    }
}
