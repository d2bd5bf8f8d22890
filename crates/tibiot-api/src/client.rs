//! The TIBIOT HTTP [`Client`]: one request path for every GET endpoint ([`Client::get`] with a
//! [`Query`] that describes it, see [`crate::endpoint`]) and, with the `operate` feature, the
//! card network operation. Every call takes a deadline from the caller.
//!
//! - URL = base URL (scheme, host, optional path prefix) + endpoint path + RFC 3986 query.
//! - Every request is signed by the account's [`Signer`] and carries the static extra headers
//!   and `User-Agent: tibiot-exporter/<version>`.
//! - A response body larger than `max_body_bytes` is a decode error; it is never buffered whole.
//! - Success needs HTTP 2xx **and** an envelope `code` among `success_codes`.
//! - Retries (docs/collection.md): GETs only, on transport errors, 5xx and 429 (honouring
//!   `Retry-After`), with jittered exponential backoff, never past the deadline. When the
//!   deadline ends the retries, the error is the last real failure (HTTP 500, API code, ...),
//!   not the deadline. The card network operation (POST) is never retried.
//! - A 429 with `Retry-After` pauses the account's [`Gate`] until then: no request of the
//!   account goes out before the time the API named.
//! - Every HTTP attempt passes the account's optional [`Gate`] (concurrency and rate limits),
//!   retries included; a backoff sleep holds no slot. The deadline may be a budget that
//!   starts at the first admission ([`Deadline::AfterAdmission`]).
//! - Every HTTP attempt is reported to an optional [`RequestObserver`] (for the
//!   `tibiot_api_requests_total` and `tibiot_api_request_duration_seconds` metrics).

use crate::endpoint::{Endpoint, Query};
use crate::error::{ApiError, Outcome, clean_text};
use crate::gate::{Admission, Deadline, Gate};
use crate::model::*;
use crate::sign::{SignRequest, Signer, encode_component};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("tibiot-exporter/", env!("CARGO_PKG_VERSION"));

/// Told about every HTTP attempt the client makes.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration);
}

/// How one attempt ended.
enum Failed {
    /// The deadline passed before the request could be sent.
    NotSent,
    /// Sent, and the caller's deadline (not the request's own timeout) ended the wait.
    CutShort,
    /// An answer (or a transport error, or the request's own timeout).
    Answered(ApiError),
}

/// Retry and backoff settings for idempotent requests.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time, with full jitter.
    pub base_backoff: Duration,
    /// Upper bound of one backoff (a longer `Retry-After` is still honoured).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The jittered backoff after failed attempt number `attempt` (1-based): uniformly
    /// between half and all of `base × 2^(attempt-1)`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        half + exp
            .saturating_sub(half)
            .mul_f64(rand::rng().random::<f64>())
    }
}

/// Everything a [`Client`] is built from.
#[derive(Clone)]
pub struct ClientOptions {
    /// Scheme + host (+ optional path prefix), e.g. `https://api.example.com/tibiot`.
    pub base_url: String,
    pub signer: Arc<dyn Signer>,
    /// Static extra headers (already expanded).
    pub headers: Vec<(String, String)>,
    pub success_codes: Vec<i64>,
    /// Upper bound of one HTTP attempt (the caller's deadline may be shorter).
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
    pub retry: RetryPolicy,
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// The account's limits, which every attempt passes (none: unlimited).
    pub gate: Option<Arc<Gate>>,
}

impl ClientOptions {
    /// Defaults: `auth: none`, success codes `[0, 200]`, 10 s per attempt, 4 MiB bodies,
    /// 3 attempts.
    pub fn new(base_url: impl Into<String>, signer: Arc<dyn Signer>) -> Self {
        Self {
            base_url: base_url.into(),
            signer,
            headers: Vec::new(),
            success_codes: vec![0, 200],
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            retry: RetryPolicy::default(),
            observer: None,
            gate: None,
        }
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid base_url: {0}")]
    BaseUrl(String),
    #[error("invalid header {0:?}: {1}")]
    Header(String, String),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Checks a base URL: `http`/`https`, a host, no query or fragment. Returns it without a
/// trailing slash.
pub fn parse_base_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials".into());
    }
    Ok(url)
}

/// A TIBIOT open API client for one account. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: reqwest::Url,
    prefix: String,
    signer: Arc<dyn Signer>,
    success_codes: Vec<i64>,
    request_timeout: Duration,
    max_body_bytes: usize,
    retry: RetryPolicy,
    observer: Option<Arc<dyn RequestObserver>>,
    gate: Option<Arc<Gate>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

