//! Checking the log: every position present once and in order, every hash matching the
//! event's contents and the one before it, every checkpoint's tree head and signature.
//! Works on a live store and on an export (JSON lines), so an official can verify a copy
//! offline with only the public key.
//!
//! Export format (`dinh-log/v1`), one JSON object per line:
//! - first `{"format":"dinh-log/v1","public_key":HEX,"head":N,"exported_at":TIME}`;
//! - then `{"event":{...}}` for positions 1 to N, each followed by
//!   `{"checkpoint":{...}}` for any checkpoint whose tree size is that position.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::chain::{chain_hash, Checkpoint, Frontier, StoredEvent};
use crate::store::{Store, StoreError};

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The position (or checkpoint tree size) where the log first goes wrong.
    pub position: u64,
    /// What is wrong there.
    pub reason: String,
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
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether the log is intact.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks events fed one at a time, in the order read.
pub struct Verifier {
    trusted_key: Option<String>,
    checkpoints: std::collections::VecDeque<Checkpoint>,
    expect: u64,
    prev: [u8; 32],
    frontier: Frontier,
    checked_cps: u64,
    last_signed: u64,
    problem: Option<Problem>,
}

impl Verifier {
    /// A verifier that checks `checkpoints` as it passes them. With `trusted_key` (hex), a
    /// checkpoint signed by any other key is a problem.
    pub fn new(mut checkpoints: Vec<Checkpoint>, trusted_key: Option<String>) -> Self {
        checkpoints.sort_by_key(|c| c.tree_size);
        Self {
            trusted_key,
            checkpoints: checkpoints.into(),
            expect: 1,
            prev: [0; 32],
            frontier: Frontier::default(),
            checked_cps: 0,
            last_signed: 0,
            problem: None,
        }
    }

    fn fail(&mut self, position: u64, reason: String) {
        if self.problem.is_none() {
            self.problem = Some(Problem { position, reason });
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
        self.frontier.push(&canonical);
        self.prev = h;
        self.expect += 1;
        while self
            .checkpoints
            .front()
            .is_some_and(|c| c.tree_size <= ev.position)
        {
            let cp = self.checkpoints.pop_front().expect("front exists");
            self.check_checkpoint(&cp, ev.position);
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
            if &cp.key != k {
                return self.fail(cp.tree_size, "checkpoint signed by an unknown key".into());
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
    pub fn finish(mut self) -> Report {
        let events = self.expect - 1;
        if let Some(cp) = self.checkpoints.pop_front() {
            if !self.failed() {
                self.fail(
                    events + 1,
                    format!(
                        "missing: a checkpoint covers {} events but the log ends at {events}",
                        cp.tree_size
                    ),
                );
            }
        }
        Report {
            events,
            checkpoints: self.checked_cps,
            unsigned_tail: events.saturating_sub(self.last_signed),
            problem: self.problem,
        }
    }
}

/// Verify a store.
pub async fn verify_store(
    store: &Store,
    trusted_key: Option<String>,
) -> Result<Report, StoreError> {
    let mut v = Verifier::new(store.checkpoints().await?, trusted_key);
    let mut after = 0;
    loop {
        let batch = match store.read(after, 5000).await {
            Ok(b) => b,
            Err(StoreError::Corrupt { position, reason }) => {
                v.fail(position, format!("row does not parse: {reason}"));
                return Ok(v.finish());
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
    Ok(v.finish())
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
    let mut cps: std::collections::VecDeque<Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .filter(|c| c.tree_size <= head)
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
    let mut v = Verifier::new(cps, Some(trusted_key.unwrap_or(header.public_key)));
    for e in &events {
        v.push(e);
    }
    let mut report = v.finish();
    if report.ok() && report.events != header.head {
        report.problem = Some(Problem {
            position: report.events + 1,
            reason: format!(
                "the header says {} events, the file has {}",
                header.head, report.events
            ),
        });
    }
    Ok(report)
}
