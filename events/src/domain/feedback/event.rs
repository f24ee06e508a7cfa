//! What happened to a feedback item: the events, as stored in the log.

use serde::{Deserialize, Serialize};
use time::Date;

use super::FeedbackKind;
use crate::domain::EVENT_VERSION;

/// What happened to a feedback item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedbackEvent {
    /// Raised and received.
    FeedbackReceived {
        /// Meeting.
        meeting: String,
        /// Agenda item.
        agenda_item: Option<usize>,
        /// House.
        house: String,
        /// Content.
        content: String,
    },
    /// Classified.
    FeedbackClassified {
        /// Kind.
        kind: FeedbackKind,
    },
    /// Assigned, with a deadline.
    FeedbackAssigned {
        /// Official.
        official: String,
        /// Working days given.
        working_days: u32,
        /// Last day to answer.
        deadline: Date,
    },
    /// Deadline moved.
    DeadlineExtended {
        /// New last day.
        deadline: Date,
        /// Why.
        reason: String,
    },
    /// Sent elsewhere.
    FeedbackForwarded {
        /// To whom.
        to: String,
    },
    /// Answered.
    FeedbackAnswered {
        /// Answer.
        answer: String,
    },
    /// The house accepted the answer.
    AnswerConfirmed,
    /// The house reopened it.
    FeedbackReopened {
        /// Why.
        reason: String,
        /// New last day.
        deadline: Date,
    },
    /// Closed.
    FeedbackClosed,
    /// Withdrawn.
    FeedbackWithdrawn {
        /// Why.
        reason: Option<String>,
    },
    /// Past its deadline unanswered.
    FeedbackOverdue {
        /// The deadline that passed.
        deadline: Date,
    },
}

impl cqrs_es::DomainEvent for FeedbackEvent {
    fn event_type(&self) -> String {
        let s = match self {
            Self::FeedbackReceived { .. } => "FeedbackReceived",
            Self::FeedbackClassified { .. } => "FeedbackClassified",
            Self::FeedbackAssigned { .. } => "FeedbackAssigned",
            Self::DeadlineExtended { .. } => "DeadlineExtended",
            Self::FeedbackForwarded { .. } => "FeedbackForwarded",
            Self::FeedbackAnswered { .. } => "FeedbackAnswered",
            Self::AnswerConfirmed => "AnswerConfirmed",
            Self::FeedbackReopened { .. } => "FeedbackReopened",
            Self::FeedbackClosed => "FeedbackClosed",
            Self::FeedbackWithdrawn { .. } => "FeedbackWithdrawn",
            Self::FeedbackOverdue { .. } => "FeedbackOverdue",
        };
        s.to_owned()
    }
    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
