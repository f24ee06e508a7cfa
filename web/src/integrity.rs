//! The record's integrity as the hub keeps it: checked at start-up, signed as it grows,
//! cosigned by witnesses, and shown (`GET /api/integrity`, `/healthz`, `/metrics`).
//!
//! Someone who can write the data folder can rewrite the database and, when `record.key`
//! lies beside it, sign again; no check on this machine alone can catch that. So:
//! - at start-up the hub asks each witness (`[[record.witnesses]]`) for the checkpoint it
//!   cosigned last, then reads the whole log once, checking every hash, every checkpoint of
//!   its own, and that the log extends each witness's checkpoint;
//! - an official may have the same check made again while the hub runs (`POST /api/log/verify`,
//!   [`Integrity::verify_again`], rate-limited in [`crate::official::integrity`]);
//! - when any of that fails, it signs nothing more, and says so: an error in the log,
//!   `/healthz` 503 with the reason, `dinh_record_integrity_ok 0`, and `problem` in
//!   `/api/integrity` (officials and chairs);
//! - each new checkpoint goes to every witness with a consistency proof from the size that
//!   witness holds; a witness that refuses it as inconsistent (422) or holding more than the
//!   log has (a rollback) stops the signing the same way.
//!
//! The tree the checkpointer extends is the one verified at start-up, kept in memory: the
//! frontiers stored beside the checkpoints are never trusted again, and events read later
//! must chain onto the verified hash.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Role;
use crate::config::{Config, WitnessEndpoint};
use crate::error::AppError;
use crate::extract::Caller;
use crate::AppState;
use dinh_events::chain::{leaf_hash, Checkpoint, Signer};
use dinh_events::checkpoint::SignedCheckpoint;
use dinh_events::consistency;
use dinh_events::note::{KeyType, VerifierKey};
use dinh_events::record::format_time;
use dinh_events::store::{Cosignature, Store, StoreError};
use dinh_events::verify::{verify_store_with, HeldElsewhere, Policy, Problem, TreeAt, TrustedKey};
use dinh_events::witness::{origin_hash, read_answer, AddCheckpoint, Answer};

/// Longest answer read from a witness, bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// A witness request that takes longer is given up (and retried later).
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);
/// A witness that did not cosign the latest checkpoint is asked again after this long.
const WITNESS_RETRY: Duration = Duration::from_secs(30);
/// While signing is refused, the refusal is logged again after this long.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(600);

/// A witness as the hub talks to it.
pub struct WitnessClient {
    /// Its key name.
    pub name: String,
    /// Its submission (and monitoring) prefix, without a final `/`.
    pub url: String,
    /// Its cosignature key.
    pub vkey: VerifierKey,
    agent: ureq::Agent,
}

impl WitnessClient {
    /// A client for the endpoint `i` of the settings.
    pub fn new(i: usize, e: &WitnessEndpoint) -> anyhow::Result<Self> {
        let vkey = VerifierKey::parse(&e.vkey)
            .map_err(|err| anyhow::anyhow!("record.witnesses[{i}].vkey: {err}"))?;
        if vkey.kind != KeyType::Cosignature {
            anyhow::bail!(
                "record.witnesses[{i}].vkey: a witness's key has type 0x04 (this is a log's key)"
            );
        }
        let url = e.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("record.witnesses[{i}].url: an http:// or https:// URL");
        }
        let mut cfg = ureq::Agent::config_builder()
            .timeout_global(Some(WITNESS_TIMEOUT))
            .http_status_as_error(false)
            .user_agent("dinh");
        if let Some(ca) = &e.ca {
            let pem = std::fs::read(ca).map_err(|err| {
                anyhow::anyhow!(
                    "record.witnesses[{i}].ca: cannot read {}: {err}",
                    ca.display()
                )
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|p| match p {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                anyhow::bail!(
                    "record.witnesses[{i}].ca: no certificate in {}",
                    ca.display()
                );
            }
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            name: vkey.name.clone(),
            url,
            vkey,
            agent: cfg.build().into(),
        })
    }

