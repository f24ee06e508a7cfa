//! Old logs stay readable: `fixtures/log-v1.jsonl` is an export written by the record as it
//! was before the domain was reshaped (every event type of the three aggregates, each
//! revoke reason, a second screen, feedback through each of its ends), and
//! `fixtures/states-v1.json` holds the states that code rebuilt from it. Whatever the domain
//! becomes, the export must still verify (canonical bytes and chain unchanged), every
//! payload must decode and encode back to the same canonical bytes and name the same event
//! type and version, and replaying it must give the same aggregate state after every event
//! and the same projection rows.

use std::collections::BTreeMap;

use dinh_events::chain::{canonical_json, StoredEvent};
use dinh_events::domain::feedback::{Feedback, FeedbackEvent};
use dinh_events::domain::loudspeakers::{LoudspeakerEvent, Loudspeakers};
use dinh_events::domain::meeting::{Meeting, MeetingEvent};
use dinh_events::domain::Decide;
use dinh_events::projections::{decode, Views};
use dinh_events::verify::verify_export;
use serde_json::Value;

const LOG: &str = include_str!("fixtures/log-v1.jsonl");
const STATES: &str = include_str!("fixtures/states-v1.json");

fn events() -> Vec<StoredEvent> {
    LOG.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v.get("event")
                .map(|e| serde_json::from_value(e.clone()).unwrap())
        })
        .collect()
}

fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_json(v, &mut out);
    out
}

/// Decode a payload as `T` and encode it again: the same canonical bytes.
fn round_trip<T: cqrs_es::DomainEvent>(e: &StoredEvent) -> T {
    let typed: T = serde_json::from_value(e.payload.clone())
        .unwrap_or_else(|err| panic!("position {}: {err}", e.position));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        String::from_utf8(canonical(&again)).unwrap(),
        String::from_utf8(canonical(&e.payload)).unwrap(),
        "position {} re-encodes differently",
        e.position
    );
    assert_eq!(typed.event_type(), e.event_type, "position {}", e.position);
    assert_eq!(typed.event_version(), e.event_version);
    typed
}

#[test]
fn the_old_export_still_verifies() {
    let report = verify_export(LOG.as_bytes(), None).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.events, 68);
}

#[test]
fn old_events_replay_into_the_same_states() {
    let states: Value = serde_json::from_str(STATES).unwrap();
    let after = states["after_each_event"].as_array().unwrap();
    let mut meeting = Meeting::default();
    let mut feedback: BTreeMap<String, Feedback> = BTreeMap::new();
    let mut loudspeakers = Loudspeakers::default();
    let all = events();
    assert_eq!(all.len(), after.len());
    for (e, expected) in all.iter().zip(after) {
        assert_eq!(expected["position"], e.position);
        let state = match e.aggregate_type.as_str() {
            "meeting" => {
                meeting.apply_event(&round_trip::<MeetingEvent>(e));
                serde_json::to_value(&meeting).unwrap()
            }
            "feedback" => {
                let f = feedback.entry(e.aggregate_id.clone()).or_default();
                f.apply_event(&round_trip::<FeedbackEvent>(e));
                serde_json::to_value(&*f).unwrap()
            }
            "loudspeakers" => {
                loudspeakers.apply_event(&round_trip::<LoudspeakerEvent>(e));
                serde_json::to_value(&loudspeakers).unwrap()
            }
            other => panic!("unknown aggregate type {other}"),
        };
        assert_eq!(
            state, expected["state"],
            "state after position {}",
            e.position
        );
    }
}

#[test]
fn old_events_project_into_the_same_rows() {
    let states: Value = serde_json::from_str(STATES).unwrap();
    let mut views = Views::default();
    for e in events() {
        if let Some(r) = decode(&e) {
            views.apply(&r);
        }
    }
    let rows = |it: Vec<Value>| Value::Array(it);
    assert_eq!(
        rows(
            views
                .attendance
                .rows()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect()
        ),
        states["attendance"]
    );
    assert_eq!(
        rows(
            views
                .feedback
                .rows()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect()
        ),
        states["feedback_register"]
    );
    assert_eq!(
        rows(
            views
                .minutes
                .rows()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect()
        ),
        states["minutes"]
    );
}
