//! Floor control: who may speak to the room. Pure: commands in, state changes and errors out.
//!
//! The rules, as a chair expects them from a council meeting:
//! - a house raises its hand and joins a queue, in the order hands went up; raising twice keeps
//!   its place;
//! - the chair grants the floor to one house (usually the head of the queue, but any connected
//!   house), which leaves the queue; one house holds the floor at a time, so granting it to
//!   another takes it from the first;
//! - the chair revokes it, or the holder lowers its hand and yields it;
//! - the chair can mute a house: its audio is not forwarded, even while it holds the floor;
//! - a house that leaves loses its place in the queue and the floor;
//! - after a restart of the hub, the floor is restored to the house that held it (and the
//!   mutes the chair had set) until the chair changes it; raised hands are not restored.

use std::collections::{HashSet, VecDeque};

/// Why a floor command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FloorError {
    /// The house named is not connected to the room; refresh the room state and pick another.
    #[error("house {0} is not connected")]
    NotConnected(String),
    /// Nobody holds the floor; nothing to revoke.
    #[error("nobody holds the floor")]
    NobodyHolds,
}

/// What changed, for the room to announce and to act on (switch slots, request keyframes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorChange {
    /// The queue of raised hands changed.
    Queue,
    /// The floor moved from `from` to `to`.
    Holder {
        /// Who held it (`None`: nobody).
        from: Option<String>,
        /// Who holds it now (`None`: nobody).
        to: Option<String>,
    },
    /// A house was muted or unmuted.
    Muted(String, bool),
    /// Nothing changed (a repeated command).
    None,
}

/// The floor of one room.
#[derive(Debug, Default, Clone)]
pub struct Floor {
    present: HashSet<String>,
    hands: VecDeque<String>,
    holder: Option<String>,
    muted: HashSet<String>,
}

impl Floor {
    /// A floor with nobody present, no hand up and no holder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seed the floor after a restart of the hub (from the record): `holder` holds it again
    /// and `muted` are muted, connected or not; the holder is heard once it is back. Raised
    /// hands are not restored: a house that leaves loses its hand, and a restart is every
    /// house leaving at once.
    pub fn restore(&mut self, holder: Option<String>, muted: impl IntoIterator<Item = String>) {
        if let Some(h) = &holder {
            self.hands.retain(|x| x != h);
        }
        self.holder = holder;
        self.muted = muted.into_iter().collect();
    }

    /// A house's media connected: it may raise its hand and be given the floor.
    pub fn join(&mut self, house: &str) {
        self.present.insert(house.to_owned());
    }

    /// A house left: it loses its raised hand and, if it held it, the floor.
    pub fn leave(&mut self, house: &str) -> FloorChange {
        self.present.remove(house);
        let had_hand = self.drop_hand(house);
        match self.lower_hand(house) {
            FloorChange::None if had_hand => FloorChange::Queue,
            change => change,
        }
    }

    /// Take the house's hand out of the queue; whether it was up.
    fn drop_hand(&mut self, house: &str) -> bool {
        let before = self.hands.len();
        self.hands.retain(|h| h != house);
        self.hands.len() != before
    }

    /// A house raises its hand.
    pub fn raise_hand(&mut self, house: &str) -> Result<FloorChange, FloorError> {
        self.require_present(house)?;
        if self.hands.iter().any(|h| h == house) || self.holder.as_deref() == Some(house) {
            return Ok(FloorChange::None);
        }
        self.hands.push_back(house.to_owned());
        Ok(FloorChange::Queue)
    }

    /// A house lowers its hand; if it holds the floor it yields it.
    pub fn lower_hand(&mut self, house: &str) -> FloorChange {
        if self.holder.as_deref() == Some(house) {
            let from = self.holder.take();
            return FloorChange::Holder { from, to: None };
        }
        if self.drop_hand(house) {
            FloorChange::Queue
        } else {
            FloorChange::None
        }
    }

    /// The chair gives the floor to `house`.
    pub fn grant(&mut self, house: &str) -> Result<FloorChange, FloorError> {
        self.require_present(house)?;
        if self.holder.as_deref() == Some(house) {
            return Ok(FloorChange::None);
        }
        self.hands.retain(|h| h != house);
        let from = self.holder.replace(house.to_owned());
        Ok(FloorChange::Holder {
            from,
            to: Some(house.to_owned()),
        })
    }

    /// The chair takes the floor back.
    pub fn revoke(&mut self) -> Result<FloorChange, FloorError> {
        match self.holder.take() {
            Some(from) => Ok(FloorChange::Holder {
                from: Some(from),
                to: None,
            }),
            None => Err(FloorError::NobodyHolds),
        }
    }

    /// The chair mutes or unmutes a house.
    pub fn set_muted(&mut self, house: &str, muted: bool) -> Result<FloorChange, FloorError> {
        self.require_present(house)?;
        let changed = if muted {
            self.muted.insert(house.to_owned())
        } else {
            self.muted.remove(house)
        };
        Ok(if changed {
            FloorChange::Muted(house.to_owned(), muted)
        } else {
            FloorChange::None
        })
    }

