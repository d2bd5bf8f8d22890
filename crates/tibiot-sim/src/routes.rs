//! The simulator's request handling: routing of the eight endpoints (below an optional path
//! prefix), counting, signature verification, fault injection, parameter validation and the
//! `{code, message, traceId, data}` envelope.
//!
//! Answers: success is HTTP 200 with `code` 200 and `message` "success". Business errors are
//! HTTP 200 too, like the vendor: `code` 400 (a missing or invalid parameter), 401 (signature
//! rejected), 404 (unknown pool, ICCID or batch), 5000 (injected "system busy"). An unknown
//! path is HTTP 404, a wrong method HTTP 405, a request body over 64 KiB HTTP 413.
//!
//! Validation: every parameter the reference marks required must be present and non-empty
//! (`queryDay` of the pool day usage is optional there and defaults to today); `queryMonth` is
//! `YYYY-MM` within the last 12 months (this month included) and `queryDay` `YYYY-MM-DD`
//! within the last 30 days (today included), both on the API calendar at the world clock.
//! The network operation takes 1 to 10 ICCIDs and a boolean `switchOn`; unknown ICCIDs,
//! duplicates and cards in liquidation (18) are rejected in `errorInfo`, abnormal cards (99)
//! are accepted and fail in the batch; `batchCode` is absent when nothing was accepted.
//!
//! Besides the API, `GET /-/counters` (at the root, whatever the prefix; unsigned, not counted)
//! answers the request counters as JSON, `?targets=1` with the per-target counts: benchmarks and
//! scripts that run the simulator as a separate process count upstream calls with it.

use crate::SimState;
use crate::faults::Fault;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use tibiot_api::Endpoint;
use tibiot_api::calendar::{Month, format_day, parse_day};

pub const CODE_OK: i64 = 200;
pub const CODE_BAD_REQUEST: i64 = 400;
pub const CODE_UNAUTHORIZED: i64 = 401;
pub const CODE_NOT_FOUND: i64 = 404;
pub const CODE_BUSY: i64 = 5000;

/// Largest request body read.
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Size of the padding of an oversized answer.
const OVERSIZED_PADDING: usize = 6 << 20;

/// Marks a response whose connection must be dropped instead of answered.
#[derive(Debug, Clone, Copy)]
pub struct ResetConnection;

type BizError = (i64, String);

fn bad(msg: impl Into<String>) -> BizError {
    (CODE_BAD_REQUEST, msg.into())
}

/// Decodes a raw query string into pairs (`+` is kept literally, as RFC 3986 has it).
fn decode_query(raw: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let dec = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "query is not valid percent-encoded UTF-8".to_string())
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn required<'a>(q: &'a [(String, String)], name: &str) -> Result<&'a str, BizError> {
    param(q, name).ok_or_else(|| bad(format!("missing required parameter {name}")))
}

/// The target a GET is about.
fn target_param(ep: Endpoint) -> &'static str {
    match ep {
        Endpoint::PoolDetail | Endpoint::PoolMonthUsage | Endpoint::PoolDayUsage => "poolCode",
        Endpoint::BatchStatus => "batchCode",
        _ => "iccid",
    }
}

/// Turns integral floats into integers, so KB values print like the vendor's (`1234`).
fn intify(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && !n.is_i64()
                && !n.is_u64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(intify),
        Value::Object(map) => map.values_mut().for_each(intify),
        _ => {}
    }
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

impl SimState {
    fn trace_id(&self) -> String {
        let n = self.trace_counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:08x}", self.trace_salt, n)
    }

    fn envelope_bytes(&self, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
        let env = json!({
            "code": code,
            "message": message,
            "traceId": self.trace_id(),
            "data": data,
        });
        serde_json::to_vec(&env).unwrap_or_default()
    }

    fn envelope(&self, status: StatusCode, code: i64, message: &str) -> Response<Body> {
        json_response(status, self.envelope_bytes(code, message, None))
    }
}

