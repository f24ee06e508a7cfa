//! The record's integrity as the hub shows it, through the router: `/api/integrity` for
//! officials and chairs only, `/healthz` and the metric going bad when the hub starts over a
//! log that was changed behind its back (and it then signs nothing), and projection rows
//! edited in the database made harmless by the rebuild at start-up.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::app::{self, state_in, token};
use dinh_web::auth::Role;
use dinh_web::AppState;

fn data_dir() -> PathBuf {
    app::data_dir("integrity")
}

/// Stop a hub's background tasks and sign what it holds, as a shutdown does.
async fn stop(s: AppState) {
    s.recording.checkpoint_now().await;
    let _ = s.closing.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn call(
    s: &AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let a = app::call(s, method, path, token, body).await;
    (a.status, a.body)
}

/// `GET /api/integrity` as `role`: status and body.
async fn integrity(s: &AppState, role: Role) -> (StatusCode, String) {
    call(s, "GET", "/api/integrity", Some(&token(s, role, "x")), None).await
}

async fn meeting_with_feedback(s: &AppState) -> (String, String) {
    let chair = token(s, Role::Chair, "chair");
    let (st, v) = call(
        s,
        "POST",
        "/api/meetings",
        Some(&chair),
        Some(json!({"id": "m1", "title": "Họp dân", "starts_at": "2026-11-23T08:00:00+07:00"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = call(
        s,
        "POST",
        "/api/meetings/m1/commands",
        Some(&chair),
        Some(json!({"type": "open"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mut ids = Vec::new();
    for house in ["house-1", "house-2"] {
        let t = token(s, Role::House, house);
        let body = json!({"meeting": "m1", "content": format!("Đường ở {house} hỏng")});
        let (st, v) = call(s, "POST", "/api/feedback", Some(&t), Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let v: Value = serde_json::from_str(&v).unwrap();
        ids.push(v["aggregate_id"].as_str().unwrap().to_owned());
    }
    (ids[0].clone(), ids[1].clone())
}

async fn sqlite(data: &Path, stmts: &[&str]) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        data.join("record.sqlite").display()
    ))
    .await
    .unwrap();
    for s in stmts {
        sqlx::query(s).execute(&mut c).await.unwrap();
    }
}

async fn feedback_ids(s: &AppState, house: &str) -> Vec<String> {
    let t = token(s, Role::House, house);
    let (st, v) = call(s, "GET", "/api/feedback", Some(&t), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v: Value = serde_json::from_str(&v).unwrap();
    v.as_array()
        .or_else(|| v["items"].as_array())
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officials_and_chairs_see_the_integrity_and_others_do_not() {
    let data = data_dir();
    let s = state_in(&data).await;
    meeting_with_feedback(&s).await;
    s.recording.checkpoint_now().await;
    let (st, body) = integrity(&s, Role::Official).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["signing"], true);
    assert_eq!(v["head"], 4);
    assert_eq!(v["last_checkpoint"]["size"], 4);
    assert!(v["last_checkpoint"]["note"]
        .as_str()
        .unwrap()
        .starts_with(v["origin"].as_str().unwrap()));
    assert!(v["public_key"]
        .as_str()
        .unwrap()
        .starts_with("dinh.local/record-"));
    assert!(v["message"]["vi"].as_str().unwrap().contains("nguyên vẹn"));
    assert_eq!(v["last_verification"]["ok"], true);
    let (st, _) = integrity(&s, Role::Chair).await;
    assert_eq!(st, StatusCode::OK);
    for role in [Role::House, Role::Receiver] {
        let (st, body) = integrity(&s, role).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    }
    let (st, _) = call(&s, "GET", "/api/integrity", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // /metrics needs an official's token on the main address (no `metrics_listen` here).
    let official = token(&s, Role::Official, "official");
    let (st, body) = call(&s, "GET", "/metrics", Some(&official), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("dinh_record_integrity_ok 1"), "{body}");
    assert!(body.contains("dinh_record_checkpoint_size 4"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_started_over_a_changed_log_signs_nothing_and_says_why() {
    let data = data_dir();
    let s = state_in(&data).await;
    meeting_with_feedback(&s).await;
    stop(s).await;
    // Behind the hub's back: the feedback of house-1 (position 3) is rewritten and every
    // hash after it recomputed, so that the chain alone looks right.
    {
        // (Opening a store creates the triggers again: drop them after.)
        let store = dinh_events::store::Store::open_sqlite(&data.join("record.sqlite"))
            .await
            .unwrap();
        sqlite(&data, &["DROP TRIGGER events_no_update"]).await;
        let mut prev = [0u8; 32];
        let mut stmts = vec![
            "UPDATE events SET payload = replace(payload, 'hỏng', 'tốt') WHERE position = 3"
                .to_owned(),
        ];
        sqlite(&data, &[stmts[0].as_str()]).await;
        for e in store.read(0, 100).await.unwrap() {
            let h = e.chain_hash(&prev);
            stmts.push(format!(
                "UPDATE events SET hash = '{}' WHERE position = {}",
                hex::encode(h),
                e.position
            ));
            prev = h;
        }
        let refs: Vec<&str> = stmts[1..].iter().map(String::as_str).collect();
        sqlite(&data, &refs).await;
    }
    let s = state_in(&data).await;
    let (st, body) = call(&s, "GET", "/healthz", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("position 4") && body.contains("Merkle"),
        "{body}"
    );
    let (_, body) = integrity(&s, Role::Official).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["signing"].clone()),
        (json!(false), json!(false)),
        "{v}"
    );
    assert_eq!(v["problem"]["position"], 4, "{v}");
    assert!(
        v["message"]["vi"].as_str().unwrap().starts_with("CẢNH BÁO"),
        "{v}"
    );
    let official = token(&s, Role::Official, "official");
    let (_, metrics) = call(&s, "GET", "/metrics", Some(&official), None).await;
    assert!(metrics.contains("dinh_record_integrity_ok 0"), "{metrics}");
    // It goes on recording (the meeting goes on) but signs nothing over the changed log.
    let before = s.recording.store().checkpoints().await.unwrap().len();
    let chair = token(&s, Role::Chair, "chair");
    let (st, _) = call(
        &s,
        "POST",
        "/api/meetings/m1/commands",
        Some(&chair),
        Some(json!({"type": "close"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    s.recording.checkpoint_now().await;
    assert_eq!(
        s.recording.store().checkpoints().await.unwrap().len(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_projection_row_is_not_served_after_a_restart() {
    let data = data_dir();
    let s = state_in(&data).await;
    let (of_house1, of_house2) = meeting_with_feedback(&s).await;
    // Wait until the projector has stored the rows.
    for _ in 0..100 {
        if *s.recording.projected.borrow() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(feedback_ids(&s, "house-2").await, vec![of_house2.clone()]);
    stop(s).await;
    // The stored row of house-1's item is moved to house-2 (a denunciation's author would be
    // exposed to the other house).
    let sql = format!(
        "UPDATE projection_rows SET row = replace(row, '\"house\":\"house-1\"', '\"house\":\"house-2\"') WHERE name = 'feedback' AND key = '{of_house1}'"
    );
    sqlite(&data, &[sql.as_str()]).await;
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            data.join("record.sqlite").display()
        ))
        .await
        .unwrap();
        let row: String = sqlx::query_scalar(
            "SELECT row FROM projection_rows WHERE name = 'feedback' AND key = ?",
        )
        .bind(&of_house1)
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(
            row.contains("\"house\":\"house-2\""),
            "the edit took: {row}"
        );
    }
    let s = state_in(&data).await;
    assert_eq!(feedback_ids(&s, "house-2").await, vec![of_house2]);
    assert_eq!(feedback_ids(&s, "house-1").await, vec![of_house1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_snapshot_does_not_decide_commands_after_a_restart() {
    let data = data_dir();
    let s = state_in(&data).await;
    let (of_house1, _) = meeting_with_feedback(&s).await;
    stop(s).await;
    // A snapshot of house-1's item, at its last event, that says house-2 raised it: loaded as
    // is, house-1 could no longer withdraw its own item.
    let forged = json!({"status": "received", "house": "house-2", "kind": null,
        "assignee": null, "deadline": null, "overdue": false});
    let sql = format!(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, version, payload) \
         SELECT 'feedback', '{of_house1}', MAX(sequence), 1, '{forged}' FROM events \
         WHERE aggregate_type = 'feedback' AND aggregate_id = '{of_house1}'"
    );
    sqlite(&data, &[sql.as_str()]).await;
    let s = state_in(&data).await;
    let withdraw = json!({"type": "withdraw"});
    let path = format!("/api/feedback/{of_house1}/commands");
    let house2 = token(&s, Role::House, "house-2");
    let (st, v) = call(&s, "POST", &path, Some(&house2), Some(withdraw.clone())).await;
    assert!(!st.is_success(), "house-2 withdrew house-1's item: {v}");
    let house1 = token(&s, Role::House, "house-1");
    let (st, v) = call(&s, "POST", &path, Some(&house1), Some(withdraw)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_for_a_record_with_events_stops_the_start() {
    let data = data_dir();
    let s = state_in(&data).await;
    meeting_with_feedback(&s).await;
    stop(s).await;
    std::fs::remove_file(data.join("record.key")).unwrap();
    let mut config = dinh_web::config::Config {
        data: data.clone(),
        ..Default::default()
    };
    config.rtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    let e = AppState::start(config.clone())
        .await
        .err()
        .expect("no new key over old events")
        .to_string();
    assert!(e.contains("missing") && e.contains("restore"), "{e}");
    // A key elsewhere (record.key_path) that others may read is refused too.
    let elsewhere = data_dir();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let path = elsewhere.join("record.key");
    dinh_events::chain::Signer::load_or_create(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    config.record.key_path = Some(path);
    let e = AppState::start(config)
        .await
        .err()
        .expect("an exposed key")
        .to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

async fn raw(s: &AppState, method: &str, path: &str, body: String) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "text/plain")
        .body(Body::from(body))
        .unwrap();
    let res = dinh_web::app(s.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_route_answers_as_the_specification_says() {
    use dinh_events::chain::Signer;
    // Without [[witness.logs]] the hub is no witness.
    let plain = state_in(&data_dir()).await;
    let (st, _) = raw(
        &plain,
        "POST",
        "/witness/add-checkpoint",
        "old 0\n\nx".into(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let log = Signer::ephemeral().with_origin("xa-b.example/record");
    let mut config = dinh_web::config::Config {
        data: data_dir(),
        ..Default::default()
    };
    config.rtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    config.witness.logs = vec![dinh_web::config::WitnessedLog {
        vkey: log.log_vkey().to_string(),
        origin: None,
    }];
    let s = AppState::start(config).await.unwrap();
    let hash = dinh_events::witness::origin_hash("xa-b.example/record");
    let (st, _) = raw(
        &s,
        "GET",
        &format!("/witness/{hash}/checkpoint"),
        String::new(),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing held yet");
    let note = |k: &Signer, size: u64| {
        let mut f = dinh_events::chain::Frontier::default();
        for i in 0..size {
            f.push(&i.to_be_bytes());
        }
        k.sign(size, &f.root(), &[0; 32], "2026-11-21T00:00:00Z")
            .note
            .unwrap()
    };
    let body =
        |k: &Signer, size: u64| dinh_events::witness::AddCheckpoint::body(0, &[], &note(k, size));
    let (st, text) = raw(&s, "POST", "/witness/add-checkpoint", "old x\n\n".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let stranger = Signer::ephemeral().with_origin("xa-b.example/record");
    let (st, _) = raw(&s, "POST", "/witness/add-checkpoint", body(&stranger, 2)).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a key the witness does not trust"
    );
    let other = Signer::ephemeral().with_origin("elsewhere.example/record");
    let (st, _) = raw(&s, "POST", "/witness/add-checkpoint", body(&other, 2)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an unknown origin");
    let (st, line) = raw(&s, "POST", "/witness/add-checkpoint", body(&log, 2)).await;
    assert_eq!(st, StatusCode::OK, "{line}");
    let vkey = s.witness.as_ref().unwrap().vkey();
    assert!(line.starts_with(&format!("— {} ", vkey.name)), "{line}");
    let (st, held) = raw(
        &s,
        "GET",
        &format!("/witness/{hash}/checkpoint"),
        String::new(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let held = dinh_events::note::Note::parse(held.as_bytes()).unwrap();
    assert!(held.verify(&vkey).is_ok() && held.verify(&log.log_vkey()).is_ok());
    // Stale `old`: 409 with the size held, as text/x.tlog.size.
    let req = Request::post("/witness/add-checkpoint")
        .body(Body::from(body(&log, 5)))
        .unwrap();
    let res = dinh_web::app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["content-type"], "text/x.tlog.size");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"2\n");
    // Too large a body is refused before it is read whole.
    let (st, _) = raw(&s, "POST", "/witness/add-checkpoint", "x".repeat(200_000)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}
