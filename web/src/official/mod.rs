//! The officials' API: what the `/official` page needs beyond the record's commands.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /api/feedback` | any record user | the register: filters, facet counts, one page ([`register`]) |
//! | `GET /api/feedback/{id}/history` | chair, official, the raising house | the item's events from the log |
//! | `GET /api/directory` | chair, official | the commune, the room and its houses |
//! | `GET /api/attendance`, `/api/attendance.csv` | chair, official | attendance across meetings ([`attendance`]) |
//! | `GET /api/stats/overdue` | chair, official | overdue items at the end of each day ([`timeline`]) |
//! | `GET /api/meetings/{id}/minutes` | chair, official | the minutes with the log position and checkpoint that cover them |
//! | `POST /api/log/verify` | chair, official | the start-up verification made again, answered as `GET /api/integrity` ([`crate::integrity`]) |
//! | `GET /api/log/export.jsonl` | official | `dinh log export`, when the log holds only the caller's room |
//!
//! Every route takes the room from the token and shows nothing of another room; roles are
//! allow-lists, so a role added later (the QR code's `feedback` role) is refused until a route
//! names it. A refused request appends nothing (these routes only read, but for the
//! verification run, which appends nothing either).

pub mod attendance;
pub mod integrity;
pub mod register;
pub mod timeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::{Claims, Role};
use crate::error::AppError;
use crate::extract::Caller;
use crate::AppState;
use dinh_events::record::{format_time, RecordError};
use dinh_events::store::StoreError;

use self::register::BadParam;
use self::timeline::LogIndex;

/// What the officials' routes keep between requests.
pub struct OfficialState {
    /// The log folded for the pictures and the export check; caught up on use.
    index: tokio::sync::Mutex<LogIndex>,
    /// Verification runs.
    runs: integrity::Runs,
    /// One export at a time.
    export: Arc<tokio::sync::Semaphore>,
}

impl Default for OfficialState {
    fn default() -> Self {
        Self {
            index: tokio::sync::Mutex::new(LogIndex::default()),
            runs: integrity::Runs::default(),
            export: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

/// Routes of the officials' API (the register's `GET /api/feedback` is in [`crate::api`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/directory", get(directory))
        .route("/api/feedback/{id}/history", get(history))
        .route("/api/attendance", get(attendance_across))
        .route("/api/attendance.csv", get(attendance_csv))
        .route("/api/stats/overdue", get(overdue_series))
        .route("/api/meetings/{id}/minutes", get(minutes))
        .route("/api/log/verify", post(verify_now))
        .route("/api/log/export.jsonl", get(export))
}

const STAFF: &[Role] = &[Role::Official, Role::Chair];

fn store_error(e: StoreError) -> AppError {
    AppError::from(RecordError::from(e))
}

fn bad_param(e: BadParam) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string())
}

/// The query's pairs, refusing any parameter not in `allowed` (and passing `token`, which may
/// carry the bearer token).
fn params(uri: &Uri, allowed: &[&str]) -> Result<Vec<(String, String)>, AppError> {
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_query", format!("query: {e}")))?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| k != "token" && !allowed.contains(&k.as_str()))
    {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "unknown field `{k}`, expected one of {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The index, caught up with the log's head.
async fn index(s: &AppState) -> Result<tokio::sync::MutexGuard<'_, LogIndex>, AppError> {
    let mut ix = s.official.index.lock().await;
    let store = s.recording.store();
    let head = store.head();
    while ix.position() < head {
        let batch = store.read(ix.position(), 5000).await.map_err(store_error)?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            ix.apply(e);
        }
    }
    Ok(ix)
}

/// `GET /api/feedback`: the register, one page with its counts. Called by [`crate::api`] with
/// the record user it checked.
pub async fn register_page(s: &AppState, c: &Claims, uri: &Uri) -> Result<Response, AppError> {
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_query", format!("query: {e}")))?;
    let filter = register::Filter::parse(&pairs).map_err(bad_param)?;
    let views = s.recording.views.read().await;
    let mut page = register::query(
        crate::api::viewer(c).feedback(&views),
        &filter,
        s.recording.record.calendar(),
        OffsetDateTime::now_utc(),
    );
    page.position = views.position();
    Ok(Json(page).into_response())
}

