//! Fault injection: every fault class of the simulator — latency beyond the
//! deadline, HTTP 500, 429 with `Retry-After`, business errors, malformed JSON, truncated JSON,
//! a connection reset, an oversized body — against every endpoint the exporter reads (pool
//! detail, pool day usage, pool month usage, card detail, card day usage, card month usage),
//! plus an unreachable host. The exporter is the real binary (a child process); the
//! simulator runs in the test and injects the faults. Table-driven: one row per fault class,
//! all rows run concurrently.
//!
//! For each row, three phases:
//! 1. one target per endpoint has that endpoint fail (TTLs of an hour, so each target is
//!    fetched exactly once): the first scrape still answers 200 within the deadline plus a
//!    margin; once the fetches completed, exactly the affected (kind, target) reports
//!    `tibiot_collect_success 0` and the other kind of the same target and the control
//!    targets report 1; `tibiot_api_requests_total{endpoint,outcome}` counts the right outcome
//!    class; the simulator's counters show retries for retryable classes and a single
//!    request for the others;
//! 2. faults cleared and TTLs of a second (a reload): everything recovers
//!    (`tibiot_collect_success 1`, `tibiot_up 1`);
//! 3. every request of the account fails: `tibiot_up 0`, every detail reports 0, the last
//!    good values are still served (within `stale_after`), and every scrape still answers 200.
//!
//! Every condition is waited for (scraping until it holds, with a generous deadline), never
//! assumed after a fixed time: pending work is not failure, so a slow, loaded machine only
//! makes the test take longer. The exporter process must be alive at the end and its log must
//! not hold the app secret.

mod fault_support;

use fault_support::{Exporter, Metrics, closed_port, config_for, http, scrape};
use std::time::{Duration, Instant};
use tibiot_api::Endpoint;
use tibiot_sim::{Fault, FaultRule, SimHandle, SimOptions};

/// The scrape deadline (`collect.timeout`).
const DEADLINE: Duration = Duration::from_millis(2500);
/// Generous margin for "answers within the deadline" on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(3);

/// The six endpoints the exporter reads, and the `kind` label of the health metrics that
/// each one feeds.
const ENDPOINTS: [(Endpoint, &str); 6] = [
    (Endpoint::PoolDetail, "pool"),
    (Endpoint::PoolDayUsage, "pool_history"),
    (Endpoint::PoolMonthUsage, "pool_history"),
    (Endpoint::CardDetail, "card"),
    (Endpoint::CardDayUsage, "card_history"),
    (Endpoint::CardMonthUsage, "card_history"),
];

/// One row of the table.
struct Row {
    name: &'static str,
    fault: Fault,
    /// The `outcome` label the exporter must count.
    outcome: &'static str,
    /// Whether the client retries this class (then the simulator sees ≥ 2 requests).
    retryable: bool,
}

const ROWS: &[Row] = &[
    Row {
        name: "latency beyond the deadline",
        fault: Fault::Slow(Duration::from_secs(8)),
        outcome: "timeout",
        retryable: false,
    },
    Row {
        name: "HTTP 500",
        fault: Fault::Http500,
        outcome: "http_error",
        retryable: true,
    },
    Row {
        name: "429 with Retry-After",
        fault: Fault::RateLimited {
            retry_after_secs: 1,
        },
        outcome: "rate_limited",
        retryable: true,
    },
    Row {
        name: "business error",
        fault: Fault::BusinessError,
        outcome: "api_error",
        retryable: false,
    },
    Row {
        name: "malformed JSON",
        fault: Fault::Malformed,
        outcome: "decode_error",
        retryable: false,
    },
    Row {
        name: "truncated JSON",
        fault: Fault::Truncated,
        outcome: "decode_error",
        retryable: false,
    },
    Row {
        name: "connection reset",
        fault: Fault::ConnectionReset,
        outcome: "transport_error",
        retryable: true,
    },
    Row {
        name: "oversized body",
        fault: Fault::Oversized,
        outcome: "decode_error",
        retryable: false,
    },
];

/// Days and months of history per target; the day and month endpoints are called once per
/// period.
const PERIODS: u64 = 2;

/// Requests one fetch round makes to `ep` for one target.
fn calls_per_round(ep: Endpoint) -> u64 {
    match ep {
        Endpoint::PoolDetail | Endpoint::CardDetail => 1,
        _ => PERIODS,
    }
}

