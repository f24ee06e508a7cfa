//! The loudspeaker bridge in the hub: the SFU's two audio slots tapped into it, the bridge
//! following the record, the bridge's facts appended to the record, and its HTTP surface:
//!
//! - `GET /broadcast/{room}/live.ogg`: the room's audio as Ogg/Opus, whenever the room is live;
//!   token as `Authorization: Bearer` or `?token=` (receivers that only take a URL);
//! - `GET /broadcast/clusters/{id}/live.ogg`: a pull cluster's stream (relay, announcements);
//! - `GET|POST /api/clusters`, `DELETE /api/clusters/{id}`,
//!   `POST /api/clusters/{id}/heartbeat`;
//! - `POST /api/broadcast/{room}/relay`: start or stop the relay;
//! - `GET|POST /api/broadcast/announcements`, `DELETE /api/broadcast/announcements/{id}`;
//! - `GET /api/broadcast/files`, `PUT|DELETE /api/broadcast/files/{name}`;
//! - `GET /api/broadcast/{room}/log`: the room's loudspeaker log from the record.
//!
//! # Rooms are isolated
//! A token is for one room. Every route finds only that room's clusters, files and
//! announcements: another room's answer 404, as missing ones do, so that nothing of them is
//! revealed; lists hold only the caller's room; an announcement plays only on the caller's
//! room's outputs. The record's actor names the room (`chair:chair@ROOM`).
//!
//! # One direction
//! What the chair decides for the room's loudspeakers (the relay, clusters, schedules,
//! files) is appended to the room's `loudspeakers` aggregate. The bridge follows the record
//! ([`restore_and_follow`]): it is rebuilt from it at start-up, and [`Bridge::set_relay`],
//! [`Bridge::schedule`] and [`Bridge::cancel`] are called from nowhere else. A request that
//! changed what the bridge follows answers once the bridge has followed it. What the bridge
//! decides itself (a cluster's socket opens, an announcement starts, a cluster goes down) it
//! reports, and [`record_events`] appends it. Decision 0003 says why each fact goes which way.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use tokio_util::task::TaskTracker;

use dinh_broadcast::bridge::{room_output, AnnounceRequest, Bridge, BridgeError, BridgeEvent};
use dinh_broadcast::config::{valid_id, ClusterConfig};
use dinh_broadcast::engine::{EngineError, Priority, Source, Voice};
use dinh_broadcast::files::{valid_name, FileError};
use dinh_broadcast::programme::{Audio, How, Planned, ProgrammeError};
use dinh_events::domain::loudspeakers::{
    self as ls, LoudspeakerAction, LoudspeakerEvent, Loudspeakers,
};
use dinh_events::domain::{Actor, ClusterStatus, Command};
use dinh_events::record::{Outcome, RecordError, Refusal};
use dinh_sfu::room::{Room, Slot};

use crate::auth::{Claims, Role};
use crate::config::Config;
use crate::error::AppError;
use crate::extract::Caller;
use crate::recording::Recording;
use crate::AppState;

/// Largest announcement file accepted, bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Longest an upload's body may take to arrive.
pub const UPLOAD_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a request waits for the bridge to follow what it appended.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/broadcast/{room}/live.ogg", get(room_stream))
        .route("/broadcast/clusters/{id}/live.ogg", get(cluster_stream))
        .route("/api/clusters", get(list_clusters).post(add_cluster))
        .route("/api/clusters/{id}", delete(remove_cluster))
        .route("/api/clusters/{id}/heartbeat", post(heartbeat))
        .route("/api/broadcast/{room}/relay", post(relay))
        .route(
            "/api/broadcast/announcements",
            get(list_announcements).post(announce),
        )
        .route(
            "/api/broadcast/announcements/{id}",
            delete(stop_announcement),
        )
        .route("/api/broadcast/{room}/log", get(loudspeaker_log))
        .route("/api/broadcast/files", get(list_files))
        .route(
            "/api/broadcast/files/{name}",
            put(upload_file).delete(remove_file),
        )
}

