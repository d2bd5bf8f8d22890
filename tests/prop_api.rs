//! Property tests (bounded fuzzing) of everything that reads upstream API bytes: the response
//! envelope and every model, the lenient number/string helpers, `Retry-After`, and the text
//! cleaning applied to upstream messages. Upstream bytes are hostile: none of these may panic,
//! and well-formed values in any of the accepted spellings must decode to the right value.
//!
//! Cases per property: `PROPTEST_CASES` (default 256). A longer run, as documented in the
//! README: `PROPTEST_CASES=20000 cargo test --release --test prop_api`.

use proptest::prelude::*;
use serde_json::{Value, json};
use tibiot_api::client::parse_retry_after;
use tibiot_api::error::clean_text;
use tibiot_api::lenient::{f64_to_i64, parse_number};
use tibiot_api::*;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Decodes `bytes` as every response type the client reads, the way the client does
/// (envelope with raw `data`, then the endpoint's model) and directly; returns nothing, it
/// only must not panic.
fn decode_everything(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Envelope<Value>>(bytes);
    let _ = serde_json::from_slice::<Envelope<PoolDetail>>(bytes);
    let _ = serde_json::from_slice::<Envelope<PoolDayUsage>>(bytes);
    let _ = serde_json::from_slice::<Envelope<PoolMonthUsage>>(bytes);
    let _ = serde_json::from_slice::<Envelope<CardDetail>>(bytes);
    let _ = serde_json::from_slice::<Envelope<CardDayUsage>>(bytes);
    let _ = serde_json::from_slice::<Envelope<CardMonthUsage>>(bytes);
    let _ = serde_json::from_slice::<Envelope<NetworkResult>>(bytes);
    let _ = serde_json::from_slice::<Envelope<Vec<BatchCardStatus>>>(bytes);
    if let Ok(env) = serde_json::from_slice::<Envelope<Value>>(bytes)
        && let Some(data) = env.data
    {
        decode_value(data);
    }
}

/// Every model from a JSON value; must not panic.
fn decode_value(v: Value) {
    let _ = serde_json::from_value::<PoolDetail>(v.clone());
    let _ = serde_json::from_value::<PoolDayUsage>(v.clone());
    let _ = serde_json::from_value::<PoolMonthUsage>(v.clone());
    let _ = serde_json::from_value::<CardDetail>(v.clone());
    let _ = serde_json::from_value::<CardDayUsage>(v.clone());
    let _ = serde_json::from_value::<CardMonthUsage>(v.clone());
    let _ = serde_json::from_value::<NetworkResult>(v.clone());
    let _ = serde_json::from_value::<BatchCardStatus>(v.clone());
    let _ = serde_json::from_value::<CardStatusCount>(v.clone());
    let _ = serde_json::from_value::<PackageInfo>(v);
}

/// Field names the models know, so that generated objects hit the lenient decoders.
const FIELDS: &[&str] = &[
    "code",
    "message",
    "traceId",
    "data",
    "upoolCode",
    "upoolName",
    "enUpoolName",
    "poolType",
    "useFlow",
    "totalFlow",
    "billingCycle",
    "totalCard",
    "rawAddTime",
    "bindCardStatusCount",
    "packageInfo",
    "startTime",
    "endTime",
    "upoolStatus",
    "cardStatus",
    "total",
    "flowPackageType",
    "clientFlowPackageName",
    "channelName",
    "epiConfigs",
    "standardCharge",
    "month",
    "day",
    "poolCode",
    "useFlowKb",
    "iccid",
    "imei",
    "imsi",
    "msisdn",
    "useMonthFlow",
    "billingMethod",
    "apn",
    "successCount",
    "batchCode",
    "errorInfo",
    "infoMessage",
    "operationCardStatus",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-1e20f64..1e20).prop_map(Value::from),
    ]
}

fn arb_scalar_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[ ]{0,2}-?[0-9]{0,25}(\\.[0-9]{0,5})?([eE][-+]?[0-9]{1,4})?[ ]{0,2}",
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-infinity".to_owned()),
        Just("1e400".to_owned()),
        Just(String::new()),
    ]
}

