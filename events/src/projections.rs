//! Read models built from the log: attendance per meeting and house, the feedback register,
//! the minutes of each meeting, and the notices of the village bulletin boards.
//!
//! Each projection folds events in position order into rows held in memory, and writes the
//! rows that changed together with its position in one transaction (`projection_rows`,
//! `projection_positions`), so after a crash it resumes exactly where its rows are. A rebuild
//! folds the whole log from position 0 and replaces the rows in one transaction.
//! Queries read the in-memory rows, which are never ahead of what is stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::chain::StoredEvent;
use crate::domain::feedback::{FeedbackEvent, FeedbackKind, Status};
use crate::domain::meeting::{MeetingEvent, RevokeReason};
use crate::domain::notices::{NoticeEvent, Picture};
use crate::store::{Store, StoreError};

/// A decoded event with the facts the log adds.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Global position.
    pub position: u64,
    /// Meeting or feedback id.
    pub aggregate_id: String,
    /// When.
    pub at: OffsetDateTime,
    /// The event.
    pub event: Event,
}

/// Either aggregate's event.
#[derive(Debug, Clone)]
pub enum Event {
    /// A meeting event.
    Meeting(MeetingEvent),
    /// A feedback event.
    Feedback(FeedbackEvent),
    /// A notice event.
    Notice(NoticeEvent),
}

/// Decode a stored event; `None` for a type this version does not know (skipped, not fatal).
pub fn decode(ev: &StoredEvent) -> Option<Recorded> {
    let event = match ev.aggregate_type.as_str() {
        "meeting" => Event::Meeting(serde_json::from_value(ev.payload.clone()).ok()?),
        "feedback" => Event::Feedback(serde_json::from_value(ev.payload.clone()).ok()?),
        "notice" => Event::Notice(serde_json::from_value(ev.payload.clone()).ok()?),
        _ => return None,
    };
    Some(Recorded {
        position: ev.position,
        aggregate_id: ev.aggregate_id.clone(),
        at: OffsetDateTime::parse(&ev.recorded_at, &Rfc3339).ok()?,
        event,
    })
}

fn ts(t: OffsetDateTime) -> String {
    crate::record::format_time(t)
}

fn secs_between(from: &str, to: OffsetDateTime) -> i64 {
    OffsetDateTime::parse(from, &Rfc3339)
        .map(|f| (to - f).whole_seconds().max(0))
        .unwrap_or(0)
}

/// Rows keyed by string, with the keys changed since the last save.
#[derive(Debug, Clone, Default)]
pub struct Table<R> {
    rows: BTreeMap<String, R>,
    dirty: BTreeSet<String>,
}

impl<R: Default> Table<R> {
    fn entry(&mut self, key: &str) -> &mut R {
        self.dirty.insert(key.to_owned());
        self.rows.entry(key.to_owned()).or_default()
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut R> {
        let r = self.rows.get_mut(key)?;
        self.dirty.insert(key.to_owned());
        Some(r)
    }

    /// Every row.
    pub fn rows(&self) -> impl Iterator<Item = &R> {
        self.rows.values()
    }

    /// One row.
    pub fn get(&self, key: &str) -> Option<&R> {
        self.rows.get(key)
    }
}

/// Attendance of one house at one meeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttendanceRow {
    /// Meeting id.
    pub meeting: String,
    /// House id.
    pub house: String,
    /// First connection.
    pub first_joined: Option<String>,
    /// Last disconnection.
    pub last_left: Option<String>,
    /// Connected now, since when.
    pub connected_since: Option<String>,
    /// Seconds connected in all (a reconnection adds only the new time).
    pub seconds_connected: i64,
    /// How many times the house connected.
    pub joins: u32,
    /// Latest headcount reported.
    pub headcount: Option<u32>,
    /// Names checked in.
    pub checked_in: Vec<String>,
    /// Seconds holding the floor.
    pub seconds_speaking: i64,
    /// Holding the floor now, since when.
    pub speaking_since: Option<String>,
}

