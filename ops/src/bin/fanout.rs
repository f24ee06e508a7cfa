//! Fan-out benchmark: one publisher (Opus 50 packets/s plus about 1.2 Mbit/s of VP8-sized
//! video) to N subscribers, through a real `dinh serve` in its own process, so that the hub's
//! CPU and memory are measured apart from the load generator's.
//!
//! Usage: `cargo run --release -p dinh-ops --bin fanout -- [N ...]` (default 10 50 100 200).
//! Prints, per N: forwarded packets/s, hub CPU µs per forwarded packet, end-to-end latency
//! p50/p99 (publisher write → subscriber read, through two webrtc-rs stacks and the hub), and
//! hub memory per subscriber.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dinh_sfu::rtc;
use dinh_sfu::webrtc;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCSessionDescription, Registry,
};

struct H {
    gathered: watch::Sender<bool>,
    lat: Arc<Mutex<Vec<u32>>>,
    got: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for H {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let (lat, got) = (self.lat.clone(), self.got.clone());
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    got.fetch_add(1, Ordering::Relaxed);
                    if p.payload.len() >= 12 {
                        let sent =
                            u64::from_be_bytes(p.payload[4..12].try_into().unwrap_or([0; 8]));
                        let us = now_us().saturating_sub(sent);
                        let mut l = lat.lock().unwrap();
                        if l.len() < 200_000 {
                            l.push(us.min(u32::MAX as u64) as u32);
                        }
                    }
                }
            }
        });
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

