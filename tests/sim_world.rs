//! The simulator's world over HTTP: usage that grows with the world clock and adds up, the
//! special pools, network operations reflected in pool counts, named targets, latency, the
//! error-rate mix, counters (also as JSON on `/-/counters`), a large world under many requests,
//! and shutdown.

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use futures::StreamExt;
use secrecy::SecretString;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{
    ApiError, Client, ClientOptions, Endpoint, HmacSha256Signer, PoolType, Query, RetryPolicy,
    Subject,
};
use tibiot_sim::{SimHandle, SimOptions};
use tokio::time::Instant;

async fn sim(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

fn client(sim: &SimHandle) -> Client {
    let mut o = ClientOptions::new(
        sim.base_url(),
        Arc::new(HmacSha256Signer::new(
            sim.app_key(),
            SecretString::from(sim.app_secret().to_string()),
        )),
    );
    o.retry = RetryPolicy::none();
    Client::new(o).unwrap()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn usage_grows_with_the_world_clock_and_adds_up() {
    let sim = sim(SimOptions::default()).await;
    let c = client(&sim);
    // 2026-07-20 10:00 on the API calendar
    sim.freeze_clock(Some(Utc.with_ymd_and_hms(2026, 7, 20, 2, 0, 0).unwrap()));
    let today = sim.today();
    for pool in sim.pools() {
        let before = c.get(Query::pool_detail(&pool), deadline()).await.unwrap();
        sim.advance_clock(ChronoDuration::hours(3));
        let after = c.get(Query::pool_detail(&pool), deadline()).await.unwrap();
        sim.advance_clock(ChronoDuration::hours(-3));
        assert!(
            after.use_flow.unwrap() > before.use_flow.unwrap(),
            "{pool}: {before:?} → {after:?}"
        );
        // this month's day usages (over HTTP) add up to the month usage
        let month = Month::of(today);
        let mut sum = 0.0;
        for d in month.days().filter(|d| *d <= today) {
            let u = c
                .get(
                    Query::day_usage(Subject::Pool, &pool, &format_day(d)),
                    deadline(),
                )
                .await
                .unwrap();
            sum += u.unwrap();
        }
        let m = c
            .get(
                Query::month_usage(Subject::Pool, &pool, &month.to_string()),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(Some(sum), m, "{pool}");
        // a monthly cycle's useFlow is this month's usage
        if before.billing_cycle == Some(1) {
            assert_eq!(before.use_flow, m);
        }
    }
    // cards: useMonthFlow is this month's usage
    for iccid in sim.cards().iter().take(10) {
        let d = c.get(Query::card_detail(iccid), deadline()).await.unwrap();
        let m = c
            .get(
                Query::month_usage(Subject::Card, iccid, "2026-07"),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(d.use_month_flow, m);
        assert!(d.use_flow.unwrap() >= d.use_month_flow.unwrap());
    }
}

#[tokio::test]
async fn special_pools_in_a_small_world() {
    let sim = sim(SimOptions {
        pools: 4,
        cards: 7,
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let mut details = Vec::new();
    for p in sim.pools() {
        details.push(c.get(Query::pool_detail(&p), deadline()).await.unwrap());
    }
    let types: Vec<i64> = details.iter().map(|d| d.pool_type.unwrap()).collect();
    assert_eq!(
        types,
        [
            PoolType::User.code(),
            PoolType::UsageBilled.code(),
            PoolType::UnifiedPay.code(),
            PoolType::User.code()
        ]
    );
    let hot = &details[0];
    let ratio = hot.use_flow.unwrap() / hot.total_flow.unwrap();
    assert!(ratio > 0.9 && ratio < 1.0, "{ratio}");
    assert_eq!(details[1].total_flow, None);
    assert!(details[2].start_time.is_some() && details[2].end_time.is_some());
    assert_eq!(details[3].upool_status, Some(2));
    for d in &details {
        let counted: f64 = d
            .bind_card_status_count
            .iter()
            .map(|s| s.total.unwrap())
            .sum();
        assert_eq!(Some(counted), d.total_card);
        let pkg = d.package_info.as_ref().unwrap();
        assert!(pkg.channel_name.is_some() && pkg.client_flow_package_name.is_some());
        assert!(!pkg.epi_configs.is_empty());
        assert!(d.raw_add_time.as_deref().unwrap().len() == 19);
    }
    let mut statuses = HashSet::new();
    let mut methods = HashSet::new();
    for i in sim.cards() {
        let d = c.get(Query::card_detail(&i), deadline()).await.unwrap();
        statuses.insert(d.card_status.unwrap());
        methods.insert(d.billing_method.unwrap());
        assert_eq!(d.total_flow.is_none(), d.billing_method == Some(2));
    }
    assert_eq!(statuses.len(), 7);
    assert_eq!(methods.len(), 4);
}

#[tokio::test]
async fn network_operation_changes_pool_counts() {
    let sim = sim(SimOptions {
        batch_step: Duration::from_millis(50),
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let iccid = sim.cards()[0].clone(); // normal, bound to POOL-0001
    let count = |d: &tibiot_api::PoolDetail, status: i64| {
        d.bind_card_status_count
            .iter()
            .find(|s| s.card_status == Some(status))
            .and_then(|s| s.total)
            .unwrap_or(0.0)
    };
    let before = c
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    let r = c
        .card_network(std::slice::from_ref(&iccid), false, deadline())
        .await
        .unwrap();
    let batch = r.batch_code.unwrap();
    let start = std::time::Instant::now();
    while sim.batch_status(&batch).unwrap()[0].operation_card_status != Some(3) {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = c
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    assert_eq!(count(&after, 8), count(&before, 8) - 1.0);
    assert_eq!(count(&after, 4), count(&before, 4) + 1.0);
    assert_eq!(after.total_card, before.total_card);
}

#[tokio::test]
async fn named_targets_latency_and_counters() {
    let sim = sim(SimOptions {
        failing_targets: vec!["POOL-0002".into()],
        latency: Duration::from_millis(150),
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let started = std::time::Instant::now();
    c.get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    for _ in 0..3 {
        let e = c
            .get(Query::pool_detail("POOL-0002"), deadline())
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Http { status: 500, .. }), "{e:?}");
    }
    c.get(Query::day_usage(Subject::Pool, "POOL-0002", ""), deadline())
        .await
        .unwrap_err();
    assert_eq!(sim.requests(Endpoint::PoolDetail), 4);
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, "POOL-0002"), 3);
    assert_eq!(sim.requests_for(Endpoint::PoolDayUsage, "POOL-0002"), 1);
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, "POOL-0003"), 0);
    assert_eq!(sim.total_requests(), 5);
    // The same counters as JSON, for processes outside the test (benchmarks, scripts); the
    // counters route itself is not counted.
    let url = format!("http://{}/-/counters?targets=1", sim.addr());
    let j: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(j["total"], 5);
    assert_eq!(j["endpoints"]["pool_detail"], 4);
    assert_eq!(j["targets"]["pool_detail"]["POOL-0002"][0], 3);
    assert!(
        j["targets"]["pool_detail"]["POOL-0002"][1]
            .as_f64()
            .unwrap()
            > 1.7e9
    );
    let j: serde_json::Value = reqwest::get(url.replace("?targets=1", ""))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(j.get("targets").is_none());
    assert_eq!(sim.total_requests(), 5);
    sim.reset_counters();
    assert_eq!(sim.total_requests(), 0);
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, "POOL-0002"), 0);
}

#[tokio::test]
async fn error_rate_mixes_every_class() {
    let sim = sim(SimOptions {
        error_rate: 1.0,
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let mut classes = HashSet::new();
    for _ in 0..100 {
        let e = c
            .get(Query::pool_detail("POOL-0001"), deadline())
            .await
            .unwrap_err();
        classes.insert(e.outcome());
    }
    use tibiot_api::Outcome;
    for o in [
        Outcome::HttpError,
        Outcome::RateLimited,
        Outcome::ApiError,
        Outcome::DecodeError,
    ] {
        assert!(classes.contains(&o), "{o:?} missing from {classes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_world_answers_many_requests() {
    let sim = sim(SimOptions {
        pools: 200,
        cards: 10_000,
        ..SimOptions::default()
    })
    .await;
    let c = client(&sim);
    let cards = sim.cards();
    assert_eq!(cards.len(), 10_000);
    assert_eq!(sim.pools().len(), 200);
    // Kept modest for the suite's time budget; TIBIOT_SIM_LOAD=N asks for more.
    let n: usize = std::env::var("TIBIOT_SIM_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let started = std::time::Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            let iccid = cards[i % cards.len()].clone();
            async move {
                if i % 2 == 0 {
                    c.get(Query::card_detail(&iccid), deadline()).await.is_ok()
                } else {
                    c.get(
                        Query::pool_detail(&format!("POOL-{:04}", i % 200 + 1)),
                        deadline(),
                    )
                    .await
                    .is_ok()
                }
            }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ok, n);
    assert_eq!(sim.total_requests(), n as u64);
    eprintln!(
        "{n} signed requests in {secs:.2} s: {:.0} requests/s (client and simulator on one host)",
        n as f64 / secs
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = sim(SimOptions::default()).await;
    let c = client(&sim);
    c.get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap();
    sim.shutdown().await;
    let e = c
        .get(Query::pool_detail("POOL-0001"), deadline())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transport(_)), "{e:?}");
}
