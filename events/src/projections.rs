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
use crate::domain::loudspeakers::LoudspeakerEvent;
use crate::domain::meeting::{MeetingEvent, RevokeReason};
use crate::domain::notices::{NoticeEvent, Picture};
use crate::domain::ClusterStatus;
use crate::store::{RawEvent, Store, StoreError};

/// A decoded event with the facts the log adds.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Position in the log, from 1.
    pub position: u64,
    pub aggregate_id: String,
    /// When the command was received.
    pub at: OffsetDateTime,
    /// [`Recorded::at`] as the rows show it: RFC 3339, UTC (the log's own text when it is
    /// already in that form, which every event the hub wrote is).
    pub stamp: String,
    pub event: Event,
}

/// An event of any aggregate.
#[derive(Debug, Clone)]
pub enum Event {
    /// A meeting event.
    Meeting(MeetingEvent),
    /// A feedback event.
    Feedback(FeedbackEvent),
    /// A room's loudspeakers (the aggregate id is the room).
    Loudspeakers(LoudspeakerEvent),
    /// A notice event.
    Notice(NoticeEvent),
}

/// Whether the projections fold events of this aggregate type (others are skipped quietly).
fn projected_type(aggregate_type: &str) -> bool {
    matches!(
        aggregate_type,
        "meeting" | "feedback" | "notice" | "loudspeakers"
    )
}

/// Decode a stored event; `None` for a type this version does not know (skipped, not fatal).
pub fn decode(ev: &StoredEvent) -> Option<Recorded> {
    decode_owned(ev.clone())
}

/// [`decode`], taking the event (its payload is moved into the typed event, not copied).
pub fn decode_owned(ev: StoredEvent) -> Option<Recorded> {
    let event = match ev.aggregate_type.as_str() {
        "meeting" => Event::Meeting(serde_json::from_value(ev.payload).ok()?),
        "feedback" => Event::Feedback(serde_json::from_value(ev.payload).ok()?),
        "notice" => Event::Notice(serde_json::from_value(ev.payload).ok()?),
        "loudspeakers" => Event::Loudspeakers(serde_json::from_value(ev.payload).ok()?),
        _ => return None,
    };
    recorded(ev.position, ev.aggregate_id, ev.recorded_at, event)
}

/// [`decode`] of an event read with [`Store::read_raw`]: the payload parsed once, from its
/// text straight into the typed event.
pub fn decode_raw(ev: RawEvent) -> Option<Recorded> {
    let event = match ev.aggregate_type.as_str() {
        "meeting" => Event::Meeting(serde_json::from_str(&ev.payload).ok()?),
        "feedback" => Event::Feedback(serde_json::from_str(&ev.payload).ok()?),
        "notice" => Event::Notice(serde_json::from_str(&ev.payload).ok()?),
        "loudspeakers" => Event::Loudspeakers(serde_json::from_str(&ev.payload).ok()?),
        _ => return None,
    };
    recorded(ev.position, ev.aggregate_id, ev.recorded_at, event)
}

fn recorded(position: u64, aggregate_id: String, at: String, event: Event) -> Option<Recorded> {
    let parsed = OffsetDateTime::parse(&at, &Rfc3339).ok()?;
    let stamp = if at.ends_with('Z') {
        at
    } else {
        crate::record::format_time(parsed)
    };
    Some(Recorded {
        position,
        aggregate_id,
        at: parsed,
        stamp,
        event,
    })
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
    /// The row of `key`, made when missing; marked changed. Allocates the key only the
    /// first time (a rebuild touches the same few rows a million times).
    fn entry(&mut self, key: &str) -> &mut R {
        self.touch(key);
        if !self.rows.contains_key(key) {
            self.rows.insert(key.to_owned(), R::default());
        }
        self.rows.get_mut(key).expect("inserted above")
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut R> {
        if !self.rows.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.rows.get_mut(key)
    }

    fn touch(&mut self, key: &str) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
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
    pub meeting: String,
    pub house: String,
    /// When it first connected (RFC 3339, UTC).
    pub first_joined: Option<String>,
    /// When it last disconnected (RFC 3339, UTC).
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
    pub id: String,
    /// Meeting it was raised in.
    pub meeting: String,
    /// The agenda item it concerns (from 0), if any.
    pub agenda_item: Option<usize>,
    /// House that raised it.
    pub house: String,
    pub content: String,
    /// Kind, once classified.
    pub kind: Option<FeedbackKind>,
    /// Its status as in the API: `received`, `classified`, `assigned`, `answered`, `confirmed`, `forwarded`, `closed`, `withdrawn`.
    pub status: String,
    /// Assigned official.
    pub assignee: Option<String>,
    /// Last day to answer.
    pub deadline: Option<Date>,
    /// Past the deadline unanswered.
    pub overdue: bool,
    /// Where it was forwarded.
    pub forwarded_to: Option<String>,
    /// The answer given to the house, once answered.
    pub answer: Option<String>,
    /// Times reopened.
    pub reopened: u32,
    /// When it was raised (RFC 3339, UTC).
    pub raised_at: String,
    /// When it last changed (RFC 3339, UTC).
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
    pub title: String,
    /// Times it started (an item can be taken up again).
    pub started: Vec<String>,
    /// Times it ended.
    pub ended: Vec<String>,
}

/// One turn at the floor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloorTurn {
    pub house: String,
    /// RFC 3339, UTC.
    pub granted_at: String,
    /// When it ended (RFC 3339, UTC); `None` while the house holds the floor.
    pub revoked_at: Option<String>,
    /// Why it ended.
    pub reason: Option<RevokeReason>,
}

