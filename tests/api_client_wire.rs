//! Wire-level tests: signature verification of the simulator probed with hand-made requests
//! (reqwest directly: replayed nonces, skewed timestamps, tampered queries and bodies), the
//! simulator's HTTP answers, and the client's lenient decoding of vendor-style fixture bodies
//! served over real HTTP by a tiny upstream stand-in.

use axum::Router;
use axum::routing::{get, post};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tibiot_api::sign::SignRequest;
use tibiot_api::{ApiError, Client, ClientOptions, HmacSha256Signer, NoSigner, Query, Subject};
use tibiot_sim::{SimHandle, SimOptions};
use tokio::time::Instant;

async fn sim(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// A hand-made request: what is signed can differ from what is sent.
struct Raw<'a> {
    method: &'a str,
    signed_path: &'a str,
    sent_path: &'a str,
    signed_query: Vec<(String, String)>,
    sent_query: &'a str,
    signed_body: &'a [u8],
    sent_body: &'a [u8],
    secret: &'a str,
    timestamp: u128,
    nonce: String,
    drop_header: Option<&'a str>,
}

impl<'a> Raw<'a> {
    fn get(path: &'a str, query: &[(&str, &str)], sent_query: &'a str) -> Self {
        Raw {
            method: "GET",
            signed_path: path,
            sent_path: path,
            signed_query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sent_query,
            signed_body: b"",
            sent_body: b"",
            secret: "s",
            timestamp: now_ms(),
            nonce: tibiot_api::sign::new_nonce(),
            drop_header: None,
        }
    }

    fn post(path: &'a str, body: &'a [u8]) -> Self {
        Raw {
            method: "POST",
            signed_body: body,
            sent_body: body,
            ..Raw::get(path, &[], "")
        }
    }