impl From<BridgeError> for AppError {
    fn from(e: BridgeError) -> Self {
        let status = match &e {
            BridgeError::Config(_) | BridgeError::Socket { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            BridgeError::NoSuchCluster(_)
            | BridgeError::NoSuchStream(_)
            | BridgeError::Engine(EngineError::NotFound(_))
            | BridgeError::Programme(ProgrammeError::NotFound(_)) => StatusCode::NOT_FOUND,
            BridgeError::Engine(EngineError::Exists(_))
            | BridgeError::Programme(ProgrammeError::Exists(_)) => StatusCode::CONFLICT,
            BridgeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        AppError::new(status, "broadcast", e.to_string())
    }
}

impl From<FileError> for AppError {
    fn from(e: FileError) -> Self {
        let (status, code) = match &e {
            FileError::Name => (StatusCode::UNPROCESSABLE_ENTITY, "bad_name"),
            FileError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            FileError::Quota { .. } => (StatusCode::INSUFFICIENT_STORAGE, "quota"),
            FileError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            FileError::NotFound(_) => (StatusCode::NOT_FOUND, "no_such_file"),
            FileError::Audio(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_audio"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        };
        AppError::new(status, code, e.to_string())
    }
}

/// A file error as a response: `Busy` carries `Retry-After`.
fn file_refusal(e: FileError) -> Response {
    let retry = match &e {
        FileError::Busy { retry_after_secs } => Some(*retry_after_secs),
        _ => None,
    };
    let mut r = AppError::from(e).into_response();
    if let Some(secs) = retry {
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    r
}

fn bad(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_body", message)
}

/// Run a command on `room`'s loudspeakers as `actor`, retrying a race with another command.
async fn append(
    rec: &Recording,
    room: &str,
    actor: Actor,
    action: LoudspeakerAction,
) -> Result<Outcome, RecordError> {
    let mut attempt = 0;
    loop {
        let cmd = Command::new(OffsetDateTime::now_utc(), actor.clone(), action.clone());
        match rec.record.execute::<Loudspeakers>(room, cmd, None).await {
            Err(RecordError::Conflict(_)) if attempt < 4 => attempt += 1,
            r => return r,
        }
    }
}

/// Whether a refusal says the record has it already (nothing to change).
fn already(e: &RecordError) -> bool {
    matches!(
        e,
        RecordError::Refused {
            kind: Refusal::State,
            message
        } if message.contains("already")
    )
}

/// Wait (bounded) until the bridge has followed what `outcome` appended.
async fn followed(bridge: &Bridge, outcome: &Outcome) {
    if let Some(a) = &outcome.appended {
        if !bridge.followed(a.last, FOLLOW_WAIT).await {
            tracing::warn!(
                position = a.last,
                "the bridge has not followed the record yet"
            );
        }
    }
}

/// Stream an Ogg output's pages: headers first, then live pages; a listener that falls behind
/// skips ahead rather than holding the others back.
fn ogg_response(
    listener: dinh_broadcast::bridge::Listener,
    closing: watch::Receiver<bool>,
    ended: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    let (headers, pages, guard) = listener.into_parts();
    struct St {
        first: Option<Bytes>,
        pages: broadcast::Receiver<Bytes>,
        closing: watch::Receiver<bool>,
        _guard: dinh_broadcast::bridge::ListenerGuard,
    }
    let st = St {
        first: Some(headers),
        pages,
        closing,
        _guard: guard,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if let Some(h) = st.first.take() {
            return Some((Ok::<Bytes, std::convert::Infallible>(h), st));
        }
        loop {
            if *st.closing.borrow() {
                return None;
            }
            tokio::select! {
                p = st.pages.recv() => match p {
                    Ok(page) => return Some((Ok(page), st)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = st.closing.changed() => return None,
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "audio/ogg"),
            (header::CACHE_CONTROL, "no-cache, no-store"),
        ],
        Body::from_stream(futures::StreamExt::take_until(stream, ended)),
    )
        .into_response()
}

async fn room_stream(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    s.room(&room)?;
    c.for_room(&room)?;
    let l = s.bridge.listen(&room_output(&room))?;
    Ok(ogg_response(l, s.closing.subscribe(), s.token_lifetime(&c)))
}

async fn cluster_stream(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    cluster_access(&s, &c, &id).await?;
    let l = s.bridge.listen(&id)?;
    Ok(ogg_response(l, s.closing.subscribe(), s.token_lifetime(&c)))
}

/// A cluster of the caller's room; another room's is "no such cluster", as a missing one is.
async fn own_cluster(s: &AppState, c: &Claims, id: &str) -> Result<ClusterConfig, AppError> {
    s.bridge
        .clusters()
        .await
        .into_iter()
        .find(|v| v.config.id == id && v.config.room.as_deref() == Some(c.room.as_str()))
        .map(|v| v.config)
        .ok_or_else(|| BridgeError::NoSuchCluster(id.to_owned()).into())
}

/// A receiver may touch only its own cluster; the chair and officials, their room's clusters.
async fn cluster_access(s: &AppState, c: &Claims, id: &str) -> Result<(), AppError> {
    own_cluster(s, c, id).await?;
    match c.role {
        Role::Receiver if c.sub == id => Ok(()),
        Role::Chair | Role::Official => Ok(()),
        _ => Err(AppError::new(
            StatusCode::FORBIDDEN,
            "wrong_role",
            format!("only the receiver of cluster '{id}', the chair or an official may do this"),
        )),
    }
}

async fn list_clusters(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(
        &[Role::Chair, Role::Official],
        "list the loudspeaker clusters",
    )?;
    let list: Vec<_> = s
        .bridge
        .clusters()
        .await
        .into_iter()
        .filter(|v| v.config.room.as_deref() == Some(c.room.as_str()))
        .collect();
    Ok(Json(serde_json::json!({ "clusters": list })).into_response())
}

/// Where a cluster's Icecast password is kept: beside the record, never in it (the record
/// is exported and witnessed). A file per cluster, readable by the hub's user only.
fn secret_path(config: &Config, id: &str) -> PathBuf {
    config.data.join("cluster-secrets").join(id)
}

fn save_secret(config: &Config, id: &str, password: Option<&str>) -> std::io::Result<()> {
    let path = secret_path(config, id);
    let _ = std::fs::remove_file(&path);
    let Some(pw) = password else { return Ok(()) };
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    crate::auth::write_private(&path, pw.as_bytes())
}

/// A cluster's configuration as the record keeps it: no password, and its room.
fn recorded_config(cfg: &ClusterConfig, room: &str) -> serde_json::Value {
    let mut c = cfg.clone();
    c.password = None;
    c.room = Some(room.to_owned());
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("password");
    }
    v
}

async fn add_cluster(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "add a loudspeaker cluster")?;
    let cfg: ClusterConfig = crate::extract::json(&headers, &bytes)?;
    let room = cfg.room.clone().unwrap_or_else(|| c.room.clone());
    c.for_room(&room)?;
    // The bridge decides whether it can run the cluster (its socket opens); the record then
    // keeps it, so that it comes back after a restart.
    s.bridge.add_cluster(cfg.clone(), &room).await?;
    let undo = |e: AppError| async {
        let _ = s.bridge.remove_cluster(&cfg.id).await;
        let _ = save_secret(&s.config, &cfg.id, None);
        e
    };
    if let Err(e) = save_secret(&s.config, &cfg.id, cfg.password.as_deref()) {
        let e = AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string());
        return Err(undo(e).await);
    }
    let action = LoudspeakerAction::AddCluster {
        cluster: cfg.id.clone(),
        config: recorded_config(&cfg, &room),
    };
    if let Err(e) = append(&s.recording, &room, crate::recording::actor(&c), action).await {
        return Err(undo(e.into()).await);
    }
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/clusters/{}", cfg.id))],
        Json(serde_json::json!({ "id": cfg.id, "room": room })),
    )
        .into_response())
}

async fn remove_cluster(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "remove a loudspeaker cluster")?;
    let running = own_cluster(&s, &c, &id).await;
    if s.config.broadcast.clusters.iter().any(|k| k.id == id) && running.is_ok() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "configured",
            format!("cluster '{id}' is configured in dinh.toml: remove it there"),
        ));
    }
    // The record first: it refuses while a scheduled announcement names the cluster. A
    // cluster of the record that the bridge could not start is removed from the record only.
    let action = LoudspeakerAction::RemoveCluster {
        cluster: id.clone(),
    };
    match append(&s.recording, &c.room, crate::recording::actor(&c), action).await {
        Ok(_) => {}
        Err(e)
            if running.is_ok()
                && matches!(
                    &e,
                    RecordError::Refused {
                        kind: Refusal::NotFound,
                        ..
                    }
                ) =>
        {
            // Running but not in the record: added before clusters were recorded.
            tracing::info!(cluster = %id, "cluster removed that the record did not have");
        }
        Err(e) => return Err(e.into()),
    }
    if running.is_ok() {
        s.bridge.remove_cluster(&id).await?;
    }
    let _ = save_secret(&s.config, &id, None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    /// `ok` or `fault`.
    status: String,
    /// The receiver's volume, 0 to 100.
    #[serde(default)]
    volume: Option<u8>,
    /// What is wrong, in the receiver's words.
    #[serde(default)]
    detail: Option<String>,
}

