//! Day and month usage history on the API calendar. Each day and month in the configured
//! window is its own cached [`Slot`]: a closed day (or month) fetched after it ended is
//! immutable and never fetched again while it stays in the window; today and this month are
//! refreshed after `history_ttl`. Entries that leave the window are dropped. The encoder
//! reads an immutable [`HistView`], rebuilt only when something changed.

use super::cache::{FetchError, Slot};
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{ApiCalendar, Month, format_day};
use tokio::time::Instant;

/// The periods a scrape covers for one kind of target (computed once per scrape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) today: NaiveDate,
    /// Oldest first, today last, with the unix second each day ends.
    pub(crate) days: Vec<(NaiveDate, i64)>,
    /// Oldest first, this month last, with the unix second each month ends.
    pub(crate) months: Vec<(Month, i64)>,
}

impl Window {
    pub(crate) fn new(cal: &ApiCalendar, today: NaiveDate, days: u32, months: u32) -> Self {
        Self {
            today,
            days: cal
                .last_days(today, days.min(30))
                .into_iter()
                .map(|d| (d, cal.day_end(d)))
                .collect(),
            months: cal
                .last_months(today, months.min(12))
                .into_iter()
                .map(|m| (m, cal.month_end(m)))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.days.is_empty() && self.months.is_empty()
    }
}

/// One period of a target's history.
pub(crate) type PeriodSlot = Slot<Option<f64>>;

/// The cached history of one target.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) days: BTreeMap<NaiveDate, PeriodSlot>,
    pub(crate) months: BTreeMap<Month, PeriodSlot>,
    aligned_to: Option<(NaiveDate, usize, usize)>,
    view: Option<Arc<HistView>>,
}

/// When a period is due (`None`: never again while it stays in the window). A closed period
/// fetched after it ended never changes; one fetched while open is due once it has ended (for
/// its final value); an open one is refreshed on its phase within `ttl` (`refresh` gives the
/// instant from the fetch time); a failed one is tried again `min(ttl, 1 minute)` after the
/// failure; one never attempted is due now.
#[inline]
pub(crate) fn period_due_at(
    slot: &PeriodSlot,
    end_unix: i64,
    now: Instant,
    now_unix: f64,
    ttl: Duration,
    refresh: impl Fn(Instant) -> Instant,
) -> Option<Instant> {
    let at_unix = |u: f64| {
        let ahead = u - now_unix;
        if ahead > 0.0 {
            now + Duration::from_secs_f64(ahead.min(1e9))
        } else {
            now
        }
    };
    let end = end_unix as f64;
    let retry = || {
        slot.last_error
            .as_ref()
            .map(|e| at_unix(e.at_unix + ttl.min(super::sched::RETRY_FAILED_AFTER).as_secs_f64()))
    };
    match &slot.good {
        Some(g) if g.at_unix >= end => None,
        // Fetched while the period was open, and it has ended since: fetch the final value.
        Some(_) if now_unix >= end => Some(now),
        Some(g) => {
            let mut at = refresh(g.at).min(at_unix(end));
            if slot.last_ok == Some(false)
                && let Some(r) = retry()
            {
                at = at.min(r);
            }
            Some(at)
        }
        None if slot.last_ok.is_none() => Some(now),
        None => retry().or(Some(now)),
    }
}

impl History {
    /// Makes the slots match the window: drops periods that left it, adds new ones. Cheap
    /// when the window did not move.
    pub(crate) fn align(&mut self, w: &Window) {
        let key = (w.today, w.days.len(), w.months.len());
        if self.aligned_to == Some(key) {
            return;
        }
        self.aligned_to = Some(key);
        let first_day = w.days.first().map(|d| d.0);
        self.days
            .retain(|d, _| first_day.is_some_and(|f| *d >= f) && *d <= w.today);
        for (d, _) in &w.days {
            self.days.entry(*d).or_default();
        }
        let first_month = w.months.first().map(|m| m.0);
        let this_month = Month::of(w.today);
        self.months
            .retain(|m, _| first_month.is_some_and(|f| *m >= f) && *m <= this_month);
        for (m, _) in &w.months {
            self.months.entry(*m).or_default();
        }
        self.view = None;
    }

