//! The loudspeaker bridge in the hub: the SFU's two audio slots tapped into it, the relay
//! following the record, the bridge's facts appended to the record, and its HTTP surface:
//!
//! - `GET /broadcast/{room}/live.ogg`: the room's audio as Ogg/Opus, whenever the room is live;
//!   token as `Authorization: Bearer` or `?token=` (receivers that only take a URL);
//! - `GET /broadcast/clusters/{id}/live.ogg`: a pull cluster's stream (relay, announcements);
//! - `GET|POST /api/clusters`, `DELETE /api/clusters/{id}`,
//!   `POST /api/clusters/{id}/heartbeat`;
//! - `POST /api/broadcast/{room}/relay`: start or stop the relay;
//! - `GET|POST /api/broadcast/announcements`, `DELETE /api/broadcast/announcements/{id}`;
//! - `GET /api/broadcast/files`, `PUT /api/broadcast/files/{name}`;
//! - `GET /api/broadcast/{room}/log`: the room's loudspeaker log from the record.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use dinh_broadcast::bridge::{room_output, AnnounceRequest, Bridge, BridgeError, BridgeEvent};
use dinh_broadcast::clip::Clip;
use dinh_broadcast::config::{valid_id, ClusterConfig};
use dinh_broadcast::engine::{Priority, Source, Voice};
use dinh_events::domain::loudspeakers::{self, LoudspeakerAction};
use dinh_events::domain::meeting::MeetingAction;
use dinh_events::domain::{Actor, ClusterStatus};
use dinh_sfu::room::{Room, Slot};

use crate::auth::{Caller, Claims, Role};
use crate::error::AppError;
use crate::recording::Recording;
use crate::AppState;

/// Largest announcement file accepted, bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

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
            put(upload_file).layer(DefaultBodyLimit::max(MAX_FILE_BYTES)),
        )
}

fn bridge_error(e: BridgeError) -> AppError {
    let status = match &e {
        BridgeError::Config(_) | BridgeError::Socket { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        BridgeError::NoSuchCluster(_) | BridgeError::NoSuchStream(_) => StatusCode::NOT_FOUND,
        BridgeError::Engine(dinh_broadcast::engine::EngineError::Exists(_)) => StatusCode::CONFLICT,
        BridgeError::Engine(dinh_broadcast::engine::EngineError::NotFound(_)) => {
            StatusCode::NOT_FOUND
        }
        BridgeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    AppError::new(status, "broadcast", e.to_string())
}

fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, AppError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "send application/json",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_body", e.to_string()))
}

/// Stream an Ogg output's pages: headers first, then live pages; a listener that falls behind
/// skips ahead rather than holding the others back.
fn ogg_response(
    listener: dinh_broadcast::bridge::Listener,
    closing: watch::Receiver<bool>,
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
        Body::from_stream(stream),
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
    let l = s.bridge.listen(&room_output(&room)).map_err(bridge_error)?;
    Ok(ogg_response(l, s.closing.subscribe()))
}

async fn cluster_stream(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    cluster_access(&s, &c, &id).await?;
    let l = s.bridge.listen(&id).map_err(bridge_error)?;
    Ok(ogg_response(l, s.closing.subscribe()))
}

/// A receiver may touch only its own cluster; the chair and officials, their room's clusters.
async fn cluster_access(s: &AppState, c: &Claims, id: &str) -> Result<(), AppError> {
    let clusters = s.bridge.clusters().await;
    let Some(cl) = clusters.iter().find(|v| v.config.id == id) else {
        return Err(bridge_error(BridgeError::NoSuchCluster(id.to_owned())));
    };
    let room = cl.config.room.clone().unwrap_or_default();
    c.for_room(&room)?;
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

async fn add_cluster(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "add a loudspeaker cluster")?;
    let cfg: ClusterConfig = json_body(&headers, &bytes)?;
    let room = cfg.room.clone().unwrap_or_else(|| c.room.clone());
    c.for_room(&room)?;
    s.bridge
        .add_cluster(cfg.clone(), &room)
        .await
        .map_err(bridge_error)?;
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
    cluster_access(&s, &c, &id).await?;
    s.bridge.remove_cluster(&id).await.map_err(bridge_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    /// `ok` or `fault`.
    status: String,
    /// 0..100.
    #[serde(default)]
    volume: Option<u8>,
    /// What is wrong.
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
    let hb: Heartbeat = json_body(&headers, &bytes)?;
    let ok = match hb.status.as_str() {
        "ok" => true,
        "fault" => false,
        other => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                format!("status must be 'ok' or 'fault', not '{other}'"),
            ))
        }
    };
    if hb.volume.is_some_and(|v| v > 100) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            "volume must be 0 to 100",
        ));
    }
    let detail = hb.detail.map(|d| d.chars().take(200).collect());
    s.bridge
        .heartbeat(&id, ok, hb.volume, detail)
        .await
        .map_err(bridge_error)?;
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
    let b: RelayBody = json_body(&headers, &bytes)?;
    s.bridge.set_relay(&room, b.on);
    // In the record when a meeting is open (the chair is the actor).
    let action = if b.on {
        MeetingAction::StartRelay
    } else {
        MeetingAction::StopRelay
    };
    s.recording
        .observe(&room, crate::recording::actor(&c), action)
        .await;
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
    /// Or a room's live voice.
    #[serde(default)]
    live_room: Option<String>,
    /// Cluster ids; all outputs when left out.
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

