//! The README's first hour, run as written: the install command (the `readme-test: install`
//! block), `tibiot-exporter demo` (the `demo` block) and its written configuration, the
//! operator CLI against that configuration (the `cli` block: pool show, card show, card
//! network, backfill), and `check-config` over a file with five different mistakes (the
//! `check-config` block), each reported with its line. The commands are read from README.md, so the README and this test
//! cannot drift apart.
//!
//! Adaptations, all of them mechanical: `cargo install` gets `--root TEMP` (nothing is
//! installed for the user) and, to keep CI time sane, `--debug` with `CARGO_TARGET_DIR` set
//! to `target/readme-install` (a debug build instead of an optimised one, and kept between
//! runs, so later runs compile only what changed). Not the test build's own folder: `cargo
//! install` resolves features for the two packages alone, and sharing the folder made the
//! next `cargo test` recompile a dozen crates and replaced `target/debug/tibiot-exporter`. The
//! demo gets a free loopback port; `card network` gets `--yes` (no terminal to confirm on).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The commands of the ```sh block after `<!-- readme-test: NAME -->`, one per line.
fn readme_block(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let marker = format!("<!-- readme-test: {name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[at + marker.len()..];
    let body = rest
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a ```sh block"));
    let body = &body[..body.find("```").expect("unterminated block")];
    body.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to its end (at most `within`), capturing its output.
fn run(cmd: &mut Command, within: Duration) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish within {within:?}");
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The target folder of the install: `readme-install` inside the one this test was built in
/// (…/target/debug/tibiot-exporter → …/target/readme-install).
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tibiot-exporter"));
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("readme-install")
}

/// `git rev-parse --short=12 HEAD` of this checkout, when it is one.
fn checkout_revision() -> Option<String> {
    let out = Command::new("git")
        .current_dir(ROOT)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_owned())
}

/// Runs the README's install block into `root`; returns the folder of the binaries.
fn install(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let block = readme_block("install");
    assert_eq!(block.len(), 1, "one install command line: {block:?}");
    let commands: Vec<&str> = block[0].split("&&").map(str::trim).collect();
    assert_eq!(commands.len(), 2, "both binaries are installed: {block:?}");
    for c in commands {
        let words: Vec<&str> = c.split_whitespace().collect();
        assert_eq!(&words[..2], ["cargo", "install"], "{c}");
        assert!(words.contains(&"--locked"), "{c}");
        let out = run(
            Command::new(&cargo)
                .current_dir(ROOT)
                .args(&words[1..])
                .arg("--root")
                .arg(root)
                .arg("--debug")
                .env("CARGO_TARGET_DIR", target_dir()),
            Duration::from_secs(3600),
        );
        assert!(out.status.success(), "{c} failed:\n{}", text(&out.stderr));
    }
    let bin = root.join("bin");
    for b in ["tibiot-exporter", "tibiotctl"] {
        assert!(bin.join(b).is_file(), "{b} was not installed");
    }
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP GET; the status code, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    text(&head[9..12]).parse().ok()
}

/// Runs one line of the README's CLI block in `cwd` with the installed `tibiotctl`.
fn run_cli_line(line: &str, bin: &Path, cwd: &Path) -> (String, String) {
    let (command, redirect) = match line.split_once('>') {
        Some((c, file)) => (c.trim(), Some(file.trim())),
        None => (line, None),
    };
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "tibiotctl", "{line}");
    let mut cmd = Command::new(bin.join("tibiotctl"));
    cmd.current_dir(cwd).args(&words[1..]);
    if words.windows(2).any(|w| w == ["card", "network"]) {
        cmd.arg("--yes");
    }
    let out = run(&mut cmd, Duration::from_secs(300));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{line}: exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    if let Some(file) = redirect {
        std::fs::write(cwd.join(file), &stdout).unwrap();
    }
    (stdout, stderr)
}