async fn heartbeat(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    cluster_access(&s, &c, &id).await?;
    let hb: Heartbeat = crate::extract::json(&headers, &bytes)?;
    let ok = match hb.status.as_str() {
        "ok" => true,
        "fault" => false,
        other => {
            return Err(bad(format!(
                "status must be 'ok' or 'fault', not '{other}'"
            )))
        }
    };
    if hb.volume.is_some_and(|v| v > 100) {
        return Err(bad("volume must be 0 to 100"));
    }
    let detail = hb.detail.map(|d| d.chars().take(200).collect());
    s.bridge.heartbeat(&id, ok, hb.volume, detail).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayBody {
    on: bool,
}

async fn relay(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    s.room(&room)?;
    c.for_room(&room)?;
    c.require(&[Role::Chair], "start or stop the loudspeaker relay")?;
    let b: RelayBody = crate::extract::json(&headers, &bytes)?;
    let action = LoudspeakerAction::SwitchRelay { on: b.on };
    match append(&s.recording, &room, crate::recording::actor(&c), action).await {
        Ok(outcome) => followed(&s.bridge, &outcome).await,
        // Switching it to the state it is in changes nothing.
        Err(e) if already(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(serde_json::json!({ "room": room, "relay": b.on })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnounceBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    priority: Priority,
    /// A file uploaded to `/api/broadcast/files`.
    #[serde(default)]
    file: Option<String>,
    /// Or the room's live voice.
    #[serde(default)]
    live_room: Option<String>,
    /// Cluster ids of the caller's room; every output of the room when left out.
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default = "yes")]
    chime: bool,
    /// RFC 3339 time to play it (a scheduled broadcast).
    #[serde(default)]
    at: Option<String>,
}

fn yes() -> bool {
    true
}

fn to_domain(p: Priority) -> ls::Priority {
    match p {
        Priority::Normal => ls::Priority::Normal,
        Priority::Priority => ls::Priority::Priority,
        Priority::Emergency => ls::Priority::Emergency,
    }
}

fn from_domain(p: ls::Priority) -> Priority {
    match p {
        ls::Priority::Normal => Priority::Normal,
        ls::Priority::Priority => Priority::Priority,
        ls::Priority::Emergency => Priority::Emergency,
    }
}

async fn announce(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "make an announcement")?;
    let room = c.room.clone();
    let b: AnnounceBody = crate::extract::json(&headers, &bytes)?;
    if let Some(id) = &b.id {
        if !valid_id(id) {
            return Err(bad("id: 1 to 64 letters, digits, '-' or '_'"));
        }
    }
    let audio = match (&b.file, &b.live_room) {
        (Some(f), None) => {
            if !valid_name(f) {
                return Err(bad(format!("file '{f}': name.wav, name.opus or name.ogg")));
            }
            Audio::File(f.clone())
        }
        (None, Some(r)) => {
            s.room(r)?;
            c.for_room(r)?;
            Audio::Live(r.clone())
        }
        _ => return Err(bad("give either 'file' or 'live_room'")),
    };
    // Only the room's own clusters; another room's is "no such cluster".
    for cl in &b.clusters {
        own_cluster(&s, &c, cl).await?;
    }
    let at = match &b.at {
        None => None,
        Some(t) => Some(
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(format!("at: not an RFC 3339 time: {e}")))?,
        ),
    };
    let id = b.id.unwrap_or_else(|| s.bridge.new_id());
    let now = OffsetDateTime::now_utc();
    let scheduled = at.is_some_and(|at| at > now);
    if let (true, Some(at)) = (scheduled, at) {
        // A scheduled announcement is the record's fact; the bridge follows it.
        let action = LoudspeakerAction::ScheduleAnnouncement {
            announcement: id.clone(),
            at,
            priority: to_domain(b.priority),
            source: audio.label(),
            clusters: b.clusters,
            chime: b.chime,
        };
        let outcome = append(&s.recording, &room, crate::recording::actor(&c), action).await?;
        followed(&s.bridge, &outcome).await;
    } else {
        // Now: the bridge plays it and reports it; the record follows the bridge.
        let (source, label) = match audio {
            Audio::File(f) => {
                let clip = s.bridge.files().load(&room, &f).await?;
                (Source::Clip(clip), f)
            }
            Audio::Live(r) => (Source::Room(r.clone()), format!("live:{r}")),
        };
        s.bridge
            .announce(AnnounceRequest {
                id: id.clone(),
                room,
                priority: b.priority,
                audio: source,
                label,
                clusters: b.clusters,
                chime: b.chime,
                requested_by: crate::recording::actor(&c).label(),
            })
            .await?;
    }
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/broadcast/announcements/{id}"),
        )],
        Json(serde_json::json!({ "id": id, "scheduled": scheduled })),
    )
        .into_response())
}

