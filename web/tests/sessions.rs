//! WHIP/WHEP sessions are bounded and owned (issue 11 §4, §5): a session that never connects
//! is removed; sessions are capped per token, per room and in total; only the token that made
//! a session (or the room's chair) may PATCH or DELETE it, and only at its own kind of
//! location; a listen-only receiver gets sound only; remote candidates the hub would probe
//! for a client (too many, or on the hub's own machine) are refused.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{ask, eventually, Hub, Reply, Tone};
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::testkit::Peer;
use dinh_web::auth::Role;

async fn post(hub: &Hub, path: &str, token: &str, sdp: &str) -> Reply {
    hub.request(
        "POST",
        path,
        vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("content-type".into(), "application/sdp".into()),
        ],
        Some(sdp.as_bytes().to_vec()),
    )
    .await
}

/// An offer from a player that will never answer the hub's checks.
async fn offer(video: bool) -> (Peer, String) {
    let mut p = Peer::new(None).await;
    p.add_receiver(RtpCodecKind::Audio).await;
    if video {
        p.add_receiver(RtpCodecKind::Video).await;
    }
    let o = p.offer().await;
    (p, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_connects_is_removed() {
    let hub = Hub::start(|c| c.limits.connect_timeout_secs = 2).await;
    let (peer, sdp) = offer(true).await;
    let token = hub.token(Role::House, "house-1");
    let r = post(&hub, "/whep/demo", &token, &sdp).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let loc = r.header("location").unwrap().to_owned();
    assert_eq!(hub.state.sessions.len(), 1);
    assert_eq!(hub.state.sfu.stats.sessions.load(Ordering::Relaxed), 1);
    // The player never applies the answer: no ICE, no DTLS.
    drop(peer);
    let (sessions, sfu) = (hub.state.clone(), hub.state.sfu.clone());
    eventually(10, "the unconnected session removed", || {
        let gone = sessions.sessions.is_empty() && sfu.stats.sessions.load(Ordering::Relaxed) == 0;
        async move { gone }
    })
    .await;
    let (st, _) = hub.call("DELETE", &loc, &token, None).await;
    assert_eq!(st, 404);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_session_stays_past_the_timeout() {
    let hub = Hub::start(|c| c.limits.connect_timeout_secs = 2).await;
    let tone = Tone::publish(&hub, 440.0, 0.1).await;
    let (got, on_rtp) = common::packet_counter();
    let mut viewer = Peer::new(on_rtp).await;
    viewer.add_receiver(RtpCodecKind::Audio).await;
    let sdp = viewer.offer().await;
    let answer = hub.whep(&hub.token(Role::House, "house-1"), sdp).await;
    viewer.accept(answer).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = got.load(Ordering::Relaxed);
    eventually(10, "audio goes on after the connect timeout", || {
        let n = got.load(Ordering::Relaxed);
        async move { n > before + 50 }
    })
    .await;
    // The publisher's session and the player's.
    assert_eq!(hub.state.sessions.len(), 2);
    let _ = viewer.pc.close().await;
    tone.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_token_per_room_and_in_total() {
    let hub = Hub::start(|c| {
        c.limits.sessions_per_token = 2;
        c.limits.sessions_per_room = 5;
    })
    .await;
    let (_peer, sdp) = offer(false).await;
    let a = hub.token(Role::House, "house-1");
    for _ in 0..2 {
        assert_eq!(post(&hub, "/whep/demo", &a, &sdp).await.status, 201);
    }
    let r = post(&hub, "/whep/demo", &a, &sdp).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too_many_sessions"), "{}", r.body);
    // Another token of the same house is another token.
    let b = hub.token(Role::House, "house-1");
    let c = hub.token(Role::House, "house-2");
    for t in [&b, &b, &c] {
        assert_eq!(post(&hub, "/whep/demo", t, &sdp).await.status, 201);
    }
    let d = hub.token(Role::Official, "can-bo-1");
    let r = post(&hub, "/whep/demo", &d, &sdp).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("room_full"), "{}", r.body);
    assert_eq!(hub.state.sessions.len(), 5);
    assert_eq!(hub.state.sfu.stats.sessions.load(Ordering::Relaxed), 5);
    // A refusal holds no place: ending the sessions makes room again.
    hub.state.close_sessions().await;
    assert!(hub.state.sessions.is_empty());
    assert_eq!(post(&hub, "/whep/demo", &d, &sdp).await.status, 201);
    hub.stop().await;

    let hub = Hub::start(|c| c.limits.sessions = 3).await;
    for n in 0..3 {
        let t = hub.token(Role::House, &format!("house-{n}"));
        assert_eq!(post(&hub, "/whep/demo", &t, &sdp).await.status, 201);
    }
    let r = post(&hub, "/whep/demo", &hub.token(Role::House, "house-9"), &sdp).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("hub_full"), "{}", r.body);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_or_the_chair_changes_a_session_and_locations_keep_their_kind() {
    let hub = Hub::start(|_| {}).await;
    let (_peer, sdp) = offer(false).await;
    let owner = hub.token(Role::House, "house-1");
    let other = hub.token(Role::House, "house-2");
    let chair = hub.token(Role::Chair, "chair");
    let r = post(&hub, "/whep/demo", &owner, &sdp).await;
    assert_eq!(r.status, 201);
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with("/whep/demo/"), "{loc}");
    let frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9999 typ host\r\n";
    let etag = r.header("etag").unwrap().to_owned();
    let patch = |token: String, path: String| {
        let etag = etag.clone();
        let hub = &hub;
        async move {
            hub.request(
                "PATCH",
                &path,
                vec![
                    ("authorization".into(), format!("Bearer {token}")),
                    (
                        "content-type".into(),
                        "application/trickle-ice-sdpfrag".into(),
                    ),
                    ("if-match".into(), etag),
                ],
                Some(frag.as_bytes().to_vec()),
            )
            .await
        }
    };
    // Another house: refused, and the session goes on.
    let r = patch(other.clone(), loc.clone()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not_your_session"), "{}", r.body);
    let (st, body) = hub.call("DELETE", &loc, &other, None).await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(hub.state.sessions.len(), 1);
    // The same id under /whip/ is not this session.
    let whip_loc = loc.replacen("/whep/", "/whip/", 1);
    let (st, _) = hub.call("DELETE", &whip_loc, &owner, None).await;
    assert_eq!(st, 404);
    let r = patch(owner.clone(), whip_loc).await;
    assert_eq!(r.status, 404, "{}", r.body);
    // The owner may trickle; the chair may end it.
    let r = patch(owner.clone(), loc.clone()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let (st, _) = hub.call("DELETE", &loc, &chair, None).await;
    assert_eq!(st, 200);
    assert!(hub.state.sessions.is_empty());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_token_gets_sound_only() {
    let hub = Hub::start(|_| {}).await;
    let (_peer, sdp) = offer(true).await;
    let receiver = hub.token(Role::Receiver, "loa-1");
    let house = hub.token(Role::House, "house-1");
    let sections = |answer: &str| -> Vec<(String, bool)> {
        // (kind, whether the hub sends on it)
        answer
            .split("\r\nm=")
            .skip(1)
            .map(|s| {
                let kind = s.split(' ').next().unwrap_or("").to_owned();
                let sends = s.contains("a=ssrc:") || s.contains("a=msid:");
                (kind, sends)
            })
            .collect()
    };
    for query in ["", "?video=full"] {
        let r = post(&hub, &format!("/whep/demo{query}"), &receiver, &sdp).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let s = sections(&r.body);
        assert!(s.iter().any(|(k, on)| k == "audio" && *on), "{s:?}");
        assert!(s.iter().any(|(k, _)| k == "video"), "{s:?}");
        assert!(
            s.iter().all(|(k, on)| k != "video" || !on),
            "no video to a receiver: {}",
            r.body
        );
    }
    // A house's player gets the video.
    let r = post(&hub, "/whep/demo", &house, &sdp).await;
    assert!(sections(&r.body).iter().any(|(k, on)| k == "video" && *on));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_candidates_are_refused_and_trickle_is_capped() {
    let hub = Hub::start(|c| c.limits.trickled_candidates = 10).await;
    let (_peer, sdp) = offer(false).await;
    let token = hub.token(Role::House, "house-1");
    // 900 candidates at ports the client chose.
    let cut = sdp.find("a=candidate:").unwrap_or(sdp.len());
    let mut many = sdp[..cut].to_owned();
    for p in 0..900 {
        many.push_str(&format!(
            "a=candidate:{p} 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
            20_000 + p
        ));
    }
    many.push_str(&sdp[cut..]);
    let r = post(&hub, "/whep/demo", &token, &many).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("distinct ICE candidates; the limit is 32"),
        "{}",
        r.body
    );
    assert!(hub.state.sessions.is_empty());
    assert_eq!(hub.state.sfu.stats.sessions.load(Ordering::Relaxed), 0);

    let r = post(&hub, "/whep/demo", &token, &sdp).await;
    assert_eq!(r.status, 201);
    let loc = r.header("location").unwrap().to_owned();
    let etag = r.header("etag").unwrap().to_owned();
    let frag = |from: u16, n: u16| -> String {
        (from..from + n)
            .map(|p| format!("a=candidate:{p} 1 udp 2130706431 127.0.0.1 {p} typ host\r\n"))
            .collect()
    };
    let send = |body: String| {
        let (hub, loc, token, etag) = (&hub, loc.clone(), token.clone(), etag.clone());
        async move {
            hub.request(
                "PATCH",
                &loc,
                vec![
                    ("authorization".into(), format!("Bearer {token}")),
                    (
                        "content-type".into(),
                        "application/trickle-ice-sdpfrag".into(),
                    ),
                    ("if-match".into(), etag),
                ],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    assert_eq!(send(frag(30_000, 6)).await.status, 204);
    let r = send(frag(31_000, 6)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("at most 10"), "{}", r.body);
    assert_eq!(send(frag(32_000, 4)).await.status, 204);
    assert_eq!(send(frag(33_000, 1)).await.status, 422);
    hub.stop().await;
}

/// The hub is reached at a LAN address (`rtc.public_ip`): an offer's candidate on loopback
/// makes it probe nothing there. With the hub on loopback (a test, one machine), the same
/// offer is probed, which shows the probe would be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_on_the_hubs_own_machine_are_not_probed() {
    async fn probes(hub: &Hub) -> usize {
        let target = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let (_peer, sdp) = offer(false).await;
        let bare: String = sdp
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("a=candidate:"))
            .collect();
        let cand = format!("a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\n");
        let m = bare.find("a=end-of-candidates").unwrap_or(bare.len());
        let sdp = format!("{}{cand}{}", &bare[..m], &bare[m..]);
        let r = post(hub, "/whep/demo", &hub.token(Role::House, "house-1"), &sdp).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let mut n = 0;
        let mut buf = [0u8; 1500];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, target.recv(&mut buf)).await {
            n += 1;
        }
        n
    }
    let local = Hub::start(|_| {}).await;
    let seen = probes(&local).await;
    assert!(seen > 0, "a hub on loopback probes a loopback candidate");
    local.stop().await;
    let lan = Hub::start(|c| c.rtc.public_ip = Some("192.0.2.2".parse().unwrap())).await;
    assert_eq!(probes(&lan).await, 0, "no probe to the hub's own machine");
    lan.stop().await;
}

/// Over signalling, one ICE session may use `limits.trickled_candidates` distinct remote
/// candidates, offered or trickled; renegotiating with the same ufrag does not start the
/// count again (it did: each offer reset it, so a loop of offers and trickles made the hub
/// probe any number of addresses), while a repeat of a known candidate costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_candidates_are_capped_per_ice_session_across_renegotiations() {
    let hub = Hub::start(|c| c.limits.trickled_candidates = 6).await;
    let (_peer, sdp) = offer(false).await;
    let offered = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .count();
    assert!(offered < 6, "the test peer offers {offered} candidates");
    let token = hub.token(Role::House, "house-1");
    let url = format!("ws://{}/ws/demo?token={token}", hub.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let candidate = |p: u16| {
        serde_json::json!({"type": "candidate", "sdpMid": "0", "sdpMLineIndex": 0,
            "candidate": format!("candidate:{p} 1 udp 2130706431 127.0.0.1 {p} typ host")})
    };
    let offer = serde_json::json!({"type": "offer", "sdp": sdp}).to_string();
    let got = ask(&mut ws, &offer).await;
    assert!(got.iter().any(|f| f.contains("\"answer\"")), "{got:?}");
    let room = 6 - offered as u16;
    for p in 0..room {
        let got = ask(&mut ws, &candidate(40_000 + p).to_string()).await;
        assert!(got.is_empty(), "{got:?}");
    }
    let got = ask(&mut ws, &candidate(41_000).to_string()).await;
    assert!(
        got.iter().any(|f| f.contains("too_many_candidates")),
        "{got:?}"
    );
    // The same offer again (same ufrag): still full, but a known candidate is free.
    let got = ask(&mut ws, &offer).await;
    assert!(got.iter().any(|f| f.contains("\"answer\"")), "{got:?}");
    let got = ask(&mut ws, &candidate(41_001).to_string()).await;
    assert!(
        got.iter().any(|f| f.contains("too_many_candidates")),
        "{got:?}"
    );
    assert!(ask(&mut ws, &candidate(40_000).to_string())
        .await
        .is_empty());
    hub.stop().await;
}
