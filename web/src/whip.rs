//! WHIP (RFC 9725) for publishers such as OBS Studio or GStreamer's whipsink, and WHEP for
//! players. One shape for both: `POST` an SDP offer with a bearer token, get `201 Created`
//! with the answer and a `Location`; `DELETE` the location to leave.
//!
//! `PATCH` on the location takes an `application/trickle-ice-sdpfrag` (RFC 8840), as RFC 9725
//! §4.3 describes: with `If-Match` naming the current ICE session (the `ETag` of the `201`), its
//! candidates are added (trickle ICE, `204`); with `If-Match: *` and new ICE credentials, the
//! session restarts ICE (a house's 4G link changed) and the reply is `200` with the hub's new
//! credentials and candidates and a new `ETag`. The hub's own candidates are all in its answers.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use serde::Deserialize;

use crate::auth::Role;
use crate::error::AppError;
use crate::AppState;
use dinh_sfu::room::{JoinRequest, Role as SfuRole, Slot};
use dinh_sfu::sdp::{apply_ice_fragment, ice_fragment, ice_ufrag, parse_ice_fragment, parse_offer};
use dinh_sfu::signal::VideoMode;

/// The WHIP and WHEP routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whip/{room}", post(whip).options(options))
        .route("/whep/{room}", post(whep).options(options))
        .route(
            "/whip/{room}/{id}",
            delete(remove).patch(patch).options(options),
        )
        .route(
            "/whep/{room}/{id}",
            delete(remove).patch(patch).options(options),
        )
}

/// Query parameters: a token for players that cannot set headers, and (WHEP) the video a
/// player on a weak link wants: `video=small` (the smallest simulcast layer) or `video=off`
/// (sound only); `full` is the default.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
    video: Option<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Whip,
    Whep,
}

async fn whip(
    state: State<AppState>,
    room: Path<String>,
    q: Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    create(Kind::Whip, state, room, q, headers, body).await
}

async fn whep(
    state: State<AppState>,
    room: Path<String>,
    q: Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    create(Kind::Whep, state, room, q, headers, body).await
}

async fn create(
    kind: Kind,
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let claims = state.authorize(&headers, q.token.as_deref(), &room_id)?;
    let room = state.room(&room_id)?;
    if let Kind::Whip = kind {
        claims.require(&[Role::Chair], "publish the meeting")?;
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.trim().eq_ignore_ascii_case("application/sdp") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("the offer must be sent as application/sdp, not '{ctype}'"),
        ));
    }
    let sdp = std::str::from_utf8(&body).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_sdp",
            "the offer is not UTF-8 text",
        )
    })?;
    let video =
        match (kind, q.video.as_deref()) {
            (_, None) => VideoMode::Full,
            (Kind::Whep, Some("full")) => VideoMode::Full,
            (Kind::Whep, Some("small")) => VideoMode::Small,
            (Kind::Whep, Some("off")) => VideoMode::Off,
            (Kind::Whep, Some(other)) => {
                return Err(AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_video",
                    format!("video must be full, small or off, not '{other}'"),
                ))
            }
            (Kind::Whip, Some(_)) => return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_video",
                "video chooses what a WHEP player receives; a WHIP publisher has no such choice",
            )),
        };
    let offer = parse_offer(sdp)?;
    let all = vec![
        Slot::ProgramAudio,
        Slot::ProgramVideo,
        Slot::FloorAudio,
        Slot::FloorVideo,
    ];
    let (req, path) = match kind {
        Kind::Whip => (
            JoinRequest {
                id: claims.sub.clone(),
                name: claims.name.clone(),
                role: SfuRole::Chair,
                publish: true,
                subscribe: vec![],
            },
            "whip",
        ),
        Kind::Whep => (
            JoinRequest {
                // A player is not a house in the roll call: give it its own id so that it
                // neither replaces nor is replaced by the house's own screen.
                id: format!("{}~whep-{:08x}", claims.sub, rand::random::<u32>()),
                name: claims.name.clone(),
                role: SfuRole::Viewer,
                publish: false,
                subscribe: all,
            },
            "whep",
        ),
    };
    let session = room.join(req, offer).await?;
    session.set_low_quality(video == VideoMode::Small);
    session.set_audio_only(video == VideoMode::Off);
    let id = format!("{:032x}", rand::random::<u128>());
    let location = format!("/{path}/{room_id}/{id}");
    let answer = session.answer.clone();
    let etag = ice_ufrag(&answer).map(entity_tag);
    state.put_resource(id, session);
    let mut res = (StatusCode::CREATED, answer).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, v);
    }
    for link in ice_links(&state, &claims.sub) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    Ok(res)
}

