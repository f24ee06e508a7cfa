//! The chair's camera and voice reach every house; late joiners start at a keyframe.
mod harness;
use dinh_sfu::room::Role;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chair_reaches_every_house() {
    let sfu = sfu().await;
    let room = sfu.room("demo");
    let chair = join(&room, "chair", Role::Chair, true, &CHAIR_SLOTS).await;
    let mut houses = Vec::new();
    for i in 1..=4 {
        houses.push(
            join(
                &room,
                &format!("house-{i}"),
                Role::House,
                true,
                &HOUSE_SLOTS,
            )
            .await,
        );
    }
    for h in &houses {
        eventually(15, "program audio and video at each house", || {
            h.count_from("ProgramAudio", "chair") > 10 && h.count_from("ProgramVideo", "chair") > 10
        })
        .await;
        assert_eq!(
            h.first_video_was_keyframe("ProgramVideo"),
            Some(true),
            "video starts at a keyframe"
        );
        // Nobody holds the floor: no floor media.
        assert_eq!(h.count("FloorAudio"), 0);
    }
    assert!(room.state().live);
    assert_eq!(
        room.state().houses.iter().filter(|h| h.connected).count(),
        4
    );
    chair.close().await;
    eventually(5, "room not live after the chair leaves", || {
        !room.state().live
    })
    .await;
    for h in houses {
        h.close().await;
    }
    eventually(5, "every session gone", || room.member_count() == 0).await;
    assert_eq!(sfu.mux().route_count(), (0, 0), "no routes leak on the mux");
}