/// The houses of the caller's room: (id, name), in the directory's order.
fn houses(s: &AppState, room: &str) -> Vec<(String, String)> {
    s.commune
        .room(room)
        .map(|r| {
            r.houses
                .iter()
                .map(|h| (h.id.clone(), h.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn directory(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(STAFF, "read the commune's directory")?;
    let room = s.commune.room(&c.room);
    Ok(Json(json!({
        "commune": s.commune.name,
        "room": {"id": c.room, "title": room.map(|r| r.title.as_str()).unwrap_or("")},
        "houses": houses(&s, &c.room)
            .into_iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect::<Vec<_>>(),
        "me": {"id": c.sub, "name": c.name, "role": c.role.as_str()},
    }))
    .into_response())
}

/// The most events one item's history returns.
const MAX_HISTORY: usize = 1000;

async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(
        &[Role::Official, Role::Chair, Role::House],
        "read an item's history",
    )?;
    // Visible exactly when the item is: its room, and for a house its own items only.
    crate::api::feedback_row(&s.recording, &c, &id).await?;
    let events = s
        .recording
        .store()
        .aggregate_events("feedback", &id, 0)
        .await
        .map_err(store_error)?;
    let truncated = events.len() > MAX_HISTORY;
    let list: Vec<Value> = events
        .into_iter()
        .take(MAX_HISTORY)
        .map(|e| {
            json!({
                "position": e.position,
                "at": e.recorded_at,
                "actor": e.actor,
                "type": e.event_type,
                "data": e.payload,
                "hash": e.hash,
            })
        })
        .collect();
    Ok(Json(json!({"id": id, "events": list, "truncated": truncated})).into_response())
}

async fn attendance_across(
    State(s): State<AppState>,
    Caller(c): Caller,
    uri: Uri,
) -> Result<Response, AppError> {
    c.require(STAFF, "read attendance across meetings")?;
    let pairs = params(&uri, &["limit"])?;
    let limit = match param(&pairs, "limit") {
        Some(v) => {
            register::number_param("limit", v, 1, attendance::MAX_MEETINGS).map_err(bad_param)?
        }
        None => attendance::DEFAULT_MEETINGS,
    };
    Ok(Json(across(&s, &c, limit).await).into_response())
}

async fn across(s: &AppState, c: &Claims, limit: usize) -> attendance::Across {
    let views = s.recording.views.read().await;
    attendance::across(
        views.minutes.rows().filter(|m| m.room == c.room),
        views.attendance.rows(),
        &houses(s, &c.room),
        limit,
        OffsetDateTime::now_utc(),
    )
}

async fn attendance_csv(
    State(s): State<AppState>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(STAFF, "export attendance")?;
    let a = across(&s, &c, usize::MAX).await;
    let mut rows = vec![crate::api::csv_header("meeting,title,starts_at,house,house_name,minutes_connected,joins,headcount,checked_in,minutes_speaking")];
    for cell in &a.cells {
        let m = a.meetings.iter().find(|m| m.id == cell.meeting);
        let name = a
            .houses
            .iter()
            .find(|h| h.id == cell.house)
            .map_or(cell.house.as_str(), |h| h.name.as_str());
        rows.push(vec![
            cell.meeting.clone(),
            m.map(|m| m.title.clone()).unwrap_or_default(),
            m.map(|m| m.starts_at.clone()).unwrap_or_default(),
            cell.house.clone(),
            name.to_owned(),
            format!("{:.1}", cell.seconds_connected as f64 / 60.0),
            cell.joins.to_string(),
            cell.headcount.map(|h| h.to_string()).unwrap_or_default(),
            cell.checked_in.to_string(),
            format!("{:.1}", cell.seconds_speaking as f64 / 60.0),
        ]);
    }
    Ok(crate::api::csv_response(
        &format!("attendance-{}.csv", c.room),
        rows,
    ))
}

/// The most days the overdue series covers.
const MAX_DAYS: usize = 730;

async fn overdue_series(
    State(s): State<AppState>,
    Caller(c): Caller,
    uri: Uri,
) -> Result<Response, AppError> {
    c.require(STAFF, "read the overdue series")?;
    let pairs = params(&uri, &["days"])?;
    let days = match param(&pairs, "days") {
        Some(v) => register::number_param("days", v, 1, MAX_DAYS).map_err(bad_param)?,
        None => 90,
    };
    let ix = index(&s).await?;
    let views = s.recording.views.read().await;
    let in_room = |meeting: &str| views.minutes.get(meeting).is_some_and(|m| m.room == c.room);
    let series = ix.overdue_series(in_room, days as u32, OffsetDateTime::now_utc());
    Ok(Json(json!({"days": series})).into_response())
}

async fn minutes(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    c.require(STAFF, "read the minutes")?;
    crate::api::check_meeting(&s.recording, &c, &id).await?;
    let store = s.recording.store();
    let meeting_events = store
        .aggregate_events("meeting", &id, 0)
        .await
        .map_err(store_error)?;
    let ix = index(&s).await?;
    let views = s.recording.views.read().await;
    let Some(m) = views.minutes.get(&id).cloned() else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no_such_meeting",
            format!("there is no meeting '{id}'"),
        ));
    };
    let dir = houses(&s, &c.room);
    let name = |h: &str| {
        dir.iter()
            .find(|(id, _)| id == h)
            .map_or_else(|| h.to_owned(), |(_, n)| n.clone())
    };
    // Every house of the room, present or not, then any other that attended.
    let mut attendance: Vec<Value> = Vec::new();
    let rows: Vec<_> = views
        .attendance
        .rows()
        .filter(|a| a.meeting == id)
        .collect();
    let now = OffsetDateTime::now_utc();
    // A house still connected counts up to now, or up to the close of a closed meeting.
    let end = attendance::end_of(&m, now);
    let mut listed: Vec<&str> = dir.iter().map(|(h, _)| h.as_str()).collect();
    for r in &rows {
        if !listed.contains(&r.house.as_str()) {
            listed.push(&r.house);
        }
    }
    for h in listed {
        let row = rows.iter().find(|r| r.house == h);
        let live = row
            .and_then(|r| r.connected_since.as_deref())
            .map_or(0, |t| attendance::seconds_between(t, end));
        attendance.push(json!({
            "house": h,
            "name": name(h),
            "present": row.is_some_and(|r| r.joins > 0),
            "connected_since": row
                .and_then(|r| r.connected_since.clone())
                .filter(|_| m.closed_at.is_none()),
            "first_joined": row.and_then(|r| r.first_joined.clone()),
            "last_left": row.and_then(|r| r.last_left.clone()),
            "seconds_connected": row.map_or(0, |r| r.seconds_connected) + live,
            "headcount": row.and_then(|r| r.headcount),
            "checked_in": row.map(|r| r.checked_in.clone()).unwrap_or_default(),
            "seconds_speaking": row.map_or(0, |r| r.seconds_speaking),
        }));
    }
    // Feedback as raised (fixed at its FeedbackReceived). A denunciation's author and content
    // stay out of the minutes (Luật Tố cáo 2018 protects the denouncer).
    let mut covers = meeting_events.last().map_or(0, |e| e.position);
    let mut feedback = Vec::new();
    for fid in &m.feedback {
        let Some(f) = views.feedback.get(fid) else {
            continue;
        };
        if let Some(life) = ix.item(fid) {
            covers = covers.max(life.received_at);
        }
        let protected = f.kind == Some(dinh_events::domain::feedback::FeedbackKind::Denunciation);
        feedback.push(json!({
            "id": f.id,
            "agenda_item": f.agenda_item,
            "raised_at": f.raised_at,
            "kind": f.kind,
            "protected": protected,
            "house": (!protected).then(|| f.house.clone()),
            "house_name": (!protected).then(|| name(&f.house)),
            "content": (!protected).then(|| f.content.clone()),
        }));
    }
    drop(views);
    drop(ix);
    let covers_hash = match meeting_events.iter().find(|e| e.position == covers) {
        Some(e) => Some(e.hash.clone()),
        None if covers > 0 => store
            .read(covers - 1, 1)
            .await
            .map_err(store_error)?
            .first()
            .map(|e| e.hash.clone()),
        None => None,
    };
    let checkpoint = integrity::checkpoint(store, Some(covers))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "commune": s.commune.name,
        "room_title": s.commune.room(&c.room).map(|r| r.title.clone()).unwrap_or_default(),
        "minutes": m,
        "attendance": attendance,
        "feedback": feedback,
        "log": {
            "position": covers,
            "hash": covers_hash,
            "meeting_events": meeting_events.len(),
            "head": store.head(),
        },
        "checkpoint": checkpoint,
        "public_key": s.recording.signer.public_hex(),
        "generated_at": format_time(now),
    }))
    .into_response())
}