/// Concurrency is above the number of faulted requests in flight at once (10), so that slow
/// or backing-off requests, which hold their permit, cannot starve the control targets.
/// `ttl`: pool, card and history TTL.
fn collect_section(ttl: &str) -> String {
    format!(
        "collect:\n  timeout: {}ms\n  timeout_offset: 500ms\n  concurrency: 32\n  requests_per_second: 0\n  pool_ttl: {ttl}\n  card_ttl: {ttl}\n  history_ttl: {ttl}\n  stale_after: 1h\n  history: {{pool_days: 2, pool_months: 2, card_days: 2, card_months: 2}}\n",
        DEADLINE.as_millis()
    )
}

/// How long a condition may take to come true (a generous bound for a loaded machine).
const PATIENCE: Duration = Duration::from_secs(90);

async fn start_sim() -> SimHandle {
    let opts = SimOptions {
        seed: 7,
        pools: 4,
        cards: 4,
        ..SimOptions::default()
    };
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Checks one condition; collects failures instead of panicking so every row reports.
struct Check<'a> {
    row: &'a str,
    failures: Vec<String>,
}

impl Check<'_> {
    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(format!("[{}] {}", self.row, what()));
        }
    }

    /// Scrapes until `cond` holds (every scrape must answer 200 within the deadline plus the
    /// margin); returns the last scrape. When `PATIENCE` runs out, `cond`'s last complaint is
    /// recorded as a failure.
    async fn until(
        &mut self,
        exporter: &Exporter,
        what: &str,
        mut cond: impl FnMut(&Metrics) -> Result<(), String>,
    ) -> Metrics {
        let client = http();
        let end = Instant::now() + PATIENCE;
        loop {
            let (status, body, took) = scrape(&client, &exporter.url("/metrics"), &[]).await;
            self.that(status == 200, || format!("{what}: status {status}"));
            self.that(took < DEADLINE + MARGIN, || {
                format!("{what}: a scrape took {took:?}")
            });
            let m = Metrics::parse(&body);
            match cond(&m) {
                Ok(()) => return m,
                Err(e) if Instant::now() >= end => {
                    self.that(false, || format!("{what}: still {e} after {PATIENCE:?}"));
                    return m;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// `Ok` when every kind (detail and history) of `pool` and `card` of `account` reports
/// `tibiot_collect_success` = `want`, else what differs.
fn every_kind(
    m: &Metrics,
    (account, pool, card): (&str, &str, &str),
    want: f64,
) -> Result<(), String> {
    for (kind, t) in [
        ("pool", pool),
        ("pool_history", pool),
        ("card", card),
        ("card_history", card),
    ] {
        let got = m.value(
            "tibiot_collect_success",
            &[("account", account), ("kind", kind), ("target", t)],
        );
        if got != Some(want) {
            return Err(format!(
                "{kind} {t}: collect_success = {got:?}, want {want}"
            ));
        }
    }
    Ok(())
}

fn success(m: &Metrics, kind: &str, target: &str) -> Option<f64> {
    m.value(
        "tibiot_collect_success",
        &[("account", "sim"), ("kind", kind), ("target", target)],
    )
}

fn requests(m: &Metrics, account: &str, ep: Endpoint, outcome: &str) -> f64 {
    m.sum(
        "tibiot_api_requests_total",
        &[
            ("account", account),
            ("endpoint", ep.name()),
            ("outcome", outcome),
        ],
    )
}

/// The other collection kind of the same target.
fn other_kind(kind: &str) -> &'static str {
    match kind {
        "pool" => "pool_history",
        "pool_history" => "pool",
        "card" => "card_history",
        _ => "card",
    }
}

/// Runs one row; returns its failures.
async fn run_row(row: &Row) -> Vec<String> {
    let sim = start_sim().await;
    let pools = sim.pools();
    let cards = sim.cards();
    // pools[0..3] / cards[0..3]: the affected target of each endpoint; [3]: controls.
    let affected = |i: usize| -> String {
        if i < 3 {
            pools[i].clone()
        } else {
            cards[i - 3].clone()
        }
    };
    let accounts = format!(
        "accounts:\n{}",
        config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools,
            &cards
        )
    );
    let mut check = Check {
        row: row.name,
        failures: Vec::new(),
    };

    // Phase 1: one target per endpoint fails; each target is fetched once.
    for (i, (ep, _)) in ENDPOINTS.iter().enumerate() {
        sim.set_fault(FaultRule::new(row.fault).endpoint(*ep).target(affected(i)));
    }
    let exporter = Exporter::start(&format!("{accounts}{}", collect_section("1h")));
    let m = check
        .until(&exporter, "phase 1", |m| {
            for (i, (_, kind)) in ENDPOINTS.iter().enumerate() {
                let t = affected(i);
                let got = success(m, kind, &t);
                if got != Some(0.0) {
                    return Err(format!(
                        "collect_success{{kind={kind},target={t}}} = {got:?}, want 0"
                    ));
                }
                let other = other_kind(kind);
                let got = success(m, other, &t);
                if got != Some(1.0) {
                    return Err(format!(
                        "collect_success{{kind={other},target={t}}} = {got:?}, want 1"
                    ));
                }
            }
            every_kind(m, ("sim", &pools[3], &cards[3]), 1.0).map_err(|e| format!("control {e}"))
        })
        .await;
    for (i, (ep, _)) in ENDPOINTS.iter().enumerate() {
        let t = affected(i);
        let n = requests(&m, "sim", *ep, row.outcome);
        check.that(n >= 1.0, || {
            format!(
                "{ep:?}: tibiot_api_requests_total{{outcome={}}} = {n}, want >= 1",
                row.outcome
            )
        });
        let seen = sim.requests_for(*ep, &t);
        let once = calls_per_round(*ep);
        if row.retryable {
            check.that(seen >= 2 * once, || {
                format!(
                    "{ep:?}: simulator saw {seen} request(s) for {t}, want retries (>= {})",
                    2 * once
                )
            });
        } else {
            check.that(seen == once, || {
                format!("{ep:?}: simulator saw {seen} request(s) for {t}, want exactly {once} (no retry)")
            });
        }
    }
    // The control pool's values are there.
    check.that(
        m.value(
            "tibiot_pool_used_bytes",
            &[("account", "sim"), ("pool", &pools[3])],
        )
        .is_some(),
        || "control pool has no tibiot_pool_used_bytes".into(),
    );

    // Phase 2: faults cleared, TTLs of a second: everything recovers.
    sim.clear_faults();
    exporter
        .reload_with(&format!("{accounts}{}", collect_section("1s")))
        .await;
    check
        .until(&exporter, "phase 2 (recovery)", |m| {
            for (i, (_, kind)) in ENDPOINTS.iter().enumerate() {
                let t = affected(i);
                let got = success(m, kind, &t);
                if got != Some(1.0) {
                    return Err(format!(
                        "collect_success{{kind={kind},target={t}}} = {got:?}, want 1"
                    ));
                }
            }
            let up = m.value("tibiot_up", &[("account", "sim")]);
            if up != Some(1.0) {
                return Err(format!("tibiot_up = {up:?}, want 1"));
            }
            Ok(())
        })
        .await;

    // Phase 3: every request of the account fails; values are kept until stale_after.
    sim.set_fault(FaultRule::new(row.fault));
    let m = check
        .until(&exporter, "phase 3 (all failing)", |m| {
            for (kind, list) in [("pool", &pools), ("card", &cards)] {
                for t in list.iter() {
                    let got = success(m, kind, t);
                    if got != Some(0.0) {
                        return Err(format!(
                            "collect_success{{kind={kind},target={t}}} = {got:?}, want 0"
                        ));
                    }
                }
            }
            // tibiot_up follows the latest finished request.
            let up = m.value("tibiot_up", &[("account", "sim")]);
            if up != Some(0.0) {
                return Err(format!("tibiot_up = {up:?}, want 0"));
            }
            Ok(())
        })
        .await;
    for p in &pools {
        let used = m.value("tibiot_pool_used_bytes", &[("account", "sim"), ("pool", p)]);
        check.that(used.is_some(), || {
            format!("all failing: pool {p} lost its last good values before stale_after")
        });
    }

    let log = exporter.log_text();
    check.that(!log.contains(sim.app_secret()), || {
        "the app secret appears in the exporter's log".into()
    });
    let mut exporter = exporter;
    check.that(exporter.alive(), || "the exporter process died".into());
    drop(exporter);
    sim.shutdown().await;
    check.failures
}

/// An account whose base URL is a closed loopback port, next to a healthy one.
async fn run_unreachable() -> Vec<String> {
    let sim = start_sim().await;
    let pools = sim.pools();
    let cards = sim.cards();
    // held until the end of the row: nothing else may take the port
    let closed = closed_port();
    let dead_url = format!("http://127.0.0.1:{}", closed.port);
    let config = format!(
        "accounts:\n{}{}{}",
        config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools[..1],
            &cards[..1]
        ),
        config_for(
            "dead",
            &dead_url,
            "k",
            "dead-secret-value",
            &pools[1..2],
            &cards[1..2]
        ),
        collect_section("1h")
    );
    let exporter = Exporter::start(&config);
    let mut check = Check {
        row: "unreachable host",
        failures: Vec::new(),
    };
    let m = check
        .until(&exporter, "unreachable", |m| {
            every_kind(m, ("dead", &pools[1], &cards[1]), 0.0).map_err(|e| format!("dead {e}"))?;
            every_kind(m, ("sim", &pools[0], &cards[0]), 1.0).map_err(|e| format!("healthy {e}"))
        })
        .await;
    for (ep, _) in ENDPOINTS {
        let n = requests(&m, "dead", ep, "transport_error");
        // retried: more attempts than fetches (1 detail, 2 days, 2 months per target)
        check.that(n >= 2.0, || {
            let seen: Vec<String> = m
                .find(
                    "tibiot_api_requests_total",
                    &[("account", "dead"), ("endpoint", ep.name())],
                )
                .iter()
                .map(|s| format!("{}={}", s.labels["outcome"], s.value))
                .collect();
            format!(
                "{ep:?}: transport_error attempts = {n}, want retries (>= 2); counted: {seen:?}"
            )
        });
        let ok = requests(&m, "dead", ep, "success");
        check.that(ok == 0.0, || {
            format!("{ep:?}: {ok} successes on a closed port")
        });
    }
    let up_dead = m.value("tibiot_up", &[("account", "dead")]);
    check.that(up_dead == Some(0.0), || {
        format!("tibiot_up{{account=dead}} = {up_dead:?}, want 0")
    });
    let up_sim = m.value("tibiot_up", &[("account", "sim")]);
    check.that(up_sim == Some(1.0), || {
        format!("tibiot_up{{account=sim}} = {up_sim:?}, want 1")
    });
    check.that(!exporter.log_text().contains("dead-secret-value"), || {
        "the app secret appears in the exporter's log".into()
    });
    drop(exporter);
    sim.shutdown().await;
    drop(closed);
    check.failures
}

/// A fault that happens once is absorbed by the retry: the target reports success and the
/// simulator saw exactly two requests.
async fn run_transient(fault: Fault, name: &'static str) -> Vec<String> {
    let sim = start_sim().await;
    let pools = sim.pools();
    let cards = sim.cards();
    let config = format!(
        "accounts:\n{}{}",
        config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools[..1],
            &cards[..1]
        ),
        collect_section("1h")
    );
    sim.set_fault(
        FaultRule::new(fault)
            .endpoint(Endpoint::PoolDetail)
            .target(pools[0].clone())
            .times(1),
    );
    let exporter = Exporter::start(&config);
    let mut check = Check {
        row: name,
        failures: Vec::new(),
    };
    check
        .until(&exporter, "transient", |m| {
            let got = success(m, "pool", &pools[0]);
            if got == Some(1.0) {
                Ok(())
            } else {
                Err(format!(
                    "collect_success after one transient fault = {got:?}, want 1 (retried)"
                ))
            }
        })
        .await;
    let seen = sim.requests_for(Endpoint::PoolDetail, &pools[0]);
    check.that(seen == 2, || {
        format!("simulator saw {seen} pool detail requests, want 2")
    });
    drop(exporter);
    sim.shutdown().await;
    check.failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_class_against_every_endpoint() {
    let mut tasks = Vec::new();
    for row in ROWS {
        tasks.push(tokio::spawn(run_row(row)));
    }
    tasks.push(tokio::spawn(run_unreachable()));
    tasks.push(tokio::spawn(run_transient(
        Fault::Http500,
        "transient HTTP 500",
    )));
    tasks.push(tokio::spawn(run_transient(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        "transient 429",
    )));
    tasks.push(tokio::spawn(run_transient(
        Fault::ConnectionReset,
        "transient connection reset",
    )));
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(f) => failures.extend(f),
            Err(e) => failures.push(format!("a row panicked: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed expectation(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
