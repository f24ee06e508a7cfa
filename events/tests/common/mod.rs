//! Harness for the store tests: a fresh SQLite file or a fresh PostgreSQL schema per test.
#![allow(dead_code)]

use std::path::PathBuf;

use dinh_events::domain::feedback::FeedbackAction;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_events::store::Store;
use time::OffsetDateTime;

/// A fresh folder under cargo's target tmp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn sqlite() -> (Store, String) {
    let path = temp_dir("store").join("record.sqlite");
    let store = Store::open_sqlite(&path).await.unwrap();
    (store, path.to_string_lossy().into_owned())
}

/// The URL of a fresh schema in the test database, or `None` when no PostgreSQL is
/// configured (`./ops/test` always configures one and sets DINH_REQUIRE_POSTGRES).
pub async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("DINH_TEST_DATABASE_URL") else {
        if std::env::var("DINH_REQUIRE_POSTGRES").is_ok() {
            panic!("DINH_REQUIRE_POSTGRES is set but DINH_TEST_DATABASE_URL is not");
        }
        eprintln!("DINH_TEST_DATABASE_URL not set: PostgreSQL case skipped (./ops/test runs it)");
        return None;
    };
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test database");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

pub async fn postgres() -> Option<(Store, String)> {
    let url = postgres_url().await?;
    Some((Store::open_postgres(&url).await.unwrap(), url))
}

/// Run one SQL statement on the database behind a store, through a connection of its own
/// (as someone with access to the database file or server could).
pub async fn raw_exec(target: &str, sql: &str) -> Result<u64, String> {
    use sqlx::Connection;
    macro_rules! exec {
        ($connect:expr) => {{
            let mut c = $connect.await.map_err(|e| e.to_string())?;
            let done = sqlx::query(sql).execute(&mut c).await;
            done.map(|r| r.rows_affected()).map_err(|e| e.to_string())
        }};
    }
    if target.starts_with("postgres") {
        exec!(sqlx::PgConnection::connect(target))
    } else {
        exec!(sqlx::SqliteConnection::connect(&format!(
            "sqlite://{target}"
        )))
    }
}

/// One `HeadcountReported` event for aggregate `id` at `seq`, as a raw append.
pub fn headcount_append(id: &str, seq: u64) -> dinh_events::store::Append {
    dinh_events::store::Append {
        aggregate_type: "meeting".into(),
        aggregate_id: id.into(),
        first_sequence: seq,
        events: vec![(
            "HeadcountReported".into(),
            "1".into(),
            serde_json::json!({"type": "headcount_reported", "house": "h", "count": seq}),
        )],
        command_id: None,
        actor: "system:test".into(),
        recorded_at: "2026-11-23T01:00:00Z".into(),
        snapshot: None,
    }
}

pub fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

pub fn chair_cmd(at_: &str, action: MeetingAction) -> Command<MeetingAction> {
    Command::new(at(at_), Actor::new(ActorRole::Chair, "chair"), action)
}

pub fn sfu_cmd(at_: &str, action: MeetingAction) -> Command<MeetingAction> {
    Command::new(at(at_), Actor::system("sfu"), action)
}

/// The SFU reports `house`'s headcount in `meeting` at `at_`, once for each of `counts`.
pub async fn report_headcounts(
    r: &dinh_events::record::Record,
    meeting: &str,
    at_: &str,
    house: &str,
    counts: impl IntoIterator<Item = u32>,
) {
    for count in counts {
        let a = MeetingAction::ReportHeadcount {
            house: house.into(),
            count,
        };
        r.meeting(meeting, sfu_cmd(at_, a), None).await.unwrap();
    }
}

pub fn house_fb(at_: &str, house: &str, action: FeedbackAction) -> Command<FeedbackAction> {
    Command::new(at(at_), Actor::new(ActorRole::House, house), action)
}

pub fn official_fb(at_: &str, id: &str, action: FeedbackAction) -> Command<FeedbackAction> {
    Command::new(at(at_), Actor::new(ActorRole::Official, id), action)
}

/// Schedule meeting `id` in room `demo` and open it, as the chair.
pub async fn open_meeting(r: &dinh_events::record::Record, id: &str) {
    for (at_, action) in [
        ("2026-11-23T01:00:00Z", schedule("demo")),
        ("2026-11-23T01:01:00Z", MeetingAction::Open),
    ] {
        r.meeting(id, chair_cmd(at_, action), None).await.unwrap();
    }
}

pub fn schedule(room: &str) -> MeetingAction {
    MeetingAction::Schedule {
        room: room.into(),
        title: "Họp dân quý IV".into(),
        starts_at: at("2026-11-23T01:00:00Z"),
        agenda: vec!["Giao thông".into(), "Thủy lợi".into()],
    }
}

/// Run the same async test body against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, target) = common::sqlite().await;
                ($body)(store, target).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((store, target)) = common::postgres().await {
                    ($body)(store, target).await;
                }
            }
        }
    };
}
