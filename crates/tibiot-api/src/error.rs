//! [`ApiError`]: the one error type of the TIBIOT client. Each failure class is its own
//! variant, and [`Outcome`] names it for the `outcome` label of `tibiot_api_requests_total`.
//! Text that came from upstream is cleaned (control characters removed, length capped) before
//! it is stored, because it ends up in logs and on the landing page.

use std::fmt;
use std::time::Duration;

/// The longest upstream message kept, in characters.
const MAX_UPSTREAM_TEXT: usize = 200;

/// How one upstream request ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    HttpError,
    ApiError,
    Timeout,
    TransportError,
    DecodeError,
    RateLimited,
}

impl Outcome {
    /// Every outcome, in a stable order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::HttpError,
        Outcome::ApiError,
        Outcome::Timeout,
        Outcome::TransportError,
        Outcome::DecodeError,
        Outcome::RateLimited,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpError => "http_error",
            Outcome::ApiError => "api_error",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
            Outcome::DecodeError => "decode_error",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed TIBIOT call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The deadline or the per-request timeout passed before an answer arrived.
    #[error("timed out")]
    Timeout,
    /// No HTTP answer: connection refused or reset, DNS, TLS.
    #[error("transport error: {0}")]
    Transport(String),
    /// HTTP 429.
    #[error("rate limited (HTTP 429{})", retry_after.map(|d| format!(", retry after {}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// A non-2xx HTTP status other than 429; envelope fields when the body held them.
    #[error("HTTP {status}{}", describe(*code, message.as_deref(), trace_id.as_deref()))]
    Http {
        status: u16,
        code: Option<i64>,
        message: Option<String>,
        trace_id: Option<String>,
    },
    /// HTTP 2xx, but `code` is not one of the account's success codes.
    #[error("API error{}", describe(*code, message.as_deref(), trace_id.as_deref()))]
    Api {
        status: u16,
        code: Option<i64>,
        message: Option<String>,
        trace_id: Option<String>,
    },
    /// The body could not be read as the endpoint's response (or was larger than the cap).
    #[error("undecodable response: {0}")]
    Decode(String),
    /// The request was refused before sending (e.g. more than 10 ICCIDs).
    #[error("invalid request: {0}")]
    Invalid(String),
}

fn describe(code: Option<i64>, message: Option<&str>, trace_id: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(c) = code {
        s.push_str(&format!(" code={c}"));
    }
    if let Some(m) = message {
        s.push_str(&format!(" message={m:?}"));
    }
    if let Some(t) = trace_id {
        s.push_str(&format!(" traceId={t}"));
    }
    s
}

impl ApiError {
    /// The `outcome` label of this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            ApiError::Timeout => Outcome::Timeout,
            ApiError::Transport(_) => Outcome::TransportError,
            ApiError::RateLimited { .. } => Outcome::RateLimited,
            ApiError::Http { .. } => Outcome::HttpError,
            ApiError::Api { .. } => Outcome::ApiError,
            ApiError::Decode(_) => Outcome::DecodeError,
            ApiError::Invalid(_) => Outcome::ApiError,
        }
    }

    /// The API business code, when the upstream gave one.
    pub fn api_code(&self) -> Option<i64> {
        match self {
            ApiError::Http { code, .. } | ApiError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The upstream trace id, when the upstream gave one.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            ApiError::Http { trace_id, .. } | ApiError::Api { trace_id, .. } => trace_id.as_deref(),
            _ => None,
        }
    }

    /// The upstream message, when the upstream gave one.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            ApiError::Http { message, .. } | ApiError::Api { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// Whether an idempotent request that failed like this is worth another try:
    /// transport errors, 5xx and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport(_) | ApiError::RateLimited { .. } => true,
            ApiError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Credentials rejected (HTTP 401/403, or business code 401/403).
    pub fn is_auth(&self) -> bool {
        match self {
            ApiError::Http { status, code, .. } | ApiError::Api { status, code, .. } => {
                matches!(status, 401 | 403) || matches!(code, Some(401 | 403))
            }
            _ => false,
        }
    }
}

/// Makes upstream text safe to log and display: control characters become spaces and the
/// length is capped.
pub fn clean_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_UPSTREAM_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > MAX_UPSTREAM_TEXT {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_classes() {
        let e = ApiError::Api {
            status: 200,
            code: Some(5001),
            message: Some("pool not found".into()),
            trace_id: Some("t-1".into()),
        };
        assert_eq!(
            e.to_string(),
            "API error code=5001 message=\"pool not found\" traceId=t-1"
        );
        assert_eq!(e.outcome(), Outcome::ApiError);
        assert!(!e.is_retryable());
        let h = ApiError::Http {
            status: 503,
            code: None,
            message: None,
            trace_id: None,
        };
        assert!(h.is_retryable());
        assert_eq!(h.to_string(), "HTTP 503");
        assert!(ApiError::RateLimited { retry_after: None }.is_retryable());
    }

    #[test]
    fn clean_text_strips_controls_and_caps() {
        assert_eq!(clean_text("a\nb\u{1b}[31m"), "a b [31m");
        let long = "x".repeat(500);
        assert_eq!(clean_text(&long).chars().count(), MAX_UPSTREAM_TEXT + 1);
    }
}
