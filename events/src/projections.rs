//! Read models built from the log: attendance per meeting and house, the feedback register,
//! and the minutes of each meeting.
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

/// An event of any aggregate.
#[derive(Debug, Clone)]
pub enum Event {
    /// A meeting event.
    Meeting(MeetingEvent),
    /// A feedback event.
    Feedback(FeedbackEvent),
    /// A room's loudspeakers (the aggregate id is the room).
    Loudspeakers(LoudspeakerEvent),
}

/// Decode a stored event; `None` for a type this version does not know (skipped, not fatal).
pub fn decode(ev: &StoredEvent) -> Option<Recorded> {
    let event = match ev.aggregate_type.as_str() {
        "meeting" => Event::Meeting(serde_json::from_value(ev.payload.clone()).ok()?),
        "feedback" => Event::Feedback(serde_json::from_value(ev.payload.clone()).ok()?),
        "loudspeakers" => Event::Loudspeakers(serde_json::from_value(ev.payload.clone()).ok()?),
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

/// The three projections.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// Attendance, keyed `meeting/house`.
    pub attendance: Table<AttendanceRow>,
    /// Feedback register, keyed by item id.
    pub feedback: Table<FeedbackRow>,
    /// Minutes, keyed by meeting id.
    pub minutes: Table<MinutesRow>,
    /// Position applied per projection.
    positions: [u64; 3],
}

const NAMES: [&str; 3] = ["attendance", "feedback", "minutes"];

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
            Event::Feedback(_) => {}
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
                    LoudspeakerEvent::RelaySwitched { on: true } => relay_started(row, at),
                    LoudspeakerEvent::RelaySwitched { on: false } => relay_stopped(row, at),
                    LoudspeakerEvent::ClusterStatusReported {
                        cluster, status, ..
                    } => {
                        row.clusters
                            .insert(cluster.clone(), status.as_str().to_owned());
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
                        relay_stopped(row, at.clone());
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
                    // Logs from before the relay was the loudspeakers' fact have these and the
                    // bridge's RelaySwitched both: each interval is counted once.
                    MeetingEvent::RelayStarted => relay_started(row, at),
                    MeetingEvent::RelayStopped => relay_stopped(row, at),
                    MeetingEvent::ClusterStatusChanged { cluster, status } => {
                        row.clusters.insert(cluster.clone(), status.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Load the stored rows and positions.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let mut v = Views::default();
        v.positions[0] = load_table(store, NAMES[0], &mut v.attendance).await?;
        v.positions[1] = load_table(store, NAMES[1], &mut v.feedback).await?;
        v.positions[2] = load_table(store, NAMES[2], &mut v.minutes).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::loudspeakers::ClusterStatus;

    fn fold(events: Vec<(&str, Event)>) -> MinutesRow {
        let mut v = Views::default();
        let t0 = time::macros::datetime!(2026-11-23 09:00 +07);
        for (i, (id, event)) in events.into_iter().enumerate() {
            v.apply(&Recorded {
                position: i as u64 + 1,
                aggregate_id: id.into(),
                at: t0 + time::Duration::minutes(i as i64),
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
        assert_eq!(m.clusters["thon-1"], "down");
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
