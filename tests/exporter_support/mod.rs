//! Shared helpers of the exporter tests: a real simulator, the real router served on
//! 127.0.0.1:0 with a configuration parsed through the real config path, and a small parser of
//! the text exposition.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tibiot_exporter::config::Config;
use tibiot_exporter::http::{App, Loader, Shard, router};
use tibiot_sim::{SimHandle, SimOptions};

/// A simulator on a free loopback port.
pub async fn sim(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Configuration YAML for `sim` with every pool and card (or the given ones) and `collect`
/// (an indented block of `collect:` keys, may be empty).
pub fn config_yaml(sim: &SimHandle, pools: &[String], cards: &[String], collect: &str) -> String {
    let list = |v: &[String]| serde_json::to_string(v).unwrap();
    format!(
        "accounts:\n  - name: test\n    base_url: {}\n    app_key: {}\n    app_secret: {}\n    pools: {}\n    cards: {}\ncollect:\n  requests_per_second: 0\n{collect}",
        serde_json::to_string(&sim.base_url()).unwrap(),
        serde_json::to_string(sim.app_key()).unwrap(),
        serde_json::to_string(sim.app_secret()).unwrap(),
        list(pools),
        list(cards),
    )
}

/// The exporter's router, served in this process.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(yaml: &str, loader: Option<Loader>) -> Server {
        let config = Config::parse(yaml, Path::new(".")).expect("valid test configuration");
        Self::start_config(config, loader).await
    }

    pub async fn start_config(config: Config, loader: Option<Loader>) -> Server {
        Self::start_app(App::new(config, loader).expect("the exporter starts")).await
    }

    /// One shard (`shard` of `total`) of the exporter of `yaml`.
    pub async fn start_shard(yaml: &str, shard: u32, total: u32) -> Server {
        let config = Config::parse(yaml, Path::new(".")).expect("valid test configuration");
        let shard = Shard::new(shard, total).expect("valid shard");
        Self::start_app(App::sharded(config, None, shard).expect("the exporter starts")).await
    }

    async fn start_app(app: Arc<App>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = router(app.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, r).await;
        });
        Server { addr, app, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn client() -> reqwest::Client {
    // reqwest's TLS takes the process's rustls provider
    tibiot_api::client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_gzip()
        .build()
        .unwrap()
}

/// Scrapes `/metrics` of `server` until nothing is pending (every due fetch, the history
/// backfill included, has completed; at most 90 s) and returns that body.
pub async fn settled(server: &Server) -> String {
    settled_at(&server.url("/metrics")).await
}

/// [`settled`] for any exporter's `/metrics` URL (e.g. a child process of the real binary).
pub async fn settled_at(metrics_url: &str) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, text) = get(metrics_url).await;
        assert_eq!(status, 200);
        let s = parse(&text);
        let pending = find(&s, "tibiot_collect_pending_targets", &[]);
        if !pending.is_empty() && pending.iter().all(|x| x.value == 0.0) {
            return text;
        }
        assert!(
            std::time::Instant::now() < end,
            "still pending after 90 s: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET `url` and return the status and body.
pub async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the samples of a text (or OpenMetrics) exposition, unescaping label values.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("bad line {line:?}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut key = String::new();
            let end;
            loop {
                let (i, c) = chars.next().expect("unterminated labels");
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "in {line:?}");
                        let mut val = String::new();
                        loop {
                            let (_, c) = chars.next().expect("unterminated value");
                            match c {
                                '\\' => match chars.next().map(|x| x.1) {
                                    Some('n') => val.push('\n'),
                                    Some('\\') => val.push('\\'),
                                    Some('"') => val.push('"'),
                                    other => panic!("bad escape {other:?} in {line:?}"),
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), val);
                    }
                    c => key.push(c),
                }
            }
            rest = &r[end..];
        }
        let value = rest.trim();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// Samples of `name` whose labels include every pair of `with`.
pub fn find<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The one value of `name` with these labels, if exactly one sample matches.
pub fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let f = find(samples, name, with);
    assert!(f.len() <= 1, "{name} {with:?} matched {} samples", f.len());
    f.first().map(|s| s.value)
}

/// Runs `promtool check metrics` on `text`; returns its combined output (empty = clean).
pub fn promtool(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && s.is_empty() {
        s = format!("promtool failed: {}", out.status);
    }
    s
}

/// The exporter binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tibiot-exporter");

/// A child process killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exporter binary with `config` and `extra` flags on a free loopback port, its stderr
/// as given; waits (at most `within`) until `/-/healthy` answers. Returns it and its base URL.
pub async fn start_binary(
    config: &Path,
    extra: &[&str],
    stderr: std::process::Stdio,
    within: Duration,
) -> (Proc, String) {
    use std::process::{Command, Stdio};
    let port = free_port();
    let child = Command::new(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let p = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/-/healthy");
    let up = eventually(within, || {
        let url = url.clone();
        async move { client().get(&url).send().await.is_ok() }
    })
    .await;
    assert!(up, "the exporter did not come up");
    (p, base)
}

/// The simulator's `GET /-/counters?targets=1`: totals, and per endpoint and target the
/// requests and the unix time of the latest.
pub async fn sim_counters(sim: &SimHandle) -> serde_json::Value {
    client()
        .get(format!("http://{}/-/counters?targets=1", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A free loopback TCP port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
