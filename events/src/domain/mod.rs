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
pub mod rules;
pub mod tokens;
pub mod workdays;

#[cfg(test)]
pub(crate) mod testing;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use rules::{Forbidden, Invalid};

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

impl ActorRole {
    /// The role's name, as in tokens and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chair => "chair",
            Self::House => "house",
            Self::Official => "official",
            Self::System => "system",
        }
    }
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
        format!("{}:{}", self.role.as_str(), self.id)
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

/// The serde tag of a value of an internally tagged enum (`grant_floor`): an action's name in
/// the API and, in PascalCase ([`event_type`]), an event's stored type. Both come from the
/// serde attributes, so they cannot drift from what is sent and stored.
pub fn tag<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The stored event type of a serde tag: `meeting_scheduled` is `MeetingScheduled`.
pub fn event_type(tag: &str) -> String {
    tag.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `cqrs_es::DomainEvent` for an event enum tagged by serde: its type is [`event_type`] of
/// its tag, its version [`EVENT_VERSION`].
#[macro_export]
macro_rules! event {
    ($event:ty) => {
        impl cqrs_es::DomainEvent for $event {
            fn event_type(&self) -> String {
                $crate::domain::event_type(&$crate::domain::tag(self))
            }
            fn event_version(&self) -> String {
                $crate::domain::EVENT_VERSION.to_owned()
            }
        }
    };
}

/// A loudspeaker cluster's health, as the bridge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterStatus {
    /// Not heard from yet.
    Unknown,
    /// Packets leave without error and the receivers answer.
    Up,
    /// Unreachable or failing.
    Down,
}

impl ClusterStatus {
    /// The status's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Everything the rules consult besides the state and the command.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// Working days, for feedback deadlines.
    pub calendar: workdays::Calendar,
}

/// How a refusal should reach the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token's role may not (403).
    Forbidden,
    /// No such meeting or item (404).
    NotFound,
    /// A field is wrong (422).
    Invalid,
    /// The step does not fit the current state (409).
    State,
}

/// An aggregate's error says which kind of refusal it is.
pub trait Refuse {
    /// The kind of refusal, for the HTTP status.
    fn refusal(&self) -> Refusal;
}

/// An aggregate's error enum and its [`Refuse`]: the aggregate's own variants, each with the
/// [`Refusal`] it is (`Variant => Kind,`), then the two that every aggregate shares,
/// `Invalid` (a [`rules`] field check, 422) and `Forbidden` (a [`rules`] role check, 403),
/// whose doc line follows the enum.
///
/// ```text
/// domain_error! {
///     /// Why a notice command was refused.
///     pub enum NoticeError {
///         /// Post it first.
///         #[error("no such notice")]
///         NotFound => NotFound,
///     }
///     /// Only the chair or an official may do this.
///     Forbidden
/// }
/// ```
macro_rules! domain_error {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident
                $(($($tuple:ty),* $(,)?))?
                $({ $($(#[$fmeta:meta])* $field:ident: $fty:ty),* $(,)? })?
                => $refusal:ident,
            )*
        }
        $(#[$fbmeta:meta])*
        Forbidden
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant $(($($tuple),*))? $({ $($(#[$fmeta])* $field: $fty),* })?,
            )*
            /// Fix the field named.
            #[error(transparent)]
            Invalid(#[from] $crate::domain::Invalid),
            $(#[$fbmeta])*
            #[error(transparent)]
            Forbidden(#[from] $crate::domain::Forbidden),
        }

        impl $crate::domain::Refuse for $name {
            fn refusal(&self) -> $crate::domain::Refusal {
                match self {
                    $(Self::$variant { .. } => $crate::domain::Refusal::$refusal,)*
                    Self::Invalid(_) => $crate::domain::Refusal::Invalid,
                    Self::Forbidden(_) => $crate::domain::Refusal::Forbidden,
                }
            }
        }
    };
}
pub(crate) use domain_error;

/// An aggregate, pure: [`Decide::decide`] checks a command against the state and returns the
/// events it causes, [`Decide::apply_event`] changes the state by one event with no checks.
/// Given/when/then tests drive this with no store; [`aggregate!`] makes it a
/// `cqrs_es::Aggregate` for the record.
///
/// Adding an aggregate: its state, action, event and error types, `impl Decide` and
/// `impl Refuse` for the error, and `aggregate!(State);`. [`crate::record::Record::execute`]
/// then runs its commands.
pub trait Decide: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type as stored in the log (`meeting`): never change it.
    const TYPE: &'static str;
    /// What can be asked.
    type Action: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What can happen, as stored in the log.
    type Event: cqrs_es::DomainEvent;
    /// Why a command is refused.
    type Error: std::error::Error + Refuse + Send + Sync + 'static;
    /// Check `cmd` against the state; return the events it causes.
    fn decide(
        &self,
        cmd: &Command<Self::Action>,
        services: &Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;
    /// Change the state by one event, with no checks: events are facts.
    fn apply_event(&mut self, event: &Self::Event);
}

/// `cqrs_es::Aggregate` for a [`Decide`]: `handle` runs `decide` and writes each event to
/// the sink (which applies it), `apply` is `apply_event`.
#[macro_export]
macro_rules! aggregate {
    ($state:ty) => {
        impl cqrs_es::Aggregate for $state {
            const TYPE: &'static str = <$state as $crate::domain::Decide>::TYPE;
            type Command = $crate::domain::Command<<$state as $crate::domain::Decide>::Action>;
            type Event = <$state as $crate::domain::Decide>::Event;
            type Error = <$state as $crate::domain::Decide>::Error;
            type Services = $crate::domain::Services;

            async fn handle(
                &mut self,
                command: Self::Command,
                services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in $crate::domain::Decide::decide(self, &command, services)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                $crate::domain::Decide::apply_event(self, &event);
            }
        }
    };
}
