//! Houses on networks that block UDP reach the meeting over ICE-TCP (RFC 6544), all through
//! the hub's one TCP port, while the chair stays on UDP.

mod harness;

use std::sync::atomic::Ordering;

use dinh_sfu::room::Role;
use harness::{eventually, Via, CHAIR_SLOTS, HOUSE_SLOTS};

/// The TCP candidate lines of an answer.
fn tcp_candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" tcp "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn houses_without_udp_join_over_the_one_tcp_port() {
    let (sfu, tcp) = harness::sfu_with_tcp().await;
    let port = tcp.advertised_addr().port();
    let room = sfu.room("demo");
    let chair = harness::join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let h1 = harness::join_with(&room, "house-1", Role::House, true, &HOUSE_SLOTS, Via::Tcp).await;
    let h2 = harness::join_with(&room, "house-2", Role::House, true, &HOUSE_SLOTS, Via::Tcp).await;

    // Every TCP candidate the hub offers is passive and on the one port.
    for house in [&h1, &h2] {
        let cands = tcp_candidates(&house.session.answer);
        assert!(!cands.is_empty(), "the answer offers ICE-TCP");
        for c in &cands {
            assert!(
                c.contains(&format!(" {port} typ host tcptype passive")),
                "candidate off the shared port: {c}"
            );
        }
    }

    eventually(15, "the chair's audio and video over TCP", || {
        [&h1, &h2]
            .iter()
            .all(|h| h.count("ProgramAudio") > 50 && h.count("ProgramVideo") > 30)
    })
    .await;
    assert_eq!(tcp.stats.routed.load(Ordering::Relaxed), 2);

    // A house on TCP can take the floor: its voice reaches the chair over UDP.
    room.raise_hand("house-1").unwrap();
    room.grant_floor("house-1").unwrap();
    eventually(10, "house-1's voice at the chair", || {
        chair.count_from("FloorAudio", "house-1") > 20
    })
    .await;

    // A house that drops its TCP connection leaves; the other stays served.
    h1.close().await;
    h2.receives_more("ProgramAudio", 50, 10, "house-2 still hears the chair")
        .await;
    h2.close().await;
    chair.close().await;
}