    async fn send(&self, sim: &SimHandle) -> (u16, Value) {
        let signer = HmacSha256Signer::new(sim.app_key(), SecretString::from(self.secret));
        let headers = signer.headers_at(
            &SignRequest {
                method: self.method,
                path: self.signed_path,
                query: &self.signed_query,
                body: self.signed_body,
            },
            self.timestamp,
            &self.nonce,
        );
        let mut url = format!("http://{}{}", sim.addr(), self.sent_path);
        if !self.sent_query.is_empty() {
            url = format!("{url}?{}", self.sent_query);
        }
        // reqwest's TLS takes the process's rustls provider
        tibiot_api::client::install_crypto_provider();
        // reqwest's TLS takes the process's rustls provider
        tibiot_api::client::install_crypto_provider();
        let http = reqwest::Client::new();
        let mut req = if self.method == "POST" {
            http.post(url)
                .header("content-type", "application/json")
                .body(self.sent_body.to_vec())
        } else {
            http.get(url)
        };
        for (name, value) in headers {
            if Some(name) != self.drop_header {
                // header names are case-insensitive: send them in the contract's spelling
                req = req.header(name.to_ascii_uppercase(), value);
            }
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        (status, body)
    }
}

fn keyed() -> SimOptions {
    SimOptions {
        app_key: Some("k".into()),
        app_secret: Some("s".into()),
        ..SimOptions::default()
    }
}

const DETAIL: &str = "/api/v1/pool/detail";

#[tokio::test]
async fn signature_verification() {
    let sim = sim(keyed()).await;
    let ok = |(status, body): (u16, Value)| {
        assert_eq!(status, 200);
        assert_eq!(body["code"], 200, "{body}");
    };
    let rejected = |(status, body): (u16, Value), needle: &str| {
        assert_eq!(status, 200, "business errors are HTTP 200");
        assert_eq!(body["code"], 401, "{body}");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    };
    let q = [("poolCode", "POOL-0001")];
    ok(Raw::get(DETAIL, &q, "poolCode=POOL-0001").send(&sim).await);

    // a reused nonce
    let first = Raw::get(DETAIL, &q, "poolCode=POOL-0001");
    ok(first.send(&sim).await);
    rejected(first.send(&sim).await, "nonce");

    // timestamps more than 5 minutes off, either way; 4 minutes is fine
    for (offset, good) in [
        (-6 * 60_000i128, false),
        (6 * 60_000, false),
        (-4 * 60_000, true),
    ] {
        let mut r = Raw::get(DETAIL, &q, "poolCode=POOL-0001");
        r.timestamp = (now_ms() as i128 + offset) as u128;
        if good {
            ok(r.send(&sim).await);
        } else {
            rejected(r.send(&sim).await, "timestamp");
        }
    }

    // wrong secret, tampered query, path and body
    let mut r = Raw::get(DETAIL, &q, "poolCode=POOL-0001");
    r.secret = "wrong";
    rejected(r.send(&sim).await, "signature");
    rejected(
        Raw::get(DETAIL, &q, "poolCode=POOL-0002").send(&sim).await,
        "signature",
    );
    let mut r = Raw::get(DETAIL, &q, "poolCode=POOL-0001");
    r.signed_path = "/api/v1/card/detail";
    rejected(r.send(&sim).await, "signature");
    let iccid = sim.cards()[0].clone();
    let body = format!(r#"{{"iccids":["{iccid}"],"switchOn":true}}"#);
    let other = format!(r#"{{"iccids":["{iccid}"],"switchOn":false}}"#);
    let path = "/api/v1/card/operation/network";
    let mut r = Raw::post(path, body.as_bytes());
    r.sent_body = other.as_bytes();
    rejected(r.send(&sim).await, "signature");
    ok(Raw::post(path, body.as_bytes()).send(&sim).await);

    // each header is required
    for h in [
        "x-tibiot-appkey",
        "x-tibiot-timestamp",
        "x-tibiot-nonce",
        "x-tibiot-signature",
    ] {
        let mut r = Raw::get(DETAIL, &q, "poolCode=POOL-0001");
        r.drop_header = Some(h);
        rejected(r.send(&sim).await, "missing header");
    }

    // the canonical query: decoded pairs, re-encoded per RFC 3986 and sorted
    let q2 = [("queryDay", ""), ("poolCode", "池 A+/")];
    let (status, body) = Raw::get(
        "/api/v1/pool/getPoolDayUsage",
        &q2,
        "queryDay=&poolCode=%E6%B1%A0%20A%2B%2F",
    )
    .send(&sim)
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["code"], 404,
        "signature accepted, pool unknown: {body}"
    );
    assert!(body["message"].as_str().unwrap().contains("池 A+/"));
}

#[tokio::test]
async fn signature_covers_the_path_prefix() {
    let sim = sim(SimOptions {
        path_prefix: "/open/tibiot".into(),
        ..keyed()
    })
    .await;
    assert!(sim.base_url().ends_with("/open/tibiot"));
    let c = Client::new(ClientOptions::new(
        sim.base_url(),
        Arc::new(HmacSha256Signer::new("k", SecretString::from("s"))),
    ))
    .unwrap();
    c.get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    // signed over the path without its prefix: rejected
    let q = [("poolCode", "POOL-0001")];
    let mut r = Raw::get("/open/tibiot/api/v1/pool/detail", &q, "poolCode=POOL-0001");
    r.signed_path = DETAIL;
    let (_, body) = r.send(&sim).await;
    assert_eq!(body["code"], 401);
    // outside the prefix there is nothing
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    let resp = reqwest::get(format!("http://{}{DETAIL}?poolCode=POOL-0001", sim.addr()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn simulator_http_answers() {
    let sim = sim(SimOptions {
        auth: false,
        ..SimOptions::default()
    })
    .await;
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = format!("http://{}", sim.addr());
    // trace ids are unique
    let mut traces = HashSet::new();
    for _ in 0..20 {
        let v: Value = http
            .get(format!("{base}{DETAIL}?poolCode=POOL-0001"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], 200);
        assert_eq!(v["message"], "success");
        assert!(traces.insert(v["traceId"].as_str().unwrap().to_string()));
    }
    // unknown path, wrong method
    let r = http
        .get(format!("{base}/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http.post(format!("{base}{DETAIL}")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // network operation validation
    let path = format!("{base}/api/v1/card/operation/network");
    let cards = sim.cards();
    let eleven: Vec<&String> = cards.iter().take(11).collect();
    for (body, needle) in [
        (
            serde_json::json!({"iccids": eleven, "switchOn": true}),
            "at most 10",
        ),
        (serde_json::json!({"iccids": [], "switchOn": true}), "empty"),
        (serde_json::json!({"iccids": [cards[0]]}), "switchOn"),
        (serde_json::json!({"switchOn": true}), "iccids"),
    ] {
        let v: Value = http
            .post(&path)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let v: Value = http
        .post(&path)
        .body("not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 400);
    // a duplicate ICCID is rejected once, the card accepted once
    let v: Value = http
        .post(&path)
        .json(&serde_json::json!({"iccids": [cards[0], cards[0]], "switchOn": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["successCount"], 1, "{v}");
    assert_eq!(v["data"]["errorInfo"].as_array().unwrap().len(), 1);
    // KB values are integers, like the vendor's
    let v: Value = http
        .get(format!("{base}{DETAIL}?poolCode=POOL-0001"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"]["useFlow"].is_u64(), "{v}");
    assert!(v["data"]["totalFlow"].is_u64(), "{v}");
}

// ---- lenient decoding of vendor-style bodies ----

const POOL_FIXTURE: &str = r#"{"code":"200","message":null,"traceId":987654321,"extra":[1,2],"data":{
  "upoolCode":"P-1","upoolName":"华南 \"备用\" 池 \\ B\n第二行","enUpoolName":null,"poolType":"3",
  "useFlow":1234.0,"totalFlow":"2048","billingCycle":"12","totalCard":7.0,
  "rawAddTime":"2025-01-02 03:04:05","unknownField":{"nested":true},
  "bindCardStatusCount":[{"cardStatus":"8","total":"5"},{"cardStatus":4,"total":2.0},"junk",null,{"cardStatus":77}],
  "packageInfo":{"flowPackageType":3,"clientFlowPackageName":"统付","channelName":null,
    "epiConfigs":[{"epiConfigCode":1,"standardCharge":"12.50","realFenStandardCharge":1250,"unit":"GB"},7]},
  "startTime":"2025-01-01","endTime":"2025-12-31","upoolStatus":1.0}}"#;

const CARD_FIXTURE: &str = r#"{"code":0,"traceId":"t","data":{"iccid":8986000000000000001,
  "imei":null,"imsi":"460040000000001","msisdn":1064000000001,"totalFlow":null,
  "useMonthFlow":"1.5e3","useFlow":"  42 ","billingMethod":"2","apn":"cmiot","cardStatus":"99",
  "surprise":"field"}}"#;

const BATCH_FIXTURE: &str = r#"{"code":200,"traceId":"t","data":[
  {"operationCardStatus":"3","iccid":"A","msisdn":null},{"operationCardStatus":4.0,"iccid":"B"},{"operationCardStatus":1,"iccid":89860000000000000001},
  "junk",{"operationCardStatus":{"x":1},"iccid":"C"}]}"#;

const NETWORK_FIXTURE: &str = r#"{"code":200,"traceId":"t","data":{"successCount":"2",
  "batchCode":12345,"errorInfo":[{"iccid":"X","infoMessage":"已销户 \"liquidated\""},null]}}"#;

const MONTH_FIXTURE: &str =
    r#"{"code":200,"data":{"month":"2025-04","poolCode":"P-1","useFlowKb":"123.0"}}"#;

const DAY_FIXTURE: &str =
    r#"{"code":200,"data":{"day":"2025-04-01","iccid":"A","useFlowKb":null,"more":[]}}"#;

async fn fixture_server() -> String {
    let body = |s: &'static str| move || async move { ([("content-type", "application/json")], s) };
    let app = Router::new()
        .route("/api/v1/pool/detail", get(body(POOL_FIXTURE)))
        .route("/api/v1/card/detail", get(body(CARD_FIXTURE)))
        .route(
            "/api/v1/operation/batch/query/status",
            get(body(BATCH_FIXTURE)),
        )
        .route(
            "/api/v1/card/operation/network",
            post(body(NETWORK_FIXTURE)),
        )
        .route("/api/v1/pool/getPoolMonthUsage", get(body(MONTH_FIXTURE)))
        .route("/api/v1/card/getCardDayUsage", get(body(DAY_FIXTURE)))
        .route(
            "/api/v1/card/getCardMonthUsage",
            get(body(r#"{"code":200,"traceId":"t","data":null}"#)),
        )
        .route(
            "/api/v1/pool/getPoolDayUsage",
            get(body(
                r#"{"code":"7","message":"custom","data":{"useFlowKb":1}}"#,
            )),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn lenient_decoding_of_fixtures_over_http() {
    let base = fixture_server().await;
    let c = Client::new(ClientOptions::new(&base, Arc::new(NoSigner))).unwrap();

    let p = c.get(Query::pool_detail("P-1"), deadline()).await.unwrap();
    assert_eq!(
        p.upool_name.as_deref(),
        Some("华南 \"备用\" 池 \\ B\n第二行")
    );
    assert_eq!(p.en_upool_name, None);
    assert_eq!(p.pool_type, Some(3));
    assert_eq!(p.use_flow, Some(1234.0));
    assert_eq!(p.total_flow, Some(2048.0));
    assert_eq!(p.billing_cycle, Some(12));
    assert_eq!(p.total_card, Some(7.0));
    assert_eq!(p.upool_status, Some(1));
    let counts: Vec<(Option<i64>, Option<f64>)> = p
        .bind_card_status_count
        .iter()
        .map(|c| (c.card_status, c.total))
        .collect();
    assert_eq!(
        counts,
        [(Some(8), Some(5.0)), (Some(4), Some(2.0)), (Some(77), None)]
    );
    let pkg = p.package_info.unwrap();
    assert_eq!(pkg.channel_name, None);
    assert_eq!(pkg.epi_configs.len(), 1);
    assert_eq!(pkg.epi_configs[0].epi_config_code.as_deref(), Some("1"));
    assert_eq!(pkg.epi_configs[0].standard_charge, Some(12.5));

    let d = c.get(Query::card_detail("A"), deadline()).await.unwrap();
    // a 19-digit ICCID sent as a number keeps every digit
    assert_eq!(d.iccid.as_deref(), Some("8986000000000000001"));
    assert_eq!(d.msisdn.as_deref(), Some("1064000000001"));
    assert_eq!(d.imei, None);
    assert_eq!(d.total_flow, None);
    assert_eq!(d.use_month_flow, Some(1500.0));
    assert_eq!(d.use_flow, Some(42.0));
    assert_eq!(d.billing_method, Some(2));
    assert_eq!(d.card_status, Some(99));

    let b = c.get(Query::batch_status("X"), deadline()).await.unwrap();
    let states: Vec<(Option<&str>, Option<i64>)> = b
        .iter()
        .map(|i| (i.iccid.as_deref(), i.operation_card_status))
        .collect();
    assert_eq!(
        states,
        [
            (Some("A"), Some(3)),
            (Some("B"), Some(4)),
            // 20 digits as a JSON number cannot be exact: absent, never a wrong ICCID
            (None, Some(1)),
            (Some("C"), None)
        ]
    );

    let n = c
        .card_network(&["X".to_string()], false, deadline())
        .await
        .unwrap();
    assert_eq!(n.success_count, Some(2.0));
    assert_eq!(n.batch_code.as_deref(), Some("12345"));
    assert_eq!(n.error_info.len(), 1);
    assert_eq!(
        n.error_info[0].info_message.as_deref(),
        Some("已销户 \"liquidated\"")
    );

    let m = c
        .get(
            Query::month_usage(Subject::Pool, "P-1", "2025-04"),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(m, Some(123.0));
    let day = c
        .get(
            Query::day_usage(Subject::Card, "A", "2025-04-01"),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(day, None);

    // `data: null` where an object is needed: a decode error
    let e = c
        .get(
            Query::month_usage(Subject::Card, "A", "2025-04"),
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Decode(_)), "{e:?}");
    // a code outside the success codes is an API error; with it listed, a success
    let e = c
        .get(
            Query::day_usage(Subject::Pool, "P-1", "2025-04-01"),
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Api { code: Some(7), .. }), "{e:?}");
    let mut o = ClientOptions::new(&base, Arc::new(NoSigner));
    o.success_codes = vec![7];
    let c7 = Client::new(o).unwrap();
    let d = c7
        .get(
            Query::day_usage(Subject::Pool, "P-1", "2025-04-01"),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(d, Some(1.0));
}
