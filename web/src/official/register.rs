//! The feedback register as officials query it: filters, facet counts and one page of items,
//! computed on the hub over the projection, so that a browser on a village link receives one
//! page (50 items by default) however many thousands the record holds.
//!
//! Pure: the rows, the calendar and `now` come in as arguments. What must stay true:
//! - every count is over the rows the caller may see, with every filter applied but its own
//!   (facets), so a filter form can show how many items each choice would give;
//! - `total` is the number of items matching every filter; `items` is the slice
//!   `offset..offset + limit` of them in the chosen order, each order total (ties broken by id);
//! - a parameter the register does not know, or a value it cannot read, is refused naming the
//!   parameter, never ignored (a typo'd filter must not silently show everything).

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use dinh_events::domain::workdays::{Calendar, VIETNAM};
use dinh_events::projections::FeedbackRow;

/// Statuses a filter may name (`open` names the first three at once).
pub const STATUSES: [&str; 8] = [
    "received",
    "classified",
    "assigned",
    "answered",
    "confirmed",
    "forwarded",
    "closed",
    "withdrawn",
];

/// Kinds a filter may name; `none` is an item not classified yet.
pub const KINDS: [&str; 4] = ["feedback", "complaint", "denunciation", "none"];

/// Items per page unless the caller asks for another number.
pub const DEFAULT_LIMIT: usize = 50;
/// The most items one page may hold.
pub const MAX_LIMIT: usize = 500;
/// The longest text search, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// The order of the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Most recently raised first.
    #[default]
    Newest,
    /// Earliest raised first.
    Oldest,
    /// Nearest deadline first; items without a deadline last.
    Deadline,
    /// Most recently changed first.
    Updated,
}

/// What the caller asked for. Empty lists and `None` mean "any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Any of these statuses.
    pub status: Vec<String>,
    /// Any of these kinds (see [`KINDS`]).
    pub kind: Vec<String>,
    /// Raised by this house.
    pub house: Option<String>,
    /// Raised in this meeting.
    pub meeting: Option<String>,
    /// Assigned to this official.
    pub assignee: Option<String>,
    /// Overdue (true) or not (false).
    pub overdue: Option<bool>,
    /// Words the content contains, lower case.
    pub text: Option<String>,
    /// Order.
    pub sort: Sort,
    /// Items to skip.
    pub offset: usize,
    /// Items to return, 1 to [`MAX_LIMIT`].
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            status: Vec::new(),
            kind: Vec::new(),
            house: None,
            meeting: None,
            assignee: None,
            overdue: None,
            text: None,
            sort: Sort::Newest,
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A query parameter the register refuses. Its text names the parameter the way the pages
/// read a refusal (`invalid status: …`, ``unknown field `x` ``).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadParam {
    /// The value cannot be read.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The parameter.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The register has no such parameter.
    #[error("unknown field `{0}`, expected one of status, kind, house, meeting, assignee, overdue, q, sort, offset, limit")]
    Unknown(String),
}

fn invalid(field: &str, reason: impl Into<String>) -> BadParam {
    BadParam::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// An id named in a filter: 1 to 128 characters, no control characters.
fn id_param(field: &str, v: &str) -> Result<Option<String>, BadParam> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > 128 || v.chars().any(char::is_control) {
        return Err(invalid(field, "longer than 128 characters"));
    }
    Ok(Some(v.to_owned()))
}

/// A yes/no parameter: `true`/`false` (or `1`/`0`); empty means "any".
pub fn bool_param(field: &str, v: &str) -> Result<Option<bool>, BadParam> {
    match v {
        "" => Ok(None),
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(invalid(field, "must be true or false")),
    }
}

/// A whole number between `min` and `max`.
pub fn number_param(field: &str, v: &str, min: usize, max: usize) -> Result<usize, BadParam> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(field, format!("must be between {min} and {max}"))),
    }
}