/// Handles one request.
pub async fn handle(state: &SimState, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if state.clock_control && path == "/-/clock" {
        return clock_control(state, &parts.method, parts.uri.query());
    }
    if path == "/-/counters" && parts.method == Method::GET {
        let per_target = decode_query(parts.uri.query())
            .ok()
            .is_some_and(|q| param(&q, "targets").is_some_and(|v| v != "0"));
        let body = serde_json::to_vec(&state.counters.to_json(per_target)).unwrap_or_default();
        return json_response(StatusCode::OK, body);
    }
    let rel = path.strip_prefix(state.prefix.as_str()).unwrap_or("");
    let Some(ep) = Endpoint::from_path(rel) else {
        return state.envelope(StatusCode::NOT_FOUND, 404, "no such endpoint");
    };
    let want = if ep == Endpoint::CardNetwork {
        Method::POST
    } else {
        Method::GET
    };
    if parts.method != want {
        return state.envelope(
            StatusCode::METHOD_NOT_ALLOWED,
            405,
            &format!("{} expects {want}", ep.path()),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return state.envelope(StatusCode::PAYLOAD_TOO_LARGE, 413, "request body too large");
        }
    };
    let query = decode_query(parts.uri.query());
    let targets: Vec<String> = match (&query, ep) {
        (_, Endpoint::CardNetwork) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("iccids").cloned())
            .and_then(|v| v.as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        (Ok(q), _) => param(q, target_param(ep))
            .map(|t| vec![t.to_owned()])
            .unwrap_or_default(),
        (Err(_), _) => Vec::new(),
    };
    state.counters.count(ep, &targets);

    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    if let Some(v) = &state.verifier {
        let q = query.as_deref().unwrap_or(&[]);
        if let Err(msg) = v.verify(parts.method.as_str(), &path, q, &body, &parts.headers) {
            return state.envelope(StatusCode::OK, CODE_UNAUTHORIZED, &msg);
        }
    }
    let query = match query {
        Ok(q) => q,
        Err(msg) => return state.envelope(StatusCode::OK, CODE_BAD_REQUEST, &msg),
    };

    let fault = state.faults.pick(ep, &targets);
    match fault {
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::ConnectionReset) => {
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(ResetConnection);
            return r;
        }
        Some(Fault::Http500) => {
            return state.envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                500,
                "internal server error (simulated)",
            );
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut r = state.envelope(
                StatusCode::TOO_MANY_REQUESTS,
                429,
                "too many requests (simulated)",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return r;
        }
        Some(Fault::BusinessError) => {
            return state.envelope(StatusCode::OK, CODE_BUSY, "system busy (simulated)");
        }
        _ => {}
    }

    let result = answer(state, ep, &query, &body);
    let bytes = match result {
        Ok(mut data) => {
            if let Some(Fault::HostilePool {
                statuses,
                name_bytes,
            }) = fault
                && ep == Endpoint::PoolDetail
            {
                make_hostile(&mut data, statuses, name_bytes);
            }
            intify(&mut data);
            state.envelope_bytes(CODE_OK, "success", Some(data))
        }
        Err((code, msg)) => state.envelope_bytes(code, &msg, None),
    };
    match fault {
        Some(Fault::Malformed) => json_response(
            StatusCode::OK,
            Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>"),
        ),
        Some(Fault::Truncated) => {
            let cut = bytes.len() / 2;
            json_response(StatusCode::OK, bytes[..cut].to_vec())
        }
        Some(Fault::Oversized) => json_response(StatusCode::OK, oversized(&bytes)),
        _ => json_response(StatusCode::OK, bytes),
    }
}

/// A pool detail made hostile as data: `statuses` distinct status codes (1, 2, …) with one
/// card each, and a name of `name_bytes` bytes (a quote and a backslash, then CJK characters
/// and ASCII padding, so that cutting it must respect character boundaries and escaping).
fn make_hostile(data: &mut Value, statuses: u32, name_bytes: u32) {
    let Value::Object(pool) = data else { return };
    let counts: Vec<Value> = (1..=i64::from(statuses))
        .map(|code| serde_json::json!({"cardStatus": code, "total": 1}))
        .collect();
    pool.insert("bindCardStatusCount".into(), Value::Array(counts));
    let n = name_bytes as usize;
    let mut name = String::with_capacity(n);
    name.push_str(&"\"\\"[..n.min(2)]);
    while name.len() + '池'.len_utf8() <= n {
        name.push('池');
    }
    while name.len() < n {
        name.push('a');
    }
    pool.insert("upoolName".into(), Value::String(name));
}

