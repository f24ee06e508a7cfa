//! The QR code on a house screen and the phone page it opens: a villager raises feedback for
//! that house in the meeting under way, from their own phone, with no account.
//!
//! - `POST /api/house/feedback-link` (a house): a `feedback` token for this house in the
//!   meeting open in its room, and the QR code of the phone page's address carrying it (SVG,
//!   drawn by the hub). The house screen asks for a new one before the last expires.
//! - `GET /api/phone` (a `feedback` token): the house, the meeting and its agenda, and the items
//!   this token raised, with their status and answers.
//! - `POST /api/phone/feedback` (a `feedback` token): raise one item (`content`, optional
//!   `agenda_item`).
//!
//! What must stay true: a `feedback` token does one thing. [`crate::auth::Keys::verify`]
//! refuses it, so every other route does; here it is accepted only while its meeting is open,
//! for its own house, at most [`PER_MINUTE`] items a minute and [`PER_TOKEN`] in all. A refusal
//! appends nothing. The items a token raised are found again from the record: each carries
//! the token's id in its command id ([`command_id`]), so a restarted hub still knows them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::{Claims, Role};
use crate::error::AppError;
use crate::extract::json;
use crate::extract::Caller;
use crate::AppState;
use dinh_events::domain::feedback::FeedbackAction;
use dinh_events::domain::{Actor, ActorRole, Command};
use dinh_events::projections::{FeedbackRow, MinutesRow};
use dinh_events::visibility::Viewer;

/// How long a QR code's token lives. The house screen renews its code every half of this, so
/// a phone that scanned it has at least this half to write and send.
pub const TOKEN_TTL: Duration = Duration::from_secs(20 * 60);
/// Items one token may raise in a minute.
pub const PER_MINUTE: usize = 3;
/// Items one token may raise in its life.
pub const PER_TOKEN: usize = 20;
/// Longest item from a phone, characters (the record allows more from a house).
pub const MAX_CONTENT: usize = 2_000;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/house/feedback-link", post(feedback_link))
        .route("/api/phone", get(context))
        .route("/api/phone/feedback", post(raise))
}

/// The command id under which a token's item is raised: the token's id first, so that the
/// token's items are found from the log alone.
pub fn command_id(jti: &str, key: &str) -> String {
    format!("feedback-token/{jti}/{key}")
}

/// The caller of a phone route: a valid `feedback` token (header, or `?token=`).
struct Phone(Claims);

impl axum::extract::FromRequestParts<AppState> for Phone {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, AppError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(crate::auth::AuthError::Missing)?;
        let c = state.keys.verify_feedback(token.trim())?;
        // Revoked itself, or shown by a screen whose token was revoked since.
        let parent_revoked = c
            .parent
            .as_ref()
            .is_some_and(|p| state.revoked.contains_prefix(p, &c.room));
        if state.revoked.contains(&c.jti, &c.room) || parent_revoked {
            return Err(crate::auth::AuthError::Revoked.into());
        }
        Ok(Self(c))
    }
}

/// The token's meeting, if it is still open in the token's room; otherwise the refusal the
/// phone page shows.
async fn open_meeting(s: &AppState, c: &Claims) -> Result<MinutesRow, AppError> {
    let meeting = c.meeting.as_deref().unwrap_or_default();
    let views = s.recording.views.read().await;
    match views.minutes.get(meeting) {
        Some(m) if m.room == c.room && m.status == "open" => Ok(m.clone()),
        Some(m) if m.room == c.room => Err(AppError::new(
            StatusCode::FORBIDDEN,
            "meeting_closed",
            format!(
                "the meeting is {}: this code can no longer raise feedback",
                m.status
            ),
        )),
        _ => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_meeting",
            "there is no such meeting",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// The origin the house screen reaches the hub at (`location.origin`); the phone page's
    /// address starts with it. Must name the host the request was sent to.
    base: String,
}

#[derive(Debug, Serialize)]
struct Link {
    url: String,
    svg: String,
    meeting: String,
    expires_at: String,
    renew_after_secs: u64,
}

/// `base` if it is `http(s)://` + the request's own host, nothing more.
fn base_url(base: &str, headers: &HeaderMap) -> Result<String, AppError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .unwrap_or("");
    if host.is_empty() || rest != host {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            "invalid base: the address this screen reaches the hub at (location.origin)",
        ));
    }
    Ok(base.to_owned())
}

/// The QR code of `text` as an SVG drawing, one unit per module, with its quiet zone; black
/// on white, scaled by the page.
pub fn qr_svg(text: &str) -> Result<String, AppError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "qr", e.to_string()))?;
    Ok(code
        .render::<svg::Color>()
        .module_dimensions(1, 1)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

async fn feedback_link(
    State(s): State<AppState>,
    Caller(c): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    c.require(&[Role::House], "show a feedback QR code")?;
    let b: LinkBody = json(&headers, &bytes)?;
    let base = base_url(&b.base, &headers)?;
    let Some(meeting) = s.recording.open_meeting(&c.room).await else {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "refused",
            "the meeting is not open",
        ));
    };
    let token = s
        .keys
        .issue_feedback(&c.sub, &c.room, &meeting, &c.jti, TOKEN_TTL);
    // In the fragment: a phone sends no fragment to any server, so the token stays out of
    // logs and referrers; the page takes it out of the address at once.
    let url = format!("{base}/phone#token={token}");
    let expires = OffsetDateTime::now_utc() + TOKEN_TTL;
    Ok(Json(Link {
        svg: qr_svg(&url)?,
        url,
        meeting,
        expires_at: dinh_events::record::format_time(expires),
        renew_after_secs: TOKEN_TTL.as_secs() / 2,
    })
    .into_response())
}