impl Filter {
    /// Read the query's pairs. A parameter may repeat, and `status` and `kind` take
    /// comma-separated lists; an empty value means "any" (what a form's "all" choice sends).
    /// `token` is passed over: the bearer token may travel in the query.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, BadParam> {
        let mut f = Filter::default();
        for (k, v) in pairs {
            let v = v.trim();
            match k.as_str() {
                "status" => {
                    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let names: &[&str] = if s == "open" {
                            &STATUSES[..3]
                        } else if STATUSES.contains(&s) {
                            std::slice::from_ref(&s)
                        } else {
                            return Err(invalid(
                                "status",
                                format!("'{s}' is not one of open, {}", STATUSES.join(", ")),
                            ));
                        };
                        for n in names {
                            if !f.status.iter().any(|x| x == n) {
                                f.status.push((*n).to_owned());
                            }
                        }
                    }
                }
                "kind" => {
                    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !KINDS.contains(&s) {
                            return Err(invalid(
                                "kind",
                                format!("'{s}' is not one of {}", KINDS.join(", ")),
                            ));
                        }
                        if !f.kind.iter().any(|x| x == s) {
                            f.kind.push(s.to_owned());
                        }
                    }
                }
                "house" => f.house = id_param("house", v)?,
                "meeting" => f.meeting = id_param("meeting", v)?,
                "assignee" => f.assignee = id_param("assignee", v)?,
                "overdue" => f.overdue = bool_param("overdue", v)?,
                "q" => {
                    if v.chars().count() > MAX_QUERY_CHARS {
                        return Err(invalid(
                            "q",
                            format!("longer than {MAX_QUERY_CHARS} characters"),
                        ));
                    }
                    f.text = (!v.is_empty()).then(|| v.to_lowercase());
                }
                "sort" => {
                    f.sort = match v {
                        "" | "newest" => Sort::Newest,
                        "oldest" => Sort::Oldest,
                        "deadline" => Sort::Deadline,
                        "updated" => Sort::Updated,
                        _ => {
                            return Err(invalid(
                                "sort",
                                "must be newest, oldest, deadline or updated",
                            ))
                        }
                    }
                }
                "offset" => f.offset = number_param("offset", v, 0, 10_000_000)?,
                "limit" => f.limit = number_param("limit", v, 1, MAX_LIMIT)?,
                "token" => {}
                other => return Err(BadParam::Unknown(other.to_owned())),
            }
        }
        Ok(f)
    }

    /// Whether `r` passes every filter but the one a facet counts.
    fn matches(&self, r: &FeedbackRow, skip: Facet) -> bool {
        (skip == Facet::Status || self.status.is_empty() || self.status.contains(&r.status))
            && (skip == Facet::Kind
                || self.kind.is_empty()
                || self.kind.iter().any(|k| k == kind_name(r)))
            && self.house.as_deref().is_none_or(|h| r.house == h)
            && self.meeting.as_deref().is_none_or(|m| r.meeting == m)
            && self
                .assignee
                .as_deref()
                .is_none_or(|a| r.assignee.as_deref() == Some(a))
            && (skip == Facet::Overdue || self.overdue.is_none_or(|o| r.overdue == o))
            && self
                .text
                .as_deref()
                .is_none_or(|q| r.content.to_lowercase().contains(q))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Facet {
    None,
    Status,
    Kind,
    Overdue,
}

/// The kind of a row as the register names it (`none` when not classified).
pub fn kind_name(r: &FeedbackRow) -> &'static str {
    r.kind.map_or("none", |k| k.as_str())
}

/// How many items each choice of a filter would give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Per status, with the other filters applied.
    pub status: BTreeMap<String, usize>,
    /// Per kind (`none` for not classified), with the other filters applied.
    pub kind: BTreeMap<String, usize>,
    /// Overdue items, with the other filters applied.
    pub overdue: usize,
    /// Every item the caller may see, no filter applied.
    pub visible: usize,
    /// The officials items are assigned to, among the items the caller may see (at most 200,
    /// for the assign form's suggestions).
    pub assignees: Vec<String>,
}

/// One item of a page: the register's row and its deadline in working days.
#[derive(Debug, Clone, Serialize)]
pub struct Item<'a> {
    /// The row as the projection holds it.
    #[serde(flatten)]
    pub row: &'a FeedbackRow,
    /// For an assigned item: working days from today to its deadline (0: due today; negative:
    /// working days past it). `None` when it has no deadline running.
    pub working_days_left: Option<i64>,
    /// Whether the deadline has passed (it holds to the end of its day, Vietnam time).
    pub past_deadline: bool,
}

