//! Fault injection: which request fails how.
//!
//! Sources, checked in this order for every request that passed authentication:
//! 1. runtime rules ([`FaultRule`], set through `SimHandle::set_fault`, newest first), each
//!    matching an endpoint and/or a target (pool code, ICCID — any of a network operation's
//!    ICCIDs — or batch code), optionally only a number of times;
//! 2. named targets from the options: `failing_targets` always answer HTTP 500,
//!    `slow_targets` always answer after `slow_delay`;
//! 3. `error_rate`: that share of requests gets a random one of HTTP 500, HTTP 429 with
//!    `Retry-After: 1`, a business error, malformed JSON and truncated JSON.
//!
//! Besides failures, a rule can make a pool's detail hostile as data ([`Fault::HostilePool`]:
//! huge numbers of distinct statuses, a huge name), for the exporter's bounds.
//!
//! The global `latency` is added to every answer, faulty or not.

use rand::Rng;
use std::sync::Mutex;
use std::time::Duration;
use tibiot_api::Endpoint;

/// One way to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with an envelope `code` 500.
    Http500,
    /// HTTP 429 with `Retry-After: retry_after_secs`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 200 with business code 5000 ("system busy").
    BusinessError,
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 200 with the JSON answer cut in half (`Content-Length` matches what is sent).
    Truncated,
    /// The normal answer, after this delay.
    Slow(Duration),
    /// The connection is closed without an answer.
    ConnectionReset,
    /// HTTP 200 with a valid envelope padded to 6 MiB.
    Oversized,
    /// A pool detail that is valid but hostile as data: `statuses` distinct `cardStatus`
    /// codes (1, 2, …; the known ones among them) with one card each, and a pool name of
    /// `name_bytes` bytes. Other endpoints answer normally.
    HostilePool { statuses: u32, name_bytes: u32 },
}

/// When a [`Fault`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// A pool code, ICCID or batch code; `None` matches every request.
    pub target: Option<String>,
    /// `None` matches every endpoint.
    pub endpoint: Option<Endpoint>,
    pub fault: Fault,
    /// How many more requests it applies to; `None` = always.
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule for every request.
    pub fn new(fault: Fault) -> Self {
        Self {
            target: None,
            endpoint: None,
            fault,
            times: None,
        }
    }

    /// Only requests about `target`.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Only requests to `endpoint`.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, endpoint: Endpoint, targets: &[String]) -> bool {
        self.endpoint.is_none_or(|e| e == endpoint)
            && self
                .target
                .as_ref()
                .is_none_or(|t| targets.iter().any(|x| x == t))
    }
}

/// The fault configuration of a running simulator.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    failing: Vec<String>,
    slow: Vec<String>,
    slow_delay: Duration,
    error_rate: f64,
}

impl Faults {
    pub fn new(
        failing: Vec<String>,
        slow: Vec<String>,
        slow_delay: Duration,
        error_rate: f64,
        rules: Vec<FaultRule>,
    ) -> Self {
        Self {
            rules: Mutex::new(rules),
            failing,
            slow,
            slow_delay,
            error_rate: error_rate.clamp(0.0, 1.0),
        }
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule; it takes precedence over older ones.
    pub fn add(&self, rule: FaultRule) {
        self.rules().push(rule);
    }

    /// Removes every runtime rule (named targets and the error rate stay).
    pub fn clear(&self) {
        self.rules().clear();
    }

    /// The fault for one request, if any.
    pub fn pick(&self, endpoint: Endpoint, targets: &[String]) -> Option<Fault> {
        {
            let mut rules = self.rules();
            if let Some(pos) = rules.iter().rposition(|r| r.matches(endpoint, targets)) {
                let fault = rules[pos].fault;
                if let Some(n) = &mut rules[pos].times {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        rules.remove(pos);
                    }
                }
                return Some(fault);
            }
        }
        if targets.iter().any(|t| self.failing.contains(t)) {
            return Some(Fault::Http500);
        }
        if targets.iter().any(|t| self.slow.contains(t)) {
            return Some(Fault::Slow(self.slow_delay));
        }
        if self.error_rate > 0.0 {
            let mut rng = rand::rng();
            if rng.random::<f64>() < self.error_rate {
                return Some(match rng.random_range(0..5) {
                    0 => Fault::Http500,
                    1 => Fault::RateLimited {
                        retry_after_secs: 1,
                    },
                    2 => Fault::BusinessError,
                    3 => Fault::Malformed,
                    _ => Fault::Truncated,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_count_down_and_take_precedence() {
        let f = Faults::new(
            vec!["P1".into()],
            vec!["P2".into()],
            Duration::from_secs(3),
            0.0,
            Vec::new(),
        );
        let t = |s: &str| vec![s.to_string()];
        assert_eq!(f.pick(Endpoint::PoolDetail, &t("P1")), Some(Fault::Http500));
        assert_eq!(
            f.pick(Endpoint::PoolDetail, &t("P2")),
            Some(Fault::Slow(Duration::from_secs(3)))
        );
        assert_eq!(f.pick(Endpoint::PoolDetail, &t("P3")), None);
        f.add(
            FaultRule::new(Fault::Malformed)
                .target("P3")
                .endpoint(Endpoint::PoolDetail)
                .times(2),
        );
        assert_eq!(f.pick(Endpoint::PoolDayUsage, &t("P3")), None);
        assert_eq!(
            f.pick(Endpoint::PoolDetail, &t("P3")),
            Some(Fault::Malformed)
        );
        assert_eq!(
            f.pick(Endpoint::PoolDetail, &t("P3")),
            Some(Fault::Malformed)
        );
        assert_eq!(f.pick(Endpoint::PoolDetail, &t("P3")), None);
        f.add(FaultRule::new(Fault::Oversized));
        assert_eq!(f.pick(Endpoint::CardDetail, &[]), Some(Fault::Oversized));
        f.clear();
        assert_eq!(f.pick(Endpoint::CardDetail, &[]), None);
    }

    #[test]
    fn error_rate_one_always_fails() {
        let f = Faults::new(vec![], vec![], Duration::ZERO, 1.0, vec![]);
        for _ in 0..50 {
            assert!(f.pick(Endpoint::CardDetail, &[]).is_some());
        }
    }
}
