//! The guard's own metrics (`tibiot_guard_*`, README "Protecting a pool"), kept in a
//! prometheus-client registry and served on `/metrics` as OpenMetrics when the scraper asks
//! for it, else as text 0.0.4.

use crate::guard::state::{Action, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    status: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// What became of one alert of a notification (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertResult {
    /// A policy decided something about it (see the decisions counter).
    Decided,
    /// Its episode was decided already (Alertmanager repeats notifications).
    Repeat,
    /// No policy matches its labels.
    Unmatched,
    /// A policy matches, but there is nothing to do (resolved without `reenable_on_resolve`,
    /// the card is already off because of another alert, or a status that is neither firing
    /// nor resolved).
    Ignored,
}

impl AlertResult {
    fn name(self) -> &'static str {
        match self {
            AlertResult::Decided => "decided",
            AlertResult::Repeat => "repeat",
            AlertResult::Unmatched => "unmatched",
            AlertResult::Ignored => "ignored",
        }
    }
}

/// The metric families.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    notifications: Family<ResultLabel, Counter>,
    cards_off: Gauge,
    in_flight: Gauge,
    disables_last_hour: Gauge,
    limit: Gauge,
    enforcing: Gauge,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "tibiot_guard_decisions",
            "Decisions of the guard by policy, action (disable, enable) and outcome (done, failed, unknown, dry_run, protected, over_limit, invalid)",
            decisions.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "tibiot_guard_alerts",
            "Alerts received by status (firing, resolved) and result (decided, repeat, unmatched, ignored)",
            alerts.clone(),
        );
        let notifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tibiot_guard_notifications",
            "Webhook messages received by result (accepted, invalid: refused with HTTP 400, error: HTTP 500 because the audit log could not be written)",
            notifications.clone(),
        );
        let cards_off = Gauge::default();
        registry.register(
            "tibiot_guard_cards_switched_off",
            "Cards the guard has switched off and not switched back on (rebuilt from the audit log at start)",
            cards_off.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "tibiot_guard_actions_in_flight",
            "Network operations sent whose batch is still being followed",
            in_flight.clone(),
        );
        let disables_last_hour = Gauge::default();
        registry.register(
            "tibiot_guard_disables_last_hour",
            "Cards switched off (or, in dry-run mode, that would have been) in the last hour, counted against limits.max_cards_per_hour",
            disables_last_hour.clone(),
        );
        let limit = Gauge::default();
        registry.register(
            "tibiot_guard_max_cards_per_hour",
            "limits.max_cards_per_hour of the guard file in force",
            limit.clone(),
        );
        let enforcing = Gauge::default();
        registry.register(
            "tibiot_guard_enforcing",
            "1 in enforce mode, 0 in dry-run mode",
            enforcing.clone(),
        );
        let reload_ok = Gauge::default();
        registry.register(
            "tibiot_guard_config_last_reload_successful",
            "Whether the last reload of the guard file and the configuration succeeded",
            reload_ok.clone(),
        );
        let reload_time = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "tibiot_guard_config_last_reload_success_timestamp_seconds",
            "When the guard file and the configuration were last loaded successfully, unix seconds",
            reload_time.clone(),
        );
        Metrics {
            registry,
            decisions,
            alerts,
            notifications,
            cards_off,
            in_flight,
            disables_last_hour,
            limit,
            enforcing,
            reload_ok,
            reload_time,
        }
    }

    /// Creates the decision series of `policy` at 0, so rates work from the first decision.
    pub fn declare_policy(&self, policy: &str, reenable: bool) {
        for o in Outcome::DECISIONS {
            self.decision_counter(policy, Action::Disable, o);
        }
        if reenable {
            for o in [
                Outcome::Done,
                Outcome::Failed,
                Outcome::Unknown,
                Outcome::DryRun,
            ] {
                self.decision_counter(policy, Action::Enable, o);
            }
        }
    }

    fn decision_counter(&self, policy: &str, action: Action, outcome: Outcome) -> Counter {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: policy.to_owned(),
                action: action.name().to_owned(),
                outcome: outcome.name().to_owned(),
            })
            .clone()
    }

    pub fn decision(&self, policy: &str, action: Action, outcome: Outcome) {
        if outcome != Outcome::Sending {
            self.decision_counter(policy, action, outcome).inc();
        }
    }

    pub fn alert(&self, status: &str, result: AlertResult) {
        let status = match status {
            "firing" | "resolved" => status,
            _ => "other",
        };
        self.alerts
            .get_or_create(&AlertLabels {
                status: status.to_owned(),
                result: result.name().to_owned(),
            })
            .inc();
    }

    pub fn notification(&self, result: &str) {
        self.notifications
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn set_cards_off(&self, n: usize) {
        self.cards_off.set(n as i64);
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(n as i64);
    }

    pub fn set_disables_last_hour(&self, n: usize) {
        self.disables_last_hour.set(n as i64);
    }

    pub fn set_config(&self, enforcing: bool, limit: u32) {
        self.enforcing.set(i64::from(enforcing));
        self.limit.set(i64::from(limit));
    }

    pub fn reloaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.reload_time.set(now);
        }
    }

    /// The exposition: OpenMetrics when `openmetrics`, else text 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}
