//! WHIP (RFC 9725) for publishers such as OBS Studio or GStreamer's whipsink, and WHEP for
//! players. One shape for both: `POST` an SDP offer with a bearer token, get `201 Created`
//! with the answer and a `Location`; `DELETE` the location to leave.
//!
//! `PATCH` on the location takes an `application/trickle-ice-sdpfrag` (RFC 8840), as RFC 9725
//! §4.3 describes: with `If-Match` naming the current ICE session (the `ETag` of the `201`), its
//! candidates are added (trickle ICE, `204`); with `If-Match: *` and new ICE credentials, the
//! session restarts ICE (a house's 4G link changed) and the reply is `200` with the hub's new
//! credentials and candidates and a new `ETag`. The hub's own candidates are all in its answers.
//!
//! Bounds ([`Sessions`]): sessions per token, per room and in total; a session that has not
//! connected within `limits.connect_timeout_secs` is closed and removed; only the token that
//! made a session, or the room's chair, may `PATCH` or `DELETE` it, and only under its own
//! kind (`/whip/…` or `/whep/…`). Remote candidates the hub would probe on a client's behalf
//! on its own machine or link, or too many of them, are refused (`dinh_sfu::sdp`). A
//! `receiver` token gets the meeting's sound only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use serde::Deserialize;

use crate::auth::{Claims, Role};
use crate::error::AppError;
use crate::AppState;
use dinh_sfu::room::{JoinRequest, Role as SfuRole, Session, Slot};
use dinh_sfu::sdp::{
    apply_ice_fragment, check_candidate, filter_offer_candidates, ice_fragment, ice_ufrag,
    parse_ice_fragment, parse_offer,
};
use dinh_sfu::signal::VideoMode;

/// The WHIP and WHEP routes. A session's location names its kind: a WHEP session is not
/// found under `/whip/…`, nor the other way round.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/whip/{room}",
            post(|s, r, q, h, b| create(Kind::Whip, s, r, q, h, b)).options(options),
        )
        .route(
            "/whep/{room}",
            post(|s, r, q, h, b| create(Kind::Whep, s, r, q, h, b)).options(options),
        )
        .route(
            "/whip/{room}/{id}",
            delete(|s, p, q, h| remove(Kind::Whip, s, p, q, h))
                .patch(|s, p, q, h, b| patch(Kind::Whip, s, p, q, h, b))
                .options(options),
        )
        .route(
            "/whep/{room}/{id}",
            delete(|s, p, q, h| remove(Kind::Whep, s, p, q, h))
                .patch(|s, p, q, h, b| patch(Kind::Whep, s, p, q, h, b))
                .options(options),
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

/// A publisher (WHIP) or a player (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/whip/…`.
    Whip,
    /// `/whep/…`.
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
}

/// The bounds on WHIP/WHEP sessions (from `limits` in the settings).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Sessions in total.
    pub total: usize,
    /// Sessions in one room.
    pub per_room: usize,
    /// Sessions made with one token.
    pub per_token: usize,
    /// A session not connected (ICE and DTLS) this long after its `POST` is removed.
    pub connect_timeout: Duration,
    /// Remote candidates one session may add by trickle, in all.
    pub trickled: usize,
}

/// Why a new session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The token has `per_token` sessions: end one first (429).
    Token,
    /// The room has `per_room` sessions (503).
    Room,
    /// The hub has `total` sessions (503).
    Full,
}

impl From<SessionRefusal> for AppError {
    fn from(r: SessionRefusal) -> Self {
        match r {
            SessionRefusal::Token => AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                "this token has as many WHIP/WHEP sessions as it may; DELETE one first",
            ),
            SessionRefusal::Room => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "room_full",
                "the room has as many WHIP/WHEP sessions as it may; try again later",
            ),
            SessionRefusal::Full => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hub_full",
                "the hub has as many WHIP/WHEP sessions as it may; try again later",
            ),
        }
    }
}

struct Entry {
    kind: Kind,
    room: String,
    /// The `jti` of the token that made it.
    owner: String,
    created: Instant,
    /// `None` while the `POST` is still negotiating: the place is held already, so that a
    /// flood of concurrent `POST`s cannot pass the caps.
    session: Option<Session>,
    trickled: usize,
}

