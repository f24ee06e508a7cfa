//! The deny list of bearer tokens: every token carries an id (`jti`), and a token whose id
//! is on this list is refused on every request and closes its WebSockets, even before it
//! expires (a house's tablet was stolen; a link leaked into a chat group). One aggregate,
//! [`DENY_LIST`], for the whole hub; a revocation is for good.
//!
//! A revocation names the token's room, and holds for that room's tokens only: a chair who
//! revokes an id by itself revokes it in the chair's own room, so no room can shut out
//! another's token by guessing or copying its id. Only the hub's operator (`system`, from
//! `dinh token revoke`) may leave the room out, which revokes the id in every room.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::rules::{id, require_role, text};
use super::{domain_error, ActorRole, Command, Decide, Services};

/// The id of the one deny-list aggregate.
pub const DENY_LIST: &str = "deny-list";

/// What can be asked of the deny list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenAction {
    /// Refuse the token with this id from now on.
    Revoke {
        /// The token's `jti`.
        jti: String,
        /// The room whose token it is; `None` (the operator only) for every room.
        room: Option<String>,
        /// The token's subject (a house id, `chair`, an official's id), when known.
        subject: Option<String>,
        /// When the token would have expired, seconds since the epoch, when known: after
        /// that the entry no longer matters.
        expires_at: Option<u64>,
        /// Why, for the record (at most 200 characters).
        reason: String,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenEvent {
    /// A token was revoked.
    TokenRevoked {
        /// Its `jti`.
        jti: String,
        /// The room it is revoked in; `None` for every room.
        room: Option<String>,
        /// Its subject, when known.
        subject: Option<String>,
        /// Its expiry (seconds since the epoch), when known.
        expires_at: Option<u64>,
        /// Why.
        reason: String,
    },
}

crate::event!(TokenEvent);

domain_error! {
    /// Why a command was refused.
    pub enum TokenError {
        /// Nothing changes: the token is revoked already.
        #[error("token {0} is already revoked")]
        Already(String) => State,
        /// A chair or an official revokes the tokens of its own room, and must name it.
        #[error("name the token's room: only the hub's operator revokes an id in every room")]
        NoRoom => State,
    }
    /// The role may not revoke tokens: only a chair, an official or the hub's operator.
    Forbidden
}

/// The revoked token ids, each with the room it is revoked in (`None`: every room).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenDenyList {
    revoked: BTreeSet<(String, Option<String>)>,
}

impl TokenDenyList {
    /// Whether the token `jti` of `room` is revoked.
    pub fn is_revoked(&self, jti: &str, room: &str) -> bool {
        self.revoked
            .range((jti.to_owned(), None)..)
            .take_while(|(j, _)| j == jti)
            .any(|(_, r)| r.as_deref().is_none_or(|r| r == room))
    }

    /// Every revocation: the id and the room it holds in (`None`: every room).
    pub fn revoked(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.revoked.iter().map(|(j, r)| (j.as_str(), r.as_deref()))
    }
}

impl Decide for TokenDenyList {
    const TYPE: &'static str = "tokens";
    type Action = TokenAction;
    type Event = TokenEvent;
    type Error = TokenError;

