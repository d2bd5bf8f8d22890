//! What Alertmanager's webhook receiver posts (docs: README "Protecting a pool"): a JSON
//! message of protocol version "4" holding a group of alerts. Only the fields the guard uses
//! are read; unknown fields are ignored (newer Alertmanagers add some), a missing `alerts`
//! list or another version is refused. Every string is upstream input: the guard checks the
//! labels it acts on (account, ICCID) and bounds what it logs.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The webhook protocol version this guard understands.
pub const VERSION: &str = "4";

/// One webhook message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the alert started firing: with the fingerprint, it names one firing episode.
    #[serde(default)]
    pub starts_at: String,
    /// Alertmanager's hash of the label set (16 hex digits).
    #[serde(default)]
    pub fingerprint: String,
}

/// Why a message was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage(pub String);

impl Notification {
    /// Parses and checks a webhook body.
    pub fn parse(body: &[u8]) -> Result<Notification, BadMessage> {
        let n: Notification = serde_json::from_slice(body).map_err(|e| {
            // serde_json quotes what it did not expect: hide it, the sender knows it.
            let m = tibiot_web::redact::hide_quoted_values(&e.to_string());
            BadMessage(format!(
                "not an Alertmanager webhook message: {}",
                tibiot_exporter::config::excerpt(&m).trim_matches('"')
            ))
        })?;
        if n.version != VERSION {
            return Err(BadMessage(format!(
                "webhook protocol version {} is not supported (expected {VERSION:?})",
                tibiot_exporter::config::excerpt(&n.version)
            )));
        }
        Ok(n)
    }
}

/// Whether `s` looks like an Alertmanager fingerprint: 1 to 32 hex digits.
pub fn is_valid_fingerprint(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` looks like a `startsAt` timestamp (RFC 3339).
pub fn is_valid_starts_at(s: &str) -> bool {
    s.len() <= 64 && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_alertmanager_message() {
        let body = br#"{"receiver":"guard","status":"firing","alerts":[{"status":"firing",
          "labels":{"alertname":"TibiotCardRunaway","account":"main","iccid":"89860000000000000001"},
          "annotations":{"summary":"x"},"startsAt":"2026-03-01T10:00:00.123Z",
          "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/graph","fingerprint":"0a1b2c3d4e5f6071"}],
          "groupLabels":{"alertname":"TibiotCardRunaway"},"commonLabels":{},"commonAnnotations":{},
          "externalURL":"http://am:9093","version":"4","groupKey":"{}:{alertname=\"X\"}","truncatedAlerts":0,
          "newField":[1,2]}"#;
        let n = Notification::parse(body).unwrap();
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.labels["iccid"], "89860000000000000001");
        assert!(is_valid_fingerprint(&a.fingerprint));
        assert!(is_valid_starts_at(&a.starts_at));
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(Notification::parse(br#"{"version":"3","alerts":[]}"#).is_err());
        assert!(Notification::parse(br#"{"version":"4"}"#).is_err());
        assert!(Notification::parse(b"\xff\xfe").is_err());
        assert!(Notification::parse(br#"{"version":"4","alerts":[{"labels":{"a":1}}]}"#).is_err());
        assert!(!is_valid_fingerprint("xyz"));
        assert!(!is_valid_fingerprint(""));
        assert!(!is_valid_starts_at("yesterday"));
    }
}
