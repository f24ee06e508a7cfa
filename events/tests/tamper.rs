//! Someone with write access to the database changes it behind the hub's back: verification
//! finds the first position that is wrong. (The append-only triggers are dropped first, as
//! such a person could.) Such a person also holds `record.key` when it lies beside the
//! database, so they can recompute every hash and sign again: only a tree head kept
//! elsewhere (a saved checkpoint, a witness's, an earlier export) then shows the rewrite.

mod common;

use common::*;
use dinh_events::chain::Signer;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::record::{checkpoint_if_due, Record};
use dinh_events::store::{Store, StoreError};
use dinh_events::verify::{
    verify_export_with, verify_store, verify_store_with, EarlierCopy, HeldElsewhere, Policy,
};

async fn filled(store: &Store) -> Signer {
    let r = Record::new(store.clone(), Default::default());
    open_meeting(&r, "m1").await;
    report_headcounts(&r, "m1", "2026-11-23T01:02:00Z", "house-1", 10..18).await;
    let signer = Signer::ephemeral();
    checkpoint_if_due(store, &signer, 1, std::time::Duration::ZERO, true)
        .await
        .unwrap();
    assert!(verify_store(store, Some(signer.public_hex()))
        .await
        .unwrap()
        .ok());
    signer
}

/// Drop the triggers that keep `table` (`events`, `checkpoints`) append-only, as an attacker
/// with the database can.
async fn unlock(target: &str, table: &str) {
    let stmts = if target.starts_with("postgres") {
        vec![format!("DROP TRIGGER {table}_append_only ON {table}")]
    } else {
        vec![
            format!("DROP TRIGGER {table}_no_update"),
            format!("DROP TRIGGER {table}_no_delete"),
        ]
    };
    for s in stmts {
        raw_exec(target, &s).await.unwrap();
    }
}

/// A [`filled`] log whose events table an attacker has unlocked.
async fn filled_unlocked(store: &Store, target: &str) -> Signer {
    let signer = filled(store).await;
    unlock(target, "events").await;
    signer
}

async fn first_bad(store: &Store, signer: &Signer) -> u64 {
    let report = verify_store(store, Some(signer.public_hex()))
        .await
        .unwrap();
    report.problem.expect("tampering must be found").position
}

