//! Who may see what of the record: one rule for the lists, the single items, the CSV exports
//! and the live events.
//!
//! A token is for one room. It sees the meetings held in that room, the feedback raised in
//! them, the room's loudspeaker log and its notices; nobody sees the token deny list through
//! the record. A house's token sees only the feedback its own house
//! raised: whoever raised a denunciation (tố cáo, Luật Tố cáo 2018) must stay protected, so
//! another house learns nothing of the item, not even that it exists. Anything the rule does
//! not know (an aggregate type added later) is hidden until a case is written for it.

use crate::chain::StoredEvent;
use crate::projections::{FeedbackRow, Views};

/// Who is looking: the room of the token and, for a house's token, its house.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer<'a> {
    /// The room the token is for.
    pub room: &'a str,
    /// The house the token speaks for; `None` for the chair and officials, who see every
    /// house's items of their room.
    pub house: Option<&'a str>,
}

impl<'a> Viewer<'a> {
    /// A chair's or an official's view of `room`.
    pub fn staff(room: &'a str) -> Self {
        Self { room, house: None }
    }

    /// A house's view: its room, and of the feedback only its own.
    pub fn house(room: &'a str, house: &'a str) -> Self {
        Self {
            room,
            house: Some(house),
        }
    }

    /// Whether the meeting `id` is held in this viewer's room.
    pub fn may_see_meeting(&self, views: &Views, id: &str) -> bool {
        views.minutes.get(id).is_some_and(|m| m.room == self.room)
    }

    /// Whether this viewer may see a feedback item.
    pub fn may_see_feedback(&self, views: &Views, f: &FeedbackRow) -> bool {
        self.may_see_meeting(views, &f.meeting) && self.house.is_none_or(|h| f.house == h)
    }

    /// The feedback items this viewer may see, in id order.
    pub fn feedback<'v>(
        &self,
        views: &'v Views,
    ) -> impl Iterator<Item = &'v FeedbackRow> + use<'v, 'a> {
        let me = *self;
        views
            .feedback
            .rows()
            .filter(move |f| me.may_see_feedback(views, f))
    }

    /// Whether this viewer may see an event. Decide it with projections that have applied
    /// the event (a new item is unknown to older ones, and hidden).
    pub fn may_see(&self, views: &Views, e: &StoredEvent) -> bool {
        match e.aggregate_type.as_str() {
            "meeting" => self.may_see_meeting(views, &e.aggregate_id),
            "feedback" => views
                .feedback
                .get(&e.aggregate_id)
                .is_some_and(|f| self.may_see_feedback(views, f)),
            // The loudspeaker log is per room and public to its room.
            "loudspeakers" => e.aggregate_id == self.room,
            // Notices are for every screen of their room (a house's board shows them).
            "notice" => views
                .notices
                .get(&e.aggregate_id)
                .is_some_and(|n| n.room == self.room),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::{decode, Views};

    /// A meeting in `demo` and one in `other`, and in `demo` a denunciation from house-1 and
    /// an item from house-2.
    fn views() -> (Views, Vec<StoredEvent>) {
        let mut position = 0;
        let mut ev = |agg: &str, id: &str, payload: serde_json::Value| {
            position += 1;
            StoredEvent {
                position,
                aggregate_type: agg.into(),
                aggregate_id: id.into(),
                sequence: 1,
                event_type: String::new(),
                event_version: "1".into(),
                event_id: position.to_string(),
                command_id: None,
                actor: "chair:chair".into(),
                recorded_at: "2026-11-23T01:00:00Z".into(),
                payload,
                hash: String::new(),
            }
        };
        let scheduled = |room: &str| {
            serde_json::json!({"type": "meeting_scheduled", "room": room, "title": "Họp",
                "starts_at": "2026-11-23T01:00:00Z", "agenda": []})
        };
        let raised = |meeting: &str, house: &str| {
            serde_json::json!({"type": "feedback_received", "meeting": meeting,
                "agenda_item": null, "house": house, "content": "..."})
        };
        let posted = |room: &str| {
            serde_json::json!({"type": "notice_posted", "room": room, "title": "Tiêm phòng",
                "text": "...", "picture": null, "valid_from": "2026-11-23",
                "valid_until": "2026-11-30"})
        };
        let events = vec![
            ev("meeting", "m-demo", scheduled("demo")),
            ev("meeting", "m-other", scheduled("other")),
            ev("feedback", "denunciation", raised("m-demo", "house-1")),
            ev(
                "feedback",
                "denunciation",
                serde_json::json!({"type": "feedback_classified", "kind": "denunciation"}),
            ),
            ev("feedback", "roads", raised("m-demo", "house-2")),
            ev("feedback", "elsewhere", raised("m-other", "house-1")),
            ev(
                "loudspeakers",
                "demo",
                serde_json::json!({"type": "relay_switched", "on": true}),
            ),
            ev(
                "loudspeakers",
                "other",
                serde_json::json!({"type": "relay_switched", "on": true}),
            ),
            // The deny list: no token's business, even its own room's.
            ev(
                "tokens",
                "deny-list",
                serde_json::json!({"type": "token_revoked", "jti": "a1", "room": "demo",
                    "subject": "house-1", "expires_at": null, "reason": ""}),
            ),
            ev("notice", "vaccines", posted("demo")),
            ev("notice", "market", posted("other")),
        ];
        let mut v = Views::default();
        for e in &events {
            if let Some(r) = decode(e) {
                v.apply(&r);
            }
        }
        (v, events)
    }

    fn seen(viewer: Viewer, views: &Views, events: &[StoredEvent]) -> Vec<u64> {
        events
            .iter()
            .filter(|e| viewer.may_see(views, e))
            .map(|e| e.position)
            .collect()
    }

    #[test]
    fn a_house_never_sees_another_houses_item_nor_its_events() {
        let (v, events) = views();
        let h2 = Viewer::house("demo", "house-2");
        let ids: Vec<&str> = h2.feedback(&v).map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["roads"]);
        assert_eq!(seen(h2, &v, &events), vec![1, 5, 7, 10]);
        let h1 = Viewer::house("demo", "house-1");
        let ids: Vec<&str> = h1.feedback(&v).map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["denunciation"], "its own, not another room's");
        assert_eq!(seen(h1, &v, &events), vec![1, 3, 4, 7, 10]);
    }

    #[test]
    fn staff_see_every_item_of_their_room_and_nothing_of_another() {
        let (v, events) = views();
        let chair = Viewer::staff("demo");
        let ids: Vec<&str> = chair.feedback(&v).map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["denunciation", "roads"]);
        assert_eq!(seen(chair, &v, &events), vec![1, 3, 4, 5, 7, 10]);
        assert_eq!(seen(Viewer::staff("other"), &v, &events), vec![2, 6, 8, 11]);
        assert!(seen(Viewer::staff("nowhere"), &v, &events).is_empty());
    }

    #[test]
    fn an_event_not_yet_projected_or_of_an_unknown_kind_is_hidden() {
        let (_, events) = views();
        let empty = Views::default();
        assert!(seen(Viewer::staff("demo"), &empty, &events[..6]).is_empty());
        let (v, _) = views();
        assert!(
            !Viewer::staff("demo").may_see(&v, &events[8]),
            "the deny list"
        );
        let mut unknown = events[9].clone();
        unknown.aggregate_type = "posters".into();
        assert!(
            !Viewer::staff("demo").may_see(&v, &unknown),
            "a kind added later"
        );
    }
}
