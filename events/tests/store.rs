//! The store suite, run against SQLite and against PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dinh_events::chain::Signer;
use dinh_events::domain::feedback::{FeedbackAction, FeedbackKind};
use dinh_events::domain::meeting::{Meeting, MeetingAction};
use dinh_events::domain::Decide;
use dinh_events::projections::Views;
use dinh_events::record::{checkpoint_if_due, Record, RecordError, Refusal};
use dinh_events::store::{Append, Store, StoreError};
use dinh_events::verify::{export, verify_export, verify_store};

fn record(store: Store) -> Arc<Record> {
    Arc::new(Record::new(store, Default::default()))
}

/// A record over `store` in which meeting `m1` is open (two events: scheduled, opened).
async fn with_meeting(store: &Store) -> Arc<Record> {
    let r = record(store.clone());
    open_meeting(&r, "m1").await;
    r
}

both!(
    positions_are_gap_free_under_concurrent_commands,
    |store: Store, _target: String| async move {
        let r = record(store.clone());
        let mut tasks = Vec::new();
        for m in 0..8 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("m{m}");
                open_meeting(&r, &id).await;
                report_headcounts(&r, &id, "2026-11-23T01:02:00Z", "house-1", 0..20).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let all = store.read(0, 10_000).await.unwrap();
        assert_eq!(all.len(), 8 * 22);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1);
        }
        assert_eq!(store.head(), 176);
        let report = verify_store(&store, None).await.unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.events, 176);
    }
);

