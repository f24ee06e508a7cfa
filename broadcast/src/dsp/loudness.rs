//! Loudness: measure with ITU-R BS.1770 (the `ebur128` crate, K-weighted and gated as EBU R128
//! does) and level the feed toward a reference loudness, slowly, as a broadcast AGC does.
//!
//! Each output format then adds its own offset (its cluster's target minus the reference,
//! plus the cluster's gain) and limits true peaks ([`super::limiter`]). The measurement is
//! made once per feed, not once per cluster.

use ebur128::{EbuR128, Mode};

use super::{db_to_gain, Frame, FRAME, RATE};

/// The loudness every feed is levelled to before the per-output offsets, LUFS. EBU R128's
/// programme target.
pub const REFERENCE_LUFS: f64 = -23.0;

/// How the leveller moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevellerSettings {
    /// Largest boost, dB: a quiet microphone is brought up at most this much.
    pub max_boost_db: f64,
    /// Largest cut, dB.
    pub max_cut_db: f64,
    /// How fast the gain may rise, dB per second (slow: no pumping between words).
    pub rise_db_per_s: f64,
    /// How fast the gain may fall, dB per second (faster: a shout is tamed quickly; the
    /// limiter catches the first syllable).
    pub fall_db_per_s: f64,
    /// Below this loudness the input is a pause: the gain holds instead of boosting noise.
    pub gate_lufs: f64,
}

impl Default for LevellerSettings {
    fn default() -> Self {
        Self {
            max_boost_db: 30.0,
            max_cut_db: 30.0,
            rise_db_per_s: 8.0,
            fall_db_per_s: 24.0,
            gate_lufs: -55.0,
        }
    }
}

/// Levels one feed to [`REFERENCE_LUFS`].
pub struct Leveller {
    meter: EbuR128,
    settings: LevellerSettings,
    gain_db: f64,
    frames: u64,
}

crate::debug_fields!(Leveller: gain_db);

impl Leveller {
    /// A leveller at unity gain.
    pub fn new(settings: LevellerSettings) -> Self {
        Self {
            // Mono 48 kHz, short-term window: both fixed, so this cannot fail.
            meter: EbuR128::new(1, RATE, Mode::S).expect("mono 48 kHz is supported"),
            settings,
            gain_db: 0.0,
            frames: 0,
        }
    }

    /// The gain now applied, dB.
    pub fn gain_db(&self) -> f64 {
        self.gain_db
    }

    /// The loudness measured now (momentary for the first 3 s, then short-term), LUFS.
    pub fn measured_lufs(&self) -> Option<f64> {
        let l = if self.frames < 150 {
            self.meter.loudness_momentary()
        } else {
            self.meter.loudness_shortterm()
        };
        l.ok().filter(|l| l.is_finite())
    }

    /// Measure `frame`, move the gain, and apply it (ramped across the frame).
    pub fn process(&mut self, frame: &mut Frame) {
        // Cannot fail for a mono frame of f32s.
        let _ = self.meter.add_frames_f32(frame);
        self.frames += 1;
        let before = self.gain_db;
        // Adapt only while the input is active now: the momentary loudness is above the
        // absolute gate and within 10 LU of the measurement (BS.1770's relative gate). Otherwise
        // the fading short-term window of a pause would slowly boost the gain.
        let momentary = self.meter.loudness_momentary().unwrap_or(f64::NEG_INFINITY);
        let active = |l: &f64| momentary > self.settings.gate_lufs && momentary > *l - 10.0;
        if let Some(l) = self.measured_lufs().filter(active) {
            let s = &self.settings;
            let want = (REFERENCE_LUFS - l).clamp(-s.max_cut_db, s.max_boost_db);
            let dt = FRAME as f64 / RATE as f64;
            let step = if want > self.gain_db {
                (want - self.gain_db).min(s.rise_db_per_s * dt)
            } else {
                (want - self.gain_db).max(-s.fall_db_per_s * dt)
            };
            self.gain_db += step;
        }
        let (g0, g1) = (db_to_gain(before), db_to_gain(self.gain_db));
        for (i, s) in frame.iter_mut().enumerate() {
            let t = i as f32 / FRAME as f32;
            *s *= g0 + (g1 - g0) * t;
        }
    }

    /// Forget the measurement (a new programme: an announcement, another speaker).
    pub fn reset(&mut self) {
        self.meter.reset();
        self.frames = 0;
    }
}

/// Integrated loudness of some frames, LUFS (for tests and the benchmark).
pub fn integrated_lufs(frames: &[Frame]) -> f64 {
    let mut m = EbuR128::new(1, RATE, Mode::I).expect("mono 48 kHz is supported");
    for f in frames {
        let _ = m.add_frames_f32(f);
    }
    m.loudness_global().unwrap_or(f64::NEG_INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::sine;

    fn level(amp: f32) -> (f64, Leveller) {
        let mut lv = Leveller::new(LevellerSettings::default());
        let mut frames = sine(440.0, amp, 500);
        for f in &mut frames {
            lv.process(f);
        }
        (integrated_lufs(&frames[250..]), lv)
    }

    #[test]
    fn brings_quiet_and_loud_tones_to_the_reference() {
        for amp in [0.02, 0.1, 0.8] {
            let (l, _) = level(amp);
            assert!((l - REFERENCE_LUFS).abs() < 0.5, "amp {amp}: {l:.2} LUFS");
        }
    }

    #[test]
    fn holds_the_gain_through_silence() {
        let (_, mut lv) = level(0.02);
        let g = lv.gain_db();
        assert!(g > 12.0, "{g}");
        let mut quiet = [0.0f32; FRAME];
        for _ in 0..200 {
            lv.process(&mut quiet);
        }
        // The first few hundred milliseconds of the pause may still move it a little.
        assert!((lv.gain_db() - g).abs() < 1.0, "{} vs {g}", lv.gain_db());
    }

    #[test]
    fn gain_moves_no_faster_than_its_slew() {
        let mut lv = Leveller::new(LevellerSettings::default());
        let mut frames = sine(440.0, 0.01, 50);
        for f in &mut frames {
            lv.process(f);
        }
        // 50 frames = 1 s at 8 dB/s.
        assert!(lv.gain_db() <= 8.0 + 1e-9, "{}", lv.gain_db());
    }
}