async fn stop_announcement(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "stop an announcement")?;
    match s.bridge.stop_announcement(&c.room, &id).await {
        Ok(()) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(BridgeError::Programme(ProgrammeError::NotFound(_))) => {}
        Err(e) => return Err(e.into()),
    }
    // Not playing in this room: cancel it if the room has it scheduled.
    let action = LoudspeakerAction::CancelAnnouncement {
        announcement: id.clone(),
    };
    let outcome = append(&s.recording, &c.room, crate::recording::actor(&c), action).await?;
    followed(&s.bridge, &outcome).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_announcements(
    State(s): State<AppState>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "list announcements")?;
    let playing: Vec<_> = s
        .bridge
        .clusters()
        .await
        .into_iter()
        .filter(|v| v.config.room.as_deref() == Some(c.room.as_str()))
        .map(|v| serde_json::json!({ "cluster": v.config.id, "playing": v.playing }))
        .collect();
    let relays: Vec<String> = s
        .bridge
        .relays()
        .await
        .into_iter()
        .filter(|r| *r == c.room)
        .collect();
    Ok(Json(serde_json::json!({
        "scheduled": s.bridge.scheduled(&c.room).await,
        "clusters": playing,
        "relays": relays,
    }))
    .into_response())
}

async fn loudspeaker_log(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    s.room(&room)?;
    c.for_room(&room)?;
    c.require(&[Role::Chair, Role::Official], "read the loudspeaker log")?;
    let events = s
        .recording
        .store()
        .aggregate_events("loudspeakers", &room, 0)
        .await
        .map_err(|e| AppError::new(StatusCode::SERVICE_UNAVAILABLE, "record", e.to_string()))?;
    Ok(Json(serde_json::json!({ "room": room, "events": events })).into_response())
}

