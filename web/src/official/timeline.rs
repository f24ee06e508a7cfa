//! What the officials' pictures and the log export need from the whole log, folded event by
//! event and kept up to date incrementally ([`LogIndex::apply`] is pure; the hub feeds it
//! what was appended since it last looked):
//! - per feedback item, when its deadline ran: the spans during which it was assigned with a
//!   deadline, so that "overdue items over time" counts, for any past day, the items that were
//!   assigned with their deadline passed at the end of that day (the rule the deadline timer
//!   applies, without its lag);
//! - per aggregate of the log, the position it first appears at, so that an export for one
//!   room can check that the log holds nothing of another room up to the export's head.

use std::collections::HashMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use dinh_events::chain::StoredEvent;
use dinh_events::domain::feedback::FeedbackEvent;
use dinh_events::domain::workdays::{Calendar, VIETNAM};

/// The deadline history of one feedback item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemLife {
    /// The meeting it was raised in.
    pub meeting: String,
    /// Position of its `FeedbackReceived`.
    pub received_at: u64,
    /// In log order: from this time on, assigned with this deadline (`Some`), or not running a
    /// deadline (`None`: answered, forwarded, closed, withdrawn, confirmed).
    pub changes: Vec<(OffsetDateTime, Option<Date>)>,
}

impl ItemLife {
    /// The deadline running at `t`, if the item was assigned then.
    fn deadline_at(&self, t: OffsetDateTime) -> Option<Date> {
        let i = self.changes.partition_point(|(at, _)| *at <= t);
        i.checked_sub(1).and_then(|i| self.changes[i].1)
    }
}

/// The log folded for the officials' page.
#[derive(Debug, Clone, Default)]
pub struct LogIndex {
    after: u64,
    items: HashMap<String, ItemLife>,
    /// (aggregate type, id) → the first position it appears at.
    aggregates: HashMap<(String, String), u64>,
}

/// The number of overdue items at the end of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// The day, Vietnam time.
    pub date: Date,
    /// Items assigned with their deadline passed at the end of that day (for today: now).
    pub overdue: usize,
}

impl LogIndex {
    /// The last position folded in.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Fold one event; events must come in position order, each once (an event at or below
    /// [`Self::position`] is ignored).
    pub fn apply(&mut self, ev: &StoredEvent) {
        if ev.position <= self.after {
            return;
        }
        self.after = ev.position;
        self.aggregates
            .entry((ev.aggregate_type.clone(), ev.aggregate_id.clone()))
            .or_insert(ev.position);
        if ev.aggregate_type != "feedback" {
            return;
        }
        let Ok(e) = serde_json::from_value::<FeedbackEvent>(ev.payload.clone()) else {
            tracing::debug!(
                position = ev.position,
                "feedback event of unknown shape skipped"
            );
            return;
        };
        let Ok(at) = OffsetDateTime::parse(&ev.recorded_at, &Rfc3339) else {
            return;
        };
        let life = self.items.entry(ev.aggregate_id.clone()).or_default();
        use FeedbackEvent as E;
        let change = match e {
            E::FeedbackReceived { meeting, .. } => {
                life.meeting = meeting;
                life.received_at = ev.position;
                return;
            }
            E::FeedbackAssigned { deadline, .. }
            | E::DeadlineExtended { deadline, .. }
            | E::FeedbackReopened { deadline, .. } => Some(deadline),
            E::FeedbackAnswered { .. }
            | E::FeedbackForwarded { .. }
            | E::FeedbackClosed
            | E::FeedbackWithdrawn { .. }
            | E::AnswerConfirmed => None,
            E::FeedbackClassified { .. } | E::FeedbackOverdue { .. } => return,
        };
        life.changes.push((at, change));
    }

    /// One item's life.
    pub fn item(&self, id: &str) -> Option<&ItemLife> {
        self.items.get(id)
    }

