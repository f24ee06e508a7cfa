//! The village bulletin board a house screen shows between meetings, and the meeting it shows
//! during one: `GET /api/board`, read from the record's projections in one answer.
//!
//! - the meeting open in the room, with its agenda and the current item;
//! - the next scheduled meetings (time, title, agenda);
//! - the notices shown today;
//! - for a house, the status of its own feedback items (received, assigned, answered,
//!   overdue) with the answers; the chair and officials get the room's board without items.
//!
//! The screen asks again whenever the record's event stream says something of its room
//! changed; nothing here is pushed.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::auth::Role;
use crate::error::AppError;
use crate::extract::Caller;
use crate::AppState;
use dinh_events::projections::{MinutesRow, NoticeRow};
use dinh_events::visibility::Viewer;

/// At most this many upcoming meetings and feedback items on a board.
const MAX_ROWS: usize = 50;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/board", get(board))
}

/// The agenda item in progress: started more times than it ended.
pub fn current_item(m: &MinutesRow) -> Option<usize> {
    m.agenda
        .iter()
        .position(|a| a.started.len() > a.ended.len())
}

#[derive(Debug, Serialize)]
struct AgendaLine {
    title: String,
    /// `waiting`, `current` or `done`.
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct MeetingView {
    id: String,
    title: String,
    status: String,
    starts_at: String,
    opened_at: Option<String>,
    closed_at: Option<String>,
    agenda: Vec<AgendaLine>,
    current_item: Option<usize>,
}

fn meeting_view(m: &MinutesRow) -> MeetingView {
    let current = current_item(m);
    MeetingView {
        id: m.meeting.clone(),
        title: m.title.clone(),
        status: m.status.clone(),
        starts_at: m.starts_at.clone(),
        opened_at: m.opened_at.clone(),
        closed_at: m.closed_at.clone(),
        agenda: m
            .agenda
            .iter()
            .enumerate()
            .map(|(i, a)| AgendaLine {
                title: a.title.clone(),
                state: if Some(i) == current {
                    "current"
                } else if !a.ended.is_empty() {
                    "done"
                } else {
                    "waiting"
                },
            })
            .collect(),
        current_item: current,
    }
}

#[derive(Debug, Serialize)]
struct ItemView {
    id: String,
    meeting: String,
    meeting_title: String,
    agenda_item: Option<String>,
    content: String,
    status: String,
    overdue: bool,
    deadline: Option<String>,
    answer: Option<String>,
    raised_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct Board {
    room: String,
    house: Option<serde_json::Value>,
    open: Option<MeetingView>,
    upcoming: Vec<MeetingView>,
    notices: Vec<NoticeRow>,
    feedback: Vec<ItemView>,
    /// The log position the board was read at: a screen ignores events up to it.
    position: u64,
}

async fn board(State(s): State<AppState>, Caller(c): Caller) -> Result<Response, AppError> {
    c.require(
        &[Role::House, Role::Chair, Role::Official],
        "read the board",
    )?;
    let today = crate::notices::today();
    let views = s.recording.views.read().await;
    let in_room = |m: &&MinutesRow| m.room == c.room;
    let open = views
        .minutes
        .rows()
        .filter(in_room)
        .filter(|m| m.status == "open")
        .max_by(|a, b| a.opened_at.cmp(&b.opened_at))
        .map(meeting_view);
    let mut upcoming: Vec<&MinutesRow> = views
        .minutes
        .rows()
        .filter(in_room)
        .filter(|m| m.status == "scheduled")
        .collect();
    upcoming.sort_by(|a, b| a.starts_at.cmp(&b.starts_at));
    let mut notices: Vec<NoticeRow> = views
        .notices
        .rows()
        .filter(|n| n.room == c.room && n.shown_on(today))
        .cloned()
        .collect();
    notices.sort_by(|a, b| b.posted_at.cmp(&a.posted_at));
    let mut feedback: Vec<ItemView> = if c.role == Role::House {
        // Its own house's items of its room: the one rule of the record's visibility.
        Viewer::house(&c.room, &c.sub)
            .feedback(&views)
            .filter_map(|f| {
                let m = views.minutes.get(&f.meeting)?;
                Some(ItemView {
                    id: f.id.clone(),
                    meeting: f.meeting.clone(),
                    meeting_title: m.title.clone(),
                    agenda_item: f
                        .agenda_item
                        .and_then(|i| m.agenda.get(i))
                        .map(|a| a.title.clone()),
                    content: f.content.clone(),
                    status: f.status.clone(),
                    overdue: f.overdue,
                    deadline: f.deadline.map(|d| d.to_string()),
                    answer: f.answer.clone(),
                    raised_at: f.raised_at.clone(),
                    updated_at: f.updated_at.clone(),
                })
            })
            .collect()
    } else {
        vec![]
    };
    // Newest change first: an answer that just came is at the top.
    feedback.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    feedback.truncate(MAX_ROWS);
    let house = (c.role == Role::House).then(|| {
        let name = s
            .commune
            .room(&c.room)
            .and_then(|r| r.houses.iter().find(|h| h.id == c.sub))
            .map_or_else(|| c.name.clone(), |h| h.name.clone());
        serde_json::json!({ "id": c.sub, "name": name })
    });
    Ok(Json(Board {
        room: c.room.clone(),
        house,
        open,
        upcoming: upcoming
            .into_iter()
            .take(MAX_ROWS)
            .map(meeting_view)
            .collect(),
        notices,
        feedback,
        position: views.position(),
    })
    .into_response())
}