/// One page of the register.
#[derive(Debug, Clone, Serialize)]
pub struct Page<'a> {
    /// The log position the register reflects (a live view resumes the record's events after
    /// it); set by the caller, which knows the projection.
    pub position: u64,
    /// Items matching every filter.
    pub total: usize,
    /// Items skipped.
    pub offset: usize,
    /// Page size asked for.
    pub limit: usize,
    /// The page.
    pub items: Vec<Item<'a>>,
    /// Facet counts.
    pub counts: Counts,
}

/// The longest a deadline count walks, in days (ten years): past it the count stops growing.
const MAX_WALK_DAYS: u32 = 3_660;

/// Working days from `today` to `deadline`: the working days after today up to and including
/// the deadline, or, for a deadline already past, minus the working days after the deadline
/// up to and including today.
pub fn working_days_left(cal: &Calendar, today: Date, deadline: Date) -> i64 {
    let (from, to, sign) = if deadline >= today {
        (today, deadline, 1)
    } else {
        (deadline, today, -1)
    };
    let mut n = 0;
    let mut d = from;
    for _ in 0..MAX_WALK_DAYS {
        if d >= to {
            break;
        }
        let Some(next) = d.next_day() else { break };
        d = next;
        if cal.is_working_day(d) {
            n += 1;
        }
    }
    sign * n
}

fn instant(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A row with its deadline counted in working days at `now`.
pub fn item<'a>(row: &'a FeedbackRow, cal: &Calendar, now: OffsetDateTime) -> Item<'a> {
    let deadline = row.deadline.filter(|_| row.status == "assigned");
    let today = now.to_offset(VIETNAM).date();
    Item {
        row,
        working_days_left: deadline.map(|d| working_days_left(cal, today, d)),
        past_deadline: deadline.is_some_and(|d| Calendar::is_past(d, now)),
    }
}

