//! The record's REST API under `/api`: commands as POST, queries as GET, live events as SSE,
//! CSV exports. Described by `/api/openapi.json` (web/src/openapi.json).
//!
//! Every request needs a token (`Authorization: Bearer`, or `?token=`). A token is for one
//! room: it sees the meetings of that room and the feedback raised in them. A house sees only
//! the feedback its own house raised (a denunciation's author must stay protected).
//! `Idempotency-Key` on a POST makes it safe to retry: the same key returns the first result.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::auth::{AuthError, Claims, Role};
use crate::error::AppError;
use crate::extract::Caller;
use crate::extract::{command_key, json};
use crate::recording::{actor, Recording};
use crate::AppState;
use dinh_events::domain::feedback::{Feedback, FeedbackAction};
use dinh_events::domain::meeting::{Meeting, MeetingAction};
use dinh_events::domain::Command;
use dinh_events::projections::FeedbackRow;
use dinh_events::record::{Outcome, RecordError, Refusal, Runnable};
use dinh_events::visibility::Viewer;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Routes under `/api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/meetings", post(schedule).get(list_meetings))
        .route("/api/meetings/{id}", get(get_meeting))
        .route("/api/meetings/{id}/commands", post(meeting_command))
        .route("/api/meetings/{id}/attendance.csv", get(attendance_csv))
        .route("/api/feedback", post(raise).get(list_feedback))
        .route("/api/feedback.csv", get(feedback_csv))
        .route("/api/feedback/{id}", get(get_feedback))
        .route("/api/feedback/{id}/commands", post(feedback_command))
        .route("/api/events", get(events))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The caller of a record request: any role but a loudspeaker receiver, whose token only
/// opens a stream.
struct RecordUser(Claims);

impl axum::extract::FromRequestParts<AppState> for RecordUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, AppError> {
        let Caller(c) = Caller::from_request_parts(parts, state).await?;
        if c.role == Role::Receiver {
            return Err(AuthError::WrongRole {
                have: "receiver",
                need: "chair",
                action: "use the record",
            }
            .into());
        }
        Ok(Self(c))
    }
}

fn rec(state: &AppState) -> &Arc<Recording> {
    &state.recording
}

impl From<RecordError> for AppError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Refused { kind, message } => {
                let status = match kind {
                    Refusal::Forbidden => StatusCode::FORBIDDEN,
                    Refusal::NotFound => StatusCode::NOT_FOUND,
                    Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::State => StatusCode::CONFLICT,
                };
                AppError::new(status, "refused", message)
            }
            RecordError::Conflict(_) => {
                AppError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            RecordError::Store(_) => {
                tracing::error!(error = %e, "record store failed");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "record_unavailable",
                    "the record could not be written; nothing was saved, try again",
                )
            }
            _ => {
                tracing::error!(error = %e, "record failed");
                AppError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

fn outcome(status: StatusCode, o: Outcome) -> Response {
    (status, Json(o)).into_response()
}

/// The room of a meeting, or 404.
async fn meeting_room(rec: &Recording, id: &str) -> Result<String, AppError> {
    let views = rec.views.read().await;
    views
        .minutes
        .get(id)
        .filter(|m| !m.room.is_empty())
        .map(|m| m.room.clone())
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                "no_such_meeting",
                format!("there is no meeting '{id}'"),
            )
        })
}

/// A meeting visible to the token: in its room.
/// The caller's room holds meeting `id`, or 404: another room's meeting answers as a missing
/// one does, so that ids cannot be probed across rooms.
pub(crate) async fn check_meeting(rec: &Recording, c: &Claims, id: &str) -> Result<(), AppError> {
    let room = meeting_room(rec, id).await?;
    if c.for_room(&room).is_err() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_meeting",
            format!("there is no meeting '{id}'"),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    room: Option<String>,
    title: String,
    #[serde(with = "time::serde::rfc3339")]
    starts_at: OffsetDateTime,
    #[serde(default)]
    agenda: Vec<String>,
}

fn valid_id(id: &str) -> Result<(), AppError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_id",
            "an id is 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

async fn schedule(
    State(s): State<AppState>,
    RecordUser(c): RecordUser,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let b: ScheduleBody = json(&headers, &bytes)?;
    let room = b.room.unwrap_or_else(|| c.room.clone());
    c.for_room(&room)?;
    s.room(&room)?;
    let id = b.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    valid_id(&id)?;
    let action = MeetingAction::Schedule {
        room,
        title: b.title,
        starts_at: b.starts_at,
        agenda: b.agenda,
    };
    let o = record::<Meeting>(rec(&s), &c, &headers, "meetings", &id, action).await?;
    Ok(outcome(StatusCode::CREATED, o))
}

async fn meeting_command(
    State(rec): State<Arc<Recording>>,
    Path(id): Path<String>,
    RecordUser(c): RecordUser,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let action: MeetingAction = json(&headers, &bytes)?;
    if matches!(action, MeetingAction::Schedule { .. }) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            "schedule a meeting with POST /api/meetings",
        ));
    }
    check_meeting(&rec, &c, &id).await?;
    let route = format!("meetings/{id}");
    let o = record::<Meeting>(&rec, &c, &headers, &route, &id, action).await?;
    Ok(outcome(StatusCode::OK, o))
}

/// Record `action` on the aggregate `A` named `id`, as the caller, under the request's
/// idempotency key scoped to `route`; the outcome once the projections hold it, so that the
/// client reads its own write.
pub(crate) async fn record<A: Runnable>(
    rec: &Recording,
    c: &Claims,
    headers: &HeaderMap,
    route: &str,
    id: &str,
    action: A::Action,
) -> Result<Outcome, AppError> {
    let cmd = Command::new(OffsetDateTime::now_utc(), actor(c), action);
    let key = command_key(headers, c, route)?;
    let o = rec.record.execute::<A>(id, cmd, key).await?;
    wait_projected(rec, &o).await;
    Ok(o)
}

/// Let a client read its own write: wait (briefly) until the projections include it.
pub(crate) async fn wait_projected(rec: &Recording, o: &Outcome) {
    let Some(a) = o.appended else { return };
    let mut rx = rec.projected.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|p| *p >= a.last)).await;
}

async fn list_meetings(
    State(rec): State<Arc<Recording>>,
    RecordUser(c): RecordUser,
) -> Result<Response, AppError> {
    let views = rec.views.read().await;
    let list: Vec<_> = views
        .minutes
        .rows()
        .filter(|m| m.room == c.room)
        .cloned()
        .collect();
    Ok(Json(list).into_response())
}

async fn get_meeting(
    State(rec): State<Arc<Recording>>,
    Path(id): Path<String>,
    RecordUser(c): RecordUser,
) -> Result<Response, AppError> {
    check_meeting(&rec, &c, &id).await?;
    let views = rec.views.read().await;
    let minutes = views.minutes.get(&id).cloned();
    let attendance: Vec<_> = views
        .attendance
        .rows()
        .filter(|a| a.meeting == id)
        .cloned()
        .collect();
    Ok(Json(serde_json::json!({"minutes": minutes, "attendance": attendance})).into_response())
}

/// Quote a CSV field (RFC 4180).
fn csv_field(s: &str) -> String {
    // A cell starting with = + - @ (or a tab or carriage return before one) is run as a formula
    // by spreadsheet programs, and a program that splits on another separator (`;`, a tab, a
    // new line) makes a new cell after it: every such start gets a quote that keeps it text.
    const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
    const SEPARATORS: [char; 6] = [',', ';', '\t', '\n', '\r', '|'];
    let mut defused = String::with_capacity(s.len() + 1);
    let mut at_start = true;
    for ch in s.chars() {
        if at_start && FORMULA.contains(&ch) {
            defused.push('\'');
        }
        at_start = SEPARATORS.contains(&ch);
        defused.push(ch);
    }
    let s = defused;
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A CSV header row from its column names, comma-separated.
pub(crate) fn csv_header(columns: &str) -> Vec<String> {
    columns.split(',').map(String::from).collect()
}

pub(crate) fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Response {
    let mut out = String::from("\u{feff}"); // BOM: Excel then reads UTF-8 Vietnamese correctly
    for r in rows {
        out.push_str(&r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response()
}

async fn attendance_csv(
    State(rec): State<Arc<Recording>>,
    Path(id): Path<String>,
    RecordUser(c): RecordUser,
) -> Result<Response, AppError> {
    c.require(&[Role::Chair, Role::Official], "export attendance")?;
    check_meeting(&rec, &c, &id).await?;
    let views = rec.views.read().await;
    let mut rows = vec![csv_header("meeting,house,first_joined,last_left,minutes_connected,joins,headcount,checked_in,minutes_speaking")];
    for a in views.attendance.rows().filter(|a| a.meeting == id) {
        rows.push(vec![
            a.meeting.clone(),
            a.house.clone(),
            a.first_joined.clone().unwrap_or_default(),
            a.last_left.clone().unwrap_or_default(),
            format!("{:.1}", a.seconds_connected as f64 / 60.0),
            a.joins.to_string(),
            a.headcount.map(|h| h.to_string()).unwrap_or_default(),
            a.checked_in.len().to_string(),
            format!("{:.1}", a.seconds_speaking as f64 / 60.0),
        ]);
    }
    Ok(csv_response(&format!("attendance-{id}.csv"), rows))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RaiseBody {
    meeting: String,
    #[serde(default)]
    agenda_item: Option<usize>,
    #[serde(default)]
    house: Option<String>,
    content: String,
}

async fn raise(
    State(rec): State<Arc<Recording>>,
    RecordUser(c): RecordUser,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let b: RaiseBody = json(&headers, &bytes)?;
    check_meeting(&rec, &c, &b.meeting).await?;
    if let Some(i) = b.agenda_item {
        let items = rec
            .views
            .read()
            .await
            .minutes
            .get(&b.meeting)
            .map_or(0, |m| m.agenda.len());
        if i >= items {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                format!("invalid agenda_item: the meeting's agenda has {items} items"),
            ));
        }
    }
    let house = match (c.role, b.house) {
        (Role::House, None) => c.sub.clone(),
        (_, Some(h)) => h,
        (_, None) => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                "request body: missing field `house`",
            ))
        }
    };
    let action = FeedbackAction::Raise {
        meeting: b.meeting,
        agenda_item: b.agenda_item,
        house,
        content: b.content,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let o = record::<Feedback>(&rec, &c, &headers, "feedback", &id, action).await?;
    Ok(outcome(StatusCode::CREATED, o))
}

/// Who the token is, for the record's visibility rule (a house sees only its own feedback).
pub(crate) fn viewer(c: &Claims) -> Viewer<'_> {
    match c.role {
        // A QR feedback token speaks for its house (the record API refuses it today; should
        // it ever reach here, it sees no more than its house).
        Role::House | Role::Feedback => Viewer::house(&c.room, &c.sub),
        _ => Viewer::staff(&c.room),
    }
}

pub(crate) async fn feedback_row(
    rec: &Recording,
    c: &Claims,
    id: &str,
) -> Result<FeedbackRow, AppError> {
    let views = rec.views.read().await;
    let row = viewer(c).feedback(&views).find(|f| f.id == id).cloned();
    row.ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_feedback",
            format!("there is no feedback item '{id}'"),
        )
    })
}

async fn feedback_command(
    State(rec): State<Arc<Recording>>,
    Path(id): Path<String>,
    RecordUser(c): RecordUser,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let action: FeedbackAction = json(&headers, &bytes)?;
    if matches!(
        action,
        FeedbackAction::Raise { .. } | FeedbackAction::MarkOverdue
    ) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            format!("'{}' is not a command of this endpoint", action.name()),
        ));
    }
    feedback_row(&rec, &c, &id).await?;
    let route = format!("feedback/{id}");
    let o = record::<Feedback>(&rec, &c, &headers, &route, &id, action).await?;
    Ok(outcome(StatusCode::OK, o))
}

/// `GET /api/feedback`: the register with filters, facet counts and paging
/// ([`crate::official::register`]).
async fn list_feedback(
    State(s): State<AppState>,
    RecordUser(c): RecordUser,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    crate::official::register_page(&s, &c, &uri).await
}

async fn get_feedback(
    State(rec): State<Arc<Recording>>,
    Path(id): Path<String>,
    RecordUser(c): RecordUser,
) -> Result<Response, AppError> {
    let row = feedback_row(&rec, &c, &id).await?;
    let item =
        crate::official::register::item(&row, rec.record.calendar(), OffsetDateTime::now_utc());
    Ok(Json(item).into_response())
}

async fn feedback_csv(
    State(rec): State<Arc<Recording>>,
    RecordUser(c): RecordUser,
) -> Result<Response, AppError> {
    c.require(
        &[Role::Chair, Role::Official],
        "export the feedback register",
    )?;
    let views = rec.views.read().await;
    let mut rows = vec![csv_header("id,meeting,agenda_item,house,raised_at,kind,status,assignee,deadline,overdue,reopened,content,answer")];
    for f in viewer(&c).feedback(&views) {
        rows.push(vec![
            f.id.clone(),
            f.meeting.clone(),
            f.agenda_item.map(|a| a.to_string()).unwrap_or_default(),
            f.house.clone(),
            f.raised_at.clone(),
            f.kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
            f.status.clone(),
            f.assignee.clone().unwrap_or_default(),
            f.deadline.map(|d| d.to_string()).unwrap_or_default(),
            f.overdue.to_string(),
            f.reopened.to_string(),
            f.content.clone(),
            f.answer.clone().unwrap_or_default(),
        ]);
    }
    Ok(csv_response("feedback.csv", rows))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    from: Option<u64>,
}

/// `GET /api/events?from=N`: every visible event after position N, then live, from the
/// record's one subscription. Each SSE event has `id` = position, so a reconnecting client
/// resumes with `Last-Event-ID`.
async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
    RecordUser(c): RecordUser,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_last_event_id",
                    "Last-Event-ID must be a position",
                )
            })
        })
        .transpose()?;
    let from = last_id.or(q.from).unwrap_or(0);
    let rec = rec(&s).clone();
    // The stream ends when the hub stops, or when its token is revoked or expires.
    let closed = s.token_lifetime(&c);
    // Read only what the projections have applied: visibility is decided with them.
    let stream = rec
        .record
        .subscribe_upto(from, rec.projected.subscribe())
        .then(move |r| {
            let (rec, c) = (rec.clone(), c.clone());
            async move {
                let batch = r
                    .map_err(|e| tracing::warn!(error = %e, "event stream read failed"))
                    .unwrap_or_default();
                let views = rec.views.read().await;
                let me = viewer(&c);
                batch
                    .into_iter()
                    .filter(|e| me.may_see(&views, e))
                    .map(|e| {
                        Ok(SseEvent::default()
                            .id(e.position.to_string())
                            .event(e.event_type.clone())
                            .json_data(&e)
                            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable")))
                    })
                    .collect::<Vec<_>>()
            }
        })
        .flat_map(futures::stream::iter)
        .take_until(closed);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let src = [
            include_str!("api.rs"),
            include_str!("loudspeakers.rs"),
            include_str!("official/mod.rs"),
            include_str!("notices.rs"),
            include_str!("board.rs"),
            include_str!("phone.rs"),
            include_str!("tokens.rs"),
        ]
        .concat();
        let routes: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .map(|l| &l[..l.find('"').unwrap()])
            .collect();
        assert!(routes.len() >= 10, "{routes:?}");
        for r in routes {
            assert!(doc["paths"][r].is_object(), "{r} missing from openapi.json");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("Đường"), "Đường");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        // After any separator a spreadsheet may split on, not only at the start.
        assert_eq!(csv_field("ok;=HYPERLINK(x)"), "ok;'=HYPERLINK(x)");
        assert_eq!(csv_field("a\t@SUM(1)"), "a\t'@SUM(1)");
        assert_eq!(csv_field("x,+1"), "\"x,'+1\"");
        assert_eq!(csv_field("line\n-2+3"), "\"line\n'-2+3\"");
        assert_eq!(csv_field("a=b-c"), "a=b-c");
    }
}
