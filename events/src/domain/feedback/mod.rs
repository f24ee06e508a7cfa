//! Citizen feedback (phản ánh, kiến nghị) raised in a meeting, through its whole life.
//!
//! ```text
//! received ─classify─▶ classified ─assign─▶ assigned ─answer─▶ answered ─confirm─▶ confirmed
//!    │                     │                 │  ▲ extend             │  ▲                │
//!    │                     └──forward──▶ forwarded          reopen ◀─┘  └──── reopen ◀───┘
//!    └── withdraw (until answered)                     close: answered, confirmed, forwarded
//! ```
//! A timer appends `FeedbackOverdue` when an assigned item passes its deadline; extending the
//! deadline clears it. Deadlines count working days ([`super::workdays`]).

use serde::{Deserialize, Serialize};
use time::Date;

use super::rules::{require_house_or, require_role, text};
use super::workdays::Calendar;
use super::{domain_error, ActorRole, Command, Decide, Forbidden, Invalid, Services};

mod action;
mod event;

pub use action::FeedbackAction;
pub use event::FeedbackEvent;

/// What kind of request it is, which sets its default deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// Phản ánh, kiến nghị: feedback or a petition.
    Feedback,
    /// Khiếu nại: a complaint (Luật Khiếu nại 2011).
    Complaint,
    /// Tố cáo: a denunciation (Luật Tố cáo 2018). The raiser's identity is protected.
    Denunciation,
}

impl FeedbackKind {
    /// Working days to answer when the assignment does not say.
    pub fn default_working_days(self) -> u32 {
        match self {
            Self::Feedback => 15,
            Self::Complaint | Self::Denunciation => 30,
        }
    }

    /// Name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feedback => "feedback",
            Self::Complaint => "complaint",
            Self::Denunciation => "denunciation",
        }
    }
}

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not raised yet.
    #[default]
    New,
    /// Received, not classified.
    Received,
    /// Classified, not assigned.
    Classified,
    /// With an official, to answer by the deadline.
    Assigned,
    /// Answered; the house may confirm or reopen.
    Answered,
    /// The house confirmed the answer.
    Confirmed,
    /// Sent to another body that is competent for it.
    Forwarded,
    /// Filed as done.
    Closed,
    /// The house withdrew it.
    Withdrawn,
}

impl Status {
    /// Name as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Received => "received",
            Self::Classified => "classified",
            Self::Assigned => "assigned",
            Self::Answered => "answered",
            Self::Confirmed => "confirmed",
            Self::Forwarded => "forwarded",
            Self::Closed => "closed",
            Self::Withdrawn => "withdrawn",
        }
    }
}

domain_error! {
    /// Why a feedback command was refused: show the message, nothing was recorded.
    pub enum FeedbackError {
        /// Raise it first (or check the id).
        #[error("no such feedback item")]
        NotFound => NotFound,
        /// The id is taken.
        #[error("the feedback item already exists")]
        AlreadyRaised => State,
        /// The step does not fit where the item is.
        #[error("cannot {action} an item that is {status}")]
        WrongStatus {
            /// The action's name, as in the API.
            action: String,
            status: &'static str,
        } => State,
    }
    /// The token's role or house may not do this.
    Forbidden
}

/// One feedback item, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    status: Status,
    house: String,
    kind: Option<FeedbackKind>,
    assignee: Option<String>,
    deadline: Option<Date>,
    overdue: bool,
}

/// A deadline of 1 to 120 working days.
fn days(field: &'static str, n: u32) -> Result<u32, Invalid> {
    if n == 0 || n > 120 {
        return Err(Invalid {
            field,
            reason: "must be between 1 and 120 working days".into(),
        });
    }
    Ok(n)
}

impl Feedback {
    /// Where the item is in its life.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The house that raised it.
    pub fn house(&self) -> &str {
        &self.house
    }