    /// One HTTP exchange, off the runtime's threads: status and body (bounded).
    async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let agent = self.agent.clone();
        let url = format!("{}{path}", self.url);
        tokio::task::spawn_blocking(move || {
            let res = match body {
                Some(b) => agent
                    .post(&url)
                    .header("content-type", "text/plain; charset=utf-8")
                    .send(b),
                None if method == "GET" => agent.get(&url).call(),
                None => agent.post(&url).send_empty(),
            };
            let mut res = res.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let text = res
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            Ok((status, text))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The checkpoint this witness cosigned last for `log` (`GET <prefix>/<hash>/checkpoint`),
    /// with both signatures checked: `Ok(None)` when it holds none (404).
    pub async fn latest(
        &self,
        log: &VerifierKey,
    ) -> Result<Option<(HeldElsewhere, u64)>, WitnessTrouble> {
        let path = format!("/{}/checkpoint", origin_hash(&log.name));
        let (status, body) = self
            .call("GET", path, None)
            .await
            .map_err(WitnessTrouble::Unreachable)?;
        match status {
            404 => Ok(None),
            200 => {
                let cp = SignedCheckpoint::parse(body.as_bytes()).map_err(|e| {
                    WitnessTrouble::Refused(format!("its checkpoint does not parse: {e}"))
                })?;
                let at = cp.note.verify(&self.vkey).map_err(|e| {
                    WitnessTrouble::Refused(format!(
                        "its checkpoint has no valid cosignature of its key: {e}"
                    ))
                })?;
                cp.verify_log(log).map_err(|e| WitnessTrouble::Inconsistent {
                    message: format!(
                        "it holds a checkpoint of this log ({} events) that this hub's key did not sign ({e}): was record.key replaced?",
                        cp.text.size
                    ),
                    position: 1,
                    up_to: Some(cp.text.size),
                })?;
                let held = HeldElsewhere {
                    size: cp.text.size,
                    root: cp.text.root,
                    chain: cp.text.chain(),
                    source: format!("witness {}", self.name),
                };
                Ok(Some((held, at)))
            }
            s => Err(WitnessTrouble::Refused(format!(
                "GET checkpoint answered {s}: {}",
                body.lines().next().unwrap_or_default()
            ))),
        }
    }
}

/// What went wrong with a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessTrouble {
    /// No answer (network, timeout): asked again later.
    Unreachable(String),
    /// It answered, but not with a cosignature (unknown log, key not trusted, ...).
    Refused(String),
    /// What it holds contradicts this log: a rewrite or a rollback, somewhere in positions
    /// `position..=up_to`.
    Inconsistent {
        /// What it said.
        message: String,
        /// The first position where the difference may lie.
        position: u64,
        /// The last.
        up_to: Option<u64>,
    },
}

/// A human message, Vietnamese first.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// Vietnamese.
    pub vi: String,
    /// English.
    pub en: String,
}

/// The last verification of the whole log.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// When it finished (RFC 3339).
    pub at: String,
    /// Whether the log was intact.
    pub ok: bool,
    /// Events read.
    pub events: u64,
    /// Own checkpoints checked.
    pub checkpoints: u64,
    /// Witnesses' checkpoints the log was found to extend.
    pub witnessed: u64,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// The newest checkpoint signed.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// Events covered.
    pub size: u64,
    /// When signed (RFC 3339).
    pub signed_at: String,
    /// Merkle tree head, hex.
    pub root_hash: String,
    /// The checkpoint note (C2SP), for an official to save and verify against later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One witness as the officials see it.
#[derive(Debug, Clone, Serialize)]
pub struct WitnessView {
    /// The name its signatures carry (`huyen.example.vn/witness`).
    pub name: String,
    /// Where checkpoints are sent (`https://…/witness`, C2SP tlog-witness).
    pub url: String,
    /// The size of the newest checkpoint it cosigned (as far as this hub knows).
    pub cosigned_size: Option<u64>,
    /// When it cosigned it (RFC 3339).
    pub cosigned_at: Option<String>,
    /// `ok`, `behind` (not yet the newest checkpoint), `unreachable`, `refused`, or
    /// `inconsistent` (it holds what this log contradicts).
    pub state: &'static str,
    /// What went wrong last, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What `GET /api/integrity` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Whether the record is intact as far as this hub and its witnesses can tell.
    pub ok: bool,
    /// Whether the hub signs checkpoints (never over a log found inconsistent).
    pub signing: bool,
    /// A summary, Vietnamese first.
    pub message: Message,
    /// The log's origin line.
    pub origin: String,
    /// The log's verifier key (`origin+id+key`), to give to witnesses and `dinh log verify`.
    pub public_key: String,
    /// Events in the log now.
    pub head: u64,
    /// The problem that stopped the signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// The newest checkpoint.
    pub last_checkpoint: Option<CheckpointView>,
    /// The start-up verification.
    pub last_verification: Option<Verification>,
    /// Every configured witness, in the settings' order.
    pub witnesses: Vec<WitnessView>,
}

