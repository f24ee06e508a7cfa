//! Every house that joins gets a picture, even when the chair's encoder sends a keyframe only
//! when asked (a camera encoder, a hub relaying without decoding), the houses join in a burst
//! inside one keyframe-request window, and none of them ever asks for a keyframe itself
//! (issue 12: with 20 to 80 such houses, 6 to 67 had no video after 3 s).

mod harness;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dinh_sfu::room::{Role, Slot};
use harness::{eventually, join_with, Keyframes};

/// Houses in the burst.
const HOUSES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_newcomer_gets_a_keyframe_from_an_encoder_that_waits_to_be_asked() {
    let sfu = harness::sfu().await;
    let room = sfu.room("demo");
    let chair = join_with(&room, "chair", Role::Chair, true, &[], Keyframes::OnRequest).await;
    eventually(15, "the chair live", || room.state().live).await;

    // The houses join 50 ms apart, each as soon as its turn comes (not one after the
    // other's negotiation): a burst, as when the chair opens the meeting and the screens of
    // a commune's villages connect at once. Their clients count packets and never send PLI.
    let started = Instant::now();
    let mut joining = Vec::new();
    for i in 0..HOUSES {
        let room = room.clone();
        joining.push(tokio::spawn(async move {
            harness::join(
                &room,
                &format!("house-{i}"),
                Role::House,
                false,
                &[Slot::ProgramAudio, Slot::ProgramVideo],
            )
            .await
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut houses = Vec::new();
    for j in joining {
        houses.push(j.await.expect("a house joins"));
    }

    eventually(30, "a keyframe and video at every house", || {
        houses
            .iter()
            .all(|h| h.keyframes("ProgramVideo") > 0 && h.count_from("ProgramVideo", "chair") > 5)
    })
    .await;
    for (i, h) in houses.iter().enumerate() {
        assert_eq!(
            h.first_video_was_keyframe("ProgramVideo"),
            Some(true),
            "house-{i} starts at a keyframe"
        );
    }
    let asked = chair
        .keyframe_requests
        .as_ref()
        .expect("the chair counts requests")
        .load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{HOUSES} houses joining 50 ms apart: all with a keyframe {secs:.1} s after the first \
         began; the chair was asked for {asked} keyframes"
    );
    // Not one per house: at most one per 500 ms window, plus the chair's own start.
    assert!(
        asked as f64 <= 2.0 + secs / 0.5,
        "{asked} requests in {secs:.1} s"
    );
    for h in houses {
        h.close().await;
    }
    chair.close().await;
}