    /// Whether this house's audio may reach the room now.
    pub fn may_speak(&self, house: &str) -> bool {
        self.holder.as_deref() == Some(house) && !self.muted.contains(house)
    }

    /// Who holds the floor; after [`Self::restore`], possibly a house not yet back.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// Raised hands, oldest first.
    pub fn queue(&self) -> impl Iterator<Item = &str> {
        self.hands.iter().map(String::as_str)
    }

    /// Whether the chair muted the house (a mute outlasts the house leaving and rejoining).
    pub fn is_muted(&self, house: &str) -> bool {
        self.muted.contains(house)
    }

    fn require_present(&self, house: &str) -> Result<(), FloorError> {
        if self.present.contains(house) {
            Ok(())
        } else {
            Err(FloorError::NotConnected(house.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor_with(houses: &[&str]) -> Floor {
        let mut f = Floor::new();
        for h in houses {
            f.join(h);
        }
        f
    }

    #[test]
    fn hands_queue_in_order_and_once() {
        let mut f = floor_with(&["a", "b"]);
        assert_eq!(f.raise_hand("b"), Ok(FloorChange::Queue));
        assert_eq!(f.raise_hand("a"), Ok(FloorChange::Queue));
        assert_eq!(f.raise_hand("b"), Ok(FloorChange::None));
        assert_eq!(f.queue().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn grant_moves_holder_and_clears_hand() {
        let mut f = floor_with(&["a", "b"]);
        f.raise_hand("a").unwrap();
        assert_eq!(
            f.grant("a"),
            Ok(FloorChange::Holder {
                from: None,
                to: Some("a".into())
            })
        );
        assert!(f.may_speak("a"));
        assert_eq!(f.queue().count(), 0);
        // One holder at a time: granting b takes the floor from a.
        assert_eq!(
            f.grant("b"),
            Ok(FloorChange::Holder {
                from: Some("a".into()),
                to: Some("b".into())
            })
        );
        assert!(!f.may_speak("a"));
        assert!(f.may_speak("b"));
    }

    #[test]
    fn revoke_and_errors() {
        let mut f = floor_with(&["a"]);
        assert_eq!(f.revoke(), Err(FloorError::NobodyHolds));
        assert_eq!(f.grant("zz"), Err(FloorError::NotConnected("zz".into())));
        f.grant("a").unwrap();
        f.revoke().unwrap();
        assert!(!f.may_speak("a"));
        assert_eq!(f.holder(), None);
    }

    #[test]
    fn muted_holder_is_not_heard() {
        let mut f = floor_with(&["a"]);
        f.grant("a").unwrap();
        assert_eq!(
            f.set_muted("a", true),
            Ok(FloorChange::Muted("a".into(), true))
        );
        assert!(!f.may_speak("a"));
        assert_eq!(f.set_muted("a", true), Ok(FloorChange::None));
        f.set_muted("a", false).unwrap();
        assert!(f.may_speak("a"));
    }

    #[test]
    fn leaving_drops_hand_and_floor() {
        let mut f = floor_with(&["a", "b"]);
        f.raise_hand("b").unwrap();
        f.grant("a").unwrap();
        assert_eq!(
            f.leave("a"),
            FloorChange::Holder {
                from: Some("a".into()),
                to: None
            }
        );
        assert_eq!(f.leave("b"), FloorChange::Queue, "its hand went down");
        assert_eq!(f.queue().count(), 0);
        f.join("c");
        assert_eq!(
            f.leave("c"),
            FloorChange::None,
            "no hand, no floor: nothing"
        );
        assert_eq!(f.raise_hand("b"), Err(FloorError::NotConnected("b".into())));
    }

    #[test]
    fn a_restored_holder_holds_until_the_chair_changes_it() {
        let mut f = floor_with(&["b"]);
        f.restore(Some("a".into()), ["c".to_owned()]);
        assert_eq!(f.holder(), Some("a"), "held while it is away");
        assert!(f.is_muted("c"));
        assert!(f.may_speak("a"), "heard as soon as its media is back");
        f.join("a");
        assert_eq!(f.holder(), Some("a"), "reconnecting keeps it");
        assert_eq!(
            f.grant("b"),
            Ok(FloorChange::Holder {
                from: Some("a".into()),
                to: Some("b".into())
            }),
            "the chair's word wins"
        );
        let mut f = floor_with(&[]);
        f.restore(Some("a".into()), []);
        assert_eq!(
            f.revoke(),
            Ok(FloorChange::Holder {
                from: Some("a".into()),
                to: None
            }),
            "revoked before it came back"
        );
    }

    #[test]
    fn holder_lowering_hand_yields() {
        let mut f = floor_with(&["a"]);
        f.grant("a").unwrap();
        assert!(matches!(
            f.lower_hand("a"),
            FloorChange::Holder { to: None, .. }
        ));
        assert_eq!(f.lower_hand("a"), FloorChange::None);
    }
}