/// The WHIP/WHEP sessions by resource id, with their owners and caps.
///
/// What must stay true: at most `total` entries, `per_room` per room and `per_token` per
/// token exist at any time, pending ones included; an entry whose session closed, or did not
/// connect within `connect_timeout`, is removed by [`Sessions::sweep`] (a session is about
/// 270 KB: a flood of `POST`s that never connect must not stay).
pub struct Sessions {
    limits: SessionLimits,
    // std Mutex: map operations only, never held across an `.await`.
    entries: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    /// An empty table with these bounds.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold a place for session `id`, or say which cap it would pass.
    fn reserve(&self, id: &str, kind: Kind, room: &str, owner: &str) -> Result<(), SessionRefusal> {
        let mut e = self.lock();
        if e.values().filter(|x| x.owner == owner).count() >= self.limits.per_token {
            return Err(SessionRefusal::Token);
        }
        if e.values().filter(|x| x.room == room).count() >= self.limits.per_room {
            return Err(SessionRefusal::Room);
        }
        if e.len() >= self.limits.total {
            return Err(SessionRefusal::Full);
        }
        e.insert(
            id.to_owned(),
            Entry {
                kind,
                room: room.to_owned(),
                owner: owner.to_owned(),
                created: Instant::now(),
                session: None,
                trickled: 0,
            },
        );
        Ok(())
    }

    /// Put the negotiated session in its place; `false` if the place is gone (the hub is
    /// stopping).
    fn fill(&self, id: &str, session: Session) -> bool {
        match self.lock().get_mut(id) {
            Some(e) => {
                e.session = Some(session);
                true
            }
            None => false,
        }
    }

    fn release(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The session at `/{kind}/{room}/{id}` if `claims` may change it: the token that made
    /// it, or the room's chair.
    fn find(&self, kind: Kind, room: &str, id: &str, claims: &Claims) -> Result<Session, AppError> {
        let e = self.lock();
        let entry = e
            .get(id)
            .filter(|x| x.kind == kind && x.room == room)
            .ok_or_else(no_such_session)?;
        if entry.owner != claims.jti && claims.role != Role::Chair {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "not_your_session",
                "only the token that made this session, or the room's chair, may change or end it",
            ));
        }
        entry.session.clone().ok_or_else(no_such_session)
    }

    /// Count `n` more trickled candidates for `id`, refusing past the cap.
    fn add_trickled(&self, id: &str, n: usize) -> Result<(), AppError> {
        let mut e = self.lock();
        let Some(entry) = e.get_mut(id) else {
            return Err(no_such_session());
        };
        if entry.trickled + n > self.limits.trickled {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_candidates",
                format!(
                    "a session may trickle at most {} candidates in all",
                    self.limits.trickled
                ),
            ));
        }
        entry.trickled += n;
        Ok(())
    }

    fn reset_trickled(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.trickled = 0;
        }
    }

    fn take(&self, id: &str) -> Option<Session> {
        self.lock().remove(id).and_then(|e| e.session)
    }

    /// Sessions in the table, pending ones included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove the sessions that closed, and close and remove those that did not connect
    /// within the timeout; returns how many were removed for not connecting.
    pub async fn sweep(&self, now: Instant) -> usize {
        let (gone, stale): (Vec<Session>, Vec<Session>) = {
            let mut e = self.lock();
            let mut gone = Vec::new();
            let mut stale = Vec::new();
            e.retain(|_, x| match &x.session {
                None => true,
                Some(s) if s.is_closed() => {
                    gone.push(s.clone());
                    false
                }
                Some(s)
                    if !s.is_connected()
                        && now.saturating_duration_since(x.created)
                            > self.limits.connect_timeout =>
                {
                    stale.push(s.clone());
                    false
                }
                Some(_) => true,
            });
            (gone, stale)
        };
        drop(gone);
        let n = stale.len();
        if n > 0 {
            tracing::info!(
                sessions = n,
                "WHIP/WHEP sessions removed: not connected in time"
            );
        }
        for s in stale {
            s.close().await;
        }
        n
    }

    /// Close and remove the sessions made by a token revoked since; returns how many.
    pub async fn close_revoked(&self, revoked: &crate::tokens::DenyList) -> usize {
        let ended: Vec<Option<Session>> = {
            let mut e = self.lock();
            let ids: Vec<String> = e
                .iter()
                .filter(|(_, x)| revoked.contains(&x.owner, &x.room))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| e.remove(id))
                .map(|x| x.session)
                .collect()
        };
        let n = ended.len();
        if n > 0 {
            tracing::info!(sessions = n, "WHIP/WHEP sessions closed: token revoked");
        }
        for s in ended.into_iter().flatten() {
            s.close().await;
        }
        n
    }

    /// Remove every session and close it (at shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Session> = self.lock().drain().filter_map(|(_, e)| e.session).collect();
        for s in all {
            s.close().await;
        }
    }
}