both!(
    a_stale_append_is_a_conflict,
    |store: Store, _target: String| async move {
        let append = |seq: u64| Append {
            aggregate_type: "meeting".into(),
            aggregate_id: "m1".into(),
            first_sequence: seq,
            events: vec![(
                "MeetingOpened".into(),
                "1".into(),
                serde_json::json!({"type": "meeting_opened"}),
            )],
            command_id: None,
            actor: "chair:chair".into(),
            recorded_at: "2026-11-23T01:00:00Z".into(),
            snapshot: None,
        };
        store.append(append(1)).await.unwrap();
        let err = store.append(append(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let err = store.append(append(3)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(store.head(), 1);
        store.append(append(2)).await.unwrap();
        assert_eq!(store.head(), 2);
    }
);

both!(
    a_retried_command_appends_nothing_new,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        let cmd = || {
            sfu_cmd(
                "2026-11-23T01:05:00Z",
                MeetingAction::ReportHeadcount {
                    house: "house-1".into(),
                    count: 12,
                },
            )
        };
        let first = r.meeting("m1", cmd(), Some("key-1".into())).await.unwrap();
        assert!(!first.replayed);
        let again = r.meeting("m1", cmd(), Some("key-1".into())).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.appended, first.appended);
        assert_eq!(store.head(), 3);
        // Two retries racing: one appends, both get its result.
        let (a, b) = tokio::join!(
            r.meeting("m1", cmd(), Some("key-2".into())),
            r.meeting("m1", cmd(), Some("key-2".into()))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.appended, b.appended);
        assert!(a.replayed ^ b.replayed);
        assert_eq!(store.head(), 4);
        // A raise retried: the item id of the first attempt comes back.
        let raise = || {
            house_fb(
                "2026-11-23T01:06:00Z",
                "house-1",
                FeedbackAction::Raise {
                    meeting: "m1".into(),
                    agenda_item: None,
                    house: "house-1".into(),
                    content: "Đèn đường hỏng".into(),
                },
            )
        };
        let f1 = r
            .feedback("fb-a", raise(), Some("raise-1".into()))
            .await
            .unwrap();
        let f2 = r
            .feedback("fb-b", raise(), Some("raise-1".into()))
            .await
            .unwrap();
        assert_eq!(f2.aggregate_id, "fb-a");
        assert_eq!(f1.appended, f2.appended);
        assert_eq!(store.head(), 5);
    }
);

both!(
    a_refused_command_appends_nothing,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        let err = r
            .meeting(
                "m1",
                chair_cmd("2026-11-23T01:05:00Z", MeetingAction::Open),
                None,
            )
            .await
            .unwrap_err();
        match err {
            RecordError::Refused { kind, message } => {
                assert_eq!(kind, Refusal::State);
                assert_eq!(message, "the meeting is already open");
            }
            other => panic!("{other}"),
        }
        let err = r
            .feedback(
                "nope",
                official_fb(
                    "2026-11-23T01:05:00Z",
                    "o1",
                    FeedbackAction::Answer { answer: "x".into() },
                ),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Refused {
                    kind: Refusal::NotFound,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.head(), 2);
    }
);

both!(
    the_log_refuses_updates_and_deletes,
    |store: Store, target: String| async move {
        let _record = with_meeting(&store).await;
        let refused = raw_exec(
            &target,
            "UPDATE events SET payload = '{}' WHERE position = 1",
        )
        .await;
        assert!(refused.unwrap_err().contains("append-only"));
        let refused = raw_exec(&target, "DELETE FROM events WHERE position = 2").await;
        assert!(refused.unwrap_err().contains("append-only"));
        assert!(verify_store(&store, None).await.unwrap().ok());
    }
);

both!(
    checkpoints_sign_the_log_and_exports_verify_offline,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        let signer = Signer::ephemeral();
        for i in 0..10 {
            r.meeting(
                "m1",
                sfu_cmd(
                    "2026-11-23T01:05:00Z",
                    MeetingAction::ReportHeadcount {
                        house: "house-2".into(),
                        count: i,
                    },
                ),
                None,
            )
            .await
            .unwrap();
            if i == 4 {
                assert_eq!(
                    checkpoint_if_due(&store, &signer, 5, Duration::from_secs(3600), false)
                        .await
                        .unwrap(),
                    Some(7)
                );
            }
        }
        // Not due: 5 new events, threshold 10.
        assert_eq!(
            checkpoint_if_due(&store, &signer, 10, Duration::from_secs(3600), false)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            checkpoint_if_due(&store, &signer, 10, Duration::from_secs(3600), true)
                .await
                .unwrap(),
            Some(12)
        );
        let report = verify_store(&store, Some(signer.public_hex()))
            .await
            .unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.checkpoints, 2);
        assert_eq!(report.unsigned_tail, 0);
        // Another key is not trusted.
        let report = verify_store(&store, Some(Signer::ephemeral().public_hex()))
            .await
            .unwrap();
        assert_eq!(report.problem.unwrap().position, 7);

        let mut out = Vec::new();
        assert_eq!(
            export(&store, &signer.public_hex(), &mut out)
                .await
                .unwrap(),
            12
        );
        let report = verify_export(&out[..], Some(signer.public_hex())).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.events, report.checkpoints), (12, 2));
        // One changed character in the export is found, at its position.
        let text = String::from_utf8(out).unwrap();
        let tampered = text.replacen("\"count\":3", "\"count\":8", 1);
        assert_ne!(tampered, text);
        let report = verify_export(tampered.as_bytes(), Some(signer.public_hex())).unwrap();
        assert_eq!(report.problem.unwrap().position, 6);
        // Dropping the last event (truncation) is caught by the checkpoint at 12.
        let lines: Vec<&str> = text.lines().collect();
        let mut cut: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.contains("\"position\":12"))
            .collect();
        cut[0] = lines[0];
        let report = verify_export(cut.join("\n").as_bytes(), Some(signer.public_hex())).unwrap();
        assert!(!report.ok());
    }
);

