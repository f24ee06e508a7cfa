use super::FeedbackAction as A;
use super::FeedbackEvent as E;
use super::*;
use crate::domain::testing::{chair, house, official, system, Given};
use time::macros::{date, datetime};

fn given(events: Vec<E>) -> Given<Feedback> {
    Given::<Feedback>::events(events)
}

fn received() -> E {
    E::FeedbackReceived {
        meeting: "m1".into(),
        agenda_item: Some(1),
        house: "house-1".into(),
        content: "Đường liên thôn bị sạt lở".into(),
    }
}

fn classified() -> Vec<E> {
    vec![
        received(),
        E::FeedbackClassified {
            kind: FeedbackKind::Feedback,
        },
    ]
}

fn assign(official: &str, working_days: Option<u32>) -> A {
    A::Assign {
        official: official.into(),
        working_days,
    }
}

/// The event of an assignment to `official`, due in `working_days` on `deadline`.
fn assigned_to(official: &str, working_days: u32, deadline: Date) -> E {
    E::FeedbackAssigned {
        official: official.into(),
        working_days,
        deadline,
    }
}

fn assigned() -> Vec<E> {
    [
        classified(),
        vec![assigned_to("can-bo-1", 15, date!(2026 - 12 - 14))],
    ]
    .concat()
}

fn answered() -> Vec<E> {
    [
        assigned(),
        vec![E::FeedbackAnswered {
            answer: "Đã sửa".into(),
        }],
    ]
    .concat()
}

#[test]
fn a_house_raises_its_own_item_the_chair_any() {
    let raise = |h: &str| A::Raise {
        meeting: "m1".into(),
        agenda_item: Some(1),
        house: h.into(),
        content: " Đường liên thôn bị sạt lở ".into(),
    };
    given(vec![])
        .when(house("house-1"), raise("house-1"))
        .then(vec![received()]);
    given(vec![])
        .when(chair(), raise("house-1"))
        .then(vec![received()]);
    given(vec![])
        .when(house("house-2"), raise("house-1"))
        .then_error("a house may not raise feedback for another house");
    given(vec![])
        .when(official("x"), raise("house-1"))
        .then_error("an official may not raise feedback for another house");
    given(vec![received()])
        .when(chair(), raise("house-1"))
        .then_error("the feedback item already exists");
}

#[test]
fn content_must_be_said() {
    given(vec![])
        .when(
            house("house-1"),
            A::Raise {
                meeting: "m1".into(),
                agenda_item: None,
                house: "house-1".into(),
                content: "   ".into(),
            },
        )
        .then_error("invalid content: must not be empty");
}

#[test]
fn assignment_counts_working_days_by_kind() {
    // NOW is Monday 23 Nov 2026; 15 working days later is Monday 14 Dec.
    given(classified())
        .when(official("can-bo-1"), assign("can-bo-1", None))
        .then(assigned()[2..].to_vec());
    given(vec![
        received(),
        E::FeedbackClassified {
            kind: FeedbackKind::Complaint,
        },
    ])
    .when(chair(), assign("can-bo-2", None))
    .then(vec![assigned_to("can-bo-2", 30, date!(2027 - 01 - 05))]);
    given(vec![received()])
        .when(chair(), assign("can-bo-2", None))
        .then_error("cannot assign an item that is received");
    given(classified())
        .when(house("house-1"), assign("can-bo-2", Some(3)))
        .then_error("a house may not assign feedback");
    given(classified())
        .when(chair(), assign("can-bo-2", Some(0)))
        .then_error("invalid working_days: must be between 1 and 120 working days");
}

#[test]
fn configured_holidays_push_the_deadline() {
    given(classified())
        .with(Services {
            calendar: Calendar::new([date!(2026 - 12 - 01)]),
        })
        .when(official("can-bo-1"), assign("can-bo-1", None))
        .then(vec![assigned_to("can-bo-1", 15, date!(2026 - 12 - 15))]);
}

#[test]
fn extending_needs_a_reason_and_counts_from_the_old_deadline() {
    given(assigned())
        .when(
            official("can-bo-1"),
            A::ExtendDeadline {
                working_days: 5,
                reason: "Cần khảo sát hiện trường".into(),
            },
        )
        .then(vec![E::DeadlineExtended {
            deadline: date!(2026 - 12 - 21),
            reason: "Cần khảo sát hiện trường".into(),
        }]);
    given(assigned())
        .when(
            official("can-bo-1"),
            A::ExtendDeadline {
                working_days: 5,
                reason: "".into(),
            },
        )
        .then_error("invalid reason: must not be empty");
}

