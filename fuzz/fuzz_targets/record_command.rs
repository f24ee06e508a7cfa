//! API bodies for the record: any bytes parsed as a meeting or feedback command, then decided
//! against a meeting and an item in a few states. Must never panic.
#![no_main]

use dinh_events::domain::feedback::{Feedback, FeedbackAction, FeedbackEvent, FeedbackKind};
use dinh_events::domain::meeting::{Meeting, MeetingAction, MeetingEvent};
use dinh_events::domain::workdays::Calendar;
use dinh_events::domain::{Actor, ActorRole, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let actors = [
        Actor::new(ActorRole::Chair, "chair"),
        Actor::new(ActorRole::House, "house-1"),
        Actor::new(ActorRole::Official, "o"),
        Actor::system("sfu"),
    ];
    if let Ok(a) = serde_json::from_slice::<MeetingAction>(data) {
        let mut m = Meeting::default();
        for e in [
            MeetingEvent::MeetingScheduled { room: "r".into(), title: "t".into(), starts_at: at, agenda: vec!["a".into()] },
            MeetingEvent::MeetingOpened,
        ] {
            for actor in &actors {
                let _ = m.decide(&Command::new(at, actor.clone(), a.clone()));
            }
            m.apply_event(&e);
        }
        for actor in &actors {
            if let Ok(events) = m.decide(&Command::new(at, actor.clone(), a.clone())) {
                let mut m2 = m.clone();
                for e in &events {
                    m2.apply_event(e);
                }
            }
        }
    }
    if let Ok(a) = serde_json::from_slice::<FeedbackAction>(data) {
        let cal = Calendar::default();
        let mut f = Feedback::default();
        for e in [
            FeedbackEvent::FeedbackReceived { meeting: "m".into(), agenda_item: None, house: "house-1".into(), content: "c".into() },
            FeedbackEvent::FeedbackClassified { kind: FeedbackKind::Complaint },
            FeedbackEvent::FeedbackAssigned { official: "o".into(), working_days: 5, deadline: at.date() },
            FeedbackEvent::FeedbackAnswered { answer: "a".into() },
        ] {
            for actor in &actors {
                let _ = f.decide(&Command::new(at, actor.clone(), a.clone()), &cal);
            }
            f.apply_event(&e);
        }
    }
});
