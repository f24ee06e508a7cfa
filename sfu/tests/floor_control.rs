//! A house given the floor is heard by the chair and the other houses, and only while it has it.
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

    // Muted: the floor holder's audio stops, its video goes on.
    room.set_muted("house-1", true).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = chair.count("FloorAudio");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(chair.count("FloorAudio"), a, "muted house is not heard");
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
    let from_h1 = chair.count_from("FloorAudio", "house-1");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        chair.count_from("FloorAudio", "house-1"),
        from_h1,
        "one house holds the floor at a time"
    );

    room.revoke_floor().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let n = chair.count("FloorAudio");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(chair.count("FloorAudio"), n, "no floor audio after revoke");
    assert!(matches!(room.revoke_floor(), Err(FloorError::NobodyHolds)));
    assert!(matches!(
        room.grant_floor("house-9"),
        Err(FloorError::NotConnected(_))
    ));
    for c in [chair, h1, h2] {
        c.close().await;
    }
}
