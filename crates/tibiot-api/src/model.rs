//! Request and response types of the eight TIBIOT open API endpoints, with the vendor
//! reference's field names, decoded leniently (see [`crate::lenient`]), and the enumerations
//! with the names the product uses for them (docs/api.md).
//!
//! Every response field is optional: the reference marks them all "非必须" (not required).
//! KB values stay in KB here; conversion to bytes happens where metrics are built.

use crate::lenient::{lenient_obj, lenient_vec, opt_bool, opt_f64, opt_i64, opt_string};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The response envelope `{code, message, traceId, data}` shared by every endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    #[serde(default, deserialize_with = "opt_i64")]
    pub code: Option<i64>,
    #[serde(default, deserialize_with = "opt_string")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub trace_id: Option<String>,
    #[serde(default = "Option::default")]
    pub data: Option<T>,
}

/// `GET /api/v1/pool/detail` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolDetail {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub upool_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub upool_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub en_upool_name: Option<String>,
    /// 1 user pool, 2 usage-billed pool, 3 unified-pay pool ([`PoolType`]).
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_type: Option<i64>,
    /// Used flow, KB.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow: Option<f64>,
    /// Total flow, KB; not meaningful for usage-billed pools.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_flow: Option<f64>,
    /// Billing cycle in months (1, 3, 6, 12).
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub billing_cycle: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_card: Option<f64>,
    /// Creation time, `yyyy-MM-dd HH:mm:ss` on the API calendar.
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub raw_add_time: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub bind_card_status_count: Vec<CardStatusCount>,
    #[serde(
        default,
        deserialize_with = "lenient_obj",
        skip_serializing_if = "Option::is_none"
    )]
    pub package_info: Option<PackageInfo>,
    /// Pool start date (unified-pay pools), `yyyy-MM-dd`.
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<String>,
    /// Pool end date (unified-pay pools), `yyyy-MM-dd`.
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_time: Option<String>,
    /// 1 valid, 2 invalid.
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub upool_status: Option<i64>,
}

/// One item of `bindCardStatusCount`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CardStatusCount {
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub card_status: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total: Option<f64>,
}

/// `packageInfo` of a pool: the enterprise tariff package.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PackageInfo {
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_package_type: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_flow_package_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub channel_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub epi_configs: Vec<EpiConfig>,
}

/// One tariff configuration of a package.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EpiConfig {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub epi_config_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub epi_code: Option<String>,
    /// Service fee, yuan.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub standard_charge: Option<f64>,
    /// Actual fee, fen.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub real_fen_standard_charge: Option<f64>,
    /// 1 purchase, 2 renewal, 3 add-on.
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub epi_config_type: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub unit: Option<String>,
}

/// `GET /api/v1/pool/getPoolMonthUsage` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolMonthUsage {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub month: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow_kb: Option<f64>,
}

/// `GET /api/v1/pool/getPoolDayUsage` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolDayUsage {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub day: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow_kb: Option<f64>,
}

/// One item of `GET /api/v1/operation/batch/query/status` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchCardStatus {
    /// 1 pending, 2 running, 3 done, 4 failed ([`OperationState`]).
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub operation_card_status: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub iccid: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub msisdn: Option<String>,
}

/// `GET /api/v1/card/detail` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CardDetail {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub iccid: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub imei: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub imsi: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub msisdn: Option<String>,
    /// Total flow, KB; not meaningful for billing method 2 (usage).
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_flow: Option<f64>,
    /// This month's usage, KB.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_month_flow: Option<f64>,
    /// This billing cycle's usage, KB.
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow: Option<f64>,
    /// 0 unset, 1 package, 2 usage, 3 unified pay ([`BillingMethod`]).
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub billing_method: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub apn: Option<String>,
    /// [`CardStatus`] code.
    #[serde(
        default,
        deserialize_with = "opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub card_status: Option<i64>,
}

/// `POST /api/v1/card/operation/network` request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRequest {
    pub iccids: Vec<String>,
    #[serde(deserialize_with = "opt_bool")]
    pub switch_on: Option<bool>,
}

/// `POST /api/v1/card/operation/network` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkResult {
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub success_count: Option<f64>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub error_info: Vec<NetworkErrorInfo>,
}

/// One rejected ICCID of a network operation.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkErrorInfo {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub info_message: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub iccid: Option<String>,
}