both!(
    projections_follow_the_log_and_rebuild_to_the_same_rows,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        let connect = |house: &str, c: &str| MeetingAction::ConnectHouse {
            house: house.into(),
            connection: c.into(),
        };
        let disconnect = |house: &str, c: &str| MeetingAction::DisconnectHouse {
            house: house.into(),
            connection: c.into(),
        };
        let grant = MeetingAction::GrantFloor {
            house: "house-1".into(),
        };
        let steps = [
            sfu_cmd("2026-11-23T01:02:00Z", connect("house-1", "a")),
            // Connected again while connected (the SFU replaced its session): one presence,
            // time not counted twice; the end of a connection never recorded changes nothing.
            sfu_cmd("2026-11-23T01:05:00Z", connect("house-1", "b")),
            sfu_cmd("2026-11-23T01:10:00Z", disconnect("house-1", "b")),
            sfu_cmd("2026-11-23T01:12:00Z", disconnect("house-1", "a")),
            // Reconnects later for 3 minutes.
            sfu_cmd("2026-11-23T01:20:00Z", connect("house-1", "c")),
            chair_cmd("2026-11-23T01:21:00Z", grant),
            chair_cmd("2026-11-23T01:22:30Z", MeetingAction::RevokeFloor),
        ];
        for cmd in steps {
            r.meeting("m1", cmd, None).await.unwrap();
        }
        let raise = FeedbackAction::Raise {
            meeting: "m1".into(),
            agenda_item: Some(0),
            house: "house-1".into(),
            content: "Cầu tràn ngập nước".into(),
        };
        let classify = FeedbackAction::Classify {
            kind: FeedbackKind::Complaint,
        };
        for cmd in [
            house_fb("2026-11-23T01:22:40Z", "house-1", raise),
            official_fb("2026-11-23T02:00:00Z", "o1", classify),
        ] {
            r.feedback("fb1", cmd, None).await.unwrap();
        }
        let close = chair_cmd("2026-11-23T01:23:00Z", MeetingAction::Close);
        r.meeting("m1", close, None).await.unwrap();

        let mut live = Views::load(&store).await.unwrap();
        live.catch_up(&store).await.unwrap();
        let row = live.attendance.get("m1/house-1").unwrap();
        assert_eq!(row.seconds_connected, 10 * 60 + 3 * 60);
        assert_eq!(row.joins, 2);
        assert_eq!(row.seconds_speaking, 90);
        let fb = live.feedback.get("fb1").unwrap();
        assert_eq!(fb.status, "classified");
        assert_eq!(fb.kind, Some(FeedbackKind::Complaint));
        let minutes = live.minutes.get("m1").unwrap();
        assert_eq!(minutes.status, "closed");
        assert_eq!(minutes.feedback, vec!["fb1".to_string()]);
        assert_eq!(minutes.floor.len(), 1);

        // Reloaded from the tables: the same rows, nothing left to apply.
        let mut reloaded = Views::load(&store).await.unwrap();
        assert_eq!(reloaded.position(), store.head());
        assert_eq!(reloaded.catch_up(&store).await.unwrap(), 0);
        assert_eq!(reloaded.attendance.get("m1/house-1"), Some(row));
        // Rebuilt from position 0: the same rows again.
        let rebuilt = Views::rebuild(&store).await.unwrap();
        assert_eq!(rebuilt.attendance.get("m1/house-1"), Some(row));
        assert_eq!(rebuilt.feedback.get("fb1"), Some(fb));
        assert_eq!(rebuilt.minutes.get("m1"), Some(minutes));
    }
);

both!(
    snapshots_give_the_same_state_as_a_full_replay,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        let connect = MeetingAction::ConnectHouse {
            house: "house-3".into(),
            connection: "c".into(),
        };
        r.meeting("m1", sfu_cmd("2026-11-23T01:02:00Z", connect), None)
            .await
            .unwrap();
        report_headcounts(&r, "m1", "2026-11-23T01:03:00Z", "house-3", 0..70).await;
        let (state, seq, version) = store
            .snapshot("meeting", "m1")
            .await
            .unwrap()
            .expect("a snapshot was kept");
        assert_eq!((seq, version), (64, 2));
        // Rules that depend on state loaded from the snapshot still hold.
        let grant = MeetingAction::GrantFloor {
            house: "house-3".into(),
        };
        r.meeting("m1", chair_cmd("2026-11-23T01:04:00Z", grant.clone()), None)
            .await
            .unwrap();
        let again = r
            .meeting("m1", chair_cmd("2026-11-23T01:04:01Z", grant), None)
            .await
            .unwrap();
        assert_eq!(
            again.appended, None,
            "granting to the holder changes nothing"
        );
        let replayed = r.load_meeting("m1").await.unwrap();
        assert_eq!(replayed.floor(), Some("house-3"));
        assert!(state.is_object());
        // The snapshot is the state after exactly its sequence.
        let snap: Meeting = serde_json::from_value(state).unwrap();
        let mut upto = Meeting::default();
        for e in store.aggregate_events("meeting", "m1", 0).await.unwrap() {
            if e.sequence <= seq {
                upto.apply_event(&serde_json::from_value(e.payload).unwrap());
            }
        }
        assert_eq!(snap, upto);
    }
);