/// One feedback item in the register.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    /// Item id.
    pub id: String,
    /// Meeting it was raised in.
    pub meeting: String,
    /// Agenda item.
    pub agenda_item: Option<usize>,
    /// House that raised it.
    pub house: String,
    /// What was said.
    pub content: String,
    /// Kind, once classified.
    pub kind: Option<FeedbackKind>,
    /// Status.
    pub status: String,
    /// Assigned official.
    pub assignee: Option<String>,
    /// Last day to answer.
    pub deadline: Option<Date>,
    /// Past the deadline unanswered.
    pub overdue: bool,
    /// Where it was forwarded.
    pub forwarded_to: Option<String>,
    /// The answer.
    pub answer: Option<String>,
    /// Times reopened.
    pub reopened: u32,
    /// Raised at.
    pub raised_at: String,
    /// Last change.
    pub updated_at: String,
    /// Position of the last change.
    pub position: u64,
}

impl FeedbackRow {
    /// Whether it still needs work.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "received" | "classified" | "assigned")
    }
}

/// One agenda item in the minutes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgendaRow {
    /// Title.
    pub title: String,
    /// Times it started (an item can be taken up again).
    pub started: Vec<String>,
    /// Times it ended.
    pub ended: Vec<String>,
}

/// One turn at the floor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloorTurn {
    /// House.
    pub house: String,
    /// Granted at.
    pub granted_at: String,
    /// Revoked at.
    pub revoked_at: Option<String>,
    /// Why it ended.
    pub reason: Option<RevokeReason>,
}

/// The minutes of one meeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinutesRow {
    /// Meeting id.
    pub meeting: String,
    /// Room.
    pub room: String,
    /// Title.
    pub title: String,
    /// `scheduled`, `open`, `closed`.
    pub status: String,
    /// Due start.
    pub starts_at: String,
    /// Opened at.
    pub opened_at: Option<String>,
    /// Closed at.
    pub closed_at: Option<String>,
    /// Agenda.
    pub agenda: Vec<AgendaRow>,
    /// Who had the floor, in order.
    pub floor: Vec<FloorTurn>,
    /// Feedback items raised in it.
    pub feedback: Vec<String>,
    /// Relay (start, stop) times.
    pub relay: Vec<(String, Option<String>)>,
    /// Latest status of each loudspeaker cluster.
    pub clusters: BTreeMap<String, String>,
}

/// A notice on the room's bulletin boards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoticeRow {
    /// Notice id.
    pub id: String,
    /// The room whose boards show it.
    pub room: String,
    /// One line.
    pub title: String,
    /// The text.
    pub text: String,
    /// The attached picture, stored by the hub under its name.
    pub picture: Option<Picture>,
    /// First day shown.
    pub valid_from: Option<Date>,
    /// Last day shown (included).
    pub valid_until: Option<Date>,
    /// `posted` or `withdrawn`.
    pub status: String,
    /// When it was posted (RFC 3339).
    pub posted_at: String,
    /// When it was withdrawn.
    pub withdrawn_at: Option<String>,
    /// Position of the last change.
    pub position: u64,
}

impl NoticeRow {
    /// Whether a board shows it on `day` (a day in Vietnam): posted, not withdrawn, and
    /// `day` within its validity.
    pub fn shown_on(&self, day: Date) -> bool {
        self.status == "posted"
            && self.valid_from.is_some_and(|f| f <= day)
            && self.valid_until.is_some_and(|u| day <= u)
    }
}

/// The projections.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// Attendance, keyed `meeting/house`.
    pub attendance: Table<AttendanceRow>,
    /// Feedback register, keyed by item id.
    pub feedback: Table<FeedbackRow>,
    /// Minutes, keyed by meeting id.
    pub minutes: Table<MinutesRow>,
    /// Notices of the bulletin boards, keyed by notice id.
    pub notices: Table<NoticeRow>,
    /// Position applied per projection.
    positions: [u64; 4],
}