/// RFC 9725 §4.6: ICE servers as Link headers.
fn ice_links(state: &AppState, who: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in state.ice_servers(who) {
        for url in &s.urls {
            let mut l = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                l.push_str(&format!(
                    "; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\""
                ));
            }
            out.push(l);
        }
    }
    out
}

async fn remove(
    State(state): State<AppState>,
    Path((room_id, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    state.authorize(&headers, q.token.as_deref(), &room_id)?;
    match state.get_resource(&id) {
        Some(s) if s.room().name() == room_id => {
            if let Some(s) = state.take_resource(&id) {
                s.close().await;
            }
            Ok(StatusCode::OK)
        }
        _ => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_session",
            "no such WHIP/WHEP session (it may have ended already)",
        )),
    }
}

/// The entity-tag of an ICE session: the hub's ufrag, which changes with every restart.
fn entity_tag(ufrag: &str) -> String {
    format!("\"{ufrag}\"")
}

/// RFC 9725 §4.3: trickle ICE and ICE restarts.
async fn patch(
    State(state): State<AppState>,
    Path((room_id, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    state.authorize(&headers, q.token.as_deref(), &room_id)?;
    let session = match state.get_resource(&id) {
        Some(s) if s.room().name() == room_id && !s.is_closed() => s,
        _ => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "no_such_session",
                "no such WHIP/WHEP session (it may have ended already)",
            ))
        }
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .trim()
        .eq_ignore_ascii_case("application/trickle-ice-sdpfrag")
    {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("PATCH takes application/trickle-ice-sdpfrag, not '{ctype}'"),
        ));
    }
    let Some(if_match) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(AppError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match",
            "PATCH needs If-Match: the ETag of the ICE session, or * for an ICE restart",
        ));
    };
    let text = std::str::from_utf8(&body).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_sdp",
            "the fragment is not UTF-8 text",
        )
    })?;
    let frag = parse_ice_fragment(text)?;
    let remote = session.remote_sdp().await.ok_or_else(closed)?;
    let if_match = if_match.trim();
    if if_match == "*" || if_match == "\"*\"" {
        // An ICE restart: the client's offer with its new credentials and candidates.
        if frag.ufrag.is_none() || frag.ufrag.as_deref() == ice_ufrag(&remote) {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_sdp",
                "an ICE restart needs new ice-ufrag and ice-pwd lines",
            ));
        }
        let offer = parse_offer(&apply_ice_fragment(&remote, &frag))?;
        // On failure the old ICE session goes on (RFC 9725 §4.3.2).
        let answer = session.renegotiate(offer).await?;
        let mut res = (StatusCode::OK, ice_fragment(&answer)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
        if let Some(v) = ice_ufrag(&answer).and_then(|u| HeaderValue::from_str(&entity_tag(u)).ok())
        {
            h.insert(header::ETAG, v);
        }
        return Ok(res);
    }
    let current = session.local_ufrag().await.ok_or_else(closed)?;
    if if_match != entity_tag(&current) {
        return Err(AppError::new(
            StatusCode::PRECONDITION_FAILED,
            "if_match",
            "the ICE session has changed (an ICE restart); use the latest ETag",
        ));
    }
    if frag.ufrag.is_some() && frag.ufrag.as_deref() != ice_ufrag(&remote) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_sdp",
            "the fragment's ICE credentials are not this session's; an ICE restart needs If-Match: *",
        ));
    }
    for (mid, candidate) in frag.candidates {
        // RFC 9725 §4.3.1: a candidate the hub cannot use is dropped without failing the rest.
        // Without an a=mid line the candidate belongs to the first section (the bundle's).
        let (mid, index) = match mid {
            Some(m) => (Some(m), None),
            None => (Some("0".to_owned()), Some(0)),
        };
        if let Err(e) = session.add_candidate(candidate, mid, index).await {
            tracing::debug!(error = %e, "trickled candidate dropped");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn closed() -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "session_closed",
        "the session has ended",
    )
}

async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "POST, PATCH, DELETE, OPTIONS"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
        ],
    )
        .into_response()
}
