//! Attendance across meetings: each house at each meeting of a room (connected time,
//! headcount, check-ins, time at the floor) and each house's totals, from the attendance and
//! minutes projections. Pure: rows and `now` come in.
//!
//! A house still connected counts its time up to `now`; a house of the room's directory that
//! never connected to a meeting has no cell there (absent) but keeps its row of totals, so an
//! official sees who stays away as well as who comes.

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use dinh_events::projections::{AttendanceRow, MinutesRow};

/// The most meetings one answer covers.
pub const MAX_MEETINGS: usize = 200;
/// Meetings covered unless the caller asks for another number.
pub const DEFAULT_MEETINGS: usize = 24;

/// One meeting, a column of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeetingColumn {
    /// Meeting id.
    pub id: String,
    /// As the chair scheduled it.
    pub title: String,
    /// Scheduled start (RFC 3339).
    pub starts_at: String,
    /// `scheduled`, `open`, `closed`.
    pub status: String,
    /// When the chair opened it (RFC 3339), if it was.
    pub opened_at: Option<String>,
    /// When it was closed (RFC 3339), if it was.
    pub closed_at: Option<String>,
}

/// One house at one meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Meeting id.
    pub meeting: String,
    /// House id.
    pub house: String,
    /// Seconds connected, counting a connection still open up to now.
    pub seconds_connected: i64,
    /// Whether it is connected now.
    pub connected_now: bool,
    /// How many times it connected.
    pub joins: u32,
    /// Latest headcount reported.
    pub headcount: Option<u32>,
    /// Names checked in (a count: the names stay with the meeting's own attendance).
    pub checked_in: usize,
    /// Seconds holding the floor.
    pub seconds_speaking: i64,
}

/// One house's totals over the meetings covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HouseTotals {
    /// House id.
    pub id: String,
    /// Display name (the id when the directory does not know it).
    pub name: String,
    /// Meetings it connected to.
    pub meetings_attended: usize,
    /// Seconds connected, all meetings.
    pub seconds_connected: i64,
    /// Sum of the headcounts reported.
    pub headcount_total: u64,
    /// Names checked in, all meetings.
    pub checked_in: usize,
    /// Seconds at the floor, all meetings.
    pub seconds_speaking: i64,
}

/// Attendance across meetings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Across {
    /// The meetings, oldest first.
    pub meetings: Vec<MeetingColumn>,
    /// Every house: the directory's, then any other that attended.
    pub houses: Vec<HouseTotals>,
    /// One per house and meeting it connected to, or reported a headcount or check-ins for.
    pub cells: Vec<Cell>,
}

/// Seconds from `from` (RFC 3339) to `to`; 0 when `from` is later or unreadable.
pub fn seconds_between(from: &str, to: OffsetDateTime) -> i64 {
    OffsetDateTime::parse(from, &Rfc3339)
        .map(|f| (to - f).whole_seconds().max(0))
        .unwrap_or(0)
}

/// Where a presence still open in `m` ends: the meeting's close, or `now` while it runs.
pub fn end_of(m: &MinutesRow, now: OffsetDateTime) -> OffsetDateTime {
    m.closed_at
        .as_deref()
        .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
        .map_or(now, |c| c.min(now))
}