    fn wrong(&self, action: &str) -> FeedbackError {
        if self.status == Status::New {
            FeedbackError::NotFound
        } else {
            FeedbackError::WrongStatus {
                action: action.to_owned(),
                status: self.status.as_str(),
            }
        }
    }

    /// The house that raised the item, or the chair for it.
    fn require_raiser(&self, actor: &super::Actor, action: &'static str) -> Result<(), Forbidden> {
        require_house_or(actor, &self.house, &[ActorRole::Chair], action)
    }
}

impl Decide for Feedback {
    const TYPE: &'static str = "feedback";
    type Action = FeedbackAction;
    type Event = FeedbackEvent;
    type Error = FeedbackError;

    fn decide(
        &self,
        cmd: &Command<FeedbackAction>,
        services: &Services,
    ) -> Result<Vec<FeedbackEvent>, FeedbackError> {
        let calendar = &services.calendar;
        use FeedbackAction as A;
        use FeedbackEvent as E;
        use Status as S;
        let actor = &cmd.actor;
        let staff = [ActorRole::Chair, ActorRole::Official];
        let action = cmd.action.name();
        match &cmd.action {
            A::Raise {
                meeting,
                agenda_item,
                house,
                content,
            } => {
                require_house_or(
                    actor,
                    house,
                    &[ActorRole::Chair],
                    "raise feedback for another house",
                )?;
                if self.status != S::New {
                    return Err(FeedbackError::AlreadyRaised);
                }
                text("meeting", meeting, 1..=128)?;
                text("house", house, 1..=64)?;
                text("content", content, 1..=10_000)?;
                Ok(vec![E::FeedbackReceived {
                    meeting: meeting.clone(),
                    agenda_item: *agenda_item,
                    house: house.clone(),
                    content: content.trim().to_owned(),
                }])
            }
            A::Classify { kind } => {
                require_role(actor, &staff, "classify feedback")?;
                match self.status {
                    S::Received | S::Classified if self.kind != Some(*kind) => {
                        Ok(vec![E::FeedbackClassified { kind: *kind }])
                    }
                    S::Classified => Ok(vec![]),
                    _ => Err(self.wrong(&action)),
                }
            }
            A::Assign {
                official,
                working_days,
            } => {
                require_role(actor, &staff, "assign feedback")?;
                let kind = match (self.status, self.kind) {
                    (S::Classified | S::Assigned, Some(k)) => k,
                    _ => return Err(self.wrong(&action)),
                };
                text("official", official, 1..=64)?;
                let n = days(
                    "working_days",
                    working_days.unwrap_or(kind.default_working_days()),
                )?;
                Ok(vec![E::FeedbackAssigned {
                    official: official.clone(),
                    working_days: n,
                    deadline: calendar.add_working_days(cmd.at, n),
                }])
            }
            A::ExtendDeadline {
                working_days,
                reason,
            } => {
                require_role(actor, &staff, "extend a deadline")?;
                let (S::Assigned, Some(deadline)) = (self.status, self.deadline) else {
                    return Err(self.wrong(&action));
                };
                let n = days("working_days", *working_days)?;
                text("reason", reason, 1..=2_000)?;
                let from = deadline
                    .with_hms(12, 0, 0)
                    .expect("noon exists")
                    .assume_offset(super::workdays::VIETNAM);
                Ok(vec![E::DeadlineExtended {
                    deadline: calendar.add_working_days(from, n),
                    reason: reason.trim().to_owned(),
                }])
            }
            A::Forward { to } => {
                require_role(actor, &staff, "forward feedback")?;
                if !matches!(self.status, S::Received | S::Classified) {
                    return Err(self.wrong(&action));
                }
                text("to", to, 1..=200)?;
                Ok(vec![E::FeedbackForwarded { to: to.clone() }])
            }
            A::Answer { answer } => {
                require_role(actor, &staff, "answer feedback")?;
                if actor.role == ActorRole::Official
                    && self.assignee.as_deref() != Some(&actor.id)
                    && self.status == S::Assigned
                {
                    return Err(Forbidden {
                        role: "official",
                        action: "answer an item assigned to someone else",
                    }
                    .into());
                }
                if self.status != S::Assigned {
                    return Err(self.wrong(&action));
                }
                text("answer", answer, 1..=10_000)?;
                Ok(vec![E::FeedbackAnswered {
                    answer: answer.trim().to_owned(),
                }])
            }
            A::Confirm => {
                self.require_raiser(actor, "confirm another house's answer")?;
                if self.status != S::Answered {
                    return Err(self.wrong(&action));
                }
                Ok(vec![E::AnswerConfirmed])
            }
            A::Reopen { reason } => {
                self.require_raiser(actor, "reopen another house's item")?;
                if !matches!(self.status, S::Answered | S::Confirmed | S::Closed)
                    || self.assignee.is_none()
                {
                    return Err(self.wrong(&action));
                }
                text("reason", reason, 1..=2_000)?;
                let kind = self.kind.unwrap_or(FeedbackKind::Feedback);
                Ok(vec![E::FeedbackReopened {
                    reason: reason.trim().to_owned(),
                    deadline: calendar.add_working_days(cmd.at, kind.default_working_days()),
                }])
            }
            A::Close => {
                require_role(actor, &staff, "close feedback")?;
                if !matches!(self.status, S::Answered | S::Confirmed | S::Forwarded) {
                    return Err(self.wrong(&action));
                }
                Ok(vec![E::FeedbackClosed])
            }
            A::Withdraw { reason } => {
                self.require_raiser(actor, "withdraw another house's item")?;
                if !matches!(self.status, S::Received | S::Classified | S::Assigned) {
                    return Err(self.wrong(&action));
                }
                if let Some(r) = reason {
                    text("reason", r, 1..=2_000)?;
                }
                Ok(vec![E::FeedbackWithdrawn {
                    reason: reason.as_ref().map(|r| r.trim().to_owned()),
                }])
            }
            A::MarkOverdue => {
                require_role(actor, &[ActorRole::System], "mark an item overdue")?;
                match (self.status, self.deadline) {
                    (S::Assigned, Some(deadline))
                        if !self.overdue && Calendar::is_past(deadline, cmd.at) =>
                    {
                        Ok(vec![E::FeedbackOverdue { deadline }])
                    }
                    (S::New, _) => Err(FeedbackError::NotFound),
                    _ => Ok(vec![]),
                }
            }
        }
    }