/// The meeting as a full replay of its events gives it (no snapshot, no cache).
async fn full_replay(store: &Store, id: &str) -> Meeting {
    let mut m = Meeting::default();
    for e in store.aggregate_events("meeting", id, 0).await.unwrap() {
        m.apply_event(&serde_json::from_value(e.payload).unwrap());
    }
    m
}

both!(
    a_cold_record_loads_from_the_snapshot_the_state_of_a_full_replay,
    |store: Store, target: String| async move {
        let r = with_meeting(&store).await;
        for (i, h) in ["house-1", "house-2", "house-3"].iter().enumerate() {
            let connect = MeetingAction::ConnectHouse {
                house: (*h).into(),
                connection: format!("c{i}"),
            };
            r.meeting("m1", sfu_cmd("2026-11-23T01:02:00Z", connect), None)
                .await
                .unwrap();
        }
        // Hands up and down: 40 events, a hand still raised at the end.
        for i in 0..20u32 {
            let house = format!("house-{}", 1 + i % 3);
            let up = MeetingAction::RaiseHand {
                house: house.clone(),
            };
            r.meeting("m1", sfu_cmd("2026-11-23T01:03:00Z", up), None)
                .await
                .unwrap();
            if i < 19 {
                let down = MeetingAction::LowerHand { house };
                r.meeting("m1", sfu_cmd("2026-11-23T01:03:30Z", down), None)
                    .await
                    .unwrap();
            }
        }
        let (_, seq, _) = store.snapshot("meeting", "m1").await.unwrap().unwrap();
        assert!(
            seq >= 32 && seq < store.head(),
            "a snapshot at {seq} and events after it up to {}",
            store.head()
        );
        // Another process's record, with nothing in memory: snapshot, then the events after.
        let cold = record(Store::open(&target).await.unwrap());
        let loaded = cold.load_meeting("m1").await.unwrap();
        assert_eq!(loaded, full_replay(&store, "m1").await);
        assert_eq!(loaded, r.load_meeting("m1").await.unwrap());
    }
);

both!(
    another_hubs_commands_on_the_same_database_are_seen,
    |store: Store, target: String| async move {
        let here = record(store.clone());
        let there = record(Store::open(&target).await.unwrap());
        open_meeting(&here, "m1").await;
        here.load_meeting("m1").await.unwrap();
        // The other hub records a house connecting: our meeting in memory does not know it,
        // and a grant decided against it would be refused. It is decided again, fresh.
        let connect = MeetingAction::ConnectHouse {
            house: "house-1".into(),
            connection: "c1".into(),
        };
        there
            .meeting("m1", sfu_cmd("2026-11-23T01:02:00Z", connect), None)
            .await
            .unwrap();
        let grant = MeetingAction::GrantFloor {
            house: "house-1".into(),
        };
        here.meeting("m1", chair_cmd("2026-11-23T01:03:00Z", grant), None)
            .await
            .unwrap();
        // The other hub appends again; our next append would continue a stale sequence: it
        // conflicts in the store, and the command is decided again on the reloaded meeting.
        let count = |n| MeetingAction::ReportHeadcount {
            house: "house-1".into(),
            count: n,
        };
        there
            .meeting("m1", sfu_cmd("2026-11-23T01:04:00Z", count(10)), None)
            .await
            .unwrap();
        let o = here
            .meeting("m1", sfu_cmd("2026-11-23T01:05:00Z", count(11)), None)
            .await
            .unwrap();
        assert_eq!(o.appended.map(|a| a.first), Some(store.head()));
        let m = full_replay(&store, "m1").await;
        assert_eq!(m.floor(), Some("house-1"));
        assert_eq!(here.load_meeting("m1").await.unwrap(), m);
        assert!(verify_store(&store, None).await.unwrap().ok());
    }
);

