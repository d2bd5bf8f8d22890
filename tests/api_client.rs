//! The API client against the embedded simulator over real HTTP: every endpoint decodes, the
//! values are the simulator's, and each failure class arrives as its own `ApiError` variant.

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tibiot_exporter::api::{
    ApiError, CardStatus, Client, ClientOptions, Endpoint, HmacSha256Signer, NoSigner,
    OperationState, RetryPolicy,
};
use tibiot_exporter::calendar::{Month, format_day};
use tibiot_exporter::sim::{Fault, FaultRule, SimHandle, SimOptions};
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
        let d = c.pool_detail(&code, deadline()).await.unwrap();
        assert_eq!(Some(d.clone()), sim.pool_detail(&code));
        assert_eq!(d.upool_code.as_deref(), Some(code.as_str()));
        let m = c
            .pool_month_usage(&code, &month.to_string(), deadline())
            .await
            .unwrap();
        assert_eq!(
            m.use_flow_kb,
            sim.pool_month_usage_kb(&code, month).map(|v| v as f64)
        );
        assert_eq!(m.month.as_deref(), Some("2026-06"));
        let day = c
            .pool_day_usage(&code, &format_day(today), deadline())
            .await
            .unwrap();
        assert_eq!(
            day.use_flow_kb,
            sim.pool_day_usage_kb(&code, today).map(|v| v as f64)
        );
        assert_eq!(day.pool_code.as_deref(), Some(code.as_str()));
    }
    // the first pool's name survives Chinese text, quotes and a backslash
    let p1 = c.pool_detail("POOL-0001", deadline()).await.unwrap();
    assert_eq!(p1.upool_name.as_deref(), Some("华东 \"主\" 池 \\ A"));

    for iccid in sim.cards().iter().take(12) {
        let d = c.card_detail(iccid, deadline()).await.unwrap();
        assert_eq!(Some(d.clone()), sim.card_detail(iccid));
        let m = c
            .card_month_usage(iccid, "2026-01", deadline())
            .await
            .unwrap();
        assert_eq!(
            m.use_flow_kb,
            sim.card_month_usage_kb(iccid, Month::parse("2026-01").unwrap())
                .map(|v| v as f64)
        );
        let day = c
            .card_day_usage(iccid, "2026-05-20", deadline())
            .await
            .unwrap();
        assert_eq!(day.day.as_deref(), Some("2026-05-20"));
        assert_eq!(day.iccid.as_deref(), Some(iccid.as_str()));
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
    let items = c.batch_status(&batch, deadline()).await.unwrap();
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
        batch_step: Duration::from_millis(100),
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
        let items = c.batch_status(&batch, deadline()).await.unwrap();
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
    assert!(seen.contains(&2), "running was observed: {seen:?}");
    let by_iccid = |i: &str| {
        final_states
            .iter()
            .find(|s| s.iccid.as_deref() == Some(i))
            .and_then(|s| s.operation_card_status)
    };
    assert_eq!(by_iccid(&normal), Some(OperationState::Done.code()));
    assert_eq!(by_iccid(&abnormal), Some(OperationState::Failed.code()));
    let d = c.card_detail(&normal, deadline()).await.unwrap();
    assert_eq!(d.card_status, Some(CardStatus::Shutdown.code()));
    let d = c.card_detail(&abnormal, deadline()).await.unwrap();
    assert_eq!(d.card_status, Some(CardStatus::Abnormal.code()));
    // and back on
    let r = c
        .card_network(std::slice::from_ref(&normal), true, deadline())
        .await
        .unwrap();
    let batch = r.batch_code.unwrap();
    loop {
        let items = c.batch_status(&batch, deadline()).await.unwrap();
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
    let e = c.batch_status("BATCH-NOPE", deadline()).await.unwrap_err();
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
    let d = c.pool_detail("POOL-0002", deadline()).await.unwrap();
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
        let e = c.pool_detail("POOL-0003", deadline()).await.unwrap_err();
        assert!(check(&e), "{fault:?} gave {e:?}");
        // other targets are unaffected
        c.pool_detail("POOL-0004", deadline()).await.unwrap();
        sim.clear_faults();
    }
    c.pool_detail("POOL-0003", deadline()).await.unwrap();
}
