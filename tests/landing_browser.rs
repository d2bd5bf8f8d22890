//! The landing page in a real headless browser (Debian's `chromium`; `.ci/run` installs it),
//! served by the real binary against the simulator:
//!
//! - with a failing target (HTTP 500) and a target whose upstream hangs for an hour: the page
//!   is served while the hang goes on (it never waits for upstream), the failing target is
//!   listed under the problems with its real error, the hanging one as pending;
//! - with 10,000 cards: problems, status counts, top cards and one page of 100 cards; the
//!   `?q=` and `?status=` filters and the pages work, and the document stays small.
//!
//! Each test writes a screenshot (PNG) into `CARGO_TARGET_TMPDIR/landing/` and prints its path;
//! the DOM the browser built (`--dump-dom`) is what the assertions read.

mod exporter_support;

use exporter_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tibiot_api::Endpoint;
use tibiot_sim::SimOptions;

/// The exporter binary with `yaml` as its configuration; returns it and its base URL.
async fn exporter(dir: &Path, yaml: &str) -> (Proc, String) {
    let config = dir.join("tibiot-exporter.yml");
    std::fs::write(&config, yaml).unwrap();
    start_binary(&config, &[], Stdio::null(), Duration::from_secs(60)).await
}

/// The headless browser: `--dump-dom` of `url` (the DOM after loading) and a screenshot.
struct Browser {
    bin: PathBuf,
}

impl Browser {
    fn find() -> Browser {
        let bin = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|b| {
                let out = Command::new("sh")
                    .args(["-c", &format!("command -v {b}")])
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
            })
            .expect("no headless browser: install Debian's chromium (apt-get install chromium)");
        Browser { bin }
    }

    fn run(&self, url: &str, extra: &[String]) -> std::process::Output {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().expect("start the browser");
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(out) => out.expect("browser output"),
            Err(_) => {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("the browser did not finish within 300s");
            }
        }
    }

    /// The DOM of `url` as the browser built it.
    fn dom(&self, url: &str) -> String {
        let out = self.run(url, &["--dump-dom".into()]);
        assert!(
            out.status.success(),
            "browser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A PNG screenshot of `url` at `width`×`height`; returns its path.
    fn screenshot(&self, url: &str, name: &str, width: u32, height: u32) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("landing");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let out = self.run(
            url,
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={width},{height}"),
            ],
        );
        let png = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "no screenshot at {} ({e}): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
        // A blank 1400-pixel-wide screenshot is about 10 KB; a painted page is hundreds.
        assert!(
            png.len() > 50_000,
            "a screenshot of a painted page ({} bytes)",
            png.len()
        );
        println!("screenshot: {}", path.display());
        path
    }
}