#[test]
fn only_the_assignee_answers() {
    given(assigned())
        .when(official("can-bo-9"), A::Answer { answer: "x".into() })
        .then_error("an official may not answer an item assigned to someone else");
    given(assigned())
        .when(
            official("can-bo-1"),
            A::Answer {
                answer: " Đã sửa ".into(),
            },
        )
        .then(vec![E::FeedbackAnswered {
            answer: "Đã sửa".into(),
        }]);
}

#[test]
fn a_withdrawn_item_cannot_be_answered() {
    let withdrawn = [assigned(), vec![E::FeedbackWithdrawn { reason: None }]].concat();
    given(withdrawn)
        .when(official("can-bo-1"), A::Answer { answer: "x".into() })
        .then_error("cannot answer an item that is withdrawn");
    given(answered())
        .when(house("house-1"), A::Withdraw { reason: None })
        .then_error("cannot withdraw an item that is answered");
    given(classified())
        .when(house("house-2"), A::Withdraw { reason: None })
        .then_error("a house may not withdraw another house's item");
}

#[test]
fn the_house_confirms_or_reopens() {
    given(answered())
        .when(house("house-1"), A::Confirm)
        .then(vec![E::AnswerConfirmed]);
    given(answered())
        .when(house("house-2"), A::Confirm)
        .then_error("a house may not confirm another house's answer");
    let closed = [answered(), vec![E::AnswerConfirmed, E::FeedbackClosed]].concat();
    for (past, reason) in [(answered(), "Vẫn chưa sửa"), (closed, "Sạt lở lại")] {
        given(past)
            .when(
                house("house-1"),
                A::Reopen {
                    reason: reason.into(),
                },
            )
            .then(vec![E::FeedbackReopened {
                reason: reason.into(),
                deadline: date!(2026 - 12 - 14),
            }]);
    }
    given(assigned())
        .when(house("house-1"), A::Confirm)
        .then_error("cannot confirm an item that is assigned");
}

#[test]
fn closing_needs_an_answer_or_forwarding() {
    given(assigned())
        .when(official("can-bo-1"), A::Close)
        .then_error("cannot close an item that is assigned");
    given(answered())
        .when(official("can-bo-1"), A::Close)
        .then(vec![E::FeedbackClosed]);
    given(vec![received()])
        .when(
            chair(),
            A::Forward {
                to: "UBND huyện".into(),
            },
        )
        .then(vec![E::FeedbackForwarded {
            to: "UBND huyện".into(),
        }]);
    given(vec![received(), E::FeedbackForwarded { to: "x".into() }])
        .when(chair(), A::Close)
        .then(vec![E::FeedbackClosed]);
}

#[test]
fn overdue_once_after_the_deadline_and_cleared_by_extension() {
    let after = datetime!(2026-12-15 00:00 +07);
    given(assigned())
        .when_at(after, system(), A::MarkOverdue)
        .then(vec![E::FeedbackOverdue {
            deadline: date!(2026 - 12 - 14),
        }]);
    given(assigned())
        .when_at(datetime!(2026-12-14 23:00 +07), system(), A::MarkOverdue)
        .then(vec![]);
    let overdue = [
        assigned(),
        vec![E::FeedbackOverdue {
            deadline: date!(2026 - 12 - 14),
        }],
    ]
    .concat();
    given(overdue.clone())
        .when_at(after, system(), A::MarkOverdue)
        .then(vec![]);
    given(
        [
            overdue,
            vec![E::DeadlineExtended {
                deadline: date!(2026 - 12 - 16),
                reason: "r".into(),
            }],
        ]
        .concat(),
    )
    .when_at(datetime!(2026-12-17 08:00 +07), system(), A::MarkOverdue)
    .then(vec![E::FeedbackOverdue {
        deadline: date!(2026 - 12 - 16),
    }]);
    given(answered())
        .when_at(after, system(), A::MarkOverdue)
        .then(vec![]);
    given(vec![])
        .when(system(), A::MarkOverdue)
        .then_error("no such feedback item");
    given(assigned())
        .when_at(after, chair(), A::MarkOverdue)
        .then_error("a chair may not mark an item overdue");
}

#[test]
fn unknown_items_are_not_found() {
    given(vec![])
        .when(
            chair(),
            A::Classify {
                kind: FeedbackKind::Complaint,
            },
        )
        .then_error("no such feedback item");
}
