//! `tibiot-exporter simulate` as a user runs it: the first stdout line, serving the announced
//! world with the announced credentials, SIGTERM/SIGINT, and bad flags (exit 2).

use secrecy::SecretString;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tibiot_api::{Client, ClientOptions, HmacSha256Signer, Query};

const BIN: &str = env!("CARGO_BIN_EXE_tibiot-exporter");

/// Kills the child on drop, so a failing test leaves nothing behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Guard, Value, String) {
    let mut child = Command::new(BIN)
        .arg("simulate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary runs");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (guard, info, line)
}

fn wait_exit(g: &mut Guard) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = g.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(g: &Guard, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &g.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn announces_world_and_serves_it() {
    let (mut g, info, line) = start(&[
        "--listen=127.0.0.1:0",
        "--seed",
        "42",
        "--pools=5",
        "--cards",
        "9",
        "--app-key=k",
        "--app-secret",
        "s",
    ]);
    assert!(line.starts_with("{\"listen\""), "{line}");
    assert_eq!(info["app_key"], "k");
    assert_eq!(info["app_secret"], "s");
    let pools: Vec<String> = serde_json::from_value(info["pools"].clone()).unwrap();
    let cards: Vec<String> = serde_json::from_value(info["cards"].clone()).unwrap();
    assert_eq!(pools.len(), 5);
    assert_eq!(pools[0], "POOL-0001");
    assert_eq!(cards.len(), 9);
    let listen = info["listen"].as_str().unwrap().to_string();
    assert!(!listen.ends_with(":0"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(ClientOptions::new(
            format!("http://{listen}"),
            Arc::new(HmacSha256Signer::new("k", SecretString::from("s"))),
        ))
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for p in &pools {
            c.get(Query::pool_detail(p), deadline).await.unwrap();
        }
        for i in &cards {
            c.get(Query::card_detail(i), deadline).await.unwrap();
        }
    });
    signal(&g, "-TERM");
    assert_eq!(wait_exit(&mut g), Some(0));
}

#[test]
fn made_up_credentials_and_sigint() {
    let (mut g, info, _) = start(&["--listen", "127.0.0.1:0"]);
    let key = info["app_key"].as_str().unwrap();
    let secret = info["app_secret"].as_str().unwrap();
    assert!(!key.is_empty() && secret.len() >= 16);
    assert_eq!(info["pools"].as_array().unwrap().len(), 8);
    assert_eq!(info["cards"].as_array().unwrap().len(), 40);
    signal(&g, "-INT");
    assert_eq!(wait_exit(&mut g), Some(0));
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["simulate", "--bogus"][..],
        &["simulate", "--error-rate=1.5"],
        &["simulate", "--error-rate=abc"],
        &["simulate", "--latency=fast"],
        &["simulate", "--listen=nowhere"],
        &["simulate", "--pools=-1"],
        &["simulate", "--cards=99999999999"],
        &["simulate", "--app-key=k"],
        &["simulate", "--path-prefix=nope"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn listen_failure_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["simulate", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}