/// Installs ring as the process's default rustls crypto provider unless one is installed:
/// reqwest's TLS (built without a provider of its own) takes that default. Called by
/// [`Client::new`]; anything else that builds a `reqwest::Client` in the same process calls
/// it first. Idempotent.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one meanwhile: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl Client {
    /// Builds a client with its own connection pool.
    pub fn new(opts: ClientOptions) -> Result<Self, BuildError> {
        install_crypto_provider();
        let headers = header_map(&opts.headers)?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let base = parse_base_url(&opts.base_url).map_err(BuildError::BaseUrl)?;
        let prefix = base.path().trim_end_matches('/').to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                prefix,
                signer: opts.signer,
                success_codes: opts.success_codes,
                request_timeout: opts.request_timeout,
                max_body_bytes: opts.max_body_bytes,
                retry: opts.retry,
                observer: opts.observer,
                gate: opts.gate,
            }),
        })
    }

    /// Sends one GET described by `query` (retried as the module documentation says) and
    /// decodes its `data`: e.g. `client.get(Query::pool_detail("POOL-1"), deadline)`.
    pub async fn get<T>(
        &self,
        query: Query<T>,
        deadline: impl Into<Deadline>,
    ) -> Result<T, ApiError> {
        let data = self
            .get_data(query.endpoint(), query.params(), deadline.into())
            .await?;
        query.decode(data)
    }

    /// Switches the network of 1 to 10 cards on or off. Sent once, never retried: a timeout
    /// means the outcome is unknown, and the caller should check the cards or the batch.
    /// Only with the `operate` feature (the exporter is built without it).
    #[cfg(feature = "operate")]
    pub async fn card_network(
        &self,
        iccids: &[String],
        switch_on: bool,
        deadline: impl Into<Deadline>,
    ) -> Result<NetworkResult, ApiError> {
        if iccids.is_empty() || iccids.len() > 10 {
            return Err(ApiError::Invalid(format!(
                "a network operation takes 1 to 10 ICCIDs, not {}",
                iccids.len()
            )));
        }
        let body = serde_json::to_vec(&NetworkRequest {
            iccids: iccids.to_vec(),
            switch_on: Some(switch_on),
        })
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let data = self
            .attempt(
                Endpoint::CardNetwork,
                reqwest::Method::POST,
                &[],
                body,
                &mut deadline.into(),
            )
            .await?;
        crate::endpoint::required(data)
    }

    /// One GET with retries; the envelope's `data`. The error returned is the last real
    /// failure: when the deadline leaves no time for another attempt (or cuts a retry short),
    /// the failure that caused the retry is returned, not the deadline.
    async fn get_data(
        &self,
        ep: Endpoint,
        query: &[(&'static str, String)],
        mut deadline: Deadline,
    ) -> Result<serde_json::Value, ApiError> {
        let retry = self.inner.retry;
        let mut attempt = 1;
        let mut last: Option<ApiError> = None;
        loop {
            let e = match self
                .try_once(ep, reqwest::Method::GET, query, Vec::new(), &mut deadline)
                .await
            {
                Ok(data) => return Ok(data),
                Err(Failed::NotSent) | Err(Failed::CutShort) => {
                    return Err(last.unwrap_or(ApiError::Timeout));
                }
                Err(Failed::Answered(e)) => e,
            };
            if !(e.is_retryable() && attempt < retry.max_attempts) {
                return Err(e);
            }
            let mut wait = retry.backoff(attempt);
            if let ApiError::RateLimited {
                retry_after: Some(after),
            } = &e
            {
                wait = wait.max(*after);
            }
            // fixed by the first attempt's admission
            let give_up = deadline.fixed().unwrap_or_else(Instant::now);
            if Instant::now() + wait >= give_up {
                return Err(e);
            }
            tracing::debug!(endpoint = ep.name(), attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
            last = Some(e);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One HTTP attempt as an [`ApiError`] (the network operation, which is never retried).
    #[cfg(feature = "operate")]
    async fn attempt(
        &self,
        ep: Endpoint,
        method: reqwest::Method,
        query: &[(&'static str, String)],
        body: Vec<u8>,
        deadline: &mut Deadline,
    ) -> Result<serde_json::Value, ApiError> {
        self.try_once(ep, method, query, body, deadline)
            .await
            .map_err(|f| match f {
                Failed::Answered(e) => e,
                Failed::NotSent | Failed::CutShort => ApiError::Timeout,
            })
    }

    /// One HTTP attempt: admitted by the gate (a budget deadline starts here), observed,
    /// and holding its slot only until it is answered; returns the envelope's `data`. A
    /// `429` with `Retry-After` pauses the whole gate until then.
    async fn try_once(
        &self,
        ep: Endpoint,
        method: reqwest::Method,
        query: &[(&'static str, String)],
        body: Vec<u8>,
        deadline: &mut Deadline,
    ) -> Result<serde_json::Value, Failed> {
        let Ok(_admission) = self.admit(*deadline).await else {
            return Err(Failed::NotSent);
        };
        let now = Instant::now();
        let deadline = deadline.start(now);
        if now >= deadline {
            return Err(Failed::NotSent);
        }
        let own_limit = now + self.inner.request_timeout;
        let until = deadline.min(own_limit);
        let started = std::time::Instant::now();
        let result =
            match tokio::time::timeout_at(until, self.exchange(ep, method, query, body)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::Timeout),
            };
        if let Some(obs) = &self.inner.observer {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(e) => e.outcome(),
            };
            obs.observe(ep, outcome, started.elapsed());
        }
        if let (
            Err(ApiError::RateLimited {
                retry_after: Some(after),
            }),
            Some(gate),
        ) = (&result, &self.inner.gate)
        {
            gate.pause_for(*after);
        }
        match result {
            // the caller's deadline, not the request's own timeout, ended it
            Err(ApiError::Timeout) if until < own_limit => Err(Failed::CutShort),
            Err(e) => Err(Failed::Answered(e)),
            Ok(v) => Ok(v),
        }
    }

    /// Waits for the gate, no longer than a fixed deadline. A request that never got in was
    /// never sent, so it is not observed.
    async fn admit(&self, deadline: Deadline) -> Result<Option<Admission>, ApiError> {
        let Some(gate) = &self.inner.gate else {
            return Ok(None);
        };
        match deadline.fixed() {
            Some(at) => tokio::time::timeout_at(at, gate.admit())
                .await
                .map(Some)
                .map_err(|_| ApiError::Timeout),
            None => Ok(Some(gate.admit().await)),
        }
    }

    async fn exchange(
        &self,
        ep: Endpoint,
        method: reqwest::Method,
        query: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ApiError> {
        let inner = &*self.inner;
        let mut url = inner.base.clone();
        url.set_path(&format!("{}{}", inner.prefix, ep.path()));
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        let qs = qs.join("&");
        url.set_query((!qs.is_empty()).then_some(qs.as_str()));
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let sign = SignRequest {
            method: method.as_str(),
            path: url.path(),
            query: &query,
            body: &body,
        };
        let auth = inner.signer.headers(&sign);
        let mut req = inner.http.request(method.clone(), url);
        for (name, value) in auth {
            req = req.header(name, value);
        }
        if method == reqwest::Method::POST {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let mut resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        if status.as_u16() == 429 {
            return Err(ApiError::RateLimited {
                retry_after: resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            });
        }
        let bytes = read_capped(&mut resp, inner.max_body_bytes).await?;
        if !status.is_success() {
            let env: Option<Envelope<serde_json::Value>> = serde_json::from_slice(&bytes).ok();
            let env = env.unwrap_or_default();
            return Err(ApiError::Http {
                status: status.as_u16(),
                code: env.code,
                message: env.message.as_deref().map(clean_text),
                trace_id: env.trace_id.as_deref().map(clean_text),
            });
        }
        let env: Envelope<serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Decode(clean_text(&e.to_string())))?;
        if !env.code.is_some_and(|c| inner.success_codes.contains(&c)) {
            return Err(ApiError::Api {
                status: status.as_u16(),
                code: env.code,
                message: env.message.as_deref().map(clean_text),
                trace_id: env.trace_id.as_deref().map(clean_text),
            });
        }
        Ok(env.data.unwrap_or(serde_json::Value::Null))
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, BuildError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| BuildError::Header(k.clone(), "not a valid header name".into()))?;
        // The value may be a secret: never echo it.
        let mut value = HeaderValue::from_str(v).map_err(|_| {
            BuildError::Header(k.clone(), "value is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Reads at most `cap` bytes of body; more is a decode error.
async fn read_capped(resp: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::Decode(format!("response body larger than {cap} bytes"));
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if buf.len() + chunk.len() > cap {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn transport_error(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout;
    }
    ApiError::Transport(clean_text(&describe_reqwest(&e)))
}

/// The error chain of a reqwest error, without the URL (which is ours, not a secret, but long).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(delta.clamp(0, 3_600_000) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_bounded_and_grows() {
        let p = RetryPolicy::default();
        for attempt in 1..6 {
            let b = p.backoff(attempt);
            let full = (p.base_backoff * (1 << (attempt - 1))).min(p.max_backoff);
            assert!(b >= full / 2 && b <= full, "{b:?} vs {full:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn base_url_rules() {
        assert!(parse_base_url("https://api.example.com/prefix/").is_ok());
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://x/?a=1").is_err());
        assert!(parse_base_url("not a url").is_err());
        assert!(parse_base_url("http://user:pw@x/").is_err());
    }
}
