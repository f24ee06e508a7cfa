//! `dinh log verify`, `dinh log export` and `dinh projections rebuild` as an official runs
//! them: exit status and the position named.

mod common;

use common::dinh;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ActorRole, Command as Cmd};
use dinh_events::record::{checkpoint_if_due, Record};
use dinh_events::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_export_and_rebuild_from_the_command_line() {
    let data = common::app::data_dir("cli");
    std::fs::create_dir_all(&data).unwrap();
    let d = data.to_str().unwrap();
    let store = Store::open_sqlite(&data.join("record.sqlite"))
        .await
        .unwrap();
    let signer = dinh_events::chain::Signer::load_or_create(&data.join("record.key")).unwrap();
    let r = Record::new(store.clone(), Default::default());
    let now = time::OffsetDateTime::now_utc();
    let chair = Actor::new(ActorRole::Chair, "chair");
    let schedule = MeetingAction::Schedule {
        room: "demo".into(),
        title: "Họp".into(),
        starts_at: now,
        agenda: vec![],
    };
    r.meeting("m1", Cmd::new(now, chair.clone(), schedule), None)
        .await
        .unwrap();
    r.meeting(
        "m1",
        Cmd::new(now, chair.clone(), MeetingAction::Open),
        None,
    )
    .await
    .unwrap();
    for n in 0..6 {
        let a = MeetingAction::ReportHeadcount {
            house: "house-1".into(),
            count: 100 + n,
        };
        r.meeting("m1", Cmd::new(now, chair.clone(), a), None)
            .await
            .unwrap();
    }
    checkpoint_if_due(&store, &signer, 1, std::time::Duration::ZERO, true)
        .await
        .unwrap();

    let (code, out, err) = dinh(&["log", "verify", "--data", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("OK: 8 events, 1 signed checkpoints"),
        "{out}"
    );

    let export = data.join("export.jsonl");
    let (code, _, err) = dinh(&[
        "log",
        "export",
        "--data",
        d,
        "--format",
        "jsonl",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = dinh(&["log", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = dinh(&["log", "export", "--data", d, "--format", "xml"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown format 'xml'"), "{err}");

    let (code, out, err) = dinh(&["projections", "rebuild", "--data", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rebuilt to position 8"), "{out}");

    // Tamper with position 5 behind the hub's back.
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        data.join("record.sqlite").display()
    ))
    .await
    .unwrap();
    for sql in [
        "DROP TRIGGER events_no_update",
        "UPDATE events SET payload = replace(payload, '102', '109') WHERE position = 5",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    let (code, _, err) = dinh(&["log", "verify", "--data", d]);
    assert_eq!(code, 1);
    assert!(err.contains("FAILED at position 5"), "{err}");
    // The export taken before still verifies; a copy with one changed byte does not.
    let text =
        std::fs::read_to_string(&export)
            .unwrap()
            .replacen("\"count\":104", "\"count\":105", 1);
    std::fs::write(&export, text).unwrap();
    let (code, _, err) = dinh(&["log", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("FAILED at position 7"), "{err}");
}
