//! The landing page's view model: plain structs of what the page shows (problems, accounts,
//! pools, the card summary and one page of the card list), built from a collection
//! [`Snapshot`] by [`build`] — the one function that reads the snapshot, so a change in the
//! collection layer is adapted there — and rendered by `html`. The thresholds follow the
//! shipped alerts (`deploy/prometheus/rules/tibiot.rules.yml`, explained in docs/runbook.md)
//! so that the page and the alerts agree on what is a problem; the page adds its own
//! critical class for a card over its cap (the alerts count it as near its cap).

use crate::collect::cache::FetchError;
use crate::collect::{Health, Snapshot, TargetSnap};
use crate::kinds::card::{Card, CardValues};
use crate::kinds::pool::{Pool, PoolValues};
use std::borrow::Cow;
use tibiot_api::calendar::{ApiCalendar, format_day};

/// Cards per page of the full card list.
pub(super) const PAGE_SIZE: usize = 100;
/// Cards shown in the "top by usage" table.
pub(super) const TOP_CARDS: usize = 10;
/// Items listed per problem group; the rest is counted (and, for cards, one click away in the
/// filtered card list).
pub(super) const GROUP_ITEMS: usize = 8;
/// Problem cards listed in the card section.
pub(super) const PROBLEM_CARDS: usize = 20;

/// A pool at or above this share of its capacity is a warning, at or above
/// [`POOL_CRITICAL_PCT`] critical (TibiotPoolAlmostExhausted).
pub(super) const POOL_WARNING_PCT: f64 = 80.0;
pub(super) const POOL_CRITICAL_PCT: f64 = 95.0;
/// A card at or above this share of its own cap is near it (TibiotCardNearCap).
pub(super) const CARD_NEAR_CAP_PCT: f64 = 90.0;
/// An end date this close is a warning (TibiotPoolEndDateNear).
pub(super) const END_DATE_WARNING_DAYS: f64 = 7.0;
/// Running out sooner than this is critical (TibiotPoolExhaustionForecast).
pub(super) const EXHAUSTION_CRITICAL_DAYS: f64 = 1.0;
/// Closed days of history averaged for the exhaustion forecast.
pub(super) const RATE_DAYS: usize = 7;

/// How bad a problem is; problems are listed worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Level {
    Critical,
    Warning,
}

impl Level {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Warning => "warning",
        }
    }
}

/// The kinds of problem, in the order the page lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum ProblemKind {
    AccountDown,
    AccountErrors,
    ApiPaused,
    ReloadFailed,
    BudgetOversubscribed,
    PoolExhausting,
    CardOverCap,
    CollectionFailing,
    PoolInvalid,
    PoolFilling,
    PoolEndNear,
    CardAbnormal,
    CardNearCap,
}

impl ProblemKind {
    /// The heading of the group.
    pub(super) fn title(self) -> &'static str {
        match self {
            ProblemKind::AccountDown => "Account down",
            ProblemKind::AccountErrors => "Account answering with errors",
            ProblemKind::ApiPaused => "API asked for a pause (Retry-After)",
            ProblemKind::BudgetOversubscribed => "Request budget over-subscribed",
            ProblemKind::ReloadFailed => "Configuration reload failed",
            ProblemKind::PoolExhausting => "Pools at or near exhaustion",
            ProblemKind::CardOverCap => "Cards over their cap",
            ProblemKind::CollectionFailing => "Failing targets",
            ProblemKind::PoolInvalid => "Invalid pools",
            ProblemKind::PoolFilling => "Pools filling up",
            ProblemKind::PoolEndNear => "Pools near their end date",
            ProblemKind::CardAbnormal => "Abnormal cards",
            ProblemKind::CardNearCap => "Cards near their cap",
        }
    }

    /// The card-list filter that shows every card of this kind, when it is about cards.
    pub(super) fn card_filter(self) -> Option<&'static str> {
        match self {
            ProblemKind::CardOverCap => Some("over_cap"),
            ProblemKind::CardNearCap => Some("near_cap"),
            ProblemKind::CardAbnormal => Some("abnormal"),
            ProblemKind::CollectionFailing => Some("failing"),
            _ => None,
        }
    }
}