/// `GET /api/v1/card/getCardMonthUsage` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CardMonthUsage {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub month: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub iccid: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow_kb: Option<f64>,
}

/// `GET /api/v1/card/getCardDayUsage` data.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CardDayUsage {
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub day: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub iccid: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_flow_kb: Option<f64>,
}

/// Name for a code outside an enumeration: `code_<n>`.
fn code_name(code: i64) -> Cow<'static, str> {
    Cow::Owned(format!("code_{code}"))
}

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant of an API code, if known.
            pub fn from_code(code: i64) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The API code.
            pub fn code(self) -> i64 {
                match self { $($name::$variant => $code),+ }
            }

            /// The product's name for it (a label value).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            /// The product's name for any code: known names, else `code_<n>`.
            pub fn label(code: i64) -> Cow<'static, str> {
                match Self::from_code(code) {
                    Some(v) => Cow::Borrowed(v.name()),
                    None => code_name(code),
                }
            }
        }
    };
}

code_enum!(
    /// `cardStatus`.
    CardStatus {
        Silent = 1 => "silent",
        Shutdown = 4 => "shutdown",
        Normal = 8 => "normal",
        Test = 12 => "test",
        ShutdownProtection = 16 => "shutdown_protection",
        Liquidation = 18 => "liquidation",
        Abnormal = 99 => "abnormal",
    }
);

code_enum!(
    /// `poolType`.
    PoolType {
        User = 1 => "user",
        UsageBilled = 2 => "usage_billed",
        UnifiedPay = 3 => "unified_pay",
    }
);

code_enum!(
    /// `billingMethod` of a card.
    BillingMethod {
        Unset = 0 => "unset",
        Package = 1 => "package",
        Usage = 2 => "usage",
        UnifiedPay = 3 => "unified_pay",
    }
);

code_enum!(
    /// `operationCardStatus` of one card in a batch.
    OperationState {
        Pending = 1 => "pending",
        Running = 2 => "running",
        Done = 3 => "done",
        Failed = 4 => "failed",
    }
);

code_enum!(
    /// `upoolStatus`.
    PoolStatus {
        Valid = 1 => "valid",
        Invalid = 2 => "invalid",
    }
);

impl OperationState {
    /// Done or failed: the card's operation will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, OperationState::Done | OperationState::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_numbers_nulls_unknown_fields_and_unicode() {
        let body = r#"{"code":"200","message":null,"traceId":12,"data":{
            "upoolCode":"P-1","upoolName":"池 \"A\" \\ 一\n","poolType":"3","useFlow":1234.0,
            "totalFlow":"2048","billingCycle":null,"totalCard":7,"unknown":{"x":[1,2]},
            "bindCardStatusCount":[{"cardStatus":8,"total":"5"},{"cardStatus":{"bad":1}},"junk"],
            "packageInfo":"not-an-object","upoolStatus":1.0}}"#;
        let env: Envelope<PoolDetail> = serde_json::from_str(body).unwrap();
        assert_eq!(env.code, Some(200));
        assert_eq!(env.trace_id.as_deref(), Some("12"));
        let d = env.data.unwrap();
        assert_eq!(d.upool_name.as_deref(), Some("池 \"A\" \\ 一\n"));
        assert_eq!(d.pool_type, Some(3));
        assert_eq!(d.use_flow, Some(1234.0));
        assert_eq!(d.total_flow, Some(2048.0));
        assert_eq!(d.billing_cycle, None);
        assert_eq!(d.bind_card_status_count.len(), 2);
        assert_eq!(d.bind_card_status_count[0].total, Some(5.0));
        assert_eq!(d.bind_card_status_count[1].card_status, None);
        assert_eq!(d.package_info, None);
        assert_eq!(d.upool_status, Some(1));
    }

    #[test]
    fn non_finite_and_fractional_codes_are_absent() {
        let c: CardDetail =
            serde_json::from_str(r#"{"useFlow":"NaN","totalFlow":"inf","cardStatus":8.5}"#)
                .unwrap();
        assert_eq!(c.use_flow, None);
        assert_eq!(c.total_flow, None);
        assert_eq!(c.card_status, None);
    }

    #[test]
    fn enum_names() {
        assert_eq!(CardStatus::label(16), "shutdown_protection");
        assert_eq!(CardStatus::label(7), "code_7");
        assert_eq!(PoolType::label(2), "usage_billed");
        assert_eq!(BillingMethod::label(0), "unset");
        assert_eq!(CardStatus::ALL.len(), 7);
        assert!(OperationState::Failed.is_final());
    }
}
