//! Notice bodies from the chair's and officials' pages: any bytes parsed as a notice command,
//! then decided against a notice in each state by every kind of actor. Must never panic, and
//! a posted notice's validity is never longer than the rule allows.
#![no_main]

use dinh_events::domain::notices::{Notice, NoticeAction, NoticeEvent, MAX_DAYS};
use dinh_events::domain::{Actor, ActorRole, Command, Decide, Services};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let actors = [
        Actor::new(ActorRole::Chair, "chair"),
        Actor::new(ActorRole::House, "house-1"),
        Actor::new(ActorRole::Official, "o"),
        Actor::system("sfu"),
    ];
    let Ok(a) = serde_json::from_slice::<NoticeAction>(data) else { return };
    let services = Services::default();
    let mut n = Notice::default();
    let states = [
        NoticeEvent::NoticePosted {
            room: "r".into(),
            title: "t".into(),
            text: "x".into(),
            picture: None,
            valid_from: at.date(),
            valid_until: at.date(),
        },
        NoticeEvent::NoticeWithdrawn { reason: None },
    ];
    for next in states.iter().map(Some).chain([None]) {
        for actor in &actors {
            if let Ok(events) = n.decide(&Command::new(at, actor.clone(), a.clone()), &services) {
                for e in &events {
                    if let NoticeEvent::NoticePosted { valid_from, valid_until, .. } = e {
                        assert!(valid_from <= valid_until);
                        assert!((*valid_until - *valid_from).whole_days() < MAX_DAYS);
                    }
                    n.clone().apply_event(e);
                }
            }
        }
        if let Some(e) = next {
            n.apply_event(e);
        }
    }
});