/// What a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Subject {
    Account,
    Pool(String),
    Card(String),
}

/// One problem.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub account: String,
    pub subject: Subject,
    /// One line, plain text (escaped when rendered).
    pub detail: String,
}

/// The problems of one kind: the first [`GROUP_ITEMS`], and how many there are in all.
#[derive(Debug, Clone)]
pub(super) struct ProblemGroup {
    pub kind: ProblemKind,
    /// The worst level in the group.
    pub level: Level,
    pub items: Vec<Problem>,
    pub total: usize,
}

/// Collection state of one target (or its history).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fetch {
    /// Never fetched yet (the first fetch is running or about to start).
    Pending,
    Ok,
    /// The latest fetch failed; the error as the client reported it.
    Failing(String),
}

/// One target's collection state and data age.
#[derive(Debug, Clone)]
pub(super) struct TargetState {
    pub fetch: Fetch,
    /// Seconds since the served values were fetched; `None` when nothing is served.
    pub age: Option<f64>,
}

/// One account.
#[derive(Debug, Clone)]
pub(super) struct AccountRow {
    pub name: String,
    /// `None` before the first upstream request.
    pub up: Option<bool>,
    /// How the page rates the account: `None` when fine, critical when it is down (its
    /// latest request failed and most collections fail), a warning when its latest request
    /// failed but most collections succeed.
    pub level: Option<Level>,
    pub pools: usize,
    pub cards: usize,
    pub ok: usize,
    pub failing: usize,
    pub pending: usize,
    /// Collection parts due or being fetched (refreshes included), not yet completed.
    pub refreshing: usize,
    /// Requests per second the account's targets need at their TTLs, and the allowed rate
    /// (`None`: unlimited).
    pub required_rps: f64,
    pub allowed_rps: Option<f64>,
    /// Until when the API asked for no requests, unix seconds.
    pub paused_until: Option<f64>,
    /// Per collection kind, the age of the oldest value served, seconds.
    pub oldest: Vec<(&'static str, f64)>,
}

impl AccountRow {
    /// required / allowed, when more is needed than allowed.
    pub(super) fn oversubscribed(&self) -> Option<f64> {
        let allowed = self.allowed_rps.filter(|a| *a > 0.0)?;
        let factor = self.required_rps / allowed;
        (factor > 1.0).then_some(factor)
    }
}

/// One pool.
#[derive(Debug, Clone)]
pub(super) struct PoolRow {
    pub account: String,
    pub code: String,
    pub name: String,
    pub type_label: String,
    pub used: Option<f64>,
    pub capacity: Option<f64>,
    /// Used / capacity, percent (not clamped: over 100 when over capacity).
    pub pct: Option<f64>,
    pub valid: Option<bool>,
    pub cards: Option<f64>,
    /// The end date (API calendar) and the days left until it.
    pub end_date: Option<String>,
    pub days_to_end: Option<f64>,
    /// Average use per day over the last closed days of history, bytes.
    pub daily_rate: Option<f64>,
    /// Days until the capacity is used up at `daily_rate`.
    pub days_to_exhaustion: Option<f64>,
    pub state: TargetState,
    /// History collection state, with the number of days and months served.
    pub history: Option<(TargetState, usize, usize)>,
    /// The worst problem of the row, for highlighting.
    pub level: Option<Level>,
}

/// One card.
#[derive(Debug, Clone)]
pub(super) struct CardRow {
    pub account: String,
    pub iccid: String,
    pub status: Option<String>,
    pub billing: Option<String>,
    pub cycle: Option<f64>,
    pub month: Option<f64>,
    pub capacity: Option<f64>,
    /// Cycle usage / own cap, percent (not clamped).
    pub pct: Option<f64>,
    pub state: TargetState,
    /// What is wrong with the card, short words ("over cap", "abnormal", "failing").
    pub flags: Vec<&'static str>,
    pub level: Option<Level>,
}

/// The card list's query: `?q=` (part of an ICCID or account), `?status=` (a card status or
/// one of [`PSEUDO_STATUSES`]), `?page=` (1-based).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CardQuery {
    pub q: String,
    pub status: Option<String>,
    pub page: usize,
}

