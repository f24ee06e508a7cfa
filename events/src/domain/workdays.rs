//! Deadlines in working days: Monday to Friday, less public holidays, in Vietnam's time zone.
//!
//! The fixed-date holidays are built in (1 January, 30 April, 1 May, 2 September and the day
//! next to it). Tết and the Hùng Kings' day follow the lunar calendar and the government fixes
//! the days off each year, so they come from the config (`record.holidays`).

use std::collections::BTreeSet;

use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

/// Vietnam's offset from UTC (no daylight saving).
pub const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("valid offset"),
};

/// Working days: weekends and holidays excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<Date>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new([])
    }
}

impl Calendar {
    /// The fixed-date holidays plus `extra` (Tết, Hùng Kings' day, compensatory days off).
    pub fn new(extra: impl IntoIterator<Item = Date>) -> Self {
        Self {
            holidays: extra.into_iter().collect(),
        }
    }

    /// Whether `d` is a working day.
    pub fn is_working_day(&self, d: Date) -> bool {
        if matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
            return false;
        }
        let fixed = matches!(
            (d.month(), d.day()),
            (Month::January, 1) | (Month::April, 30) | (Month::May, 1) | (Month::September, 1 | 2)
        );
        !fixed && !self.holidays.contains(&d)
    }

    /// The date `n` working days after the local date of `from`. The day a request is received
    /// does not count (the laws count from the day after).
    pub fn add_working_days(&self, from: OffsetDateTime, n: u32) -> Date {
        let mut d = from.to_offset(VIETNAM).date();
        let mut left = n;
        while left > 0 {
            d = d.next_day().expect("dates stay far from the end of time");
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// Whether a deadline has passed at `now`: it holds until the end of its local day.
    pub fn is_past(deadline: Date, now: OffsetDateTime) -> bool {
        now.to_offset(VIETNAM).date() > deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    /// (calendar, from, working days, expected last day, why)
    fn cases() -> Vec<(Calendar, OffsetDateTime, u32, Date, &'static str)> {
        let tet = Calendar::new([date!(2027 - 02 - 08)]);
        vec![
            (
                Calendar::default(),
                datetime!(2026-11-20 10:00 +07),
                1,
                date!(2026 - 11 - 23),
                "Friday + 1 is Monday",
            ),
            (
                Calendar::default(),
                datetime!(2026-11-23 10:00 +07),
                10,
                date!(2026 - 12 - 07),
                "two weekends skipped",
            ),
            (
                Calendar::default(),
                datetime!(2026-11-19 20:00 UTC),
                1,
                date!(2026 - 11 - 23),
                "20:00 UTC on Thursday is Friday in Hà Nội",
            ),
            (
                tet.clone(),
                datetime!(2028-08-31 09:00 +07),
                1,
                date!(2028 - 09 - 04),
                "National Day (1 Sep) and the weekend skipped",
            ),
            (
                tet,
                datetime!(2027-02-05 09:00 +07),
                1,
                date!(2027 - 02 - 09),
                "a configured holiday (Tết) skipped",
            ),
        ]
    }

    #[test]
    fn counts_working_days_in_vietnam_time_past_weekends_and_holidays() {
        for (c, from, n, expected, why) in cases() {
            assert_eq!(c.add_working_days(from, n), expected, "{why}");
        }
        assert!(!Calendar::default().is_working_day(date!(2027 - 01 - 01)));
    }

    #[test]
    fn a_deadline_holds_to_the_end_of_its_day() {
        let d = date!(2026 - 11 - 23);
        assert!(!Calendar::is_past(d, datetime!(2026-11-23 23:59 +07)));
        assert!(Calendar::is_past(d, datetime!(2026-11-24 00:00 +07)));
        assert!(!Calendar::is_past(d, datetime!(2026-11-23 16:59 UTC)));
    }
}
