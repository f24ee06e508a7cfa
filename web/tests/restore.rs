//! What the record keeps comes back by itself when the hub restarts on the same data: the
//! floor holder of the open meeting holds the floor again in the SFU's room, so that the
//! minutes and what the houses hear agree after a power cut.

mod common;

use common::Hub;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_web::auth::Role;
use time::OffsetDateTime;

async fn post(hub: &Hub, token: &str, path: &str, body: serde_json::Value) {
    let (st, reply) = hub
        .call(
            "POST",
            path,
            token,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
    assert!((200..300).contains(&st), "{path}: {st} {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_holder_holds_the_floor_again_after_a_restart() {
    let data = common::app::data_dir("restore");
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    let chair = hub.token(Role::Chair, "chair");
    post(
        &hub,
        &chair,
        "/api/meetings",
        serde_json::json!({"id": "m1", "title": "Họp", "starts_at": "2026-12-01T08:00:00+07:00"}),
    )
    .await;
    post(
        &hub,
        &chair,
        "/api/meetings/m1/commands",
        serde_json::json!({"type": "open"}),
    )
    .await;
    // The SFU's outcomes as the hub records them: house 1's media came up, the chair gave it
    // the floor.
    let rec = &hub.state.recording.record;
    let now = OffsetDateTime::now_utc();
    let connect = MeetingAction::ConnectHouse {
        house: "house-1".into(),
        connection: "c1".into(),
    };
    rec.meeting("m1", Command::new(now, Actor::system("sfu"), connect), None)
        .await
        .unwrap();
    let grant = MeetingAction::GrantFloor {
        house: "house-1".into(),
    };
    let o = rec
        .meeting(
            "m1",
            Command::new(now, Actor::new(ActorRole::Chair, "chair"), grant),
            None,
        )
        .await
        .unwrap();
    let position = o.appended.unwrap().last;
    let mut projected = hub.state.recording.projected.subscribe();
    projected.wait_for(|p| *p >= position).await.unwrap();
    assert_eq!(
        hub.state.recording.floor_holder("demo").await.as_deref(),
        Some("house-1")
    );
    let state = hub.state.clone();
    assert!(!state.tasks.is_empty(), "the hub runs background tasks");
    hub.stop().await;
    // Shutdown waited for every background task (projector, checkpointer, watchers, bridge).
    assert!(state.tasks.is_closed());
    assert_eq!(state.tasks.len(), 0, "a background task outlived the hub");
    drop(state);

    // Restarted on the same data: nobody has reconnected yet, and house 1 holds the floor.
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    let state = hub.state.sfu.room("demo").state();
    assert_eq!(state.floor.as_deref(), Some("house-1"));
    hub.stop().await;

    // A meeting closed meanwhile leaves nobody holding it.
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    post(
        &hub,
        &chair,
        "/api/meetings/m1/commands",
        serde_json::json!({"type": "close"}),
    )
    .await;
    hub.stop().await;
    let d = data.clone();
    let hub = Hub::start(move |c| c.data = d).await;
    assert_eq!(hub.state.sfu.room("demo").state().floor, None);
    hub.stop().await;
    let _ = std::fs::remove_dir_all(data);
}
