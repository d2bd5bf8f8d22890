//! The API client against the embedded simulator over real HTTP: every endpoint decodes, the
//! values are the simulator's, and each failure class arrives as its own `ApiError` variant.

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{
    ApiError, CardStatus, Client, ClientOptions, Deadline, Endpoint, Gate, HmacSha256Signer,
    NoSigner, OperationState, Query, RetryPolicy, Subject,
};
use tibiot_sim::{Fault, FaultRule, SimHandle, SimOptions};
use tokio::time::Instant;

async fn sim(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

fn options(sim: &SimHandle) -> ClientOptions {
    let signer = HmacSha256Signer::new(
        sim.app_key(),
        SecretString::from(sim.app_secret().to_string()),
    );
    let mut o = ClientOptions::new(sim.base_url(), Arc::new(signer));
    o.retry = RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    };
    o
}

fn client(sim: &SimHandle) -> Client {
    Client::new(options(sim)).unwrap()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test]
async fn every_endpoint_decodes_with_the_simulators_values() {
    let sim = sim(SimOptions::default()).await;
    sim.freeze_clock(Some(Utc.with_ymd_and_hms(2026, 6, 15, 4, 30, 0).unwrap()));
    let c = client(&sim);
    let today = sim.today();
    assert_eq!(format_day(today), "2026-06-15");
    let month = Month::of(today);

    for code in sim.pools() {
        let d = c.get(Query::pool_detail(&code), deadline()).await.unwrap();
        assert_eq!(Some(d.clone()), sim.pool_detail(&code));
        assert_eq!(d.upool_code.as_deref(), Some(code.as_str()));
        let m = c
            .get(
                Query::month_usage(Subject::Pool, &code, &month.to_string()),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(m, sim.pool_month_usage_kb(&code, month).map(|v| v as f64));
        let day = c
            .get(
                Query::day_usage(Subject::Pool, &code, &format_day(today)),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(day, sim.pool_day_usage_kb(&code, today).map(|v| v as f64));
    }
    // the first pool's name survives Chinese text, quotes and a backslash
    let p1 = c
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    assert_eq!(p1.upool_name.as_deref(), Some("华东 \"主\" 池 \\ A"));

    for iccid in sim.cards().iter().take(12) {
        let d = c.get(Query::card_detail(iccid), deadline()).await.unwrap();
        assert_eq!(Some(d.clone()), sim.card_detail(iccid));
        let m = c
            .get(
                Query::month_usage(Subject::Card, iccid, "2026-01"),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(
            m,
            sim.card_month_usage_kb(iccid, Month::parse("2026-01").unwrap())
                .map(|v| v as f64)
        );
        let day = c
            .get(
                Query::day_usage(Subject::Card, iccid, "2026-05-20"),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(
            day,
            sim.card_day_usage_kb(
                iccid,
                tibiot_api::calendar::parse_day("2026-05-20").unwrap()
            )
            .map(|v| v as f64)
        );
    }

    // network operation + batch status
    let cards = sim.cards();
    let normal = &cards[0];
    let r = c
        .card_network(std::slice::from_ref(normal), false, deadline())
        .await
        .unwrap();
    assert_eq!(r.success_count, Some(1.0));
    let batch = r.batch_code.expect("batch code");
    let items = c
        .get(Query::batch_status(&batch), deadline())
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].iccid.as_deref(), Some(normal.as_str()));
    assert!(items[0].operation_card_status.is_some());
    for e in Endpoint::ALL {
        assert!(sim.requests(e) > 0, "{e:?} was called");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn network_operation_progresses_to_done_and_failed() {
    let sim = sim(SimOptions {
        batch_step: Duration::from_millis(250),
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let cards = sim.cards();
    let normal = cards[0].clone(); // status 8
    let liquidation = cards[5].clone(); // 18: rejected up front
    let abnormal = cards[6].clone(); // 99: fails in the batch
    let unknown = "89860000000000000000".to_string();
    assert_eq!(
        sim.card_detail(&normal).unwrap().card_status,
        Some(CardStatus::Normal.code())
    );
    let r = c
        .card_network(
            &[
                normal.clone(),
                liquidation.clone(),
                abnormal.clone(),
                unknown.clone(),
            ],
            false,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(r.success_count, Some(2.0));
    let rejected: Vec<&str> = r
        .error_info
        .iter()
        .filter_map(|e| e.iccid.as_deref())
        .collect();
    assert_eq!(rejected, [liquidation.as_str(), unknown.as_str()]);
    assert!(r.error_info.iter().all(|e| e.info_message.is_some()));
    let batch = r.batch_code.unwrap();
    let start = std::time::Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    let final_states = loop {
        let items = c
            .get(Query::batch_status(&batch), deadline())
            .await
            .unwrap();
        let states: Vec<i64> = items
            .iter()
            .map(|i| i.operation_card_status.unwrap())
            .collect();
        seen.extend(states.iter().copied());
        if states
            .iter()
            .all(|s| OperationState::from_code(*s).unwrap().is_final())
        {
            break items;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "batch never ends"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // the exact schedule is unit-tested in sim::batches; here: not final at once
    assert!(
        seen.contains(&1) || seen.contains(&2),
        "a pending or running state was observed: {seen:?}"
    );
    let by_iccid = |i: &str| {
        final_states
            .iter()
            .find(|s| s.iccid.as_deref() == Some(i))
            .and_then(|s| s.operation_card_status)
    };
    assert_eq!(by_iccid(&normal), Some(OperationState::Done.code()));
    assert_eq!(by_iccid(&abnormal), Some(OperationState::Failed.code()));
    let d = c
        .get(Query::card_detail(&normal), deadline())
        .await
        .unwrap();
    assert_eq!(d.card_status, Some(CardStatus::Shutdown.code()));
    let d = c
        .get(Query::card_detail(&abnormal), deadline())
        .await
        .unwrap();
    assert_eq!(d.card_status, Some(CardStatus::Abnormal.code()));
    // and back on
    let r = c
        .card_network(std::slice::from_ref(&normal), true, deadline())
        .await
        .unwrap();
    let batch = r.batch_code.unwrap();
    loop {
        let items = c
            .get(Query::batch_status(&batch), deadline())
            .await
            .unwrap();
        if items[0].operation_card_status == Some(3) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sim.card_detail(&normal).unwrap().card_status,
        Some(CardStatus::Normal.code())
    );
    // unknown batch: business error
    let e = c
        .get(Query::batch_status("BATCH-NOPE"), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Api {
                code: Some(404),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn unsigned_client_against_auth_none() {
    let sim = sim(SimOptions {
        auth: false,
        ..SimOptions::default()
    })
    .await;
    let c = Client::new(ClientOptions::new(sim.base_url(), Arc::new(NoSigner))).unwrap();
    let d = c
        .get(Query::pool_detail("POOL-0002"), deadline())
        .await
        .unwrap();
    assert_eq!(d.pool_type, Some(2));
    assert_eq!(d.total_flow, None);
}

#[tokio::test]
async fn faults_arrive_as_their_error_class() {
    let sim = sim(SimOptions::default()).await;
    let mut o = options(&sim);
    o.retry = RetryPolicy::none();
    let c = Client::new(o).unwrap();
    let ep = Endpoint::PoolDetail;
    type Check = fn(&ApiError) -> bool;
    let cases: Vec<(Fault, Check)> = vec![
        (Fault::Http500, |e| {
            matches!(e, ApiError::Http { status: 500, .. })
        }),
        (
            Fault::RateLimited {
                retry_after_secs: 1,
            },
            |e| matches!(e, ApiError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(1)),
        ),
        (Fault::BusinessError, |e| {
            matches!(
                e,
                ApiError::Api {
                    code: Some(5000),
                    ..
                }
            )
        }),
        (Fault::Malformed, |e| matches!(e, ApiError::Decode(_))),
        (Fault::Truncated, |e| matches!(e, ApiError::Decode(_))),
        (Fault::Oversized, |e| matches!(e, ApiError::Decode(_))),
        (Fault::ConnectionReset, |e| {
            matches!(e, ApiError::Transport(_))
        }),
    ];
    for (fault, check) in cases {
        sim.set_fault(FaultRule::new(fault).target("POOL-0003").endpoint(ep));
        let e = c
            .get(Query::pool_detail("POOL-0003"), deadline())
            .await
            .unwrap_err();
        assert!(check(&e), "{fault:?} gave {e:?}");
        // other targets are unaffected
        c.get(Query::pool_detail("POOL-0004"), deadline())
            .await
            .unwrap();
        sim.clear_faults();
    }
    c.get(Query::pool_detail("POOL-0003"), deadline())
        .await
        .unwrap();
}

#[tokio::test]
async fn business_errors_and_validation() {
    let sim = sim(SimOptions::default()).await;
    sim.freeze_clock(Some(Utc.with_ymd_and_hms(2026, 3, 31, 20, 0, 0).unwrap()));
    // 2026-04-01 04:00 on the API calendar (+08:00)
    assert_eq!(format_day(sim.today()), "2026-04-01");
    let c = client(&sim);
    let iccid = sim.cards()[0].clone();
    let api = |e: ApiError, code: i64, needle: &str| {
        assert!(
            matches!(&e, ApiError::Api { status: 200, code: Some(c), message: Some(m), trace_id: Some(_) }
                if *c == code && m.contains(needle)),
            "expected code {code} with {needle:?}, got {e:?}"
        );
        assert!(!e.is_retryable());
    };
    api(
        c.get(Query::pool_detail("POOL-9999"), deadline())
            .await
            .unwrap_err(),
        404,
        "not found",
    );
    api(
        c.get(Query::card_detail("89860000000000000000"), deadline())
            .await
            .unwrap_err(),
        404,
        "not found",
    );
    api(
        c.get(
            Query::month_usage(Subject::Card, "nope", "2026-04"),
            deadline(),
        )
        .await
        .unwrap_err(),
        404,
        "not found",
    );
    api(
        c.get(Query::pool_detail(""), deadline()).await.unwrap_err(),
        400,
        "poolCode",
    );
    // months: this month and the 11 before it
    for m in ["2026-04", "2025-05"] {
        c.get(
            Query::month_usage(Subject::Pool, "POOL-0001", m),
            deadline(),
        )
        .await
        .unwrap();
        c.get(Query::month_usage(Subject::Card, &iccid, m), deadline())
            .await
            .unwrap();
    }
    for m in ["2025-04", "2026-05", "2020-01"] {
        api(
            c.get(
                Query::month_usage(Subject::Pool, "POOL-0001", m),
                deadline(),
            )
            .await
            .unwrap_err(),
            400,
            "last 12 months",
        );
    }
    for m in ["2026-4", "April", "2026-04-01", ""] {
        let e = c
            .get(Query::month_usage(Subject::Card, &iccid, m), deadline())
            .await
            .unwrap_err();
        assert_eq!(e.api_code(), Some(400), "{m:?}: {e:?}");
    }
    // days: today and the 29 before it
    for d in ["2026-04-01", "2026-03-03"] {
        c.get(Query::day_usage(Subject::Pool, "POOL-0001", d), deadline())
            .await
            .unwrap();
        c.get(Query::day_usage(Subject::Card, &iccid, d), deadline())
            .await
            .unwrap();
    }
    for d in ["2026-03-02", "2026-04-02"] {
        api(
            c.get(Query::day_usage(Subject::Card, &iccid, d), deadline())
                .await
                .unwrap_err(),
            400,
            "last 30 days",
        );
    }
    api(
        c.get(
            Query::day_usage(Subject::Pool, "POOL-0001", "2026/04/01"),
            deadline(),
        )
        .await
        .unwrap_err(),
        400,
        "YYYY-MM-DD",
    );
    // queryDay is optional for pools (today), required for cards
    let d = c
        .get(Query::day_usage(Subject::Pool, "POOL-0001", ""), deadline())
        .await
        .unwrap();
    let today = tibiot_api::calendar::parse_day("2026-04-01").unwrap();
    assert_eq!(
        d,
        sim.pool_day_usage_kb("POOL-0001", today).map(|v| v as f64)
    );
    api(
        c.get(Query::day_usage(Subject::Card, &iccid, ""), deadline())
            .await
            .unwrap_err(),
        400,
        "queryDay",
    );
    // more than 10 ICCIDs: the client refuses before sending
    let many: Vec<String> = sim.cards().into_iter().take(11).collect();
    let before = sim.requests(Endpoint::CardNetwork);
    let e = c.card_network(&many, true, deadline()).await.unwrap_err();
    assert!(matches!(e, ApiError::Invalid(_)), "{e:?}");
    assert_eq!(sim.requests(Endpoint::CardNetwork), before);
}

#[tokio::test]
async fn timeout_and_transport_errors() {
    let sim = sim(SimOptions {
        slow_targets: vec!["POOL-0002".into()],
        slow_delay: Duration::from_secs(30),
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    // a slow named target and a short deadline
    let started = std::time::Instant::now();
    let e = c
        .get(
            Query::pool_detail("POOL-0002"),
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(e, ApiError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(10));
    // a slow fault on a card, through the per-attempt timeout
    let iccid = sim.cards()[0].clone();
    sim.set_fault(FaultRule::new(Fault::Slow(Duration::from_secs(30))).target(iccid.clone()));
    let mut o = options(&sim);
    o.request_timeout = Duration::from_millis(200);
    o.retry = RetryPolicy::none();
    let short = Client::new(o).unwrap();
    assert_eq!(
        short
            .get(Query::card_detail(&iccid), deadline())
            .await
            .unwrap_err(),
        ApiError::Timeout
    );
    // a port that refuses connections: bound, never listening, held for the test so that
    // no other socket can take it meanwhile
    let closed_socket = tokio::net::TcpSocket::new_v4().unwrap();
    closed_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = closed_socket.local_addr().unwrap();
    let mut o = options(&sim);
    o.base_url = format!("http://{closed}");
    o.retry = RetryPolicy::none();
    let nowhere = Client::new(o).unwrap();
    let e = nowhere
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transport(_)), "{e:?}");
    // a connection reset mid-request
    sim.set_fault(FaultRule::new(Fault::ConnectionReset).endpoint(Endpoint::CardMonthUsage));
    let e = short
        .get(
            Query::month_usage(Subject::Card, &sim.cards()[1], "2026-01"),
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transport(_)), "{e:?}");
}

#[tokio::test]
async fn retries_follow_the_policy() {
    let sim = sim(SimOptions::default()).await;
    let c = client(&sim); // 3 attempts
    let ep = Endpoint::PoolDetail;

    // 429 with Retry-After: 1, then success: retried once, after the advertised wait
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 1,
        })
        .target("POOL-0001")
        .times(1),
    );
    let started = std::time::Instant::now();
    c.get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(sim.requests_for(ep, "POOL-0001"), 2);

    // HTTP 500 every time: max_attempts requests, then the Http error
    sim.set_fault(FaultRule::new(Fault::Http500).target("POOL-0002"));
    let e = c
        .get(Query::pool_detail("POOL-0002"), deadline())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(sim.requests_for(ep, "POOL-0002"), 3);

    // a reset connection, then success: retried
    sim.set_fault(
        FaultRule::new(Fault::ConnectionReset)
            .target("POOL-0003")
            .times(1),
    );
    c.get(Query::pool_detail("POOL-0003"), deadline())
        .await
        .unwrap();
    assert_eq!(sim.requests_for(ep, "POOL-0003"), 2);

    // business errors and undecodable answers are not retried
    sim.set_fault(FaultRule::new(Fault::BusinessError).target("POOL-0004"));
    c.get(Query::pool_detail("POOL-0004"), deadline())
        .await
        .unwrap_err();
    assert_eq!(sim.requests_for(ep, "POOL-0004"), 1);
    sim.set_fault(FaultRule::new(Fault::Malformed).target("POOL-0005"));
    c.get(Query::pool_detail("POOL-0005"), deadline())
        .await
        .unwrap_err();
    assert_eq!(sim.requests_for(ep, "POOL-0005"), 1);

    // no retry that would end past the deadline: Retry-After 30 s, deadline 2 s
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 30,
        })
        .target("POOL-0006"),
    );
    let started = std::time::Instant::now();
    let e = c
        .get(
            Query::pool_detail("POOL-0006"),
            Instant::now() + Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::RateLimited { .. }), "{e:?}");
    assert_eq!(sim.requests_for(ep, "POOL-0006"), 1);
    assert!(started.elapsed() < Duration::from_secs(10));

    // the network operation (POST) is never retried
    let iccid = sim.cards()[0].clone();
    for fault in [Fault::Http500, Fault::ConnectionReset] {
        sim.clear_faults();
        sim.reset_counters();
        sim.set_fault(FaultRule::new(fault).endpoint(Endpoint::CardNetwork));
        c.card_network(std::slice::from_ref(&iccid), false, deadline())
            .await
            .unwrap_err();
        assert_eq!(sim.requests(Endpoint::CardNetwork), 1, "{fault:?}");
        assert_eq!(sim.requests_for(Endpoint::CardNetwork, &iccid), 1);
    }
    assert_eq!(sim.total_requests(), 1);
}

#[tokio::test]
async fn response_size_cap() {
    let sim = sim(SimOptions::default()).await;
    // an oversized answer against the default 4 MiB cap
    sim.set_fault(FaultRule::new(Fault::Oversized).target("POOL-0001"));
    let e = client(&sim)
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApiError::Decode(m) if m.contains("larger")),
        "{e:?}"
    );
    // a normal answer against a tiny cap
    let mut o = options(&sim);
    o.max_body_bytes = 256;
    let tiny = Client::new(o).unwrap();
    let e = tiny
        .get(Query::pool_detail("POOL-0002"), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApiError::Decode(m) if m.contains("larger")),
        "{e:?}"
    );
    // and small answers still fit
    tiny.get(Query::day_usage(Subject::Pool, "POOL-0002", ""), deadline())
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error() {
    let sim = sim(SimOptions::default()).await;
    let mut o = options(&sim);
    o.signer = Arc::new(HmacSha256Signer::new(
        sim.app_key(),
        SecretString::from("not-the-secret"),
    ));
    let c = Client::new(o).unwrap();
    let e = c
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert_eq!(e.api_code(), Some(401));
    assert!(e.api_message().unwrap().contains("signature"));
    assert!(!e.to_string().contains("not-the-secret"));
    // unsigned requests are refused too
    let c = Client::new(ClientOptions::new(sim.base_url(), Arc::new(NoSigner))).unwrap();
    let e = c
        .get(Query::card_detail(&sim.cards()[0]), deadline())
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert!(e.api_message().unwrap().contains("missing header"));
}

/// A client whose attempts pass `gate`.
fn gated(sim: &SimHandle, gate: &Arc<Gate>) -> Client {
    let mut o = options(sim);
    o.gate = Some(gate.clone());
    Client::new(o).unwrap()
}

#[tokio::test]
async fn a_retry_backoff_holds_no_slot_and_a_retry_pays_a_rate_token() {
    let sim = sim(SimOptions::default()).await;
    let ep = Endpoint::PoolDetail;

    // One slot, backoffs of 1-2 s. POOL-0001 fails once with HTTP 500; while it backs off,
    // POOL-0002 gets the slot and is answered: it finishes first.
    let one_slot = Arc::new(Gate::new(1, 0));
    let mut o = options(&sim);
    o.gate = Some(one_slot.clone());
    o.retry = RetryPolicy {
        max_attempts: 2,
        base_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(2),
    };
    let c = Client::new(o).unwrap();
    sim.set_fault(FaultRule::new(Fault::Http500).target("POOL-0001").times(1));
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.get(Query::pool_detail("POOL-0001"), deadline()).await }
    });
    while sim.requests_for(ep, "POOL-0001") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.get(Query::pool_detail("POOL-0002"), deadline())
        .await
        .unwrap();
    assert!(
        !slow.is_finished(),
        "POOL-0002 waited for POOL-0001's backoff to end"
    );
    slow.await.unwrap().unwrap();
    assert_eq!(sim.requests_for(ep, "POOL-0001"), 2);

    // One request per second. POOL-0003 fails once with HTTP 500; its retry (after a backoff
    // of at most 50 ms) waits for the next token, a second after the first attempt's.
    let per_second = Arc::new(Gate::new(8, 1));
    let c = gated(&sim, &per_second);
    sim.set_fault(FaultRule::new(Fault::Http500).target("POOL-0003").times(1));
    let started = std::time::Instant::now();
    c.get(Query::pool_detail("POOL-0003"), deadline())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(sim.requests_for(ep, "POOL-0003"), 2);
    assert!(
        took >= Duration::from_millis(900),
        "the retry went out {took:?} after the first attempt, without a rate token"
    );
}

