//! `/metrics` over real HTTP against the real simulator: every family of docs/metrics.md with the
//! simulator's values × 1024, failing and slow targets within the deadline, stale handling,
//! shared in-flight fetches and the TTL cache, and a clean `promtool check metrics`.

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
    let server = Server::start(&config_yaml(&sim, &pools, &cards, HISTORY), None).await;
    let (status, text) = get(&server.url("/metrics")).await;
    assert_eq!(status, 200);
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
    // Prometheus says its scrape times out after 2 s: the exporter answers within 1.5 s.
    let started = Instant::now();
    let r = client()
        .get(server.url("/metrics"))
        .header("X-Prometheus-Scrape-Timeout-Seconds", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500 + 1000), "took {took:?}");
    let s = parse(&text);
    for p in &pools {
        let ok = value(
            &s,
            "tibiot_collect_success",
            &[("kind", "pool"), ("target", p.as_str())],
        );
        let used = value(&s, "tibiot_pool_used_bytes", &[("pool", p.as_str())]);
        let hist_ok = value(
            &s,
            "tibiot_collect_success",
            &[("kind", "pool_history"), ("target", p.as_str())],
        );
        let days = find(&s, "tibiot_pool_daily_usage_bytes", &[("pool", p.as_str())]).len();
        if *p == failing || *p == slow {
            assert_eq!(ok, Some(0.0), "{p}");
            assert_eq!(used, None, "{p}");
            // Every request about these two pools fails or is slow, history included.
            assert_eq!(hist_ok, Some(0.0), "{p}");
            assert_eq!(days, 0, "{p}");
        } else {
            // The slow and the failing pool do not hold up the others' history.
            assert_eq!(ok, Some(1.0), "{p}");
            assert!(used.is_some(), "{p}");
            assert_eq!(hist_ok, Some(1.0), "{p}");
            assert_eq!(days, 30, "{p}");
        }
    }
    for c in &cards {
        let ok = value(&s, "tibiot_collect_success", &[("target", c.as_str())]);
        assert_eq!(ok, Some(1.0));
    }
    // The failures are counted by outcome.
    let http_errors = value(
        &s,
        "tibiot_api_requests_total",
        &[("endpoint", "pool_detail"), ("outcome", "http_error")],
    );
    assert!(http_errors.unwrap() >= 1.0);
    assert_eq!(value(&s, "tibiot_up", &[]).map(|v| v <= 1.0), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pool_keeps_its_values_until_stale_after() {
    let sim = sim(SimOptions::default()).await;
    let pool = sim.pools()[2].clone();
    let yaml = config_yaml(
        &sim,
        std::slice::from_ref(&pool),
        &[],
        "  pool_ttl: 1s\n  stale_after: 3s\n  timeout: 5s\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    let server = Server::start(&yaml, None).await;
    let l = [("pool", pool.as_str())];
    let ok = [("kind", "pool"), ("target", pool.as_str())];
    let s = parse(&get(&server.url("/metrics")).await.1);
    let fetched = Instant::now();
    assert!(value(&s, "tibiot_pool_used_bytes", &l).is_some());
    assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0));

    sim.set_fault(FaultRule::new(Fault::BusinessError).target(pool.clone()));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the TTL: fetched again, fails, the last good values are still served.
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(0.0));
    assert!(
        fetched.elapsed() < Duration::from_secs(3),
        "test too slow to check"
    );
    assert!(value(&s, "tibiot_pool_used_bytes", &l).is_some());
    assert!(value(&s, "tibiot_pool_info", &l).is_some());

    // Past stale_after: the values are gone, the failure is still reported.
    let wait = Duration::from_millis(3200).saturating_sub(fetched.elapsed());
    tokio::time::sleep(wait).await;
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(0.0));
    assert_eq!(value(&s, "tibiot_pool_used_bytes", &l), None);
    assert_eq!(value(&s, "tibiot_pool_info", &l), None);
    assert!(find(&s, "tibiot_pool_status_cards", &l).is_empty());

    // Recovery: the next fetch after the fault is cleared serves fresh values.
    sim.clear_faults();
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0));
    assert!(value(&s, "tibiot_pool_used_bytes", &l).is_some());
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
    // One scrape's worth: one detail per target, one call per history period.
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
    let pools = sim.pools()[..3].to_vec();
    let yaml = config_yaml(
        &sim,
        &pools,
        &[],
        "  pool_ttl: 1h\n  history_ttl: 1s\n  history:\n    pool_days: 10\n    pool_months: 4\n",
    );
    let server = Server::start(&yaml, None).await;
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(find(&s, "tibiot_pool_daily_usage_bytes", &[]).len(), 3 * 10);
    assert_eq!(
        find(&s, "tibiot_pool_monthly_usage_bytes", &[]).len(),
        3 * 4
    );
    assert_eq!(sim.requests(Endpoint::PoolDayUsage), 3 * 10);
    assert_eq!(sim.requests(Endpoint::PoolMonthUsage), 3 * 4);

    // After history_ttl only today and this month are fetched again; pool detail (1h TTL)
    // and the closed periods are not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.reset_counters();
    let s = parse(&get(&server.url("/metrics")).await.1);
    assert_eq!(sim.requests(Endpoint::PoolDayUsage), 3);
    assert_eq!(sim.requests(Endpoint::PoolMonthUsage), 3);
    assert_eq!(sim.requests(Endpoint::PoolDetail), 0);
    assert_eq!(find(&s, "tibiot_pool_daily_usage_bytes", &[]).len(), 3 * 10);
    let today = format_day(sim.today());
    for p in &pools {
        let ok = [("kind", "pool_history"), ("target", p.as_str())];
        assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0));
        let with = [("pool", p.as_str()), ("date", today.as_str())];
        assert!(value(&s, "tibiot_pool_daily_usage_bytes", &with).is_some());
    }
}

/// With one request in flight allowed, a target told to come back in 3 s (429 with
/// `Retry-After`) does not hold up the next target: it is fetched during the backoff and
/// reported within the scrape's deadline; the first one lands after its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_in_retry_backoff_does_not_hold_up_the_others() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools()[..2].to_vec();
    let (waiting, other) = (pools[0].clone(), pools[1].clone());
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 3,
        })
        .target(waiting.clone())
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
    // the scrape ends after 1.5 s, the retry comes after 3 s
    let s = scrape().await;
    assert_eq!(success(&s, &other), Some(1.0), "held up by the backoff");
    assert!(value(&s, "tibiot_pool_used_bytes", &[("pool", other.as_str())]).is_some());
    assert_eq!(success(&s, &waiting), Some(0.0));
    // the retry lands: the waiting pool is served too, after exactly two requests
    let landed = eventually(Duration::from_secs(10), || async {
        success(&scrape().await, &waiting) == Some(1.0)
    })
    .await;
    assert!(landed, "the retried pool never arrived");
    assert_eq!(sim.requests_for(Endpoint::PoolDetail, &waiting), 2);
}

/// Both formats of `/metrics` carry every family of the table once, with the table's help
/// text and type — the target families from the streaming writer and the self-metrics from
/// the prometheus-client registry alike — and one valid document each: a single `# EOF` at
/// the very end of OpenMetrics, none in text 0.0.4 (which `promtool check metrics` accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_type_of_every_family_in_both_formats() {
    let sim = sim(SimOptions::default()).await;
    let (pools, cards) = (sim.pools(), sim.cards()[..8].to_vec());
    let server = Server::start(&config_yaml(&sim, &pools, &cards, HISTORY), None).await;
    let om = "application/openmetrics-text; version=1.0.0";
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
