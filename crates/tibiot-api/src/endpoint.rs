//! The endpoints of the open API described as data (docs/api.md): [`Endpoint`] names each one
//! (path, metric label, whether it may be retried), [`Subject`] says which endpoints serve a
//! pool or a card, and a [`Query`] is one typed GET request — endpoint, query parameters and
//! how its `data` is decoded — that [`crate::Client::get`] sends through its one request path.
//!
//! Adding a GET endpoint: a variant with its row in [`Endpoint::spec`] and [`Endpoint::ALL`],
//! and a [`Query`] constructor; nothing else in the client changes.

use crate::error::ApiError;
use crate::model::{BatchCardStatus, CardDetail, PoolDetail};
use serde::de::DeserializeOwned;

/// The eight endpoints of the open API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    PoolDetail,
    PoolMonthUsage,
    PoolDayUsage,
    BatchStatus,
    CardDetail,
    CardNetwork,
    CardMonthUsage,
    CardDayUsage,
}

impl Endpoint {
    /// Every endpoint, in a stable order.
    pub const ALL: [Endpoint; 8] = [
        Endpoint::PoolDetail,
        Endpoint::PoolMonthUsage,
        Endpoint::PoolDayUsage,
        Endpoint::BatchStatus,
        Endpoint::CardDetail,
        Endpoint::CardNetwork,
        Endpoint::CardMonthUsage,
        Endpoint::CardDayUsage,
    ];

    /// Path below the base URL and the `endpoint` label value.
    const fn spec(self) -> (&'static str, &'static str) {
        match self {
            Endpoint::PoolDetail => ("/api/v1/pool/detail", "pool_detail"),
            Endpoint::PoolMonthUsage => ("/api/v1/pool/getPoolMonthUsage", "pool_month_usage"),
            Endpoint::PoolDayUsage => ("/api/v1/pool/getPoolDayUsage", "pool_day_usage"),
            Endpoint::BatchStatus => ("/api/v1/operation/batch/query/status", "batch_status"),
            Endpoint::CardDetail => ("/api/v1/card/detail", "card_detail"),
            Endpoint::CardNetwork => ("/api/v1/card/operation/network", "card_network"),
            Endpoint::CardMonthUsage => ("/api/v1/card/getCardMonthUsage", "card_month_usage"),
            Endpoint::CardDayUsage => ("/api/v1/card/getCardDayUsage", "card_day_usage"),
        }
    }

    /// The path below the base URL.
    pub const fn path(self) -> &'static str {
        self.spec().0
    }

    /// The `endpoint` label value.
    pub const fn name(self) -> &'static str {
        self.spec().1
    }

    /// The endpoint whose path is `path` (below any base-URL prefix).
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// Only the network operation changes anything upstream; it is the one POST.
    pub const fn is_idempotent(self) -> bool {
        !matches!(self, Endpoint::CardNetwork)
    }

    /// Position in [`Endpoint::ALL`] (for per-endpoint tables).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What a pool code or an ICCID is about: the detail and the two usage endpoints of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Pool,
    Card,
}

impl Subject {
    /// The query parameter that names the pool or card.
    pub const fn id_param(self) -> &'static str {
        match self {
            Subject::Pool => "poolCode",
            Subject::Card => "iccid",
        }
    }

    pub const fn detail(self) -> Endpoint {
        match self {
            Subject::Pool => Endpoint::PoolDetail,
            Subject::Card => Endpoint::CardDetail,
        }
    }

    pub const fn day_usage(self) -> Endpoint {
        match self {
            Subject::Pool => Endpoint::PoolDayUsage,
            Subject::Card => Endpoint::CardDayUsage,
        }
    }

    pub const fn month_usage(self) -> Endpoint {
        match self {
            Subject::Pool => Endpoint::PoolMonthUsage,
            Subject::Card => Endpoint::CardMonthUsage,
        }
    }

    /// The endpoints the exporter calls for this subject.
    pub const fn endpoints(self) -> [Endpoint; 3] {
        [self.detail(), self.month_usage(), self.day_usage()]
    }
}

