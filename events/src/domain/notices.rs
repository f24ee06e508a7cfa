//! A notice the commune posts on the village bulletin boards (the house screens between
//! meetings): a title, a text, an optional picture, and the days it is valid.
//!
//! Rules:
//! - the chair or an official posts and withdraws notices; houses only read them;
//! - a notice is posted once and withdrawn at most once; a withdrawn notice stays in the log
//!   and leaves the boards;
//! - it is valid from one day to another, both included, at most 366 days, and not already
//!   over on the day it is posted (days in Vietnam's time);
//! - a picture is named by its content (`<sha256 hex>.png|jpg|webp`): the hub stores the
//!   bytes, the record keeps the name, type and size, so the log says which picture was
//!   shown.

use serde::{Deserialize, Serialize};
use time::Date;

use super::rules::{require_role, text};
use super::{domain_error, ActorRole, Command, Decide, Invalid, Services};

/// Longest title, characters.
pub const MAX_TITLE: usize = 200;
/// Longest text, characters.
pub const MAX_TEXT: usize = 5_000;
/// Longest validity, days.
pub const MAX_DAYS: i64 = 366;

/// A picture attached to a notice, stored by the hub under its content's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Picture {
    /// `<sha256 of the bytes, 64 hex digits>.<png|jpg|webp>`.
    pub name: String,
    /// `image/png`, `image/jpeg` or `image/webp`, matching the name's extension.
    pub content_type: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What can be asked of a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NoticeAction {
    /// Put a notice on the boards of a room's houses.
    Post {
        /// The room whose houses show it.
        room: String,
        /// One line, at most [`MAX_TITLE`] characters.
        title: String,
        /// At most [`MAX_TEXT`] characters.
        text: String,
        /// A picture uploaded before.
        #[serde(default)]
        picture: Option<Picture>,
        /// First day shown.
        valid_from: Date,
        /// Last day shown (included).
        valid_until: Date,
    },
    /// Take it off the boards.
    Withdraw {
        /// Why, if said (at most 500 characters).
        #[serde(default)]
        reason: Option<String>,
    },
}

/// What happened to a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NoticeEvent {
    /// Posted: shown on the room's boards from `valid_from` to `valid_until`.
    NoticePosted {
        /// Room whose boards show it.
        room: String,
        /// Trimmed title.
        title: String,
        /// Trimmed text.
        text: String,
        /// Attached picture.
        picture: Option<Picture>,
        /// First day shown.
        valid_from: Date,
        /// Last day shown (included).
        valid_until: Date,
    },
    /// Withdrawn before its end.
    NoticeWithdrawn {
        /// Why, if said.
        reason: Option<String>,
    },
}

crate::event!(NoticeEvent);

domain_error! {
    /// Why a notice command was refused: show the message; nothing was recorded.
    pub enum NoticeError {
        /// Post it first (or check the id).
        #[error("no such notice")]
        NotFound => NotFound,
        /// The id is taken: post under another id.
        #[error("the notice is already posted")]
        AlreadyPosted => State,
        /// Nothing to do: it is off the boards already.
        #[error("the notice is already withdrawn")]
        AlreadyWithdrawn => State,
    }
    /// Only the chair or an official may do this.
    Forbidden
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
enum Phase {
    #[default]
    New,
    Posted,
    Withdrawn,
}

/// One notice, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    phase: Phase,
    room: String,
}

fn picture(p: &Picture) -> Result<(), Invalid> {
    let bad = |reason: &str| Invalid {
        field: "picture",
        reason: reason.into(),
    };
    let (hash, ext) = p
        .name
        .split_once('.')
        .ok_or_else(|| bad("the name is <sha256>.<png|jpg|webp>"))?;
    if hash.len() != 64
        || !hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad("the name is <sha256>.<png|jpg|webp>"));
    }
    let ctype = match ext {
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "webp" => "image/webp",
        _ => return Err(bad("a PNG, JPEG or WebP picture")),
    };
    if p.content_type != ctype {
        return Err(bad("its type does not match its name"));
    }
    if p.bytes == 0 {
        return Err(bad("empty"));
    }
    Ok(())
}