    /// Every aggregate that appears at or before `upto`: (type, id).
    pub fn aggregates_upto(&self, upto: u64) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.aggregates
            .iter()
            .filter(move |(_, first)| **first <= upto)
            .map(|((t, id), _)| (t.as_str(), id.as_str()))
    }

    /// Overdue items at the end of each of the `days` days up to today (today counted at
    /// `now`), oldest first, among the items raised in a meeting `keep` accepts.
    pub fn overdue_series(
        &self,
        keep: impl Fn(&str) -> bool,
        days: u32,
        now: OffsetDateTime,
    ) -> Vec<DayCount> {
        let today = now.to_offset(VIETNAM).date();
        let instants: Vec<(Date, OffsetDateTime)> = (0..days)
            .rev()
            .filter_map(|back| {
                let date = today.checked_sub(time::Duration::days(back.into()))?;
                let t = if back == 0 {
                    now
                } else {
                    date.with_hms(23, 59, 59).ok()?.assume_offset(VIETNAM)
                };
                Some((date, t))
            })
            .collect();
        let mut out: Vec<DayCount> = instants
            .iter()
            .map(|(date, _)| DayCount {
                date: *date,
                overdue: 0,
            })
            .collect();
        for life in self.items.values().filter(|l| keep(&l.meeting)) {
            if life.changes.is_empty() {
                continue;
            }
            for (slot, (_, t)) in out.iter_mut().zip(&instants) {
                if life
                    .deadline_at(*t)
                    .is_some_and(|d| Calendar::is_past(d, *t))
                {
                    slot.overdue += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    fn ev(
        position: u64,
        kind: &str,
        id: &str,
        at: &str,
        payload: serde_json::Value,
    ) -> StoredEvent {
        StoredEvent {
            position,
            aggregate_type: kind.into(),
            aggregate_id: id.into(),
            sequence: 1,
            event_type: payload["type"].as_str().unwrap_or("").into(),
            event_version: "1".into(),
            event_id: format!("e{position}"),
            command_id: None,
            actor: "official:x".into(),
            recorded_at: at.into(),
            payload,
            hash: String::new(),
        }
    }

    fn log() -> LogIndex {
        let mut ix = LogIndex::default();
        let events = [
            ev(
                1,
                "meeting",
                "m1",
                "2026-11-02T01:00:00Z",
                json!({"type": "meeting_opened"}),
            ),
            ev(
                2,
                "feedback",
                "a",
                "2026-11-02T02:00:00Z",
                json!({"type": "feedback_received", "meeting": "m1", "agenda_item": null, "house": "h1", "content": "x"}),
            ),
            ev(
                3,
                "feedback",
                "b",
                "2026-11-02T02:00:00Z",
                json!({"type": "feedback_received", "meeting": "m2", "agenda_item": null, "house": "h1", "content": "y"}),
            ),
            // a: due Wed 4 Nov, answered Fri 6 Nov (overdue Thu and Fri until the answer).
            ev(
                4,
                "feedback",
                "a",
                "2026-11-02T03:00:00Z",
                json!({"type": "feedback_assigned", "official": "o", "working_days": 2, "deadline": "2026-11-04"}),
            ),
            ev(
                5,
                "feedback",
                "a",
                "2026-11-06T03:00:00Z",
                json!({"type": "feedback_answered", "answer": "ok"}),
            ),
            // b: due Tue 3 Nov, extended on Thu 5 Nov to Mon 9 Nov, still open.
            ev(
                6,
                "feedback",
                "b",
                "2026-11-02T03:00:00Z",
                json!({"type": "feedback_assigned", "official": "o", "working_days": 1, "deadline": "2026-11-03"}),
            ),
            ev(
                7,
                "feedback",
                "b",
                "2026-11-05T03:00:00Z",
                json!({"type": "deadline_extended", "deadline": "2026-11-09", "reason": "r"}),
            ),
            ev(
                8,
                "loudspeakers",
                "demo",
                "2026-11-05T03:00:00Z",
                json!({"type": "x"}),
            ),
        ];
        for e in &events {
            ix.apply(e);
        }
        // Applying the same events again changes nothing.
        for e in &events {
            ix.apply(e);
        }
        ix
    }

    #[test]
    fn overdue_series_follows_deadlines_answers_and_extensions() {
        let ix = log();
        assert_eq!(ix.position(), 8);
        let now = datetime!(2026-11-11 09:00 +07);
        let series = ix.overdue_series(|_| true, 10, now);
        let got: Vec<(Date, usize)> = series.iter().map(|d| (d.date, d.overdue)).collect();
        assert_eq!(
            got,
            vec![
                (date!(2026 - 11 - 02), 0),
                (date!(2026 - 11 - 03), 0), // b due today: not past yet
                (date!(2026 - 11 - 04), 1), // b past; a due today
                (date!(2026 - 11 - 05), 1), // a past; b extended to the 9th at 10:00
                (date!(2026 - 11 - 06), 0), // a answered
                (date!(2026 - 11 - 07), 0),
                (date!(2026 - 11 - 08), 0),
                (date!(2026 - 11 - 09), 0),
                (date!(2026 - 11 - 10), 1), // b past its new deadline
                (date!(2026 - 11 - 11), 1),
            ]
        );
        let only_m1 = ix.overdue_series(|m| m == "m1", 10, now);
        assert_eq!(only_m1[3].overdue, 1);
        assert_eq!(only_m1[9].overdue, 0);
    }

    #[test]
    fn aggregates_are_known_from_their_first_position() {
        let ix = log();
        let mut upto3: Vec<_> = ix.aggregates_upto(3).collect();
        upto3.sort();
        assert_eq!(
            upto3,
            [("feedback", "a"), ("feedback", "b"), ("meeting", "m1")]
        );
        assert_eq!(ix.aggregates_upto(8).count(), 4);
        assert_eq!(ix.item("a").unwrap().received_at, 2);
        assert_eq!(ix.item("b").unwrap().meeting, "m2");
    }
}
