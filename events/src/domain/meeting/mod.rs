//! A meeting of a commune: its schedule and agenda, who attended, who had the floor, and the
//! loudspeaker relay.
//!
//! Rules:
//! - a meeting is scheduled once, opened once, closed once; nothing is accepted after it closes;
//! - attendance and floor facts are accepted only while it is open;
//! - connections are the SFU's facts (the system actor only): a house is connected once from
//!   its connection until that connection ends (a reconnection is a new attendance, a repeated
//!   connect changes nothing), and closing the meeting disconnects everyone still there;
//!   `ScreenChanged`, a second screen of a house, was never produced by the hub and is only
//!   replayed from old logs;
//! - one house holds the floor at a time; granting it to another revokes the first; the
//!   holder lowering its hand yields it; a house that disconnects loses the floor and its
//!   raised hand (the SFU's rules in `dinh_sfu::floor`: the record follows what it decided,
//!   docs/decisions/0006);
//! - the latest headcount a house reports is the one that counts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rules::{require_house_or, require_role, text};
use super::{domain_error, ActorRole, Command, Decide, Invalid, Services};

mod action;
mod event;

pub use action::MeetingAction;
pub use event::{MeetingEvent, RevokeReason};

domain_error! {
    /// Why a meeting command was refused. Each is a user error: show the message, change nothing.
    pub enum MeetingError {
        /// Schedule the meeting first.
        #[error("the meeting has not been scheduled")]
        NotScheduled => NotFound,
        /// The meeting exists already; pick another id.
        #[error("the meeting is already scheduled")]
        AlreadyScheduled => State,
        /// Open the meeting first.
        #[error("the meeting is not open")]
        NotOpen => State,
        /// It is open already.
        #[error("the meeting is already open")]
        AlreadyOpen => State,
        /// The meeting is over; nothing more can be recorded in it.
        #[error("the meeting is closed")]
        Closed => State,
        /// Pick an index inside the agenda.
        #[error("there is no agenda item {0}")]
        NoSuchAgendaItem(usize) => Invalid,
        /// Nothing to end.
        #[error("no agenda item is in progress")]
        NoAgendaItem => State,
        /// The house must be connected to take part.
        #[error("house {0} is not connected")]
        HouseNotConnected(String) => State,
        /// Nobody holds the floor.
        #[error("nobody holds the floor")]
        NoFloor => State,
        /// The relay is already in that state.
        #[error("the relay is already {0}")]
        Relay(&'static str) => State,
    }
    /// The token's role may not do this.
    Forbidden
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
enum Phase {
    #[default]
    New,
    Scheduled,
    Open,
    Closed,
}

/// The state of one meeting, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meeting {
    phase: Phase,
    room: String,
    agenda_len: usize,
    current_item: Option<usize>,
    /// House -> its open connection (several only in logs that recorded `ScreenChanged`).
    screens: BTreeMap<String, BTreeSet<String>>,
    hands: Vec<String>,
    floor: Option<String>,
    relay: bool,
}

impl Meeting {
    /// The room it is held in.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The house holding the floor.
    pub fn floor(&self) -> Option<&str> {
        self.floor.as_deref()
    }

    /// Houses with at least one screen connected.
    pub fn connected(&self) -> impl Iterator<Item = &str> {
        self.screens.keys().map(String::as_str)
    }

    fn require_open(&self) -> Result<(), MeetingError> {
        match self.phase {
            Phase::New => Err(MeetingError::NotScheduled),
            Phase::Scheduled => Err(MeetingError::NotOpen),
            Phase::Open => Ok(()),
            Phase::Closed => Err(MeetingError::Closed),
        }
    }

    /// The floor taken from whoever holds it, for `reason`.
    fn revoked(&self, reason: RevokeReason) -> impl Iterator<Item = MeetingEvent> + '_ {
        self.floor
            .iter()
            .map(move |house| MeetingEvent::FloorRevoked {
                house: house.clone(),
                reason,
            })
    }

    /// `house`'s hand lowered, if it is up.
    fn hand_lowered(&self, house: &str) -> Option<MeetingEvent> {
        self.hands
            .iter()
            .any(|h| h == house)
            .then(|| MeetingEvent::HandLowered {
                house: house.to_owned(),
            })
    }

    /// `house` leaving the floor and the queue: the floor taken from it for `reason` if it
    /// holds it, its hand lowered if it is up.
    fn steps_down(&self, house: &str, reason: RevokeReason) -> Vec<MeetingEvent> {
        let held = self.floor.as_deref() == Some(house);
        let mut out: Vec<_> = self.revoked(reason).filter(|_| held).collect();
        out.extend(self.hand_lowered(house));
        out
    }

    fn require_connected(&self, house: &str) -> Result<(), MeetingError> {
        if self.screens.contains_key(house) {
            Ok(())
        } else {
            Err(MeetingError::HouseNotConnected(house.to_owned()))
        }
    }
}

