//! Checking the log: every position present once and in order, every hash matching the
//! event's contents and the one before it, every checkpoint's tree head and signature, and
//! (what a file-level attacker holding the key cannot forge) every tree head held elsewhere:
//! a checkpoint an official saved, a witness's latest cosigned checkpoint, or an earlier
//! export. Works on a live store and on an export (JSON lines), so an official can verify a
//! copy offline with only the public key.
//!
//! What is a failure:
//! - a missing, moved or changed event (named by its position);
//! - a checkpoint whose signature, tree head or chain hash does not match, or one beyond the
//!   last event (events removed from the end);
//! - a tree head held elsewhere that the log does not extend: a rewrite (named by the range
//!   of positions where the first difference lies, exactly when an earlier export is given)
//!   or a rollback (the log is shorter than what was seen);
//! - with [`Policy::max_unsigned`]: no checkpoint at all, or more events after the newest
//!   checkpoint than allowed.
//!
//! Export format (`dinh-log/v1`), one JSON object per line:
//! - first `{"format":"dinh-log/v1","public_key":HEX,"head":N,"exported_at":TIME}`;
//! - then `{"event":{...}}` for positions 1 to N, each followed by
//!   `{"checkpoint":{...}}` for any checkpoint whose tree size is that position (its `note`,
//!   when present, carries the witnesses' cosignature lines).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::chain::{chain_hash, leaf_hash, Checkpoint, Frontier, StoredEvent};
use crate::note::{KeyType, VerifierKey};
use crate::store::{Store, StoreError};

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The position (or checkpoint tree size) where the log first goes wrong; when
    /// `up_to` is set, the first position where the difference may lie.
    pub position: u64,
    /// The last position where the first difference may lie, when only tree heads (not
    /// every hash) were held elsewhere and the difference cannot be placed exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to: Option<u64>,
    /// What is wrong there.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.up_to {
            Some(end) if end > self.position => write!(
                f,
                "between positions {} and {end}: {}",
                self.position, self.reason
            ),
            _ => write!(f, "at position {}: {}", self.position, self.reason),
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Events after the last checkpoint, covered by the chain only.
    pub unsigned_tail: u64,
    /// Tree heads held elsewhere that the log was found to extend.
    pub held_elsewhere: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether the log is intact.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A tree head kept outside this machine: a checkpoint an official saved, or the one a
/// witness cosigned last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldElsewhere {
    /// Events it covers.
    pub size: u64,
    /// Its Merkle tree head.
    pub root: [u8; 32],
    /// Its chain hash, when it has one.
    pub chain: Option<[u8; 32]>,
    /// Where it comes from, for messages (a file name, a witness's name).
    pub source: String,
}

impl HeldElsewhere {
    /// A checkpoint note kept elsewhere, once the log's signature on it verifies with
    /// `log` (the log's verifier key: its origin and public key). Witness cosignatures on it
    /// are not required here; check them with [`crate::note::Note::verify`] as needed.
    pub fn from_note(
        bytes: &[u8],
        log: &VerifierKey,
        source: &str,
    ) -> Result<Self, crate::checkpoint::CheckpointError> {
        let cp = crate::checkpoint::SignedCheckpoint::parse(bytes)?;
        cp.verify_log(log)?;
        Ok(Self {
            size: cp.text.size,
            root: cp.text.root,
            chain: cp.text.chain(),
            source: source.to_owned(),
        })
    }
}

/// The chain hashes of an earlier copy of the log (a verified export): they place the first
/// difference exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierCopy {
    /// Where it comes from, for messages.
    pub source: String,
    /// Chain hash of positions 1, 2, ...
    pub hashes: Vec<[u8; 32]>,
}

/// The key trusted to sign checkpoints: hex, or a verifier key `origin+id+key` (which also
/// requires note checkpoints to name that origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Ed25519 public key, hex.
    pub public_hex: String,
    /// The log's origin, when given as a verifier key.
    pub origin: Option<String>,
}

