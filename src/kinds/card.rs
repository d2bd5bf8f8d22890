//! The card kind: one SIM card. Its targets are `accounts[].cards` and `cards_file`; its detail
//! comes from the card-detail endpoint every `collect.card_ttl`, its history from the card day
//! and month usage endpoints; its families are the `tibiot_card_*` metrics (docs/metrics.md).

use super::{Bounds, Kind, Texts, gauge, history, kb_to_bytes, sample, served};
use crate::collect::FetchCx;
use crate::config::{Account, CollectConfig, is_valid_iccid};
use crate::metrics::expo::MetricType;
use crate::metrics::{Family, Served, Source};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::{ApiError, BillingMethod, CardDetail, CardStatus, Client, Query, Subject};

/// The card kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Card;

/// A card detail, ready to encode: label values as data, numbers in bytes. Kept for every
/// card (100,000 on one exporter), so it is compact: 80 bytes, and with its fetch time and
/// reference counts one 120-byte allocation per card (docs/benchmarks.md, row g).
#[derive(Debug, Clone)]
pub(crate) struct CardValues {
    /// `imsi`, `msisdn`, `imei`, `apn`, in one allocation.
    info: Texts<4>,
    pub(crate) status: Option<i64>,
    /// The billing method's code (named by [`Self::billing_label`]).
    billing: Option<i64>,
    /// Bytes used this cycle, this month, and the cap; NaN when absent (JSON has no NaN).
    cycle: f64,
    month: f64,
    capacity: f64,
}

/// `Some` unless NaN (absent).
#[inline]
fn present(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

impl CardValues {
    pub(crate) fn from_detail(d: &CardDetail, bounds: &mut Bounds) -> Self {
        let usage = d.billing_method == Some(BillingMethod::Usage.code());
        Self {
            info: Texts::new([
                &bounds.label("imsi", d.imsi.as_deref()),
                &bounds.label("msisdn", d.msisdn.as_deref()),
                &bounds.label("imei", d.imei.as_deref()),
                &bounds.label("apn", d.apn.as_deref()),
            ]),
            status: d.card_status,
            billing: d.billing_method,
            cycle: d.use_flow.map_or(f64::NAN, kb_to_bytes),
            month: d.use_month_flow.map_or(f64::NAN, kb_to_bytes),
            capacity: if usage {
                f64::NAN
            } else {
                d.total_flow.map_or(f64::NAN, kb_to_bytes)
            },
        }
    }

    /// The product's name of the billing method (`code_<n>` for an unknown code).
    pub(crate) fn billing_label(&self) -> Option<Cow<'static, str>> {
        self.billing.map(BillingMethod::label)
    }

    /// Bytes used in the current billing cycle.
    #[inline]
    pub(crate) fn cycle_bytes(&self) -> Option<f64> {
        present(self.cycle)
    }

    /// Bytes used this calendar month.
    #[inline]
    pub(crate) fn month_bytes(&self) -> Option<f64> {
        present(self.month)
    }

    /// The cap in bytes; absent for billing method `usage` and when `totalFlow` is missing.
    #[inline]
    pub(crate) fn capacity_bytes(&self) -> Option<f64> {
        present(self.capacity)
    }

    pub(crate) fn imsi(&self) -> &str {
        self.info.get(0)
    }

    pub(crate) fn msisdn(&self) -> &str {
        self.info.get(1)
    }

    pub(crate) fn imei(&self) -> &str {
        self.info.get(2)
    }

    pub(crate) fn apn(&self) -> &str {
        self.info.get(3)
    }

    /// The status name (`code_<n>` for unknown codes).
    pub(crate) fn status_label(&self) -> Option<Cow<'static, str>> {
        self.status.map(CardStatus::label)
    }
}

impl Kind for Card {
    const NAME: &'static str = "card";
    const HISTORY_NAME: &'static str = "card_history";
    const ID_LABEL: &'static str = "iccid";
    const ID_FORM: &'static str = "ICCID (18-22 digits)";
    const SUBJECT: Subject = Subject::Card;
    const FAMILIES: &'static [Family] = FAMILIES;
    const DAILY: &'static Family = &DAILY;
    const MONTHLY: &'static Family = &MONTHLY;
    type Values = CardValues;

    fn configured(account: &Account) -> &[Arc<str>] {
        &account.cards
    }

    fn ttl(c: &CollectConfig) -> Duration {
        c.card_ttl
    }

    fn history_window(c: &CollectConfig) -> (u32, u32) {
        (c.history.card_days, c.history.card_months)
    }

    fn is_valid_id(id: &str) -> bool {
        is_valid_iccid(id)
    }

