//! Shared by the fault-injection and load suites: runs the real `tibiot-exporter` binary as a
//! child process (bound to a free loopback port, killed on drop, its log kept), scrapes it
//! over HTTP, parses the text exposition, and reads the process's memory from /proc.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running exporter process.
pub struct Exporter {
    child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Writes `config` to a temporary file and starts the binary on `127.0.0.1:0`; waits
    /// (at most 30 s) for the "listening" log line with the bound address.
    pub fn start(config: &str) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tibiot-exporter.yml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tibiot-exporter"))
            .arg(format!("--config.file={}", path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.format=json")
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tibiot-exporter");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_address(&line)
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "exporter did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Exporter {
            child,
            addr,
            log,
            config: path,
            _dir: dir,
        }
    }

    /// Replaces the configuration file with `config` and reloads it (`POST /-/reload`);
    /// panics unless the reload succeeds.
    pub async fn reload_with(&self, config: &str) {
        std::fs::write(&self.config, config).expect("write config");
        let r = http()
            .post(self.url("/-/reload"))
            .send()
            .await
            .expect("reload answered");
        assert_eq!(r.status().as_u16(), 200, "reload: {:?}", r.text().await);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `listening` log line (JSON or logfmt).
fn listening_address(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        let a = v
            .get("fields")
            .and_then(|f| f.get("address"))
            .or_else(|| v.get("address"))?;
        return a.as_str().map(str::to_owned);
    }
    let i = line.find("address=")?;
    Some(
        line[i + 8..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

/// A loopback port that refuses connections: bound but never listening, and held for as
/// long as the value lives so that no other socket (a simulator or exporter of a test
/// running at the same time) can take the port and answer in its place.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    ClosedPort {
        _socket: socket,
        port,
    }
}

/// An HTTP client for scraping (no proxy, bounded).
pub fn http() -> reqwest::Client {
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// One scrape: status, body, how long it took.
pub async fn scrape(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("scrape answered");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("scrape body");
    (status, body, started.elapsed())
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text (0.0.4 or OpenMetrics) exposition.
#[derive(Debug, Default)]
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i..]),
                None => {
                    let mut it = line.splitn(2, ' ');
                    (it.next().unwrap_or(""), it.next().unwrap_or(""))
                }
            };
            let (labels, value) = if rest.starts_with('{') {
                let end = label_end(rest).unwrap_or_else(|| panic!("bad line {line:?}"));
                (parse_labels(&rest[1..end]), rest[end + 1..].trim())
            } else {
                (BTreeMap::new(), rest.trim())
            };
            let v = value.split_whitespace().next().unwrap_or("");
            let value = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                _ => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            out.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Metrics(out)
    }

    /// Samples named `name` whose labels include all of `want`.
    pub fn find<'a>(&'a self, name: &'a str, want: &'a [(&'a str, &'a str)]) -> Vec<&'a Sample> {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with labels `want`.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, want);
        assert!(
            found.len() <= 1,
            "{name}{want:?} is ambiguous: {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// The sum over samples named `name` with labels `want` (0 when none).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).iter().map(|s| s.value).sum()
    }
}

fn label_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut in_str = false;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'}' if !in_str => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut val = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c2)) => val.push(c2),
                    None => {}
                },
                '"' => {
                    end = i;
                    break;
                }
                c => val.push(c),
            }
        }
        out.insert(name, val);
        rest = &body[(end + 1).min(body.len())..];
    }
    out
}

/// Resident memory of a process, KiB: (VmRSS, VmHWM).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An exporter configuration for one simulator account (`sim`), with `collect:` lines.
pub fn config_for(
    name: &str,
    base_url: &str,
    key: &str,
    secret: &str,
    pools: &[String],
    cards: &[String],
) -> String {
    format!(
        "  - name: {name}\n    base_url: {base_url}\n    app_key: \"{key}\"\n    app_secret: \"{secret}\"\n    pools: [{}]\n    cards: [{}]\n",
        pools.join(", "),
        cards
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
