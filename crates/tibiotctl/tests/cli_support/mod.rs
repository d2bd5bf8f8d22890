//! Shared helpers of the CLI tests: a simulator in the test process, a temporary config file
//! pointing at it, and the real `tibiot-exporter` binary run with a bounded wait (killed on
//! timeout), stdin not a terminal.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tibiot_sim::{SimHandle, SimOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_tibiotctl");

/// Upper bound of one CLI run in the tests (generous: a loaded 2-core machine).
pub const RUN_BOUND: Duration = Duration::from_secs(120);

pub async fn sim(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Simulator options for fast batches.
pub fn fast() -> SimOptions {
    SimOptions {
        batch_step: Duration::from_millis(100),
        ..SimOptions::default()
    }
}

/// A temporary folder with `tibiot-exporter.yml` for the simulator's account `main`
/// (`extra` is appended under `collect:`).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub fn config(sim: &SimHandle, pools: &[String], cards: &[String], collect: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tibiot-exporter.yml");
    let list = |v: &[String]| {
        let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", q.join(", "))
    };
    let yaml = format!(
        "accounts:\n  - name: main\n    base_url: {}\n    app_key: {}\n    app_secret: {}\n    pools: {}\n    cards: {}\ncollect:\n  requests_per_second: 0\n{collect}",
        sim.base_url(),
        sim.app_key(),
        sim.app_secret(),
        list(pools),
        list(cards),
    );
    std::fs::write(&config, yaml).unwrap();
    Setup { dir, config }
}

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the binary with `args` (after `--config.file=<config>` is appended when given),
/// stdin from /dev/null.
pub async fn run(config: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg(format!("--config.file={}", c.display()));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let child = cmd.spawn().expect("binary starts");
    let out = tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish within {RUN_BOUND:?}"))
        .expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts the simulator's secret appears nowhere in a run's output.
pub fn no_secret(sim: &SimHandle, r: &Run) {
    assert!(!r.stdout.contains(sim.app_secret()), "secret on stdout");
    assert!(!r.stderr.contains(sim.app_secret()), "secret on stderr");
}