/// The tree verified at start-up and extended since; only the checkpointer touches it.
#[derive(Default)]
struct Tree {
    size: u64,
    now: TreeAt,
    /// Trees at sizes a witness holds or may hold (for proofs).
    marks: BTreeMap<u64, TreeAt>,
    /// The newest checkpoint signed: size, note (none for a `dinh-checkpoint/v1`), when.
    last: Option<(u64, Option<String>, OffsetDateTime)>,
    /// What each witness holds, as far as known.
    witness_sizes: Vec<Option<u64>>,
    /// When each witness may be asked again.
    retry_at: Vec<Option<Instant>>,
}

impl Tree {
    /// Forget the marks no witness needs a proof from: keep those at the sizes the witnesses
    /// hold, and `size`.
    fn keep_marks(&mut self, size: u64) {
        let keep: Vec<u64> = self
            .witness_sizes
            .iter()
            .flatten()
            .copied()
            .chain([size])
            .collect();
        self.marks.retain(|k, _| keep.contains(k));
    }
}

/// The integrity of the record as this hub keeps it.
pub struct Integrity {
    signer: Arc<Signer>,
    witnesses: Vec<WitnessClient>,
    every: u64,
    interval: Duration,
    /// std Mutex: read and written in short sections, never across `.await`.
    status: Mutex<Status>,
    last_refusal_log: Mutex<Option<Instant>>,
    /// A tokio lock: the checkpointer holds it while it reads the store and calls witnesses.
    tree: tokio::sync::Mutex<Tree>,
}

impl Integrity {
    /// Load the key (created only for an empty record) and check the whole log against its
    /// own checkpoints and what the witnesses hold.
    pub async fn open(config: &Config, store: &Store) -> anyhow::Result<Self> {
        let key_path = config.record_key_path();
        let mut signer = Signer::load(&key_path, store.head() == 0)
            .map_err(|e| anyhow::anyhow!("record key {}: {e}", key_path.display()))?;
        if let Some(o) = &config.record.origin {
            if o.is_empty() || o.contains(char::is_whitespace) || o.contains('+') {
                anyhow::bail!(
                    "record.origin: a name without spaces or '+', e.g. xa-an-phu.example.vn/record"
                );
            }
            signer = signer.with_origin(o);
        }
        let witnesses = config
            .record
            .witnesses
            .iter()
            .enumerate()
            .map(|(i, e)| WitnessClient::new(i, e))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let n = witnesses.len();
        let this = Self {
            status: Mutex::new(Status {
                ok: true,
                signing: true,
                message: summary(true, None),
                origin: signer.origin().to_owned(),
                public_key: signer.log_vkey().to_string(),
                head: 0,
                problem: None,
                last_checkpoint: None,
                last_verification: None,
                witnesses: witnesses
                    .iter()
                    .map(|w| WitnessView {
                        name: w.name.clone(),
                        url: w.url.clone(),
                        cosigned_size: None,
                        cosigned_at: None,
                        state: "behind",
                        message: None,
                    })
                    .collect(),
            }),
            signer: Arc::new(signer),
            witnesses,
            every: config.record.checkpoint_every.max(1),
            interval: Duration::from_secs(config.record.checkpoint_interval_secs.max(1)),
            last_refusal_log: Mutex::new(None),
            tree: tokio::sync::Mutex::new(Tree {
                witness_sizes: vec![None; n],
                retry_at: vec![None; n],
                ..Tree::default()
            }),
        };
        this.verify_at_start(store).await?;
        Ok(this)
    }