/// Filters of the card list beyond the card statuses (cards without a value yet count as
/// status `unknown`).
pub(super) const PSEUDO_STATUSES: [(&str, &str); 5] = [
    ("problems", "any problem"),
    ("over_cap", "over their cap"),
    ("near_cap", "near their cap"),
    ("failing", "collection failing"),
    ("pending", "not collected yet"),
];

impl CardQuery {
    /// Reads the query parameters; anything malformed is ignored (the page still answers).
    pub(super) fn from_params(params: &[(String, String)]) -> Self {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
        let q: String = get("q").unwrap_or("").chars().take(64).collect();
        let status = get("status")
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= 40
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .map(str::to_owned);
        let page = get("page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        Self { q, status, page }
    }

    /// Whether any filter is set.
    pub(super) fn filtered(&self) -> bool {
        !self.q.is_empty() || self.status.is_some()
    }
}

/// The card section: counts by status, the top cards by usage, the problem cards, and one
/// page of the (filtered) full list.
#[derive(Debug, Clone, Default)]
pub(super) struct CardsView {
    pub total: usize,
    /// (status, cards), most first; "unknown" for cards without a value yet.
    pub by_status: Vec<(String, usize)>,
    /// (pseudo status, cards) for the pseudo filters that match any card.
    pub by_flag: Vec<(&'static str, usize)>,
    pub top: Vec<CardRow>,
    pub problems: Vec<CardRow>,
    pub problem_total: usize,
    pub query: CardQuery,
    /// Cards matching the query.
    pub matched: usize,
    pub pages: usize,
    pub page: Vec<CardRow>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub(super) struct Landing {
    pub version: &'static str,
    pub revision: &'static str,
    pub reload_ok: bool,
    /// Unix seconds the view was built at.
    pub now: f64,
    pub accounts: Vec<AccountRow>,
    pub problems: Vec<ProblemGroup>,
    pub pools: Vec<PoolRow>,
    pub cards: CardsView,
    /// Targets never fetched yet (the page refreshes itself while there are any).
    pub pending: usize,
    /// Targets whose latest fetch failed.
    pub failing: usize,
    /// Targets in all.
    pub targets: usize,
}

/// What `build` needs besides the snapshot.
#[derive(Debug, Clone)]
pub(super) struct Context {
    pub reload_ok: bool,
    pub calendar: ApiCalendar,
    pub query: CardQuery,
}

fn state(h: &Health, fetched_at: Option<f64>, now: f64) -> TargetState {
    let fetch = if !h.attempted {
        Fetch::Pending
    } else if h.ok {
        Fetch::Ok
    } else {
        Fetch::Failing(error_text(h.error.as_deref()))
    };
    TargetState {
        fetch,
        age: fetched_at.map(|t| (now - t).max(0.0)),
    }
}

/// The failure's class (`http_error`, `api_error`, …) and its message.
fn error_text(e: Option<&FetchError>) -> String {
    match e {
        Some(e) => match e.api_code {
            Some(c) if !e.message.contains(&format!("code={c}")) => {
                format!("{}: {} (API code {c})", e.outcome, e.message)
            }
            _ => format!("{}: {}", e.outcome, e.message),
        },
        None => "failed (no detail)".into(),
    }
}

fn pct(used: Option<f64>, cap: Option<f64>) -> Option<f64> {
    match (used, cap) {
        (Some(u), Some(c)) if c > 0.0 && u.is_finite() => Some(u / c * 100.0),
        _ => None,
    }
}

/// Bytes as text with a binary unit ("41.7 GiB"); the page and the problem lines share it.
pub(super) fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{x:.0} {}", UNITS[i])
    } else {
        format!("{x:.1} {}", UNITS[i])
    }
}

/// Days as text ("3.2 days", "5 h", "today").
pub(super) fn days(d: f64) -> String {
    if d < 0.0 {
        format!("{} days ago", (-d).round())
    } else if d < 1.0 {
        format!("{:.0} h", (d * 24.0).max(1.0))
    } else if d < 10.0 {
        format!("{d:.1} days")
    } else {
        format!("{d:.0} days")
    }
}

/// Per-card facts computed in the one pass over every card.
struct CardFacts<'a> {
    account: &'a str,
    t: &'a TargetSnap,
    status: Option<Cow<'static, str>>,
    cycle: f64,
    pct: Option<f64>,
    over_cap: bool,
    near_cap: bool,
    abnormal: bool,
    failing: bool,
    pending: bool,
}

