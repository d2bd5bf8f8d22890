//! `/metrics` over real HTTP against the real simulator: every family of docs/metrics.md with the
//! simulator's values × 1024, failing and slow targets within the deadline (a slow one pending,
//! not failed), stale handling, shared fetches and the TTL cache, closed history periods
//! fetched once, a remembered `Retry-After`, and a clean `promtool check metrics`.

mod exporter_support;

use exporter_support::*;
use std::time::{Duration, Instant};
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{CardStatus, Endpoint, PoolType};
use tibiot_exporter::kinds::families;
use tibiot_exporter::metrics::Served;
use tibiot_sim::{Fault, FaultRule, SimOptions};

const HISTORY: &str =
    "  history:\n    pool_days: 30\n    pool_months: 12\n    card_days: 3\n    card_months: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_holds_the_simulators_values() {
    let sim = sim(SimOptions::default()).await;
    sim.freeze_clock(None);
    let (pools, cards) = (sim.pools(), sim.cards());
    // A request budget, so that the allowed rate is served (it is absent when unlimited).
    let yaml = config_yaml(&sim, &pools, &cards, HISTORY)
        .replace("requests_per_second: 0", "requests_per_second: 1000");
    let server = Server::start(&yaml, None).await;
    let (status, _) = get(&server.url("/metrics")).await;
    assert_eq!(status, 200);
    // the history arrives right after the first scrape (it does not hold up scrapes)
    let text = settled(&server).await;
    let s = parse(&text);

    // Every family served on /metrics is present (the probe-only ones are not).
    for f in families() {
        let present = s.iter().any(|x| x.name.starts_with(f.name));
        match f.served {
            Served::Probe => assert!(!present, "{} must not be on /metrics", f.name),
            _ => assert!(present, "{} missing from /metrics", f.name),
        }
    }
    assert_eq!(value(&s, "tibiot_up", &[("account", "test")]), Some(1.0));

    let today = sim.today();
    let cal = tibiot_api::calendar::ApiCalendar::default();
    let mut usage_billed = 0;
    for code in &pools {
        let d = sim.pool_detail(code).unwrap();
        let l = [("account", "test"), ("pool", code.as_str())];
        let kb = |v: Option<f64>| v.map(|v| v * 1024.0);
        assert_eq!(
            value(&s, "tibiot_pool_used_bytes", &l),
            kb(d.use_flow),
            "{code}"
        );
        if d.pool_type == Some(PoolType::UsageBilled.code()) {
            usage_billed += 1;
            assert_eq!(value(&s, "tibiot_pool_capacity_bytes", &l), None, "{code}");
        } else {
            assert_eq!(
                value(&s, "tibiot_pool_capacity_bytes", &l),
                kb(d.total_flow)
            );
        }
        assert_eq!(value(&s, "tibiot_pool_cards", &l), d.total_card);
        assert_eq!(
            value(&s, "tibiot_pool_valid", &l),
            d.upool_status.map(|v| (v == 1) as u8 as f64)
        );
        let info = find(&s, "tibiot_pool_info", &l);
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].value, 1.0);
        assert_eq!(
            info[0].labels["name"],
            d.upool_name.clone().unwrap_or_default()
        );
        assert_eq!(
            info[0].labels["name_en"],
            d.en_upool_name.clone().unwrap_or_default()
        );
        assert_eq!(
            info[0].labels["type"],
            d.pool_type
                .map(|t| PoolType::label(t).into_owned())
                .unwrap_or_default()
        );
        for st in &d.bind_card_status_count {
            let label = CardStatus::label(st.card_status.unwrap());
            let with = [l[0], l[1], ("status", &*label)];
            assert_eq!(value(&s, "tibiot_pool_status_cards", &with), st.total);
        }
        if let Some(start) = &d.start_time {
            assert_eq!(
                value(&s, "tibiot_pool_start_timestamp_seconds", &l),
                cal.parse_timestamp(start).map(|t| t as f64)
            );
        }
        // History: the configured windows, values × 1024.
        let days = find(&s, "tibiot_pool_daily_usage_bytes", &l);
        assert_eq!(days.len(), 30, "{code}");
        for day in cal.last_days(today, 30) {
            let date = format_day(day);
            let with = [l[0], l[1], ("date", date.as_str())];
            let expected = sim.pool_day_usage_kb(code, day).unwrap() as f64 * 1024.0;
            assert_eq!(
                value(&s, "tibiot_pool_daily_usage_bytes", &with),
                Some(expected)
            );
        }
        let months = find(&s, "tibiot_pool_monthly_usage_bytes", &l);
        assert_eq!(months.len(), 12, "{code}");
        for m in cal.last_months(today, 12) {
            let month = m.to_string();
            let with = [l[0], l[1], ("month", month.as_str())];
            let expected = sim.pool_month_usage_kb(code, m).unwrap() as f64 * 1024.0;
            assert_eq!(
                value(&s, "tibiot_pool_monthly_usage_bytes", &with),
                Some(expected)
            );
        }
        for kind in ["pool", "pool_history"] {
            let with = [
                ("account", "test"),
                ("kind", kind),
                ("target", code.as_str()),
            ];
            assert_eq!(value(&s, "tibiot_collect_success", &with), Some(1.0));
            assert!(value(&s, "tibiot_collect_last_success_timestamp_seconds", &with).is_some());
        }
    }
    assert!(
        usage_billed > 0,
        "the simulator should have a usage_billed pool"
    );

    let mut usage_cards = 0;
    for iccid in &cards {
        let d = sim.card_detail(iccid).unwrap();
        let l = [("account", "test"), ("iccid", iccid.as_str())];
        let kb = |v: Option<f64>| v.map(|v| v * 1024.0);
        assert_eq!(
            value(&s, "tibiot_card_cycle_usage_bytes", &l),
            kb(d.use_flow)
        );
        assert_eq!(
            value(&s, "tibiot_card_month_usage_bytes", &l),
            kb(d.use_month_flow)
        );
        if d.billing_method == Some(2) {
            usage_cards += 1;
            assert_eq!(value(&s, "tibiot_card_capacity_bytes", &l), None);
        } else {
            assert_eq!(
                value(&s, "tibiot_card_capacity_bytes", &l),
                kb(d.total_flow)
            );
        }
        // A state set: every known status, exactly one at 1, the current one.
        let states = find(&s, "tibiot_card_status", &l);
        let code = d.card_status.unwrap();
        let known = CardStatus::from_code(code).is_some();
        assert_eq!(states.len(), CardStatus::ALL.len() + usize::from(!known));
        let on: Vec<_> = states.iter().filter(|x| x.value == 1.0).collect();
        assert_eq!(on.len(), 1, "{iccid}");
        assert_eq!(on[0].labels["status"], CardStatus::label(code));
        let info = find(&s, "tibiot_card_info", &l);
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels["imsi"], d.imsi.clone().unwrap_or_default());
        assert_eq!(
            info[0].labels["msisdn"],
            d.msisdn.clone().unwrap_or_default()
        );
        assert_eq!(find(&s, "tibiot_card_daily_usage_bytes", &l).len(), 3);
        assert_eq!(find(&s, "tibiot_card_monthly_usage_bytes", &l).len(), 2);
        let day = today.pred_opt().unwrap();
        let date = format_day(day);
        assert_eq!(
            value(
                &s,
                "tibiot_card_daily_usage_bytes",
                &[l[0], l[1], ("date", &date)]
            ),
            Some(sim.card_day_usage_kb(iccid, day).unwrap() as f64 * 1024.0)
        );
        let m = Month::of(today);
        assert_eq!(
            value(
                &s,
                "tibiot_card_monthly_usage_bytes",
                &[l[0], l[1], ("month", &m.to_string())]
            ),
            Some(sim.card_month_usage_kb(iccid, m).unwrap() as f64 * 1024.0)
        );
    }
    assert!(
        usage_cards > 0,
        "the simulator should have a usage-billed card"
    );

    let lint = promtool(&text);
    assert!(lint.is_empty(), "promtool check metrics: {lint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_targets_do_not_fail_the_scrape() {
    let base = sim(SimOptions::default()).await;
    let pools = base.pools();
    let (failing, slow) = (pools[0].clone(), pools[1].clone());
    drop(base);
    let sim = sim(SimOptions {
        failing_targets: vec![failing.clone()],
        slow_targets: vec![slow.clone()],
        slow_delay: Duration::from_secs(20),
        ..SimOptions::default()
    })
    .await;
    let cards = sim.cards()[..5].to_vec();
    let yaml = config_yaml(
        &sim,
        &pools,
        &cards,
        "  timeout: 10s\n  timeout_offset: 500ms\n  concurrency: 64\n  history: {pool_days: 30, pool_months: 12}\n",
    );
    let server = Server::start(&yaml, None).await;
    // Prometheus says its scrape times out after 2 s: the exporter answers within 1.5 s
    // (plus a margin for a busy machine), whatever the slow pool does.
    let scrape = || async {
        let started = Instant::now();
        let r = client()
            .get(server.url("/metrics"))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        (parse(&text), started.elapsed())
    };
    let (_, took) = scrape().await;
    assert!(took < Duration::from_millis(1500 + 1000), "took {took:?}");
    // Every fetch but the slow pool's completes: the failing pool reports its failure, the
    // slow one is still pending (no result yet, counted as pending), the others succeed.
    let settled = |s: &[Sample]| {
        pools.iter().all(|p| {
            let ok = value(
                s,
                "tibiot_collect_success",
                &[("kind", "pool"), ("target", p.as_str())],
            );
            let hist = value(
                s,
                "tibiot_collect_success",
                &[("kind", "pool_history"), ("target", p.as_str())],
            );
            let want = if *p == failing {
                Some(0.0)
            } else if *p == slow {
                None
            } else {
                Some(1.0)
            };
            ok == want && hist == want
        }) && cards
            .iter()
            .all(|c| value(s, "tibiot_collect_success", &[("target", c.as_str())]) == Some(1.0))
    };
    let end = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let (s, _) = scrape().await;
        if settled(&s) {
            break s;
        }
        assert!(
            Instant::now() < end,
            "targets never settled: {:?}",
            find(&s, "tibiot_collect_success", &[])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for p in &pools {
        let used = value(&s, "tibiot_pool_used_bytes", &[("pool", p.as_str())]);
        let days = find(&s, "tibiot_pool_daily_usage_bytes", &[("pool", p.as_str())]).len();
        if *p == failing || *p == slow {
            assert_eq!(used, None, "{p}");
            assert_eq!(days, 0, "{p}");
        } else {
            // The slow and the failing pool do not hold up the others' history.
            assert!(used.is_some(), "{p}");
            assert_eq!(days, 30, "{p}");
        }
    }
    // The slow pool's detail and history are pending, not failed.
    let pending = |kind: &str| {
        value(
            &s,
            "tibiot_collect_pending_targets",
            &[("account", "test"), ("kind", kind)],
        )
    };
    assert!(
        pending("pool").is_some_and(|n| n >= 1.0),
        "{:?}",
        pending("pool")
    );
    assert!(pending("pool_history").is_some_and(|n| n >= 1.0));
    assert_eq!(pending("card"), Some(0.0));
    // The failures are counted by outcome.
    let http_errors = value(
        &s,
        "tibiot_api_requests_total",
        &[("endpoint", "pool_detail"), ("outcome", "http_error")],
    );
    assert!(http_errors.unwrap() >= 1.0);
    assert_eq!(value(&s, "tibiot_up", &[]).map(|v| v <= 1.0), Some(true));
}

/// A pool whose refresh starts failing keeps serving its last good values until they are
/// `stale_after` old, then drops them (the failure stays reported); a later success brings
/// them back. Refreshes run while scrapes keep coming, so the test only scrapes and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pool_keeps_its_values_until_stale_after() {
    let sim = sim(SimOptions::default()).await;
    let pool = sim.pools()[2].clone();
    let stale_after = 6.0;
    let yaml = config_yaml(
        &sim,
        std::slice::from_ref(&pool),
        &[],
        "  pool_ttl: 1s\n  stale_after: 6s\n  timeout: 5s\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    let server = Server::start(&yaml, None).await;
    let l = [("pool", pool.as_str())];
    let ok = [("kind", "pool"), ("target", pool.as_str())];
    let scrape = || async { parse(&get(&server.url("/metrics")).await.1) };
    let s = scrape().await;
    assert!(value(&s, "tibiot_pool_used_bytes", &l).is_some());
    assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0));

    sim.set_fault(FaultRule::new(Fault::BusinessError).target(pool.clone()));
    // The next refresh fails; while the last good value is younger than stale_after it is
    // still served.
    let (mut failed_while_fresh, mut gone) = (false, false);
    let end = Instant::now() + Duration::from_secs(60);
    while !(failed_while_fresh && gone) {
        assert!(
            Instant::now() < end,
            "failed while fresh: {failed_while_fresh}, dropped: {gone}"
        );
        let s = scrape().await;
        if value(&s, "tibiot_collect_success", &ok) == Some(0.0) {
            match value(&s, "tibiot_collect_last_success_timestamp_seconds", &ok) {
                // the value's age as the exporter reports it
                Some(at) if unix_now() - at < stale_after - 1.0 => {
                    assert!(value(&s, "tibiot_pool_used_bytes", &l).is_some());
                    assert!(value(&s, "tibiot_pool_info", &l).is_some());
                    failed_while_fresh = true;
                }
                Some(_) => {}
                None => {
                    // Past stale_after: the values are gone, the failure is still reported.
                    assert_eq!(value(&s, "tibiot_pool_used_bytes", &l), None);
                    assert_eq!(value(&s, "tibiot_pool_info", &l), None);
                    assert!(find(&s, "tibiot_pool_status_cards", &l).is_empty());
                    gone = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Recovery: the next fetch after the fault is cleared serves fresh values.
    sim.clear_faults();
    let back = eventually(Duration::from_secs(60), || async {
        let s = scrape().await;
        value(&s, "tibiot_collect_success", &ok) == Some(1.0)
            && value(&s, "tibiot_pool_used_bytes", &l).is_some()
    })
    .await;
    assert!(back, "the pool never recovered");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_share_fetches_and_the_ttl_prevents_refetching() {
    let sim = sim(SimOptions {
        latency: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .await;
    let (pools, cards) = (sim.pools(), sim.cards());
    let history = "  history:\n    pool_days: 2\n    pool_months: 1\n";
    let yaml = config_yaml(
        &sim,
        &pools,
        &cards,
        &format!("  concurrency: 64\n{history}"),
    );
    let server = Server::start(&yaml, None).await;
    sim.reset_counters();
    let scrapes = (0..10).map(|_| {
        let url = server.url("/metrics");
        tokio::spawn(async move { get(&url).await })
    });
    for r in futures::future::join_all(scrapes).await {
        let (status, text) = r.unwrap();
        assert_eq!(status, 200);
        let s = parse(&text);
        assert!(
            find(&s, "tibiot_collect_success", &[])
                .iter()
                .all(|x| x.value == 1.0)
        );
    }
    // One scrape's worth: one detail per target, one call per history period (the history
    // arrives right after the first scrape).
    settled(&server).await;
    let one_scrape = (pools.len() * (1 + 2 + 1) + cards.len()) as u64;
    assert_eq!(sim.total_requests(), one_scrape);
    assert_eq!(sim.requests(Endpoint::CardDetail), cards.len() as u64);

    // Within the TTLs nothing is fetched again.
    for _ in 0..3 {
        assert_eq!(get(&server.url("/metrics")).await.0, 200);
    }
    assert_eq!(sim.total_requests(), one_scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_days_and_months_are_fetched_once() {
    let sim = sim(SimOptions::default()).await;
    sim.freeze_clock(None);
    let pools = sim.pools()[..3].to_vec();
    let yaml = config_yaml(
        &sim,
        &pools,
        &[],
        "  pool_ttl: 1h\n  history_ttl: 1s\n  history:\n    pool_days: 10\n    pool_months: 4\n",
    );
    let server = Server::start(&yaml, None).await;
    let _ = get(&server.url("/metrics")).await;
    let s = parse(&settled(&server).await);
    assert_eq!(find(&s, "tibiot_pool_daily_usage_bytes", &[]).len(), 3 * 10);
    assert_eq!(
        find(&s, "tibiot_pool_monthly_usage_bytes", &[]).len(),
        3 * 4
    );
    let days = |p: &str| sim.requests_for(Endpoint::PoolDayUsage, p);
    let months = |p: &str| sim.requests_for(Endpoint::PoolMonthUsage, p);

    // While scrapes keep coming, today and this month are refreshed every history_ttl; pool
    // detail (1h TTL) and the closed periods are not fetched again.
    let refreshed = eventually(Duration::from_secs(60), || async {
        let _ = get(&server.url("/metrics")).await;
        pools
            .iter()
            .all(|p| days(p) >= 10 + 2 && months(p) >= 4 + 2)
    })
    .await;
    assert!(refreshed, "today and this month were not refreshed");
    for p in &pools {
        // today and this month go together (one fetch of the pool's history)
        let (d, m) = (days(p) - 10, months(p) - 4);
        assert!(d.abs_diff(m) <= 1, "{p}: {d} day vs {m} month refreshes");
        assert_eq!(sim.requests_for(Endpoint::PoolDetail, p), 1, "{p}");
    }
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(find(&s, "tibiot_pool_daily_usage_bytes", &[]).len(), 3 * 10);
    let today = format_day(sim.today());
    for p in &pools {
        let ok = [("kind", "pool_history"), ("target", p.as_str())];
        assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0));
        let with = [("pool", p.as_str()), ("date", today.as_str())];
        assert!(value(&s, "tibiot_pool_daily_usage_bytes", &with).is_some());
    }
}

/// A `429` with `Retry-After` pauses the account: no request of it reaches the API before
/// the time named (shown in `tibiot_api_paused_until_timestamp_seconds`), across scrapes;
/// the targets waiting meanwhile are pending, not failed; then everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_retry_after_stops_requests_until_it_passes() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools()[..3].to_vec();
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 3,
        })
        .target(pools[0].clone())
        .times(1),
    );
    let yaml = config_yaml(
        &sim,
        &pools,
        &[],
        "  timeout: 10s\n  timeout_offset: 500ms\n  concurrency: 1\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    let server = Server::start(&yaml, None).await;
    let scrape = || async {
        let r = client()
            .get(server.url("/metrics"))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "2")
            .send()
            .await
            .unwrap();
        parse(&r.text().await.unwrap())
    };
    let success = |s: &[Sample], pool: &str| {
        value(
            s,
            "tibiot_collect_success",
            &[("kind", "pool"), ("target", pool)],
        )
    };
    // The first pool (first in the queue) is told to come back in 3 s.
    let end = Instant::now() + Duration::from_secs(30);
    let paused_until = loop {
        assert!(Instant::now() < end, "no pause was remembered");
        let s = scrape().await;
        let until = value(
            &s,
            "tibiot_api_paused_until_timestamp_seconds",
            &[("account", "test")],
        );
        if let Some(u) = until.filter(|u| *u > 0.0) {
            // meanwhile nothing failed: the other pools are pending
            for pool in &pools[1..] {
                assert_eq!(success(&s, pool), None, "{pool} during the pause");
            }
            let pending = value(
                &s,
                "tibiot_collect_pending_targets",
                &[("account", "test"), ("kind", "pool")],
            );
            assert!(pending.is_some_and(|n| n >= 2.0), "pending {pending:?}");
            break u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let landed = eventually(Duration::from_secs(30), || async {
        let s = scrape().await;
        pools.iter().all(|p| success(&s, p) == Some(1.0))
    })
    .await;
    assert!(landed, "the pools never arrived");
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, &pools[0]), 2);
    // The simulator's own clock says when each of the other pools was asked for: not before
    // the end of the pause.
    let counters = sim_counters(&sim).await;
    for pool in &pools[1..] {
        let at = &counters["targets"]["pool_detail"][pool.as_str()];
        assert_eq!(at[0], 1, "{pool}");
        let asked = at[1].as_f64().unwrap();
        assert!(
            asked >= paused_until - 0.05,
            "{pool} was asked for at {asked}, before the pause ended at {paused_until}"
        );
    }
}

/// Both formats of `/metrics` carry every family of the table once, with the table's help
/// text and type — the target families from the streaming writer and the self-metrics from
/// the prometheus-client registry alike — and one valid document each: a single `# EOF` at
/// the very end of OpenMetrics, none in text 0.0.4 (which `promtool check metrics` accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_type_of_every_family_in_both_formats() {
    let sim = sim(SimOptions::default()).await;
    let (pools, cards) = (sim.pools(), sim.cards()[..8].to_vec());
    let yaml = config_yaml(&sim, &pools, &cards, HISTORY)
        .replace("requests_per_second: 0", "requests_per_second: 1000");
    let server = Server::start(&yaml, None).await;
    let om = "application/openmetrics-text; version=1.0.0";
    let _ = get(&server.url("/metrics")).await;
    settled(&server).await;
    for accept in [None, Some(om)] {
        let mut req = client().get(server.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let text = req.send().await.unwrap().text().await.unwrap();
        let openmetrics = accept.is_some();
        let eofs = text.lines().filter(|l| *l == "# EOF").count();
        assert_eq!(eofs, openmetrics as usize, "# EOF lines");
        if openmetrics {
            assert!(text.ends_with("\n# EOF\n"));
        } else {
            let lint = promtool(&text);
            assert!(lint.is_empty(), "promtool check metrics: {lint}");
        }
        for f in families().iter().filter(|f| f.served != Served::Probe) {
            // OpenMetrics names counter and info families without their suffix.
            let wire = match (openmetrics, f.typ.as_str()) {
                (true, "counter") => f.name.strip_suffix("_total").unwrap(),
                (true, "info") => f.name.strip_suffix("_info").unwrap(),
                _ => f.name,
            };
            let help = format!("# HELP {wire} {}\n", f.help);
            assert_eq!(text.matches(&help).count(), 1, "{accept:?}: {help}");
            let typ = match (openmetrics, f.typ.as_str()) {
                (false, "info" | "stateset") | (true, "stateset") => "gauge",
                (_, t) => t,
            };
            let type_line = format!("# TYPE {wire} {typ}\n");
            assert!(text.contains(&type_line), "{accept:?}: {type_line}");
        }
    }
}
