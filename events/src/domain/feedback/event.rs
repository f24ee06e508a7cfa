//! What happened to a feedback item: the events, as stored in the log.

use serde::{Deserialize, Serialize};
use time::Date;

use super::FeedbackKind;

/// What happened to a feedback item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedbackEvent {
    /// Raised in a meeting and received.
    FeedbackReceived {
        /// The meeting it was raised in.
        meeting: String,
        /// The agenda item it concerns (from 0), if any.
        agenda_item: Option<usize>,
        /// The house that raised it; only that house (and staff) may see the item.
        house: String,
        /// What the villagers said, trimmed, at most 10,000 characters.
        content: String,
    },
    /// Staff said what kind of request it is.
    FeedbackClassified { kind: FeedbackKind },
    /// Assigned, with a deadline.
    FeedbackAssigned {
        /// The official's id.
        official: String,
        /// Working days given.
        working_days: u32,
        /// Last day to answer.
        deadline: Date,
    },
    /// The deadline moved, counted in working days from the old one.
    DeadlineExtended {
        /// New last day.
        deadline: Date,
        reason: String,
    },
    /// Sent to another body competent for it.
    FeedbackForwarded {
        /// The body, e.g. "UBND huyện".
        to: String,
    },
    /// The assigned official answered.
    FeedbackAnswered { answer: String },
    /// The house accepted the answer.
    AnswerConfirmed,
    /// The house reopened it.
    FeedbackReopened {
        reason: String,
        /// New last day.
        deadline: Date,
    },
    /// Filed as done.
    FeedbackClosed,
    /// The house withdrew it.
    FeedbackWithdrawn { reason: Option<String> },
    /// Past its deadline unanswered.
    FeedbackOverdue {
        /// The deadline that passed.
        deadline: Date,
    },
}

crate::event!(FeedbackEvent);