/// One GET request: the endpoint, its query parameters (names as the API spells them) and the
/// decoder of the answer's `data`. Built by the constructors below, sent by
/// [`crate::Client::get`].
#[derive(Debug, Clone)]
pub struct Query<T> {
    endpoint: Endpoint,
    params: Vec<(&'static str, String)>,
    decode: fn(serde_json::Value) -> Result<T, ApiError>,
}

impl<T> Query<T> {
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    pub fn params(&self) -> &[(&'static str, String)] {
        &self.params
    }

    /// Decodes the `data` of a successful answer.
    pub(crate) fn decode(&self, data: serde_json::Value) -> Result<T, ApiError> {
        (self.decode)(data)
    }
}

impl Query<PoolDetail> {
    /// `GET /api/v1/pool/detail?poolCode=…`: a pool's detail.
    pub fn pool_detail(pool_code: &str) -> Self {
        Query {
            endpoint: Endpoint::PoolDetail,
            params: vec![("poolCode", pool_code.to_owned())],
            decode: required,
        }
    }
}

impl Query<CardDetail> {
    /// `GET /api/v1/card/detail?iccid=…`: a card's detail.
    pub fn card_detail(iccid: &str) -> Self {
        Query {
            endpoint: Endpoint::CardDetail,
            params: vec![("iccid", iccid.to_owned())],
            decode: required,
        }
    }
}

impl Query<Vec<BatchCardStatus>> {
    /// `GET /api/v1/operation/batch/query/status?batchCode=…`: the per-ICCID state of a
    /// network-operation batch. Items that do not decode are left out; no data is an empty list.
    pub fn batch_status(batch_code: &str) -> Self {
        Query {
            endpoint: Endpoint::BatchStatus,
            params: vec![("batchCode", batch_code.to_owned())],
            decode: |data| {
                let items: Option<Vec<serde_json::Value>> = optional(data)?;
                Ok(items
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect())
            },
        }
    }
}

impl Query<Option<f64>> {
    /// The usage of a pool or card on one day (`YYYY-MM-DD`, within the last 30): its
    /// `useFlowKb`, in KB.
    pub fn day_usage(subject: Subject, id: &str, day: &str) -> Self {
        Query {
            endpoint: subject.day_usage(),
            params: vec![
                (subject.id_param(), id.to_owned()),
                ("queryDay", day.to_owned()),
            ],
            decode: use_flow_kb,
        }
    }

    /// The usage of a pool or card in one month (`YYYY-MM`, within the last 12): its
    /// `useFlowKb`, in KB.
    pub fn month_usage(subject: Subject, id: &str, month: &str) -> Self {
        Query {
            endpoint: subject.month_usage(),
            params: vec![
                (subject.id_param(), id.to_owned()),
                ("queryMonth", month.to_owned()),
            ],
            decode: use_flow_kb,
        }
    }
}

/// `data` decoded as `T`; `null` or absent is `None`.
pub(crate) fn optional<T: DeserializeOwned>(
    data: serde_json::Value,
) -> Result<Option<T>, ApiError> {
    if data.is_null() {
        return Ok(None);
    }
    serde_json::from_value(data)
        .map(Some)
        .map_err(|e| ApiError::Decode(crate::error::clean_text(&e.to_string())))
}

/// `data` decoded as `T`, which must be there.
pub(crate) fn required<T: DeserializeOwned>(data: serde_json::Value) -> Result<T, ApiError> {
    optional(data)?.ok_or_else(|| ApiError::Decode("response has no data".into()))
}

/// The `useFlowKb` of a usage answer (the four usage endpoints share it).
fn use_flow_kb(data: serde_json::Value) -> Result<Option<f64>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Usage {
        #[serde(default, deserialize_with = "crate::lenient::opt_f64")]
        use_flow_kb: Option<f64>,
    }
    Ok(required::<Usage>(data)?.use_flow_kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip() {
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(e.index(), i);
        }
        assert!(!Endpoint::CardNetwork.is_idempotent());
        assert!(Endpoint::ALL.iter().filter(|e| !e.is_idempotent()).count() == 1);
    }

    #[test]
    fn queries_describe_their_request() {
        let q = Query::day_usage(Subject::Card, "8986", "2026-01-02");
        assert_eq!(q.endpoint(), Endpoint::CardDayUsage);
        assert_eq!(
            q.params(),
            &[
                ("iccid", "8986".to_owned()),
                ("queryDay", "2026-01-02".into())
            ]
        );
        assert_eq!(
            q.decode(serde_json::json!({"useFlowKb": "12.5"})).unwrap(),
            Some(12.5)
        );
        assert!(q.decode(serde_json::Value::Null).is_err());
        let b = Query::batch_status("B");
        assert!(b.decode(serde_json::Value::Null).unwrap().is_empty());
        assert_eq!(
            Query::month_usage(Subject::Pool, "P", "2026-01").endpoint(),
            Endpoint::PoolMonthUsage
        );
    }
}
