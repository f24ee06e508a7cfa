//! What happened to a meeting: the events, as stored in the log.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ClusterStatus;

use crate::domain::EVENT_VERSION;

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
    /// Put on the calendar.
    MeetingScheduled {
        /// Room.
        room: String,
        /// Title.
        title: String,
        /// Due start.
        #[serde(with = "time::serde::rfc3339")]
        starts_at: OffsetDateTime,
        /// Agenda.
        agenda: Vec<String>,
    },
    /// Opened.
    MeetingOpened,
    /// An agenda item started.
    AgendaItemStarted {
        /// Index.
        index: usize,
    },
    /// An agenda item ended.
    AgendaItemEnded {
        /// Index.
        index: usize,
    },
    /// Closed.
    MeetingClosed,
    /// A house's first screen connected.
    HouseConnected {
        /// House id.
        house: String,
        /// Connection id.
        connection: String,
    },
    /// A house's last screen disconnected.
    HouseDisconnected {
        /// House id.
        house: String,
        /// Connection id.
        connection: String,
    },
    /// A second screen of a connected house connected, or one of two disconnected. No longer
    /// produced (the SFU keeps one session per house); replayed from old logs.
    ScreenChanged {
        /// House id.
        house: String,
        /// Connection id.
        connection: String,
        /// Whether it connected (true) or disconnected.
        connected: bool,
    },
    /// A house reported its headcount.
    HeadcountReported {
        /// House id.
        house: String,
        /// People.
        count: u32,
    },
    /// A house checked in one attendee.
    AttendeeCheckedIn {
        /// House id.
        house: String,
        /// Name.
        name: String,
    },
    /// A hand went up.
    HandRaised {
        /// House id.
        house: String,
    },
    /// A hand went down (by the house, or because it got the floor or left).
    HandLowered {
        /// House id.
        house: String,
    },
    /// A house got the floor.
    FloorGranted {
        /// House id.
        house: String,
    },
    /// A house lost the floor.
    FloorRevoked {
        /// House id.
        house: String,
        /// Why.
        reason: RevokeReason,
    },
    /// The loudspeaker relay started.
    RelayStarted,
    /// The loudspeaker relay stopped.
    RelayStopped,
    /// A loudspeaker cluster changed status.
    ClusterStatusChanged {
        /// Cluster id.
        cluster: String,
        /// What the bridge sees now.
        status: ClusterStatus,
    },
}

impl cqrs_es::DomainEvent for MeetingEvent {
    fn event_type(&self) -> String {
        let s = match self {
            Self::MeetingScheduled { .. } => "MeetingScheduled",
            Self::MeetingOpened => "MeetingOpened",
            Self::AgendaItemStarted { .. } => "AgendaItemStarted",
            Self::AgendaItemEnded { .. } => "AgendaItemEnded",
            Self::MeetingClosed => "MeetingClosed",
            Self::HouseConnected { .. } => "HouseConnected",
            Self::HouseDisconnected { .. } => "HouseDisconnected",
            Self::ScreenChanged { .. } => "ScreenChanged",
            Self::HeadcountReported { .. } => "HeadcountReported",
            Self::AttendeeCheckedIn { .. } => "AttendeeCheckedIn",
            Self::HandRaised { .. } => "HandRaised",
            Self::HandLowered { .. } => "HandLowered",
            Self::FloorGranted { .. } => "FloorGranted",
            Self::FloorRevoked { .. } => "FloorRevoked",
            Self::RelayStarted => "RelayStarted",
            Self::RelayStopped => "RelayStopped",
            Self::ClusterStatusChanged { .. } => "ClusterStatusChanged",
        };
        s.to_owned()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
