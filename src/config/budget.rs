//! Request budget planning: the upstream request rate a set of targets needs at the configured
//! TTLs, compared with the account's `requests_per_second`, and how far the refresh periods
//! stretch when it does not fit (docs/config.md, "Request budget").
//!
//! Per pool: one detail per `pool_ttl`, plus today's day usage (when `history.pool_days` > 0)
//! and this month's usage (when `history.pool_months` > 0) per `history_ttl`. Cards likewise
//! with `card_ttl` and `card_days`/`card_months`. Closed days and months are fetched once and
//! kept while they stay in the window, so they are a one-off fill at a cold start, not a rate.
//! Retries are not counted: this is what an error-free upstream costs.

use super::model::{Account, CollectConfig, Config};
use std::time::Duration;

/// How many targets of each kind a plan covers: an account's, or the share one shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TargetCounts {
    pub(crate) pools: usize,
    pub(crate) cards: usize,
}

/// The request rate a set of targets needs, and what it gets. Built by
/// [`CollectConfig::request_budget`] (or [`Config::request_budgets`] for every account).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestBudget {
    pub(crate) targets: TargetCounts,
    /// Requests per second the pools need (detail and open history periods).
    pub(crate) pools_per_second: f64,
    /// Requests per second the cards need.
    pub(crate) cards_per_second: f64,
    /// The rate allowed (`requests_per_second`); `None` = unlimited.
    pub(crate) allowed_per_second: Option<f64>,
    /// One-off requests for the closed days and months of the history windows (a cold start
    /// fetches them once; they are kept afterwards).
    pub(crate) fill_requests: u64,
    pool_ttl: Duration,
    card_ttl: Duration,
    history_ttl: Duration,
}

impl CollectConfig {
    /// The budget of `targets` under these settings, allowed `requests_per_second`.
    pub(crate) fn request_budget(&self, targets: TargetCounts) -> RequestBudget {
        let h = &self.history;
        let per_second = |d: Duration| 1.0 / d.as_secs_f64().max(1e-3);
        let open = |days: u32, months: u32| f64::from(u8::from(days > 0) + u8::from(months > 0));
        let closed = |days: u32, months: u32| {
            u64::from(days.saturating_sub(1)) + u64::from(months.saturating_sub(1))
        };
        let pools = targets.pools as f64;
        let cards = targets.cards as f64;
        RequestBudget {
            targets,
            pools_per_second: pools
                * (per_second(self.pool_ttl)
                    + open(h.pool_days, h.pool_months) * per_second(self.history_ttl)),
            cards_per_second: cards
                * (per_second(self.card_ttl)
                    + open(h.card_days, h.card_months) * per_second(self.history_ttl)),
            allowed_per_second: (self.requests_per_second > 0)
                .then_some(f64::from(self.requests_per_second)),
            fill_requests: targets.pools as u64 * closed(h.pool_days, h.pool_months)
                + targets.cards as u64 * closed(h.card_days, h.card_months),
            pool_ttl: self.pool_ttl,
            card_ttl: self.card_ttl,
            history_ttl: self.history_ttl,
        }
    }
}

impl RequestBudget {
    /// The same need against another allowed rate (`None` = unlimited), e.g. a shard's share
    /// of its account's `requests_per_second`.
    #[cfg(test)]
    pub(crate) fn with_allowed_per_second(mut self, allowed: Option<f64>) -> Self {
        self.allowed_per_second = allowed.filter(|a| *a > 0.0);
        self
    }

    /// Requests per second needed to refresh every target within its TTLs.
    pub(crate) fn required_per_second(&self) -> f64 {
        self.pools_per_second + self.cards_per_second
    }

    /// Whether more is needed than allowed.
    pub(crate) fn over_budget(&self) -> bool {
        self.stretch() > 1.0
    }

    /// required / allowed when that is above 1 (over budget), else 1: the factor by which
    /// every refresh period stretches, since the account's queue serves all due work at the
    /// allowed rate.
    pub(crate) fn stretch(&self) -> f64 {
        match self.allowed_per_second {
            Some(a) => (self.required_per_second() / a).max(1.0),
            None => 1.0,
        }
    }