    fn apply_event(&mut self, event: &FeedbackEvent) {
        use FeedbackEvent as E;
        match event {
            E::FeedbackReceived { house, .. } => {
                self.status = Status::Received;
                self.house = house.clone();
            }
            E::FeedbackClassified { kind } => {
                self.status = Status::Classified;
                self.kind = Some(*kind);
            }
            E::FeedbackAssigned {
                official, deadline, ..
            } => {
                self.status = Status::Assigned;
                self.assignee = Some(official.clone());
                self.deadline = Some(*deadline);
                self.overdue = false;
            }
            E::DeadlineExtended { deadline, .. } => {
                self.deadline = Some(*deadline);
                self.overdue = false;
            }
            E::FeedbackForwarded { .. } => self.status = Status::Forwarded,
            E::FeedbackAnswered { .. } => self.status = Status::Answered,
            E::AnswerConfirmed => self.status = Status::Confirmed,
            E::FeedbackReopened { deadline, .. } => {
                self.status = Status::Assigned;
                self.deadline = Some(*deadline);
                self.overdue = false;
            }
            E::FeedbackClosed => self.status = Status::Closed,
            E::FeedbackWithdrawn { .. } => self.status = Status::Withdrawn,
            E::FeedbackOverdue { .. } => self.overdue = true,
        }
    }
}

crate::aggregate!(Feedback);

#[cfg(test)]
mod tests;
