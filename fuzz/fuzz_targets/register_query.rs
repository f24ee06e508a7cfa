//! The officials' register: any query string parsed into a filter, then run over a small
//! register. Must never panic, and a page must keep its promises: no more items than asked,
//! `total` within what the caller may see, and every hit counted by the status facet.
//!
//! The register's core is pure (web/src/official/register.rs) and is compiled in here on its
//! own, without the hub around it.
#![no_main]

#[path = "../../web/src/official/register.rs"]
#[allow(dead_code)]
mod register;

use dinh_events::domain::feedback::FeedbackKind;
use dinh_events::domain::workdays::Calendar;
use dinh_events::projections::FeedbackRow;
use libfuzzer_sys::fuzz_target;

fn rows() -> Vec<FeedbackRow> {
    let statuses = ["received", "classified", "assigned", "answered", "withdrawn"];
    let kinds = [None, Some(FeedbackKind::Feedback), Some(FeedbackKind::Complaint), Some(FeedbackKind::Denunciation)];
    (0..40)
        .map(|i| FeedbackRow {
            id: format!("f{i}"),
            meeting: format!("m{}", i % 3),
            house: format!("house-{}", i % 4),
            content: format!("Ý kiến {i} về đường, nước và điện"),
            kind: kinds[i % 4],
            status: statuses[i % 5].into(),
            assignee: (i % 5 == 2).then(|| format!("can-bo-{}", i % 2)),
            deadline: (i % 5 == 2).then(|| time::Date::from_calendar_date(2026, time::Month::November, 1 + (i % 28) as u8).unwrap()),
            overdue: i % 10 == 2,
            raised_at: format!("2026-11-{:02}T01:00:00Z", 1 + i % 28),
            updated_at: if i % 7 == 0 { "not a time".into() } else { "2026-11-30T01:00:00Z".into() },
            ..Default::default()
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let Ok(f) = register::Filter::parse(&pairs) else {
        return;
    };
    let rows = rows();
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_788);
    let p = register::query(&rows, &f, &Calendar::default(), now);
    assert!(p.items.len() <= f.limit);
    assert!(p.total <= rows.len());
    assert!(p.offset >= p.total || p.items.len() == f.limit.min(p.total - p.offset));
    assert!(p.counts.status.values().sum::<usize>() >= p.total);
    assert!(p.counts.kind.values().sum::<usize>() >= p.total);
});