both!(
    one_changed_payload_byte,
    |store: Store, target: String| async move {
        let signer = filled_unlocked(&store, &target).await;
        // headcount 14 -> 94 at position 7: one byte.
        let n = raw_exec(
            &target,
            "UPDATE events SET payload = replace(payload, '14', '94') WHERE position = 7",
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(first_bad(&store, &signer).await, 7);
    }
);

both!(one_deleted_row, |store: Store, target: String| async move {
    let signer = filled_unlocked(&store, &target).await;
    raw_exec(&target, "DELETE FROM events WHERE position = 5")
        .await
        .unwrap();
    let report = verify_store(&store, Some(signer.public_hex()))
        .await
        .unwrap();
    let p = report.problem.unwrap();
    assert_eq!(p.position, 5, "{}", p.reason);
    assert!(p.reason.contains("missing"), "{}", p.reason);
});

both!(
    two_rows_swapped,
    |store: Store, target: String| async move {
        let signer = filled_unlocked(&store, &target).await;
        // Swap the rows at positions 4 and 6 (their positions exchange).
        for sql in [
            "UPDATE events SET position = -4 WHERE position = 4",
            "UPDATE events SET position = 4 WHERE position = 6",
            "UPDATE events SET position = 6 WHERE position = -4",
        ] {
            raw_exec(&target, sql).await.unwrap();
        }
        assert_eq!(first_bad(&store, &signer).await, 4);
    }
);

both!(
    the_last_row_removed_is_caught_by_the_checkpoint,
    |store: Store, target: String| async move {
        let signer = filled_unlocked(&store, &target).await;
        raw_exec(&target, "DELETE FROM events WHERE position = 10")
            .await
            .unwrap();
        assert_eq!(first_bad(&store, &signer).await, 10);
    }
);

both!(
    a_rewritten_chain_fails_the_signature,
    |store: Store, target: String| async move {
        // Recomputing every hash after a change does not help: the signed tree head differs.
        let signer = filled_unlocked(&store, &target).await;
        raw_exec(
            &target,
            "UPDATE events SET payload = replace(payload, '17', '71') WHERE position = 10",
        )
        .await
        .unwrap();
        let events = store.read(0, 100).await.unwrap();
        let mut prev = [0u8; 32];
        for e in &events {
            let h = e.chain_hash(&prev);
            raw_exec(
                &target,
                &format!(
                    "UPDATE events SET hash = '{}' WHERE position = {}",
                    hex::encode(h),
                    e.position
                ),
            )
            .await
            .unwrap();
            prev = h;
        }
        let report = verify_store(&store, Some(signer.public_hex()))
            .await
            .unwrap();
        let p = report.problem.unwrap();
        assert_eq!(p.position, 10);
        assert!(p.reason.contains("Merkle"), "{}", p.reason);
    }
);

/// What an attacker with the database and the key does: change position `at`, recompute
/// every hash after it, remove the checkpoints and sign the forged log again.
async fn forge_and_resign(store: &Store, target: &str, signer: &Signer, at: u64) {
    unlock(target, "events").await;
    unlock(target, "checkpoints").await;
    let n = raw_exec(
        target,
        &format!("UPDATE events SET payload = replace(payload, '\"count\":1', '\"count\":9') WHERE position = {at}"),
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let events = store.read(0, 100).await.unwrap();
    let mut prev = [0u8; 32];
    for e in &events {
        let h = e.chain_hash(&prev);
        let sql = format!(
            "UPDATE events SET hash = '{}' WHERE position = {}",
            hex::encode(h),
            e.position
        );
        raw_exec(target, &sql).await.unwrap();
        prev = h;
    }
    raw_exec(target, "DELETE FROM checkpoints").await.unwrap();
    checkpoint_if_due(store, signer, 1, std::time::Duration::ZERO, true)
        .await
        .unwrap()
        .expect("a checkpoint over the forged log");
}

/// The newest checkpoint note, as an official would have saved it.
async fn saved_note(store: &Store) -> String {
    store
        .last_checkpoint()
        .await
        .unwrap()
        .unwrap()
        .0
        .note
        .expect("the hub signs notes")
}

both!(
    the_checkpoints_table_refuses_updates_and_deletes,
    |store: Store, target: String| async move {
        filled(&store).await;
        for sql in [
            "UPDATE checkpoints SET root_hash = 'x'",
            "DELETE FROM checkpoints",
            "INSERT INTO cosignatures VALUES (10, 'w', 1, 'line')",
        ] {
            let r = raw_exec(&target, sql).await;
            if sql.starts_with("INSERT") {
                r.unwrap();
            } else {
                let e = r.unwrap_err();
                assert!(e.contains("append-only"), "{sql}: {e}");
            }
        }
        for sql in [
            "UPDATE cosignatures SET line = 'x'",
            "DELETE FROM cosignatures",
        ] {
            let e = raw_exec(&target, sql).await.unwrap_err();
            assert!(e.contains("append-only"), "{sql}: {e}");
        }
        if target.starts_with("postgres") {
            let e = raw_exec(&target, "TRUNCATE checkpoints").await.unwrap_err();
            assert!(e.contains("append-only"), "{e}");
        }
        assert_eq!(store.checkpoints().await.unwrap().len(), 1);
    }
);

both!(
    a_forged_and_resigned_log_is_refused_given_the_earlier_checkpoint,
    |store: Store, target: String| async move {
        let signer = filled(&store).await;
        let note = saved_note(&store).await;
        forge_and_resign(&store, &target, &signer, 6).await;
        // On its own, the forged log verifies: every hash and the new signature are right.
        let alone = verify_store(&store, Some(signer.public_hex()))
            .await
            .unwrap();
        assert!(alone.ok(), "{:?}", alone.problem);
        // Against the checkpoint kept elsewhere, it does not.
        let held =
            HeldElsewhere::from_note(note.as_bytes(), &signer.log_vkey(), "saved.txt").unwrap();
        let policy = Policy {
            held_elsewhere: vec![held],
            ..Policy::default()
        };
        let (report, _, _) = verify_store_with(&store, policy).await.unwrap();
        let p = report.problem.expect("the rewrite is found");
        assert_eq!((p.position, p.up_to), (1, Some(10)), "{p}");
        assert!(p.reason.contains("saved.txt"), "{p}");
    }
);

both!(
    an_earlier_export_names_the_first_changed_position,
    |store: Store, target: String| async move {
        let signer = filled(&store).await;
        let mut export = Vec::new();
        dinh_events::verify::export(&store, &signer.public_hex(), &mut export)
            .await
            .unwrap();
        forge_and_resign(&store, &target, &signer, 6).await;
        let (checked, hashes) = verify_export_with(&export[..], Policy::default()).unwrap();
        assert!(checked.ok());
        let policy = Policy {
            earlier: Some(EarlierCopy {
                source: "export.jsonl".into(),
                hashes,
            }),
            ..Policy::default()
        };
        let (report, _, _) = verify_store_with(&store, policy).await.unwrap();
        let p = report.problem.expect("the rewrite is found");
        assert_eq!((p.position, p.up_to), (6, None), "{p}");
    }
);

both!(
    a_rollback_is_refused_given_the_earlier_checkpoint,
    |store: Store, target: String| async move {
        let signer = filled(&store).await;
        let note = saved_note(&store).await;
        // The tail and its checkpoint go; the shorter log is signed again.
        unlock(&target, "events").await;
        unlock(&target, "checkpoints").await;
        raw_exec(&target, "DELETE FROM events WHERE position > 7")
            .await
            .unwrap();
        raw_exec(&target, "DELETE FROM checkpoints").await.unwrap();
        drop(store);
        let store = Store::open(&target).await.unwrap();
        checkpoint_if_due(&store, &signer, 1, std::time::Duration::ZERO, true)
            .await
            .unwrap()
            .unwrap();
        assert!(verify_store(&store, Some(signer.public_hex()))
            .await
            .unwrap()
            .ok());
        let held =
            HeldElsewhere::from_note(note.as_bytes(), &signer.log_vkey(), "the witness").unwrap();
        let (report, _, _) = verify_store_with(
            &store,
            Policy {
                held_elsewhere: vec![held],
                ..Policy::default()
            },
        )
        .await
        .unwrap();
        let p = report.problem.expect("the rollback is found");
        assert_eq!(p.position, 8, "{p}");
        assert!(
            p.reason.contains("rolled back") && p.reason.contains("10 events"),
            "{p}"
        );
    }
);

both!(
    a_log_without_recent_checkpoints_fails_unless_allowed,
    |store: Store, target: String| async move {
        filled(&store).await;
        let strict = || Policy {
            max_unsigned: Some(3),
            ..Policy::default()
        };
        assert!(verify_store_with(&store, strict()).await.unwrap().0.ok());
        let r = Record::new(store.clone(), Default::default());
        report_headcounts(&r, "m1", "2026-11-23T01:03:00Z", "house-2", 30..34).await;
        let p = verify_store_with(&store, strict())
            .await
            .unwrap()
            .0
            .problem
            .unwrap();
        assert_eq!(p.position, 11, "{p}");
        assert!(p.reason.contains("checkpoint_every"), "{p}");
        unlock(&target, "checkpoints").await;
        raw_exec(&target, "DELETE FROM checkpoints").await.unwrap();
        let p = verify_store_with(&store, strict())
            .await
            .unwrap()
            .0
            .problem
            .unwrap();
        assert!(p.reason.contains("no signed checkpoint"), "{p}");
        // Asked for explicitly (no limit), the chain alone is accepted.
        assert!(verify_store_with(&store, Policy::default())
            .await
            .unwrap()
            .0
            .ok());
    }
);

both!(
    checkpoints_of_the_earlier_format_still_verify,
    |store: Store, _target: String| async move {
        let signer = filled(&store).await;
        let (last, frontier) = store.last_checkpoint().await.unwrap().unwrap();
        let mut chain = [0u8; 32];
        hex::decode_to_slice(&last.chain_hash, &mut chain).unwrap();
        // An older hub signed dinh-checkpoint/v1 at the same head, kept beside the note.
        let v1 = signer.sign_v1(10, &frontier.root(), &chain, "2026-01-01T00:00:00Z");
        assert!(v1.note.is_none() && v1.signature_ok());
        let mut bad = v1.clone();
        bad.signed_at = "2026-01-02T00:00:00Z".into();
        assert!(!bad.signature_ok());
        let r = Record::new(store.clone(), Default::default());
        r.meeting(
            "m1",
            sfu_cmd(
                "2026-11-23T01:04:00Z",
                MeetingAction::ReportHeadcount {
                    house: "h".into(),
                    count: 1,
                },
            ),
            None,
        )
        .await
        .unwrap();
        let v1_at_11 = {
            let ev = store.read(10, 1).await.unwrap().remove(0);
            let mut f = frontier.clone();
            f.push(&ev.canonical());
            let mut c = [0u8; 32];
            hex::decode_to_slice(&ev.hash, &mut c).unwrap();
            signer.sign_v1(11, &f.root(), &c, "2026-01-01T00:00:00Z")
        };
        store.put_checkpoint(&v1_at_11, &frontier).await.unwrap();
        let report = verify_store(&store, Some(signer.log_vkey().to_string()))
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problem);
        assert_eq!(report.checkpoints, 2);
    }
);

both!(
    a_column_of_another_type_fails_the_projections_read,
    |store: Store, target: String| async move {
        let _signer = filled_unlocked(&store, &target).await;
        let head = store.read_raw(0, 1_000).await.unwrap().len();
        assert!(head > 7);
        // SQLite keeps a blob in any column: bytes where the aggregate's id was. The read
        // fails with the database's error, not with a wrong row.
        if target.starts_with("postgres") {
            return;
        }
        let n = raw_exec(
            &target,
            "UPDATE events SET aggregate_id = X'00ff' WHERE position = 7",
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        let err = store.read_raw(0, 1_000).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        // The positions before it still read.
        assert_eq!(store.read_raw(0, 6).await.unwrap().len(), 6);
    }
);