    /// The record's signing key.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// What the officials see (without the head, which the caller fills in).
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the record is intact as far as known.
    pub fn ok(&self) -> bool {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).ok
    }

    fn with_status<R>(&self, f: impl FnOnce(&mut Status) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stop signing, loudly.
    fn fail(&self, problem: Problem) {
        tracing::error!(
            position = problem.position,
            up_to = problem.up_to,
            reason = %problem.reason,
            "RECORD INTEGRITY FAILED: the log is not what was signed or witnessed; no checkpoint will be signed (see /api/integrity)"
        );
        self.with_status(|s| {
            if s.problem.is_none() {
                s.message = summary(false, Some(&problem));
                s.problem = Some(problem);
            }
            s.ok = false;
            s.signing = false;
        });
    }

    /// Ask every witness for the checkpoint it cosigned last: what each holds, by witness.
    async fn ask_witnesses(&self) -> Vec<Result<Option<(HeldElsewhere, u64)>, WitnessTrouble>> {
        let log = self.signer.log_vkey();
        futures::future::join_all(self.witnesses.iter().map(|w| w.latest(&log))).await
    }

    /// What a verification checks: checkpoints signed by this hub's key only, and that the log
    /// extends every tree head in `held`.
    fn policy(&self, held: Vec<HeldElsewhere>, keep: std::collections::BTreeSet<u64>) -> Policy {
        Policy {
            trusted_key: Some(TrustedKey {
                public_hex: self.signer.public_hex(),
                origin: None,
            }),
            held_elsewhere: held,
            keep_trees_at: keep,
            ..Policy::default()
        }
    }

    /// Keep a finished verification for `/api/integrity`; stop signing when it found a problem.
    fn verified(&self, report: &dinh_events::verify::Report, seconds: f64, when: &str) {
        tracing::info!(
            events = report.events,
            checkpoints = report.checkpoints,
            witnessed = report.held_elsewhere,
            seconds,
            ok = report.ok(),
            "record verified {when}"
        );
        self.with_status(|s| {
            s.last_verification = Some(Verification {
                at: format_time(OffsetDateTime::now_utc()),
                ok: report.ok(),
                events: report.events,
                checkpoints: report.checkpoints,
                witnessed: report.held_elsewhere,
                seconds,
            });
        });
        if let Some(p) = &report.problem {
            self.fail(p.clone());
        }
    }

    /// The start-up check made again while the hub runs (an official's `POST /api/log/verify`):
    /// the witnesses are asked what they hold, the whole log is read and checked against its
    /// own checkpoints and theirs, and the result replaces `last_verification`. A problem stops
    /// the signing exactly as at start-up. The checkpointer's tree is not touched: it was
    /// verified at start-up and only ever extended by events that chain onto it.
    pub async fn verify_again(&self, store: &Store) -> Result<Status, StoreError> {
        let started = Instant::now();
        let mut held = Vec::new();
        for (i, r) in self.ask_witnesses().await.into_iter().enumerate() {
            match r {
                Ok(Some((h, _))) => held.push(h),
                Ok(None) => {}
                Err(t) => self.witness_trouble(i, &t),
            }
        }
        let policy = self.policy(held, Default::default());
        let (report, _, _) = verify_store_with(store, policy).await?;
        self.verified(&report, started.elapsed().as_secs_f64(), "on request");
        let mut st = self.status();
        st.head = store.head();
        Ok(st)
    }

    async fn verify_at_start(&self, store: &Store) -> anyhow::Result<()> {
        let started = Instant::now();
        let fetched = self.ask_witnesses().await;
        let mut held = Vec::new();
        let mut tree = self.tree.lock().await;
        for (i, r) in fetched.into_iter().enumerate() {
            match r {
                Ok(Some((h, at))) => {
                    tree.witness_sizes[i] = Some(h.size);
                    self.witness_state(i, Some((h.size, at)), "behind", None);
                    held.push(h);
                }
                Ok(None) => tree.witness_sizes[i] = Some(0),
                Err(t) => self.witness_trouble(i, &t),
            }
        }
        let local_last = store.last_checkpoint().await?;
        let mut keep: std::collections::BTreeSet<u64> = held.iter().map(|h| h.size).collect();
        if let Some((cp, _)) = &local_last {
            keep.insert(cp.tree_size);
        }
        // What this hub last knew the witnesses to hold: a hint, corrected by a 409.
        let mut hinted: BTreeMap<String, u64> = BTreeMap::new();
        for c in store.cosignatures().await? {
            let e = hinted.entry(c.witness).or_default();
            *e = (*e).max(c.tree_size);
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if tree.witness_sizes[i].is_none() {
                if let Some(s) = hinted.get(&w.name) {
                    tree.witness_sizes[i] = Some(*s);
                    keep.insert(*s);
                }
            }
        }
        let policy = self.policy(held, keep);
        let (report, marks, end) = verify_store_with(store, policy).await?;
        self.with_status(|s| {
            s.last_checkpoint = local_last.as_ref().map(|(cp, _)| view(cp));
        });
        self.verified(&report, started.elapsed().as_secs_f64(), "at start-up");
        if report.problem.is_some() {
            return Ok(());
        }
        tree.size = report.events;
        tree.now = end;
        tree.marks = marks;
        tree.last = local_last.map(|(cp, _)| {
            let at = OffsetDateTime::parse(
                &cp.signed_at,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            (cp.tree_size, cp.note, at)
        });
        // A witness that holds the newest checkpoint (or nothing, when there is none yet) is
        // up to date.
        let newest = tree.last.as_ref().map_or(0, |l| l.0);
        for (i, size) in tree.witness_sizes.iter().enumerate() {
            if *size == Some(newest) {
                self.with_status(|s| s.witnesses[i].state = "ok");
            }
        }
        Ok(())
    }

    fn witness_state(
        &self,
        i: usize,
        cosigned: Option<(u64, u64)>,
        state: &'static str,
        message: Option<String>,
    ) {
        self.with_status(|s| {
            if let Some(w) = s.witnesses.get_mut(i) {
                if let Some((size, at)) = cosigned {
                    w.cosigned_size = Some(size);
                    w.cosigned_at = OffsetDateTime::from_unix_timestamp(at as i64)
                        .ok()
                        .map(format_time);
                }
                w.state = state;
                w.message = message;
            }
        });
    }

    fn witness_trouble(&self, i: usize, t: &WitnessTrouble) {
        let name = &self.witnesses[i].name;
        match t {
            WitnessTrouble::Unreachable(m) => {
                tracing::warn!(witness = %name, error = %m, "witness unreachable");
                self.witness_state(i, None, "unreachable", Some(m.clone()));
            }
            WitnessTrouble::Refused(m) => {
                tracing::warn!(witness = %name, error = %m, "witness did not cosign");
                self.witness_state(i, None, "refused", Some(m.clone()));
            }
            WitnessTrouble::Inconsistent {
                message,
                position,
                up_to,
            } => {
                self.witness_state(i, None, "inconsistent", Some(message.clone()));
                self.fail(Problem {
                    position: *position,
                    up_to: *up_to,
                    reason: format!("witness {name}: {message}"),
                });
            }
        }
    }

    fn log_refusal(&self) {
        let mut last = self
            .last_refusal_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            *last = Some(Instant::now());
            let p = self.status().problem;
            tracing::error!(problem = ?p, "record integrity failed: still refusing to sign checkpoints");
        }
    }

    /// Sign a checkpoint when due (`every` events or `interval` with new events, or
    /// `force`), then send the newest checkpoint to every witness that does not hold it.
    pub async fn tick(&self, store: &Store, force: bool) -> Option<u64> {
        if !self.ok() {
            self.log_refusal();
            return None;
        }
        let mut tree = self.tree.lock().await;
        let head = store.head();
        let now = OffsetDateTime::now_utc();
        let age = tree
            .last
            .as_ref()
            .map_or(Duration::MAX, |(_, _, at)| (now - *at).unsigned_abs());
        let due =
            head > tree.size && (force || head - tree.size >= self.every || age >= self.interval);
        let mut signed = None;
        if due {
            match self.extend(store, &mut tree, head, now).await {
                Ok(n) => signed = Some(n),
                Err(Extend::Changed(p)) => {
                    self.fail(p);
                    return None;
                }
                Err(Extend::Store(e)) => {
                    tracing::error!(error = %e, "checkpoint failed; will retry");
                    return None;
                }
            }
        }
        self.send_to_witnesses(store, &mut tree, force || signed.is_some())
            .await;
        signed
    }

    /// Read the events after the verified tree, check they chain onto it, sign and store.
    async fn extend(
        &self,
        store: &Store,
        tree: &mut Tree,
        head: u64,
        now: OffsetDateTime,
    ) -> Result<u64, Extend> {
        let from = tree.size;
        let (leaves, at) = read_leaves(store, from, &tree.now, head).await?;
        let mut next = tree.now.clone();
        for h in &leaves {
            next.frontier.push_hash(*h);
        }
        next.chain = at;
        let size = from + leaves.len() as u64;
        let cp = self
            .signer
            .sign(size, &next.frontier.root(), &next.chain, &format_time(now));
        store
            .put_checkpoint(&cp, &next.frontier)
            .await
            .map_err(Extend::Store)?;
        tracing::info!(tree_size = size, "record checkpoint signed");
        tree.marks.insert(size, next.clone());
        tree.size = size;
        tree.now = next;
        tree.last = Some((size, cp.note.clone(), now));
        tree.keep_marks(size);
        self.with_status(|s| s.last_checkpoint = Some(view(&cp)));
        Ok(size)
    }

    /// Send the newest checkpoint to each witness that may not hold it yet (all of them
    /// when `right_away`, else those whose retry time has come).
    async fn send_to_witnesses(&self, store: &Store, tree: &mut Tree, right_away: bool) {
        let Some((size, Some(note), _)) = tree.last.clone() else {
            return;
        };
        let text = match SignedCheckpoint::parse(note.as_bytes()) {
            Ok(c) => c.note.text,
            Err(_) => return,
        };
        let mut pending: Vec<usize> = (0..self.witnesses.len())
            .filter(|i| tree.witness_sizes[*i] != Some(size))
            .filter(|i| right_away || tree.retry_at[*i].is_none_or(|t| Instant::now() >= t))
            .collect();
        // Two rounds: the second for witnesses that answered 409 with the size they hold.
        for _round in 0..2 {
            if pending.is_empty() {
                return;
            }
            let mut bodies = Vec::new();
            for &i in &pending {
                let old = tree.witness_sizes[i].unwrap_or(0).min(size);
                match self.proof(store, tree, old, size).await {
                    Ok(p) => bodies.push((i, old, AddCheckpoint::body(old, &p, &note))),
                    Err(Extend::Changed(p)) => return self.fail(p),
                    Err(Extend::Store(e)) => {
                        tracing::error!(error = %e, "cannot build a consistency proof; will retry");
                        return;
                    }
                }
            }
            let answers =
                futures::future::join_all(bodies.into_iter().map(|(i, old, body)| async move {
                    let r = self.witnesses[i]
                        .call("POST", "/add-checkpoint".into(), Some(body))
                        .await;
                    (i, old, r)
                }))
                .await;
            pending.clear();
            for (i, old, r) in answers {
                tree.retry_at[i] = Some(Instant::now() + WITNESS_RETRY);
                let w = &self.witnesses[i];
                let (status, body) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        self.witness_trouble(i, &WitnessTrouble::Unreachable(e));
                        continue;
                    }
                };
                match read_answer(status, &body, &text, &w.vkey) {
                    Answer::Cosigned {
                        signatures,
                        timestamp,
                    } => {
                        for s in signatures {
                            let c = Cosignature {
                                tree_size: size,
                                witness: w.name.clone(),
                                cosigned_at: timestamp,
                                line: s.line(),
                            };
                            if let Err(e) = store.put_cosignature(&c).await {
                                tracing::error!(error = %e, "cosignature not stored");
                            }
                        }
                        tracing::info!(witness = %w.name, tree_size = size, "checkpoint cosigned");
                        tree.witness_sizes[i] = Some(size);
                        tree.retry_at[i] = None;
                        self.witness_state(i, Some((size, timestamp)), "ok", None);
                    }
                    Answer::Holds(h) if h > size => {
                        self.witness_trouble(
                            i,
                            &WitnessTrouble::Inconsistent {
                                message: format!(
                                    "it holds a checkpoint of {h} events but the log has {size}: events {} to {h} were removed (rolled back)",
                                    size + 1
                                ),
                                position: size + 1,
                                up_to: None,
                            },
                        );
                    }
                    Answer::Holds(h) if h != old => {
                        tree.witness_sizes[i] = Some(h);
                        pending.push(i);
                    }
                    Answer::Holds(h) => self.witness_trouble(
                        i,
                        &WitnessTrouble::Refused(format!(
                            "it answered 409 with the size sent ({h})"
                        )),
                    ),
                    // 422: inconsistent. (A 400 cannot mean "old beyond the size": `old`
                    // is never sent above it; it is a refusal like any other.)
                    Answer::Refused { status, message } if status == 422 => {
                        // It holds `old` events that this log no longer extends.
                        self.witness_trouble(
                            i,
                            &WitnessTrouble::Inconsistent {
                                message: format!(
                                    "it refused checkpoint {size} as inconsistent with the checkpoint of {old} events it holds ({status}: {message})"
                                ),
                                position: 1,
                                up_to: Some(old.max(1)),
                            },
                        );
                    }
                    Answer::Refused { status, message } => self.witness_trouble(
                        i,
                        &WitnessTrouble::Refused(format!("{status}: {message}")),
                    ),
                }
            }
            tree.keep_marks(size);
        }
    }

    /// A consistency proof from `old` to the verified tree of `size`.
    async fn proof(
        &self,
        store: &Store,
        tree: &mut Tree,
        old: u64,
        size: u64,
    ) -> Result<Vec<[u8; 32]>, Extend> {
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        let base = match tree.marks.get(&old) {
            Some(m) => m.clone(),
            None => {
                // A size this hub has no tree for (a witness far behind): rebuild it from the
                // nearest smaller one.
                let (from, start) = tree
                    .marks
                    .range(..old)
                    .next_back()
                    .map(|(k, v)| (*k, v.clone()))
                    .unwrap_or((0, TreeAt::default()));
                let (leaves, chain) = read_leaves(store, from, &start, old).await?;
                let mut m = start;
                for h in leaves {
                    m.frontier.push_hash(h);
                }
                m.chain = chain;
                tree.marks.insert(old, m.clone());
                m
            }
        };
        let (leaves, chain) = read_leaves(store, old, &base, size).await?;
        if chain != tree.now.chain {
            return Err(Extend::Changed(Problem {
                position: old + 1,
                up_to: Some(size),
                reason: "the events read again do not chain to the verified head: the log was changed while the hub runs".into(),
            }));
        }
        consistency::prove(&base.frontier, &leaves).map_err(|e| {
            Extend::Changed(Problem {
                position: old + 1,
                up_to: Some(size),
                reason: format!("no consistency proof: {e}"),
            })
        })
    }
}