fn rate_limited(retry: Duration, message: String) -> Response {
    let secs = retry.as_secs().max(1);
    let mut r =
        AppError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_str(&secs.to_string()).expect("digits are a valid header"),
    );
    r
}

async fn verify_now(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(STAFF, "run a verification of the log")?;
    let guard = match s.official.runs.start(Instant::now()) {
        Ok(g) => g,
        Err(integrity::NotNow::Running) => {
            return Ok(rate_limited(
                Duration::from_secs(5),
                "a verification of the log is running; its result comes shortly".into(),
            ))
        }
        Err(integrity::NotNow::TooSoon(left)) => {
            return Ok(rate_limited(
                left,
                format!(
                    "the log was verified less than {} s ago; try again in {} s",
                    integrity::VERIFY_EVERY.as_secs(),
                    left.as_secs().max(1)
                ),
            ))
        }
    };
    // The run goes on in its own task, so that a client leaving does not waste it. It is the
    // check the hub made at start-up ([`crate::integrity`]), against the witnesses too.
    let state = s.clone();
    let run = s
        .tasks
        .spawn(async move {
            let rec = &state.recording;
            rec.integrity.verify_again(rec.store()).await
        })
        .await;
    if matches!(run, Ok(Ok(_))) {
        s.official.runs.finish(Instant::now());
    }
    drop(guard);
    match run {
        Ok(Ok(status)) => Ok(Json(status).into_response()),
        Ok(Err(e)) => Err(store_error(e)),
        Err(e) => {
            tracing::error!(error = %e, "verification task failed");
            Err(AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ))
        }
    }
}

