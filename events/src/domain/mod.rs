//! The domain: commands, events and aggregates, pure and synchronous (STYLE.md habit 5).
//!
//! Each aggregate has a `decide(&self, &Command) -> Result<Vec<Event>, Error>` that checks a
//! command against the state and returns the events it causes, and an `apply` that only
//! changes state. The `cqrs_es::Aggregate::handle` of each just runs `decide` and writes the
//! events to the sink. Facts from outside (the time, who acts, ids) arrive in the [`Command`]
//! envelope, so that a rule can be tested with no clock.

pub mod feedback;
pub mod loudspeakers;
pub mod meeting;
pub mod notices;
pub mod tokens;
pub mod workdays;

#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Who issued a command, from the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `chair`, `house`, `official`, or `system` for facts the hub observes itself.
    pub role: ActorRole,
    /// The token's subject: a house id, an official's id, `sfu` or `timer` for the system.
    pub id: String,
}

/// The role of an [`Actor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    /// The commune chair.
    Chair,
    /// A village cultural house.
    House,
    /// An official who handles feedback.
    Official,
    /// The hub itself: the SFU's observations, the deadline timer.
    System,
}

impl Actor {
    /// An actor of the given role and id.
    pub fn new(role: ActorRole, id: impl Into<String>) -> Self {
        Self {
            role,
            id: id.into(),
        }
    }

    /// The hub observing something itself (`what` is `sfu`, `timer`, `bridge`).
    pub fn system(what: &str) -> Self {
        Self::new(ActorRole::System, what)
    }

    /// `role:id`, as stored in the log.
    pub fn label(&self) -> String {
        let role = match self.role {
            ActorRole::Chair => "chair",
            ActorRole::House => "house",
            ActorRole::Official => "official",
            ActorRole::System => "system",
        };
        format!("{role}:{}", self.id)
    }
}

/// A command with the facts from outside: when, and who.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command<A> {
    /// When the hub received it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who issued it.
    pub actor: Actor,
    /// What to do.
    pub action: A,
}

impl<A> Command<A> {
    /// Wrap an action.
    pub fn new(at: OffsetDateTime, actor: Actor, action: A) -> Self {
        Self { at, actor, action }
    }
}

/// The version every event type starts at; bump per type when its shape changes and add an
/// upcaster.
pub const EVENT_VERSION: &str = "1";

/// The pure half of an aggregate: [`Decide::decide`] checks a command and returns events,
/// [`Decide::apply_event`] changes state. Given/when/then tests drive this with no store.
pub trait Decide: Default {
    /// What can be asked.
    type Action;
    /// What can happen.
    type Event;
    /// Why a command is refused.
    type Error: std::fmt::Display;
    /// What the rules consult besides the state (the calendar of working days).
    type Services: Default;
    /// Check `cmd` against the state; return the events it causes.
    fn decide(
        &self,
        cmd: &Command<Self::Action>,
        services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;
    /// Change the state by one event, with no checks.
    fn apply_event(&mut self, event: &Self::Event);
}

impl Decide for meeting::Meeting {
    type Action = meeting::MeetingAction;
    type Event = meeting::MeetingEvent;
    type Error = meeting::MeetingError;
    type Services = ();
    fn decide(&self, cmd: &Command<Self::Action>, _: &()) -> Result<Vec<Self::Event>, Self::Error> {
        meeting::Meeting::decide(self, cmd)
    }
    fn apply_event(&mut self, event: &Self::Event) {
        meeting::Meeting::apply_event(self, event)
    }
}

impl Decide for feedback::Feedback {
    type Action = feedback::FeedbackAction;
    type Event = feedback::FeedbackEvent;
    type Error = feedback::FeedbackError;
    type Services = workdays::Calendar;
    fn decide(
        &self,
        cmd: &Command<Self::Action>,
        calendar: &workdays::Calendar,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        feedback::Feedback::decide(self, cmd, calendar)
    }
    fn apply_event(&mut self, event: &Self::Event) {
        feedback::Feedback::apply_event(self, event)
    }
}

impl Decide for loudspeakers::Loudspeakers {
    type Action = loudspeakers::LoudspeakerAction;
    type Event = loudspeakers::LoudspeakerEvent;
    type Error = loudspeakers::LoudspeakerError;
    type Services = ();
    fn decide(&self, cmd: &Command<Self::Action>, _: &()) -> Result<Vec<Self::Event>, Self::Error> {
        loudspeakers::Loudspeakers::decide(self, cmd)
    }
    fn apply_event(&mut self, event: &Self::Event) {
        loudspeakers::Loudspeakers::apply_event(self, event)
    }
}

impl Decide for notices::Notice {
    type Action = notices::NoticeAction;
    type Event = notices::NoticeEvent;
    type Error = notices::NoticeError;
    type Services = ();
    fn decide(&self, cmd: &Command<Self::Action>, _: &()) -> Result<Vec<Self::Event>, Self::Error> {
        notices::Notice::decide(self, cmd)
    }
    fn apply_event(&mut self, event: &Self::Event) {
        notices::Notice::apply_event(self, event)
    }
}

impl Decide for tokens::TokenDenyList {
    type Action = tokens::TokenAction;
    type Event = tokens::TokenEvent;
    type Error = tokens::TokenError;
    type Services = ();
    fn decide(&self, cmd: &Command<Self::Action>, _: &()) -> Result<Vec<Self::Event>, Self::Error> {
        tokens::TokenDenyList::decide(self, cmd)
    }
    fn apply_event(&mut self, event: &Self::Event) {
        tokens::TokenDenyList::apply_event(self, event)
    }
}
