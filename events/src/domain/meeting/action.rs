//! What can be asked of a meeting: the commands.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ClusterStatus;

/// What can be asked of a meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MeetingAction {
    /// Put a meeting on the calendar of a room.
    Schedule {
        /// The room (signalling) the meeting is held in.
        room: String,
        /// Title, e.g. "Họp dân quý IV".
        title: String,
        /// When it is due to start.
        #[serde(with = "time::serde::rfc3339")]
        starts_at: OffsetDateTime,
        /// Agenda items in order.
        #[serde(default)]
        agenda: Vec<String>,
    },
    /// Open the meeting.
    Open,
    /// Start agenda item `index` (ends the current one).
    StartAgendaItem {
        /// Index into the agenda, from 0.
        index: usize,
    },
    /// End the current agenda item.
    EndAgendaItem,
    /// Close the meeting.
    Close,
    /// A house connected (the SFU's fact: the system actor only).
    ConnectHouse {
        house: String,
        /// Identifies this screen's connection, so that a reconnection is told apart.
        connection: String,
    },
    /// A house's connection ended (the SFU's fact: the system actor only).
    DisconnectHouse {
        house: String,
        /// The connection that ended.
        connection: String,
    },
    /// A house reports how many people are in its hall.
    ReportHeadcount {
        house: String,
        /// People present, at most 100,000.
        count: u32,
    },
    /// A house records one attendee by name.
    CheckIn {
        house: String,
        /// The attendee's name.
        name: String,
    },
    /// A house raises its hand.
    RaiseHand { house: String },
    /// A house lowers its hand.
    LowerHand { house: String },
    /// The chair gives a house the floor.
    GrantFloor { house: String },
    /// The chair takes the floor back.
    RevokeFloor,
    /// The chair starts the loudspeaker relay.
    StartRelay,
    /// The chair stops the loudspeaker relay.
    StopRelay,
    /// The bridge saw a loudspeaker cluster change status.
    ChangeClusterStatus {
        cluster: String,
        /// What the bridge sees now.
        status: ClusterStatus,
    },
}

impl MeetingAction {
    /// The action's name, as in the API (`grant_floor`).
    pub fn name(&self) -> String {
        crate::domain::tag(self)
    }
}