const NAMES: [&str; 4] = ["attendance", "feedback", "minutes", "notices"];

impl Views {
    /// The lowest position every projection has reached.
    pub fn position(&self) -> u64 {
        self.positions.iter().copied().min().unwrap_or(0)
    }

    /// Fold one event into every projection that has not seen it.
    pub fn apply(&mut self, r: &Recorded) {
        if r.position > self.positions[0] {
            self.apply_attendance(r);
            self.positions[0] = r.position;
        }
        if r.position > self.positions[1] {
            self.apply_feedback(r);
            self.positions[1] = r.position;
        }
        if r.position > self.positions[2] {
            self.apply_minutes(r);
            self.positions[2] = r.position;
        }
        if r.position > self.positions[3] {
            self.apply_notices(r);
            self.positions[3] = r.position;
        }
    }

    /// Skip a position that does not decode, so the projections still advance past it.
    pub fn skip(&mut self, position: u64) {
        for p in &mut self.positions {
            *p = (*p).max(position);
        }
    }

    fn apply_attendance(&mut self, r: &Recorded) {
        let Event::Meeting(e) = &r.event else { return };
        let m = &r.aggregate_id;
        let at = ts(r.at);
        let key = |h: &str| format!("{m}/{h}");
        match e {
            MeetingEvent::HouseConnected { house, .. } => {
                let row = self.attendance.entry(&key(house));
                row.meeting.clone_from(m);
                row.house.clone_from(house);
                row.first_joined.get_or_insert_with(|| at.clone());
                row.joins += 1;
                if row.connected_since.is_none() {
                    row.connected_since = Some(at);
                }
            }
            MeetingEvent::HouseDisconnected { house, .. } => {
                if let Some(row) = self.attendance.get_mut(&key(house)) {
                    if let Some(since) = row.connected_since.take() {
                        row.seconds_connected += secs_between(&since, r.at);
                    }
                    row.last_left = Some(at);
                }
            }
            MeetingEvent::HeadcountReported { house, count } => {
                let row = self.attendance.entry(&key(house));
                row.meeting.clone_from(m);
                row.house.clone_from(house);
                row.headcount = Some(*count);
            }
            MeetingEvent::AttendeeCheckedIn { house, name } => {
                let row = self.attendance.entry(&key(house));
                row.meeting.clone_from(m);
                row.house.clone_from(house);
                if !row.checked_in.contains(name) {
                    row.checked_in.push(name.clone());
                }
            }
            MeetingEvent::FloorGranted { house } => {
                let row = self.attendance.entry(&key(house));
                row.meeting.clone_from(m);
                row.house.clone_from(house);
                row.speaking_since = Some(at);
            }
            MeetingEvent::FloorRevoked { house, .. } => {
                if let Some(row) = self.attendance.get_mut(&key(house)) {
                    if let Some(since) = row.speaking_since.take() {
                        row.seconds_speaking += secs_between(&since, r.at);
                    }
                }
            }
            _ => {}
        }
    }