    async fn fetch(client: &Client, id: &str, cx: &FetchCx<'_>) -> Result<CardValues, ApiError> {
        let d = client.get(Query::card_detail(id), cx.deadline).await?;
        let mut bounds = Bounds::default();
        let values = CardValues::from_detail(&d, &mut bounds);
        bounds.report::<Card>(cx, id);
        Ok(values)
    }
}

const LABELS: &[&str] = &["account", "iccid"];

/// The day-usage history family (also written by the backfill).
const DAILY: Family = Family {
    name: "tibiot_card_daily_usage_bytes",
    help: "Flow used by the card on one day of the API calendar, bytes, for the last collect.history.card_days days. Closed days are fetched once and cached; today is refreshed after collect.history_ttl.",
    typ: MetricType::Gauge,
    labels: &["account", "iccid", "date"],
    served: Served::Both,
    source: Source::Snapshot(history::<Card, false>),
};

/// The month-usage history family (also written by the backfill).
const MONTHLY: Family = Family {
    name: "tibiot_card_monthly_usage_bytes",
    help: "Flow used by the card in one month of the API calendar, bytes, for the last collect.history.card_months months. Closed months are fetched once and cached; this month is refreshed after collect.history_ttl.",
    typ: MetricType::Gauge,
    labels: &["account", "iccid", "month"],
    served: Served::Both,
    source: Source::Snapshot(history::<Card, true>),
};

/// The card families, in exposition order.
static FAMILIES: &[Family] = &[
    Family {
        name: "tibiot_card_info",
        help: "SIM card details (value 1). From card detail; may come from the cache (up to collect.card_ttl old, kept up to collect.stale_after after failures).",
        typ: MetricType::Info,
        labels: &[
            "account",
            "iccid",
            "imsi",
            "msisdn",
            "imei",
            "apn",
            "billing_method",
        ],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            for (t, v) in served::<Card>(snap) {
                let billing = v.billing_label();
                let info = [
                    ("imsi", v.imsi()),
                    ("msisdn", v.msisdn()),
                    ("imei", v.imei()),
                    ("apn", v.apn()),
                    ("billing_method", billing.as_deref().unwrap_or("")),
                ];
                sample::<Card>(w, t, &info, 1.0);
            }
        }),
    },
    Family {
        name: "tibiot_card_status",
        help: "Card status as a state set: one series per known status, 1 for the current one (an unknown code adds code_<n> = 1). May come from the cache.",
        typ: MetricType::StateSet,
        labels: &["account", "iccid", "status"],
        served: Served::Both,
        source: Source::Snapshot(|snap, w| {
            for (t, v) in served::<Card>(snap) {
                let Some(code) = v.status else { continue };
                for s in CardStatus::ALL {
                    let current = (s.code() == code) as u8 as f64;
                    sample::<Card>(w, t, &[("status", s.name())], current);
                }
                if CardStatus::from_code(code).is_none() {
                    sample::<Card>(w, t, &[("status", &CardStatus::label(code))], 1.0);
                }
            }
        }),
    },
    Family {
        name: "tibiot_card_cycle_usage_bytes",
        help: "Flow used by the card in its current billing cycle, bytes (useFlow KB x 1024). May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Card>(snap, w, |v| v.cycle_bytes())),
    },
    Family {
        name: "tibiot_card_month_usage_bytes",
        help: "Flow used by the card this month, bytes (useMonthFlow KB x 1024). May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Card>(snap, w, |v| v.month_bytes())),
    },
    Family {
        name: "tibiot_card_capacity_bytes",
        help: "Total flow of the card, bytes (totalFlow KB x 1024); absent for billing method usage and when not reported. May come from the cache.",
        typ: MetricType::Gauge,
        labels: LABELS,
        served: Served::Both,
        source: Source::Snapshot(|snap, w| gauge::<Card>(snap, w, |v| v.capacity_bytes())),
    },
    DAILY,
    MONTHLY,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_values() {
        let d = CardDetail {
            billing_method: Some(2),
            total_flow: Some(10.0),
            use_flow: Some(1.0),
            card_status: Some(5),
            imsi: Some("46\"0".into()),
            ..Default::default()
        };
        let v = CardValues::from_detail(&d, &mut Bounds::default());
        assert_eq!(v.capacity_bytes(), None);
        assert_eq!(v.cycle_bytes(), Some(1024.0));
        assert_eq!(v.status_label().unwrap(), "code_5");
        assert_eq!(v.imsi(), "46\"0", "label values are kept as data");
        assert_eq!((v.msisdn(), v.imei(), v.apn()), ("", "", ""));
    }
}