/// One item as the phone shows it.
#[derive(Debug, Serialize)]
struct Item {
    id: String,
    content: String,
    agenda_item: Option<usize>,
    status: String,
    answer: Option<String>,
    raised_at: String,
}

/// The items this token raised: its house's items in its meeting whose first event carries
/// the token's id.
async fn own_items(s: &AppState, c: &Claims) -> Result<Vec<Item>, AppError> {
    let Some(meeting) = c.meeting.as_deref() else {
        return Ok(vec![]);
    };
    let jti = c.jti.as_str();
    let candidates: Vec<FeedbackRow> = {
        let views = s.recording.views.read().await;
        Viewer::house(&c.room, &c.sub)
            .feedback(&views)
            .filter(|f| f.meeting == meeting)
            .cloned()
            .collect()
    };
    let prefix = command_id(jti, "");
    let mut out = Vec::new();
    for f in candidates {
        let first = s
            .recording
            .store()
            .aggregate_events("feedback", &f.id, 0)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "feedback item unreadable");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "record_unavailable",
                    "the record could not be read; try again",
                )
            })?
            .into_iter()
            .next();
        if first
            .and_then(|e| e.command_id)
            .is_some_and(|cid| cid.starts_with(&prefix))
        {
            out.push(Item {
                id: f.id,
                content: f.content,
                agenda_item: f.agenda_item,
                status: f.status,
                answer: f.answer,
                raised_at: f.raised_at,
            });
        }
    }
    out.sort_by(|a, b| a.raised_at.cmp(&b.raised_at));
    Ok(out)
}