impl Decide for Meeting {
    const TYPE: &'static str = "meeting";
    type Action = MeetingAction;
    type Event = MeetingEvent;
    type Error = MeetingError;

    fn decide(
        &self,
        cmd: &Command<MeetingAction>,
        _: &Services,
    ) -> Result<Vec<MeetingEvent>, MeetingError> {
        use MeetingAction as A;
        use MeetingEvent as E;
        let actor = &cmd.actor;
        let chair = [ActorRole::Chair];
        let chair_or_system = [ActorRole::Chair, ActorRole::System];
        match &cmd.action {
            A::Schedule {
                room,
                title,
                starts_at,
                agenda,
            } => {
                require_role(actor, &chair, "schedule a meeting")?;
                if self.phase != Phase::New {
                    return Err(if self.phase == Phase::Closed {
                        MeetingError::Closed
                    } else {
                        MeetingError::AlreadyScheduled
                    });
                }
                text("room", room, 1..=64)?;
                text("title", title, 1..=200)?;
                if agenda.len() > 100 {
                    return Err(Invalid {
                        field: "agenda",
                        reason: "more than 100 items".into(),
                    }
                    .into());
                }
                for item in agenda {
                    text("agenda", item, 1..=500)?;
                }
                Ok(vec![E::MeetingScheduled {
                    room: room.trim().to_owned(),
                    title: title.trim().to_owned(),
                    starts_at: *starts_at,
                    agenda: agenda.iter().map(|s| s.trim().to_owned()).collect(),
                }])
            }
            A::Open => {
                require_role(actor, &chair, "open a meeting")?;
                match self.phase {
                    Phase::New => Err(MeetingError::NotScheduled),
                    Phase::Scheduled => Ok(vec![E::MeetingOpened]),
                    Phase::Open => Err(MeetingError::AlreadyOpen),
                    Phase::Closed => Err(MeetingError::Closed),
                }
            }
            A::StartAgendaItem { index } => {
                require_role(actor, &chair, "start an agenda item")?;
                self.require_open()?;
                if *index >= self.agenda_len {
                    return Err(MeetingError::NoSuchAgendaItem(*index));
                }
                let mut out = Vec::new();
                if let Some(cur) = self.current_item {
                    out.push(E::AgendaItemEnded { index: cur });
                }
                out.push(E::AgendaItemStarted { index: *index });
                Ok(out)
            }
            A::EndAgendaItem => {
                require_role(actor, &chair, "end an agenda item")?;
                self.require_open()?;
                let index = self.current_item.ok_or(MeetingError::NoAgendaItem)?;
                Ok(vec![E::AgendaItemEnded { index }])
            }
            A::Close => {
                require_role(actor, &chair, "close a meeting")?;
                self.require_open()?;
                let mut out = Vec::new();
                if let Some(index) = self.current_item {
                    out.push(E::AgendaItemEnded { index });
                }
                out.extend(self.revoked(RevokeReason::MeetingClosed));
                if self.relay {
                    out.push(E::RelayStopped);
                }
                for (house, conns) in &self.screens {
                    // The last connection stands for the house; the others end silently
                    // with the meeting.
                    if let Some(connection) = conns.iter().next_back() {
                        out.push(E::HouseDisconnected {
                            house: house.clone(),
                            connection: connection.clone(),
                        });
                    }
                }
                out.push(E::MeetingClosed);
                Ok(out)
            }
            A::ConnectHouse { house, connection } => {
                require_role(actor, &[ActorRole::System], "record a connection")?;
                self.require_open()?;
                text("house", house, 1..=64)?;
                text("connection", connection, 1..=128)?;
                // One presence per house, as in the SFU (a second session of a house replaces
                // the first): a house already connected stays connected once.
                if self.screens.contains_key(house) {
                    return Ok(vec![]);
                }
                Ok(vec![E::HouseConnected {
                    house: house.clone(),
                    connection: connection.clone(),
                }])
            }
            A::DisconnectHouse { house, connection } => {
                require_role(actor, &[ActorRole::System], "record a disconnection")?;
                self.require_open()?;
                // A connection this meeting never recorded (or already ended) changes nothing.
                if !self
                    .screens
                    .get(house)
                    .is_some_and(|c| c.contains(connection))
                {
                    return Ok(vec![]);
                }
                let mut out = self.steps_down(house, RevokeReason::Left);
                out.push(E::HouseDisconnected {
                    house: house.clone(),
                    connection: connection.clone(),
                });
                Ok(out)
            }
            A::ReportHeadcount { house, count } => {
                require_house_or(
                    actor,
                    house,
                    &chair_or_system,
                    "report another house's headcount",
                )?;
                self.require_open()?;
                if *count > 100_000 {
                    return Err(Invalid {
                        field: "count",
                        reason: "more than 100000".into(),
                    }
                    .into());
                }
                Ok(vec![E::HeadcountReported {
                    house: house.clone(),
                    count: *count,
                }])
            }
            A::CheckIn { house, name } => {
                require_house_or(actor, house, &chair_or_system, "check in at another house")?;
                self.require_open()?;
                text("name", name, 1..=200)?;
                Ok(vec![E::AttendeeCheckedIn {
                    house: house.clone(),
                    name: name.trim().to_owned(),
                }])
            }
            A::RaiseHand { house } => {
                require_house_or(actor, house, &chair_or_system, "raise another house's hand")?;
                self.require_open()?;
                self.require_connected(house)?;
                if self.hands.contains(house) || self.floor.as_deref() == Some(house) {
                    return Ok(vec![]);
                }
                Ok(vec![E::HandRaised {
                    house: house.clone(),
                }])
            }
            A::LowerHand { house } => {
                require_house_or(actor, house, &chair_or_system, "lower another house's hand")?;
                self.require_open()?;
                // As the SFU rules: the holder lowering its hand yields the floor.
                Ok(self.steps_down(house, RevokeReason::Yielded))
            }
            A::GrantFloor { house } => {
                require_role(actor, &chair, "grant the floor")?;
                self.require_open()?;
                self.require_connected(house)?;
                if self.floor.as_deref() == Some(house) {
                    return Ok(vec![]);
                }
                let mut out: Vec<_> = self.revoked(RevokeReason::GrantedToAnother).collect();
                out.extend(self.hand_lowered(house));
                out.push(E::FloorGranted {
                    house: house.clone(),
                });
                Ok(out)
            }
            A::RevokeFloor => {
                require_role(actor, &chair, "revoke the floor")?;
                self.require_open()?;
                let house = self.floor.clone().ok_or(MeetingError::NoFloor)?;
                Ok(vec![E::FloorRevoked {
                    house,
                    reason: RevokeReason::Chair,
                }])
            }
            A::StartRelay => {
                require_role(actor, &chair, "start the relay")?;
                self.require_open()?;
                if self.relay {
                    return Err(MeetingError::Relay("running"));
                }
                Ok(vec![E::RelayStarted])
            }
            A::StopRelay => {
                require_role(actor, &chair_or_system, "stop the relay")?;
                self.require_open()?;
                if !self.relay {
                    return Err(MeetingError::Relay("stopped"));
                }
                Ok(vec![E::RelayStopped])
            }
            A::ChangeClusterStatus { cluster, status } => {
                require_role(actor, &[ActorRole::System], "report a cluster status")?;
                self.require_open()?;
                text("cluster", cluster, 1..=64)?;
                Ok(vec![E::ClusterStatusChanged {
                    cluster: cluster.clone(),
                    status: *status,
                }])
            }
        }
    }

