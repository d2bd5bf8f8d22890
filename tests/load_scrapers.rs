//! Load: 50 concurrent scrapers against the real exporter binary for a bounded time (10 s),
//! with short TTLs so that upstream refreshes keep happening under the load (in the
//! background: scrapes serve the cache and never wait for them).
//!
//! Must hold:
//! - no failed scrape: every answer is HTTP 200 with every target's `tibiot_collect_success`
//!   at 1 (a refresh in progress is not a failure);
//! - no growth in upstream calls: the simulator counts at most one detail call per target per
//!   TTL window (plus the window in progress), as one scraper would; 50 scrapers that each
//!   fetched would make ~50× that;
//! - bounded memory: the exporter's resident set (VmRSS from /proc) grows by at most
//!   `RSS_GROWTH_BOUND` between the end of the warm-up and the end of the run.

mod fault_support;

use fault_support::{Exporter, Metrics, config_for, memory_kib};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tibiot_api::Endpoint;
use tibiot_sim::{SimHandle, SimOptions};

const SCRAPERS: usize = 50;
const RUN: Duration = Duration::from_secs(10);
const WARMUP: Duration = Duration::from_secs(2);
const TTL_SECS: u64 = 2;
/// Stated bound: resident memory may grow by at most this much under the sustained load,
/// after a warm-up under the same load (allocator pools, 50 connections' buffers).
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// The simulator on a runtime of its own (its own threads): the scrapers' parsing in this
/// test's runtime must not starve the upstream the exporter refreshes from.
fn sim_on_own_runtime() -> (Arc<SimHandle>, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let sim = SimHandle::start(
                SimOptions {
                    seed: 11,
                    pools: 20,
                    cards: 300,
                    ..SimOptions::default()
                },
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .expect("simulator");
            let sim = Arc::new(sim);
            tx.send(sim.clone()).expect("send");
            let _ = stopped.await;
        });
    });
    (rx.recv().expect("simulator started"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_scrapers() {
    let (sim, stop_sim) = sim_on_own_runtime();
    let pools = sim.pools();
    let cards = sim.cards();
    let config = format!(
        "accounts:\n{}collect:\n  timeout: 20s\n  concurrency: 16\n  requests_per_second: 0\n  pool_ttl: {TTL_SECS}s\n  card_ttl: {TTL_SECS}s\n  history_ttl: {TTL_SECS}s\n  history: {{pool_days: 3, pool_months: 2, card_days: 0, card_months: 0}}\n",
        config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools,
            &cards
        )
    );
    let mut exporter = Exporter::start(&config);
    let url = exporter.url("/metrics");
    let targets = pools.len() + cards.len();

    // Fill the cache once.
    let first = fault_support::http()
        .get(&url)
        .send()
        .await
        .expect("first scrape");
    assert_eq!(first.status(), 200);
    let m = Metrics::parse(&first.text().await.unwrap());
    assert_eq!(
        m.find("tibiot_collect_success", &[("kind", "pool")]).len()
            + m.find("tibiot_collect_success", &[("kind", "card")]).len(),
        targets
    );

    let scrapes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let end = started + WARMUP + RUN;
    let mut tasks = Vec::new();
    for i in 0..SCRAPERS {
        let url = url.clone();
        let scrapes = scrapes.clone();
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            // one client (connection) per scraper, like separate Prometheus servers
            // reqwest's TLS takes the process's rustls provider
            tibiot_api::client::install_crypto_provider();
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            while Instant::now() < end {
                let r = client
                    .get(&url)
                    .header("X-Prometheus-Scrape-Timeout-Seconds", "30")
                    .send()
                    .await;
                let problem = match r {
                    Err(e) => Some(format!("scraper {i}: request failed: {e}")),
                    Ok(r) if r.status() != 200 => Some(format!("scraper {i}: HTTP {}", r.status())),
                    Ok(r) => match r.text().await {
                        Err(e) => Some(format!("scraper {i}: body failed: {e}")),
                        Ok(body) => {
                            let m = Metrics::parse(&body);
                            let failed = m
                                .find("tibiot_collect_success", &[])
                                .iter()
                                .filter(|s| s.value != 1.0)
                                .map(|s| format!("{:?}", s.labels))
                                .collect::<Vec<_>>();
                            let seen = m.find("tibiot_collect_success", &[]).len();
                            if !failed.is_empty() {
                                Some(format!(
                                    "scraper {i}: {} target(s) failed: {}",
                                    failed.len(),
                                    failed[..failed.len().min(3)].join(" ")
                                ))
                            } else if seen < targets {
                                Some(format!("scraper {i}: only {seen} health series"))
                            } else {
                                None
                            }
                        }
                    },
                };
                scrapes.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = problem {
                    failures.lock().unwrap().push(p);
                }
            }
        }));
    }

    // Baselines at the end of the warm-up.
    tokio::time::sleep_until((started + WARMUP).into()).await;
    let (rss_warm, _) = memory_kib(exporter.pid());
    let detail_warm = sim.requests(Endpoint::PoolDetail) + sim.requests(Endpoint::CardDetail);
    let per_target = |sim: &SimHandle| -> Vec<u64> {
        pools
            .iter()
            .map(|p| sim.requests_for(Endpoint::PoolDetail, p))
            .chain(
                cards
                    .iter()
                    .map(|c| sim.requests_for(Endpoint::CardDetail, c)),
            )
            .collect()
    };
    let per_target_warm = per_target(&sim);
    let scrapes_warm = scrapes.load(Ordering::Relaxed);
    let run_started = Instant::now();
    for t in tasks {
        t.await.expect("scraper task");
    }
    let ran = run_started.elapsed();
    let (rss_end, hwm_end) = memory_kib(exporter.pid());
    let detail_end = sim.requests(Endpoint::PoolDetail) + sim.requests(Endpoint::CardDetail);
    let per_target_end = per_target(&sim);
    let scrapes_run = scrapes.load(Ordering::Relaxed) - scrapes_warm;

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed scrape(s) of {}; first: {:?}",
        failures.len(),
        scrapes.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(exporter.alive(), "exporter died under load");

    // Upstream calls: at most one detail fetch per target per TTL window, counting the window
    // in progress at each end.
    let windows = ran.as_secs_f64() / TTL_SECS as f64;
    let bound = (targets as f64 * (windows.ceil() + 2.0)) as u64;
    let calls = detail_end - detail_warm;
    println!(
        "load: {scrapes_run} scrapes in {ran:?} by {SCRAPERS} scrapers; {calls} detail calls \
         for {targets} targets (bound {bound}); VmRSS {rss_warm} KiB after warm-up -> \
         {rss_end} KiB at the end (VmHWM {hwm_end} KiB)"
    );
    assert!(
        scrapes_run >= SCRAPERS as u64,
        "only {scrapes_run} scrapes in the run"
    );
    assert!(
        calls <= bound,
        "{calls} detail calls in {ran:?} for {targets} targets with TTL {TTL_SECS}s: more than \
         one per target per TTL window (bound {bound}) — concurrent scrapes are not sharing"
    );
    // And per target: no target was fetched more often than once per TTL window.
    let most = per_target_end
        .iter()
        .zip(&per_target_warm)
        .map(|(e, w)| e - w)
        .max()
        .unwrap_or(0);
    assert!(
        most as f64 <= windows.ceil() + 1.0,
        "a target was fetched {most} times in {ran:?} with TTL {TTL_SECS}s"
    );
    // Some refreshes must have happened, or the test measured nothing.
    assert!(
        calls >= targets as u64,
        "no refresh during the run: {calls}"
    );
    assert!(
        rss_end <= rss_warm + RSS_GROWTH_BOUND_KIB,
        "VmRSS grew from {rss_warm} KiB to {rss_end} KiB under load (bound +{RSS_GROWTH_BOUND_KIB} KiB)"
    );
    drop(exporter);
    let _ = stop_sim.send(());
}
