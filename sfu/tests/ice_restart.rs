//! A house's network changes (4G to Wi-Fi): its old path goes dead, it restarts ICE on the
//! same session with a new offer, and the meeting reaches it again on the new path without
//! leaving the room.

mod harness;

use std::time::Duration;

use dinh_sfu::room::Role;
use dinh_sfu::testkit::LossyLink;
use dinh_sfu::webrtc::peer_connection::RTCSessionDescription;
use harness::{eventually, Via, CHAIR_SLOTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_moves_a_house_to_a_new_path() {
    let sfu = harness::sfu().await;
    let room = sfu.room("demo");
    let chair = harness::join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let hub = sfu.mux().advertised_addr();
    let old_path = LossyLink::start(hub, 0.0, Duration::ZERO).await;
    let mut house = harness::watcher(&room, "house-1", Via::Link(&old_path)).await;
    eventually(10, "audio on the old path", || {
        house.count("ProgramAudio") > 20
    })
    .await;

    // The old path dies: nothing more arrives.
    drop(old_path);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = house.count("ProgramAudio");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        house.count("ProgramAudio") - before < 3,
        "the old path is not dead"
    );

    // The house restarts ICE over a new path, on the same session.
    let new_path = LossyLink::start(hub, 0.0, Duration::ZERO).await;
    let offer = house.peer.restart_offer().await;
    let answer = house
        .session
        .renegotiate(RTCSessionDescription::offer(offer).unwrap())
        .await
        .unwrap();
    house
        .peer
        .accept(dinh_sfu::sdp::rewrite_candidates(&answer, new_path.addr))
        .await;
    house
        .receives_more("ProgramAudio", 50, 15, "audio again, on the new path")
        .await;
    assert!(house.count("ProgramVideo") > 0);
    // Still one member: the house never left the room.
    assert!(room
        .state()
        .houses
        .iter()
        .any(|h| h.id == "house-1" && h.connected));
    assert!(!house.session.is_closed());
    house.close().await;
    chair.close().await;
}