async fn list_files(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "list announcement files")?;
    let files = s.bridge.files().list(&c.room).await;
    let used: u64 = files.iter().map(|(_, n)| n).sum();
    let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
    Ok(Json(serde_json::json!({
        "files": names,
        "used_bytes": used,
        "quota_bytes": s.bridge.files().settings().quota_bytes,
    }))
    .into_response())
}

/// `PUT /api/broadcast/files/{name}`: admitted before the body is read (503 with
/// `Retry-After` past the limit in flight), the body written to disk as it arrives within
/// [`UPLOAD_BODY_TIMEOUT`] and [`MAX_FILE_BYTES`], checked from there one at a time holding
/// no samples, kept within the room's quota, and its identity recorded. A refused upload
/// leaves and appends nothing.
async fn upload_file(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Caller(c): Caller,
    body: Body,
) -> Response {
    match upload(s, name, c, body).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn upload(s: AppState, name: String, c: Claims, body: Body) -> Result<Response, Response> {
    let app = |e: AppError| e.into_response();
    c.require(&[Role::Chair], "upload an announcement")
        .map_err(|e| app(e.into()))?;
    if !valid_name(&name) {
        return Err(file_refusal(FileError::Name));
    }
    let files = s.bridge.files().clone();
    let admitted = files.admit().map_err(file_refusal)?;
    // The body goes to disk as it arrives: an upload never sits in memory.
    let mut up = files
        .begin(&admitted, &c.room, &name, MAX_FILE_BYTES as u64)
        .await
        .map_err(file_refusal)?;
    let receive = async {
        use futures::StreamExt;
        let mut body = body.into_data_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                return Err(app(AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "the upload broke off",
                )));
            };
            up.write(&chunk).await.map_err(file_refusal)?;
        }
        Ok(())
    };
    match tokio::time::timeout(UPLOAD_BODY_TIMEOUT, receive).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(app(AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "too_slow",
                "the file did not arrive in time",
            )))
        }
    }
    let info = files.finish(up).await.map_err(file_refusal)?;
    drop(admitted);
    let action = LoudspeakerAction::StoreFile {
        file: name.clone(),
        bytes: info.bytes,
        sha256: info.sha256.clone(),
        millis: (info.audio.seconds() * 1000.0).round() as u64,
    };
    match append(&s.recording, &c.room, crate::recording::actor(&c), action).await {
        Ok(_) => {}
        Err(e) if already(&e) => {}
        Err(e) => {
            // Not in the record, not on disk.
            let _ = files.remove(&c.room, &name).await;
            return Err(app(e.into()));
        }
    }
    let lufs = info.audio.lufs;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "file": name,
            "seconds": (info.audio.seconds() * 10.0).round() / 10.0,
            "lufs": if lufs.is_finite() { Some((lufs * 10.0).round() / 10.0) } else { None },
            "bytes": info.bytes,
            "sha256": info.sha256,
        })),
    )
        .into_response())
}

