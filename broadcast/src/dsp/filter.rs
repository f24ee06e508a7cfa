//! The speech band for outdoor horns: a 4th-order Butterworth high-pass (around 150 Hz: wind,
//! hum and handling noise carry far and waste amplifier power) and a 4th-order Butterworth
//! low-pass (around 7 kHz: horns do not reproduce more, and it keeps hiss out).

use biquad::{Biquad, Coefficients, DirectForm2Transposed, ToHertz, Type};

use super::{Frame, RATE};

/// Q of the two sections of a 4th-order Butterworth filter.
const Q4: [f32; 2] = [0.541_196_1, 1.306_563];

/// Errors in the band settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BandError {
    /// The corners are outside 20 Hz..20 kHz or not in order; fix the configuration.
    #[error(
        "speech band {low_hz} Hz to {high_hz} Hz is not valid: need 20 <= low < high <= 20000"
    )]
    Invalid {
        /// High-pass corner, Hz.
        low_hz: f32,
        /// Low-pass corner, Hz.
        high_hz: f32,
    },
}

/// A high-pass and a low-pass, each 4th-order Butterworth.
#[derive(Debug, Clone)]
pub struct SpeechBand {
    stages: [DirectForm2Transposed<f32>; 4],
}

impl SpeechBand {
    /// Pass `low_hz..high_hz`.
    pub fn new(low_hz: f32, high_hz: f32) -> Result<Self, BandError> {
        if !((20.0..=20_000.0).contains(&low_hz) && low_hz < high_hz && high_hz <= 20_000.0) {
            return Err(BandError::Invalid { low_hz, high_hz });
        }
        let fs = (RATE as f32).hz();
        let c = |t, f: f32, q| {
            Coefficients::<f32>::from_params(t, fs, f.hz(), q)
                .map_err(|_| BandError::Invalid { low_hz, high_hz })
        };
        Ok(Self {
            stages: [
                DirectForm2Transposed::new(c(Type::HighPass, low_hz, Q4[0])?),
                DirectForm2Transposed::new(c(Type::HighPass, low_hz, Q4[1])?),
                DirectForm2Transposed::new(c(Type::LowPass, high_hz, Q4[0])?),
                DirectForm2Transposed::new(c(Type::LowPass, high_hz, Q4[1])?),
            ],
        })
    }

    /// Filter one frame in place.
    pub fn process(&mut self, frame: &mut Frame) {
        for s in frame.iter_mut() {
            let mut x = *s;
            for st in &mut self.stages {
                x = st.run(x);
            }
            *s = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::{rms_db, sine};

    fn gain_at(hz: f64) -> f64 {
        let mut band = SpeechBand::new(150.0, 7000.0).unwrap();
        let mut frames = sine(hz, 0.5, 50);
        let input = rms_db(&frames[25..]);
        for f in &mut frames {
            band.process(f);
        }
        rms_db(&frames[25..]) - input
    }

    #[test]
    fn passes_speech_and_cuts_outside_the_band() {
        for hz in [440.0, 1000.0, 3000.0] {
            let g = gain_at(hz);
            assert!(g.abs() < 0.5, "{hz} Hz: {g:.2} dB");
        }
        // 4th order: 24 dB per octave beyond the corners.
        assert!(gain_at(50.0) < -35.0, "{}", gain_at(50.0));
        assert!(gain_at(14_000.0) < -20.0, "{}", gain_at(14_000.0));
        // At the corners a Butterworth is 3 dB down.
        assert!((gain_at(150.0) + 3.0).abs() < 0.5, "{}", gain_at(150.0));
    }

    #[test]
    fn refuses_a_band_that_is_not_one() {
        assert!(SpeechBand::new(7000.0, 150.0).is_err());
        assert!(SpeechBand::new(5.0, 7000.0).is_err());
        assert!(SpeechBand::new(150.0, 30_000.0).is_err());
    }
}