/// Arbitrary JSON, biased towards the models' field names and numeric-looking strings.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_scalar_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(arb_key(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes near JSON: a generated document with a few bytes cut, flipped or inserted.
fn arb_mangled_json() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_json(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
    )
        .prop_map(|(v, edits)| {
            let mut b = serde_json::to_vec(&json!({"code": 0, "data": v})).unwrap_or_default();
            for (idx, byte, kind) in edits {
                if b.is_empty() {
                    break;
                }
                let i = idx.index(b.len());
                match kind {
                    0 => b.truncate(i),
                    1 => b[i] = byte,
                    _ => b.insert(i, byte),
                }
            }
            b
        })
}

/// How a numeric field may be spelled upstream (docs/api.md).
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Int,
    Float,
    Str,
    PaddedStr,
    FloatStr,
}

fn spell(v: i64, how: Spelling) -> Value {
    match how {
        Spelling::Int => json!(v),
        Spelling::Float => json!(v as f64),
        Spelling::Str => json!(v.to_string()),
        Spelling::PaddedStr => json!(format!(" {v} ")),
        Spelling::FloatStr => json!(format!("{v}.0")),
    }
}

fn arb_spelling() -> impl Strategy<Value = Spelling> {
    prop_oneof![
        Just(Spelling::Int),
        Just(Spelling::Float),
        Just(Spelling::Str),
        Just(Spelling::PaddedStr),
        Just(Spelling::FloatStr),
    ]
}

/// A numeric field: a value (or none) and how it is written; `None` means `null` or missing.
fn arb_num_field(max: i64) -> impl Strategy<Value = (Option<i64>, Spelling, bool)> {
    (
        proptest::option::weighted(0.8, 0..=max),
        arb_spelling(),
        any::<bool>(),
    )
}

