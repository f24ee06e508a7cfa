//! This hub as a witness of other communes' logs (c2sp.org/tlog-witness): the thin driver
//! around [`dinh_events::witness::Witness`]. Served under `/witness` by `dinh serve` when
//! `[[witness.logs]]` names at least one log, and alone by `dinh witness`.
//!
//! - `POST /witness/add-checkpoint`: `old N`, proof lines, a blank line, the checkpoint; 200
//!   with the cosignature line, or 400/403/404/409/422 as the specification says;
//! - `GET /witness/{sha256(origin) hex}/checkpoint`: the latest checkpoint cosigned for that
//!   log, with the log's signature and this witness's (404 when none);
//! - `GET /witness/status`: JSON: this witness's name and key, the logs it holds, and the
//!   refused checkpoints kept as evidence against a log (newest first).
//!
//! What must stay true: one lock is held from reading what is held to storing the new
//! checkpoint, so two requests for the same log can never roll the witness back; a request
//! is bounded ([`MAX_REQUEST_BYTES`]) and needs no token (the log's signature is what is
//! checked).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::config::Config;
use dinh_events::chain::Signer;
use dinh_events::note::{KeyType, VerifierKey};
use dinh_events::store::StoreError;
use dinh_events::witness::{
    origin_hash, AddCheckpoint, KnownLog, Witness, WitnessError, MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
};
use dinh_events::witness_store::{Refusal, WitnessStore};

/// The witness: its key, the logs it accepts, what it holds.
pub struct WitnessService {
    witness: Witness,
    logs: Vec<KnownLog>,
    store: WitnessStore,
    /// Held from reading what is held to storing the new checkpoint (a tokio lock: the
    /// store is awaited inside).
    decide: tokio::sync::Mutex<()>,
}

/// What `GET /witness/status` shows.
#[derive(Debug, Serialize)]
pub struct WitnessStatus {
    /// The name in its cosignatures.
    pub name: String,
    /// Its verifier key, for the logs' settings.
    pub vkey: String,
    /// The logs it holds a checkpoint of.
    pub logs: Vec<HeldLog>,
    /// Checkpoints it refused that the log itself had signed, newest first.
    pub refusals: Vec<Refusal>,
}

/// One log as the witness holds it.
#[derive(Debug, Serialize)]
pub struct HeldLog {
    /// The log's origin line (`xa-a.example.vn/record`).
    pub origin: String,
    /// The size it last cosigned.
    pub size: u64,
    /// When (seconds since the epoch).
    pub cosigned_at: u64,
    /// That checkpoint, cosigned.
    pub checkpoint: String,
}

impl WitnessService {
    /// Open the witness of `config` (its key, created on first start, and its database in
    /// the data folder). `None` when it witnesses no log.
    pub async fn open(config: &Config) -> anyhow::Result<Option<Arc<Self>>> {
        if config.witness.logs.is_empty() {
            return Ok(None);
        }
        let mut logs: Vec<KnownLog> = Vec::new();
        for (i, l) in config.witness.logs.iter().enumerate() {
            let key = VerifierKey::parse(&l.vkey)
                .map_err(|e| anyhow::anyhow!("witness.logs[{i}].vkey: {e}"))?;
            if key.kind != KeyType::Ed25519 {
                anyhow::bail!("witness.logs[{i}].vkey: a log's key has type 0x01, not a witness's");
            }
            let origin = l.origin.clone().unwrap_or_else(|| key.name.clone());
            match logs.iter_mut().find(|k| k.origin == origin) {
                Some(k) => k.keys.push(key),
                None => logs.push(KnownLog {
                    origin,
                    keys: vec![key],
                }),
            }
        }
        let (key, name) = key_and_name(config)?;
        let store = WitnessStore::open(&config.data.join("witness.sqlite")).await?;
        Ok(Some(Arc::new(Self {
            witness: Witness::new(&name, key),
            logs,
            store,
            decide: tokio::sync::Mutex::new(()),
        })))
    }

    /// The verifier key of the witness `config` describes (its key created when missing).
    pub fn vkey_of(config: &Config) -> anyhow::Result<VerifierKey> {
        let (key, name) = key_and_name(config)?;
        Ok(key.verifier_key(&name, KeyType::Cosignature))
    }

    /// The verifier key logs configure for this witness.
    pub fn vkey(&self) -> VerifierKey {
        self.witness.vkey()
    }