impl CardFacts<'_> {
    fn problem(&self) -> bool {
        self.over_cap || self.near_cap || self.abnormal || self.failing
    }

    fn matches(&self, q: &CardQuery) -> bool {
        if !q.q.is_empty() && !self.t.id().contains(q.q.as_str()) && self.account != q.q {
            return false;
        }
        match q.status.as_deref() {
            None => true,
            Some("problems") => self.problem(),
            Some("over_cap") => self.over_cap,
            Some("near_cap") => self.near_cap,
            Some("failing") => self.failing,
            Some("pending") => self.pending,
            Some("unknown") => self.status.is_none(),
            Some(s) => self.status.as_deref() == Some(s),
        }
    }

    fn row(&self, now: f64) -> CardRow {
        let v = self.t.value::<CardValues>();
        let mut flags = Vec::new();
        let mut level = None;
        if self.over_cap {
            flags.push("over cap");
            level = Some(Level::Critical);
        } else if self.near_cap {
            flags.push("near cap");
            level = Some(Level::Warning);
        }
        if self.abnormal {
            flags.push("abnormal");
            level = level.or(Some(Level::Warning));
        }
        if self.failing {
            flags.push("failing");
            level = level.or(Some(Level::Warning));
        }
        CardRow {
            account: self.account.to_owned(),
            iccid: self.t.id().to_owned(),
            status: self.status.as_ref().map(|s| s.to_string()),
            billing: v.and_then(|v| v.billing_label().map(|b| b.to_string())),
            cycle: v.and_then(|v| v.cycle_bytes()),
            month: v.and_then(|v| v.month_bytes()),
            capacity: v.and_then(|v| v.capacity_bytes()),
            pct: self.pct,
            state: state(
                &self.t.health,
                self.t.value.as_ref().map(|v| v.at_unix),
                now,
            ),
            flags,
            level,
        }
    }
}

/// Problems as they are found: per kind, how many, and the first [`GROUP_ITEMS`] — built
/// only when kept, so 10,000 failing cards cost a count, not 10,000 lines of text.
#[derive(Default)]
struct Problems {
    groups: Vec<ProblemGroup>,
}

