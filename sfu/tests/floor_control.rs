//! A house given the floor is heard by the chair and the other houses, and only while it has it.
//!
//! No fixed sleeps: the media that goes on is the clock. "Not heard" is checked over a stretch
//! of another stream that keeps flowing (the holder's picture, or the chair's voice at a
//! house), after letting the same stream run long enough for what was in flight to land.
mod harness;
use dinh_sfu::floor::FloorError;
use dinh_sfu::room::Role;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_granted_muted_and_revoked() {
    let sfu = sfu().await;
    let room = sfu.room("demo");
    let chair = join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let h1 = join(&room, "house-1", Role::House, true, &HOUSE_SLOTS).await;
    let h2 = join(&room, "house-2", Role::House, true, &HOUSE_SLOTS).await;
    eventually(15, "program at house-2", || h2.count("ProgramAudio") > 5).await;
    assert_eq!(
        chair.count("FloorAudio"),
        0,
        "no house is heard before it has the floor"
    );

    room.raise_hand("house-1").unwrap();
    assert_eq!(room.state().hands, vec!["house-1".to_owned()]);
    room.grant_floor("house-1").unwrap();
    assert_eq!(room.state().floor.as_deref(), Some("house-1"));
    eventually(10, "house-1 heard by chair and house-2", || {
        chair.count_from("FloorAudio", "house-1") > 10
            && h2.count_from("FloorAudio", "house-1") > 10
    })
    .await;
    eventually(10, "house-1 seen by house-2", || {
        h2.count_from("FloorVideo", "house-1") > 5
    })
    .await;
    assert_eq!(h1.count("FloorAudio"), 0, "a house does not hear itself");

    // Muted: the floor holder's audio stops, its video goes on (and is the clock: 10 of its
    // frames, about 300 ms, to settle; 15 more, about 500 ms, of silence).
    room.set_muted("house-1", true).unwrap();
    let frames = || chair.count_from("FloorVideo", "house-1");
    let (a, after) = over_a_window(frames, 10, 15, || chair.count("FloorAudio")).await;
    assert_eq!(after, a, "muted house is not heard");
    room.set_muted("house-1", false).unwrap();
    eventually(10, "unmuted house heard again", || {
        chair.count("FloorAudio") > a + 5
    })
    .await;

    // Passing the floor to house-2: house-1 goes quiet for the chair, house-2 is heard.
    room.grant_floor("house-2").unwrap();
    eventually(10, "house-2 heard by chair", || {
        chair.count_from("FloorAudio", "house-2") > 10
    })
    .await;
    let (from_h1, after) = over_a_window(
        || chair.count_from("FloorAudio", "house-2"),
        0,
        20,
        || chair.count_from("FloorAudio", "house-1"),
    )
    .await;
    assert_eq!(after, from_h1, "one house holds the floor at a time");

    // Revoked: the chair's voice at house-2 is the clock (15 packets to settle, 25 of
    // silence on the floor).
    room.revoke_floor().unwrap();
    let program = || h2.count_from("ProgramAudio", "chair");
    let (n, after) = over_a_window(program, 15, 25, || chair.count("FloorAudio")).await;
    assert_eq!(after, n, "no floor audio after revoke");
    assert!(matches!(room.revoke_floor(), Err(FloorError::NobodyHolds)));
    assert!(matches!(
        room.grant_floor("house-9"),
        Err(FloorError::NotConnected(_))
    ));
    for c in [chair, h1, h2] {
        c.close().await;
    }
}
