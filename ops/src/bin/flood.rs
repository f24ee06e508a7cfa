//! Floods a real release `dinh serve` (its own process, default limits) the way issue 11 §4
//! describes, and prints the hub's memory (RSS) and open file descriptors before and after
//! each flood, its open connections and WHIP/WHEP sessions (from `/metrics`), and how long
//! `/healthz` takes meanwhile:
//!
//! 1. 20,000 idle TCP connections from one source (127.0.0.2);
//! 2. idle connections from 60 sources (127.0.0.3–62), 256 each, past the total cap;
//! 3. 1,000 slowloris connections sending a header byte per second;
//! 4. 5,000 WHEP `POST`s that never connect (one token each);
//! 5. one offer with 900 candidates.
//!
//! `cargo build --release --bin dinh -p dinh-web && cargo run --release -p dinh-ops --bin flood`
//! (`DINH_BIN` names another binary). Needs an open-file limit above 20,000 for itself
//! (`ulimit -n 65536` as root) or it floods with what it has. Traffic stays on loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::Peer;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn own_fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// One plain request on a fresh connection from 127.0.0.1; status and body.
fn http(addr: SocketAddr, req: &str) -> (u16, String) {
    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    if c.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// `/healthz` five times: (median, slowest) in ms, and whether all answered.
fn healthz(addr: SocketAddr) -> (f64, f64, bool) {
    let mut t = Vec::new();
    let mut ok = true;
    for _ in 0..5 {
        let s = Instant::now();
        let (st, body) = http(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
        );
        ok &= st == 200 && body == "ok";
        t.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(f64::total_cmp);
    (t[2], t[4], ok)
}

fn metric(addr: SocketAddr, token: &str, name: &str) -> u64 {
    let (_, body) = http(
        addr,
        &format!("GET /metrics HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

struct Report<'a> {
    pid: u32,
    addr: SocketAddr,
    metrics: &'a str,
}

impl Report<'_> {
    fn row(&self, phase: &str) {
        let (p50, max, ok) = healthz(self.addr);
        println!(
            "{phase:<44} {:>9.1} {:>6} {:>6} {:>8} {:>7.1} {:>7.1} {:>4}",
            rss_kib(self.pid) as f64 / 1024.0,
            fds(self.pid),
            metric(self.addr, self.metrics, "dinh_http_connections"),
            metric(self.addr, self.metrics, "dinh_whip_sessions"),
            p50,
            max,
            if ok { "ok" } else { "FAIL" }
        );
    }
}

fn socket_from(source: [u8; 4]) -> Option<tokio::net::TcpSocket> {
    let s = tokio::net::TcpSocket::new_v4().ok()?;
    s.bind(SocketAddr::new(IpAddr::from(source), 0)).ok()?;
    Some(s)
}

/// Open `n` connections from `source`, holding at most `hold` at once (dropping those the
/// hub closed first, as a client would, so the flood is not limited by our own descriptors).
async fn idle_flood(
    sources: &[[u8; 4]],
    n: usize,
    hold: usize,
    to: SocketAddr,
) -> Vec<tokio::net::TcpStream> {
    let mut open: Vec<tokio::net::TcpStream> = Vec::new();
    for i in 0..n {
        let src = sources[i % sources.len()];
        if open.len() >= hold {
            let mut b = [0u8; 16];
            open.retain(|c| match c.try_read(&mut b) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            });
            if open.len() >= hold {
                open.drain(..hold / 10);
            }
        }
        let Some(s) = socket_from(src) else {
            continue;
        };
        if let Ok(c) = s.connect(to).await {
            open.push(c);
        }
    }
    open
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let data = std::env::temp_dir().join(format!("dinh-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = 18_950;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let hub = dinh_ops::HubProcess::start(&data, port);
    let pid = hub.pid();
    let keys = dinh_web::auth::Keys::load_or_create(&data).unwrap();
    let ttl = Duration::from_secs(3600);
    use dinh_web::auth::Role;
    let metrics = keys.issue("flood", "flood", Role::Official, "demo", ttl);
    let r = Report {
        pid,
        addr,
        metrics: &metrics,
    };
    let limit = own_fd_limit();
    let hold = limit.saturating_sub(200).min(19_000);
    println!(
        "hub pid {pid}; this client's open-file limit {limit}, holding at most {hold} sockets"
    );
    println!(
        "{:<44} {:>9} {:>6} {:>6} {:>8} {:>7} {:>7} {:>4}",
        "phase", "rss_mib", "fds", "conns", "sessions", "hz_p50", "hz_max", ""
    );
    r.row("idle hub");

    // 1. 20,000 idle connections from one source.
    let t = Instant::now();
    let held = idle_flood(&[[127, 0, 0, 2]], 20_000, hold, addr).await;
    println!(
        "  (20,000 connections opened in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    r.row("20,000 idle from one source (held)");
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.row("  after the client let go");

    // 2. 60 sources × 256.
    let sources: Vec<[u8; 4]> = (3..63).map(|n| [127, 0, 0, n]).collect();
    let held = idle_flood(&sources, 60 * 256, hold, addr).await;
    r.row("15,360 idle from 60 sources (held)");
    tokio::time::sleep(Duration::from_secs(11)).await;
    r.row("  11 s later (header timeout 10 s)");
    drop(held);

    // 3. Slowloris: 1,000 connections from 10 sources, a header byte a second.
    let mut loris = Vec::new();
    for i in 0..1000u32 {
        let src = [127, 0, 1, (i % 10) as u8 + 1];
        if let Some(s) = socket_from(src) {
            if let Ok(c) = s.connect(addr).await {
                loris.push(c);
            }
        }
    }
    let line = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let t = Instant::now();
    let mut alive_at = Vec::new();
    for (k, b) in line.iter().enumerate().take(15) {
        let mut alive = 0;
        for c in &loris {
            if c.try_write(&[*b]).is_ok() {
                alive += 1;
            }
        }
        alive_at.push((k, alive));
        if k == 5 {
            r.row("1,000 slowloris, 5 s in");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "  slowloris still writable per second: {:?} ({:.0} s)",
        alive_at.iter().map(|(_, a)| a).collect::<Vec<_>>(),
        t.elapsed().as_secs_f64()
    );
    r.row("  after 15 s");
    drop(loris);

    // 4. 5,000 WHEP POSTs that never connect, one token each.
    let mut p = Peer::new(None).await;
    p.add_receiver(RtpCodecKind::Audio).await;
    p.add_receiver(RtpCodecKind::Video).await;
    let offer = p.offer().await;
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    let t = Instant::now();
    for i in 0..5000 {
        let token = keys.issue(&format!("house-{i}"), "h", Role::House, "demo", ttl);
        let req = format!(
            "POST /whep/demo HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
            offer.len()
        );
        let (st, _) = tokio::task::spawn_blocking(move || http(addr, &req))
            .await
            .unwrap();
        *counts.entry(st).or_default() += 1;
    }
    println!(
        "  5,000 WHEP POSTs in {:.1} s: statuses {counts:?}",
        t.elapsed().as_secs_f64()
    );
    r.row("5,000 WHEP POSTs never connecting");
    tokio::time::sleep(Duration::from_secs(35)).await;
    r.row("  35 s later (connect timeout 30 s)");

    // 5. 900 candidates in one offer.
    let cut = offer.find("a=candidate:").unwrap_or(offer.len());
    let mut many = offer[..cut].to_owned();
    for q in 0..900 {
        many.push_str(&format!(
            "a=candidate:{q} 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
            30_000 + q
        ));
    }
    many.push_str(&offer[cut..]);
    let token = keys.issue("house-x", "h", Role::House, "demo", ttl);
    let req = format!(
        "POST /whep/demo HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{many}",
        many.len()
    );
    let (st, body) = tokio::task::spawn_blocking(move || http(addr, &req))
        .await
        .unwrap();
    println!("  offer with 900 candidates: {st} {}", body.trim());
    r.row("after the 900-candidate offer");

    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}
