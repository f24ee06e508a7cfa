//! The pre-announcement chime: three falling bell tones, the "attention" call listeners know
//! from public address systems. Synthesised, so a fresh hub has one without any file.

use super::{Frame, FRAME, RATE, SILENCE};

/// The chime as 20 ms frames, peaking at about -6 dBFS.
pub fn chime() -> Vec<Frame> {
    // G5, E5, C5; each rings for 0.7 s, struck 0.45 s apart.
    let notes = [784.0f32, 659.25, 523.25];
    let strike = (0.45 * RATE as f32) as usize;
    let ring = (1.4 * RATE as f32) as usize;
    let total = strike * (notes.len() - 1) + ring;
    let mut out = vec![0f32; total];
    for (k, f) in notes.iter().enumerate() {
        for n in 0..ring {
            let t = n as f32 / RATE as f32;
            let env = (-t * 3.5).exp() * (1.0 - (-t * 400.0).exp());
            let tone = (2.0 * std::f32::consts::PI * f * t).sin()
                + 0.3 * (2.0 * std::f32::consts::PI * 2.0 * f * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 3.01 * f * t).sin();
            out[k * strike + n] += env * tone;
        }
    }
    let peak = out.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = 0.5 / peak;
    out.chunks(FRAME)
        .map(|c| {
            let mut f = SILENCE;
            for (d, s) in f.iter_mut().zip(c) {
                *d = s * scale;
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn chime_is_short_audible_and_not_clipped() {
        let c = super::chime();
        let secs = c.len() as f32 * 0.02;
        assert!((2.0..3.0).contains(&secs), "{secs}");
        let peak = c.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 1e-3, "{peak}");
    }
}