impl TrustedKey {
    /// Parse a hex public key or a log verifier key.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('+') {
            let k = VerifierKey::parse(s).map_err(|e| e.to_string())?;
            if k.kind != KeyType::Ed25519 {
                return Err("a log's key has type 0x01 (this is a witness's key)".into());
            }
            return Ok(Self {
                public_hex: hex::encode(k.public),
                origin: Some(k.name),
            });
        }
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| "a key is 64 hex digits or origin+id+base64".to_owned())?;
        Ok(Self {
            public_hex: s.to_ascii_lowercase(),
            origin: None,
        })
    }
}

/// What to check besides the chain and the log's own checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Checkpoints signed by any other key are a problem.
    pub trusted_key: Option<TrustedKey>,
    /// Tree heads the log must extend.
    pub held_elsewhere: Vec<HeldElsewhere>,
    /// An earlier copy the log must extend.
    pub earlier: Option<EarlierCopy>,
    /// Fail when no checkpoint covers the log, or more than this many events follow the
    /// newest one (`record.checkpoint_every`).
    pub max_unsigned: Option<u64>,
    /// Sizes at which to keep the tree and chain (for consistency proofs).
    pub keep_trees_at: BTreeSet<u64>,
}

impl Policy {
    /// Only a trusted key (hex or a verifier key); one that parses as neither is kept as
    /// given, so that it matches no checkpoint's key rather than being dropped.
    fn trusting(trusted_key: Option<String>) -> Self {
        Self {
            trusted_key: trusted_key.map(|k| {
                TrustedKey::parse(&k).unwrap_or(TrustedKey {
                    public_hex: k,
                    origin: None,
                })
            }),
            ..Self::default()
        }
    }
}

/// The Merkle frontier and chain hash after some number of events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeAt {
    /// The tree.
    pub frontier: Frontier,
    /// Chain hash of the last event (zeros for none).
    pub chain: [u8; 32],
}

/// Checks events fed one at a time, in the order read.
pub struct Verifier {
    trusted_key: Option<TrustedKey>,
    checkpoints: std::collections::VecDeque<Checkpoint>,
    held: std::collections::VecDeque<HeldElsewhere>,
    earlier: Option<EarlierCopy>,
    max_unsigned: Option<u64>,
    keep: BTreeSet<u64>,
    trees: BTreeMap<u64, TreeAt>,
    expect: u64,
    prev: [u8; 32],
    frontier: Frontier,
    checked_cps: u64,
    last_signed: u64,
    matched_elsewhere: u64,
    held_ok: u64,
    problem: Option<Problem>,
}

impl Verifier {
    /// A verifier that checks `checkpoints` as it passes them. With `trusted_key` (hex or a
    /// verifier key), a checkpoint signed by any other key is a problem.
    pub fn new(checkpoints: Vec<Checkpoint>, trusted_key: Option<String>) -> Self {
        Self::with_policy(checkpoints, Policy::trusting(trusted_key))
    }

    /// A verifier with a [`Policy`].
    pub fn with_policy(mut checkpoints: Vec<Checkpoint>, policy: Policy) -> Self {
        checkpoints.sort_by_key(|c| c.tree_size);
        let mut held = policy.held_elsewhere;
        held.sort_by_key(|h| h.size);
        let mut v = Self {
            trusted_key: policy.trusted_key,
            checkpoints: checkpoints.into(),
            held: held.into(),
            earlier: policy.earlier,
            max_unsigned: policy.max_unsigned,
            keep: policy.keep_trees_at,
            trees: BTreeMap::new(),
            expect: 1,
            prev: [0; 32],
            frontier: Frontier::default(),
            checked_cps: 0,
            last_signed: 0,
            matched_elsewhere: 0,
            held_ok: 0,
            problem: None,
        };
        if v.keep.contains(&0) {
            v.trees.insert(0, TreeAt::default());
        }
        v.check_held(0);
        v
    }

    fn fail(&mut self, position: u64, reason: String) {
        self.fail_range(position, None, reason);
    }

    fn fail_range(&mut self, position: u64, up_to: Option<u64>, reason: String) {
        if self.problem.is_none() {
            self.problem = Some(Problem {
                position,
                up_to: up_to.filter(|u| *u > position),
                reason,
            });
        }
    }