    fn decide(
        &self,
        cmd: &Command<TokenAction>,
        _: &Services,
    ) -> Result<Vec<TokenEvent>, TokenError> {
        match &cmd.action {
            TokenAction::Revoke {
                jti,
                room,
                subject,
                expires_at,
                reason,
            } => {
                require_role(
                    &cmd.actor,
                    &[ActorRole::Chair, ActorRole::Official, ActorRole::System],
                    "revoke tokens",
                )?;
                id("jti", jti)?;
                match room {
                    Some(r) => id("room", r)?,
                    None if cmd.actor.role != ActorRole::System => return Err(TokenError::NoRoom),
                    None => {}
                }
                if let Some(s) = subject {
                    text("subject", s, 1..=100)?;
                }
                text("reason", reason, 0..=200)?;
                let covered = match room {
                    Some(r) => self.is_revoked(jti, r),
                    None => self.revoked.contains(&(jti.clone(), None)),
                };
                if covered {
                    return Err(TokenError::Already(jti.clone()));
                }
                Ok(vec![TokenEvent::TokenRevoked {
                    jti: jti.clone(),
                    room: room.clone(),
                    subject: subject.clone(),
                    expires_at: *expires_at,
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn apply_event(&mut self, e: &TokenEvent) {
        match e {
            TokenEvent::TokenRevoked { jti, room, .. } => {
                self.revoked.insert((jti.clone(), room.clone()));
            }
        }
    }
}

crate::aggregate!(TokenDenyList);

#[cfg(test)]
mod tests {
    use super::TokenAction as A;
    use super::TokenEvent as E;
    use super::*;
    use crate::domain::testing::{chair, house, official, Given};
    use crate::domain::Actor;

    fn given(events: Vec<E>) -> Given<TokenDenyList> {
        Given::<TokenDenyList>::events(events)
    }

    /// A revocation asked with these fields, and the event that records it: the same fields.
    fn revocation(
        jti: &str,
        room: Option<&str>,
        subject: Option<&str>,
        expires_at: Option<u64>,
        reason: &str,
    ) -> (A, E) {
        let (jti, reason) = (jti.to_owned(), reason.to_owned());
        let (room, subject) = (room.map(str::to_owned), subject.map(str::to_owned));
        let e = E::TokenRevoked {
            jti: jti.clone(),
            room: room.clone(),
            subject: subject.clone(),
            expires_at,
            reason: reason.clone(),
        };
        let a = A::Revoke {
            jti,
            room,
            subject,
            expires_at,
            reason,
        };
        (a, e)
    }

    /// House-1's lost tablet: its token in room `demo`, with every field given.
    fn lost_tablet(jti: &str) -> (A, E) {
        let expires = Some(1_900_000_000);
        revocation(
            jti,
            Some("demo"),
            Some("house-1"),
            expires,
            "máy tính bảng bị mất",
        )
    }

    fn revoke(jti: &str) -> A {
        lost_tablet(jti).0
    }

    fn revoked(jti: &str) -> E {
        lost_tablet(jti).1
    }

    #[test]
    fn a_chair_an_official_or_the_operator_revokes_a_token_once() {
        given(vec![])
            .when(chair(), revoke("a1b2"))
            .then(vec![revoked("a1b2")]);
        given(vec![])
            .when(official("can-bo-1"), revoke("a1b2"))
            .then(vec![revoked("a1b2")]);
        given(vec![])
            .when(Actor::system("cli"), revoke("a1b2"))
            .then(vec![revoked("a1b2")]);
        given(vec![revoked("a1b2")])
            .when(chair(), revoke("a1b2"))
            .then_error("token a1b2 is already revoked");
        given(vec![revoked("a1b2")])
            .when(chair(), revoke("c3d4"))
            .then(vec![revoked("c3d4")]);
    }

    fn in_room(jti: &str, room: Option<&str>) -> (A, E) {
        revocation(jti, room, None, None, "")
    }

    #[test]
    fn a_revocation_holds_in_its_room_and_only_the_operator_revokes_everywhere() {
        let (_, in_other_e) = in_room("a1b2", Some("other"));
        let (in_demo, in_demo_e) = in_room("a1b2", Some("demo"));
        let (everywhere, everywhere_e) = in_room("a1b2", None);
        // Another room's revocation of the same id does not stop this room's.
        given(vec![in_other_e.clone()])
            .when(chair(), in_demo)
            .then(vec![in_demo_e.clone()]);
        given(vec![]).when(chair(), everywhere.clone()).then_error(
            "name the token's room: only the hub's operator revokes an id in every room",
        );
        given(vec![in_demo_e.clone()])
            .when(Actor::system("cli"), everywhere)
            .then(vec![everywhere_e.clone()]);
        let mut list = TokenDenyList::default();
        list.apply_event(&in_other_e);
        assert!(list.is_revoked("a1b2", "other"));
        assert!(!list.is_revoked("a1b2", "demo"));
        list.apply_event(&everywhere_e);
        assert!(list.is_revoked("a1b2", "demo"));
    }

    #[test]
    fn a_house_may_not_revoke_tokens() {
        given(vec![])
            .when(house("house-1"), revoke("a1b2"))
            .then_error("a house may not revoke tokens");
    }

    #[test]
    fn ids_and_reasons_are_checked() {
        given(vec![])
            .when(chair(), revoke("not an id"))
            .then_error("invalid jti: 1 to 64 letters, digits, '-' or '_'");
        let (long_reason, _) = revocation("a1b2", Some("demo"), None, None, &"x".repeat(201));
        given(vec![])
            .when(chair(), long_reason)
            .then_error("invalid reason: longer than 200 characters");
        let (bad_room, _) = in_room("a1b2", Some("../other"));
        given(vec![])
            .when(chair(), bad_room)
            .then_error("invalid room: 1 to 64 letters, digits, '-' or '_'");
    }

    #[test]
    fn the_state_answers_whether_a_token_is_revoked() {
        let mut list = TokenDenyList::default();
        list.apply_event(&revoked("a1b2"));
        assert!(list.is_revoked("a1b2", "demo"));
        assert!(!list.is_revoked("a1b2", "other"));
        assert!(!list.is_revoked("c3d4", "demo"));
        assert_eq!(
            list.revoked().collect::<Vec<_>>(),
            vec![("a1b2", Some("demo"))]
        );
    }
}
