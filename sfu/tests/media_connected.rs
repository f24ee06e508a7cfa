//! A house counts as connected (in the room's state, which the record's attendance follows,
//! and for the floor) only once its media flows: ICE and DTLS done, not the SDP answer.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dinh_sfu::floor::FloorError;
use dinh_sfu::room::{JoinRequest, Role};
use dinh_sfu::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use dinh_sfu::sdp::{parse_offer, rewrite_candidates};
use dinh_sfu::testkit::{LossyLink, Peer};
use harness::{eventually, CHAIR_SLOTS, HOUSE_SLOTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_house_whose_ice_never_completes_is_never_connected() {
    let sfu = harness::sfu().await;
    let room = sfu.room("demo");
    room.set_directory(vec![
        ("house-1".into(), "Thôn 1".into()),
        ("house-2".into(), "Thôn 2".into()),
    ]);
    // Every state the room publishes is looked at: was house-1 ever shown connected?
    let ever = Arc::new(AtomicBool::new(false));
    let mut states = room.watch_state();
    let seen = ever.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if states
                .borrow_and_update()
                .houses
                .iter()
                .any(|h| h.id == "house-1" && h.connected)
            {
                seen.store(true, Ordering::Relaxed);
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    });
    let chair = harness::join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;

    // house-1 gets its SDP answer, but a firewall drops every datagram both ways: its checks
    // toward the hub go into a link that loses everything, the hub's toward it into a port
    // that never answers. Its ICE never completes. house-2 connects normally meanwhile.
    let wall = LossyLink::start(sfu.mux().advertised_addr(), 1.0, Duration::ZERO).await;
    let void = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut peer = Peer::new(None).await;
    peer.add_receiver(RtpCodecKind::Audio).await;
    peer.add_receiver(RtpCodecKind::Video).await;
    let offer = rewrite_candidates(&peer.offer().await, void.local_addr().unwrap());
    let h1 = room
        .join(
            JoinRequest {
                id: "house-1".into(),
                name: "Thôn 1".into(),
                role: Role::House,
                publish: false,
                subscribe: HOUSE_SLOTS.to_vec(),
            },
            parse_offer(&offer).unwrap(),
        )
        .await
        .expect("an answer: signalling went through");
    peer.accept(rewrite_candidates(&h1.answer, wall.addr)).await;
    let h2 = harness::join(&room, "house-2", Role::House, true, &HOUSE_SLOTS).await;
    eventually(15, "house-2 connected and hearing the chair", || {
        room.state()
            .houses
            .iter()
            .any(|h| h.id == "house-2" && h.connected)
            && h2.count_from("ProgramAudio", "chair") > 50
    })
    .await;
    assert!(h2.session.is_connected());

    // A second of the chair's voice later (house-2 is the clock), house-1 is still nowhere.
    h2.receives_more("ProgramAudio", 50, 15, "another second at house-2")
        .await;
    assert!(!h1.is_connected());
    assert!(
        !ever.load(Ordering::Relaxed),
        "house-1 was shown connected: {:?}",
        room.state()
    );
    assert_eq!(
        wall.passed[0].load(Ordering::Relaxed),
        0,
        "nothing got through the wall"
    );
    assert!(matches!(
        room.grant_floor("house-1"),
        Err(FloorError::NotConnected(_))
    ));
    assert!(room.grant_floor("house-2").is_ok());
    // The caller can bound the wait: a session whose ICE never completes is closed.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h1.connected())
            .await
            .is_err(),
        "still waiting"
    );
    h1.close().await;
    let _ = peer.pc.close().await;
    eventually(5, "house-1's session gone", || room.member_count() == 2).await;
    assert!(!ever.load(Ordering::Relaxed));
    watcher.abort();
    for c in [chair, h2] {
        c.close().await;
    }
}
