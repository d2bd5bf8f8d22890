//! `card network` and `batch status` through the real binary against the simulator: requests
//! of at most 10 ICCIDs, every batch followed to the end, per-ICCID results (done, failed,
//! rejected with the API's message), exit 1 when any card did not succeed, validation and
//! confirmation before anything is sent, and a POST without answer never sent again.

mod cli_support;

use cli_support::*;
use std::time::Duration;
use tibiot_api::{Endpoint, OperationState};
use tibiot_sim::{Fault, FaultRule, SimHandle};

/// Sets every card's status to `normal` so that no card is rejected or fails.
fn all_normal(sim: &SimHandle, cards: &[String]) {
    for c in cards {
        assert!(sim.set_card_status(c, 8));
    }
}

fn results(v: &serde_json::Value) -> Vec<(String, String)> {
    v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["iccid"].as_str().unwrap().to_owned(),
                c["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_three_cards_go_out_in_three_requests_and_every_card_is_reported() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..23].to_vec();
    all_normal(&sim, &cards);
    let s = config(&sim, &[], &[], "");
    let mut args = vec!["card", "network", "--disable", "--yes", "--output=json"];
    args.extend(cards.iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(0);
    no_secret(&sim, &r);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 3);
    let v = r.json();
    assert_eq!(v["action"], "disable");
    let batches = v["batches"].as_array().unwrap();
    let sizes: Vec<u64> = batches
        .iter()
        .map(|b| b["cards"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![10, 10, 3]);
    for b in batches {
        let code = b["batch_code"].as_str().unwrap();
        let st = sim.batch_status(code).expect("batch exists");
        assert_eq!(st.len() as u64, b["cards"].as_u64().unwrap());
        assert!(
            st.iter()
                .all(|c| c.operation_card_status == Some(OperationState::Done.code()))
        );
    }
    let res = results(&v);
    assert_eq!(res.len(), 23);
    assert_eq!(
        res.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(),
        cards
    );
    assert!(res.iter().all(|(_, r)| r == "done"), "{res:?}");
    assert_eq!(v["counts"]["done"], 23);
    for c in &cards {
        assert_eq!(
            sim.card_detail(c).unwrap().card_status,
            Some(4),
            "{c} is shut down"
        );
    }
    // The progress bar stays off a stderr that is not a terminal.
    assert!(!r.stderr.contains("cards final"), "{}", r.stderr);

    // And back on, in table form.
    let mut args = vec!["card", "network", "--enable", "--yes"];
    args.extend(cards.iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(0);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 6);
    let rows: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("8986")).collect();
    assert_eq!(rows.len(), 23, "{}", r.stdout);
    assert!(
        rows.iter()
            .all(|l| l.split_whitespace().nth(2) == Some("done")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.starts_with("ICCID"), "{}", r.stdout);
    assert!(
        r.stdout.contains("enable: 23 cards: 23 done"),
        "{}",
        r.stdout
    );
    for c in &cards {
        assert_eq!(sim.card_detail(c).unwrap().card_status, Some(8));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_failed_cards_and_a_failed_batch_exit_1_and_say_which() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..12].to_vec();
    all_normal(&sim, &cards);
    let liquidated = cards[2].clone(); // rejected by the API
    let abnormal = cards[4].clone(); // accepted, then fails in its batch
    sim.set_card_status(&liquidated, 18);
    sim.set_card_status(&abnormal, 99);
    // The second request: 2 abnormal cards and 1 unknown ICCID → its batch fails entirely.
    sim.set_card_status(&cards[10], 99);
    sim.set_card_status(&cards[11], 99);
    let unknown = "89860000000000099999".to_owned();
    let mut list = cards.clone();
    list.push(unknown.clone());
    let s = config(&sim, &[], &[], "");
    let mut args = vec!["card", "network", "--disable", "--yes", "--output=json"];
    args.extend(list.iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(1);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 2);
    let v = r.json();
    let by: std::collections::HashMap<String, serde_json::Value> = v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["iccid"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    assert_eq!(by.len(), 13);
    assert_eq!(by[&liquidated]["result"], "rejected");
    assert!(
        by[&liquidated]["message"]
            .as_str()
            .unwrap()
            .contains("liquidation")
    );
    assert!(by[&liquidated]["batch_code"].is_null());
    assert_eq!(by[&unknown]["result"], "rejected");
    assert_eq!(by[&unknown]["message"], "ICCID not found");
    assert_eq!(by[&abnormal]["result"], "failed");
    assert_eq!(by[&cards[10]]["result"], "failed");
    assert_eq!(by[&cards[11]]["result"], "failed");
    for c in &cards[..10] {
        if *c != liquidated && *c != abnormal {
            assert_eq!(by[c]["result"], "done", "{c}");
        }
    }
    assert_eq!(v["counts"]["done"], 8);
    assert_eq!(v["counts"]["failed"], 3);
    assert_eq!(v["counts"]["rejected"], 2);
    assert!(
        r.stderr.contains("5 of 13 cards did not succeed"),
        "{}",
        r.stderr
    );

    // The same in table form: each row names its result and the API's message.
    all_normal(&sim, &cards);
    sim.set_card_status(&liquidated, 18);
    sim.set_card_status(&abnormal, 99);
    let mut args = vec!["card", "network", "--enable", "--yes"];
    args.extend(cards[..10].iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(1);
    let row = |iccid: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(iccid))
            .unwrap_or_else(|| panic!("no row for {iccid}: {}", r.stdout))
            .to_owned()
    };
    assert!(row(&liquidated).contains("rejected") && row(&liquidated).contains("liquidation"));
    assert!(row(&abnormal).contains("failed"));
    assert!(row(&cards[0]).contains("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_answer_is_never_sent_again() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..15].to_vec();
    all_normal(&sim, &cards);
    let s = config(&sim, &[], &[], "");
    for (fault, extra) in [
        (Fault::ConnectionReset, None),
        (Fault::Http500, None),
        (Fault::Slow(Duration::from_secs(5)), Some("--timeout=500ms")),
    ] {
        sim.reset_counters();
        sim.clear_faults();
        sim.set_fault(FaultRule::new(fault).endpoint(Endpoint::CardNetwork));
        let mut args = vec!["card", "network", "--disable", "--yes", "--output=json"];
        args.extend(extra);
        args.extend(cards.iter().map(String::as_str));
        let r = run(Some(&s.config), &args).await;
        r.expect(1);
        assert_eq!(
            sim.requests(Endpoint::CardNetwork),
            1,
            "{fault:?}: sent once, never again"
        );
        let res = results(&r.json());
        assert_eq!(res.len(), 15);
        assert!(
            res[..10].iter().all(|(_, r)| r == "unknown"),
            "{fault:?} {res:?}"
        );
        assert!(
            res[10..].iter().all(|(_, r)| r == "not_sent"),
            "{fault:?} {res:?}"
        );
        assert!(r.stderr.contains("NOT sent again"), "{}", r.stderr);
        assert!(r.stderr.contains("card show"), "{}", r.stderr);
        if matches!(fault, Fault::Slow(_)) {
            assert!(r.stderr.contains("timed out"), "{}", r.stderr);
        }
    }
    sim.clear_faults();

    // HTTP 429 says the request was not processed: that one is sent again, after Retry-After.
    sim.reset_counters();
    sim.set_fault(
        FaultRule::new(Fault::RateLimited {
            retry_after_secs: 1,
        })
        .endpoint(Endpoint::CardNetwork)
        .times(1),
    );
    let mut args = vec!["card", "network", "--disable", "--yes", "--output=json"];
    args.extend(cards[..5].iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(0);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 2);
    assert!(results(&r.json()).iter().all(|(_, r)| r == "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_file_with_comments_and_validation_before_sending() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..14].to_vec();
    all_normal(&sim, &cards);
    let s = config(&sim, &[], &[], "");
    let list = s.dir.path().join("iccids.txt");

    // An invalid line: reported with its line number, nothing sent, exit 2.
    std::fs::write(
        &list,
        format!(
            "# cards of site 7\n{}\n\n{}X\n{}  # trailing comment\n123\n",
            cards[0], cards[1], cards[2]
        ),
    )
    .unwrap();
    let from = format!("--from-file={}", list.display());
    let r = run(
        Some(&s.config),
        &["card", "network", "--disable", "--yes", &from],
    )
    .await;
    r.expect(2);
    assert!(r.stderr.contains("iccids.txt:4:"), "{}", r.stderr);
    assert!(r.stderr.contains("iccids.txt:6:"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was sent"), "{}", r.stderr);
    assert_eq!(sim.total_requests(), 0);

    // An invalid argument, likewise.
    let r = run(
        Some(&s.config),
        &[
            "card",
            "network",
            "--disable",
            "--yes",
            &cards[0],
            "8986-bad",
        ],
    )
    .await;
    r.expect(2);
    assert!(r.stderr.contains("argument 2"), "{}", r.stderr);
    assert_eq!(sim.total_requests(), 0);

    // A good file plus arguments, with duplicates: 14 distinct cards → 2 requests.
    let mut text = String::from("# header comment\n\n");
    for c in &cards[..12] {
        text.push_str(&format!("{c}   # note\n"));
    }
    text.push_str(&format!("{}\n", cards[0]));
    std::fs::write(&list, text).unwrap();
    let r = run(
        Some(&s.config),
        &[
            "card",
            "network",
            "--disable",
            "--yes",
            "--output=json",
            &from,
            &cards[12],
            &cards[13],
            &cards[1],
        ],
    )
    .await;
    r.expect(0);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 2);
    let res = results(&r.json());
    assert_eq!(res.len(), 14);
    // Arguments first, then the file, each ICCID where it first appears.
    let mut want: Vec<String> = vec![
        cards[12].clone(),
        cards[13].clone(),
        cards[1].clone(),
        cards[0].clone(),
    ];
    want.extend(cards[2..12].iter().cloned());
    assert_eq!(res.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), want);
    assert!(
        r.stderr.contains("2 repeated ICCIDs ignored"),
        "{}",
        r.stderr
    );

    // A missing file: exit 2.
    let r = run(
        Some(&s.config),
        &[
            "card",
            "network",
            "--enable",
            "--yes",
            "--from-file=/nonexistent/list",
        ],
    )
    .await;
    r.expect(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_yes_and_without_a_terminal_nothing_is_sent() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..3].to_vec();
    let s = config(&sim, &[], &[], "");
    let mut args = vec!["card", "network", "--disable"];
    args.extend(cards.iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(2);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert!(
        r.stderr.contains("disable the network of 3 cards"),
        "{}",
        r.stderr
    );
    assert_eq!(sim.total_requests(), 0);
    // --enable and --disable together, or neither: bad usage.
    let r = run(
        Some(&s.config),
        &[
            "card",
            "network",
            "--enable",
            "--disable",
            "--yes",
            &cards[0],
        ],
    )
    .await;
    r.expect(2);
    let r = run(Some(&s.config), &["card", "network", "--yes", &cards[0]]).await;
    r.expect(2);
    let r = run(Some(&s.config), &["card", "network", "--yes", "--enable"]).await;
    r.expect(2);
    assert_eq!(sim.total_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_then_batch_status() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..12].to_vec();
    all_normal(&sim, &cards);
    sim.set_card_status(&cards[11], 99);
    let s = config(&sim, &[], &[], "");
    let mut args = vec![
        "card",
        "network",
        "--disable",
        "--yes",
        "--no-wait",
        "--output=json",
    ];
    args.extend(cards.iter().map(String::as_str));
    let r = run(Some(&s.config), &args).await;
    r.expect(0);
    assert_eq!(sim.requests(Endpoint::CardNetwork), 2);
    assert_eq!(
        sim.requests(Endpoint::BatchStatus),
        0,
        "--no-wait does not poll"
    );
    let v = r.json();
    let codes: Vec<String> = v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 2);
    assert!(results(&v).iter().all(|(_, r)| r == "accepted"));
    assert!(
        r.stderr
            .contains(&format!("batch status {} --wait", codes[0])),
        "{}",
        r.stderr
    );

    // Table form of --no-wait names the batch codes.
    all_normal(&sim, &cards[..3]);
    let r = run(
        Some(&s.config),
        &[
            "card",
            "network",
            "--enable",
            "--yes",
            "--no-wait",
            &cards[0],
            &cards[1],
        ],
    )
    .await;
    r.expect(0);
    assert!(r.stdout.contains("accepted"));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("batch BATCH-") && l.ends_with(": 2 cards")),
        "{}",
        r.stdout
    );

    // batch status --wait: every card final; the first batch all done → exit 0.
    let r = run(
        Some(&s.config),
        &["batch", "status", &codes[0], "--wait", "--output=json"],
    )
    .await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["batch_code"], codes[0].as_str());
    assert_eq!(v["final"], true);
    assert_eq!(v["counts"]["done"], 10);
    let listed: Vec<&str> = v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["iccid"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        cards[..10].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "done" && c["msisdn"].is_string())
    );

    // The second batch holds a failing card: --wait exits 1; a plain look-up reports it, exit 0.
    let r = run(Some(&s.config), &["batch", "status", &codes[1], "--wait"]).await;
    r.expect(1);
    assert!(
        r.stdout.contains("failed") && r.stdout.contains("done"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("batch {}: 2 cards: 1 done, 1 failed", codes[1])),
        "{}",
        r.stdout
    );
    let r = run(Some(&s.config), &["batch", "status", &codes[1]]).await;
    r.expect(0);
    let rows: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("8986")).collect();
    assert_eq!(rows.len(), 2);
    assert!(r.stdout.starts_with("ICCID"));

    // An unknown batch: the API's 404, exit 1 (with and without --wait).
    let r = run(Some(&s.config), &["batch", "status", "BATCH-99999999"]).await;
    r.expect(1);
    assert!(r.stderr.contains("code=404"), "{}", r.stderr);
    let r = run(
        Some(&s.config),
        &["batch", "status", "BATCH-99999999", "--wait"],
    )
    .await;
    r.expect(1);
    assert!(r.stderr.contains("code=404"), "{}", r.stderr);
}

/// Runs the binary on a pseudo-terminal (Python's `pty`), answers the confirmation prompt
/// with `answer`, and returns (exit code, everything the terminal showed).
async fn on_terminal(args: &[String], answer: &str) -> (i32, String) {
    const DRIVER: &str = r#"
import json, os, pty, select, sys, time
argv = json.loads(sys.argv[1]); answer = sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
def pump(until, stop):
    global out
    while time.time() < until and not stop():
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return True
            if not chunk:
                return True
            out += chunk
    return False
pump(time.time() + 60, lambda: b"[y/N]" in out)
os.write(fd, answer.encode() + b"\n")
pump(time.time() + 90, lambda: False)
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "out": out.decode("utf-8", "replace")}))
"#;
    let mut argv = vec![BIN.to_owned()];
    argv.extend(args.iter().cloned());
    let child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(serde_json::to_string(&argv).unwrap())
        .arg(answer)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let out = tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .expect("the terminal session ends in time")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v["code"].as_i64().unwrap() as i32,
        v["out"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_prompt_names_the_action_and_count_and_only_yes_sends() {
    let sim = sim(fast()).await;
    let cards: Vec<String> = sim.cards()[..3].to_vec();
    all_normal(&sim, &cards);
    let s = config(&sim, &[], &[], "");
    let mut args = vec![
        "card".to_owned(),
        "network".to_owned(),
        "--disable".to_owned(),
        format!("--config.file={}", s.config.display()),
    ];
    args.extend(cards.iter().cloned());

    let (code, out) = on_terminal(&args, "n").await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Disable the network of 3 cards on account \"main\" (1 request)? [y/N]"),
        "{out}"
    );
    assert!(out.contains("nothing was sent"), "{out}");
    assert_eq!(sim.total_requests(), 0);

    let (code, out) = on_terminal(&args, "y").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(sim.requests(Endpoint::CardNetwork), 1);
    assert!(out.contains("disable: 3 cards: 3 done"), "{out}");
    for c in &cards {
        assert_eq!(sim.card_detail(c).unwrap().card_status, Some(4));
    }
}