impl Notice {
    /// The room whose boards show it.
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl Decide for Notice {
    const TYPE: &'static str = "notice";
    type Action = NoticeAction;
    type Event = NoticeEvent;
    type Error = NoticeError;

    fn decide(
        &self,
        cmd: &Command<NoticeAction>,
        _: &Services,
    ) -> Result<Vec<NoticeEvent>, NoticeError> {
        let staff = [ActorRole::Chair, ActorRole::Official];
        match &cmd.action {
            NoticeAction::Post {
                room,
                title,
                text: body,
                picture: pic,
                valid_from,
                valid_until,
            } => {
                require_role(&cmd.actor, &staff, "post a notice")?;
                if self.phase != Phase::New {
                    return Err(NoticeError::AlreadyPosted);
                }
                text("room", room, 1..=64)?;
                text("title", title, 1..=MAX_TITLE)?;
                text("text", body, 1..=MAX_TEXT)?;
                if let Some(p) = pic {
                    picture(p)?;
                }
                let until = |reason: String| Invalid {
                    field: "valid_until",
                    reason,
                };
                if valid_until < valid_from {
                    return Err(until("before valid_from".into()).into());
                }
                if (*valid_until - *valid_from).whole_days() >= MAX_DAYS {
                    return Err(until(format!("more than {MAX_DAYS} days after valid_from")).into());
                }
                let today = cmd.at.to_offset(super::workdays::VIETNAM).date();
                if *valid_until < today {
                    return Err(until(
                        "the notice would be over before it is shown (before today)".into(),
                    )
                    .into());
                }
                Ok(vec![NoticeEvent::NoticePosted {
                    room: room.trim().to_owned(),
                    title: title.trim().to_owned(),
                    text: body.trim().to_owned(),
                    picture: pic.clone(),
                    valid_from: *valid_from,
                    valid_until: *valid_until,
                }])
            }
            NoticeAction::Withdraw { reason } => {
                require_role(&cmd.actor, &staff, "withdraw a notice")?;
                match self.phase {
                    Phase::New => return Err(NoticeError::NotFound),
                    Phase::Withdrawn => return Err(NoticeError::AlreadyWithdrawn),
                    Phase::Posted => {}
                }
                let reason = match reason.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(r) => {
                        text("reason", r, 1..=500)?;
                        Some(r.to_owned())
                    }
                };
                Ok(vec![NoticeEvent::NoticeWithdrawn { reason }])
            }
        }
    }

    fn apply_event(&mut self, e: &NoticeEvent) {
        match e {
            NoticeEvent::NoticePosted { room, .. } => {
                self.phase = Phase::Posted;
                self.room.clone_from(room);
            }
            NoticeEvent::NoticeWithdrawn { .. } => self.phase = Phase::Withdrawn,
        }
    }
}

crate::aggregate!(Notice);

#[cfg(test)]
mod tests {
    use super::NoticeAction as A;
    use super::NoticeEvent as E;
    use super::*;
    use crate::domain::testing::{chair, house, official, Given, NOW};
    use time::macros::date;

    fn given(events: Vec<E>) -> Given<Notice> {
        Given::<Notice>::events(events)
    }

    fn pic() -> Picture {
        Picture {
            name: format!("{}.png", "ab".repeat(32)),
            content_type: "image/png".into(),
            bytes: 1234,
        }
    }

    /// The notice of these tests, shown from 23 November until `valid_until`.
    fn posted_until(valid_until: Date) -> E {
        E::NoticePosted {
            room: "demo".into(),
            title: "Lịch tiêm phòng dại".into(),
            text: "Thứ Bảy này tại nhà văn hoá thôn 2.".into(),
            picture: Some(pic()),
            valid_from: date!(2026 - 11 - 23),
            valid_until,
        }
    }

    fn posted() -> E {
        posted_until(date!(2026 - 11 - 30))
    }

    /// The chair's post of that notice, its title typed with spaces around.
    fn post() -> A {
        A::Post {
            room: "demo".into(),
            title: "  Lịch tiêm phòng dại  ".into(),
            text: "Thứ Bảy này tại nhà văn hoá thôn 2.".into(),
            picture: Some(pic()),
            valid_from: date!(2026 - 11 - 23),
            valid_until: date!(2026 - 11 - 30),
        }
    }