/// A 429 with `Retry-After` pauses the whole account: no request of any target passes the
/// gate before the time the API named; then both are answered.
#[tokio::test]
async fn a_retry_after_pauses_every_request_of_the_gate() {
    let sim = sim(SimOptions::default()).await;
    let ep = Endpoint::PoolDetail;
    let gate = Arc::new(Gate::new(4, 0));
    let c = gated(&sim, &gate);
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 2,
        })
        .target("POOL-0001")
        .times(1),
    );
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.get(Query::pool_detail("POOL-0001"), deadline()).await }
    });
    let until = loop {
        if let Some(u) = gate.paused_until() {
            break u;
        }
        assert!(!first.is_finished(), "no pause was remembered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    c.get(Query::pool_detail("POOL-0002"), deadline())
        .await
        .unwrap();
    assert!(
        Instant::now() >= until,
        "POOL-0002 was answered before the pause ended"
    );
    first.await.unwrap().unwrap();
    assert_eq!(sim.requests_for(ep, "POOL-0001"), 2);
    assert_eq!(sim.requests_for(ep, "POOL-0002"), 1);
}

/// When the deadline ends the retries, the error is the failure that caused them.
#[tokio::test]
async fn the_error_is_the_last_real_failure_not_the_deadline() {
    let sim = sim(SimOptions::default()).await;
    let c = client(&sim);
    // HTTP 500, then a retry that the deadline cuts short
    sim.set_fault(FaultRule::new(Fault::Slow(Duration::from_secs(30))).target("POOL-0001"));
    sim.set_fault(FaultRule::new(Fault::Http500).target("POOL-0001").times(1));
    let e = c
        .get(
            Query::pool_detail("POOL-0001"),
            Instant::now() + Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, "POOL-0001"), 2);
    // HTTP 500, then a retry that cannot get into the gate before the deadline (one request
    // per second: the retry's token comes after the deadline)
    let gate = Arc::new(Gate::new(4, 1));
    let c = gated(&sim, &gate);
    sim.set_fault(FaultRule::new(Fault::Http500).target("POOL-0002").times(1));
    let e = c
        .get(
            Query::pool_detail("POOL-0002"),
            Instant::now() + Duration::from_millis(600),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, "POOL-0002"), 1);
}

#[tokio::test]
async fn a_budget_starts_at_admission_and_a_fixed_deadline_counts_the_queue() {
    let sim = sim(SimOptions::default()).await;
    let ep = Endpoint::PoolDetail;
    let gate = Arc::new(Gate::new(1, 0));
    let c = gated(&sim, &gate);

    // The only slot is taken for 1.5 s. A request with a 1 s budget from admission waits,
    // then succeeds; one with a fixed deadline 1 s away times out unsent.
    let held = gate.admit().await;
    let budget = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(
                Query::pool_detail("POOL-0001"),
                Deadline::AfterAdmission(Duration::from_secs(1)),
            )
            .await
        }
    });
    let fixed = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(
                Query::pool_detail("POOL-0002"),
                Instant::now() + Duration::from_secs(1),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.requests(ep), 0, "a request went past the taken slot");
    drop(held);
    budget.await.unwrap().unwrap();
    assert_eq!(fixed.await.unwrap().unwrap_err(), ApiError::Timeout);
    assert_eq!(sim.requests_for(ep, "POOL-0002"), 0);
}
