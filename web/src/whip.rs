//! WHIP (RFC 9725) for publishers such as OBS Studio or GStreamer's whipsink, and WHEP for
//! players. One shape for both: `POST` an SDP offer with a bearer token, get `201 Created`
//! with the answer and a `Location`; `DELETE` the location to leave.
//!
//! Trickle ICE and ICE restarts over `PATCH` are not supported: the answer carries every
//! candidate, and `PATCH` gets `405` as RFC 9725 §4.3.1 asks.

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
use dinh_sfu::sdp::parse_offer;

/// The WHIP and WHEP routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whip/{room}", post(whip).options(options))
        .route("/whep/{room}", post(whep).options(options))
        .route(
            "/whip/{room}/{id}",
            delete(remove).patch(no_patch).options(options),
        )
        .route(
            "/whep/{room}/{id}",
            delete(remove).patch(no_patch).options(options),
        )
}

/// Query parameters: a token for players that cannot set headers.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
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
    let id = format!("{:032x}", rand::random::<u128>());
    let location = format!("/{path}/{room_id}/{id}");
    let answer = session.answer.clone();
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

async fn no_patch() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "DELETE, OPTIONS")],
        "trickle ICE and ICE restart over PATCH are not supported; the answer carries every candidate",
    )
        .into_response()
}

async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "POST, DELETE, OPTIONS"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
        ],
    )
        .into_response()
}
