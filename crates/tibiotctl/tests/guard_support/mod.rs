//! Shared helpers of the guard tests: a simulator in the test process, the exporter's
//! configuration and a guard file in a temporary folder, the real `tibiotctl guard` binary on
//! a loopback port (its address read from its "listening" log line), webhook messages shaped
//! like Alertmanager's, and bounded waits.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tibiot_api::Endpoint;
use tibiot_sim::{SimHandle, SimOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_tibiotctl");

/// Generous bound of every wait (a loaded 2-core machine).
pub const WAIT: Duration = Duration::from_secs(90);

pub async fn sim() -> SimHandle {
    SimHandle::start(
        SimOptions {
            batch_step: Duration::from_millis(100),
            ..SimOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts")
}

/// Cards of the simulator in the normal state (status 8), which a network operation switches.
pub fn normal_cards(sim: &SimHandle) -> Vec<String> {
    sim.cards()
        .into_iter()
        .filter(|c| sim.card_detail(c).unwrap().card_status == Some(8))
        .collect()
}

pub fn status(sim: &SimHandle, iccid: &str) -> i64 {
    sim.card_detail(iccid).unwrap().card_status.unwrap()
}

pub fn network_requests(sim: &SimHandle) -> u64 {
    sim.requests(Endpoint::CardNetwork)
}

/// A folder with `tibiot-exporter.yml` (account `main` on the simulator) and `guard.yml`.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub guard: PathBuf,
}

impl Files {
    pub fn new(sim: &SimHandle, guard_yaml: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tibiot-exporter.yml");
        std::fs::write(
            &config,
            format!(
                "accounts:\n  - name: main\n    base_url: {}\n    app_key: {}\n    app_secret: {}\n    pools: [POOL-0001]\ncollect:\n  requests_per_second: 0\n",
                sim.base_url(),
                sim.app_key(),
                sim.app_secret()
            ),
        )
        .unwrap();
        let guard = dir.path().join("guard.yml");
        std::fs::write(&guard, guard_yaml).unwrap();
        Files { dir, config, guard }
    }

    pub fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The audit log's records.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    pub fn write_guard(&self, yaml: &str) {
        std::fs::write(&self.guard, yaml).unwrap();
    }
}

/// A guard file: `mode`, one policy `runaway` on alertname TibiotCardRunaway, and `extra`
/// appended (limits, protect, more policies).
pub fn guard_yaml(mode: &str, reenable: bool, extra: &str) -> String {
    format!(
        "mode: {mode}\npolicies:\n  - name: runaway\n    match: {{alertname: TibiotCardRunaway}}\n    action: disable\n    reenable_on_resolve: {reenable}\naudit_log: audit.jsonl\n{extra}"
    )
}

/// A running `tibiotctl guard`.
pub struct Guard {
    child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tibiotctl guard` to completion (for start-up failures): (exit code, stderr).
pub fn run_to_exit(files: &Files, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("guard")
        .arg(format!("--config.file={}", files.config.display()))
        .arg(format!("--guard.file={}", files.guard.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Guard {
    /// Starts the guard on 127.0.0.1:0 and waits for its "listening" line.
    pub fn start(files: &Files, extra: &[&str]) -> Guard {
        let mut child = Command::new(BIN)
            .arg("guard")
            .arg(format!("--config.file={}", files.config.display()))
            .arg(format!("--guard.file={}", files.guard.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--wait-timeout=60s")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("msg=listening")
                    && let Some(t) = tx.take()
                {
                    let addr = line
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("address="))
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_owned();
                    let _ = t.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the guard did not start listening:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
        Guard {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn stop(mut self) -> i32 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(tokio::time::Instant::now() < end, "the guard did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post(&self, path: &str, body: String) -> (u16, String) {
        let r = client()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        (code, r.text().await.unwrap_or_default())
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap()
    }

    /// A sample's value (0 when absent): `name` with every `labels` pair.
    pub async fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.metrics().await, name, labels)
    }

    /// Waits until `name{labels}` reaches `want`.
    pub async fn wait_for(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.value(name, labels).await;
            if v == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{name}{labels:?} = {v}, want {want}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `tibiot_guard_decisions_total` of the policy, action and outcome.
    pub async fn decisions(&self, policy: &str, action: &str, outcome: &str) -> f64 {
        self.value(
            "tibiot_guard_decisions_total",
            &[("policy", policy), ("action", action), ("outcome", outcome)],
        )
        .await
    }

    pub async fn wait_decisions(&self, policy: &str, action: &str, outcome: &str, want: f64) {
        self.wait_for(
            "tibiot_guard_decisions_total",
            &[("policy", policy), ("action", action), ("outcome", outcome)],
            want,
        )
        .await
    }
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a bundled TLS provider; the client library installs ring's.
    tibiot_api::client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

/// The value of the sample `name` carrying every pair of `labels` (0 when absent).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// One alert as Alertmanager puts it in a webhook message.
#[derive(Debug, Clone)]
pub struct Alert {
    pub alertname: String,
    pub account: String,
    pub iccid: String,
    pub fingerprint: String,
    pub starts_at: String,
    pub firing: bool,
}

impl Alert {
    pub fn runaway(iccid: &str, fingerprint: &str) -> Alert {
        Alert {
            alertname: "TibiotCardRunaway".into(),
            account: "main".into(),
            iccid: iccid.into(),
            fingerprint: fingerprint.into(),
            starts_at: "2026-03-01T10:00:00.123Z".into(),
            firing: true,
        }
    }

    pub fn resolved(mut self) -> Alert {
        self.firing = false;
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": if self.firing { "firing" } else { "resolved" },
            "labels": {
                "alertname": self.alertname,
                "account": self.account,
                "iccid": self.iccid,
                "severity": "critical",
                "job": "tibiot",
                "instance": "exporter:9869",
            },
            "annotations": {"summary": "A card uses data far faster than usual."},
            "startsAt": self.starts_at,
            "endsAt": if self.firing { "0001-01-01T00:00:00Z" } else { "2026-03-01T11:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": self.fingerprint,
        })
    }
}

/// A webhook message (version 4) holding `alerts`.
pub fn message(alerts: &[Alert]) -> String {
    let firing = alerts.iter().any(|a| a.firing);
    serde_json::json!({
        "receiver": "tibiot-guard",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts.iter().map(Alert::json).collect::<Vec<_>>(),
        "groupLabels": {"alertname": "TibiotCardRunaway"},
        "commonLabels": {"alertname": "TibiotCardRunaway"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}/{alertname=\"TibiotCardRunaway\"}:{alertname=\"TibiotCardRunaway\"}",
        "truncatedAlerts": 0,
    })
    .to_string()
}

/// Waits until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every card's status, to compare before and after.
pub fn statuses(sim: &SimHandle) -> Vec<(String, i64)> {
    sim.cards()
        .into_iter()
        .map(|c| {
            let s = status(sim, &c);
            (c, s)
        })
        .collect()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A webhook message holding one alert.
pub fn one(alert: &Alert) -> String {
    message(std::slice::from_ref(alert))
}
