//! Low-bandwidth mode: a house on a poor link drops the video and keeps the meeting's voice;
//! when it turns video back on, the hub asks the chair for a keyframe at once, so the picture
//! comes back without waiting for the publisher's next periodic one.

mod harness;

use dinh_sfu::room::Role;
use dinh_sfu::signal::VideoMode;
use harness::{eventually, CHAIR_SLOTS, HOUSE_SLOTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_stops_the_video_and_keeps_the_voice() {
    let sfu = harness::sfu().await;
    let room = sfu.room("demo");
    let chair = harness::join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let house = harness::join(&room, "house-1", Role::House, false, &HOUSE_SLOTS).await;
    eventually(10, "video and audio", || {
        house.count("ProgramVideo") > 10 && house.count("ProgramAudio") > 10
    })
    .await;
    let requests = || {
        sfu.stats
            .keyframe_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    let video = || {
        room.state()
            .houses
            .iter()
            .find(|h| h.id == "house-1")
            .and_then(|h| h.video)
    };
    assert_eq!(video(), Some(VideoMode::Full));
    house.session.set_audio_only(true);
    assert!(house.session.audio_only());
    assert_eq!(video(), Some(VideoMode::Off), "the chair sees the mode");
    // The voice is the clock: 15 packets (300 ms) for what was in flight to land, then 100
    // (2 s) in which the video must not move.
    let voice = || house.count("ProgramAudio");
    let (v0, v1) = harness::over_a_window(voice, 15, 100, || house.count("ProgramVideo")).await;
    assert!(
        v1 - v0 <= 1,
        "video went on in audio-only mode: {v0} -> {v1}"
    );

    let before = requests();
    house.session.set_audio_only(false);
    eventually(5, "video again", || house.count("ProgramVideo") > v1 + 10).await;
    assert!(requests() > before, "no keyframe was asked for on resume");
    assert_eq!(video(), Some(VideoMode::Full));

    // Low quality without simulcast: one layer, so the video simply goes on.
    house.session.set_low_quality(true);
    assert_eq!(video(), Some(VideoMode::Small));
    house
        .receives_more("ProgramVideo", 10, 5, "video in low quality")
        .await;
    house.close().await;
    chair.close().await;
}
