//! The API's calendar (docs/api.md): dates and months on a fixed UTC offset (default `+08:00`),
//! the windows of day and month usage, and the timestamps the metrics stamp on them.

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, FixedOffset, NaiveDate, NaiveDateTime,
    TimeZone, Utc,
};
use std::fmt;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.trim().split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let year: i32 = y.parse().ok()?;
        let month: u32 = m.parse().ok()?;
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// The month `n` months before this one.
    pub fn minus(self, n: u32) -> Self {
        let idx = self.year * 12 + self.month as i32 - 1 - n as i32;
        Self {
            year: idx.div_euclid(12),
            month: idx.rem_euclid(12) as u32 + 1,
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }

    /// The first day of the next month.
    pub fn next_first_day(self) -> NaiveDate {
        let next = Month {
            year: self.year + (self.month == 12) as i32,
            month: self.month % 12 + 1,
        };
        next.first_day()
    }

    /// Every day of the month.
    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        let end = self.next_first_day();
        self.first_day().iter_days().take_while(move |d| *d < end)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Parses `YYYY-MM-DD` strictly.
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Parses a UTC offset such as `+08:00`, `-05:30`, `Z` or `+0800`.
pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    // Digits and ':' only: also keeps `split_at` below on a character boundary.
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None if rest.len() == 2 => (rest, "00"),
        None => return None,
    };
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The API's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCalendar {
    pub offset: FixedOffset,
}

impl Default for ApiCalendar {
    fn default() -> Self {
        Self {
            offset: FixedOffset::east_opt(8 * 3600).expect("valid offset"),
        }
    }
}

impl ApiCalendar {
    pub fn new(offset: FixedOffset) -> Self {
        Self { offset }
    }

    /// The date at `now` on this calendar.
    pub fn date_at(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.offset).date_naive()
    }

    pub fn today(&self) -> NaiveDate {
        self.date_at(Utc::now())
    }

    /// The last `n` days up to and including `today`, oldest first.
    pub fn last_days(&self, today: NaiveDate, n: u32) -> Vec<NaiveDate> {
        (0..n as i64)
            .rev()
            .map(|i| today - ChronoDuration::days(i))
            .collect()
    }

    /// The last `n` months up to and including this month, oldest first.
    pub fn last_months(&self, today: NaiveDate, n: u32) -> Vec<Month> {
        let this = Month::of(today);
        (0..n).rev().map(|i| this.minus(i)).collect()
    }

    /// Unix seconds of the start (00:00) of `date` on this calendar.
    pub fn day_start(&self, date: NaiveDate) -> i64 {
        self.local_ts(date.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    /// Unix seconds of the end of `date` (the start of the next day).
    pub fn day_end(&self, date: NaiveDate) -> i64 {
        self.day_start(date) + 86_400
    }

    /// Unix seconds of the end of `month` (the start of the next month).
    pub fn month_end(&self, month: Month) -> i64 {
        self.day_start(month.next_first_day())
    }

    /// Unix seconds of a local date-time on this calendar.
    pub fn local_ts(&self, dt: NaiveDateTime) -> i64 {
        self.offset
            .from_local_datetime(&dt)
            .single()
            .map(|d| d.timestamp())
            .unwrap_or_else(|| dt.and_utc().timestamp() - self.offset.local_minus_utc() as i64)
    }

    /// Reads an API date or date-time (`yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss`, ISO `T`
    /// forms, or epoch milliseconds) as unix seconds on this calendar.
    pub fn parse_timestamp(&self, s: &str) -> Option<i64> {
        let s = s.trim();
        if let Some(d) = parse_day(s) {
            return Some(self.day_start(d));
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
        ] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
                return Some(self.local_ts(dt));
            }
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Some(dt.timestamp());
        }
        if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<i64>().ok().map(|ms| ms / 1000);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m = Month::parse("2026-01").unwrap();
        assert_eq!(m.minus(1).to_string(), "2025-12");
        assert_eq!(m.minus(13).to_string(), "2024-12");
        assert_eq!(Month::parse("2026-13"), None);
        assert_eq!(Month::parse("26-01"), None);
        assert_eq!(Month::parse("2024-02").unwrap().days().count(), 29);
        assert_eq!(
            Month::parse("2025-12")
                .unwrap()
                .next_first_day()
                .to_string(),
            "2026-01-01"
        );
    }

    #[test]
    fn offsets_and_windows() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 28_800);
        assert_eq!(parse_offset("-0530").unwrap().local_minus_utc(), -19_800);
        assert!(parse_offset("8").is_none());
        assert!(parse_offset("+25:00").is_none());
        let cal = ApiCalendar::default();
        // 2026-01-01T00:00+08:00 = 2025-12-31T16:00Z
        let d = parse_day("2026-01-01").unwrap();
        assert_eq!(cal.day_start(d), 1_767_196_800);
        assert_eq!(
            cal.date_at(DateTime::from_timestamp(1_767_196_800, 0).unwrap()),
            d
        );
        assert_eq!(
            cal.date_at(DateTime::from_timestamp(1_767_196_799, 0).unwrap())
                .to_string(),
            "2025-12-31"
        );
        let days = cal.last_days(d, 30);
        assert_eq!(days.len(), 30);
        assert_eq!(days[29], d);
        assert_eq!(days[0].to_string(), "2025-12-03");
        let months = cal.last_months(d, 12);
        assert_eq!(months[0].to_string(), "2025-02");
        assert_eq!(
            cal.parse_timestamp("2026-01-01 00:00:01"),
            Some(1_767_196_801)
        );
        assert_eq!(cal.parse_timestamp("garbage"), None);
    }
}
