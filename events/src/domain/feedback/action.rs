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
    Classify { kind: FeedbackKind },
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
        /// The body, e.g. "UBND huyện"; at most 200 characters.
        to: String,
    },
    /// Answer it.
    Answer {
        /// At most 10,000 characters.
        answer: String,
    },
    /// The house accepts the answer.
    Confirm,
    /// The house says it was not resolved.
    Reopen {
        /// Why it was not resolved; required, at most 2,000 characters.
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
    /// The action's name, as in the API (`extend_deadline`).
    pub fn name(&self) -> String {
        crate::domain::tag(self)
    }
}
