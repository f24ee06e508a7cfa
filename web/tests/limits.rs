//! What an outsider can make the hub hold over HTTP is bounded: idle connections beyond the
//! caps (from one source, and from many), clients that send nothing, or their headers or
//! body a byte at a time. Through it all `/healthz` answers within 100 ms, and the slow
//! ones are closed. (Reproductions of issue 11 §4: 20,000 idle connections from one client
//! took `/healthz` down with "Too many open files"; slowloris connections were never closed.)

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{ask, eventually, Hub};
use dinh_web::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn hub() -> Hub {
    Hub::start(|c| {
        c.limits.connections = 300;
        c.limits.connections_per_source = 40;
        c.limits.header_timeout_secs = 2;
        c.limits.body_timeout_secs = 3;
    })
    .await
}

/// Connections the hub closed for their slowness.
fn timed_out(hub: &Hub) -> u64 {
    let stats = &hub.state.conns.stats;
    stats.timed_out.load(std::sync::atomic::Ordering::Relaxed)
}

/// A connection from `source` (any 127.0.0.0/8 address is this machine's).
async fn connect_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::from(source), 0))?;
    s.connect(to).await
}

/// `/healthz` on a fresh connection from 127.0.0.1: its time to the full answer.
async fn healthz(to: SocketAddr) -> Duration {
    let t = Instant::now();
    let mut c = TcpStream::connect(to).await.expect("connect");
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut out))
        .await
        .expect("healthz answers")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok"), "{out}");
    t.elapsed()
}

async fn healthz_fast(to: SocketAddr, what: &str) {
    let mut times = Vec::new();
    for _ in 0..5 {
        times.push(healthz(to).await);
    }
    eprintln!("{what}: /healthz in {times:?}");
    for t in &times {
        assert!(*t < Duration::from_millis(100), "{what}: {times:?}");
    }
}

/// Whether the hub has closed `c`: a read returns end of file or a reset.
async fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response (400, 408): the close follows
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_caps_cannot_take_the_hub_down() {
    let hub = hub().await;
    let addr = hub.addr;
    // 2,000 idle connections from one source: the hub keeps 40, replacing the oldest idle.
    let mut flood = Vec::new();
    for _ in 0..2000 {
        match connect_from([127, 0, 0, 2], addr).await {
            Ok(c) => flood.push(c),
            Err(e) => panic!("the client ran out first: {e}"),
        }
    }
    let conns = hub.state.conns.clone();
    let src: IpAddr = [127, 0, 0, 2].into();
    eventually(10, "the source held at its cap", || {
        let n = conns.open_from(src);
        async move { n <= 40 }
    })
    .await;
    assert!(conns.open() <= 300);
    healthz_fast(addr, "2,000 idle from one source").await;

    // Many sources, 40 each: past the total of 300 the oldest idle ones make room.
    let mut more = Vec::new();
    for s in 3..=12u8 {
        for _ in 0..40 {
            if let Ok(c) = connect_from([127, 0, 0, s], addr).await {
                more.push(c);
            }
        }
    }
    eventually(10, "the hub held at its total cap", || {
        let n = conns.open();
        async move { n <= 300 }
    })
    .await;
    healthz_fast(addr, "400 more idle from ten sources").await;
    let evicted = conns
        .stats
        .evicted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(evicted >= 1900, "idle connections replaced: {evicted}");

    // And they all time out: 2 s to send a request.
    eventually(
        10,
        "every idle connection closed by the header timeout",
        || {
            let n = conns.open();
            async move { n == 0 }
        },
    )
    .await;
    drop(flood);
    drop(more);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed() {
    let hub = hub().await;
    let addr = hub.addr;

    // Says nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Sends its headers a byte at a time (slowloris).
    let mut loris = TcpStream::connect(addr).await.unwrap();
    // Sends a WHIP offer's body a byte at a time.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /whip/demo HTTP/1.1\r\nHost: hub\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv",
        )
        .await
        .unwrap();
    // Makes one request, then stays idle on the kept-alive connection.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();

    let started = Instant::now();
    let header = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let trickle = async {
        for (i, b) in header.iter().enumerate() {
            if loris.write_all(&[*b]).await.is_err() {
                return i;
            }
            let _ = slow_body.write_all(b"=").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        header.len()
    };
    let probes = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            healthz_fast(addr, "with slow clients").await;
        }
    };
    let (sent, ()) = tokio::join!(trickle, probes);
    assert!(sent < header.len(), "the slowloris was never closed");
    let loris_closed = started.elapsed();
    assert!(
        loris_closed >= Duration::from_secs(2) && loris_closed < Duration::from_secs(6),
        "headers are given 2 s: closed after {loris_closed:?}"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    // The slow body is answered with a clear error, then closed.
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow_body.read(&mut reply))
        .await
        .expect("the slow body gets an answer")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("did not arrive within"), "{reply}");
    assert!(closed_within(&mut slow_body, Duration::from_secs(3)).await);
    let t = timed_out(&hub);
    assert!(t >= 3, "timeouts counted: {t}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_not_evicted_by_a_flood_from_its_own_source() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let hub = hub().await;
    let addr = hub.addr;
    let token = hub.token(Role::House, "house-1");
    let tcp = connect_from([127, 0, 0, 20], addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws/demo?token={token}"), tcp)
            .await
            .unwrap();
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(c) = connect_from([127, 0, 0, 20], addr).await {
            flood.push(c);
        }
    }
    assert!(hub.state.conns.open_from([127, 0, 0, 20].into()) <= 40);
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the WebSocket still answers")
            .expect("still open")
            .unwrap();
        if m.to_text().unwrap_or("").contains("\"pong\"") {
            break;
        }
    }
    // Longer than the header timeout: an upgraded connection has its own rules.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let got_pong = async {
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().unwrap_or("").contains("\"pong\"") {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(Duration::from_secs(5), got_pong)
        .await
        .unwrap_or(false));
    drop(flood);
    hub.stop().await;
}

