//! A real Prometheus (Debian's `prometheus`) scrapes the exporter — negotiating OpenMetrics,
//! as Prometheus does by default — and reports `up == 1` with the samples stored; the text
//! format passes `promtool check metrics`.

mod exporter_support;

use exporter_support::*;
use std::process::{Command, Stdio};
use std::time::Duration;
use tibiot_sim::SimOptions;

async fn query(prom: &str, q: &str) -> Option<Vec<serde_json::Value>> {
    let r = client()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["data"]["result"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_exporter() {
    let sim = sim(SimOptions::default()).await;
    let yaml = config_yaml(&sim, &sim.pools(), &sim.cards(), "");
    let server = Server::start(&yaml, None).await;
    let text = get(&server.url("/metrics")).await.1;
    let lint = promtool(&text);
    assert!(lint.is_empty(), "promtool: {lint}");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tibiot\n    static_configs:\n      - targets: ['{}']\n",
            server.addr
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed");
    let _prom = Proc(child);
    let prom = format!("http://127.0.0.1:{port}");

    let up = eventually(Duration::from_secs(60), || {
        let prom = prom.clone();
        async move {
            query(&prom, "up{job=\"tibiot\"}")
                .await
                .and_then(|r| r.first().cloned())
                .is_some_and(|s| s["value"][1] == "1")
        }
    })
    .await;
    assert!(up, "Prometheus never saw up == 1");
    // The samples arrived: every pool's usage and one status series at 1 per card.
    let pools = query(&prom, "count(tibiot_pool_used_bytes)").await.unwrap();
    assert_eq!(pools[0]["value"][1], sim.pools().len().to_string());
    let on = query(&prom, "count(tibiot_card_status == 1)")
        .await
        .unwrap();
    assert_eq!(on[0]["value"][1], sim.cards().len().to_string());
    let info = query(&prom, "count(tibiot_pool_info)").await.unwrap();
    assert_eq!(info[0]["value"][1], sim.pools().len().to_string());
    // The target reports no scrape error (OpenMetrics was parsed cleanly).
    let targets: serde_json::Value = client()
        .get(format!("{prom}/api/v1/targets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &targets["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "", "{t}");
}
