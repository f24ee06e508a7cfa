//! The log's integrity as officials use it beyond `GET /api/integrity` ([`crate::integrity`],
//! which the page shows as it is): the checkpoint that covers printed minutes, the spacing of
//! verification runs on request (the run itself is [`crate::integrity::Integrity::verify_again`],
//! the start-up check), and the log export.
//!
//! What must stay true:
//! - a verification runs at most once at a time, and at most once per [`VERIFY_EVERY`] (it reads
//!   and hashes the whole log); a refused request learns when to come back (`Retry-After`);
//! - an export is `dinh log export`'s file exactly (so `dinh log verify --file` checks it), one at
//!   a time per hub, and only when the log up to the export's head holds nothing of another room:
//!   the hash chain and the Merkle tree run over every room's events together, so a file with
//!   another room's events left out would not verify, and a file with them in would hand one
//!   room's official another room's record. A multi-room hub's log is exported by its
//!   administrator (`dinh log export`); see docs/decisions/0008-officials-register.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use dinh_events::chain::Checkpoint;
use dinh_events::projections::Views;
use dinh_events::store::{Store, StoreError};

/// The shortest time between two verification runs.
pub const VERIFY_EVERY: Duration = Duration::from_secs(60);

/// The longest an export download may take before the hub ends it (the export slot is then
/// free again; a cut file fails verification, so nothing false is ever handed out).
pub const EXPORT_TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

/// A signed checkpoint, as the page and the printed minutes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointView {
    /// Events covered: positions 1 to `tree_size`.
    pub tree_size: u64,
    /// Merkle tree head (RFC 9162) over those events, hex.
    pub root_hash: String,
    /// Chain hash of the event at `tree_size`, hex.
    pub chain_hash: String,
    /// When it was signed (RFC 3339, UTC).
    pub signed_at: String,
    /// The Ed25519 public key that signed it, hex.
    pub key: String,
    /// The signature, hex.
    pub signature: String,
    /// Whether the signature checks out against `key`.
    pub signature_ok: bool,
    /// The signed C2SP checkpoint note with the witnesses' cosignatures it had when stored
    /// (absent for an older `dinh-checkpoint/v1` checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<Checkpoint> for CheckpointView {
    fn from(c: Checkpoint) -> Self {
        let signature_ok = c.signature_ok();
        Self {
            tree_size: c.tree_size,
            root_hash: c.root_hash,
            chain_hash: c.chain_hash,
            signed_at: c.signed_at,
            key: c.key,
            signature: c.signature,
            signature_ok,
            note: c.note,
        }
    }
}

/// The newest checkpoint (`covering` = `None`), or the first one whose tree includes position
/// `covering`: the smallest signed statement a printed page can be checked against.
pub async fn checkpoint(
    store: &Store,
    covering: Option<u64>,
) -> Result<Option<CheckpointView>, StoreError> {
    let all = store.checkpoints().await?;
    let found = match covering {
        None => all.into_iter().last(),
        Some(p) => all.into_iter().find(|c| c.tree_size >= p),
    };
    Ok(found.map(CheckpointView::from))
}

/// Verification runs (each [`crate::integrity::Integrity::verify_again`], the check made at
/// start-up): one at a time, spaced [`VERIFY_EVERY`] apart. std `Mutex`: held for a copy,
/// never across `.await`.
#[derive(Default)]
pub struct Runs {
    running: AtomicBool,
    last: Mutex<Option<Instant>>,
}

/// Why a run did not start: come back after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNow {
    /// Another run is going on.
    Running,
    /// The last run finished less than [`VERIFY_EVERY`] ago; this much is left.
    TooSoon(Duration),
}

/// Marks a run as going on; clears the mark when dropped, however the run ends.
pub struct RunGuard<'a>(&'a Runs);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

impl Runs {
    /// Claim the right to run now.
    pub fn start(&self, now: Instant) -> Result<RunGuard<'_>, NotNow> {
        if let Some(at) = &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            let since = now.saturating_duration_since(*at);
            if since < VERIFY_EVERY {
                return Err(NotNow::TooSoon(VERIFY_EVERY - since));
            }
        }
        if self
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(NotNow::Running);
        }
        Ok(RunGuard(self))
    }

    /// Note when a run finished.
    pub fn finish(&self, at: Instant) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
}

/// The room an aggregate of the log belongs to, as far as the record tells; `None` for one of
/// no room or of a kind this version cannot place, which an export treats as another room's.
pub fn aggregate_room<'a>(views: &'a Views, kind: &str, id: &'a str) -> Option<&'a str> {
    match kind {
        "meeting" => views.minutes.get(id).map(|m| m.room.as_str()),
        "feedback" => {
            let f = views.feedback.get(id)?;
            views.minutes.get(&f.meeting).map(|m| m.room.as_str())
        }
        // The loudspeaker log of a room has the room as its id.
        "loudspeakers" => Some(id),
        "notice" => views.notices.get(id).map(|n| n.room.as_str()),
        // The token deny list is the hub's, across rooms.
        _ => None,
    }
}

/// How many aggregates in `aggregates` are not of `room`.
pub fn foreign<'a>(
    views: &Views,
    room: &str,
    aggregates: impl Iterator<Item = (&'a str, &'a str)>,
) -> usize {
    aggregates
        .filter(|(kind, id)| aggregate_room(views, kind, id) != Some(room))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_one_at_a_time_and_spaced() {
        let runs = Runs::default();
        let t0 = Instant::now();
        let guard = runs.start(t0).expect("the first run starts");
        assert_eq!(runs.start(t0).err(), Some(NotNow::Running));
        runs.finish(t0);
        drop(guard);
        assert_eq!(
            runs.start(t0 + Duration::from_secs(20)).err(),
            Some(NotNow::TooSoon(Duration::from_secs(40)))
        );
        assert!(runs.start(t0 + VERIFY_EVERY).is_ok());
    }

    #[test]
    fn a_run_that_fails_midway_frees_the_slot() {
        let runs = Runs::default();
        {
            let _g = runs.start(Instant::now()).unwrap();
            // dropped without finish: a verification that errored out
        }
        assert!(runs.start(Instant::now()).is_ok());
    }
}
