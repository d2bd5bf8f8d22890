//! `backfill` through the real binary against the simulator, imported with the real
//! `promtool tsdb create-blocks-from openmetrics`, and read back from the created blocks with
//! `promtool tsdb dump`: every sample equals the simulator's history, stamped at the end of
//! its day or month on the API calendar.

mod cli_support;

use chrono::Utc;
use cli_support::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tibiot_api::Endpoint;
use tibiot_api::calendar::{ApiCalendar, Month, parse_day};
use tibiot_sim::{Fault, FaultRule, SimOptions};

fn promtool() -> Option<&'static str> {
    let ok = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some("promtool")
}

async fn tool(args: &[&str]) -> (i32, String, String) {
    let child = tokio::process::Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("promtool finishes in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads a Go-quoted string at the start of `s`; returns it and the rest.
fn quoted(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    assert_eq!(chars.next().map(|c| c.1), Some('"'), "{s}");
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|c| c.1) {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => panic!("bad escape in {s}"),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated string in {s}")
}

/// One series of `promtool tsdb dump`: `{__name__="m", a="b"} value timestamp_ms`.
fn parse_dump_line(line: &str) -> (BTreeMap<String, String>, f64, i64) {
    let mut rest = line.strip_prefix('{').expect("starts with {");
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
            break;
        }
        let (name, r) = rest.split_once('=').expect("name=value");
        let (value, r) = quoted(r);
        labels.insert(name.to_owned(), value);
        rest = r;
    }
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next().unwrap().parse().unwrap();
    let ts: i64 = parts.next().unwrap().parse().unwrap();
    (labels, value, ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_imports_with_promtool_and_reads_back_the_simulators_history() {
    if promtool().is_none() {
        eprintln!(
            "SKIPPED: promtool is not installed (CI installs it with the prometheus package)"
        );
        return;
    }
    let sim = sim(SimOptions {
        pools: 3,
        cards: 6,
        ..fast()
    })
    .await;
    // Stop the world clock: the values served stay what the expectations read.
    sim.freeze_clock(Some(Utc::now()));
    let pools = sim.pools();
    let cards = sim.cards();
    let s = config(
        &sim,
        &pools,
        &cards,
        "  history:\n    card_days: 4\n    card_months: 2\n",
    );
    let started = std::time::Instant::now();
    let r = run(Some(&s.config), &["backfill"]).await;
    let took = started.elapsed();
    r.expect(0);
    no_secret(&sim, &r);
    assert!(r.stdout.ends_with("# EOF\n"));
    assert!(
        r.stdout
            .contains("# TYPE tibiot_pool_daily_usage_bytes gauge")
    );
    let om = s.dir.path().join("backfill.om");
    std::fs::write(&om, &r.stdout).unwrap();
    let blocks = s.dir.path().join("blocks");
    // The command of the README: blocks of up to a year (promtool picks 4374 h, about six
    // months), instead of one per 2 h range of the input.
    let (code, out, err) = tool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--max-block-duration=8760h",
        om.to_str().unwrap(),
        blocks.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "promtool refused the backfill:\n{out}\n{err}");
    let made = std::fs::read_dir(&blocks)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    // Eleven months and 29 days of samples span at most three aligned six-month ranges.
    assert!((1..=3).contains(&made), "{made} blocks:\n{out}");
    eprintln!("promtool made {made} blocks of 30 days and 12 months of history");
    // promtool 2.42's dump reads a WAL folder even when there is none to read.
    std::fs::create_dir_all(blocks.join("wal")).unwrap();
    let (code, dump, err) = tool(&["tsdb", "dump", blocks.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");

    let cal = ApiCalendar::default();
    let mut got: BTreeMap<(String, String, String), (f64, i64)> = BTreeMap::new();
    for line in dump.lines().filter(|l| l.starts_with('{')) {
        let (labels, value, ts) = parse_dump_line(line);
        assert_eq!(labels["account"], "main");
        let name = labels["__name__"].clone();
        let target = labels.get("pool").or(labels.get("iccid")).unwrap().clone();
        let period = labels.get("date").or(labels.get("month")).unwrap().clone();
        assert_eq!(labels.len(), 4, "{labels:?}");
        assert!(
            got.insert((name, target, period), (value, ts)).is_none(),
            "one sample per series"
        );
    }

    // Every sample equals the simulator's history, stamped at the end of its period.
    let now_ms = Utc::now().timestamp_millis();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for ((name, target, period), (value, ts)) in &got {
        let (kb, end) = match name.as_str() {
            "tibiot_pool_daily_usage_bytes" | "tibiot_card_daily_usage_bytes" => {
                let d = parse_day(period).unwrap();
                let kb = if name.starts_with("tibiot_pool") {
                    sim.pool_day_usage_kb(target, d)
                } else {
                    sim.card_day_usage_kb(target, d)
                };
                (kb.unwrap(), cal.day_end(d))
            }
            "tibiot_pool_monthly_usage_bytes" | "tibiot_card_monthly_usage_bytes" => {
                let m = Month::parse(period).unwrap();
                let kb = if name.starts_with("tibiot_pool") {
                    sim.pool_month_usage_kb(target, m)
                } else {
                    sim.card_month_usage_kb(target, m)
                };
                (kb.unwrap(), cal.month_end(m))
            }
            other => panic!("unexpected metric {other}"),
        };
        assert_eq!(*value, kb as f64 * 1024.0, "{name} {target} {period}");
        assert_eq!(*ts, end * 1000, "{name} {target} {period}");
        assert!(
            *ts <= now_ms,
            "{name} {target} {period} is stamped in the future"
        );
        *count
            .entry(match name.as_str() {
                "tibiot_pool_daily_usage_bytes" => "pool_daily",
                "tibiot_pool_monthly_usage_bytes" => "pool_monthly",
                "tibiot_card_daily_usage_bytes" => "card_daily",
                _ => "card_monthly",
            })
            .or_default() += 1;
    }
    // Closed periods of the windows: 30 days → 29, 12 months → 11; cards 4 → 3 days, 2 → 1 month.
    assert_eq!(count["pool_daily"], 3 * 29, "{count:?}");
    assert_eq!(count["pool_monthly"], 3 * 11, "{count:?}");
    assert_eq!(count["card_daily"], 6 * 3, "{count:?}");
    assert_eq!(count["card_monthly"], 6, "{count:?}");
    // Not one day or month missing in a target's window: consecutive, up to yesterday.
    let today = sim.today();
    for p in &pools {
        let days: Vec<&String> = got
            .keys()
            .filter(|(n, t, _)| n == "tibiot_pool_daily_usage_bytes" && t == p)
            .map(|(_, _, d)| d)
            .collect();
        let last = parse_day(days.last().unwrap()).unwrap();
        assert!(
            last >= today - chrono::Duration::days(1) && last <= today,
            "{last}"
        );
        for w in days.windows(2) {
            assert_eq!(
                parse_day(w[1]).unwrap() - parse_day(w[0]).unwrap(),
                chrono::Duration::days(1)
            );
        }
    }
    eprintln!(
        "backfill of {} pools and {} cards: {} samples in {:.2}s; {}",
        pools.len(),
        cards.len(),
        got.len(),
        took.as_secs_f64(),
        r.stderr.trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_windows_accounts_and_failures() {
    let sim = sim(SimOptions {
        pools: 2,
        cards: 2,
        ..fast()
    })
    .await;
    sim.freeze_clock(Some(Utc::now()));
    let pools = sim.pools();
    let s = config(&sim, &pools, &sim.cards(), "");
    // Nothing asked: an empty but valid document.
    let r = run(Some(&s.config), &["backfill", "--days=0", "--months=0"]).await;
    r.expect(0);
    assert_eq!(r.stdout, "# EOF\n");
    assert_eq!(sim.total_requests(), 0);
    // Card history is off in the configuration: only pools, 2 pools × (6 closed days + 2 closed months).
    let r = run(
        Some(&s.config),
        &["backfill", "--days=7", "--months=3", "--account=main"],
    )
    .await;
    r.expect(0);
    let samples: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples.len(), 2 * (6 + 2), "{}", r.stdout);
    assert!(!r.stdout.contains("tibiot_card_"));
    assert_eq!(sim.requests(Endpoint::PoolDayUsage), 12);
    assert_eq!(sim.requests(Endpoint::PoolMonthUsage), 4);
    // Unknown account: bad usage.
    let r = run(Some(&s.config), &["backfill", "--account=nope"]).await;
    r.expect(2);
    // One pool's day usage keeps failing: exit 1, the rest is still written, valid.
    sim.set_fault(
        FaultRule::new(Fault::BusinessError)
            .target(pools[0].clone())
            .endpoint(Endpoint::PoolDayUsage),
    );
    let r = run(Some(&s.config), &["backfill", "--days=3", "--months=2"]).await;
    r.expect(1);
    assert!(r.stdout.ends_with("# EOF\n"));
    let samples: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples.len(), 4, "{}", r.stdout);
    assert!(!r.stdout.contains(&format!("pool=\"{}\",date", pools[0])));
    assert!(
        r.stderr.contains("code=5000") && r.stderr.contains(&pools[0]),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 of 6 requests failed"), "{}", r.stderr);
}

/// `name{labels}` → value, for the four history families of an exposition text.
fn history_series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| {
            l.starts_with("tibiot_pool_daily_usage_bytes{")
                || l.starts_with("tibiot_pool_monthly_usage_bytes{")
                || l.starts_with("tibiot_card_daily_usage_bytes{")
                || l.starts_with("tibiot_card_monthly_usage_bytes{")
        })
        .map(|l| {
            let end = l.rfind('}').expect("labels end");
            let value = l[end + 1..].split_whitespace().next().unwrap();
            (l[..=end].to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_series_are_the_live_exporters_series() {
    let sim = sim(SimOptions {
        pools: 2,
        cards: 2,
        ..fast()
    })
    .await;
    sim.freeze_clock(Some(Utc::now()));
    let s = config(
        &sim,
        &sim.pools(),
        &sim.cards(),
        "  history:\n    card_days: 5\n    card_months: 3\n",
    );
    let r = run(Some(&s.config), &["backfill"]).await;
    r.expect(0);
    let backfilled = history_series(&r.stdout);
    assert_eq!(backfilled.len(), 2 * (29 + 11) + 2 * (4 + 2));

    // The exporter itself (its router, served in this process), on the same configuration
    // and simulator.
    let config = tibiot_exporter::config::Config::load(&s.config).expect("valid configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tibiot_exporter::http::App::new(config, None).expect("the exporter starts");
    let router = tibiot_exporter::http::router(app);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    // History arrives over a few scrapes at most (each bounded by collect.timeout).
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    tibiot_api::client::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut live = BTreeMap::new();
    for _ in 0..20 {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        live = history_series(&text);
        if backfilled.keys().all(|k| live.contains_key(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The backfill's families carry the exporter's own help text.
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.abort();
    let helps = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# HELP tibiot_") && l.contains("ly_usage_bytes "))
            .map(str::to_owned)
            .collect()
    };
    let backfill_helps = helps(&r.stdout);
    assert_eq!(backfill_helps.len(), 4, "{backfill_helps:?}");
    for h in &backfill_helps {
        assert!(helps(&text).contains(h), "{h} is not the exporter's");
    }
    for (series, value) in &backfilled {
        assert_eq!(live.get(series), Some(value), "{series}");
    }
    // What the live exporter has beyond the backfill is today and this month only.
    let today = tibiot_api::calendar::format_day(sim.today());
    let month = Month::of(sim.today()).to_string();
    for series in live.keys().filter(|k| !backfilled.contains_key(*k)) {
        assert!(
            series.contains(&format!("date=\"{today}\""))
                || series.contains(&format!("month=\"{month}\"")),
            "{series} is live but not backfilled"
        );
    }
}