    fn apply_feedback(&mut self, r: &Recorded) {
        let Event::Feedback(e) = &r.event else { return };
        let at = ts(r.at);
        let row = self.feedback.entry(&r.aggregate_id);
        row.id.clone_from(&r.aggregate_id);
        row.updated_at.clone_from(&at);
        row.position = r.position;
        match e {
            FeedbackEvent::FeedbackReceived {
                meeting,
                agenda_item,
                house,
                content,
            } => {
                row.meeting.clone_from(meeting);
                row.agenda_item = *agenda_item;
                row.house.clone_from(house);
                row.content.clone_from(content);
                row.raised_at = at;
                row.status = Status::Received.as_str().into();
            }
            FeedbackEvent::FeedbackClassified { kind } => {
                row.kind = Some(*kind);
                row.status = Status::Classified.as_str().into();
            }
            FeedbackEvent::FeedbackAssigned {
                official, deadline, ..
            } => {
                row.assignee = Some(official.clone());
                row.deadline = Some(*deadline);
                row.overdue = false;
                row.status = Status::Assigned.as_str().into();
            }
            FeedbackEvent::DeadlineExtended { deadline, .. } => {
                row.deadline = Some(*deadline);
                row.overdue = false;
            }
            FeedbackEvent::FeedbackForwarded { to } => {
                row.forwarded_to = Some(to.clone());
                row.status = Status::Forwarded.as_str().into();
            }
            FeedbackEvent::FeedbackAnswered { answer } => {
                row.answer = Some(answer.clone());
                row.status = Status::Answered.as_str().into();
            }
            FeedbackEvent::AnswerConfirmed => row.status = Status::Confirmed.as_str().into(),
            FeedbackEvent::FeedbackReopened { deadline, .. } => {
                row.reopened += 1;
                row.deadline = Some(*deadline);
                row.overdue = false;
                row.status = Status::Assigned.as_str().into();
            }
            FeedbackEvent::FeedbackClosed => row.status = Status::Closed.as_str().into(),
            FeedbackEvent::FeedbackWithdrawn { .. } => {
                row.status = Status::Withdrawn.as_str().into()
            }
            FeedbackEvent::FeedbackOverdue { .. } => row.overdue = true,
        }
    }

