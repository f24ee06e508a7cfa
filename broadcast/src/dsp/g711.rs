//! G.711 μ-law (PCMU) and A-law (PCMA), for IP paging adapters that speak nothing else.
//! The segment encoders of ITU-T G.711 as the classic Sun reference code writes them; the
//! decoders are here to test them.

/// μ-law code of a 16-bit sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    // x is in 0x84..=0x7FFF: its top bit is bit 7 to bit 14, the segment 0 to 7.
    let seg = (31 - (x as u32).leading_zeros()) as i32 - 7;
    let mantissa = (x >> (seg + 3)) & 0x0F;
    !(sign | (seg << 4) | mantissa) as u8
}

/// The 16-bit sample a μ-law code stands for.
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code as i32;
    let seg = (u >> 4) & 7;
    let x = (((u & 0x0F) << 3) + 0x84) << seg;
    (if u & 0x80 != 0 { 0x84 - x } else { x - 0x84 }) as i16
}

/// A-law code of a 16-bit sample.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut x = (sample as i32) >> 3; // 13 significant bits
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    // Segment ends of the 13-bit magnitude.
    const END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let Some(seg) = END.iter().position(|&e| x <= e) else {
        return (0x7F ^ mask) as u8;
    };
    let seg = seg as i32;
    let mantissa = if seg < 2 {
        (x >> 1) & 0x0F
    } else {
        (x >> seg) & 0x0F
    };
    (((seg << 4) | mantissa) ^ mask) as u8
}

/// The 16-bit sample an A-law code stands for.
pub fn alaw_decode(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Float sample to 16 bits, clipped.
pub fn to_i16(x: f32) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_has_its_well_known_codes() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(alaw_decode(0xD5), 8);
    }

    #[test]
    fn every_code_decodes_to_a_sample_that_encodes_back_to_it() {
        for c in 0..=255u8 {
            // μ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "μ-law {c:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#x}");
        }
    }

    #[test]
    fn quantisation_error_stays_within_half_a_segment_step() {
        // Logarithmic: the step is at most 1/16 of the magnitude, so the error is at most
        // 1/32 of it, plus the finest step near zero.
        for x in (-32000i32..=32000).step_by(7) {
            let bound = x.abs() / 32 + 16;
            let u = ulaw_decode(ulaw_encode(x as i16)) as i32;
            let a = alaw_decode(alaw_encode(x as i16)) as i32;
            assert!((u - x).abs() <= bound, "μ-law {x} -> {u}");
            assert!((a - x).abs() <= bound, "A-law {x} -> {a}");
        }
    }
}