    /// Whether a problem was found (checking further is pointless).
    pub fn failed(&self) -> bool {
        self.problem.is_some()
    }

    /// Check the next event.
    pub fn push(&mut self, ev: &StoredEvent) {
        if self.failed() {
            return;
        }
        if ev.position != self.expect {
            let reason = if ev.position > self.expect {
                format!(
                    "missing: the next event found is at position {}",
                    ev.position
                )
            } else {
                format!(
                    "out of order: position {} appears again after {}",
                    ev.position,
                    self.expect - 1
                )
            };
            return self.fail(self.expect, reason);
        }
        let canonical = ev.canonical();
        let h = chain_hash(&self.prev, &canonical);
        if hex::encode(h) != ev.hash {
            return self.fail(
                ev.position,
                "hash mismatch: the event was changed, or rows were moved or removed before it"
                    .into(),
            );
        }
        self.frontier.push_hash(leaf_hash(&canonical));
        self.prev = h;
        self.expect += 1;
        if let Some(e) = &self.earlier {
            if let Some(want) = e.hashes.get(ev.position as usize - 1) {
                if *want != h {
                    let reason = format!(
                        "differs from the earlier copy {}: the event was changed, or the log rewritten from here",
                        e.source
                    );
                    return self.fail(ev.position, reason);
                }
                self.matched_elsewhere = self.matched_elsewhere.max(ev.position);
            }
        }
        if self.keep.contains(&ev.position) {
            self.trees.insert(
                ev.position,
                TreeAt {
                    frontier: self.frontier.clone(),
                    chain: h,
                },
            );
        }
        while self
            .checkpoints
            .front()
            .is_some_and(|c| c.tree_size <= ev.position)
        {
            let cp = self.checkpoints.pop_front().expect("front exists");
            self.check_checkpoint(&cp, ev.position);
        }
        self.check_held(ev.position);
    }

    /// Compare the tree at `at` events with the tree heads held elsewhere of that size.
    fn check_held(&mut self, at: u64) {
        while self.held.front().is_some_and(|h| h.size <= at) {
            let held = self.held.pop_front().expect("front exists");
            if held.size != at {
                continue;
            }
            let root_ok = held.root == self.frontier.root();
            let chain_ok = held.chain.is_none_or(|c| at == 0 || c == self.prev);
            if root_ok && chain_ok {
                self.held_ok += 1;
                self.matched_elsewhere = self.matched_elsewhere.max(at);
                continue;
            }
            let from = self.matched_elsewhere + 1;
            let reason = format!(
                "the log does not extend the checkpoint of {at} events held by {}: its first {at} events were changed (the first difference lies between positions {from} and {at}), then the hashes recomputed",
                held.source
            );
            return self.fail_range(from, Some(at), reason);
        }
    }

    fn check_checkpoint(&mut self, cp: &Checkpoint, at: u64) {
        if cp.tree_size != at {
            return self.fail(
                cp.tree_size,
                "checkpoint at a position that is not in the log".into(),
            );
        }
        if let Some(k) = &self.trusted_key {
            if cp.key != k.public_hex {
                return self.fail(cp.tree_size, "checkpoint signed by an unknown key".into());
            }
            if let (Some(origin), Some(_)) = (&k.origin, &cp.note) {
                if cp.origin().as_ref() != Some(origin) {
                    return self.fail(cp.tree_size, "checkpoint of another log (origin)".into());
                }
            }
        }
        if !cp.signature_ok() {
            return self.fail(cp.tree_size, "checkpoint signature is invalid".into());
        }
        if cp.root_hash != hex::encode(self.frontier.root()) {
            return self.fail(
                cp.tree_size,
                "Merkle tree head differs from the signed checkpoint: events up to here were changed".into(),
            );
        }
        if cp.chain_hash != hex::encode(self.prev) {
            return self.fail(
                cp.tree_size,
                "chain hash differs from the signed checkpoint".into(),
            );
        }
        self.checked_cps += 1;
        self.last_signed = cp.tree_size;
    }

    /// Finish: a checkpoint beyond the last event means events were removed from the end.
    pub fn finish(self) -> Report {
        self.finish_with_trees().0
    }

