//! A house on a network that lets nothing through but a TURN server: a real coturn (Debian's
//! package) with the hub's time-limited credentials (coturn's REST API scheme,
//! `use-auth-secret`), the client restricted to relay candidates, and the meeting's audio
//! reaching it through the relay; and a house with no UDP at all, over ICE-TCP to the hub.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, Hub, Tone};
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::Peer;
use dinh_sfu::webrtc::peer_connection::RTCIceServer;
use dinh_web::auth::Role;

/// The server runs while this lives (killed on drop).
struct Coturn(#[allow(dead_code)] tokio::process::Child);

impl Coturn {
    /// Start coturn on a free port; returns it and the port. A port picked from a free UDP
    /// socket can still be taken for something else by the time coturn binds it, and then
    /// coturn never answers: try another.
    async fn start(secret: &str) -> (Self, u16) {
        for _ in 0..3 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let coturn = Self::spawn(port, secret);
            if answers(port, Duration::from_secs(10)).await {
                return (coturn, port);
            }
        }
        panic!("coturn never answered a STUN binding request on three ports");
    }

    fn spawn(port: u16, secret: &str) -> Self {
        let relay = 40_000 + (port % 1000) * 10;
        let child = tokio::process::Command::new("turnserver")
            // The configuration shipped for deployers, with this test's addresses and secret
            // on the command line (which coturn applies after the file).
            .arg("-c")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../ops/deploy/turnserver.conf"
            ))
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                &format!("--min-port={relay}"),
                &format!("--max-port={}", relay + 9),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=dinh.test",
                "--no-tls",
                "--no-dtls",
                // TURN over UDP only: coturn does not start when its TCP port is taken (a
                // parallel test's outgoing TCP connection can hold the same number).
                "--no-tcp",
                "--no-cli",
                "--allow-loopback-peers",
                "--fingerprint",
                "--log-file=stdout",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("turnserver (Debian package coturn) must be installed");
        Self(child)
    }
}

/// Whether a STUN server answers a binding request on `port` within `within`.
async fn answers(port: u16, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // A STUN binding request: type 0x0001, length 0, the magic cookie, a transaction id.
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        req.extend_from_slice(&[7u8; 12]);
        let _ = s.send_to(&req, ("127.0.0.1", port)).await;
        let mut buf = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(200), s.recv_from(&mut buf))
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_house_behind_a_turn_server_gets_the_meeting_through_the_relay() {
    let secret = "bi-mat-turn";
    let (_coturn, port) = Coturn::start(secret).await;
    let hub = Hub::start(|c| {
        c.ice.turn = vec![format!("turn:127.0.0.1:{port}?transport=udp")];
        c.ice.turn_secret = Some(secret.into());
    })
    .await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    // What the hub hands the house's page (the signalling welcome): TURN with fresh
    // credentials minted from the shared secret.
    let servers: Vec<RTCIceServer> = hub
        .state
        .ice_servers("house-1")
        .into_iter()
        .map(|s| RTCIceServer {
            urls: s.urls,
            username: s.username.unwrap_or_default(),
            credential: s.credential.unwrap_or_default(),
        })
        .collect();
    assert_eq!(servers.len(), 1);
    assert!(
        servers[0].username.ends_with(":house-1"),
        "{:?}",
        servers[0].username
    );
    let (got, on_rtp) = common::packet_counter();
    let mut house = Peer::with_ice(on_rtp, servers, true).await;
    house.add_receiver(RtpCodecKind::Audio).await;
    let offer = house.offer().await;
    assert!(
        offer.contains("typ relay"),
        "no relay candidate was gathered:\n{offer}"
    );
    assert!(
        !offer.contains("typ host"),
        "relay-only, yet host candidates:\n{offer}"
    );
    let token = hub.token(Role::House, "house-1");
    let answer = hub.whep(&token, offer).await;
    house.accept(answer).await;
    eventually(20, "audio through the TURN relay", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;
    let _ = house.pc.close().await;
    tone.stop().await;
}

/// A house whose network blocks UDP altogether and has no TURN server: ICE-TCP to the hub's
/// one TCP port (`rtc.tcp_listen`), through WHEP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_house_without_udp_watches_over_the_hubs_tcp_port() {
    let hub = Hub::start(|c| c.rtc.tcp_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let tcp = hub.state.tcp.clone().expect("the TCP mux runs");
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    let (got, on_rtp) = common::packet_counter();
    let mut house = Peer::tcp_only(on_rtp).await;
    house.add_receiver(RtpCodecKind::Audio).await;
    let offer = house.offer().await;
    let answer = hub.whep(&hub.token(Role::House, "house-1"), offer).await;
    let port = tcp.advertised_addr().port();
    assert!(
        answer.contains(&format!(" {port} typ host tcptype passive")),
        "no candidate on the TCP port {port}:\n{answer}"
    );
    house.accept(answer).await;
    eventually(20, "audio over ICE-TCP", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;
    // Garbage on the TCP port is closed and counted; the house keeps its audio.
    let mut junk = tokio::net::TcpStream::connect(tcp.local_addr().unwrap())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    eventually(10, "the junk stream is refused", || {
        let n = tcp.stats.refused.load(Ordering::Relaxed);
        async move { n == 1 }
    })
    .await;
    let official = hub.token(Role::Official, "can-bo-1");
    let (st, m) = hub.call("GET", "/metrics", &official, None).await;
    assert_eq!(st, 200);
    assert!(m.contains("dinh_tcp_routed_total 1\n"), "{m}");
    assert!(m.contains("dinh_tcp_refused_total 1\n"), "{m}");
    let before = got.load(Ordering::Relaxed);
    eventually(10, "audio goes on", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > before + 25 }
    })
    .await;
    let _ = house.pc.close().await;
    tone.stop().await;
}