async fn peer(
    lat: Arc<Mutex<Vec<u32>>>,
    got: Arc<AtomicU64>,
) -> (Arc<dyn PeerConnection>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let mut m = MediaEngine::default();
    m.register_default_codecs().unwrap();
    let reg = register_default_interceptors(Registry::new(), &mut m).unwrap();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(m)
            .with_interceptor_registry(reg)
            .with_handler(Arc::new(H {
                gathered: tx,
                lat,
                got,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .unwrap(),
    );
    (pc, rx)
}

async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    mut rx: watch::Receiver<bool>,
    url: String,
    token: String,
) {
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    rx.wait_for(|d| *d).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
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
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
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

fn metric(base: &str, name: &str) -> u64 {
    let body = ureq::get(&format!("{base}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() {
        vec![10, 50, 100, 200]
    } else {
        ns
    };
    let bin = std::env::var("DINH_BIN").unwrap_or_else(|_| "target/release/dinh".into());
    println!(
        "subscribers  fwd_pkt/s  hub_cpu_us/pkt  e2e_p50_ms  e2e_p99_ms  hub_mem_kib/sub  lost_pct"
    );
    for n in ns {
        let data = std::env::temp_dir().join(format!("dinh-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let port = 18_500 + (n as u16 % 400);
        let mut hub = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--udp",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(&data)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run target/release/dinh (build it first: cargo build --release --bin dinh)");
        let base = format!("http://127.0.0.1:{port}");
        while ureq::get(&format!("{base}/healthz")).call().is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = |role: &str, id: &str| -> String {
            let out = Command::new(&bin)
                .args([
                    "token", "--role", role, "--room", "demo", "--id", id, "--data",
                ])
                .arg(&data)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let chair_t = token("chair", "chair");
        let viewer_t = token("official", "bench");
        let rss0 = proc_rss_kib(hub.id());

        // Publisher.
        let (pc, rx) = peer(Default::default(), Default::default()).await;
        let mut tracks = Vec::new();
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            let codec = if kind == RtpCodecKind::Audio {
                dinh_sfu::room::opus_codec()
            } else {
                dinh_sfu::room::video_codec(dinh_sfu::keyframe::VideoCodec::Vp8)
            };
            let ssrc: u32 = rand::random();
            let t = Arc::new(TrackLocalStaticRTP::new(
                rtc::media_stream::MediaStreamTrack::new(
                    "pub".into(),
                    format!("{kind:?}"),
                    format!("{kind:?}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                ),
            ));
            let tr = pc
                .add_transceiver_from_track(
                    t.clone() as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap();
            tracks.push((kind, t, ssrc, tr));
        }
        negotiate(&pc, rx, format!("{base}/whip/demo"), chair_t).await;

        // Subscribers.
        let lat = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::new(AtomicU64::new(0));
        let mut subs = Vec::new();
        for _ in 0..n {
            let (s, rx) = peer(lat.clone(), got.clone()).await;
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                s.add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap();
            }
            negotiate(&s, rx, format!("{base}/whep/demo"), viewer_t.clone()).await;
            subs.push(s);
        }

        // Send for a warm-up then a measured window.
        let sent = Arc::new(AtomicU64::new(0));
        let mut senders = Vec::new();
        for (kind, t, ssrc, tr) in tracks {
            let sender = tr.sender().await.unwrap().unwrap();
            let sent = sent.clone();
            senders.push(tokio::spawn(async move {
                let pt = loop {
                    if let Some(c) = sender
                        .get_parameters()
                        .await
                        .ok()
                        .and_then(|p| p.rtp_parameters.codecs.first().cloned())
                    {
                        break c.payload_type;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                let audio = kind == RtpCodecKind::Audio;
                // Audio: 50 packets/s of 100 bytes. Video: 30 frames/s of 4 packets of 1150 bytes
                // (about 1.1 Mbit/s), a keyframe every 60 frames.
                let (every, per_tick, size) = if audio { (20, 1, 100) } else { (33, 4, 1150) };
                let (mut seq, mut ts, mut frame) =
                    (rand::random::<u16>(), rand::random::<u32>(), 0u64);
                let mut tick = tokio::time::interval(Duration::from_millis(every));
                loop {
                    tick.tick().await;
                    for i in 0..per_tick {
                        let mut v = vec![0u8; size];
                        if !audio {
                            v[0] = 0x10;
                            v[1] = if frame.is_multiple_of(60) && i == 0 {
                                0
                            } else {
                                1
                            };
                        }
                        v[4..12].copy_from_slice(&now_us().to_be_bytes());
                        let p = rtp::Packet {
                            header: rtp::header::Header {
                                version: 2,
                                marker: i + 1 == per_tick,
                                payload_type: pt,
                                sequence_number: seq,
                                timestamp: ts,
                                ssrc,
                                ..Default::default()
                            },
                            payload: Bytes::from(v),
                        };
                        if t.write_rtp(p).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        seq = seq.wrapping_add(1);
                    }
                    ts = ts.wrapping_add(if audio { 960 } else { 3000 });
                    frame += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        lat.lock().unwrap().clear();
        let (f0, c0, t0, g0, s0) = (
            metric(&base, "dinh_rtp_forwarded_total"),
            proc_cpu_secs(hub.id()),
            Instant::now(),
            got.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (f1, c1, secs, g1, s1) = (
            metric(&base, "dinh_rtp_forwarded_total"),
            proc_cpu_secs(hub.id()),
            t0.elapsed().as_secs_f64(),
            got.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        );
        let rss1 = proc_rss_kib(hub.id());
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
            "{n:>11}  {:>9.0}  {:>14.2}  {:>10.2}  {:>10.2}  {:>15.0}  {:>8.2}",
            fwd / secs,
            if fwd > 0.0 {
                (c1 - c0) * 1e6 / fwd
            } else {
                f64::NAN
            },
            pct(0.5),
            pct(0.99),
            rss1.saturating_sub(rss0) as f64 / n as f64,
            lost
        );
        for s in senders {
            s.abort();
        }
        for s in subs {
            let _ = s.close().await;
        }
        let _ = pc.close().await;
        let _ = hub.kill();
        let _ = hub.wait();
        let _ = std::fs::remove_dir_all(&data);
    }
}