    /// [`Verifier::finish`], with the trees kept at the sizes asked for and at the end.
    pub fn finish_with_trees(mut self) -> (Report, BTreeMap<u64, TreeAt>, TreeAt) {
        let events = self.expect - 1;
        if let Some(cp) = self.checkpoints.pop_front() {
            self.fail(
                events + 1,
                format!(
                    "missing: a checkpoint covers {} events but the log ends at {events}",
                    cp.tree_size
                ),
            );
        }
        let beyond = self.held.back().map(|h| (h.size, h.source.clone()));
        if let Some((size, source)) = beyond {
            self.fail(
                events + 1,
                format!(
                    "rolled back: {source} holds a checkpoint of {size} events but the log ends at {events}: events {} to {size} were removed",
                    events + 1
                ),
            );
        }
        let earlier = self
            .earlier
            .as_ref()
            .map(|e| (e.hashes.len() as u64, e.source.clone()));
        if let Some((n, source)) = earlier.filter(|(n, _)| *n > events) {
            self.fail(
                events + 1,
                format!(
                    "rolled back: the earlier copy {source} has {n} events but the log ends at {events}"
                ),
            );
        }
        let unsigned_tail = events.saturating_sub(self.last_signed);
        if let Some(max) = self.max_unsigned {
            if events > 0 && self.checked_cps == 0 {
                self.fail(
                    1,
                    format!("no signed checkpoint covers the log's {events} events (its checkpoints were removed, or none was ever signed)"),
                );
            } else if unsigned_tail > max {
                self.fail(
                    self.last_signed + 1,
                    format!(
                        "the newest checkpoint covers {} events: the {unsigned_tail} after it are more than record.checkpoint_every ({max}) and covered by the chain only",
                        self.last_signed
                    ),
                );
            }
        }
        let end = TreeAt {
            frontier: self.frontier,
            chain: self.prev,
        };
        (
            Report {
                events,
                checkpoints: self.checked_cps,
                unsigned_tail,
                held_elsewhere: self.held_ok,
                problem: self.problem,
            },
            self.trees,
            end,
        )
    }
}

/// Verify a store.
pub async fn verify_store(
    store: &Store,
    trusted_key: Option<String>,
) -> Result<Report, StoreError> {
    let v = Verifier::new(store.checkpoints().await?, trusted_key);
    Ok(run_store(store, v).await?.0)
}

/// Verify a store under a [`Policy`]; also returns the trees kept and the tree at the end.
pub async fn verify_store_with(
    store: &Store,
    policy: Policy,
) -> Result<(Report, BTreeMap<u64, TreeAt>, TreeAt), StoreError> {
    let v = Verifier::with_policy(store.checkpoints().await?, policy);
    run_store(store, v).await
}

async fn run_store(
    store: &Store,
    mut v: Verifier,
) -> Result<(Report, BTreeMap<u64, TreeAt>, TreeAt), StoreError> {
    let mut after = 0;
    loop {
        let batch = match store.read(after, 5000).await {
            Ok(b) => b,
            Err(StoreError::Corrupt { position, reason }) => {
                v.fail(position, format!("row does not parse: {reason}"));
                return Ok(v.finish_with_trees());
            }
            Err(e) => return Err(e),
        };
        let Some(last) = batch.last() else { break };
        after = last.position;
        for ev in &batch {
            v.push(ev);
        }
        if v.failed() {
            break;
        }
    }
    Ok(v.finish_with_trees())
}

/// The first line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportHeader {
    /// `dinh-log/v1`.
    pub format: String,
    /// The key the checkpoints are signed with, hex.
    pub public_key: String,
    /// Events in the export.
    pub head: u64,
    /// When it was written.
    pub exported_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Event(StoredEvent),
    Checkpoint(Checkpoint),
}

