//! Fault injection (issue 7): every fault class of the simulator — latency beyond the
//! deadline, HTTP 500, 429 with `Retry-After`, business errors, malformed JSON, truncated JSON,
//! a connection reset, an oversized body — against every endpoint the exporter reads (pool
//! detail, pool day usage, pool month usage, card detail, card day usage, card month usage),
//! plus an unreachable host. The exporter is the real binary (a child process); the
//! simulator runs in the test and injects the faults. Table-driven: one row per fault class,
//! all rows run concurrently.
//!
//! For each row, three phases:
//! 1. one target per endpoint has that endpoint fail: the scrape still answers 200 within the
//!    deadline plus a margin; exactly the affected (kind, target) reports
//!    `tibiot_collect_success 0` and the other kind of the same target and the control
//!    targets report 1; `tibiot_api_requests_total{endpoint,outcome}` counts the right outcome
//!    class; the simulator's counters show retries for retryable classes and a single
//!    request for the others;
//! 2. faults cleared: everything recovers (`tibiot_collect_success 1`, `tibiot_up 1`);
//! 3. every request of the account fails: `tibiot_up 0`, every detail reports 0, the last
//!    good values are still served (within `stale_after`), and the scrape still answers 200.
//!
//! The exporter process must be alive at the end and its log must not hold the app secret.

mod fault_support;

use fault_support::{Exporter, Metrics, closed_port, config_for, http, scrape};
use std::time::Duration;
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
    /// The fault outlives the deadline: the outcome is counted once the fetch gives up,
    /// after the scrape answered.
    slow: bool,
}