fn put(obj: &mut serde_json::Map<String, Value>, key: &str, f: (Option<i64>, Spelling, bool)) {
    match f {
        (Some(v), how, _) => {
            obj.insert(key.into(), spell(v, how));
        }
        // absent: either `null` or the key left out
        (None, _, true) => {
            obj.insert(key.into(), Value::Null);
        }
        (None, _, false) => {}
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    /// JSON-like bytes with damage (truncated, flipped, inserted bytes) never panic.
    #[test]
    fn mangled_json_never_panics(bytes in arb_mangled_json()) {
        decode_everything(&bytes);
    }

    /// Any JSON value as `data`, as a whole body, or as a model never panics.
    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        decode_value(v.clone());
        let body = serde_json::to_vec(&json!({"code": 200, "message": "ok", "traceId": "t", "data": v.clone()})).unwrap();
        decode_everything(&body);
        decode_everything(&serde_json::to_vec(&v).unwrap());
    }

    /// Leniency (docs/api.md): any JSON object decodes as every model — fields of the wrong
    /// shape are read as absent rather than failing the response.
    #[test]
    fn any_object_decodes_as_every_model(
        m in proptest::collection::btree_map(arb_key(), arb_json(), 0..16)
    ) {
        let v = Value::Object(m.into_iter().collect());
        prop_assert!(serde_json::from_value::<PoolDetail>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<PoolDayUsage>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<PoolMonthUsage>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<CardDetail>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<CardDayUsage>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<CardMonthUsage>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<NetworkResult>(v.clone()).is_ok());
        prop_assert!(serde_json::from_value::<BatchCardStatus>(v.clone()).is_ok());
        let env = json!({"code": v.get("code").cloned().unwrap_or(Value::Null), "data": v});
        prop_assert!(serde_json::from_value::<Envelope<PoolDetail>>(env.clone()).is_ok());
        prop_assert!(serde_json::from_value::<Envelope<CardDetail>>(env).is_ok());
    }

    /// A valid-ish pool detail with numbers written as int, float, string, padded string or
    /// `"n.0"`, `null` or missing, decodes to exactly those values; names keep any Unicode.
    #[test]
    fn pool_detail_numbers_in_every_spelling(
        code in arb_num_field(999),
        use_flow in arb_num_field(1 << 50),
        total_flow in arb_num_field(1 << 50),
        total_card in arb_num_field(1_000_000),
        pool_type in arb_num_field(5),
        status in arb_num_field(3),
        name in proptest::option::of(".*"),
        counts in proptest::collection::vec((arb_num_field(99), arb_num_field(100_000)), 0..6),
        extra in proptest::collection::btree_map("[a-z]{1,8}X", arb_json(), 0..3),
    ) {
        let mut d = serde_json::Map::new();
        put(&mut d, "useFlow", use_flow);
        put(&mut d, "totalFlow", total_flow);
        put(&mut d, "totalCard", total_card);
        put(&mut d, "poolType", pool_type);
        put(&mut d, "upoolStatus", status);
        if let Some(n) = &name {
            d.insert("upoolName".into(), json!(n));
        }
        let items: Vec<Value> = counts
            .iter()
            .map(|(s, t)| {
                let mut o = serde_json::Map::new();
                put(&mut o, "cardStatus", *s);
                put(&mut o, "total", *t);
                Value::Object(o)
            })
            .collect();
        d.insert("bindCardStatusCount".into(), Value::Array(items));
        for (k, v) in extra {
            d.insert(k, v);
        }
        let mut env = serde_json::Map::new();
        put(&mut env, "code", code);
        env.insert("data".into(), Value::Object(d));
        let bytes = serde_json::to_vec(&Value::Object(env)).unwrap();

        let e: Envelope<PoolDetail> = serde_json::from_slice(&bytes).expect("valid-ish body decodes");
        prop_assert_eq!(e.code, code.0);
        let p = e.data.expect("data present");
        prop_assert_eq!(p.use_flow, use_flow.0.map(|v| v as f64));
        prop_assert_eq!(p.total_flow, total_flow.0.map(|v| v as f64));
        prop_assert_eq!(p.total_card, total_card.0.map(|v| v as f64));
        prop_assert_eq!(p.pool_type, pool_type.0);
        prop_assert_eq!(p.upool_status, status.0);
        prop_assert_eq!(p.upool_name, name);
        prop_assert_eq!(p.bind_card_status_count.len(), counts.len());
        for (got, (s, t)) in p.bind_card_status_count.iter().zip(&counts) {
            prop_assert_eq!(got.card_status, s.0);
            prop_assert_eq!(got.total, t.0.map(|v| v as f64));
        }
    }

    /// The same for card detail and the four usage models.
    #[test]
    fn card_and_usage_numbers_in_every_spelling(
        use_flow in arb_num_field(1 << 50),
        month_flow in arb_num_field(1 << 50),
        total in arb_num_field(1 << 50),
        status in arb_num_field(120),
        billing in arb_num_field(4),
        kb in arb_num_field(1 << 40),
        iccid in "[0-9]{19,20}",
    ) {
        let mut d = serde_json::Map::new();
        put(&mut d, "useFlow", use_flow);
        put(&mut d, "useMonthFlow", month_flow);
        put(&mut d, "totalFlow", total);
        put(&mut d, "cardStatus", status);
        put(&mut d, "billingMethod", billing);
        d.insert("iccid".into(), json!(iccid));
        let c: CardDetail = serde_json::from_value(Value::Object(d)).expect("decodes");
        prop_assert_eq!(c.use_flow, use_flow.0.map(|v| v as f64));
        prop_assert_eq!(c.use_month_flow, month_flow.0.map(|v| v as f64));
        prop_assert_eq!(c.total_flow, total.0.map(|v| v as f64));
        prop_assert_eq!(c.card_status, status.0);
        prop_assert_eq!(c.billing_method, billing.0);
        prop_assert_eq!(c.iccid.as_deref(), Some(iccid.as_str()));
        if let Some(s) = status.0 {
            let label = CardStatus::label(s);
            prop_assert!(!label.is_empty());
            prop_assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }

        let mut u = serde_json::Map::new();
        put(&mut u, "useFlowKb", kb);
        u.insert("day".into(), json!("2026-01-02"));
        u.insert("month".into(), json!("2026-01"));
        let v = Value::Object(u);
        let want = kb.0.map(|v| v as f64);
        prop_assert_eq!(serde_json::from_value::<PoolDayUsage>(v.clone()).unwrap().use_flow_kb, want);
        prop_assert_eq!(serde_json::from_value::<PoolMonthUsage>(v.clone()).unwrap().use_flow_kb, want);
        prop_assert_eq!(serde_json::from_value::<CardDayUsage>(v.clone()).unwrap().use_flow_kb, want);
        prop_assert_eq!(serde_json::from_value::<CardMonthUsage>(v).unwrap().use_flow_kb, want);
    }

    /// Fractional floats: kept as such for flows; never an integer code.
    #[test]
    fn fractional_values(v in -1e12f64..1e12, as_string in any::<bool>()) {
        let j = if as_string { json!(v.to_string()) } else { json!(v) };
        let c: CardDetail = serde_json::from_value(json!({"useFlow": j.clone(), "cardStatus": j})).unwrap();
        prop_assert_eq!(c.use_flow, Some(v));
        prop_assert_eq!(c.card_status, if v.fract() == 0.0 { Some(v as i64) } else { None });
    }

    /// A model serialised and read back is unchanged (finite numbers, any Unicode text).
    #[test]
    fn card_detail_round_trips(
        iccid in proptest::option::of(".*"),
        apn in proptest::option::of(".*"),
        use_flow in proptest::option::of(-1e15f64..1e15),
        total in proptest::option::of(any::<u32>()),
        status in proptest::option::of(-1_000_000i64..1_000_000),
    ) {
        let c = CardDetail {
            iccid,
            apn,
            use_flow,
            total_flow: total.map(f64::from),
            card_status: status,
            ..CardDetail::default()
        };
        let back: CardDetail = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        prop_assert_eq!(back, c);
    }

    /// `parse_number` agrees with Rust's float parser on finite values and never yields a
    /// non-finite one; `f64_to_i64` only accepts integral, in-range values.
    #[test]
    fn lenient_number_helpers(s in arb_scalar_string(), f in any::<f64>()) {
        match parse_number(&s) {
            Some(v) => {
                prop_assert!(v.is_finite());
                prop_assert_eq!(Some(v), s.trim().parse::<f64>().ok());
            }
            None => prop_assert!(s.trim().parse::<f64>().map_or(true, |v| !v.is_finite())),
        }
        if let Some(i) = f64_to_i64(f) {
            prop_assert_eq!(i as f64, f);
        }
    }

    /// `Retry-After` from a hostile header: never panics, never more than an hour.
    #[test]
    fn retry_after_is_bounded(s in prop_oneof![".*", "[0-9]{1,25}", "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} GMT"]) {
        if let Some(d) = parse_retry_after(&s) {
            prop_assert!(d <= std::time::Duration::from_secs(3600));
        }
    }

    /// Upstream text that reaches logs and pages has no control characters and a bounded length.
    #[test]
    fn clean_text_is_safe(s in ".*", ctl in "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]{0,5}") {
        let input = format!("{s}{ctl}{s}");
        let out = clean_text(&input);
        prop_assert!(!out.chars().any(char::is_control));
        prop_assert!(out.chars().count() <= 201);
        let e = ApiError::Api { status: 200, code: Some(1), message: Some(out.clone()), trace_id: Some(out) };
        prop_assert!(!e.to_string().contains('\n'));
    }

    /// `Endpoint::from_path` accepts exactly the eight paths.
    #[test]
    fn endpoint_from_path(s in "(/api/v1/)?[a-zA-Z/]{0,30}") {
        if let Some(e) = Endpoint::from_path(&s) {
            prop_assert_eq!(e.path(), s.as_str());
        }
    }
}