/// Sweep `sessions` every second, and close a revoked token's sessions as soon as it is
/// revoked, until `closing`.
pub fn spawn_sweeper(state: AppState, mut closing: tokio::sync::watch::Receiver<bool>) {
    let tasks = state.tasks.clone();
    let mut revocations = state.revoked.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let revoked = tokio::select! {
                _ = tick.tick() => false,
                r = revocations.changed() => {
                    if r.is_err() { return; }
                    true
                }
                _ = closing.wait_for(|c| *c) => return,
            };
            if revoked {
                state.sessions.close_revoked(&state.revoked).await;
            } else {
                state.sessions.sweep(Instant::now()).await;
            }
        }
    });
}

fn no_such_session() -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "no_such_session",
        "no such WHIP/WHEP session (it may have ended already)",
    )
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
    // A new session or its end counts against the token's write rate.
    state
        .rates
        .write(&claims.jti)
        .map_err(AppError::rate_limited)?;
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
    // A listen-only token gets the meeting's voice and nothing else, whatever it asks for.
    let receiver = claims.role == Role::Receiver;
    let video = if receiver { VideoMode::Off } else { video };
    let (sdp, dropped) = filter_offer_candidates(sdp, state.candidate_policy())?;
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "offer candidates the hub will not use were dropped"
        );
    }
    let offer = parse_offer(&sdp)?;
    let subscribe = if receiver {
        vec![Slot::ProgramAudio, Slot::FloorAudio]
    } else {
        vec![
            Slot::ProgramAudio,
            Slot::ProgramVideo,
            Slot::FloorAudio,
            Slot::FloorVideo,
        ]
    };
    let req = match kind {
        Kind::Whip => JoinRequest {
            id: claims.sub.clone(),
            name: claims.name.clone(),
            role: SfuRole::Chair,
            publish: true,
            subscribe: vec![],
        },
        Kind::Whep => JoinRequest {
            // A player is not a house in the roll call: give it its own id so that it
            // neither replaces nor is replaced by the house's own screen.
            id: format!("{}~whep-{:08x}", claims.sub, rand::random::<u32>()),
            name: claims.name.clone(),
            role: SfuRole::Viewer,
            publish: false,
            subscribe,
        },
    };
    let id = format!("{:032x}", rand::random::<u128>());
    state.sessions.reserve(&id, kind, &room_id, &claims.jti)?;
    let session = match room.join(req, offer).await {
        Ok(s) => s,
        Err(e) => {
            state.sessions.release(&id);
            return Err(e.into());
        }
    };
    session.set_low_quality(video == VideoMode::Small);
    session.set_audio_only(video == VideoMode::Off);
    let answer = session.answer.clone();
    if !state.sessions.fill(&id, session.clone()) {
        session.close().await;
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the hub is stopping",
        ));
    }
    let location = format!("/{}/{room_id}/{id}", kind.path());
    let etag = ice_ufrag(&answer).map(entity_tag);
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
    kind: Kind,
    State(state): State<AppState>,
    Path((room_id, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    let claims = state.authorize(&headers, q.token.as_deref(), &room_id)?;
    // A new session or its end counts against the token's write rate.
    state
        .rates
        .write(&claims.jti)
        .map_err(AppError::rate_limited)?;
    state.sessions.find(kind, &room_id, &id, &claims)?;
    if let Some(s) = state.sessions.take(&id) {
        s.close().await;
    }
    Ok(StatusCode::OK)
}

/// The entity-tag of an ICE session: the hub's ufrag, which changes with every restart.
fn entity_tag(ufrag: &str) -> String {
    format!("\"{ufrag}\"")
}

/// RFC 9725 §4.3: trickle ICE and ICE restarts.
async fn patch(
    kind: Kind,
    State(state): State<AppState>,
    Path((room_id, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let claims = state.authorize(&headers, q.token.as_deref(), &room_id)?;
    let session = state.sessions.find(kind, &room_id, &id, &claims)?;
    if session.is_closed() {
        return Err(no_such_session());
    }
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
    let mut frag = parse_ice_fragment(text)?;
    // Candidates the hub will not send checks to are dropped, as RFC 9725 §4.3.1 drops any
    // candidate the server cannot use; the rest count towards the session's cap.
    let policy = state.candidate_policy();
    frag.candidates
        .retain(|(_, c)| check_candidate(c, policy).is_ok());
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
        // A restart renegotiates the whole session: it counts against the token's rate.
        state
            .rates
            .write(&claims.jti)
            .map_err(AppError::rate_limited)?;
        let offer = parse_offer(&apply_ice_fragment(&remote, &frag))?;
        // On failure the old ICE session goes on (RFC 9725 §4.3.2).
        let answer = session.renegotiate(offer).await?;
        // A new ICE session: its candidates are the restart's.
        state.sessions.reset_trickled(&id);
        state.sessions.add_trickled(&id, frag.candidates.len())?;
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
    state.sessions.add_trickled(&id, frag.candidates.len())?;
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