async fn context(State(s): State<AppState>, Phone(c): Phone) -> Result<Response, AppError> {
    let m = open_meeting(&s, &c).await?;
    let house_name = s
        .commune
        .room(&c.room)
        .and_then(|r| r.houses.iter().find(|h| h.id == c.sub))
        .map(|h| h.name.clone())
        .unwrap_or_else(|| c.sub.clone());
    let items = own_items(&s, &c).await?;
    Ok(Json(serde_json::json!({
        "house": { "id": c.sub, "name": house_name },
        "meeting": {
            "id": m.meeting,
            "title": m.title,
            "agenda": m.agenda.iter().map(|a| &a.title).collect::<Vec<_>>(),
            "current_item": crate::board::current_item(&m),
        },
        "expires_at": dinh_events::record::format_time(
            OffsetDateTime::from_unix_timestamp(c.exp as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        ),
        "items": items,
        "limits": { "per_minute": PER_MINUTE, "per_token": PER_TOKEN, "max_content": MAX_CONTENT },
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RaiseBody {
    content: String,
    #[serde(default)]
    agenda_item: Option<usize>,
}

/// Items raised per token in the last minute and in all. A std Mutex, never held across an
/// `.await`. Global rather than in the state because a test's router is rebuilt per request;
/// keys are random token ids, so hubs in one process never meet. Bounded: entries go once
/// their token has expired.
fn ledger() -> &'static Mutex<HashMap<String, Spent>> {
    static L: OnceLock<Mutex<HashMap<String, Spent>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// What one token has raised: since when it is counted, how many in all, and when each of
/// the last minute's came.
type Spent = (Instant, usize, VecDeque<Instant>);

/// Count one item for `jti` if its rates allow; otherwise the seconds to wait (None: never).
fn take(jti: &str, now: Instant) -> Result<(), Option<u64>> {
    let mut l = ledger().lock().unwrap_or_else(|p| p.into_inner());
    l.retain(|_, (first, _, _)| now.duration_since(*first) < TOKEN_TTL * 2);
    let (_, total, recent) = l
        .entry(jti.to_owned())
        .or_insert_with(|| (now, 0, VecDeque::new()));
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if *total >= PER_TOKEN {
        return Err(None);
    }
    if recent.len() >= PER_MINUTE {
        let wait = Duration::from_secs(60).saturating_sub(now.duration_since(recent[0]));
        return Err(Some(wait.as_secs().max(1)));
    }
    recent.push_back(now);
    *total += 1;
    Ok(())
}

/// Give back an item counted for a request that was then refused (nothing appended).
fn give_back(jti: &str) {
    let mut l = ledger().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, total, recent)) = l.get_mut(jti) {
        *total = total.saturating_sub(1);
        recent.pop_back();
    }
}

async fn raise(
    State(s): State<AppState>,
    Phone(c): Phone,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let b: RaiseBody = json(&headers, &bytes)?;
    let m = open_meeting(&s, &c).await?;
    let n = b.content.trim().chars().count();
    if n == 0 || n > MAX_CONTENT {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            if n == 0 {
                "invalid content: must not be empty".to_owned()
            } else {
                format!("invalid content: longer than {MAX_CONTENT} characters")
            },
        ));
    }
    if b.agenda_item.is_some_and(|i| i >= m.agenda.len()) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            "invalid agenda_item: not an item of this meeting's agenda",
        ));
    }
    let jti = c.jti.clone();
    let key = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(k) if !k.trim().is_empty() && k.len() <= 64 => k.trim().to_owned(),
        Some(_) => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 64 visible ASCII characters",
            ))
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let cid = command_id(&jti, &key);
    // A retry of an item already raised answers its first result and costs nothing.
    if let Ok(Some((id, a))) = s.recording.store().command_result(&cid).await {
        return Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "id": id, "appended": a, "replayed": true })),
        )
            .into_response());
    }
    if let Err(wait) = take(&jti, Instant::now()) {
        let (msg, retry) = match wait {
            Some(secs) => (
                format!("at most {PER_MINUTE} items a minute from one code; wait {secs} s"),
                secs,
            ),
            None => (
                format!("this code has raised {PER_TOKEN} items, its most; scan the screen again"),
                TOKEN_TTL.as_secs(),
            ),
        };
        let mut r =
            AppError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg).into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            retry.to_string().parse().expect("digits"),
        );
        return Ok(r);
    }
    let action = FeedbackAction::Raise {
        meeting: m.meeting.clone(),
        agenda_item: b.agenda_item,
        house: c.sub.clone(),
        content: b.content,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let cmd = Command::new(
        OffsetDateTime::now_utc(),
        Actor::new(ActorRole::House, c.sub.clone()),
        action,
    );
    match s.recording.record.feedback(&id, cmd, Some(cid)).await {
        Ok(o) => {
            crate::api::wait_projected(&s.recording, &o).await;
            Ok((
                StatusCode::CREATED,
                Json(serde_json::json!({ "id": o.aggregate_id, "appended": o.appended, "replayed": o.replayed })),
            )
                .into_response())
        }
        Err(e) => {
            give_back(&jti);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_raises_three_a_minute_and_twenty_in_all() {
        let jti = "test-rate-limit";
        let t0 = Instant::now();
        for _ in 0..PER_MINUTE {
            assert_eq!(take(jti, t0), Ok(()));
        }
        assert_eq!(take(jti, t0 + Duration::from_secs(10)), Err(Some(50)));
        // A minute after the first, one more.
        assert_eq!(take(jti, t0 + Duration::from_secs(60)), Ok(()));
        let mut t = t0 + Duration::from_secs(60);
        let mut raised = PER_MINUTE + 1;
        while raised < PER_TOKEN {
            t += Duration::from_secs(61);
            assert_eq!(take(jti, t), Ok(()));
            raised += 1;
        }
        assert_eq!(take(jti, t + Duration::from_secs(600)), Err(None));
        give_back(jti);
        assert_eq!(
            take(jti, t + Duration::from_secs(600)),
            Ok(()),
            "given back"
        );
    }

    #[test]
    fn the_qr_code_round_trips() {
        let url = format!(
            "http://192.0.2.10:8080/phone#token={}",
            crate::auth::Keys::from_secret(b"0123456789abcdef0123456789abcdef").issue_feedback(
                "house-1",
                "demo",
                &uuid::Uuid::new_v4().to_string(),
                "00000000000000000000000000000000",
                TOKEN_TTL
            )
        );
        let svg = qr_svg(&url).unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{}",
            &svg[..80]
        );
        assert!(!svg.contains("<script"));
        // The same code drawn as pixels (4 per module, a 4-module quiet zone) and read back by
        // an independent decoder.
        let code = qrcode::QrCode::with_error_correction_level(&url, qrcode::EcLevel::M).unwrap();
        let (w, colors) = (code.width(), code.to_colors());
        let (scale, quiet) = (4, 4);
        let side = (w + 2 * quiet) * scale;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let (mx, my) = (
                (x / scale).wrapping_sub(quiet),
                (y / scale).wrapping_sub(quiet),
            );
            if mx < w && my < w && colors[my * w + mx] == qrcode::Color::Dark {
                0
            } else {
                255
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().unwrap().1, url);
        assert!(
            w <= 77,
            "version {} is hard to scan from a TV",
            (w - 17) / 4
        );
    }

    #[test]
    fn the_base_must_be_the_host_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "192.0.2.10:8080".parse().unwrap());
        assert_eq!(
            base_url("http://192.0.2.10:8080", &h).unwrap(),
            "http://192.0.2.10:8080"
        );
        assert!(base_url("https://192.0.2.10:8080", &h).is_ok());
        assert!(base_url("http://evil.example", &h).is_err());
        assert!(base_url("http://192.0.2.10:8080/x", &h).is_err());
        assert!(base_url("javascript:alert(1)", &h).is_err());
    }
}
