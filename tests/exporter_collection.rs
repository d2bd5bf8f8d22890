//! Collection semantics over HTTP against the real simulator (docs/collection.md), by ordering
//! and counts, never by time: a warm target is served while its refresh is in flight and a
//! queued one keeps `tibiot_collect_success 1`; over budget every target is fetched once before
//! any is fetched twice; pools go before cards; an always-500 target shows "HTTP 500" on the
//! landing page and in the log (not a deadline); two shards partition the targets exactly.

mod exporter_support;
mod fault_support;

use exporter_support::{
    Sample, Server, client, config_yaml, find, get, parse, sim, sim_counters, value,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tibiot_api::Endpoint;
use tibiot_sim::{Fault, FaultRule, SimHandle, SimOptions};

/// How long a condition may take to come true (a generous bound for a loaded machine).
const PATIENCE: Duration = Duration::from_secs(90);

/// Scrapes `url` until `cond` holds; panics with `what` and the last scrape after PATIENCE.
async fn scrape_until(url: &str, what: &str, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let end = Instant::now() + PATIENCE;
    loop {
        let (status, text) = get(url).await;
        assert_eq!(status, 200);
        let s = parse(&text);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "{what}: not within {PATIENCE:?}; last health: {:?}",
            find(&s, "tibiot_collect_success", &[])
                .iter()
                .map(|x| (&x.labels["target"], x.value))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The simulator's per-target counters over HTTP: (requests, unix time of the latest).
async fn counters(sim: &SimHandle, ep: Endpoint) -> BTreeMap<String, (u64, f64)> {
    let j = sim_counters(sim).await;
    j["targets"][ep.name()]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), (v[0].as_u64().unwrap(), v[1].as_f64().unwrap())))
                .collect()
        })
        .unwrap_or_default()
}

fn pending(s: &[Sample], kind: &str) -> Option<f64> {
    value(s, "tibiot_collect_pending_targets", &[("kind", kind)])
}

fn success(s: &[Sample], kind: &str, target: &str) -> Option<f64> {
    value(
        s,
        "tibiot_collect_success",
        &[("kind", kind), ("target", target)],
    )
}

/// With one request in flight allowed, pool A's refresh hangs upstream and pool B's refresh
/// waits in the queue behind it: a scrape meanwhile serves both from the cache with
/// `tibiot_collect_success 1`, and counts both as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_targets_are_served_while_refreshing_and_queued_ones_keep_success() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools()[..2].to_vec();
    let (a, b) = (pools[0].clone(), pools[1].clone());
    let yaml = config_yaml(
        &sim,
        &pools,
        &[],
        "  timeout: 60s\n  concurrency: 1\n  pool_ttl: 1s\n  stale_after: 1h\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    let server = Server::start(&yaml, None).await;
    let url = server.url("/metrics");
    let s = scrape_until(&url, "cold fill", |s| {
        success(s, "pool", &a) == Some(1.0) && success(s, "pool", &b) == Some(1.0)
    })
    .await;
    let first_a = value(
        &s,
        "tibiot_collect_last_success_timestamp_seconds",
        &[("kind", "pool"), ("target", &a)],
    );
    // A's next refresh hangs for a minute upstream (while it lasts, B can only queue).
    sim.set_fault(
        FaultRule::new(Fault::Slow(Duration::from_secs(60)))
            .endpoint(Endpoint::PoolDetail)
            .target(a.clone()),
    );
    let s = scrape_until(&url, "A refreshing and B queued", |s| {
        pending(s, "pool") == Some(2.0)
    })
    .await;
    assert!(
        sim.requests_for(Endpoint::PoolDetail, &a) >= 2,
        "A's refresh was not sent"
    );
    for p in [&a, &b] {
        assert_eq!(
            success(&s, "pool", p),
            Some(1.0),
            "{p}: pending is not failure"
        );
        assert!(
            value(&s, "tibiot_pool_used_bytes", &[("pool", p.as_str())]).is_some(),
            "{p}: its cached value is not served"
        );
    }
    // A's value is the one from before its refresh began.
    assert_eq!(
        value(
            &s,
            "tibiot_collect_last_success_timestamp_seconds",
            &[("kind", "pool"), ("target", &a)]
        ),
        first_a
    );
}

