//! The checks every aggregate makes before it decides: who may act, and whether a field is
//! well formed. One wording for each refusal, whichever aggregate refuses.

use std::ops::RangeInclusive;

use super::{Actor, ActorRole};

/// A field of a command is malformed: the caller should fix the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct Invalid {
    /// The field, as named in the API.
    pub field: &'static str,
    /// What is wrong with it, for the user.
    pub reason: String,
}

/// The token's role (or house) may not do this: the caller should not retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {role} may not {action}", article(role))]
pub struct Forbidden {
    /// The actor's role (`chair`, `house`, `official`, `system`).
    pub role: &'static str,
    /// What it tried, as a verb phrase ("grant the floor").
    pub action: &'static str,
}

pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Free text of `chars` characters once trimmed (a range from 0 allows it empty). The bound
/// is on what the user sent, so nothing longer than `chars.end()` is ever stored.
pub fn text(field: &'static str, v: &str, chars: RangeInclusive<usize>) -> Result<(), Invalid> {
    let n = v.trim().chars().count();
    if n < *chars.start() {
        return Err(Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    let max = *chars.end();
    if n > max || v.chars().count() > max {
        return Err(Invalid {
            field,
            reason: format!("longer than {max} characters"),
        });
    }
    Ok(())
}

/// An id: 1 to 64 ASCII letters, digits, `-` or `_` (safe in a URL, a file name, a log line).
pub fn id(field: &'static str, v: &str) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            field,
            reason: "1 to 64 letters, digits, '-' or '_'".into(),
        })
    }
}

/// The actor has one of `roles`.
pub fn require_role(
    actor: &Actor,
    roles: &[ActorRole],
    action: &'static str,
) -> Result<(), Forbidden> {
    if roles.contains(&actor.role) {
        Ok(())
    } else {
        Err(Forbidden {
            role: actor.role.as_str(),
            action,
        })
    }
}

/// The actor is `house` itself, or has one of `roles` (which may act for any house).
pub fn require_house_or(
    actor: &Actor,
    house: &str,
    roles: &[ActorRole],
    action: &'static str,
) -> Result<(), Forbidden> {
    if actor.role == ActorRole::House && actor.id == house {
        return Ok(());
    }
    require_role(actor, roles, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_for_emptiness_and_bounded_as_sent() {
        assert_eq!(
            text("title", "  ", 1..=10).unwrap_err().to_string(),
            "invalid title: must not be empty"
        );
        assert!(text("reason", "", 0..=10).is_ok());
        assert!(text("title", "Họp dân", 1..=7).is_ok());
        assert_eq!(
            text("title", "Họp dân quý IV", 1..=7)
                .unwrap_err()
                .to_string(),
            "invalid title: longer than 7 characters"
        );
        assert!(text("title", " Họp dân ", 1..=7).is_err());
    }

    #[test]
    fn ids_are_url_safe() {
        assert!(id("cluster", "thon-3_a").is_ok());
        for bad in ["", "thôn", "a b", "a/b", &"x".repeat(65)] {
            assert_eq!(
                id("cluster", bad).unwrap_err().to_string(),
                "invalid cluster: 1 to 64 letters, digits, '-' or '_'"
            );
        }
    }

    #[test]
    fn a_house_acts_for_itself_the_roles_named_for_any() {
        let h1 = Actor::new(ActorRole::House, "house-1");
        assert!(require_house_or(&h1, "house-1", &[], "x").is_ok());
        assert_eq!(
            require_house_or(
                &h1,
                "house-2",
                &[ActorRole::Chair],
                "raise another house's hand"
            )
            .unwrap_err()
            .to_string(),
            "a house may not raise another house's hand"
        );
        let official = Actor::new(ActorRole::Official, "o");
        assert_eq!(
            require_role(&official, &[ActorRole::Chair], "open a meeting")
                .unwrap_err()
                .to_string(),
            "an official may not open a meeting"
        );
    }
}
