//! Upstream answers are bounded as data (docs/metrics.md, "Bounds"), shown with the real
//! binary against the simulator: a pool whose detail lists 100,000 distinct card statuses and
//! a pool with a 1 MiB name are exported within the bounds — at most 24 unknown statuses plus
//! `other` with every card accounted for, a name cut to 256 bytes with a marker and counted —
//! with one log line each, while every other pool of the account keeps
//! `tibiot_collect_success 1`.

mod exporter_support;

use exporter_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tibiot_api::Endpoint;
use tibiot_sim::{Fault, FaultRule, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pools_are_exported_within_the_bounds() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools();
    let (many, long) = (pools[1].clone(), pools[2].clone());
    let hostile = |target: &str, statuses, name_bytes| {
        FaultRule::new(Fault::HostilePool {
            statuses,
            name_bytes,
        })
        .target(target)
        .endpoint(Endpoint::PoolDetail)
    };
    // Both at once would not fit the client's 4 MiB answer cap (itself a bound): two pools.
    sim.set_fault(hostile(&many, 100_000, 16));
    sim.set_fault(hostile(&long, 3, 1 << 20));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tibiot-exporter.yml");
    let yaml = config_yaml(
        &sim,
        &pools,
        &[],
        "  timeout: 30s\n  history: {pool_days: 0, pool_months: 0}\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let pid = child.id();
    let _p = Proc(child);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let healthy = format!("http://127.0.0.1:{port}/-/healthy");
    let up = eventually(Duration::from_secs(30), || {
        let url = healthy.clone();
        async move { client().get(&url).send().await.is_ok() }
    })
    .await;
    assert!(up, "exporter did not come up");

    // CPU seconds of the exporter so far (user + system, in clock ticks of 1/100 s).
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let cpu_before = cpu();
    // The first scrape starts the fetches; scrape (generously) until every pool has a value.
    let all_ok = |s: &[Sample]| {
        find(s, "tibiot_collect_success", &[("kind", "pool")])
            .iter()
            .filter(|x| x.value == 1.0)
            .count()
            == pools.len()
    };
    let mut done = false;
    let mut text = String::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < end {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200);
        let s = parse(&body);
        text = body;
        if all_ok(&s) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = parse(&text);
    assert!(done, "not every pool was fetched:\n{text}");
    eprintln!(
        "CPU of the exporter from its first scrape to all {} pools fetched (two hostile): {:.3} s",
        pools.len(),
        cpu() - cpu_before
    );
    for p in &pools {
        let ok = [("kind", "pool"), ("target", p.as_str())];
        assert_eq!(value(&s, "tibiot_collect_success", &ok), Some(1.0), "{p}");
    }

    // 100,000 statuses: the seven known ones, the 24 lowest unknown codes, and `other`.
    let statuses = find(&s, "tibiot_pool_status_cards", &[("pool", many.as_str())]);
    assert_eq!(statuses.len(), 7 + 24 + 1, "{statuses:?}");
    let cards: f64 = statuses.iter().map(|x| x.value).sum();
    assert_eq!(cards, 100_000.0, "every card is counted once");
    let other = value(
        &s,
        "tibiot_pool_status_cards",
        &[("pool", many.as_str()), ("status", "other")],
    );
    assert_eq!(other, Some((100_000 - 7 - 24) as f64));
    assert!(!find(&s, "tibiot_pool_status_cards", &[("status", "code_2")]).is_empty());

    // A 1 MiB name: cut to 256 bytes at a character boundary, with the marker, escaped.
    let info = find(&s, "tibiot_pool_info", &[("pool", long.as_str())]);
    let name = &info[0].labels["name"];
    assert!(
        name.len() <= 256 && name.len() > 240,
        "{} bytes",
        name.len()
    );
    assert!(name.starts_with("\"\\池") && name.ends_with('…'), "{name}");
    let cut = [("account", "test"), ("kind", "pool")];
    assert!(value(&s, "tibiot_label_values_truncated_total", &cut) >= Some(1.0));
    let longest = s
        .iter()
        .flat_map(|x| x.labels.values())
        .map(String::len)
        .max();
    assert!(longest <= Some(256), "a label value of {longest:?} bytes");

    // One log line per hostile answer, naming the target and what was bounded.
    let line = |target: &str, what: &str| {
        let found = log.lock().unwrap().iter().any(|l| {
            l.contains("exceeds the exporter's bounds") && l.contains(target) && l.contains(what)
        });
        async move { found }
    };
    let logged = eventually(Duration::from_secs(30), || {
        let (a, b) = (
            line(&many, "folded_statuses=99969"),
            line(&long, "name:1048576"),
        );
        async move { a.await && b.await }
    })
    .await;
    assert!(
        logged,
        "bounds log lines:\n{}",
        log.lock().unwrap().join("\n")
    );

    let lint = promtool(&text);
    assert!(lint.is_empty(), "promtool check metrics: {lint}");
}