    fn apply_event(&mut self, event: &MeetingEvent) {
        use MeetingEvent as E;
        match event {
            E::MeetingScheduled { room, agenda, .. } => {
                self.phase = Phase::Scheduled;
                self.room = room.clone();
                self.agenda_len = agenda.len();
            }
            E::MeetingOpened => self.phase = Phase::Open,
            E::AgendaItemStarted { index } => self.current_item = Some(*index),
            E::AgendaItemEnded { .. } => self.current_item = None,
            E::MeetingClosed => {
                self.phase = Phase::Closed;
                self.screens.clear();
                self.hands.clear();
            }
            E::HouseConnected { house, connection } => {
                self.screens
                    .entry(house.clone())
                    .or_default()
                    .insert(connection.clone());
            }
            E::ScreenChanged {
                house,
                connection,
                connected,
            } => {
                let set = self.screens.entry(house.clone()).or_default();
                if *connected {
                    set.insert(connection.clone());
                } else {
                    set.remove(connection);
                }
            }
            E::HouseDisconnected { house, .. } => {
                self.screens.remove(house);
            }
            E::HeadcountReported { .. } | E::AttendeeCheckedIn { .. } => {}
            E::HandRaised { house } => self.hands.push(house.clone()),
            E::HandLowered { house } => self.hands.retain(|h| h != house),
            E::FloorGranted { house } => self.floor = Some(house.clone()),
            E::FloorRevoked { .. } => self.floor = None,
            E::RelayStarted => self.relay = true,
            E::RelayStopped => self.relay = false,
            E::ClusterStatusChanged { .. } => {}
        }
    }
}

crate::aggregate!(Meeting);

#[cfg(test)]
mod tests;