fn files_dir(s: &AppState) -> PathBuf {
    s.config.data.join("announcements")
}

fn valid_file_name(name: &str) -> bool {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    valid_id(stem) && matches!(ext, "wav" | "opus" | "ogg")
}

async fn announce(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "make an announcement")?;
    let b: AnnounceBody = json_body(&headers, &bytes)?;
    let bad = |m: String| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_body", m);
    if let Some(id) = &b.id {
        if !valid_id(id) {
            return Err(bad("id: 1 to 64 letters, digits, '-' or '_'".into()));
        }
    }
    let source = match (&b.file, &b.live_room) {
        (Some(f), None) => {
            if !valid_file_name(f) {
                return Err(bad(format!("file '{f}': name.wav, name.opus or name.ogg")));
            }
            let path = files_dir(&s).join(f);
            let data = tokio::fs::read(&path).await.map_err(|_| {
                AppError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_file",
                    format!("there is no file '{f}'; upload it first"),
                )
            })?;
            let clip = tokio::task::spawn_blocking(move || Clip::decode(&data))
                .await
                .map_err(|e| {
                    AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "decode", e.to_string())
                })?
                .map_err(|e| bad(format!("file '{f}': {e}")))?;
            (Source::Clip(clip), f.clone())
        }
        (None, Some(r)) => {
            s.room(r)?;
            c.for_room(r)?;
            (Source::Room(r.clone()), format!("live:{r}"))
        }
        _ => return Err(bad("give either 'file' or 'live_room'".into())),
    };
    let at = match &b.at {
        None => None,
        Some(t) => {
            let when =
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| bad(format!("at: not an RFC 3339 time: {e}")))?;
            let secs = when.unix_timestamp();
            if secs < 0 {
                return Err(bad("at: before 1970".into()));
            }
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
        }
    };
    let id = s
        .bridge
        .announce(AnnounceRequest {
            id: b.id.unwrap_or_default(),
            priority: b.priority,
            source,
            clusters: b.clusters,
            chime: b.chime,
            at,
            requested_by: crate::recording::actor(&c).label(),
        })
        .await
        .map_err(bridge_error)?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/broadcast/announcements/{id}"),
        )],
        Json(serde_json::json!({ "id": id, "scheduled": at.is_some() })),
    )
        .into_response())
}

async fn stop_announcement(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "stop an announcement")?;
    s.bridge
        .stop_announcement(&id)
        .await
        .map_err(bridge_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_announcements(
    State(s): State<AppState>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "list announcements")?;
    let clusters = s.bridge.clusters().await;
    let playing: Vec<_> = clusters
        .iter()
        .map(|v| serde_json::json!({ "cluster": v.config.id, "playing": v.playing }))
        .collect();
    Ok(Json(serde_json::json!({
        "scheduled": s.bridge.scheduled().await,
        "clusters": playing,
        "relays": s.bridge.relays().await,
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
    let mut names = Vec::new();
    if let Ok(mut rd) = tokio::fs::read_dir(files_dir(&s)).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Some(n) = e.file_name().to_str() {
                if valid_file_name(n) {
                    names.push(n.to_owned());
                }
            }
        }
    }
    names.sort();
    Ok(Json(serde_json::json!({ "files": names })).into_response())
}

async fn upload_file(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Caller(c): Caller,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair], "upload an announcement")?;
    if !valid_file_name(&name) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_name",
            "name the file NAME.wav, NAME.opus or NAME.ogg (letters, digits, '-', '_')",
        ));
    }
    // Refuse what cannot be played now, not at the moment of an emergency.
    let data = bytes.clone();
    let clip = tokio::task::spawn_blocking(move || Clip::decode(&data))
        .await
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "decode", e.to_string()))?
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_audio", e.to_string()))?;
    let dir = files_dir(&s);
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".{name}.part"));
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, dir.join(&name)).await
    };
    write.await.map_err(|e| {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("cannot store the file: {e}"),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "file": name,
            "seconds": (clip.seconds() * 10.0).round() / 10.0,
            "lufs": if clip.lufs().is_finite() { Some((clip.lufs() * 10.0).round() / 10.0) } else { None },
        })),
    )
        .into_response())
}