#[test]
fn readme_install_check_config_demo_and_cli_work_as_written() {
    let root = tempfile::tempdir().unwrap();
    let bin = install(root.path());

    // --version names the commit built, when built from a checkout.
    for b in ["tibiot-exporter", "tibiotctl"] {
        let out = run(
            Command::new(bin.join(b)).arg("--version"),
            Duration::from_secs(60),
        );
        let v = text(&out.stdout);
        assert!(out.status.success() && v.starts_with(b), "{v}");
        if let Some(rev) = checkout_revision() {
            assert!(v.contains(&format!("(revision {rev})")), "{b}: {v}");
        }
    }

    // check-config over a file with five mistakes: all five, with their lines.
    check_config_reports_every_mistake_with_its_line(&bin);

    // The demo, as written, in a folder of its own.
    let demo = readme_block("demo");
    assert_eq!(demo, ["tibiot-exporter demo"]);
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(bin.join("tibiot-exporter"))
        .current_dir(cwd.path())
        .arg("demo")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut p = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Ctrl-C") {
                let _ = tx.send(banner.clone());
            }
        }
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo's banner");
    let written = cwd.path().join("tibiot-demo.yml");
    let written_abs = written
        .canonicalize()
        .expect("the demo wrote tibiot-demo.yml");
    assert!(
        banner.contains(&format!(
            "tibiotctl --config.file={} pool show POOL-0001",
            written_abs.display()
        )),
        "the banner shows where the configuration is and the next command:\n{banner}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&written).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file holds a secret: {mode:o}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/metrics") != Some(200) {
        assert!(Instant::now() < deadline, "/metrics did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The CLI against the demo, with the written configuration, line by line.
    let cli = readme_block("cli");
    let wanted = ["pool show", "card show", "card network", "backfill"];
    for w in wanted {
        assert!(
            cli.iter().any(|l| l.contains(w)),
            "the README's CLI block has `{w}`: {cli:?}"
        );
    }
    for line in &cli {
        let (out, err) = run_cli_line(line, &bin, cwd.path());
        let last = line.split_whitespace().last().unwrap_or("");
        if line.contains("pool show") || line.contains("card show") {
            assert!(out.contains(last), "{line}:\n{out}");
        }
        if line.contains("card network") {
            assert!(out.contains("done"), "{line}:\n{out}\n{err}");
        }
        if line.contains("backfill") {
            let file = line.rsplit('>').next().unwrap().trim();
            let om = std::fs::read_to_string(cwd.path().join(file)).unwrap();
            assert!(om.contains("tibiot_pool_daily_usage_bytes{"), "{om:.300}");
            assert!(
                om.trim_end().ends_with("# EOF"),
                "OpenMetrics ends with # EOF"
            );
        }
    }

    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(p.0.id() as i32, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// A configuration with five different mistakes, each on its own line (1-based), and a word
/// the report of each must contain.
const FIVE_MISTAKES: &str = "\
accounts:
  - name: main
    base_url: ftp://api.example.com
    app_key: k
    app_secret: ${TIBIOT_README_TEST_UNSET_VARIABLE}
    pools: [POOL-001]
    cards: [12345]
  - name: main
    base_url: https://api.example.com
    app_key: k
    app_secret: s
collect:
  timeout: 10
";

/// (line, what the report names) for each mistake of [`FIVE_MISTAKES`].
const MISTAKES: [(usize, &str); 5] = [
    (3, "base_url"),
    (5, "TIBIOT_README_TEST_UNSET_VARIABLE"),
    (7, "cards"),
    (8, "name"),
    (13, "timeout"),
];

/// `check-config`, as the README writes it (with the installed binary), reports every
/// mistake of a file, each with its line (exit status 2).
fn check_config_reports_every_mistake_with_its_line(bin: &Path) {
    let block = readme_block("check-config");
    assert_eq!(block.len(), 1, "{block:?}");
    let words: Vec<&str> = block[0].split_whitespace().collect();
    assert_eq!(&words[..2], ["tibiot-exporter", "check-config"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tibiot-exporter.yml"), FIVE_MISTAKES).unwrap();
    let out = run(
        Command::new(bin.join("tibiot-exporter"))
            .current_dir(dir.path())
            .args(&words[1..])
            .env_remove("TIBIOT_README_TEST_UNSET_VARIABLE"),
        Duration::from_secs(60),
    );
    let report = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{report}");
    for (line, word) in MISTAKES {
        let tag = format!("(line {line})");
        assert!(
            report.lines().any(|l| l.contains(word) && l.contains(&tag)),
            "no report of the mistake on line {line} ({word}) in:\n{report}"
        );
    }
}