async fn remove_file(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "delete an announcement file")?;
    if !valid_name(&name) {
        return Err(FileError::Name.into());
    }
    // The record first: it refuses while a scheduled announcement plays the file.
    let action = LoudspeakerAction::RemoveFile { file: name.clone() };
    let recorded = append(&s.recording, &c.room, crate::recording::actor(&c), action).await;
    match recorded {
        Ok(_) => {}
        // On disk but not in the record (stored before files were recorded): delete it.
        Err(RecordError::Refused {
            kind: Refusal::NotFound,
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    match s.bridge.files().remove(&c.room, &name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(FileError::NotFound(_)) if recorded.is_ok() => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// Feed the bridge a room's two audio slots.
pub fn tap_room(
    bridge: Bridge,
    room: Arc<Room>,
    tasks: &TaskTracker,
    mut closing: watch::Receiver<bool>,
) {
    for (slot, voice) in [
        (Slot::ProgramAudio, Voice::Chair),
        (Slot::FloorAudio, Voice::Floor),
    ] {
        let mut rx = room.tap(slot);
        let bridge = bridge.clone();
        let name = room.name().to_owned();
        let mut closing = closing.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Ok(f) => bridge.push(&name, voice, f.out.seq, f.packet.payload.clone(), f.received),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = closing.changed() => if *closing.borrow() { return },
                }
            }
        });
    }
    let _ = closing.borrow_and_update();
}

/// A scheduled announcement of the record as the bridge plans it.
fn planned(room: &str, id: &str, s: &ls::Scheduled) -> Planned {
    let audio = match s.source.strip_prefix("live:") {
        Some(r) => Audio::Live(r.to_owned()),
        None => Audio::File(s.source.clone()),
    };
    Planned {
        id: id.to_owned(),
        room: room.to_owned(),
        at: SystemTime::from(s.at),
        priority: from_domain(s.priority),
        audio,
        clusters: s.clusters.clone(),
        chime: s.chime,
        requested_by: s.requested_by.clone(),
    }
}