/// Write the whole log with its checkpoints as JSON lines.
pub async fn export(
    store: &Store,
    public_key: &str,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    let head = store.head();
    let cosigned = store.cosignatures().await?;
    let mut cps: std::collections::VecDeque<Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .filter(|c| c.tree_size <= head)
        .map(|c| with_cosignatures(c, &cosigned))
        .collect();
    let header = ExportHeader {
        format: "dinh-log/v1".into(),
        public_key: public_key.to_owned(),
        head,
        exported_at: crate::record::format_time(time::OffsetDateTime::now_utc()),
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    let mut after = 0;
    while after < head {
        let batch = store.read(after, 5000).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for ev in batch.into_iter().filter(|e| e.position <= head) {
            let p = ev.position;
            serde_json::to_writer(&mut *out, &Line::Event(ev))?;
            out.write_all(b"\n")?;
            while cps.front().is_some_and(|c| c.tree_size <= p) {
                let cp = cps.pop_front().expect("front exists");
                serde_json::to_writer(&mut *out, &Line::Checkpoint(cp))?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(after.min(head))
}

/// A checkpoint whose note carries the witnesses' cosignature lines kept for its size.
pub fn with_cosignatures(mut cp: Checkpoint, cosigned: &[crate::store::Cosignature]) -> Checkpoint {
    let Some(text) = &cp.note else { return cp };
    let Ok(mut note) = crate::note::Note::parse(text.as_bytes()) else {
        return cp;
    };
    note.add_signatures(
        cosigned
            .iter()
            .filter(|c| c.tree_size == cp.tree_size)
            .filter_map(|c| crate::note::NoteSignature::parse_line(&c.line).ok()),
    );
    cp.note = Some(note.to_text());
    cp
}

/// Why an export could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing or reading the file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not valid JSON of the format.
    #[error("line {line}: {reason}")]
    Format {
        /// Line number from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Format {
            line: 0,
            reason: e.to_string(),
        }
    }
}

/// Verify an export. Without `trusted_key`, the key in its header is used (which proves only
/// that the file is consistent; pass the commune's published key to prove who signed it).
pub fn verify_export(
    input: impl BufRead,
    trusted_key: Option<String>,
) -> Result<Report, ExportError> {
    Ok(verify_export_with(input, Policy::trusting(trusted_key))?.0)
}

/// Verify an export under a [`Policy`] (without a trusted key, the header's is used); also
/// returns the chain hash of each of its events, positions 1 to N, so that it can serve as
/// an [`EarlierCopy`] once verified.
pub fn verify_export_with(
    input: impl BufRead,
    mut policy: Policy,
) -> Result<(Report, Vec<[u8; 32]>), ExportError> {
    let mut lines = input.lines().enumerate();
    let header: ExportHeader = match lines.next() {
        Some((_, l)) => serde_json::from_str(&l?).map_err(|e| ExportError::Format {
            line: 1,
            reason: e.to_string(),
        })?,
        None => {
            return Err(ExportError::Format {
                line: 1,
                reason: "empty file".into(),
            })
        }
    };
    if header.format != "dinh-log/v1" {
        return Err(ExportError::Format {
            line: 1,
            reason: format!("unknown format {}", header.format),
        });
    }
    // Checkpoints come after the event they cover: read all, then check in order.
    let mut events = Vec::new();
    let mut cps = Vec::new();
    for (i, l) in lines {
        let l = l?;
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&l) {
            Ok(Line::Event(e)) => events.push(e),
            Ok(Line::Checkpoint(c)) => cps.push(c),
            Err(e) => {
                return Err(ExportError::Format {
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    if policy.trusted_key.is_none() {
        policy.trusted_key = Some(TrustedKey {
            public_hex: header.public_key.clone(),
            origin: None,
        });
    }
    let mut v = Verifier::with_policy(cps, policy);
    let mut hashes = Vec::with_capacity(events.len());
    for e in &events {
        v.push(e);
        let mut h = [0u8; 32];
        if hex::decode_to_slice(&e.hash, &mut h).is_ok() {
            hashes.push(h);
        }
    }
    let mut report = v.finish();
    if report.ok() && report.events != header.head {
        report.problem = Some(Problem {
            position: report.events + 1,
            up_to: None,
            reason: format!(
                "the header says {} events, the file has {}",
                header.head, report.events
            ),
        });
    }
    Ok((report, hashes))
}