/// The minutes of one meeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinutesRow {
    pub meeting: String,
    pub room: String,
    pub title: String,
    /// `scheduled`, `open`, `closed`.
    pub status: String,
    /// When it is due to start (RFC 3339, UTC).
    pub starts_at: String,
    /// RFC 3339, UTC.
    pub opened_at: Option<String>,
    /// RFC 3339, UTC.
    pub closed_at: Option<String>,
    pub agenda: Vec<AgendaRow>,
    /// Who had the floor, in order.
    pub floor: Vec<FloorTurn>,
    /// Feedback items raised in it.
    pub feedback: Vec<String>,
    /// Relay (start, stop) times.
    pub relay: Vec<(String, Option<String>)>,
    /// Latest status of each loudspeaker cluster.
    pub clusters: BTreeMap<String, ClusterStatus>,
}

/// A relay interval opens unless one is open.
fn relay_started(row: &mut MinutesRow, at: String) {
    if row.relay.last().is_none_or(|(_, stop)| stop.is_some()) {
        row.relay.push((at, None));
    }
}

/// The open relay interval, if any, closes.
fn relay_stopped(row: &mut MinutesRow, at: String) {
    if let Some(r) = row.relay.last_mut().filter(|r| r.1.is_none()) {
        r.1 = Some(at);
    }
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
    /// The body shown under the title (at most 5,000 characters).
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
        let at = || r.stamp.clone();
        let key = |h: &str| format!("{m}/{h}");
        match e {
            MeetingEvent::HouseConnected { house, .. } => {
                let row = self.attendance.entry(&key(house));
                row.meeting.clone_from(m);
                row.house.clone_from(house);
                row.first_joined.get_or_insert_with(at);
                row.joins += 1;
                if row.connected_since.is_none() {
                    row.connected_since = Some(at());
                }
            }
            MeetingEvent::HouseDisconnected { house, .. } => {
                if let Some(row) = self.attendance.get_mut(&key(house)) {
                    if let Some(since) = row.connected_since.take() {
                        row.seconds_connected += secs_between(&since, r.at);
                    }
                    row.last_left = Some(at());
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
                row.speaking_since = Some(at());
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
        let at = &r.stamp;
        let row = self.feedback.entry(&r.aggregate_id);
        row.id.clone_from(&r.aggregate_id);
        row.updated_at.clone_from(at);
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
                row.raised_at.clone_from(at);
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
        let at = || r.stamp.clone();
        match &r.event {
            Event::Feedback(FeedbackEvent::FeedbackReceived { meeting, .. }) => {
                if let Some(row) = self.minutes.get_mut(meeting) {
                    row.feedback.push(r.aggregate_id.clone());
                }
            }
            Event::Feedback(_) | Event::Notice(_) => {}
            // The relay and the clusters are the room's facts; the minutes show them while a
            // meeting is open in the room.
            Event::Loudspeakers(e) => {
                let open = self
                    .minutes
                    .rows()
                    .filter(|m| m.room == r.aggregate_id && m.status == "open")
                    .max_by(|a, b| a.opened_at.cmp(&b.opened_at))
                    .map(|m| m.meeting.clone());
                let Some(row) = open.and_then(|m| self.minutes.get_mut(&m)) else {
                    return;
                };
                match e {
                    LoudspeakerEvent::RelaySwitched { on: true } => relay_started(row, at()),
                    LoudspeakerEvent::RelaySwitched { on: false } => relay_stopped(row, at()),
                    LoudspeakerEvent::ClusterStatusReported {
                        cluster, status, ..
                    } => {
                        row.clusters.insert(cluster.clone(), *status);
                    }
                    _ => {}
                }
            }
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
                        row.starts_at = crate::record::format_time(*starts_at);
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
                        row.opened_at = Some(at());
                    }
                    MeetingEvent::MeetingClosed => {
                        relay_stopped(row, at());
                        row.status = "closed".into();
                        row.closed_at = Some(at());
                    }
                    MeetingEvent::AgendaItemStarted { index } => {
                        if let Some(a) = row.agenda.get_mut(*index) {
                            a.started.push(at());
                        }
                    }
                    MeetingEvent::AgendaItemEnded { index } => {
                        if let Some(a) = row.agenda.get_mut(*index) {
                            a.ended.push(at());
                        }
                    }
                    MeetingEvent::FloorGranted { house } => row.floor.push(FloorTurn {
                        house: house.clone(),
                        granted_at: at(),
                        ..Default::default()
                    }),
                    MeetingEvent::FloorRevoked { reason, .. } => {
                        if let Some(t) = row.floor.last_mut() {
                            t.revoked_at = Some(at());
                            t.reason = Some(*reason);
                        }
                    }
                    // Logs from before the relay was the loudspeakers' fact have these and the
                    // bridge's RelaySwitched both: each interval is counted once.
                    MeetingEvent::RelayStarted => relay_started(row, at()),
                    MeetingEvent::RelayStopped => relay_stopped(row, at()),
                    MeetingEvent::ClusterStatusChanged { cluster, status } => {
                        row.clusters.insert(cluster.clone(), *status);
                    }
                    _ => {}
                }
            }
        }
    }

    fn apply_notices(&mut self, r: &Recorded) {
        let Event::Notice(e) = &r.event else { return };
        let at = || r.stamp.clone();
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
                row.posted_at = at();
            }
            NoticeEvent::NoticeWithdrawn { .. } => {
                row.status = "withdrawn".into();
                row.withdrawn_at = Some(at());
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
            let batch = store.read_raw(self.position(), 2000).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(n);
            };
            n += batch.len() as u64;
            for ev in batch {
                let (position, known) = (ev.position, projected_type(&ev.aggregate_type));
                match decode_raw(ev) {
                    Some(r) => self.apply(&r),
                    None if known => {
                        tracing::warn!(position, "record event of unknown shape skipped");
                    }
                    None => {}
                }
            }
            self.skip(last);
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

    /// Fold the whole log from position 0 and replace the stored rows. A task reads and
    /// decodes the next batch while this one is applied (two cores: about half the time).
    pub async fn rebuild(store: &Store) -> Result<Self, StoreError> {
        type Batch = Result<(u64, Vec<Recorded>), StoreError>;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
        let reader = store.clone();
        let reading = tokio::spawn(async move {
            let mut after = 0;
            loop {
                let batch = match reader.read_raw(after, 10_000).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(last) = batch.last().map(|e| e.position) else {
                    return;
                };
                after = last;
                let decoded = batch.into_iter().filter_map(decode_raw).collect();
                if tx.send(Ok((last, decoded))).await.is_err() {
                    return;
                }
            }
        });
        let mut v = Views::default();
        while let Some(batch) = rx.recv().await {
            let (last, decoded) = batch?;
            for r in &decoded {
                v.apply(r);
            }
            v.skip(last);
        }
        let _ = reading.await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(events: Vec<(&str, Event)>) -> MinutesRow {
        let mut v = Views::default();
        let t0 = time::macros::datetime!(2026-11-23 09:00 +07);
        for (i, (id, event)) in events.into_iter().enumerate() {
            let at = t0 + time::Duration::minutes(i as i64);
            v.apply(&Recorded {
                position: i as u64 + 1,
                aggregate_id: id.into(),
                at,
                stamp: crate::record::format_time(at),
                event,
            });
        }
        v.minutes.get("m1").cloned().unwrap()
    }

    fn opened() -> Vec<(&'static str, Event)> {
        vec![
            (
                "m1",
                Event::Meeting(MeetingEvent::MeetingScheduled {
                    room: "demo".into(),
                    title: "Họp".into(),
                    starts_at: time::macros::datetime!(2026-11-23 09:00 +07),
                    agenda: vec![],
                }),
            ),
            ("m1", Event::Meeting(MeetingEvent::MeetingOpened)),
        ]
    }

    fn relay(on: bool) -> (&'static str, Event) {
        (
            "demo",
            Event::Loudspeakers(LoudspeakerEvent::RelaySwitched { on }),
        )
    }

    #[test]
    fn the_minutes_show_the_rooms_relay_and_cluster_status_while_the_meeting_is_open() {
        let mut events = opened();
        events.push(relay(true));
        events.push((
            "demo",
            Event::Loudspeakers(LoudspeakerEvent::ClusterStatusReported {
                cluster: "thon-1".into(),
                status: ClusterStatus::Down,
                reason: "unreachable".into(),
            }),
        ));
        // Another room's relay is not this meeting's.
        events.push((
            "xom-2",
            Event::Loudspeakers(LoudspeakerEvent::RelaySwitched { on: false }),
        ));
        events.push(("m1", Event::Meeting(MeetingEvent::MeetingClosed)));
        // After the meeting closed, the room's relay is no longer its business.
        events.push(relay(false));
        events.push(relay(true));
        let m = fold(events);
        assert_eq!(
            m.relay,
            [(
                "2026-11-23T02:02:00Z".to_owned(),
                Some("2026-11-23T02:05:00Z".to_owned())
            )]
        );
        assert_eq!(m.clusters["thon-1"], ClusterStatus::Down);
    }

    #[test]
    fn an_old_log_with_the_meetings_relay_and_the_bridges_echo_counts_each_interval_once() {
        let mut events = opened();
        events.push(("m1", Event::Meeting(MeetingEvent::RelayStarted)));
        events.push(relay(true));
        events.push(("m1", Event::Meeting(MeetingEvent::RelayStopped)));
        events.push(relay(false));
        let m = fold(events);
        assert_eq!(
            m.relay,
            [(
                "2026-11-23T02:02:00Z".to_owned(),
                Some("2026-11-23T02:04:00Z".to_owned())
            )]
        );
    }
}