async fn export(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(&[Role::Official], "export the log")?;
    let Ok(permit) = s.official.export.clone().try_acquire_owned() else {
        return Ok(rate_limited(
            Duration::from_secs(30),
            "another export of the log is running; try again shortly".into(),
        ));
    };
    let rec = &s.recording;
    let store = rec.store();
    // Aggregates are placed in rooms through the projections: let them reach the head first.
    let head = store.head();
    let mut projected = rec.projected.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), projected.wait_for(|p| *p >= head)).await;
    let shared = {
        let ix = index(&s).await?;
        let views = rec.views.read().await;
        integrity::foreign(&views, &c.room, ix.aggregates_upto(head))
    };
    // A hub of one room holds nothing of another room: its whole log is the official's.
    let one_room = s.commune.rooms.len() == 1;
    if shared > 0 && !one_room {
        return Err(log_shared());
    }
    // `dinh log export` into a file beside the record, then streamed: memory stays bounded
    // and the file is exactly the command's.
    let path = s
        .config
        .data
        .join(format!("export-{}.jsonl.part", uuid::Uuid::new_v4()));
    let written = {
        let file = std::fs::File::create(&path).map_err(|e| io_error(&e))?;
        let mut w = std::io::BufWriter::new(file);
        dinh_events::verify::export(store, &rec.signer.public_hex(), &mut w).await
    };
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            tracing::error!(error = %e, "log export failed");
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "record_unavailable",
                "the log could not be read for export; try again",
            ));
        }
    };
    // The export may reach past the checked head: check what it added.
    let shared = if n > head && !one_room {
        let ix = index(&s).await?;
        let views = rec.views.read().await;
        integrity::foreign(&views, &c.room, ix.aggregates_upto(n))
    } else {
        0
    };
    let file = tokio::fs::File::open(&path).await;
    // Unlinked at once: the open file stays readable and nothing is left behind.
    let _ = std::fs::remove_file(&path);
    if shared > 0 {
        return Err(log_shared());
    }
    let file = file.map_err(|e| io_error(&e))?;
    tracing::info!(events = n, "log exported for an official");
    let deadline = tokio::time::Instant::now() + integrity::EXPORT_TIME_LIMIT;
    let stream = futures::stream::unfold((file, permit), move |(mut file, permit)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, file.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => None,
            Ok(Ok(k)) => {
                buf.truncate(k);
                Some((Ok::<_, std::io::Error>(buf), (file, permit)))
            }
            Ok(Err(e)) => Some((Err(e), (file, permit))),
        }
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/x-ndjson; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dinh-log-{}-{n}.jsonl\"", c.room),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn log_shared() -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        "log_shared",
        "this hub's log also holds other rooms' meetings, which an official of one room may not \
         receive; the hub's administrator exports the whole log with `dinh log export`",
    )
}

fn io_error(e: &std::io::Error) -> AppError {
    tracing::error!(error = %e, "export file");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "record_unavailable",
        "the export could not be written on the hub; try again",
    )
}
