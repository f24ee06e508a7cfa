//! API bodies for the record: any bytes parsed as a meeting, feedback, loudspeaker, notice or
//! token command, then decided by every kind of actor against each aggregate at each step of
//! a short history, and the events it decides applied. Must never panic, and a decision may never produce an
//! event that the aggregate cannot apply and serialise back as the stored JSON.
#![no_main]

use dinh_events::domain::feedback::{Feedback, FeedbackEvent, FeedbackKind};
use dinh_events::domain::loudspeakers::{LoudspeakerEvent, Loudspeakers, Priority};
use dinh_events::domain::meeting::{Meeting, MeetingEvent};
use dinh_events::domain::notices::{Notice, NoticeEvent};
use dinh_events::domain::tokens::{TokenDenyList, TokenEvent};
use dinh_events::domain::{Actor, ActorRole, Command, Decide, Services};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// Decide `data` (when it parses as an action of `A`) after each event of `history`.
fn exercise<A: Decide>(data: &[u8], history: Vec<A::Event>)
where
    A::Action: DeserializeOwned,
{
    let Ok(action) = serde_json::from_slice::<A::Action>(data) else {
        return;
    };
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let actors = [
        Actor::new(ActorRole::Chair, "chair"),
        Actor::new(ActorRole::House, "house-1"),
        Actor::new(ActorRole::Official, "o"),
        Actor::system("sfu"),
    ];
    let services = Services::default();
    let mut state = A::default();
    for next in history.into_iter().map(Some).chain([None]) {
        for actor in &actors {
            let cmd = Command::new(at, actor.clone(), action.clone());
            if let Ok(events) = state.decide(&cmd, &services) {
                let mut after = state.clone();
                for e in &events {
                    after.apply_event(e);
                    let json = serde_json::to_value(e).expect("an event serialises");
                    let back: A::Event = serde_json::from_value(json).expect("and reads back");
                    assert_eq!(&back, e);
                }
            }
        }
        if let Some(e) = next {
            state.apply_event(&e);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    exercise::<Meeting>(
        data,
        vec![
            MeetingEvent::MeetingScheduled {
                room: "r".into(),
                title: "t".into(),
                starts_at: at,
                agenda: vec!["a".into()],
            },
            MeetingEvent::MeetingOpened,
            MeetingEvent::HouseConnected {
                house: "house-1".into(),
                connection: "c".into(),
            },
            MeetingEvent::FloorGranted {
                house: "house-1".into(),
            },
        ],
    );
    exercise::<Feedback>(
        data,
        vec![
            FeedbackEvent::FeedbackReceived {
                meeting: "m".into(),
                agenda_item: None,
                house: "house-1".into(),
                content: "c".into(),
            },
            FeedbackEvent::FeedbackClassified {
                kind: FeedbackKind::Complaint,
            },
            FeedbackEvent::FeedbackAssigned {
                official: "o".into(),
                working_days: 5,
                deadline: at.date(),
            },
            FeedbackEvent::FeedbackAnswered { answer: "a".into() },
        ],
    );
    exercise::<Loudspeakers>(
        data,
        vec![
            LoudspeakerEvent::RelaySwitched { on: true },
            LoudspeakerEvent::AnnouncementStarted {
                announcement: "a".into(),
                priority: Priority::Emergency,
                source: "s.wav".into(),
                clusters: vec![],
                requested_by: "chair:chair".into(),
            },
        ],
    );
    exercise::<Notice>(
        data,
        vec![
            NoticeEvent::NoticePosted {
                room: "r".into(),
                title: "t".into(),
                text: "x".into(),
                picture: None,
                valid_from: at.date(),
                valid_until: at.date(),
            },
            NoticeEvent::NoticeWithdrawn { reason: None },
        ],
    );
    exercise::<TokenDenyList>(
        data,
        vec![TokenEvent::TokenRevoked {
            jti: "a1".into(),
            room: None,
            subject: None,
            expires_at: None,
            reason: String::new(),
        }],
    );
});
