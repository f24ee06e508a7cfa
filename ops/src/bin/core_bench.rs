//! The forwarding core's own cost per packet, apart from webrtc-rs and the kernel: the slot's
//! per-layer forwarder once per packet, then each subscriber's layer choice and
//! [`LayerSwitch`](dinh_sfu::simulcast::LayerSwitch) (the work a writer task does before it
//! hands the packet to webrtc-rs).
//!
//! A publisher sends two simulcast layers (30 frames/s of 4 and 2 packets, a keyframe every
//! 60 frames), 10 % of the subscribers ask for the small layer, and every 90 frames a tenth of
//! them change their mind, so switches are part of the load. Virtual time: the figures are
//! CPU per decision on one thread.
//!
//! Run: `cargo run --release -p dinh-ops --bin core_bench [-- N ...]` (default 10 50 100 200).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dinh_sfu::forward::{InHeader, SlotForwarder, SlotKind, Verdict};
use dinh_sfu::keyframe::VideoCodec;
use dinh_sfu::simulcast::{pick_layer, LayerActivity, LayerSwitch};

const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a];
const VP8_DELTA: &[u8] = &[0x10, 0x01, 0x00, 0x00, 0x00];

fn main() {
    let ns = dinh_ops::subscriber_counts();
    println!(
        "subscribers  packets  decisions  ns/decision  ns/packet(all subs)  forwarded  switches"
    );
    for n in ns {
        let kind = SlotKind::Video(VideoCodec::Vp8);
        let mut layers = [SlotForwarder::new(kind), SlotForwarder::new(kind)];
        for l in &mut layers {
            l.set_source(Some(1));
        }
        let mut activity = LayerActivity::default();
        let mut subs: Vec<(LayerSwitch, bool)> = (0..n)
            .map(|i| (LayerSwitch::new(kind), i % 10 == 0))
            .collect();
        let t0 = Instant::now();
        let (mut seq, mut packets, mut forwarded, mut switches) = ([0u16; 2], 0u64, 0u64, 0u64);
        let frames = 30 * 60; // one minute of video
        let started = Instant::now();
        for frame in 0..frames {
            let now = t0 + Duration::from_micros(frame as u64 * 33_333);
            if frame % 90 == 45 {
                for (i, (_, low)) in subs.iter_mut().enumerate() {
                    if (i + frame / 90) % 10 == 0 {
                        *low = !*low;
                    }
                }
            }
            for (layer, per_frame) in [(0u8, 2usize), (1u8, 4usize)] {
                for p in 0..per_frame {
                    let key = frame % 60 == 0 && p == 0;
                    let h = InHeader {
                        ssrc: 100 + u32::from(layer),
                        seq: seq[layer as usize],
                        ts: frame as u32 * 3000,
                    };
                    seq[layer as usize] = seq[layer as usize].wrapping_add(1);
                    packets += 1;
                    activity.saw(layer, now);
                    let payload = if key { VP8_KEY } else { VP8_DELTA };
                    let Verdict::Forward(out) =
                        layers[layer as usize].on_packet(1, h, payload, now)
                    else {
                        continue;
                    };
                    let active = activity.active(now);
                    let lh = InHeader {
                        ssrc: 0,
                        seq: out.seq,
                        ts: out.ts,
                    };
                    for (switch, low) in subs.iter_mut() {
                        if switch.set_target(pick_layer(active, *low)) {
                            switches += 1;
                        }
                        if let Some(o) = switch.on_packet(layer, lh, out.keyframe_start, now) {
                            forwarded += 1;
                            black_box(o);
                        }
                    }
                }
            }
        }
        let spent = started.elapsed().as_nanos() as f64;
        let decisions = packets * n as u64;
        println!(
            "{n:>11}  {packets:>7}  {decisions:>9}  {:>11.1}  {:>19.0}  {forwarded:>9}  {switches:>8}",
            spent / decisions as f64,
            spent / packets as f64,
        );
    }
}