    /// Forgets the view after a slot changed.
    pub(crate) fn invalidate(&mut self) {
        self.view = None;
    }

    /// The immutable view of the cached values and their health.
    pub(crate) fn view(&mut self, cal: &ApiCalendar) -> Arc<HistView> {
        if let Some(v) = &self.view {
            return v.clone();
        }
        let mut ok = true;
        let mut attempted = false;
        let mut last_success: Option<f64> = None;
        let mut last_error: Option<Arc<FetchError>> = None;
        let mut note = |s: &PeriodSlot| {
            if let Some(r) = s.last_ok {
                attempted = true;
                ok &= r;
            }
            if let Some(g) = &s.good {
                last_success = Some(last_success.map_or(g.at_unix, |l: f64| l.max(g.at_unix)));
            }
            if let Some(e) = &s.last_error
                && last_error.as_ref().is_none_or(|l| l.at_unix < e.at_unix)
            {
                last_error = Some(e.clone());
            }
        };
        let mut days = Vec::with_capacity(self.days.len());
        for (d, s) in &self.days {
            note(s);
            if let Some(g) = &s.good
                && let Some(bytes) = g.value
            {
                days.push(Point {
                    label: format_day(*d).into_boxed_str(),
                    bytes,
                    at: g.at,
                    immutable: g.at_unix >= cal.day_end(*d) as f64,
                });
            }
        }
        let mut months = Vec::with_capacity(self.months.len());
        for (m, s) in &self.months {
            note(s);
            if let Some(g) = &s.good
                && let Some(bytes) = g.value
            {
                months.push(Point {
                    label: m.to_string().into_boxed_str(),
                    bytes,
                    at: g.at,
                    immutable: g.at_unix >= cal.month_end(*m) as f64,
                });
            }
        }
        let v = Arc::new(HistView {
            days,
            months,
            ok,
            attempted,
            last_success,
            last_error,
        });
        self.view = Some(v.clone());
        v
    }

    /// The slot of a period, if it is in the window.
    pub(crate) fn slot(&mut self, p: Period) -> Option<&mut PeriodSlot> {
        match p {
            Period::Day(d) => self.days.get_mut(&d),
            Period::Month(m) => self.months.get_mut(&m),
        }
    }

    /// Every period of the window with the unix second it ends.
    pub(crate) fn periods(w: &Window) -> impl Iterator<Item = (Period, i64)> + '_ {
        w.days
            .iter()
            .map(|(d, end)| (Period::Day(*d), *end))
            .chain(w.months.iter().map(|(m, end)| (Period::Month(*m), *end)))
    }

    /// When the history is due next (the earliest period; `None`: nothing will be), and
    /// whether a period was never attempted (then a scrape waits for it, and it goes into
    /// the queue with never-fetched work).
    pub(crate) fn next_due(
        &mut self,
        w: &Window,
        now: Instant,
        now_unix: f64,
        ttl: Duration,
        refresh: impl Fn(Instant) -> Instant + Copy,
    ) -> (Option<Instant>, bool) {
        self.align(w);
        let mut next: Option<Instant> = None;
        let mut cold = false;
        for (p, end) in Self::periods(w) {
            let Some(slot) = self.slot(p) else { continue };
            cold |= slot.last_ok.is_none();
            if let Some(at) = period_due_at(slot, end, now, now_unix, ttl, refresh) {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        (next, cold)
    }
}

/// One period of a target's usage history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Day(NaiveDate),
    Month(Month),
}

impl Period {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub(crate) fn label(self) -> String {
        match self {
            Period::Day(d) => format_day(d),
            Period::Month(m) => m.to_string(),
        }
    }
}

/// One served period.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub(crate) label: Box<str>,
    pub(crate) bytes: f64,
    pub(crate) at: Instant,
    /// Closed and fetched after it ended: never stale.
    pub(crate) immutable: bool,
}

impl Point {
    #[inline]
    pub(crate) fn served(&self, now: Instant, stale_after: Duration) -> bool {
        self.immutable || now.saturating_duration_since(self.at) < stale_after
    }
}