    /// Handle one `add-checkpoint` body at `now` (seconds since the epoch).
    pub async fn add_checkpoint(&self, body: &[u8], now: u64) -> Response {
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return refusal(&e),
        };
        let origin = req.checkpoint.text.origin.clone();
        let log = self.logs.iter().find(|l| l.origin == origin);
        if let Err(e) = Witness::authenticate(&req, log) {
            return refusal(&e);
        }
        let _guard = self.decide.lock().await;
        let held = match self.store.held(&origin).await {
            Ok(h) => h,
            Err(e) => return unavailable(&e),
        };
        match self.witness.add_checkpoint(&req, log, held.as_ref(), now) {
            Ok(c) => match self.store.replace(&origin, held.as_ref(), &c.held).await {
                Ok(true) => {
                    tracing::info!(%origin, size = c.held.size, "witness cosigned a checkpoint");
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        c.response,
                    )
                        .into_response()
                }
                // Only this lock's holder writes: a changed row means another process
                // shares the file. Answer as for a stale `old`.
                Ok(false) => (StatusCode::CONFLICT, "retry\n").into_response(),
                Err(e) => unavailable(&e),
            },
            Err(e) => {
                if e.is_evidence() {
                    tracing::warn!(%origin, error = %e, "witness refused a checkpoint the log signed: kept as evidence");
                    let r = Refusal {
                        origin: origin.clone(),
                        at: now,
                        status: e.status(),
                        reason: e.to_string(),
                        held: held.as_ref().map_or(0, |h| h.size),
                        request: String::from_utf8_lossy(body).into_owned(),
                    };
                    if let Err(err) = self.store.record_refusal(&r).await {
                        tracing::error!(error = %err, "witness could not keep a refusal");
                    }
                }
                refusal(&e)
            }
        }
    }

    /// The latest checkpoint held for the log whose origin hashes to `hash`.
    pub async fn checkpoint(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let Some(log) = self.logs.iter().find(|l| origin_hash(&l.origin) == hash) else {
            return Ok(None);
        };
        Ok(self.store.held(&log.origin).await?.map(|h| h.note))
    }

    /// What the witness holds and has refused.
    pub async fn status(&self) -> Result<WitnessStatus, StoreError> {
        Ok(WitnessStatus {
            name: self.witness.name().to_owned(),
            vkey: self.vkey().to_string(),
            logs: self
                .store
                .all()
                .await?
                .into_iter()
                .map(|(origin, h)| HeldLog {
                    origin,
                    size: h.size,
                    cosigned_at: h.cosigned_at,
                    checkpoint: h.note,
                })
                .collect(),
            refusals: self.store.refusals(50).await?,
        })
    }
}

/// `dinh-witness/` and 16 hex digits of the key's SHA-256.
fn default_name(key: &Signer) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &key.public());
    format!("dinh-witness/{}", &hex::encode(d.as_ref())[..16])
}

fn refusal(e: &WitnessError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match e {
        WitnessError::Stale { held, .. } => (
            status,
            [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
            format!("{held}\n"),
        )
            .into_response(),
        _ => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{e}\n"),
        )
            .into_response(),
    }
}

fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "witness store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the witness cannot read or write its state\n",
    )
        .into_response()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `/witness` routes, with their own state: merge into any router.
pub fn routes<S: Clone + Send + Sync + 'static>(service: Option<Arc<WitnessService>>) -> Router<S> {
    Router::new()
        .route("/witness/add-checkpoint", post(add_checkpoint))
        .route("/witness/status", get(status))
        .route("/witness/{origin}/checkpoint", get(checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

type Svc = State<Option<Arc<WitnessService>>>;

fn not_a_witness() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this hub witnesses no log (witness.logs is empty)\n",
    )
        .into_response()
}

async fn add_checkpoint(State(s): Svc, body: Bytes) -> Response {
    match s {
        Some(s) => s.add_checkpoint(&body, now_unix()).await,
        None => not_a_witness(),
    }
}

async fn checkpoint(State(s): Svc, Path(origin): Path<String>) -> Response {
    let Some(s) = s else { return not_a_witness() };
    match s.checkpoint(&origin).await {
        Ok(Some(note)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no checkpoint cosigned for that log\n",
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn status(State(s): Svc) -> Response {
    let Some(s) = s else { return not_a_witness() };
    match s.status().await {
        Ok(st) => Json(st).into_response(),
        Err(e) => unavailable(&e),
    }
}

/// `dinh witness`: the witness alone, with `/healthz`, until `shutdown` completes, through
/// the hub's accept loop (its connection caps, header and body timeouts and security
/// headers from `limits`), in plain HTTP.
pub async fn serve_alone(
    listener: tokio::net::TcpListener,
    service: Arc<WitnessService>,
    limits: &crate::config::LimitsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app: Router = routes(Some(service)).route("/healthz", get(|| async { "ok" }));
    crate::server::run_router(listener, app, None, limits, shutdown).await;
}

/// The witness's signing key (created when missing, with the data folder) and its name: the
/// configured one, or one made from the key.
fn key_and_name(config: &Config) -> anyhow::Result<(Signer, String)> {
    std::fs::create_dir_all(&config.data)?;
    let key = Signer::load_or_create(&config.witness_key_path())?;
    let name = config
        .witness
        .name
        .clone()
        .unwrap_or_else(|| default_name(&key));
    Ok((key, name))
}