    /// How often a value with this TTL is actually refreshed: `ttl` × [`Self::stretch`].
    pub(crate) fn effective(&self, ttl: Duration) -> Duration {
        Duration::from_secs_f64((ttl.as_secs_f64() * self.stretch()).min(1e12))
    }

    pub(crate) fn effective_pool_ttl(&self) -> Duration {
        self.effective(self.pool_ttl)
    }

    pub(crate) fn effective_card_ttl(&self) -> Duration {
        self.effective(self.card_ttl)
    }

    pub(crate) fn effective_history_ttl(&self) -> Duration {
        self.effective(self.history_ttl)
    }

    /// How long the one-off history fill takes at the allowed rate (`None` when unlimited).
    pub(crate) fn fill_duration(&self) -> Option<Duration> {
        self.allowed_per_second
            .map(|a| Duration::from_secs_f64(self.fill_requests as f64 / a))
    }
}

impl Account {
    /// This account's targets.
    pub(crate) fn target_counts(&self) -> TargetCounts {
        TargetCounts {
            pools: self.pools.len(),
            cards: self.cards.len(),
        }
    }
}

impl Config {
    /// Every account's budget (all its targets), in configuration order.
    pub(crate) fn request_budgets(&self) -> Vec<(&str, RequestBudget)> {
        self.accounts
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    self.collect.request_budget(a.target_counts()),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryConfig;

    fn collect(rps: u32, history: HistoryConfig) -> CollectConfig {
        CollectConfig {
            requests_per_second: rps,
            pool_ttl: Duration::from_secs(60),
            card_ttl: Duration::from_secs(60),
            history_ttl: Duration::from_secs(3600),
            history,
            ..CollectConfig::default()
        }
    }

    const NO_HISTORY: HistoryConfig = HistoryConfig {
        pool_days: 0,
        pool_months: 0,
        card_days: 0,
        card_months: 0,
    };

    #[test]
    fn within_budget() {
        // 1,000 cards at card_ttl 60s: 16.7 req/s of 20
        let b = collect(20, NO_HISTORY).request_budget(TargetCounts {
            pools: 0,
            cards: 1000,
        });
        assert!((b.required_per_second() - 1000.0 / 60.0).abs() < 1e-9);
        assert!(!b.over_budget());
        assert_eq!(b.effective_card_ttl(), Duration::from_secs(60));
        assert_eq!(b.fill_requests, 0);
    }

    #[test]
    fn over_budget_stretches_every_period() {
        // 3,000 cards at 60s: 50 req/s of 20 → 2.5×
        let b = collect(20, NO_HISTORY).request_budget(TargetCounts {
            pools: 0,
            cards: 3000,
        });
        assert!((b.stretch() - 2.5).abs() < 1e-9);
        assert!(b.over_budget());
        assert_eq!(b.effective_card_ttl(), Duration::from_secs(150));
        assert_eq!(b.effective_history_ttl(), Duration::from_secs(9000));
        // a shard with half the targets and half the rate stretches the same
        let half = collect(20, NO_HISTORY)
            .request_budget(TargetCounts {
                pools: 0,
                cards: 1500,
            })
            .with_allowed_per_second(Some(10.0));
        assert!((half.stretch() - 2.5).abs() < 1e-9);
        // unlimited never stretches
        let b = collect(0, NO_HISTORY).request_budget(TargetCounts {
            pools: 0,
            cards: 3000,
        });
        assert_eq!(b.allowed_per_second, None);
        assert!(!b.over_budget());
    }

    #[test]
    fn history_counts_open_periods_as_a_rate_and_closed_ones_once() {
        let h = HistoryConfig {
            pool_days: 30,
            pool_months: 12,
            card_days: 1,
            card_months: 0,
        };
        let b = collect(20, h).request_budget(TargetCounts {
            pools: 2,
            cards: 10,
        });
        let want_pools = 2.0 * (1.0 / 60.0 + 2.0 / 3600.0);
        let want_cards = 10.0 * (1.0 / 60.0 + 1.0 / 3600.0);
        assert!((b.pools_per_second - want_pools).abs() < 1e-9);
        assert!((b.cards_per_second - want_cards).abs() < 1e-9);
        assert_eq!(b.fill_requests, 2 * (29 + 11));
        assert_eq!(b.fill_duration(), Some(Duration::from_secs(4)));
    }
}