/// A house looping raise/lower over signalling (issue 11 §4: 1,000 permanent events in 4 s)
/// gets a `rate_limited` frame once its token's burst is spent; pings are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_writes_are_paced_per_token() {
    let hub = Hub::start(|c| {
        c.limits.write_burst = 4;
        c.limits.writes_per_minute = 1;
    })
    .await;
    let house = hub.token(Role::House, "house-1");
    let url = format!("ws://{}/ws/demo?token={house}", hub.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for frame in [r#"{"type":"raise_hand"}"#, r#"{"type":"lower_hand"}"#].repeat(2) {
        let got = ask(&mut ws, frame).await;
        assert!(!got.iter().any(|f| f.contains("rate_limited")), "{got:?}");
    }
    for _ in 0..3 {
        assert!(
            ask(&mut ws, r#"{"type":"ping"}"#).await.is_empty(),
            "pings are free"
        );
    }
    let got = ask(&mut ws, r#"{"type":"raise_hand"}"#).await;
    assert!(
        got.iter().any(|f| f.contains("\"rate_limited\"")),
        "{got:?}"
    );
    // Another house's token has its own rate.
    let other = hub.token(Role::House, "house-2");
    let url = format!("ws://{}/ws/demo?token={other}", hub.addr);
    let (mut ws2, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let got = ask(&mut ws2, r#"{"type":"raise_hand"}"#).await;
    assert!(!got.iter().any(|f| f.contains("rate_limited")), "{got:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed() {
    let hub = Hub::start(|c| c.limits.write_timeout_secs = 2).await;
    let before = hub.state.conns.open();
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let mut c = s.connect(hub.addr).await.unwrap();
    // Asks for the officials' page 300 times in a row (HTTP/1.1 pipelining, 28 MB of
    // answers), and reads none of it.
    let asks = "GET /official HTTP/1.1\r\nHost: hub\r\n\r\n".repeat(300);
    c.write_all(asks.as_bytes()).await.unwrap();
    eventually(5, "the connection is accepted", || async {
        hub.state.conns.open() > before
    })
    .await;
    let started = Instant::now();
    eventually(30, "the hub closes the connection", || async {
        hub.state.conns.open() == before
    })
    .await;
    eprintln!("closed after {:?}", started.elapsed());
    let t = timed_out(&hub);
    assert_eq!(t, 1, "counted as a timeout");
    healthz_fast(hub.addr, "after a client that stopped reading").await;
    drop(c);
    hub.stop().await;
}
