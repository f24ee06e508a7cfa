//! Given/when/then for the pure aggregates (after cqrs-es's `TestFramework`, but synchronous
//! and with the command envelope's time and actor spelled out).

use std::fmt::Debug;

use time::OffsetDateTime;

use super::{Actor, ActorRole, Command, Decide, Services};

/// The time a test command arrives at unless it says otherwise.
pub const NOW: OffsetDateTime = time::macros::datetime!(2026-11-23 09:00 +07);

pub fn chair() -> Actor {
    Actor::new(ActorRole::Chair, "chair")
}
pub fn house(id: &str) -> Actor {
    Actor::new(ActorRole::House, id)
}
pub fn official(id: &str) -> Actor {
    Actor::new(ActorRole::Official, id)
}
pub fn system() -> Actor {
    Actor::system("sfu")
}

/// An aggregate rebuilt from past events.
pub struct Given<T: Decide>(T, Services);

/// The outcome of one command.
pub struct Then<T: Decide>(Result<Vec<T::Event>, T::Error>);

impl<T: Decide> Given<T> {
    pub fn events(events: Vec<T::Event>) -> Self {
        let mut state = T::default();
        for e in &events {
            state.apply_event(e);
        }
        Self(state, Services::default())
    }

    pub fn with(self, services: Services) -> Self {
        Self(self.0, services)
    }

    pub fn when(self, actor: Actor, action: T::Action) -> Then<T> {
        self.when_at(NOW, actor, action)
    }

    pub fn when_at(self, at: OffsetDateTime, actor: Actor, action: T::Action) -> Then<T> {
        Then(self.0.decide(&Command::new(at, actor, action), &self.1))
    }
}

impl<T: Decide> Then<T>
where
    T::Event: Debug + PartialEq,
{
    pub fn then(self, expected: Vec<T::Event>) {
        match self.0 {
            Ok(events) => assert_eq!(events, expected),
            Err(e) => panic!("expected events {expected:?}, got the error: {e}"),
        }
    }

    pub fn then_error(self, message: &str) {
        match self.0 {
            Ok(events) => panic!("expected the error {message:?}, got events {events:?}"),
            Err(e) => assert_eq!(e.to_string(), message),
        }
    }
}
