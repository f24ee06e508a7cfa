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
//! Then the room's core per incoming packet ([`RoomCore::on_rtp`](dinh_sfu::room::RoomCore),
//! the part of a reader task's work done under the room's lock): the chair's voice and camera
//! and the floor holder's, with N houses in the room.
//!
//! Run: `cargo run --release -p dinh-ops --bin core_bench [-- N ...]` (default 10 50 100 200).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dinh_sfu::forward::{InHeader, SlotForwarder, SlotKind, Verdict};
use dinh_sfu::keyframe::VideoCodec;
use dinh_sfu::room::{FloorCommand, Role, RoomCore};
use dinh_sfu::simulcast::{pick_layer, LayerActivity, LayerSwitch};

const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a];
const VP8_DELTA: &[u8] = &[0x10, 0x01, 0x00, 0x00, 0x00];

fn main() {
    let ns = dinh_ops::subscriber_counts();
    forwarding(&ns);
    room_core(&ns);
}

fn forwarding(ns: &[usize]) {
    println!(
        "subscribers  packets  decisions  ns/decision  ns/packet(all subs)  forwarded  switches"
    );
    for &n in ns {
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

/// One minute of the chair's and the floor holder's media through `RoomCore::on_rtp`: Opus
/// every 20 ms, 30 video frames/s of 4 packets (a keyframe every 60 frames), per publisher.
/// A minute is about 20,000 calls, a millisecond of work: the figure is the best of 20 runs,
/// so that another process taking the core for a moment does not count.
fn room_core(ns: &[usize]) {
    println!();
    println!("houses  packets  ns/on_rtp(best of 20)  routed");
    for &n in ns {
        let mut best = f64::INFINITY;
        let (mut packets, mut routed) = (0, 0);
        for _ in 0..20 {
            let (p, r, ns_per) = room_minute(n);
            (packets, routed, best) = (p, r, best.min(ns_per));
        }
        println!("{n:>6}  {packets:>7}  {best:>21.1}  {routed:>6}");
    }
}

/// One run: packets, packets routed, ns per call.
fn room_minute(n: usize) -> (u64, u64, f64) {
    let t0 = Instant::now();
    let mut core = RoomCore::new(VideoCodec::Vp8, Duration::from_millis(500));
    let mut publishers = Vec::new();
    for i in 0..=n {
        let (id, role) = if i == 0 {
            ("chair".to_owned(), Role::Chair)
        } else {
            (format!("house-{i}"), Role::House)
        };
        let conn = i as u64 + 1;
        core.join(&id, conn, &id, role);
        core.media_connected(conn);
        let (voice, _) = core.add_source(conn, &id, role, true, t0);
        let (camera, _) = core.add_source(conn, &id, role, false, t0);
        let ssrc = 1000 + 2 * i as u32;
        core.open_layer(voice, ssrc, None, t0);
        core.open_layer(camera, ssrc + 1, None, t0);
        if i <= 1 {
            publishers.push((voice, camera, ssrc));
        }
    }
    core.floor(FloorCommand::Grant("house-1".into()), t0)
        .expect("house-1 is connected");
    let (mut packets, mut routed) = (0u64, 0u64);
    let mut send = |core: &mut RoomCore, source, h, payload: &[u8], now| {
        packets += 1;
        let r = core.on_rtp(source, h, payload, now);
        routed += u64::from(black_box(r).is_some());
    };
    let started = Instant::now();
    // 20 ms ticks for a minute; video on the ticks where a 33 ms frame falls due.
    for tick in 0..3000u32 {
        let now = t0 + Duration::from_millis(u64::from(tick) * 20);
        let frames = (tick * 20 / 33, (tick + 1) * 20 / 33);
        for &(voice, camera, ssrc) in &publishers {
            let h = InHeader {
                ssrc,
                seq: tick as u16,
                ts: tick * 960,
            };
            send(&mut core, voice, h, &[0xf8, 1, 2], now);
            if frames.0 == frames.1 {
                continue;
            }
            for p in 0..4u32 {
                let key = frames.1 % 60 == 0 && p == 0;
                let h = InHeader {
                    ssrc: ssrc + 1,
                    seq: (frames.1 * 4 + p) as u16,
                    ts: frames.1 * 3000,
                };
                send(
                    &mut core,
                    camera,
                    h,
                    if key { VP8_KEY } else { VP8_DELTA },
                    now,
                );
            }
        }
    }
    let spent = started.elapsed().as_nanos() as f64;
    (packets, routed, spent / packets as f64)
}