    fn apply_minutes(&mut self, r: &Recorded) {
        let at = ts(r.at);
        match &r.event {
            Event::Feedback(FeedbackEvent::FeedbackReceived { meeting, .. }) => {
                if let Some(row) = self.minutes.get_mut(meeting) {
                    row.feedback.push(r.aggregate_id.clone());
                }
            }
            Event::Feedback(_) | Event::Notice(_) => {}
            Event::Meeting(e) => {
                let row = self.minutes.entry(&r.aggregate_id);
                row.meeting.clone_from(&r.aggregate_id);
                match e {
                    MeetingEvent::MeetingScheduled {
                        room,
                        title,
                        starts_at,
                        agenda,
                    } => {
                        row.room.clone_from(room);
                        row.title.clone_from(title);
                        row.starts_at = ts(*starts_at);
                        row.status = "scheduled".into();
                        row.agenda = agenda
                            .iter()
                            .map(|t| AgendaRow {
                                title: t.clone(),
                                ..Default::default()
                            })
                            .collect();
                    }
                    MeetingEvent::MeetingOpened => {
                        row.status = "open".into();
                        row.opened_at = Some(at);
                    }
                    MeetingEvent::MeetingClosed => {
                        row.status = "closed".into();
                        row.closed_at = Some(at);
                    }
                    MeetingEvent::AgendaItemStarted { index } => {
                        if let Some(a) = row.agenda.get_mut(*index) {
                            a.started.push(at);
                        }
                    }
                    MeetingEvent::AgendaItemEnded { index } => {
                        if let Some(a) = row.agenda.get_mut(*index) {
                            a.ended.push(at);
                        }
                    }
                    MeetingEvent::FloorGranted { house } => row.floor.push(FloorTurn {
                        house: house.clone(),
                        granted_at: at,
                        ..Default::default()
                    }),
                    MeetingEvent::FloorRevoked { reason, .. } => {
                        if let Some(t) = row.floor.last_mut() {
                            t.revoked_at = Some(at);
                            t.reason = Some(*reason);
                        }
                    }
                    MeetingEvent::RelayStarted => row.relay.push((at, None)),
                    MeetingEvent::RelayStopped => {
                        if let Some(r) = row.relay.last_mut() {
                            r.1 = Some(at);
                        }
                    }
                    MeetingEvent::ClusterStatusChanged { cluster, status } => {
                        row.clusters.insert(cluster.clone(), status.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    fn apply_notices(&mut self, r: &Recorded) {
        let Event::Notice(e) = &r.event else { return };
        let at = ts(r.at);
        let row = self.notices.entry(&r.aggregate_id);
        row.id.clone_from(&r.aggregate_id);
        row.position = r.position;
        match e {
            NoticeEvent::NoticePosted {
                room,
                title,
                text,
                picture,
                valid_from,
                valid_until,
            } => {
                row.room.clone_from(room);
                row.title.clone_from(title);
                row.text.clone_from(text);
                row.picture.clone_from(picture);
                row.valid_from = Some(*valid_from);
                row.valid_until = Some(*valid_until);
                row.status = "posted".into();
                row.posted_at = at;
            }
            NoticeEvent::NoticeWithdrawn { .. } => {
                row.status = "withdrawn".into();
                row.withdrawn_at = Some(at);
            }
        }
    }

    /// Load the stored rows and positions.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let mut v = Views::default();
        v.positions[0] = load_table(store, NAMES[0], &mut v.attendance).await?;
        v.positions[1] = load_table(store, NAMES[1], &mut v.feedback).await?;
        v.positions[2] = load_table(store, NAMES[2], &mut v.minutes).await?;
        v.positions[3] = load_table(store, NAMES[3], &mut v.notices).await?;
        Ok(v)
    }

    /// Apply every event after [`Views::position`], saving each batch. Returns events applied.
    pub async fn catch_up(&mut self, store: &Store) -> Result<u64, StoreError> {
        let mut n = 0;
        loop {
            let batch = store.read(self.position(), 2000).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(n);
            };
            for ev in &batch {
                match decode(ev) {
                    Some(r) => self.apply(&r),
                    None => {
                        tracing::warn!(
                            position = ev.position,
                            "record event of unknown shape skipped"
                        );
                        self.skip(ev.position);
                    }
                }
            }
            self.skip(last);
            n += batch.len() as u64;
            self.save(store, false).await?;
        }
    }

    /// Write dirty rows and positions; `reset` replaces all rows (after a rebuild).
    pub async fn save(&mut self, store: &Store, reset: bool) -> Result<(), StoreError> {
        save_table(
            store,
            NAMES[0],
            self.positions[0],
            &mut self.attendance,
            reset,
        )
        .await?;
        save_table(
            store,
            NAMES[1],
            self.positions[1],
            &mut self.feedback,
            reset,
        )
        .await?;
        save_table(store, NAMES[2], self.positions[2], &mut self.minutes, reset).await?;
        save_table(store, NAMES[3], self.positions[3], &mut self.notices, reset).await?;
        Ok(())
    }

    /// Fold the whole log from position 0 and replace the stored rows.
    pub async fn rebuild(store: &Store) -> Result<Self, StoreError> {
        let mut v = Views::default();
        let mut after = 0;
        loop {
            let batch = store.read(after, 10_000).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                break;
            };
            for ev in &batch {
                if let Some(r) = decode(ev) {
                    v.apply(&r);
                }
            }
            v.skip(last);
            after = last;
        }
        v.save(store, true).await?;
        Ok(v)
    }
}

async fn load_table<R: DeserializeOwned + Default>(
    store: &Store,
    name: &str,
    table: &mut Table<R>,
) -> Result<u64, StoreError> {
    let stored = store.load_projection(name).await?;
    for (k, v) in stored.rows {
        if let Ok(r) = serde_json::from_value(v) {
            table.rows.insert(k, r);
        }
    }
    Ok(stored.position)
}

async fn save_table<R: Serialize>(
    store: &Store,
    name: &str,
    position: u64,
    table: &mut Table<R>,
    reset: bool,
) -> Result<(), StoreError> {
    let keys: Vec<String> = if reset {
        table.rows.keys().cloned().collect()
    } else {
        std::mem::take(&mut table.dirty).into_iter().collect()
    };
    let rows: Vec<(String, serde_json::Value)> = keys
        .into_iter()
        .filter_map(|k| {
            let v = serde_json::to_value(table.rows.get(&k)?).ok()?;
            Some((k, v))
        })
        .collect();
    store.save_projection(name, position, &rows, reset).await?;
    table.dirty.clear();
    Ok(())
}