/// Run a query over the rows the caller may see.
pub fn query<'a>(
    visible: impl IntoIterator<Item = &'a FeedbackRow>,
    f: &Filter,
    cal: &Calendar,
    now: OffsetDateTime,
) -> Page<'a> {
    let rows: Vec<&FeedbackRow> = visible.into_iter().collect();
    let mut counts = Counts {
        visible: rows.len(),
        ..Counts::default()
    };
    for r in &rows {
        if f.matches(r, Facet::Status) {
            *counts.status.entry(r.status.clone()).or_default() += 1;
        }
        if f.matches(r, Facet::Kind) {
            *counts.kind.entry(kind_name(r).to_owned()).or_default() += 1;
        }
        if r.overdue && f.matches(r, Facet::Overdue) {
            counts.overdue += 1;
        }
        if let Some(a) = &r.assignee {
            if counts.assignees.len() < 200 && !counts.assignees.contains(a) {
                counts.assignees.push(a.clone());
            }
        }
    }
    counts.assignees.sort();
    let mut hits: Vec<&FeedbackRow> = rows
        .into_iter()
        .filter(|r| f.matches(r, Facet::None))
        .collect();
    match f.sort {
        Sort::Newest => {
            hits.sort_by_cached_key(|r| (std::cmp::Reverse(instant(&r.raised_at)), &r.id))
        }
        Sort::Oldest => hits.sort_by_cached_key(|r| (instant(&r.raised_at), &r.id)),
        Sort::Updated => {
            hits.sort_by_cached_key(|r| (std::cmp::Reverse(instant(&r.updated_at)), &r.id))
        }
        Sort::Deadline => hits.sort_by_cached_key(|r| {
            (
                r.deadline.is_none(),
                r.deadline,
                instant(&r.raised_at),
                &r.id,
            )
        }),
    }
    let total = hits.len();
    let items = hits
        .into_iter()
        .skip(f.offset)
        .take(f.limit)
        .map(|row| item(row, cal, now))
        .collect();
    Page {
        position: 0,
        total,
        offset: f.offset,
        limit: f.limit,
        items,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dinh_events::domain::feedback::FeedbackKind;
    use time::macros::{date, datetime};

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn row(id: &str, status: &str, kind: Option<FeedbackKind>, house: &str) -> FeedbackRow {
        FeedbackRow {
            id: id.into(),
            meeting: "m1".into(),
            house: house.into(),
            content: format!("Ý kiến {id} về đường liên thôn"),
            kind,
            status: status.into(),
            raised_at: format!("2026-11-2{}T01:00:00Z", id.len() % 10),
            updated_at: "2026-11-23T01:00:00Z".into(),
            ..Default::default()
        }
    }

    /// Thirty items: statuses and kinds in a known pattern, every third overdue.
    fn register() -> Vec<FeedbackRow> {
        (0..30)
            .map(|i| {
                let status = ["received", "classified", "assigned"][i % 3];
                let kind = match i % 3 {
                    0 => None,
                    1 => Some(FeedbackKind::Complaint),
                    _ => Some(FeedbackKind::Feedback),
                };
                let mut r = row(
                    &format!("f{i:02}"),
                    status,
                    kind,
                    &format!("house-{}", i % 2),
                );
                r.raised_at = format!("2026-11-{:02}T01:00:00Z", i + 1);
                if status == "assigned" {
                    r.assignee = Some(format!("can-bo-{}", i % 4));
                    r.deadline = Some(date!(2026 - 12 - 01));
                    r.overdue = i % 6 == 2;
                }
                r
            })
            .collect()
    }

    const NOW: OffsetDateTime = datetime!(2026-11-30 10:00 +07);

    #[test]
    fn given_no_filter_when_queried_then_the_newest_page_and_every_count() {
        let rows = register();
        let p = query(&rows, &Filter::default(), &Calendar::default(), NOW);
        assert_eq!(p.total, 30);
        assert_eq!(p.items.len(), 30);
        assert_eq!(p.items[0].row.id, "f29", "newest first");
        assert_eq!(p.counts.visible, 30);
        assert_eq!(p.counts.status["received"], 10);
        assert_eq!(p.counts.kind["none"], 10);
        assert_eq!(p.counts.overdue, 5);
        assert_eq!(
            p.counts.assignees,
            vec!["can-bo-0", "can-bo-1", "can-bo-2", "can-bo-3"]
        );
    }

    #[test]
    fn given_a_status_filter_then_its_own_facet_still_counts_every_status() {
        let rows = register();
        let f = Filter::parse(&pairs("status=assigned&house=house-0")).unwrap();
        let p = query(&rows, &f, &Calendar::default(), NOW);
        assert!(p
            .items
            .iter()
            .all(|i| i.row.status == "assigned" && i.row.house == "house-0"));
        assert_eq!(p.total, 5);
        // The status facet ignores the status filter but keeps the house filter.
        assert_eq!(p.counts.status["received"], 5);
        assert_eq!(p.counts.status["assigned"], 5);
        // The kind facet keeps both.
        assert_eq!(p.counts.kind.get("none"), None);
        assert_eq!(p.counts.kind["feedback"], 5);
    }

    #[test]
    fn given_pages_then_they_cover_the_hits_once_in_a_total_order() {
        let rows = register();
        let mut seen = Vec::new();
        for offset in (0..30).step_by(7) {
            let f = Filter::parse(&pairs(&format!("sort=oldest&offset={offset}&limit=7"))).unwrap();
            let p = query(&rows, &f, &Calendar::default(), NOW);
            assert_eq!(p.total, 30);
            seen.extend(p.items.iter().map(|i| i.row.id.clone()));
        }
        let expected: Vec<String> = (0..30).map(|i| format!("f{i:02}")).collect();
        assert_eq!(seen, expected);
        let past = Filter::parse(&pairs("offset=40")).unwrap();
        let p = query(&rows, &past, &Calendar::default(), NOW);
        assert!(p.items.is_empty());
        assert_eq!(p.total, 30);
    }

    #[test]
    fn overdue_kind_assignee_and_text_filters_combine() {
        let rows = register();
        let q = |s: &str| {
            let f = Filter::parse(&pairs(s)).unwrap();
            query(&rows, &f, &Calendar::default(), NOW)
                .items
                .iter()
                .map(|i| i.row.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            q("overdue=true&sort=oldest"),
            ["f02", "f08", "f14", "f20", "f26"]
        );
        assert_eq!(q("kind=complaint,none&overdue=true"), Vec::<String>::new());
        assert_eq!(q("assignee=can-bo-2&sort=oldest"), ["f02", "f14", "f26"]);
        assert_eq!(
            q("q=F07%20"),
            Vec::<String>::new(),
            "no decoding here: exact words"
        );
        assert_eq!(
            q("q=ý kiến f07"),
            ["f07"],
            "case-insensitive, Vietnamese letters too"
        );
        assert_eq!(q("status=open").len(), 30);
        assert_eq!(q("kind=none").len(), 10);
    }

    #[test]
    fn deadline_order_puts_items_without_one_last() {
        let mut rows = register();
        rows[5].deadline = Some(date!(2026 - 11 - 25));
        rows[5].status = "assigned".into();
        let f = Filter::parse(&pairs("sort=deadline&limit=2")).unwrap();
        let p = query(&rows, &f, &Calendar::default(), NOW);
        assert_eq!(p.items[0].row.id, "f05");
        assert_eq!(
            p.items[0].working_days_left,
            Some(-3),
            "Wed 25 to Mon 30: Thu, Fri, Mon"
        );
        assert!(p.items[0].past_deadline);
        assert_eq!(
            p.items[1].working_days_left,
            Some(1),
            "due Tuesday 1 December"
        );
        let f = Filter::parse(&pairs("sort=deadline&offset=29")).unwrap();
        assert!(query(&rows, &f, &Calendar::default(), NOW).items[0]
            .row
            .deadline
            .is_none());
    }

    #[test]
    fn working_days_count_from_tomorrow_and_skip_weekends_and_holidays() {
        let cal = Calendar::new([date!(2026 - 12 - 02)]);
        let fri = date!(2026 - 11 - 27);
        assert_eq!(working_days_left(&cal, fri, fri), 0, "due today");
        assert_eq!(
            working_days_left(&cal, fri, date!(2026 - 11 - 30)),
            1,
            "Monday"
        );
        assert_eq!(
            working_days_left(&cal, fri, date!(2026 - 12 - 03)),
            3,
            "Mon, Tue, (Wed off), Thu"
        );
        assert_eq!(working_days_left(&cal, date!(2026 - 11 - 30), fri), -1);
        assert_eq!(
            working_days_left(&cal, date!(2026 - 11 - 29), fri),
            0,
            "Sunday after a Friday deadline: past, but no working day lost yet"
        );
    }

    #[test]
    fn bad_parameters_are_refused_naming_them() {
        let err = |q: &str| Filter::parse(&pairs(q)).unwrap_err().to_string();
        assert_eq!(
            err("status=lost"),
            "invalid status: 'lost' is not one of open, received, classified, assigned, answered, confirmed, forwarded, closed, withdrawn"
        );
        assert!(err("kind=rumour").starts_with("invalid kind: 'rumour'"));
        assert_eq!(
            err("overdue=maybe"),
            "invalid overdue: must be true or false"
        );
        assert_eq!(err("limit=0"), "invalid limit: must be between 1 and 500");
        assert_eq!(err("limit=501"), "invalid limit: must be between 1 and 500");
        assert_eq!(
            err("offset=-1"),
            "invalid offset: must be between 0 and 10000000"
        );
        assert_eq!(
            err("sort=random"),
            "invalid sort: must be newest, oldest, deadline or updated"
        );
        assert!(err("stauts=open").starts_with("unknown field `stauts`"));
        assert!(err(&format!("q={}", "a".repeat(201))).starts_with("invalid q: longer than 200"));
        assert!(err(&format!("house={}", "h".repeat(129))).starts_with("invalid house"));
        // Empty values are "any", and the token may ride along.
        let f = Filter::parse(&pairs("status=&kind=&house=&overdue=&sort=&token=abc")).unwrap();
        assert_eq!(f, Filter::default());
    }
}