const ROWS: &[Row] = &[
    Row {
        name: "latency beyond the deadline",
        fault: Fault::Slow(Duration::from_secs(8)),
        outcome: "timeout",
        retryable: false,
        slow: true,
    },
    Row {
        name: "HTTP 500",
        fault: Fault::Http500,
        outcome: "http_error",
        retryable: true,
        slow: false,
    },
    Row {
        name: "429 with Retry-After",
        fault: Fault::RateLimited {
            retry_after_secs: 1,
        },
        outcome: "rate_limited",
        retryable: true,
        slow: false,
    },
    Row {
        name: "business error",
        fault: Fault::BusinessError,
        outcome: "api_error",
        retryable: false,
        slow: false,
    },
    Row {
        name: "malformed JSON",
        fault: Fault::Malformed,
        outcome: "decode_error",
        retryable: false,
        slow: false,
    },
    Row {
        name: "truncated JSON",
        fault: Fault::Truncated,
        outcome: "decode_error",
        retryable: false,
        slow: false,
    },
    Row {
        name: "connection reset",
        fault: Fault::ConnectionReset,
        outcome: "transport_error",
        retryable: true,
        slow: false,
    },
    Row {
        name: "oversized body",
        fault: Fault::Oversized,
        outcome: "decode_error",
        retryable: false,
        slow: false,
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
fn collect_section() -> String {
    format!(
        "collect:\n  timeout: {}ms\n  timeout_offset: 500ms\n  concurrency: 32\n  requests_per_second: 0\n  pool_ttl: 1s\n  card_ttl: 1s\n  history_ttl: 1s\n  stale_after: 1h\n  history: {{pool_days: 2, pool_months: 2, card_days: 2, card_months: 2}}\n",
        DEADLINE.as_millis()
    )
}

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

    /// Every kind (detail and history) of `pool` and `card` of `account` reports
    /// `tibiot_collect_success` = `want`; `who` names them in a failure.
    fn every_kind(
        &mut self,
        m: &Metrics,
        who: &str,
        (account, pool, card): (&str, &str, &str),
        want: f64,
    ) {
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
            self.that(got == Some(want), || {
                format!("{who} {kind} {t}: collect_success = {got:?}, want {want}")
            });
        }
    }
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
    let config = format!(
        "accounts:\n{}{}",
        config_for(
            "sim",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools,
            &cards
        ),
        collect_section()
    );
    let exporter = Exporter::start(&config);
    let client = http();
    let mut check = Check {
        row: row.name,
        failures: Vec::new(),
    };

    // Phase 1: one target per endpoint fails.
    for (i, (ep, _)) in ENDPOINTS.iter().enumerate() {
        sim.set_fault(FaultRule::new(row.fault).endpoint(*ep).target(affected(i)));
    }
    let (status, body, took) = scrape(&client, &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("phase 1 status {status}"));
    check.that(took < DEADLINE + MARGIN, || {
        format!("phase 1 scrape took {took:?}")
    });
    let m = Metrics::parse(&body);
    for (i, (ep, kind)) in ENDPOINTS.iter().enumerate() {
        let t = affected(i);
        let got = success(&m, kind, &t);
        check.that(got == Some(0.0), || {
            format!("{ep:?} fault: collect_success{{kind={kind},target={t}}} = {got:?}, want 0")
        });
        // the other kind of the same target is unaffected
        let other = match *kind {
            "pool" => "pool_history",
            "pool_history" => "pool",
            "card" => "card_history",
            _ => "card",
        };
        let got = success(&m, other, &t);
        check.that(got == Some(1.0), || {
            format!("{ep:?} fault: collect_success{{kind={other},target={t}}} = {got:?}, want 1")
        });
        if !row.slow {
            let n = requests(&m, "sim", *ep, row.outcome);
            check.that(n >= 1.0, || {
                format!(
                    "{ep:?}: tibiot_api_requests_total{{outcome={}}} = {n}, want >= 1",
                    row.outcome
                )
            });
        }
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
    check.every_kind(&m, "control", ("sim", &pools[3], &cards[3]), 1.0);
    // The control pool's values are there.
    check.that(
        m.value(
            "tibiot_pool_used_bytes",
            &[("account", "sim"), ("pool", &pools[3])],
        )
        .is_some(),
        || "control pool has no tibiot_pool_used_bytes".into(),
    );

    // Phase 2: faults cleared; a slow fetch is first left to give up.
    sim.clear_faults();
    if row.slow {
        tokio::time::sleep(DEADLINE + Duration::from_millis(700)).await;
    }
    let (status, body, _) = scrape(&client, &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("phase 2 status {status}"));
    let m = Metrics::parse(&body);
    for (i, (ep, kind)) in ENDPOINTS.iter().enumerate() {
        let t = affected(i);
        let got = success(&m, kind, &t);
        check.that(got == Some(1.0), || {
            format!("after recovery: collect_success{{kind={kind},target={t}}} = {got:?}, want 1")
        });
        if row.slow {
            let n = requests(&m, "sim", *ep, row.outcome);
            check.that(n >= 1.0, || {
                format!(
                    "{ep:?}: tibiot_api_requests_total{{outcome={}}} = {n} after the fetch gave up, want >= 1",
                    row.outcome
                )
            });
        }
    }
    let up = m.value("tibiot_up", &[("account", "sim")]);
    check.that(up == Some(1.0), || {
        format!("after recovery: tibiot_up = {up:?}, want 1")
    });

    // Phase 3: every request of the account fails (after the TTLs have passed).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_fault(FaultRule::new(row.fault));
    let (status, body, took) = scrape(&client, &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("phase 3 status {status}"));
    check.that(took < DEADLINE + MARGIN, || {
        format!("phase 3 scrape took {took:?}")
    });
    let m = Metrics::parse(&body);
    for p in &pools {
        let got = success(&m, "pool", p);
        check.that(got == Some(0.0), || {
            format!("all failing: collect_success{{kind=pool,target={p}}} = {got:?}, want 0")
        });
        let used = m.value("tibiot_pool_used_bytes", &[("account", "sim"), ("pool", p)]);
        check.that(used.is_some(), || {
            format!("all failing: pool {p} lost its last good values before stale_after")
        });
    }
    for c in &cards {
        let got = success(&m, "card", c);
        check.that(got == Some(0.0), || {
            format!("all failing: collect_success{{kind=card,target={c}}} = {got:?}, want 0")
        });
    }
    if row.slow {
        tokio::time::sleep(DEADLINE).await;
    }
    // tibiot_up follows the latest finished request.
    let (status, body, _) = scrape(&client, &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("phase 3b status {status}"));
    let up = Metrics::parse(&body).value("tibiot_up", &[("account", "sim")]);
    check.that(up == Some(0.0), || {
        format!("all failing: tibiot_up = {up:?}, want 0")
    });

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
        collect_section()
    );
    let exporter = Exporter::start(&config);
    let client = http();
    let mut check = Check {
        row: "unreachable host",
        failures: Vec::new(),
    };
    let (status, body, took) = scrape(&client, &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("status {status}"));
    check.that(took < DEADLINE + MARGIN, || format!("scrape took {took:?}"));
    let m = Metrics::parse(&body);
    check.every_kind(&m, "dead", ("dead", &pools[1], &cards[1]), 0.0);
    check.every_kind(&m, "healthy", ("sim", &pools[0], &cards[0]), 1.0);
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
        collect_section()
    );
    let exporter = Exporter::start(&config);
    sim.set_fault(
        FaultRule::new(fault)
            .endpoint(Endpoint::PoolDetail)
            .target(pools[0].clone())
            .times(1),
    );
    let mut check = Check {
        row: name,
        failures: Vec::new(),
    };
    let (status, body, _) = scrape(&http(), &exporter.url("/metrics"), &[]).await;
    check.that(status == 200, || format!("status {status}"));
    let m = Metrics::parse(&body);
    let got = success(&m, "pool", &pools[0]);
    check.that(got == Some(1.0), || {
        format!("collect_success after one transient fault = {got:?}, want 1 (retried)")
    });
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