/// 30 cards at 5 requests per second with a TTL of 1 s need 30 requests per second: every
/// card is fetched once before any is fetched twice, and from then on the refreshes go round
/// (no card is ever two fetches ahead of another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_every_target_is_fetched_once_before_any_twice() {
    let sim = sim(SimOptions {
        cards: 30,
        ..SimOptions::default()
    })
    .await;
    let cards = sim.cards();
    let yaml = config_yaml(
        &sim,
        &[],
        &cards,
        "  timeout: 30s\n  concurrency: 1\n  card_ttl: 1s\n  history: {pool_days: 0, pool_months: 0}\n",
    )
    .replace("requests_per_second: 0", "requests_per_second: 5");
    let server = Server::start(&yaml, None).await;
    let url = server.url("/metrics");
    let _ = get(&url).await;
    let end = Instant::now() + PATIENCE;
    loop {
        // keep scraping (refreshing goes on while scrapes come)
        let (status, text) = get(&url).await;
        assert_eq!(status, 200);
        let c = counters(&sim, Endpoint::CardDetail).await;
        let counts: Vec<u64> = cards.iter().map(|i| c.get(i).map_or(0, |x| x.0)).collect();
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert!(
            max <= min + 1,
            "a card was fetched {max} times while another had {min}: {counts:?}"
        );
        if min >= 2 {
            let s = parse(&text);
            let required = value(&s, "tibiot_collect_required_requests_per_second", &[]);
            assert!(required.is_some_and(|r| r > 25.0), "required {required:?}");
            assert_eq!(
                value(&s, "tibiot_collect_allowed_requests_per_second", &[]),
                Some(5.0)
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "two rounds did not complete: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pools go before cards: cards queue for their first value (2 requests per second); pools
/// added by a reload meanwhile overtake every card still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_go_before_cards() {
    let sim = sim(SimOptions {
        pools: 4,
        cards: 12,
        ..SimOptions::default()
    })
    .await;
    let (pools, cards) = (sim.pools(), sim.cards());
    let collect = "  timeout: 30s\n  concurrency: 1\n  history: {pool_days: 0, pool_months: 0}\n";
    let limited = |y: String| y.replace("requests_per_second: 0", "requests_per_second: 2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tibiot-exporter.yml");
    std::fs::write(&path, limited(config_yaml(&sim, &[], &cards, collect))).unwrap();
    let p = path.clone();
    let loader: tibiot_exporter::http::Loader =
        std::sync::Arc::new(move || tibiot_exporter::config::Config::load(&p));
    let server = Server::start(
        &limited(config_yaml(&sim, &[], &cards, collect)),
        Some(loader),
    )
    .await;
    let url = server.url("/metrics");
    // a scrape that does not wait for the cold fill
    let r = client()
        .get(&url)
        .header("X-Prometheus-Scrape-Timeout-Seconds", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the cards are queued; add the pools while most of them still wait
    std::fs::write(&path, limited(config_yaml(&sim, &pools, &cards, collect))).unwrap();
    let r = client().post(server.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let waiting = cards.len() as u64 - sim.requests(Endpoint::CardDetail);
    assert!(
        waiting >= 4,
        "too few cards still queued ({waiting}) to tell the order"
    );
    scrape_until(&url, "every target fetched", |s| {
        find(s, "tibiot_collect_success", &[])
            .iter()
            .filter(|x| x.value == 1.0)
            .count()
            == pools.len() + cards.len()
    })
    .await;
    // In the order the simulator saw them: once the first pool came, every pool came before
    // any further card.
    let p = counters(&sim, Endpoint::PoolDetail).await;
    let c = counters(&sim, Endpoint::CardDetail).await;
    let mut seen: Vec<(f64, &str)> = pools
        .iter()
        .map(|i| (p[i].1, "pool"))
        .chain(cards.iter().map(|i| (c[i].1, "card")))
        .collect();
    seen.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first_pool = seen.iter().position(|x| x.1 == "pool").unwrap();
    let order: Vec<&str> = seen.iter().map(|x| x.1).collect();
    assert!(
        order[first_pool..first_pool + pools.len()]
            .iter()
            .all(|k| *k == "pool"),
        "a card overtook a pool: {order:?}"
    );
    assert!(
        first_pool < cards.len(),
        "the pools came after every card: {order:?}"
    );
    for i in pools.iter() {
        assert_eq!(p[i].0, 1, "{i}");
    }
}

/// A pool whose every request answers HTTP 500, with retries that the fetch's deadline cuts
/// short: the landing page and the log give the real error, HTTP 500, never a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_500_target_shows_http_500_on_the_landing_page_and_in_the_log() {
    let sim = sim(SimOptions {
        latency: Duration::from_millis(150),
        ..SimOptions::default()
    })
    .await;
    let pools = sim.pools()[..2].to_vec();
    let bad = pools[0].clone();
    sim.set_fault(FaultRule::new(Fault::Http500).target(bad.clone()));
    let config = format!(
        "accounts:\n{}collect:\n  timeout: 400ms\n  timeout_offset: 100ms\n  requests_per_second: 0\n  pool_ttl: 1h\n  history: {{pool_days: 0, pool_months: 0}}\n",
        fault_support::config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools,
            &[]
        )
    );
    let exporter = fault_support::Exporter::start(&config);
    let end = Instant::now() + PATIENCE;
    loop {
        let (_, text, _) =
            fault_support::scrape(&fault_support::http(), &exporter.url("/metrics"), &[]).await;
        let m = fault_support::Metrics::parse(&text);
        let got = m.value(
            "tibiot_collect_success",
            &[("kind", "pool"), ("target", &bad)],
        );
        if got == Some(0.0) {
            break;
        }
        assert!(Instant::now() < end, "the failure never completed: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, page, _) =
        fault_support::scrape(&fault_support::http(), &exporter.url("/"), &[]).await;
    assert_eq!(status, 200);
    // The landing page lists the failing target among its problems with the real error.
    let row = page
        .lines()
        .find(|l| l.contains(bad.as_str()) && l.contains("HTTP 500"))
        .unwrap_or_else(|| panic!("no row for {bad} with its error on the landing page:\n{page}"));
    assert!(!row.contains("deadline"), "landing page row: {row}");
    let log = exporter.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fetch failed") && l.contains(bad.as_str()))
        .collect();
    assert!(!lines.is_empty(), "no log line for {bad}:\n{log}");
    for line in lines {
        assert!(line.contains("HTTP 500"), "log line: {line}");
    }
}

/// The targets that `/metrics` of a shard serves (by collection kind).
fn served(s: &[Sample]) -> BTreeSet<(String, String)> {
    find(s, "tibiot_collect_success", &[])
        .iter()
        .map(|x| (x.labels["kind"].clone(), x.labels["target"].clone()))
        .collect()
}

/// Two shards of the same configuration partition the targets exactly: each serves and
/// fetches only its own, none is served or fetched by both, and together they are all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_partition_the_targets_exactly() {
    let sim = sim(SimOptions {
        pools: 10,
        cards: 40,
        ..SimOptions::default()
    })
    .await;
    let (pools, cards) = (sim.pools(), sim.cards());
    let yaml = config_yaml(
        &sim,
        &pools,
        &cards,
        "  history: {pool_days: 2, pool_months: 1}\n",
    );
    let shards = [
        Server::start_shard(&yaml, 0, 2).await,
        Server::start_shard(&yaml, 1, 2).await,
    ];
    let mut sets = Vec::new();
    for sh in &shards {
        let _ = get(&sh.url("/metrics")).await;
        let s = parse(&exporter_support::settled(sh).await);
        assert!(
            find(&s, "tibiot_collect_success", &[])
                .iter()
                .all(|x| x.value == 1.0)
        );
        sets.push(served(&s));
    }
    let all: BTreeSet<(String, String)> = pools
        .iter()
        .flat_map(|p| {
            [
                ("pool".to_owned(), p.clone()),
                ("pool_history".to_owned(), p.clone()),
            ]
        })
        .chain(cards.iter().map(|c| ("card".to_owned(), c.clone())))
        .collect();
    assert!(
        !sets[0].is_empty() && !sets[1].is_empty(),
        "a shard serves nothing"
    );
    assert!(
        sets[0].is_disjoint(&sets[1]),
        "{:?}",
        sets[0].intersection(&sets[1]).collect::<Vec<_>>()
    );
    let union: BTreeSet<_> = sets[0].union(&sets[1]).cloned().collect();
    assert_eq!(union, all);
    // A pool's detail and its history are on the same shard.
    for p in &pools {
        let on = |i: usize| sets[i].contains(&("pool".to_owned(), p.clone()));
        let hist = |i: usize| sets[i].contains(&("pool_history".to_owned(), p.clone()));
        assert!((on(0) && hist(0)) || (on(1) && hist(1)), "{p}");
    }
    // Each target was fetched once, by its shard only.
    for p in &pools {
        assert_eq!(sim.requests_for(Endpoint::PoolDetail, p), 1, "{p}");
    }
    for c in &cards {
        assert_eq!(sim.requests_for(Endpoint::CardDetail, c), 1, "{c}");
    }
}

/// `/probe` of a target outside the configuration never delays configured work: it reaches
/// the API only after every configured card queued before it; with
/// `unconfigured_probe_percent: 0` such probes are refused (400), configured ones still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_unconfigured_targets_come_after_configured_work() {
    let sim = sim(SimOptions {
        pools: 3,
        cards: 8,
        ..SimOptions::default()
    })
    .await;
    let (pools, cards) = (sim.pools(), sim.cards());
    let outsider = pools[2].clone();
    let yaml = config_yaml(
        &sim,
        &pools[..1],
        &cards,
        "  timeout: 30s\n  concurrency: 1\n  history: {pool_days: 0, pool_months: 0}\n",
    )
    .replace("requests_per_second: 0", "requests_per_second: 4");
    let server = Server::start(&yaml, None).await;
    let quick = |path: String| {
        let url = server.url(&path);
        async move {
            let r = client()
                .get(url)
                .header("X-Prometheus-Scrape-Timeout-Seconds", "1")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // the configured targets queue (4 per second); the probe comes while they wait
    assert_eq!(quick("/metrics".into()).await.0, 200);
    let (status, text) = quick(format!("/probe?pool={outsider}")).await;
    assert_eq!(status, 200, "{text}");
    let end = Instant::now() + PATIENCE;
    loop {
        // probes keep the outsider wanted; scrapes keep the configured ones going
        let (_, text) = quick(format!("/probe?pool={outsider}")).await;
        let _ = quick("/metrics".into()).await;
        if value(&parse(&text), "tibiot_probe_success", &[]) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < end, "the probed pool never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = counters(&sim, Endpoint::PoolDetail).await;
    let c = counters(&sim, Endpoint::CardDetail).await;
    let last_card = cards.iter().map(|i| c[i].1).fold(f64::MIN, f64::max);
    assert_eq!(c.len(), cards.len(), "not every card was fetched");
    assert!(
        p[&outsider].1 > last_card,
        "the probe ({}) went before a configured card ({last_card})",
        p[&outsider].1
    );

    // Switched off: 400 for targets outside the configuration, configured ones still served.
    let yaml = config_yaml(
        &sim,
        &pools[..1],
        &cards[..1],
        "  unconfigured_probe_percent: 0\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    let server = Server::start(&yaml, None).await;
    let (status, text) = get(&server.url(&format!("/probe?pool={outsider}"))).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("unconfigured_probe_percent"), "{text}");
    let (status, text) = get(&server.url(&format!("/probe?pool={}", pools[0]))).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(value(&parse(&text), "tibiot_probe_success", &[]), Some(1.0));
}
