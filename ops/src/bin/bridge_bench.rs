//! Loudspeaker bridge benchmark: added latency from a meeting packet reaching the bridge to
//! its audio leaving on an RTP output (p50, p99), and CPU per cluster with 20 and 100
//! clusters.
//!
//! The bridge runs on one thread (a current-thread tokio runtime), so "100 clusters on one
//! core" is measured as it is meant: that thread's CPU time (from
//! /proc/thread-self/schedstat) over the run, divided by the clusters. A feeder on the same
//! thread pushes pre-encoded Opus packets every 20 ms (their encoding is not counted); the
//! clusters send RTP to one UDP sink drained by another thread, which counts what arrives.
//!
//! Two mixes: "shared" formats (the clusters use three formats between them, as a commune
//! would: Opus -16 LUFS, PCMU -18, PCMA -16), and "distinct" (each cluster its own gain, so
//! each needs its own encoder: the worst case).
//!
//! Run: `cargo run --release -p dinh-ops --bin bridge_bench [-- --secs 10]`
//!
//! `-- --uploads` measures instead the hub's memory while it takes three maximal announcement
//! uploads at once (issue 11 §4: before the bounds, three 60-minute 8-bit WAVs took 6 GB): a
//! real `dinh serve` (`DINH_BIN`, by default target/release/dinh) in its own process, its
//! resident memory sampled every 20 ms from /proc, and its peak (VmHWM) at the end. Each
//! upload is a 60-minute 8-bit mono WAV at 18.6 kHz: 67 MB, the longest and largest the hub
//! accepts.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dinh_broadcast::bridge::{Bridge, BridgeSettings};
use dinh_broadcast::config::{ClusterConfig, ClusterKind, Codec};
use dinh_broadcast::engine::Voice;
use dinh_broadcast::programme::ProgrammeSettings;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cluster(i: usize, dest: &str, distinct: bool) -> ClusterConfig {
    let codec = match i % 10 {
        0..=4 => Codec::Opus,
        5..=7 => Codec::Pcmu,
        _ => Codec::Pcma,
    };
    ClusterConfig {
        id: format!("c{i}"),
        name: String::new(),
        room: None,
        kind: ClusterKind::Rtp,
        destination: Some(dest.to_owned()),
        codec,
        payload_type: None,
        loudness_target: if codec == Codec::Pcmu { -18.0 } else { -16.0 },
        gain_db: if distinct {
            (i as f64) * 0.1 - 5.0
        } else {
            0.0
        },
        ttl: 1,
        interface: None,
        password: None,
        heartbeat_secs: None,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(n: usize, distinct: bool, secs: u64, packets: &[Bytes]) {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dest = sink.local_addr().unwrap().to_string();
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        sink.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                match sink.recv(&mut buf) {
                    Ok(_) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if Arc::strong_count(&received) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let settings = BridgeSettings {
        programme: ProgrammeSettings {
            chime: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let bridge = Bridge::start(settings, stop_rx).unwrap();
    bridge.add_room("demo", "bench").await;
    for i in 0..n {
        bridge
            .add_cluster(cluster(i, &dest, distinct), "demo")
            .await
            .unwrap();
    }
    bridge.set_relay("demo", true).await;
    // Feed 20 ms packets on time, as the SFU's tap would.
    let feeder = {
        let bridge = bridge.clone();
        let packets = packets.to_vec();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for (i, p) in packets.iter().cycle().enumerate() {
                tick.tick().await;
                bridge.push("demo", Voice::Chair, i as u16, p.clone(), Instant::now());
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.stats().take_latencies();
    let sent0 = bridge.stats().rtp_sent.load(Ordering::Relaxed);
    let enc0 = bridge.stats().encodes.load(Ordering::Relaxed);
    let recv0 = received.load(Ordering::Relaxed);
    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (cpu1, t1) = (thread_cpu_ns(), Instant::now());
    let sent = bridge.stats().rtp_sent.load(Ordering::Relaxed) - sent0;
    let encodes = bridge.stats().encodes.load(Ordering::Relaxed) - enc0;
    let errors = bridge.stats().rtp_errors.load(Ordering::Relaxed);
    // Over the same window as `sent`: the packets in flight at its two ends about cancel.
    let got = received.load(Ordering::Relaxed) - recv0;
    let mut lat = bridge.stats().take_latencies();
    lat.sort_unstable();
    feeder.abort();
    let _ = stop_tx.send(true);
    let wall = (t1 - t0).as_secs_f64();
    let cpu_ms_per_s = (cpu1 - cpu0) as f64 / 1e6 / wall;
    println!(
        "| {n:>3} | {:<8} | {:>6.0} | {:>5.1} | {:>6.1} % | {:>7.3} | {:>6.2} | {:>6.2} | {:>6.2} | {} |",
        if distinct { "distinct" } else { "shared" },
        sent as f64 / wall,
        encodes as f64 / wall / 50.0,
        cpu_ms_per_s / 10.0,
        cpu_ms_per_s / n as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        if got + errors + 200 >= sent { format!("{got}/{sent}") } else { format!("LOSS {got}/{sent}") },
    );
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A 60-minute 8-bit mono WAV at 18.6 kHz: a slow sweep, so the decoder has real work.
fn maximal_wav() -> Vec<u8> {
    let rate = 18_600u32;
    let n = rate as usize * 3600;
    let mut v = Vec::with_capacity(44 + n);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + n as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(n as u32).to_le_bytes());
    let mut phase = 0f32;
    for i in 0..n {
        let hz = 200.0 + (i % (rate as usize * 10)) as f32 / 50.0;
        phase += 2.0 * std::f32::consts::PI * hz / rate as f32;
        v.push((128.0 + 90.0 * phase.sin()) as u8);
    }
    v
}

fn uploads() {
    let data = std::env::temp_dir().join(format!("dinh-upload-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = 18_900 + (std::process::id() % 90) as u16;
    let hub = dinh_ops::HubProcess::start(&data, port);
    let base = hub.base.clone();
    let token = hub.token("chair", "chair");
    let wav = Arc::new(maximal_wav());
    let pid = hub.pid();
    let idle = proc_kib(pid, "VmRSS:");
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while done.load(Ordering::Relaxed) < 3 {
                peak.fetch_max(proc_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let (wav, token, base, done) = (wav.clone(), token.clone(), base.clone(), done.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(600)))
                    .build()
                    .into();
                let r = agent
                    .put(&format!("{base}/api/broadcast/files/dai-{i}.wav"))
                    .header("authorization", &format!("Bearer {token}"))
                    .header("content-type", "audio/wav")
                    .send(&wav[..]);
                let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
                let secs = t0.elapsed().as_secs_f64();
                done.fetch_add(1, Ordering::Relaxed);
                (status, secs)
            })
        })
        .collect();
    let results: Vec<(u16, f64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    sampler.join().unwrap();
    let hwm = proc_kib(pid, "VmHWM:");
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "Three maximal uploads at once ({:.1} MB each: 60 min, 8-bit mono, 18.6 kHz WAV).\n",
        wav.len() as f64 / 1e6
    );
    println!("| upload | status | done after s |");
    println!("|---|---|---|");
    for (i, (st, secs)) in results.iter().enumerate() {
        println!("| {i} | {st} | {secs:.1} |");
    }
    println!(
        "\nHub resident memory: idle {:.0} MB, peak while uploading {:.0} MB (VmHWM {:.0} MB).",
        idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("Before the bounds (issue 11 §4): 6 GB for three 60-minute 8-bit WAVs.");
}

fn main() {
    if std::env::args().any(|a| a == "--uploads") {
        return uploads();
    }
    let secs = std::env::args()
        .skip_while(|a| a != "--secs")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // One second of a speech-like signal (a 440 Hz tone with a 3 Hz syllable envelope), as
    // browsers send it: Opus, 20 ms, mono.
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let packets: Vec<Bytes> = (0..50)
        .map(|f| {
            let frame: Vec<f32> = (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f32 / 48_000.0;
                    let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                    0.2 * env * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                })
                .collect();
            Bytes::from(enc.encode_vec_float(&frame, 1500).unwrap())
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("Loudspeaker bridge on one thread, {secs} s per row (release build).\n");
    println!("| clusters | formats | RTP pkt/s | encodes/tick | CPU of one core | CPU ms/s per cluster | p50 ms | p99 ms | max ms | received/sent |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (n, distinct) in [(20, false), (100, false), (20, true), (100, true)] {
        rt.block_on(run(n, distinct, secs, &packets));
    }
    println!("\nGoals: p99 added latency under 60 ms; 100 clusters on one core (under 100 %).");
    println!("Latency: from the packet's push into the bridge to its RTP send, per output.");
}