impl Problems {
    fn add(&mut self, kind: ProblemKind, level: Level, make: impl FnOnce() -> Problem) {
        let i = match self.groups.iter().position(|g| g.kind == kind) {
            Some(i) => i,
            None => {
                self.groups.push(ProblemGroup {
                    kind,
                    level,
                    items: Vec::new(),
                    total: 0,
                });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        g.total += 1;
        g.level = g.level.min(level);
        if g.items.len() < GROUP_ITEMS {
            g.items.push(make());
        }
    }

    /// The groups, worst first.
    fn into_groups(mut self) -> Vec<ProblemGroup> {
        self.groups.sort_by_key(|g| (g.level, g.kind));
        self.groups
    }
}

fn pool_row(
    account: &str,
    p: &TargetSnap,
    cal: &ApiCalendar,
    now: f64,
    problems: &mut Problems,
) -> PoolRow {
    let v = p.value::<PoolValues>();
    let used = v.and_then(|v| v.used_bytes);
    let capacity = v.and_then(|v| v.capacity_bytes);
    let pct = pct(used, capacity);
    let end_ts = v.and_then(|v| v.end_ts);
    let end_date = end_ts
        .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
        .map(|dt| format_day(cal.date_at(dt)));
    let days_to_end = end_ts.map(|t| (t - now) / 86_400.0);
    // Average daily use over the last closed days (today's value is still growing).
    let daily_rate = p.history.as_ref().and_then(|(view, _)| {
        let closed: Vec<f64> = view
            .days
            .iter()
            .filter(|d| d.immutable)
            .rev()
            .take(RATE_DAYS)
            .map(|d| d.bytes)
            .collect();
        (!closed.is_empty()).then(|| closed.iter().sum::<f64>() / closed.len() as f64)
    });
    let days_to_exhaustion = match (used, capacity, daily_rate) {
        (Some(u), Some(c), Some(r)) if r > 0.0 => Some(((c - u) / r).max(0.0)),
        _ => None,
    };
    let code = p.id().to_owned();
    let mut level: Option<Level> = None;
    let mut add = |kind: ProblemKind, l: Level, detail: String| {
        level = Some(level.map_or(l, |x| x.min(l)));
        problems.add(kind, l, || Problem {
            account: account.to_owned(),
            subject: Subject::Pool(code.clone()),
            detail,
        });
    };
    if let (Some(pc), Some(u), Some(c)) = (pct, used, capacity) {
        let forecast = days_to_exhaustion
            .map(|d| format!("; at the last days' rate it runs out in {}", days(d)))
            .unwrap_or_default();
        if pc >= POOL_CRITICAL_PCT
            || days_to_exhaustion.is_some_and(|d| d < EXHAUSTION_CRITICAL_DAYS)
        {
            add(
                ProblemKind::PoolExhausting,
                Level::Critical,
                format!("{pc:.1}% used ({} of {}){forecast}", bytes(u), bytes(c)),
            );
        } else if pc >= POOL_WARNING_PCT {
            add(
                ProblemKind::PoolFilling,
                Level::Warning,
                format!("{pc:.1}% used ({} of {}){forecast}", bytes(u), bytes(c)),
            );
        } else if let (Some(x), Some(e)) = (days_to_exhaustion, days_to_end)
            && x < e
        {
            add(
                ProblemKind::PoolFilling,
                Level::Warning,
                format!(
                    "runs out in {} at the last days' rate, before its end date (in {})",
                    days(x),
                    days(e)
                ),
            );
        }
    }
    if v.and_then(|v| v.valid) == Some(0.0) {
        add(
            ProblemKind::PoolInvalid,
            Level::Warning,
            "the platform reports the pool invalid".into(),
        );
    }
    if let (Some(d), Some(date)) = (days_to_end, &end_date)
        && d < END_DATE_WARNING_DAYS
    {
        let when = if d < 0.0 {
            "ended".to_owned()
        } else {
            format!("ends in {}", days(d))
        };
        add(
            ProblemKind::PoolEndNear,
            Level::Warning,
            format!("{when} ({date})"),
        );
    }
    let st = state(&p.health, p.value.as_ref().map(|v| v.at_unix), now);
    let history = p.history.as_ref().map(|(view, h)| {
        (
            state(h, view.last_success, now),
            view.days.len(),
            view.months.len(),
        )
    });
    let failing = matches!(st.fetch, Fetch::Failing(_))
        || history
            .as_ref()
            .is_some_and(|(s, _, _)| matches!(s.fetch, Fetch::Failing(_)));
    if failing {
        level = Some(level.map_or(Level::Warning, |x| x.min(Level::Warning)));
    }
    PoolRow {
        account: account.to_owned(),
        code,
        name: v.map(|v| v.name.to_string()).unwrap_or_default(),
        type_label: v
            .and_then(|v| v.type_label.as_ref().map(|t| t.to_string()))
            .unwrap_or_default(),
        used,
        capacity,
        pct,
        valid: v.and_then(|v| v.valid).map(|x| x == 1.0),
        cards: v.and_then(|v| v.cards),
        end_date,
        days_to_end,
        daily_rate,
        days_to_exhaustion,
        state: st,
        history,
        level,
    }
}

/// Records a failing collection (when `h` says the latest attempt failed).
fn note_failing(
    problems: &mut Problems,
    account: &str,
    subject: impl FnOnce() -> Subject,
    what: &str,
    h: &Health,
    fetched_at: Option<f64>,
    now: f64,
) {
    if h.attempted && !h.ok {
        problems.add(ProblemKind::CollectionFailing, Level::Warning, || {
            failing_problem(account, subject(), what, h, fetched_at, now)
        });
    }
}

fn failing_problem(
    account: &str,
    subject: Subject,
    what: &str,
    h: &Health,
    fetched_at: Option<f64>,
    now: f64,
) -> Problem {
    let served = match fetched_at {
        Some(t) => format!(
            "; serving values from {} ago",
            super::age_text((now - t).max(0.0))
        ),
        None => "; no values served".into(),
    };
    Problem {
        account: account.to_owned(),
        subject,
        detail: format!("{what}: {}{served}", error_text(h.error.as_deref())),
    }
}

/// Builds the page's view of `snap`. This is the one function that reads the collection
/// snapshot; it makes one pass over the cards and keeps rows only for what is shown.
pub(super) fn build(snap: &Snapshot, ctx: &Context) -> Landing {
    let now = snap.now_unix;
    let query = &ctx.query;
    let mut problems = Problems::default();
    let mut accounts = Vec::with_capacity(snap.accounts.len());
    let mut pools = Vec::new();
    let mut facts: Vec<CardFacts<'_>> =
        Vec::with_capacity(snap.accounts.iter().map(|a| a.targets(&Card).len()).sum());
    let (mut pending, mut failing, mut targets) = (0usize, 0usize, 0usize);

    if !ctx.reload_ok {
        problems.add(ProblemKind::ReloadFailed, Level::Warning, || Problem {
            account: String::new(),
            subject: Subject::Account,
            detail: "the latest reload of the configuration failed; the previous one is in use (see the log)".into(),
        });
    }

    for a in &snap.accounts {
        let name: &str = &a.name;
        let (a_pools, a_cards) = (a.targets(&Pool), a.targets(&Card));
        let mut row = AccountRow {
            name: name.to_owned(),
            up: a.up,
            level: None,
            pools: a_pools.len(),
            cards: a_cards.len(),
            ok: 0,
            failing: 0,
            pending: 0,
            refreshing: a.pending.iter().map(|(_, n)| n).sum(),
            required_rps: a.required_rps,
            allowed_rps: a.allowed_rps,
            paused_until: a.paused_until.filter(|t| *t > now),
            oldest: a.oldest_age.clone(),
        };
        let mut last_error: Option<(f64, String)> = None;
        let mut tally = |h: &Health, row: &mut AccountRow| {
            if !h.attempted {
                row.pending += 1;
            } else if h.ok {
                row.ok += 1;
            } else {
                row.failing += 1;
                if let Some(e) = &h.error
                    && last_error.as_ref().is_none_or(|(t, _)| e.at_unix > *t)
                {
                    last_error = Some((e.at_unix, e.message.clone()));
                }
            }
        };
        for p in a_pools {
            tally(&p.health, &mut row);
            if let Some((_, h)) = &p.history {
                tally(h, &mut row);
            }
            pools.push(pool_row(name, p, &ctx.calendar, now, &mut problems));
            let subject = || Subject::Pool(p.id().to_owned());
            let at = p.value.as_ref().map(|v| v.at_unix);
            note_failing(
                &mut problems,
                name,
                subject,
                "pool detail",
                &p.health,
                at,
                now,
            );
            if let Some((view, h)) = &p.history {
                let at = view.last_success;
                note_failing(
                    &mut problems,
                    name,
                    subject,
                    "pool usage history",
                    h,
                    at,
                    now,
                );
            }
        }
        for c in a_cards {
            tally(&c.health, &mut row);
            let mut hist_failing = false;
            if let Some((_, h)) = &c.history {
                tally(h, &mut row);
                hist_failing = h.attempted && !h.ok;
            }
            let v = c.value::<CardValues>();
            let cycle = v.and_then(|v| v.cycle_bytes());
            let cap = v.and_then(|v| v.capacity_bytes());
            let pc = pct(cycle, cap);
            let status = v.and_then(|v| v.status_label());
            let f = CardFacts {
                account: name,
                t: c,
                abnormal: status.as_deref() == Some("abnormal"),
                status,
                cycle: cycle.unwrap_or(0.0),
                pct: pc,
                over_cap: pc.is_some_and(|x| x > 100.0),
                near_cap: pc.is_some_and(|x| (CARD_NEAR_CAP_PCT..=100.0).contains(&x)),
                failing: (c.health.attempted && !c.health.ok) || hist_failing,
                pending: !c.health.attempted,
            };
            let subject = || Subject::Card(c.id().to_owned());
            let usage = || {
                format!(
                    "{} used this cycle, {:.0}% of its {} cap",
                    bytes(f.cycle),
                    pc.unwrap_or(0.0),
                    bytes(cap.unwrap_or(0.0))
                )
            };
            let card = |detail: String| Problem {
                account: name.to_owned(),
                subject: subject(),
                detail,
            };
            if f.over_cap {
                problems.add(ProblemKind::CardOverCap, Level::Critical, || card(usage()));
            } else if f.near_cap {
                problems.add(ProblemKind::CardNearCap, Level::Warning, || card(usage()));
            }
            if f.abnormal {
                problems.add(ProblemKind::CardAbnormal, Level::Warning, || {
                    card("card status abnormal".into())
                });
            }
            let at = c.value.as_ref().map(|v| v.at_unix);
            note_failing(
                &mut problems,
                name,
                subject,
                "card detail",
                &c.health,
                at,
                now,
            );
            if let Some((view, h)) = &c.history {
                let at = view.last_success;
                note_failing(
                    &mut problems,
                    name,
                    subject,
                    "card usage history",
                    h,
                    at,
                    now,
                );
            }
            facts.push(f);
        }
        if a.up == Some(false) {
            let why = last_error
                .map(|(_, e)| format!(": {e}"))
                .unwrap_or_default();
            let attempted = row.ok + row.failing;
            // Down when most collections fail too; else one slow or failing target made the
            // latest request fail while the account answers the rest.
            let (kind, level) = if row.ok == 0 || row.failing * 2 >= attempted {
                (ProblemKind::AccountDown, Level::Critical)
            } else {
                (ProblemKind::AccountErrors, Level::Warning)
            };
            row.level = Some(level);
            problems.add(kind, level, || Problem {
                account: name.to_owned(),
                subject: Subject::Account,
                detail: format!(
                    "the latest upstream request failed{why}; {} of {attempted} collections ok",
                    row.ok
                ),
            });
        }
        if let Some(factor) = row.oversubscribed() {
            let (need, allowed) = (row.required_rps, row.allowed_rps.unwrap_or(0.0));
            problems.add(ProblemKind::BudgetOversubscribed, Level::Warning, || Problem {
                account: name.to_owned(),
                subject: Subject::Account,
                detail: format!(
                    "its targets need {need:.1} requests/s at their TTLs, {allowed:.1}/s are allowed (collect.requests_per_second): every refresh takes {factor:.1}× its TTL; raise the rate or the TTLs (check-config shows the budget)"
                ),
            });
        }
        if let Some(until) = row.paused_until {
            problems.add(ProblemKind::ApiPaused, Level::Warning, || Problem {
                account: name.to_owned(),
                subject: Subject::Account,
                detail: format!(
                    "no requests for another {} (the API's Retry-After); values are served from the cache meanwhile",
                    super::age_text(until - now)
                ),
            });
        }
        pending += row.pending;
        failing += row.failing;
        targets += row.pending + row.ok + row.failing;
        accounts.push(row);
    }
    let groups = problems.into_groups();

    // Pools: the worst first, then the fullest.
    pools.sort_by(|a, b| {
        let la = a.level.map_or(2, |l| l as u8);
        let lb = b.level.map_or(2, |l| l as u8);
        la.cmp(&lb).then(
            b.pct
                .unwrap_or(-1.0)
                .partial_cmp(&a.pct.unwrap_or(-1.0))
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });

    Landing {
        version: crate::version::VERSION,
        revision: crate::version::REVISION,
        reload_ok: ctx.reload_ok,
        now,
        accounts,
        problems: groups,
        pools,
        cards: cards_view(&facts, query, now),
        pending,
        failing,
        targets,
    }
}

fn cards_view(facts: &[CardFacts<'_>], query: &CardQuery, now: f64) -> CardsView {
    let mut by_status: Vec<(String, usize)> = Vec::new();
    let mut flags = [0usize; PSEUDO_STATUSES.len()];
    let mut problem_idx = Vec::new();
    let mut matched = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let s = f.status.as_deref().unwrap_or("unknown");
        match by_status.iter_mut().find(|(n, _)| n == s) {
            Some((_, n)) => *n += 1,
            None => by_status.push((s.to_owned(), 1)),
        }
        let hits = [f.problem(), f.over_cap, f.near_cap, f.failing, f.pending];
        for (n, hit) in flags.iter_mut().zip(hits) {
            *n += usize::from(hit);
        }
        if f.problem() {
            problem_idx.push(i);
        }
        if f.matches(query) {
            matched.push(i);
        }
    }
    by_status.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Problem cards: over cap first, then by how far over, then the rest in list order.
    problem_idx.sort_by(|&a, &b| {
        let (fa, fb) = (&facts[a], &facts[b]);
        fb.over_cap
            .cmp(&fa.over_cap)
            .then(
                fb.pct
                    .unwrap_or(0.0)
                    .partial_cmp(&fa.pct.unwrap_or(0.0))
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
            .then(a.cmp(&b))
    });
    // Top cards by this cycle's usage: a partial selection, not a sort of every card.
    let mut top_idx: Vec<usize> = (0..facts.len()).filter(|&i| facts[i].cycle > 0.0).collect();
    let by_usage = |a: &usize, b: &usize| {
        facts[*b]
            .cycle
            .partial_cmp(&facts[*a].cycle)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    if top_idx.len() > TOP_CARDS {
        top_idx.select_nth_unstable_by(TOP_CARDS - 1, by_usage);
        top_idx.truncate(TOP_CARDS);
    }
    top_idx.sort_by(by_usage);
    let pages = matched.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = query.page.min(pages);
    let page = matched
        .iter()
        .skip((page_no - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|&i| facts[i].row(now))
        .collect();
    CardsView {
        total: facts.len(),
        by_status,
        by_flag: PSEUDO_STATUSES
            .iter()
            .zip(flags)
            .filter(|(_, n)| *n > 0)
            .map(|((k, _), n)| (*k, n))
            .collect(),
        top: top_idx.iter().map(|&i| facts[i].row(now)).collect(),
        problem_total: problem_idx.len(),
        problems: problem_idx
            .iter()
            .take(PROBLEM_CARDS)
            .map(|&i| facts[i].row(now))
            .collect(),
        query: CardQuery {
            page: page_no,
            ..query.clone()
        },
        matched: matched.len(),
        pages,
        page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read_leniently() {
        let p = |v: &[(&str, &str)]| {
            CardQuery::from_params(
                &v.iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            p(&[("q", " 8986 "), ("status", "over_cap"), ("page", "3")]),
            CardQuery {
                q: "8986".into(),
                status: Some("over_cap".into()),
                page: 3
            }
        );
        let bad = p(&[("status", "<script>"), ("page", "-1")]);
        assert_eq!((bad.status, bad.page), (None, 1));
        assert_eq!(p(&[("q", &"9".repeat(500))]).q.len(), 64);
    }

    #[test]
    fn formatting() {
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(10.0), "10 B");
        assert_eq!(bytes(41.7 * 1024.0 * 1024.0 * 1024.0), "41.7 GiB");
        assert_eq!(days(0.2), "5 h");
        assert_eq!(days(3.25), "3.2 days");
        assert_eq!(days(45.4), "45 days");
        assert_eq!(days(-2.0), "2 days ago");
    }
}
