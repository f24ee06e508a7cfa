//! What happened to a meeting: the events, as stored in the log.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ClusterStatus;

/// Why a floor was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The chair took it back.
    Chair,
    /// The chair gave it to another house.
    GrantedToAnother,
    /// The house disconnected.
    Left,
    /// The meeting closed.
    MeetingClosed,
    /// The house holding it lowered its hand: it yielded the floor.
    Yielded,
}

/// What happened to a meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MeetingEvent {
    /// Put on the calendar of a room.
    MeetingScheduled {
        /// The room (signalling) it is held in; trimmed, 1 to 64 characters.
        room: String,
        /// Trimmed, 1 to 200 characters.
        title: String,
        /// When it is due to start.
        #[serde(with = "time::serde::rfc3339")]
        starts_at: OffsetDateTime,
        /// Agenda items in order (at most 100, each trimmed, 1 to 500 characters).
        agenda: Vec<String>,
    },
    /// The chair opened it: attendance and the floor are recorded from now on.
    MeetingOpened,
    /// An agenda item started.
    AgendaItemStarted {
        /// Position in the agenda, from 0.
        index: usize,
    },
    /// An agenda item ended.
    AgendaItemEnded {
        /// Position in the agenda, from 0.
        index: usize,
    },
    /// The chair closed it: nothing more is recorded in it.
    MeetingClosed,
    /// A house's first screen connected.
    HouseConnected {
        house: String,
        /// The connection, as the room watcher named it (one per presence).
        connection: String,
    },
    /// A house's last screen disconnected.
    HouseDisconnected {
        house: String,
        /// The connection, as the room watcher named it (one per presence).
        connection: String,
    },
    /// A second screen of a connected house connected, or one of two disconnected. No longer
    /// produced (the SFU keeps one session per house); replayed from old logs.
    ScreenChanged {
        house: String,
        /// The connection, as the room watcher named it (one per presence).
        connection: String,
        /// Whether it connected (true) or disconnected.
        connected: bool,
    },
    /// A house reported its headcount.
    HeadcountReported {
        house: String,
        /// People in the hall, at most 100,000.
        count: u32,
    },
    /// A house checked in one attendee.
    AttendeeCheckedIn {
        house: String,
        /// The attendee's name, trimmed (personal data: never logged).
        name: String,
    },
    /// A hand went up.
    HandRaised { house: String },
    /// A hand went down (by the house, or because it got the floor or left).
    HandLowered { house: String },
    /// A house got the floor.
    FloorGranted { house: String },
    /// A house lost the floor.
    FloorRevoked { house: String, reason: RevokeReason },
    /// The loudspeaker relay started.
    RelayStarted,
    /// The loudspeaker relay stopped.
    RelayStopped,
    /// A loudspeaker cluster changed status.
    ClusterStatusChanged {
        cluster: String,
        /// What the bridge sees now.
        status: ClusterStatus,
    },
}

crate::event!(MeetingEvent);