/// Rebuild the bridge from the record, then follow the record from there: the relay,
/// clusters added through the API, scheduled announcements. Announcements the record has
/// playing were cut by the restart: they end `stopped`. Files left in the flat folder of
/// earlier versions move into the first room's folder, and the record learns them.
/// Returns once the bridge is rebuilt; the following runs until `closing`.
pub async fn restore_and_follow(
    bridge: &Bridge,
    rec: Arc<Recording>,
    config: &Config,
    rooms: &[String],
    tasks: &TaskTracker,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Events after `from` are followed; the states read below may already hold some of them
    // (appended meanwhile), and following them again changes nothing: the relay is set to
    // what it is, a schedule the bridge has is refused as existing, a cancel finds nothing.
    let from = rec.store().head();
    let mut relays: HashMap<String, bool> = HashMap::new();
    for room in rooms {
        let state = rec
            .record
            .state::<Loudspeakers>(room)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read room {room}'s loudspeakers: {e}"))?;
        for (id, value) in state.added_clusters() {
            let mut cfg: ClusterConfig = match serde_json::from_value(value.clone()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(cluster = %id, error = %e, "recorded cluster not started");
                    continue;
                }
            };
            cfg.password = std::fs::read_to_string(secret_path(config, id)).ok();
            if let Err(e) = bridge.add_cluster(cfg, room).await {
                tracing::error!(cluster = %id, error = %e, "recorded cluster not started");
            }
        }
        for (id, s) in state.scheduled() {
            if let Err(e) = bridge.schedule(planned(room, id, s)).await {
                tracing::warn!(announcement = %id, error = %e, "scheduled announcement not restored");
            }
        }
        if state.relay() {
            bridge.set_relay(room, true).await;
        }
        relays.insert(room.clone(), state.relay());
        // Playing when the hub went down: the restart stopped them.
        for id in state.playing() {
            let end = LoudspeakerAction::EndAnnouncement {
                announcement: id.clone(),
                how: ls::Ending::Stopped,
            };
            if let Err(e) = append(&rec, room, Actor::system("bridge"), end).await {
                tracing::warn!(announcement = %id, error = %e, "announcement cut by the restart not ended");
            }
        }
    }
    if let Some(first) = rooms.first() {
        adopt_flat_files(bridge, &rec, &config.data.join("announcements"), first).await;
    }
    bridge.set_followed(from);
    tasks.spawn(follow(bridge.clone(), rec, from, relays, closing));
    Ok(())
}

/// Files of the flat `announcements/` folder (before rooms had their own) go to `room`.
async fn adopt_flat_files(bridge: &Bridge, rec: &Recording, dir: &FsPath, room: &str) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        let is_file = e.file_type().await.is_ok_and(|t| t.is_file());
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_file || !valid_name(&name) {
            continue;
        }
        match bridge.files().adopt(room, &e.path()).await {
            Ok(info) => {
                let action = LoudspeakerAction::StoreFile {
                    file: info.name,
                    bytes: info.bytes,
                    sha256: info.sha256,
                    millis: (info.audio.seconds() * 1000.0).round() as u64,
                };
                if let Err(e) = append(rec, room, Actor::system("bridge"), action).await {
                    tracing::warn!(error = %e, "adopted file not recorded");
                }
            }
            Err(e) => tracing::warn!(error = %e, "announcement file left in the flat folder"),
        }
    }
}

/// Follow the record after `after` ([`Record::subscribe`]): the relay, scheduled and
/// cancelled announcements go to the bridge (the only place that tells it), and a meeting
/// closing stops its room's relay. A failed read is retried from the last event followed.
///
/// [`Record::subscribe`]: dinh_events::record::Record::subscribe
async fn follow(
    bridge: Bridge,
    rec: Arc<Recording>,
    mut after: u64,
    mut relays: HashMap<String, bool>,
    mut closing: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    loop {
        let mut events = std::pin::pin!(rec.record.subscribe(after));
        loop {
            let batch = tokio::select! {
                b = events.next() => b,
                r = closing.changed() => if r.is_err() || *closing.borrow() { return } else { continue },
            };
            let batch = match batch {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the record; will retry");
                    break;
                }
                // The store is gone: the hub is shutting down.
                None => return,
            };
            for e in batch {
                after = e.position;
                follow_one(&bridge, &rec, &mut relays, e).await;
            }
            bridge.set_followed(after);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = closing.changed() => if r.is_err() || *closing.borrow() { return },
        }
    }
}