    fn post_with(f: impl FnOnce(&mut A)) -> A {
        let mut a = post();
        f(&mut a);
        a
    }

    #[test]
    fn the_chair_or_an_official_posts_a_notice_once() {
        given(vec![]).when(chair(), post()).then(vec![posted()]);
        given(vec![])
            .when(official("can-bo-1"), post())
            .then(vec![posted()]);
        given(vec![posted()])
            .when(chair(), post())
            .then_error("the notice is already posted");
    }

    #[test]
    fn a_house_only_reads_notices() {
        given(vec![])
            .when(house("house-1"), post())
            .then_error("a house may not post a notice");
        given(vec![posted()])
            .when(house("house-1"), A::Withdraw { reason: None })
            .then_error("a house may not withdraw a notice");
    }

    #[test]
    fn title_and_text_are_required_and_bounded() {
        for (field, value, error) in [
            (
                "title",
                "   ".to_owned(),
                "invalid title: must not be empty",
            ),
            (
                "text",
                "x".repeat(MAX_TEXT + 1),
                "invalid text: longer than 5000 characters",
            ),
        ] {
            let action = post_with(|a| {
                if let A::Post { title, text, .. } = a {
                    *if field == "title" { title } else { text } = value;
                }
            });
            given(vec![]).when(chair(), action).then_error(error);
        }
    }

    #[test]
    fn the_validity_runs_forward_within_a_year_and_not_into_the_past() {
        let dates = |from: Date, until: Date| {
            post_with(|a| {
                if let A::Post {
                    valid_from,
                    valid_until,
                    ..
                } = a
                {
                    *valid_from = from;
                    *valid_until = until;
                }
            })
        };
        given(vec![])
            .when(chair(), dates(date!(2026 - 11 - 30), date!(2026 - 11 - 23)))
            .then_error("invalid valid_until: before valid_from");
        given(vec![])
            .when(chair(), dates(date!(2026 - 11 - 23), date!(2027 - 11 - 24)))
            .then_error("invalid valid_until: more than 366 days after valid_from");
        // NOW is 2026-11-23 in Vietnam: a notice that ended yesterday is refused; one day
        // long, today, is fine.
        given(vec![])
            .when(chair(), dates(date!(2026 - 11 - 20), date!(2026 - 11 - 22)))
            .then_error(
                "invalid valid_until: the notice would be over before it is shown (before today)",
            );
        assert_eq!(NOW.date(), date!(2026 - 11 - 23));
        given(vec![])
            .when(chair(), dates(date!(2026 - 11 - 23), date!(2026 - 11 - 23)))
            .then(vec![posted_until(date!(2026 - 11 - 23))]);
    }

    #[test]
    fn a_picture_is_named_by_its_content_and_typed() {
        let with = |p: Picture| {
            post_with(|a| {
                if let A::Post { picture, .. } = a {
                    *picture = Some(p)
                }
            })
        };
        for (picture, error) in [
            (
                Picture {
                    name: "../../signing.key".into(),
                    ..pic()
                },
                "invalid picture: the name is <sha256>.<png|jpg|webp>",
            ),
            (
                Picture {
                    name: format!("{}.svg", "ab".repeat(32)),
                    content_type: "image/svg+xml".into(),
                    ..pic()
                },
                "invalid picture: a PNG, JPEG or WebP picture",
            ),
            (
                Picture {
                    content_type: "image/jpeg".into(),
                    ..pic()
                },
                "invalid picture: its type does not match its name",
            ),
        ] {
            given(vec![]).when(chair(), with(picture)).then_error(error);
        }
    }

    #[test]
    fn a_notice_is_withdrawn_once() {
        given(vec![posted()])
            .when(
                official("can-bo-1"),
                A::Withdraw {
                    reason: Some(" đã hoãn ".into()),
                },
            )
            .then(vec![E::NoticeWithdrawn {
                reason: Some("đã hoãn".into()),
            }]);
        given(vec![posted(), E::NoticeWithdrawn { reason: None }])
            .when(chair(), A::Withdraw { reason: None })
            .then_error("the notice is already withdrawn");
        given(vec![])
            .when(chair(), A::Withdraw { reason: None })
            .then_error("no such notice");
    }
}
