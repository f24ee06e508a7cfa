//! Fan-out benchmark: one publisher (Opus 50 packets/s plus about 1.2 Mbit/s of VP8-sized
//! video) to N subscribers, through a real `dinh serve` in its own process, so that the hub's
//! CPU and memory are measured apart from the load generator's.
//!
//! Usage: `cargo run --release -p dinh-ops --bin fanout -- [N ...]` (default 10 50 100 200).
//! Prints, per N: forwarded packets/s, hub CPU µs per forwarded packet, the hub's own latency
//! p50/p99 (a packet reaching the hub's reader task → its write to a subscriber returning,
//! from the hub's /metrics histogram, within 25 %), end-to-end latency p50/p99 (publisher
//! write → subscriber read, through two webrtc-rs stacks and the hub), and hub memory per
//! subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::{OnRtp, Peer};

/// Counts packets and their latency from the send time the publisher wrote into them.
fn counter(lat: Arc<Mutex<Vec<u32>>>, got: Arc<AtomicU64>) -> OnRtp {
    Arc::new(move |_, p| {
        got.fetch_add(1, Ordering::Relaxed);
        if p.payload.len() >= 12 {
            let sent = u64::from_be_bytes(p.payload[4..12].try_into().unwrap_or([0; 8]));
            let us = now_us().saturating_sub(sent);
            let mut l = lat.lock().unwrap();
            if l.len() < 200_000 {
                l.push(us.min(u32::MAX as u64) as u32);
            }
        }
    })
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Offer, POST it to a WHIP or WHEP URL, apply the answer.
async fn negotiate(peer: &mut Peer, url: String, token: String) {
    let sdp = peer.offer().await;
    let answer = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/sdp")
            .send(sdp.as_bytes())
            .expect("WHIP/WHEP POST")
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    peer.accept(answer).await;
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn proc_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The hub's `/metrics` text (empty when it does not answer).
fn metrics(base: &str, token: &str) -> String {
    ureq::get(&format!("{base}/metrics"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

/// The hub's forwarding-latency histogram: (upper bound µs, cumulative count) per bucket.
fn latency_buckets(base: &str, token: &str) -> Vec<(u64, u64)> {
    let body = metrics(base, token);
    body.lines()
        .filter_map(|l| l.strip_prefix("dinh_forward_latency_us_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"} ")?;
            Some((le.parse().ok()?, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile (ms) of the packets counted between two histogram readings.
fn window_quantile(before: &[(u64, u64)], after: &[(u64, u64)], q: f64) -> f64 {
    let base = |le: u64| before.iter().find(|(b, _)| *b == le).map_or(0, |(_, c)| *c);
    let diff: Vec<(u64, u64)> = after
        .iter()
        .map(|(le, c)| (*le, c - base(*le).min(*c)))
        .collect();
    let total = diff.last().map_or(0, |(_, c)| *c);
    if total == 0 {
        return f64::NAN;
    }
    let rank = (total as f64 * q).ceil() as u64;
    diff.iter()
        .find(|(_, c)| *c >= rank)
        .map_or(f64::NAN, |(le, _)| *le as f64 / 1000.0)
}

fn metric(base: &str, token: &str, name: &str) -> u64 {
    let body = metrics(base, token);
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let ns = dinh_ops::subscriber_counts();
    println!(
        "subscribers  fwd_pkt/s  hub_cpu_us/pkt  hub_p50_ms  hub_p99_ms  e2e_p50_ms  e2e_p99_ms  hub_mem_kib/sub  lost_pct"
    );
    for n in ns {
        let data = std::env::temp_dir().join(format!("dinh-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let port = 18_500 + (n as u16 % 400);
        let hub = dinh_ops::HubProcess::start(&data, port);
        let base = hub.base.clone();
        let token = |role: &str, id: &str| hub.token(role, id);
        let chair_t = token("chair", "chair");
        // /metrics needs an official's token; each subscriber has its own token, as the hub
        // caps the WHEP sessions of one token (limits.sessions_per_token).
        let metrics_t = token("official", "bench");
        let keys = dinh_web::auth::Keys::load_or_create(&data).unwrap();
        let rss0 = proc_rss_kib(hub.pid());

        // Publisher.
        let mut publisher = Peer::new(None).await;
        let audio = publisher
            .add_sender(
                RtpCodecKind::Audio,
                "pub",
                dinh_sfu::room::opus_codec(),
                false,
            )
            .await;
        let video = publisher
            .add_sender(
                RtpCodecKind::Video,
                "pub",
                dinh_sfu::room::video_codec(dinh_sfu::keyframe::VideoCodec::Vp8),
                false,
            )
            .await;
        negotiate(&mut publisher, format!("{base}/whip/demo"), chair_t).await;

        // Subscribers.
        let lat = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::new(AtomicU64::new(0));
        let mut subs = Vec::new();
        for _ in 0..n {
            let mut s = Peer::new(Some(counter(lat.clone(), got.clone()))).await;
            s.add_receiver(RtpCodecKind::Audio).await;
            s.add_receiver(RtpCodecKind::Video).await;
            let viewer_t = keys.issue(
                &format!("bench-{}", subs.len()),
                "bench",
                dinh_web::auth::Role::Official,
                "demo",
                Duration::from_secs(3600),
            );
            negotiate(&mut s, format!("{base}/whep/demo"), viewer_t).await;
            subs.push(s);
        }

        // Send for a warm-up then a measured window. Audio: 50 packets/s of 100 bytes. Video:
        // 30 frames/s of 4 packets of 1150 bytes (about 1.1 Mbit/s), a keyframe every 60
        // frames. Each payload carries its send time for the latency figure.
        let sent = Arc::new(AtomicU64::new(0));
        let stamped = |size: usize, head: &[u8]| {
            let mut v = vec![0u8; size];
            v[..head.len()].copy_from_slice(head);
            v[4..12].copy_from_slice(&now_us().to_be_bytes());
            Bytes::from(v)
        };
        let (sa, sv) = (sent.clone(), sent.clone());
        let senders = [
            audio.spawn(Duration::from_millis(20), 960, false, move |_| {
                sa.fetch_add(1, Ordering::Relaxed);
                vec![stamped(100, &[])]
            }),
            video.spawn(Duration::from_millis(33), 3000, true, move |frame| {
                sv.fetch_add(4, Ordering::Relaxed);
                (0..4)
                    .map(|i| {
                        let key = frame.is_multiple_of(60) && i == 0;
                        stamped(1150, &[0x10, if key { 0 } else { 1 }])
                    })
                    .collect()
            }),
        ];
        tokio::time::sleep(Duration::from_secs(3)).await;
        lat.lock().unwrap().clear();
        let h0 = latency_buckets(&base, &metrics_t);
        let (f0, c0, t0, g0, s0) = (
            metric(&base, &metrics_t, "dinh_rtp_forwarded_total"),
            proc_cpu_secs(hub.pid()),
            Instant::now(),
            got.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (f1, c1, secs, g1, s1) = (
            metric(&base, &metrics_t, "dinh_rtp_forwarded_total"),
            proc_cpu_secs(hub.pid()),
            t0.elapsed().as_secs_f64(),
            got.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        );
        let rss1 = proc_rss_kib(hub.pid());
        let h1 = latency_buckets(&base, &metrics_t);
        let fwd = (f1 - f0) as f64;
        let mut l = lat.lock().unwrap().clone();
        l.sort_unstable();
        let pct = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q) as usize)
                .map(|&v| v as f64 / 1000.0)
                .unwrap_or(f64::NAN)
        };
        let expected = (s1 - s0) as f64 * n as f64;
        let lost = if expected > 0.0 {
            100.0 * (1.0 - (g1 - g0) as f64 / expected).max(0.0)
        } else {
            f64::NAN
        };
        println!(
            "{n:>11}  {:>9.0}  {:>14.2}  {:>10.2}  {:>10.2}  {:>10.2}  {:>10.2}  {:>15.0}  {:>8.2}",
            fwd / secs,
            if fwd > 0.0 {
                (c1 - c0) * 1e6 / fwd
            } else {
                f64::NAN
            },
            window_quantile(&h0, &h1, 0.5),
            window_quantile(&h0, &h1, 0.99),
            pct(0.5),
            pct(0.99),
            rss1.saturating_sub(rss0) as f64 / n as f64,
            lost
        );
        for s in senders {
            s.abort();
        }
        for s in subs {
            let _ = s.pc.close().await;
        }
        let _ = publisher.pc.close().await;
        drop(hub);
        let _ = std::fs::remove_dir_all(&data);
    }
}