/// Build the table for `meetings` (already filtered to one room; the newest `limit` are kept),
/// `directory` of (house id, name) in display order.
pub fn across<'a>(
    meetings: impl IntoIterator<Item = &'a MinutesRow>,
    attendance: impl IntoIterator<Item = &'a AttendanceRow>,
    directory: &[(String, String)],
    limit: usize,
    now: OffsetDateTime,
) -> Across {
    let mut ms: Vec<&MinutesRow> = meetings.into_iter().collect();
    ms.sort_by(|a, b| (&a.starts_at, &a.meeting).cmp(&(&b.starts_at, &b.meeting)));
    let skip = ms.len().saturating_sub(limit);
    let ms: Vec<&MinutesRow> = ms.into_iter().skip(skip).collect();
    let mut totals: BTreeMap<String, HouseTotals> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut total_of = |id: &str, totals: &mut BTreeMap<String, HouseTotals>| {
        if !totals.contains_key(id) {
            let name = directory
                .iter()
                .find(|(h, _)| h == id)
                .map_or_else(|| id.to_owned(), |(_, n)| n.clone());
            order.push(id.to_owned());
            totals.insert(
                id.to_owned(),
                HouseTotals {
                    id: id.to_owned(),
                    name,
                    meetings_attended: 0,
                    seconds_connected: 0,
                    headcount_total: 0,
                    checked_in: 0,
                    seconds_speaking: 0,
                },
            );
        }
    };
    for (id, _) in directory {
        total_of(id, &mut totals);
    }
    let mut cells = Vec::new();
    for a in attendance {
        let Some(m) = ms.iter().find(|m| m.meeting == a.meeting) else {
            continue;
        };
        let end = end_of(m, now);
        let live = a
            .connected_since
            .as_deref()
            .map_or(0, |s| seconds_between(s, end));
        let speaking = a
            .speaking_since
            .as_deref()
            .map_or(0, |s| seconds_between(s, end));
        let cell = Cell {
            meeting: a.meeting.clone(),
            house: a.house.clone(),
            seconds_connected: a.seconds_connected + live,
            connected_now: a.connected_since.is_some() && m.closed_at.is_none(),
            joins: a.joins,
            headcount: a.headcount,
            checked_in: a.checked_in.len(),
            seconds_speaking: a.seconds_speaking + speaking,
        };
        total_of(&a.house, &mut totals);
        let t = totals.get_mut(&a.house).expect("inserted above");
        if cell.joins > 0 {
            t.meetings_attended += 1;
        }
        t.seconds_connected += cell.seconds_connected;
        t.headcount_total += u64::from(cell.headcount.unwrap_or(0));
        t.checked_in += cell.checked_in;
        t.seconds_speaking += cell.seconds_speaking;
        cells.push(cell);
    }
    cells.sort_by(|a, b| (&a.meeting, &a.house).cmp(&(&b.meeting, &b.house)));
    Across {
        meetings: ms
            .iter()
            .map(|m| MeetingColumn {
                id: m.meeting.clone(),
                title: m.title.clone(),
                starts_at: m.starts_at.clone(),
                status: m.status.clone(),
                opened_at: m.opened_at.clone(),
                closed_at: m.closed_at.clone(),
            })
            .collect(),
        houses: order
            .into_iter()
            .filter_map(|id| totals.remove(&id))
            .collect(),
        cells,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn meeting(id: &str, starts: &str) -> MinutesRow {
        MinutesRow {
            meeting: id.into(),
            room: "demo".into(),
            title: format!("Họp {id}"),
            status: "closed".into(),
            starts_at: starts.into(),
            ..Default::default()
        }
    }

    fn present(m: &str, h: &str, secs: i64, headcount: Option<u32>) -> AttendanceRow {
        AttendanceRow {
            meeting: m.into(),
            house: h.into(),
            seconds_connected: secs,
            joins: 1,
            headcount,
            checked_in: vec!["Nguyễn Văn A".into()],
            ..Default::default()
        }
    }

    #[test]
    fn houses_are_totalled_over_the_newest_meetings_and_absent_ones_kept() {
        let meetings = [
            meeting("m1", "2026-10-01T01:00:00Z"),
            meeting("m3", "2026-12-01T01:00:00Z"),
            meeting("m2", "2026-11-01T01:00:00Z"),
        ];
        let rows = [
            present("m1", "house-1", 100, Some(10)),
            present("m2", "house-1", 600, Some(30)),
            present("m3", "house-1", 300, None),
            present("m3", "house-9", 60, Some(2)),
        ];
        let dir = vec![
            ("house-1".to_owned(), "Thôn 1".to_owned()),
            ("house-2".to_owned(), "Thôn 2".to_owned()),
        ];
        let now = datetime!(2026-12-01 09:00 +07);
        let a = across(&meetings, &rows, &dir, 2, now);
        let ids: Vec<&str> = a.meetings.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["m2", "m3"], "the two newest, oldest first");
        let h1 = &a.houses[0];
        assert_eq!((h1.name.as_str(), h1.meetings_attended), ("Thôn 1", 2));
        assert_eq!(h1.seconds_connected, 900, "m1 is outside the window");
        assert_eq!(h1.headcount_total, 30);
        assert_eq!(h1.checked_in, 2);
        assert_eq!(a.houses[1].id, "house-2");
        assert_eq!(a.houses[1].meetings_attended, 0, "absent, still listed");
        assert_eq!(a.houses[2].name, "house-9", "not in the directory: its id");
        assert_eq!(a.cells.len(), 3);
    }

    #[test]
    fn a_presence_left_open_ends_with_the_meeting() {
        let mut row = present("m1", "house-1", 0, None);
        row.connected_since = Some("2026-12-01T01:00:00Z".into());
        let mut m = meeting("m1", "2026-12-01T01:00:00Z");
        m.closed_at = Some("2026-12-01T01:30:00Z".into());
        let now = datetime!(2026-12-01 05:00 UTC);
        let a = across(&[m], &[row], &[], DEFAULT_MEETINGS, now);
        assert_eq!(a.cells[0].seconds_connected, 1800);
        assert!(!a.cells[0].connected_now);
    }

    #[test]
    fn a_house_still_connected_counts_up_to_now() {
        let mut row = present("m1", "house-1", 60, None);
        row.connected_since = Some("2026-12-01T01:00:00Z".into());
        let now = datetime!(2026-12-01 01:10 UTC);
        let a = across(
            &[meeting("m1", "2026-12-01T01:00:00Z")],
            &[row],
            &[],
            DEFAULT_MEETINGS,
            now,
        );
        assert_eq!(a.cells[0].seconds_connected, 60 + 600);
        assert!(a.cells[0].connected_now);
    }
}