enum Extend {
    Changed(Problem),
    Store(StoreError),
}

impl From<StoreError> for Extend {
    fn from(e: StoreError) -> Self {
        Extend::Store(e)
    }
}

/// The leaf hashes of positions `from+1..=to`, checking that they chain onto `start` (the
/// verified tree at `from`); returns them and the chain hash at `to`.
async fn read_leaves(
    store: &Store,
    from: u64,
    start: &TreeAt,
    to: u64,
) -> Result<(Vec<[u8; 32]>, [u8; 32]), Extend> {
    let mut out = Vec::with_capacity((to - from).min(1 << 20) as usize);
    let mut prev = start.chain;
    let mut after = from;
    while after < to {
        let batch = store.read(after, 5000).await?;
        if batch.is_empty() {
            break;
        }
        for ev in batch.into_iter().take_while(|e| e.position <= to) {
            let canonical = ev.canonical();
            let h = dinh_events::chain::chain_hash(&prev, &canonical);
            if ev.position != after + 1 || hex::encode(h) != ev.hash {
                return Err(Extend::Changed(Problem {
                    position: after + 1,
                    up_to: None,
                    reason: "the event does not chain onto the log verified at start-up: it was changed, moved or removed while the hub runs".into(),
                }));
            }
            out.push(leaf_hash(&canonical));
            prev = h;
            after = ev.position;
        }
    }
    if after != to {
        return Err(Extend::Changed(Problem {
            position: after + 1,
            up_to: None,
            reason: format!("missing: the log ends at {after}, expected {to}"),
        }));
    }
    Ok((out, prev))
}

