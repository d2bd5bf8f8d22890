//! What a fetched pool or card detail becomes: metric values in bytes (KB × 1024), product
//! names of the enumerations, and the info labels escaped once, at fetch time, so the encoder
//! only copies them.

use crate::metrics::expo::label_fragment;
use std::borrow::Cow;
use tibiot_api::calendar::ApiCalendar;
use tibiot_api::{BillingMethod, CardDetail, CardStatus, PoolDetail, PoolStatus, PoolType};

/// Bytes from an API KB value.
#[inline]
pub fn kb_to_bytes(kb: f64) -> f64 {
    kb * 1024.0
}

/// A pool detail, ready to encode.
#[derive(Debug, Clone, Default)]
pub struct PoolValues {
    /// `name="..",name_en="..",type="..",billing_cycle_months="..",package="..",channel=".."`.
    pub info: Box<str>,
    pub name: String,
    pub type_label: Option<Cow<'static, str>>,
    pub used_bytes: Option<f64>,
    /// Absent for usage-billed pools and when `totalFlow` is missing.
    pub capacity_bytes: Option<f64>,
    pub cards: Option<f64>,
    /// One entry per reported status (duplicates summed).
    pub status_cards: Vec<(Cow<'static, str>, f64)>,
    pub valid: Option<f64>,
    pub start_ts: Option<f64>,
    pub end_ts: Option<f64>,
    pub created_ts: Option<f64>,
}

impl PoolValues {
    pub fn from_detail(d: &PoolDetail, cal: &ApiCalendar) -> Self {
        let type_label = d.pool_type.map(PoolType::label);
        let usage_billed = d.pool_type == Some(PoolType::UsageBilled.code());
        let pkg = d.package_info.as_ref();
        let cycle = d.billing_cycle.map(|c| c.to_string()).unwrap_or_default();
        let info = label_fragment(&[
            ("name", d.upool_name.as_deref().unwrap_or("")),
            ("name_en", d.en_upool_name.as_deref().unwrap_or("")),
            ("type", type_label.as_deref().unwrap_or("")),
            ("billing_cycle_months", &cycle),
            (
                "package",
                pkg.and_then(|p| p.client_flow_package_name.as_deref())
                    .unwrap_or(""),
            ),
            (
                "channel",
                pkg.and_then(|p| p.channel_name.as_deref()).unwrap_or(""),
            ),
        ]);
        let mut status_cards: Vec<(Cow<'static, str>, f64)> = Vec::new();
        for s in &d.bind_card_status_count {
            let (Some(code), Some(total)) = (s.card_status, s.total) else {
                continue;
            };
            let label = CardStatus::label(code);
            match status_cards.iter_mut().find(|(l, _)| *l == label) {
                Some((_, t)) => *t += total,
                None => status_cards.push((label, total)),
            }
        }
        let day_start = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| cal.parse_timestamp(s))
                .and_then(|ts| chrono::DateTime::from_timestamp(ts, 0))
                .map(|dt| cal.day_start(cal.date_at(dt)) as f64)
        };
        Self {
            info,
            name: d.upool_name.clone().unwrap_or_default(),
            type_label,
            used_bytes: d.use_flow.map(kb_to_bytes),
            capacity_bytes: if usage_billed {
                None
            } else {
                d.total_flow.map(kb_to_bytes)
            },
            cards: d.total_card,
            status_cards,
            valid: d.upool_status.map(|s| {
                if s == PoolStatus::Valid.code() {
                    1.0
                } else {
                    0.0
                }
            }),
            start_ts: day_start(&d.start_time),
            end_ts: day_start(&d.end_time),
            created_ts: d
                .raw_add_time
                .as_deref()
                .and_then(|s| cal.parse_timestamp(s))
                .map(|t| t as f64),
        }
    }
}

/// A card detail, ready to encode.
#[derive(Debug, Clone, Default)]
pub struct CardValues {
    /// `imsi="..",msisdn="..",imei="..",apn="..",billing_method=".."`.
    pub info: Box<str>,
    pub status: Option<i64>,
    pub billing_label: Option<Cow<'static, str>>,
    pub cycle_bytes: Option<f64>,
    pub month_bytes: Option<f64>,
    /// Absent for billing method `usage` and when `totalFlow` is missing.
    pub capacity_bytes: Option<f64>,
}

impl CardValues {
    pub fn from_detail(d: &CardDetail) -> Self {
        let billing_label = d.billing_method.map(BillingMethod::label);
        let info = label_fragment(&[
            ("imsi", d.imsi.as_deref().unwrap_or("")),
            ("msisdn", d.msisdn.as_deref().unwrap_or("")),
            ("imei", d.imei.as_deref().unwrap_or("")),
            ("apn", d.apn.as_deref().unwrap_or("")),
            ("billing_method", billing_label.as_deref().unwrap_or("")),
        ]);
        let usage = d.billing_method == Some(BillingMethod::Usage.code());
        Self {
            info,
            status: d.card_status,
            billing_label,
            cycle_bytes: d.use_flow.map(kb_to_bytes),
            month_bytes: d.use_month_flow.map(kb_to_bytes),
            capacity_bytes: if usage {
                None
            } else {
                d.total_flow.map(kb_to_bytes)
            },
        }
    }

    /// The status name (`code_<n>` for unknown codes).
    pub fn status_label(&self) -> Option<Cow<'static, str>> {
        self.status.map(CardStatus::label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::{CardStatusCount, PackageInfo};

    #[test]
    fn pool_values() {
        let cal = ApiCalendar::default();
        let d = PoolDetail {
            upool_name: Some("池 \"A\"".into()),
            pool_type: Some(2),
            use_flow: Some(1.5),
            total_flow: Some(100.0),
            billing_cycle: Some(3),
            total_card: Some(4.0),
            bind_card_status_count: vec![
                CardStatusCount {
                    card_status: Some(8),
                    total: Some(2.0),
                },
                CardStatusCount {
                    card_status: Some(8),
                    total: Some(1.0),
                },
                CardStatusCount {
                    card_status: Some(77),
                    total: Some(1.0),
                },
            ],
            package_info: Some(PackageInfo {
                channel_name: Some("ch".into()),
                ..Default::default()
            }),
            start_time: Some("2026-01-01 12:30:00".into()),
            upool_status: Some(2),
            ..Default::default()
        };
        let v = PoolValues::from_detail(&d, &cal);
        assert_eq!(v.used_bytes, Some(1536.0));
        assert_eq!(v.capacity_bytes, None, "usage_billed has no capacity");
        assert_eq!(
            v.status_cards,
            vec![
                (Cow::Borrowed("normal"), 3.0),
                (Cow::Owned("code_77".into()), 1.0)
            ]
        );
        assert_eq!(v.valid, Some(0.0));
        assert_eq!(v.start_ts, Some(1_767_196_800.0));
        assert_eq!(
            &*v.info,
            "name=\"池 \\\"A\\\"\",name_en=\"\",type=\"usage_billed\",billing_cycle_months=\"3\",package=\"\",channel=\"ch\""
        );
    }

    #[test]
    fn card_values() {
        let d = CardDetail {
            billing_method: Some(2),
            total_flow: Some(10.0),
            use_flow: Some(1.0),
            card_status: Some(5),
            ..Default::default()
        };
        let v = CardValues::from_detail(&d);
        assert_eq!(v.capacity_bytes, None);
        assert_eq!(v.cycle_bytes, Some(1024.0));
        assert_eq!(v.status_label().unwrap(), "code_5");
    }
}
