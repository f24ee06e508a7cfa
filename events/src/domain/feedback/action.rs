//! What can be asked of a feedback item: the commands.

use serde::{Deserialize, Serialize};

use super::FeedbackKind;

/// What can be asked of a feedback item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedbackAction {
    /// A house (or the chair for it) raises an item in a meeting.
    Raise {
        /// The meeting it was raised in.
        meeting: String,
        /// The agenda item it concerns, if any.
        #[serde(default)]
        agenda_item: Option<usize>,
        /// The house raising it.
        house: String,
        /// What the villagers said.
        content: String,
    },
    /// Say what kind of request it is.
    Classify {
        /// Kind.
        kind: FeedbackKind,
    },
    /// Give it to an official.
    Assign {
        /// The official's id.
        official: String,
        /// Working days to answer; the kind's default when absent.
        #[serde(default)]
        working_days: Option<u32>,
    },
    /// Move the deadline.
    ExtendDeadline {
        /// Working days added to the current deadline.
        working_days: u32,
        /// Why; required.
        reason: String,
    },
    /// Send it to the body competent for it.
    Forward {
        /// Which body.
        to: String,
    },
    /// Answer it.
    Answer {
        /// The answer.
        answer: String,
    },
    /// The house accepts the answer.
    Confirm,
    /// The house says it was not resolved.
    Reopen {
        /// Why.
        reason: String,
    },
    /// File it as done.
    Close,
    /// The house withdraws it.
    Withdraw {
        /// Why (optional).
        #[serde(default)]
        reason: Option<String>,
    },
    /// The timer checks the deadline.
    MarkOverdue,
}

impl FeedbackAction {
    /// Name as in the API.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Raise { .. } => "raise",
            Self::Classify { .. } => "classify",
            Self::Assign { .. } => "assign",
            Self::ExtendDeadline { .. } => "extend_deadline",
            Self::Forward { .. } => "forward",
            Self::Answer { .. } => "answer",
            Self::Confirm => "confirm",
            Self::Reopen { .. } => "reopen",
            Self::Close => "close",
            Self::Withdraw { .. } => "withdraw",
            Self::MarkOverdue => "mark_overdue",
        }
    }
}