fn view(cp: &Checkpoint) -> CheckpointView {
    CheckpointView {
        size: cp.tree_size,
        signed_at: cp.signed_at.clone(),
        root_hash: cp.root_hash.clone(),
        note: cp.note.clone(),
    }
}

fn summary(ok: bool, problem: Option<&Problem>) -> Message {
    match (ok, problem) {
        (true, _) => Message {
            vi: "Sổ ghi nguyên vẹn: mọi sự kiện khớp với các điểm kiểm tra đã ký và đã được chứng thực.".into(),
            en: "The record is intact: every event matches the signed and witnessed checkpoints.".into(),
        },
        (false, Some(p)) => Message {
            vi: format!(
                "CẢNH BÁO: sổ ghi đã bị sửa hoặc cắt bớt ({}). Máy chủ ngừng ký điểm kiểm tra; hãy báo cán bộ phụ trách và giữ nguyên dữ liệu.",
                p
            ),
            en: format!(
                "WARNING: the record was altered or cut ({p}). The hub has stopped signing checkpoints; tell the official in charge and keep the data as it is."
            ),
        },
        (false, None) => Message {
            vi: "CẢNH BÁO: không xác minh được sổ ghi.".into(),
            en: "WARNING: the record could not be verified.".into(),
        },
    }
}