/// Rows of the full card list in a DOM (the table after the `cards-list` heading).
fn list_rows(dom: &str) -> usize {
    let list = &dom[dom.find("id=\"cards-list\"").expect("the card list")..];
    let list = &list[..list.find("</table>").unwrap_or(list.len())];
    list.matches("<tr").count().saturating_sub(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_in_a_browser_with_a_failing_and_a_hanging_target() {
    let browser = Browser::find();
    let failing = "POOL-0005".to_owned();
    let hanging = "POOL-0006".to_owned();
    let sim = sim(SimOptions {
        failing_targets: vec![failing.clone()],
        slow_targets: vec![hanging.clone()],
        slow_delay: Duration::from_secs(3600),
        ..SimOptions::default()
    })
    .await;
    // collect.timeout of an hour: a page that waited for upstream would wait for the hang.
    // The hanging pool is the only target of a second account (same simulator), so that its
    // request, in flight for the whole test, holds none of the first account's slots.
    let pools: Vec<String> = sim.pools().into_iter().filter(|p| *p != hanging).collect();
    let yaml = config_yaml(
        &sim,
        &pools,
        &sim.cards(),
        "  timeout: 1h\n  history: {pool_days: 8, pool_months: 2, card_days: 0, card_months: 0}\n",
    );
    let (accounts, collect) = yaml.split_at(yaml.find("collect:").unwrap());
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let yaml = format!(
        "{accounts}  - name: hang\n    base_url: {}\n    app_key: {}\n    app_secret: {}\n    pools: [{hanging}]\n{collect}",
        q(&sim.base_url()),
        q(sim.app_key()),
        q(sim.app_secret()),
    );
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, base) = exporter(dir.path(), &yaml).await;
    let page = format!("{base}/");

    // The first visit starts the collection in the background; the page comes at once.
    let started = Instant::now();
    let (status, html) = get(&page).await;
    let first = started.elapsed();
    assert_eq!(status, 200);
    assert!(html.contains("pending"), "nothing is collected yet");
    println!("first page (nothing cached) served in {first:?}");

    // The failing target's real error appears once its fetch gave up (retries included).
    let shown = eventually(Duration::from_secs(180), || {
        let page = page.clone();
        async move { get(&page).await.1.contains("HTTP 500") }
    })
    .await;
    assert!(shown, "the failing target's HTTP 500 is shown");

    // The hanging target: its request reached the simulator and has not been answered; the
    // page is served meanwhile, with the target pending.
    assert!(sim.requests_for(Endpoint::PoolDetail, &hanging) >= 1);
    let started = Instant::now();
    let (status, html) = get(&page).await;
    let during_hang = started.elapsed();
    assert_eq!(status, 200);
    println!("page served in {during_hang:?} while the upstream of {hanging} hangs");
    let dom = browser.dom(&page);
    let problems = &dom[dom.find("id=\"problems\"").expect("a problems section")..];
    let problems = &problems[..problems.find("</section>").unwrap()];
    assert!(
        problems.contains("Failing targets"),
        "the failing target is a problem: {problems}"
    );
    assert!(
        problems.contains(&failing) && problems.contains("HTTP 500"),
        "with its real error: {problems}"
    );
    assert!(
        !problems.contains("scrape deadline"),
        "not a scrape deadline: {problems}"
    );
    // Problems come before the tables.
    assert!(dom.find("id=\"problems\"") < dom.find("id=\"pools\""));
    // The hanging pool's row says pending, and the page was served before it answered.
    let row = &html[html
        .find(&format!(">{hanging}</a>"))
        .expect("the hanging pool's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("pending"), "{row}");
    // The simulator's special pools are highlighted: POOL-0001 at 90-100% of its capacity,
    // POOL-0004 invalid; abnormal cards are listed.
    assert!(problems.contains("POOL-0001") && problems.contains("POOL-0004"));
    assert!(problems.contains("Abnormal cards"));
    assert!(dom.contains("revision "), "the version line");
    assert!(!dom.contains(sim.app_secret()), "no secret on the page");
    assert!(!dom.contains("src=\"http"), "no external asset");

    let shot = browser.screenshot(&page, "landing-failing-target.png", 1400, 2200);
    assert!(shot.is_file());
    // Still hanging: the whole test ran while that upstream never answered.
    assert!(sim.requests_for(Endpoint::PoolDetail, &hanging) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_in_a_browser_with_10000_cards() {
    let browser = Browser::find();
    let sim = sim(SimOptions {
        pools: 20,
        cards: 10_000,
        failing_targets: vec!["89860401000000000030".into()],
        ..SimOptions::default()
    })
    .await;
    let cards = sim.cards();
    assert_eq!(cards.len(), 10_000);
    let yaml = config_yaml(
        &sim,
        &sim.pools(),
        &cards,
        "  concurrency: 16\n  timeout: 5m\n  history: {pool_days: 8, pool_months: 2, card_days: 0, card_months: 0}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, base) = exporter(dir.path(), &yaml).await;
    // Fill the cache with one scrape (its deadline is generous), then wait until the page
    // has nothing pending.
    let (status, _) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let page = format!("{base}/");
    let filled = eventually(Duration::from_secs(300), || {
        let page = page.clone();
        async move { get(&page).await.1.contains(" 0 pending.") }
    })
    .await;
    assert!(filled, "every target collected");

    let (_, html) = get(&page).await;
    assert!(
        html.len() < 1_000_000,
        "one page of cards, not 10,000 rows: {} bytes",
        html.len()
    );
    let dom = browser.dom(&page);
    assert!(dom.contains("Cards (10,000)"), "the card count");
    assert_eq!(list_rows(&dom), 100, "one page of 100 cards");
    assert!(dom.contains("page 1 of 100"));
    assert!(dom.contains("Top 10 by usage this cycle"));
    assert!(dom.contains("Problem cards ("));
    assert!(
        dom.contains("89860401000000000030") && dom.contains("HTTP 500"),
        "the failing card with its error"
    );
    // Over-cap cards are critical problems, with their usage against their cap.
    let over = &dom[dom.find("Cards over their cap").expect("over-cap cards")..];
    assert!(over[..over.find("</div>").unwrap()].contains("% of its "));
    assert!(over.contains("list them all"), "the rest one click away");

    // ?q= finds one card; ?status= filters; ?page= moves through the list.
    let wanted = &cards[4321];
    let dom = browser.dom(&format!("{base}/?q={wanted}"));
    assert_eq!(list_rows(&dom), 1, "one card matches {wanted}");
    assert!(dom.contains(&format!(">{wanted}</a>")));
    let dom = browser.dom(&format!("{base}/?status=over_cap&page=2"));
    assert!(
        dom.contains("page 2 of"),
        "the second page of the over-cap cards"
    );
    let list = &dom[dom.find("id=\"cards-list\"").unwrap()..];
    let rows: Vec<&str> = list.split("<tr").skip(2).collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r.contains("over cap")),
        "every listed card is over its cap"
    );
    let dom = browser.dom(&format!("{base}/?status=normal"));
    assert!(list_rows(&dom) > 0);

    let shot = browser.screenshot(&page, "landing-10000-cards.png", 1400, 3000);
    assert!(shot.is_file());
    // (No #fragment: headless screenshots of a scrolled page come out blank.)
    browser.screenshot(
        &format!("{base}/?status=problems&page=3"),
        "landing-10000-cards-problems-filter.png",
        1400,
        5200,
    );
}
