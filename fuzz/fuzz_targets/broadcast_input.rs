//! What the loudspeaker bridge takes from outside: datagrams arriving on an RTP output's
//! socket (RTCP reports, or anything), announcement files, cluster configurations and Opus
//! payloads from publishers. None may panic; a file that decodes gives finite samples.
#![no_main]
use libfuzzer_sys::fuzz_target;

use dinh_broadcast::clip::Clip;
use dinh_broadcast::config::ClusterConfig;
use dinh_broadcast::jitter::OpusInput;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            for r in dinh_broadcast::rtp::reception_reports(rest) {
                assert!((0.0..1.0).contains(&r.fraction_lost));
            }
        }
        1 => {
            if let Ok(clip) = Clip::decode(rest) {
                for i in 0..clip.len().min(50) {
                    assert!(clip.frame(i).unwrap().iter().all(|s| s.is_finite()));
                }
            }
        }
        2 => {
            if let Ok(c) = serde_json::from_slice::<ClusterConfig>(rest) {
                let _ = c.validate();
            }
        }
        _ => {
            // Packets of arbitrary bytes and sequence numbers through the jitter buffer.
            let mut input = OpusInput::new();
            let t = std::time::Instant::now();
            let mut out = [0f32; 960];
            for (i, chunk) in rest.chunks(7).enumerate() {
                let seq = u16::from_le_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
                input.push(seq, bytes::Bytes::copy_from_slice(chunk), t);
                if i % 2 == 0 {
                    input.pull(&mut out, t);
                    assert!(out.iter().all(|s| s.is_finite()));
                }
            }
        }
    }
});
