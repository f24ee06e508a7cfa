//! Someone with write access to the database changes it behind the hub's back: verification
//! finds the first position that is wrong. (The append-only triggers are dropped first, as
//! such a person could.)

mod common;

use common::*;
use dinh_events::chain::Signer;
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::record::{checkpoint_if_due, Record};
use dinh_events::store::Store;
use dinh_events::verify::verify_store;

async fn filled(store: &Store) -> Signer {
    let r = Record::new(store.clone(), Default::default());
    open_meeting(&r, "m1").await;
    for i in 0..8 {
        let cmd = sfu_cmd(
            "2026-11-23T01:02:00Z",
            MeetingAction::ReportHeadcount {
                house: "house-1".into(),
                count: 10 + i,
            },
        );
        r.meeting("m1", cmd, None).await.unwrap();
    }
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

async fn unlock(target: &str) {
    let stmts: &[&str] = if target.starts_with("postgres") {
        &["DROP TRIGGER events_append_only ON events"]
    } else {
        &[
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
        ]
    };
    for s in stmts {
        raw_exec(target, s).await.unwrap();
    }
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
        let signer = filled(&store).await;
        unlock(&target).await;
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
    let signer = filled(&store).await;
    unlock(&target).await;
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
        let signer = filled(&store).await;
        unlock(&target).await;
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
        let signer = filled(&store).await;
        unlock(&target).await;
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
        let signer = filled(&store).await;
        unlock(&target).await;
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