/// `GET /api/integrity` (officials and chairs) and the witness routes when this hub is one.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/integrity", get(integrity))
}

async fn integrity(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(&[Role::Official, Role::Chair], "see the record's integrity")?;
    let rec = &s.recording;
    let mut st = rec.integrity.status();
    st.head = rec.store().head();
    Ok(Json(st).into_response())
}

/// `/healthz`: 200 `ok`, or 503 with why when the record's integrity failed.
pub async fn healthz(State(s): State<AppState>) -> Response {
    let st = s.recording.integrity.status();
    if st.ok {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response();
    }
    let why = st
        .problem
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("record integrity failed {why}; no checkpoint is signed (see /api/integrity)\nsổ ghi không còn nguyên vẹn; máy chủ ngừng ký điểm kiểm tra\n"),
    )
        .into_response()
}

/// Prometheus lines: integrity, newest checkpoint, each witness.
pub fn metrics(s: &AppState) -> String {
    let st = s.recording.integrity.status();
    let mut out = format!(
        "# TYPE dinh_record_integrity_ok gauge\ndinh_record_integrity_ok {}\n\
# TYPE dinh_record_checkpoint_size gauge\ndinh_record_checkpoint_size {}\n\
# TYPE dinh_record_witness_cosigned_size gauge\n",
        u8::from(st.ok),
        st.last_checkpoint.as_ref().map_or(0, |c| c.size)
    );
    for w in &st.witnesses {
        out.push_str(&format!(
            "dinh_record_witness_cosigned_size{{witness=\"{}\"}} {}\n",
            escape_label(&w.name),
            w.cosigned_size.unwrap_or(0)
        ));
    }
    out.push_str("# TYPE dinh_record_witness_ok gauge\n");
    for w in &st.witnesses {
        out.push_str(&format!(
            "dinh_record_witness_ok{{witness=\"{}\"}} {}\n",
            escape_label(&w.name),
            u8::from(w.state == "ok")
        ));
    }
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// For `dinh log verify --witness URL`: a client with no settings but the URL and key.
pub fn client_for(url: &str, vkey: &str, ca: Option<&Path>) -> anyhow::Result<WitnessClient> {
    WitnessClient::new(
        0,
        &WitnessEndpoint {
            url: url.to_owned(),
            vkey: vkey.to_owned(),
            ca: ca.map(Path::to_path_buf),
        },
    )
}