/// Deep nesting must be refused by the JSON parser's recursion limit, not overflow the stack.
#[test]
fn deeply_nested_body_is_an_error_not_a_crash() {
    for open in ["[", "{\"data\":"] {
        let body = format!("{{\"code\":0,\"data\":{}", open.repeat(100_000));
        decode_everything(body.as_bytes());
        assert!(serde_json::from_str::<Envelope<PoolDetail>>(&body).is_err());
    }
    // nested inside a lenient field (list of status counts)
    let body = format!(
        "{{\"code\":0,\"data\":{{\"bindCardStatusCount\":{}}}}}",
        "[".repeat(50_000)
    );
    assert!(serde_json::from_str::<Envelope<PoolDetail>>(&body).is_err());
}

/// Regression (found by `card_detail_round_trips`): without serde_json's `float_roundtrip`
/// feature its best-effort float parser read `-997440370133586.5` (exactly representable) as
/// `-997440370133586.375`, one ULP off, while the same number as a string was exact.
#[test]
fn exact_floats_decode_exactly() {
    for v in [
        -997440370133586.5f64,
        123456789.12345679,
        0.1,
        4503599627370495.5,
    ] {
        let c: CardDetail = serde_json::from_str(&format!("{{\"useFlow\":{v:?}}}")).unwrap();
        assert_eq!(c.use_flow, Some(v));
        let c: CardDetail = serde_json::from_str(&format!("{{\"useFlow\":\"{v:?}\"}}")).unwrap();
        assert_eq!(c.use_flow, Some(v));
    }
}