/// What one event of the record asks of the bridge.
async fn follow_one(
    bridge: &Bridge,
    rec: &Recording,
    relays: &mut HashMap<String, bool>,
    e: dinh_events::chain::StoredEvent,
) {
    let room = e.aggregate_id.as_str();
    match e.aggregate_type.as_str() {
        "loudspeakers" => {
            let Ok(ev) = serde_json::from_value::<LoudspeakerEvent>(e.payload) else {
                return;
            };
            match ev {
                LoudspeakerEvent::RelaySwitched { on } => {
                    relays.insert(room.to_owned(), on);
                    bridge.set_relay(room, on).await;
                }
                LoudspeakerEvent::AnnouncementScheduled {
                    announcement,
                    at,
                    priority,
                    source,
                    clusters,
                    chime,
                    requested_by,
                } => {
                    let s = ls::Scheduled {
                        at,
                        priority,
                        source,
                        clusters,
                        chime,
                        requested_by,
                    };
                    match bridge.schedule(planned(room, &announcement, &s)).await {
                        Ok(()) => {}
                        // Already planned from the state the bridge was rebuilt from.
                        Err(BridgeError::Programme(ProgrammeError::Exists(_))) => {}
                        Err(e) => {
                            tracing::warn!(announcement = %announcement, error = %e, "scheduled announcement not planned")
                        }
                    }
                }
                LoudspeakerEvent::AnnouncementCancelled { announcement } => {
                    let _ = bridge.cancel(room, &announcement).await;
                }
                _ => {}
            }
        }
        "meeting" if e.event_type == "MeetingClosed" => {
            let Ok(m) = rec.record.load_meeting(room).await else {
                return;
            };
            if relays.get(m.room()).copied().unwrap_or(false) {
                // Closing a meeting stops its room's relay, as a fact of its own.
                let off = LoudspeakerAction::SwitchRelay { on: false };
                if let Err(e) = append(rec, m.room(), Actor::system("meeting"), off).await {
                    tracing::info!(error = %e, "relay not stopped with the meeting");
                }
            }
        }
        _ => {}
    }
}

/// Append the bridge's facts to the room's loudspeaker log (as the system's `bridge`):
/// clusters' status changes and announcements starting and ending.
pub fn record_events(
    bridge: &Bridge,
    rec: Arc<Recording>,
    tasks: &TaskTracker,
    mut closing: watch::Receiver<bool>,
) {
    let mut rx = bridge.events();
    tasks.spawn(async move {
        loop {
            let ev = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "bridge events not recorded");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = closing.changed() => if *closing.borrow() { return } else { continue },
            };
            let (room, action) = match ev {
                BridgeEvent::ClusterStatus {
                    cluster,
                    room,
                    status,
                    reason,
                } => {
                    let status = match status {
                        dinh_broadcast::health::Status::Up => ClusterStatus::Up,
                        dinh_broadcast::health::Status::Down => ClusterStatus::Down,
                        dinh_broadcast::health::Status::Unknown => ClusterStatus::Unknown,
                    };
                    let action = LoudspeakerAction::ReportClusterStatus {
                        cluster,
                        status,
                        reason,
                    };
                    (room, action)
                }
                BridgeEvent::AnnouncementStarted(s) => {
                    let action = LoudspeakerAction::StartAnnouncement {
                        announcement: s.id,
                        priority: to_domain(s.priority),
                        source: s.source,
                        clusters: s.clusters,
                        requested_by: s.requested_by,
                    };
                    (s.room, action)
                }
                BridgeEvent::AnnouncementEnded(e) => {
                    let how = match e.how {
                        How::Played => ls::Ending::Played,
                        How::Stopped => ls::Ending::Stopped,
                        How::Missed => ls::Ending::Missed,
                        How::Failed => ls::Ending::Failed,
                    };
                    let action = LoudspeakerAction::EndAnnouncement {
                        announcement: e.id,
                        how,
                    };
                    (e.room, action)
                }
            };
            if let Err(e) = append(&rec, &room, Actor::system("bridge"), action).await {
                tracing::info!(error = %e, "loudspeaker fact not recorded");
            }
        }
    });
}