/// The answer with a large unknown field in front: valid JSON, over any sane size cap.
fn oversized(answer: &[u8]) -> Vec<u8> {
    static PAD: OnceLock<String> = OnceLock::new();
    let pad = PAD.get_or_init(|| "x".repeat(OVERSIZED_PADDING));
    let mut out = Vec::with_capacity(answer.len() + pad.len() + 16);
    out.extend_from_slice(b"{\"padding\":\"");
    out.extend_from_slice(pad.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(answer.get(1..).unwrap_or_default());
    out
}

fn answer(
    state: &SimState,
    ep: Endpoint,
    q: &[(String, String)],
    body: &[u8],
) -> Result<Value, BizError> {
    let world = &state.world;
    let now = state.clock.now();
    let cal = world.calendar();
    let today = cal.date_at(now);
    let pool = |q: &[(String, String)]| -> Result<usize, BizError> {
        let code = required(q, "poolCode")?;
        world
            .pool_idx(code)
            .ok_or_else(|| (CODE_NOT_FOUND, format!("pool {code:?} not found")))
    };
    let card = |q: &[(String, String)]| -> Result<usize, BizError> {
        let iccid = required(q, "iccid")?;
        world
            .card_idx(iccid)
            .ok_or_else(|| (CODE_NOT_FOUND, format!("ICCID {iccid:?} not found")))
    };
    let month = |q: &[(String, String)]| -> Result<Month, BizError> {
        let s = required(q, "queryMonth")?;
        let m = Month::parse(s).ok_or_else(|| bad("queryMonth must be YYYY-MM"))?;
        let window = cal.last_months(today, 12);
        if !window.contains(&m) {
            return Err(bad(format!(
                "queryMonth must be within the last 12 months ({}..{})",
                window[0], window[11]
            )));
        }
        Ok(m)
    };
    let day = |q: &[(String, String)], optional: bool| -> Result<chrono::NaiveDate, BizError> {
        let s = match param(q, "queryDay") {
            Some(s) => s,
            None if optional => return Ok(today),
            None => return Err(bad("missing required parameter queryDay")),
        };
        let d = parse_day(s).ok_or_else(|| bad("queryDay must be YYYY-MM-DD"))?;
        let window = cal.last_days(today, 30);
        if !window.contains(&d) {
            return Err(bad(format!(
                "queryDay must be within the last 30 days ({}..{})",
                format_day(window[0]),
                format_day(window[29])
            )));
        }
        Ok(d)
    };
    let to_value =
        |v: Result<Value, serde_json::Error>| v.map_err(|e| (500, format!("internal error: {e}")));
    match ep {
        Endpoint::PoolDetail => {
            let i = pool(q)?;
            state.batches.settle(world, state.clock.now());
            to_value(serde_json::to_value(world.pool_detail(i, now)))
        }
        Endpoint::PoolMonthUsage => {
            let i = pool(q)?;
            let m = month(q)?;
            to_value(serde_json::to_value(world.pool_month_answer(i, m, now)))
        }
        Endpoint::PoolDayUsage => {
            let i = pool(q)?;
            let d = day(q, true)?;
            Ok(json!({
                "day": format_day(d),
                "poolCode": world.pools()[i].code,
                "useFlowKb": world.pool_day_usage(i, d, now),
            }))
        }
        Endpoint::BatchStatus => {
            let code = required(q, "batchCode")?;
            let items = state
                .batches
                .status(world, code, now)
                .ok_or_else(|| (CODE_NOT_FOUND, format!("batch {code:?} not found")))?;
            Ok(Value::Array(
                items
                    .into_iter()
                    .map(|i| {
                        json!({
                            "operationCardStatus": i.state,
                            "iccid": i.iccid,
                            "msisdn": i.msisdn,
                        })
                    })
                    .collect(),
            ))
        }
        Endpoint::CardDetail => {
            let i = card(q)?;
            state.batches.settle(world, state.clock.now());
            to_value(serde_json::to_value(world.card_detail(i, now)))
        }
        Endpoint::CardMonthUsage => {
            let i = card(q)?;
            let m = month(q)?;
            Ok(json!({
                "month": m.to_string(),
                "iccid": world.cards()[i].iccid,
                "useFlowKb": world.card_month_usage(i, m, now),
            }))
        }
        Endpoint::CardDayUsage => {
            let i = card(q)?;
            let d = day(q, false)?;
            Ok(json!({
                "day": format_day(d),
                "iccid": world.cards()[i].iccid,
                "useFlowKb": world.card_day_usage(i, d, now),
            }))
        }
        Endpoint::CardNetwork => network(state, body),
    }
}

/// `POST /-/clock?at=RFC3339` freezes the world clock at that time, `POST /-/clock?resume`
/// lets it run again; both answer `{"now": RFC3339}`. Only with `clock_control`.
fn clock_control(state: &SimState, method: &Method, query: Option<&str>) -> Response<Body> {
    if method != Method::POST {
        return state.envelope(StatusCode::METHOD_NOT_ALLOWED, 405, "/-/clock expects POST");
    }
    let q = decode_query(query).unwrap_or_default();
    if let Some(at) = param(&q, "at") {
        match chrono::DateTime::parse_from_rfc3339(at) {
            Ok(t) => state.clock.freeze(Some(t.with_timezone(&chrono::Utc))),
            Err(_) => {
                return state.envelope(StatusCode::BAD_REQUEST, 400, "at must be RFC 3339");
            }
        }
    } else if q.iter().any(|(k, _)| k == "resume") {
        state.clock.resume();
    } else {
        return state.envelope(StatusCode::BAD_REQUEST, 400, "give at=RFC3339 or resume");
    }
    let now = state
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json_response(StatusCode::OK, json!({ "now": now }).to_string())
}

/// `POST /api/v1/card/operation/network`.
fn network(state: &SimState, body: &[u8]) -> Result<Value, BizError> {
    let world = &state.world;
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        bad("request body must be JSON {\"iccids\": [...], \"switchOn\": true|false}")
    })?;
    let iccids = v
        .get("iccids")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing required field iccids (an array of ICCIDs)"))?;
    let switch_on = v
        .get("switchOn")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("missing required field switchOn (true or false)"))?;
    if iccids.is_empty() {
        return Err(bad("iccids must not be empty"));
    }
    if iccids.len() > 10 {
        return Err(bad(format!(
            "at most 10 ICCIDs per call, got {}",
            iccids.len()
        )));
    }
    state.batches.settle(world, state.clock.now());
    let mut accepted: Vec<(usize, bool)> = Vec::new();
    let mut errors = Vec::new();
    for item in iccids {
        let Some(iccid) = item.as_str() else {
            errors
                .push(json!({"iccid": item.to_string(), "infoMessage": "ICCID must be a string"}));
            continue;
        };
        let reject = |msg: &str| json!({"iccid": iccid, "infoMessage": msg});
        match world.card_idx(iccid) {
            None => errors.push(reject("ICCID not found")),
            Some(i) if accepted.iter().any(|(c, _)| *c == i) => {
                errors.push(reject("duplicate ICCID in this request"));
            }
            Some(i) => match world.card_status(i) {
                18 => errors.push(reject("card is in liquidation and cannot be switched")),
                s => accepted.push((i, s == 99)),
            },
        }
    }
    let batch_code =
        (!accepted.is_empty()).then(|| state.batches.create(world, switch_on, &accepted));
    Ok(json!({
        "successCount": accepted.len(),
        "batchCode": batch_code,
        "errorInfo": errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_pool_detail() {
        let mut v = json!({"upoolCode": "P", "upoolName": "n"});
        make_hostile(&mut v, 1000, 1 << 20);
        assert_eq!(v["bindCardStatusCount"].as_array().unwrap().len(), 1000);
        assert_eq!(v["bindCardStatusCount"][999]["cardStatus"], 1000);
        let name = v["upoolName"].as_str().unwrap();
        assert_eq!(name.len(), 1 << 20);
        assert!(name.starts_with("\"\\池"));
        assert_eq!(v["upoolCode"], "P");
        make_hostile(&mut v, 0, 1);
        assert_eq!(v["upoolName"], "\"");
        assert!(v["bindCardStatusCount"].as_array().unwrap().is_empty());
    }

    #[test]
    fn query_decoding() {
        let q = decode_query(Some("a=%E6%B1%A0&b=x+y&c&=v")).unwrap();
        assert_eq!(
            q,
            vec![
                ("a".into(), "池".into()),
                ("b".into(), "x+y".into()),
                ("c".into(), "".into()),
                ("".into(), "v".into())
            ]
        );
        assert!(decode_query(Some("a=%FF")).is_err());
        assert_eq!(decode_query(None).unwrap(), vec![]);
    }

    #[test]
    fn intify_numbers() {
        let mut v = json!({"a": 1.0, "b": [2.5, 3.0], "c": "4.0"});
        intify(&mut v);
        assert_eq!(v.to_string(), r#"{"a":1,"b":[2.5,3],"c":"4.0"}"#);
    }

    #[test]
    fn oversized_is_valid_json() {
        let body = br#"{"code":200,"data":null}"#;
        let big = oversized(body);
        assert!(big.len() > OVERSIZED_PADDING);
        let v: Value = serde_json::from_slice(&big).unwrap();
        assert_eq!(v["code"], 200);
    }
}
