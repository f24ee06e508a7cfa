//! A house that drops out and comes back gets the meeting again; a second screen with the same
//! house id replaces the first instead of appearing twice.
mod harness;
use dinh_sfu::floor::FloorChange;
use dinh_sfu::room::Role;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn house_leaves_and_rejoins() {
    let sfu = sfu().await;
    let room = sfu.room("demo");
    room.set_directory(vec![("house-1".into(), "Thôn 1".into())]);
    let chair = join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let h1 = join(&room, "house-1", Role::House, true, &HOUSE_SLOTS).await;
    eventually(15, "media at house-1", || h1.count("ProgramVideo") > 5).await;
    room.raise_hand("house-1").unwrap();
    room.grant_floor("house-1").unwrap();
    let mut floor = room.floor_changes();
    h1.close().await;
    eventually(5, "house-1 shown disconnected", || {
        !room.state().houses[0].connected
    })
    .await;
    // No command returned this change: the room announces it for the record to follow.
    assert_eq!(
        floor.try_recv().ok(),
        Some(FloorChange::Holder {
            from: Some("house-1".into()),
            to: None
        })
    );
    assert_eq!(
        room.state().floor,
        None,
        "a house that leaves loses the floor"
    );
    assert!(room.state().hands.is_empty());

    let again = join(&room, "house-1", Role::House, true, &HOUSE_SLOTS).await;
    eventually(15, "media after rejoin", || {
        again.count_from("ProgramVideo", "chair") > 5
    })
    .await;
    assert_eq!(again.first_video_was_keyframe("ProgramVideo"), Some(true));

    // The same house connects a second time (a kiosk that reconnected before its old
    // connection timed out): the old session ends, the new one counts once.
    let twin = join(&room, "house-1", Role::House, true, &HOUSE_SLOTS).await;
    eventually(5, "old session replaced", || again.session.is_closed()).await;
    assert_eq!(room.member_count(), 2); // chair + house-1
    eventually(15, "media at the newer screen", || {
        twin.count("ProgramAudio") > 5
    })
    .await;
    for c in [chair, twin, again] {
        c.close().await;
    }
}