/// Feed the bridge a room's two audio slots.
pub fn tap_room(bridge: Bridge, room: Arc<Room>, mut closing: watch::Receiver<bool>) {
    for (slot, voice) in [
        (Slot::ProgramAudio, Voice::Chair),
        (Slot::FloorAudio, Voice::Floor),
    ] {
        let mut rx = room.tap(slot);
        let bridge = bridge.clone();
        let name = room.name().to_owned();
        let mut closing = closing.clone();
        tokio::spawn(async move {
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

/// Follow the record: a relay started or stopped through the meeting API (or by closing the
/// meeting) starts or stops the bridge's relay. On start, meetings open with their relay
/// running resume it.
pub fn follow_record(bridge: Bridge, rec: Arc<Recording>, mut closing: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut projected = rec.projected.subscribe();
        let mut after = *projected.borrow_and_update();
        {
            let views = rec.views.read().await;
            for m in views.minutes.rows().filter(|m| m.status == "open") {
                if m.relay.last().is_some_and(|(_, stop)| stop.is_none()) {
                    bridge.set_relay(&m.room, true);
                }
            }
        }
        loop {
            tokio::select! {
                r = projected.changed() => if r.is_err() { return },
                _ = closing.changed() => if *closing.borrow() { return },
            }
            let upto = *projected.borrow_and_update();
            while after < upto {
                let Ok(batch) = rec.store().read(after, 500).await else {
                    break;
                };
                if batch.is_empty() {
                    break;
                }
                let views = rec.views.read().await;
                for e in &batch {
                    after = e.position;
                    let on = match e.event_type.as_str() {
                        "RelayStarted" => true,
                        "RelayStopped" => false,
                        _ => continue,
                    };
                    if let Some(m) = views.minutes.rows().find(|m| m.meeting == e.aggregate_id) {
                        bridge.set_relay(&m.room, on);
                    }
                }
            }
        }
    });
}

/// Append the bridge's facts to the record: every fact to the room's loudspeaker log, and a
/// cluster's status also to the minutes of the meeting open in its room.
pub fn record_events(bridge: &Bridge, rec: Arc<Recording>, mut closing: watch::Receiver<bool>) {
    let mut rx = bridge.events();
    tokio::spawn(async move {
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
            match ev {
                BridgeEvent::ClusterStatus {
                    cluster,
                    room,
                    status,
                    reason,
                } => {
                    let status = match status {
                        dinh_broadcast::health::Status::Unknown => ClusterStatus::Unknown,
                        dinh_broadcast::health::Status::Up => ClusterStatus::Up,
                        dinh_broadcast::health::Status::Down => ClusterStatus::Down,
                    };
                    let action = LoudspeakerAction::ReportClusterStatus {
                        cluster: cluster.clone(),
                        status,
                        reason,
                    };
                    rec.log_loudspeakers(&room, action).await;
                    let action = MeetingAction::ChangeClusterStatus { cluster, status };
                    rec.observe(&room, Actor::system("bridge"), action).await;
                }
                BridgeEvent::Relay { room, on } => {
                    rec.log_loudspeakers(&room, LoudspeakerAction::SwitchRelay { on })
                        .await;
                }
                BridgeEvent::AnnouncementStarted {
                    id,
                    priority,
                    clusters,
                    source,
                    requested_by,
                    rooms,
                } => {
                    let priority = match priority {
                        Priority::Normal => loudspeakers::Priority::Normal,
                        Priority::Priority => loudspeakers::Priority::Priority,
                        Priority::Emergency => loudspeakers::Priority::Emergency,
                    };
                    for room in rooms {
                        let action = LoudspeakerAction::StartAnnouncement {
                            announcement: id.clone(),
                            priority,
                            source: source.clone(),
                            clusters: clusters.clone(),
                            requested_by: requested_by.clone(),
                        };
                        rec.log_loudspeakers(&room, action).await;
                    }
                }
                BridgeEvent::AnnouncementEnded { id, how, rooms } => {
                    let how = if how == "played" {
                        loudspeakers::Ending::Played
                    } else {
                        loudspeakers::Ending::Stopped
                    };
                    for room in rooms {
                        let action = LoudspeakerAction::EndAnnouncement {
                            announcement: id.clone(),
                            how,
                        };
                        rec.log_loudspeakers(&room, action).await;
                    }
                }
            }
        }
    });
}