/// The history of one target as the encoder sees it.
#[derive(Debug, Default)]
pub(crate) struct HistView {
    pub(crate) days: Vec<Point>,
    pub(crate) months: Vec<Point>,
    /// No period failed at its latest attempt.
    pub(crate) ok: bool,
    pub(crate) attempted: bool,
    pub(crate) last_success: Option<f64>,
    pub(crate) last_error: Option<Arc<FetchError>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::calendar::parse_day;

    /// Refreshed one TTL after the fetch (the scheduler adds the phase).
    fn after(ttl: Duration) -> impl Fn(Instant) -> Instant + Copy {
        move |at| at + ttl
    }

    #[test]
    fn window_alignment_and_due_rules() {
        let cal = ApiCalendar::default();
        let today = parse_day("2026-03-02").unwrap();
        let w = Window::new(&cal, today, 3, 2);
        assert_eq!(
            w.days.iter().map(|d| format_day(d.0)).collect::<Vec<_>>(),
            ["2026-02-28", "2026-03-01", "2026-03-02"]
        );
        let mut h = History::default();
        h.align(&w);
        assert_eq!(h.days.len(), 3);
        assert_eq!(h.months.len(), 2);
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        // Nothing fetched yet: everything is due, and the history is cold.
        for (d, end) in &w.days {
            assert_eq!(
                period_due_at(&h.days[d], *end, now, 0.0, ttl, after(ttl)),
                Some(now)
            );
        }
        assert_eq!(h.next_due(&w, now, 0.0, ttl, after(ttl)), (Some(now), true));
        // A closed day fetched after its end is immutable, whatever the TTL.
        let closed = w.days[0];
        h.days.get_mut(&closed.0).unwrap().record(Ok(Some(5.0)));
        let zero = Duration::ZERO;
        assert_eq!(
            period_due_at(
                &h.days[&closed.0],
                closed.1,
                now,
                f64::MAX,
                zero,
                after(zero)
            ),
            None
        );
        // The window moves: the oldest day leaves, a new one arrives.
        let w2 = Window::new(&cal, parse_day("2026-03-03").unwrap(), 3, 2);
        h.align(&w2);
        assert!(!h.days.contains_key(&closed.0));
        assert_eq!(h.days.len(), 3);
        let v = h.view(&cal);
        assert!(v.days.is_empty());
        assert!(!v.attempted);
    }

    #[test]
    fn partial_closed_day_is_due_again_and_failures_retry_within_a_minute() {
        let mut s: PeriodSlot = Slot::default();
        s.record(Ok(Some(1.0)));
        let now = Instant::now();
        // Fetched "now", the period ended one second ago... but fetched after: immutable.
        let now_unix = crate::sys::unix_now();
        let end = now_unix as i64 - 1;
        let ttl = Duration::from_secs(60);
        assert_eq!(period_due_at(&s, end, now, now_unix, ttl, after(ttl)), None);
        // A period that ends in the future is open: refreshed after the TTL (or at its end,
        // if that comes first).
        let end = end + 3600;
        let at = period_due_at(&s, end, now, now_unix, ttl, after(ttl)).unwrap();
        assert!(at > now + Duration::from_secs(55) && at <= s.good.as_ref().unwrap().at + ttl);
        let short_end = now_unix as i64 + 10;
        let at = period_due_at(&s, short_end, now, now_unix, ttl, after(ttl)).unwrap();
        assert!(at <= now + Duration::from_secs(11), "not due when it ends");
        // Once that period has ended, the partial value is fetched again.
        assert_eq!(
            period_due_at(&s, end, now, end as f64 + 1.0, ttl, after(ttl)),
            Some(now)
        );
        // A failed period with no value: tried again a minute after the failure (TTL 1 h).
        let mut f: PeriodSlot = Slot::default();
        f.record(Err(Arc::new(FetchError::internal())));
        let hour = Duration::from_secs(3600);
        let at = period_due_at(&f, end, now, now_unix, hour, after(hour)).unwrap();
        assert!(at > now + Duration::from_secs(55) && at < now + Duration::from_secs(65));
    }
}