both!(
    aggregates_dropped_from_memory_load_again,
    |store: Store, _target: String| async move {
        // Room for two meetings in memory, five in use: each command may find its meeting
        // dropped, and loads it again.
        let r = Arc::new(Record::with_capacity(store.clone(), Default::default(), 2));
        for m in 0..5 {
            open_meeting(&r, &format!("m{m}")).await;
        }
        let mut tasks = Vec::new();
        for m in 0..5 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("m{m}");
                report_headcounts(&r, &id, "2026-11-23T01:02:00Z", "house-1", 0..10).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.head(), 5 * 12);
        for m in 0..5 {
            let id = format!("m{m}");
            let events = store.aggregate_events("meeting", &id, 0).await.unwrap();
            let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
            assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
            assert_eq!(
                r.load_meeting(&id).await.unwrap(),
                full_replay(&store, &id).await
            );
        }
    }
);

both!(
    a_subscription_sees_every_event_after_its_start_once_in_order,
    |store: Store, _target: String| async move {
        use futures::StreamExt;
        let r = with_meeting(&store).await;
        let count = |n| {
            sfu_cmd(
                "2026-11-23T01:02:00Z",
                MeetingAction::ReportHeadcount {
                    house: "house-1".into(),
                    count: n,
                },
            )
        };
        for n in 0..3 {
            r.meeting("m1", count(n), None).await.unwrap();
        }
        // From position 3: the past first, then what commits while it is read.
        let mut sub = Box::pin(r.subscribe(3));
        let writer = {
            let r = r.clone();
            tokio::spawn(async move {
                for n in 3..40 {
                    r.meeting("m1", count(n), None).await.unwrap();
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 39 {
            let batch = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("the next batch within 30 s")
                .unwrap()
                .unwrap();
            assert!(!batch.is_empty());
            seen.extend(batch.into_iter().map(|e| e.position));
        }
        writer.await.unwrap();
        assert_eq!(seen, (4..=42).collect::<Vec<u64>>());
    }
);

both!(
    raw_reads_give_back_each_payload_as_stored_in_order,
    |store: Store, _target: String| async move {
        let r = with_meeting(&store).await;
        // Text that a batched read must carry through unchanged: quotes, a backslash, a line
        // break, a tab, Vietnamese and an emoji.
        let raise = FeedbackAction::Raise {
            meeting: "m1".into(),
            agenda_item: None,
            house: "house-1".into(),
            content: "Cầu \"tràn\" \\ ngập\nnước\t😀".into(),
        };
        r.feedback(
            "fb1",
            house_fb("2026-11-23T01:22:40Z", "house-1", raise),
            None,
        )
        .await
        .unwrap();
        report_headcounts(&r, "m1", "2026-11-23T01:03:00Z", "house-2", 0..5).await;
        let all = store.read(0, 10_000).await.unwrap();
        assert_eq!(all.len(), 8);
        // In batches of three, from position 0 and from the middle.
        for start in [0u64, 4] {
            let mut raw = Vec::new();
            let mut after = start;
            loop {
                let batch = store.read_raw(after, 3).await.unwrap();
                assert!(batch.len() <= 3);
                let Some(last) = batch.last() else { break };
                after = last.position;
                raw.extend(batch);
            }
            let want = &all[start as usize..];
            assert_eq!(raw.len(), want.len());
            for (got, e) in raw.iter().zip(want) {
                assert_eq!(got.position, e.position);
                assert_eq!(got.aggregate_type, e.aggregate_type);
                assert_eq!(got.aggregate_id, e.aggregate_id);
                assert_eq!(got.recorded_at, e.recorded_at);
                let payload: serde_json::Value = serde_json::from_str(&got.payload).unwrap();
                assert_eq!(payload, e.payload, "position {}", e.position);
            }
        }
        let fb = all.iter().find(|e| e.aggregate_type == "feedback").unwrap();
        assert!(fb.payload.to_string().contains("😀"));
        assert!(store.read_raw(8, 3).await.unwrap().is_empty());
    }
);
