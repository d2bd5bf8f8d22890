//! The guard's decisions over HTTP: the real `tibiotctl guard` binary receives Alertmanager
//! webhook messages and switches cards of a simulator, which counts every network request.

mod guard_support;

use guard_support::*;

/// Dry-run sends nothing; after a reload to enforce mode the same alert switches exactly the
/// named card off, once, even when the notification is repeated while the action is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_enforce_switches_exactly_the_named_card_once() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    let target = cards[1].clone();
    let files = Files::new(&sim, &guard_yaml("dry-run", false, ""));
    let guard = Guard::start(&files, &[]);
    let before = statuses(&sim);
    let alert = Alert::runaway(&target, "a1b2c3d4e5f60718");

    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(code, 200, "{body}");
    guard
        .wait_decisions("runaway", "disable", "dry_run", 1.0)
        .await;
    // repeated: decided once
    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 0 decided, 1 repeated\n")
    );
    assert_eq!(guard.decisions("runaway", "disable", "dry_run").await, 1.0);
    assert_eq!(network_requests(&sim), 0, "dry-run sent a request");
    assert_eq!(statuses(&sim), before);
    assert_eq!(guard.value("tibiot_guard_enforcing", &[]).await, 0.0);

    // Switch to enforce mode without a restart.
    files.write_guard(&guard_yaml("enforce", false, ""));
    let (code, body) = guard.post("/-/reload", String::new()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(guard.value("tibiot_guard_enforcing", &[]).await, 1.0);

    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 1 decided, 0 repeated\n")
    );
    // Alertmanager retries at once (e.g. after a timeout): the action is in flight.
    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 0 decided, 1 repeated\n")
    );
    guard
        .wait_decisions("runaway", "disable", "done", 1.0)
        .await;
    assert_eq!(network_requests(&sim), 1);
    assert_eq!(
        sim.requests_for(tibiot_api::Endpoint::CardNetwork, &target),
        1
    );
    assert_eq!(status(&sim, &target), 4, "the named card is shut down");
    for ((iccid, was), (_, now)) in before.iter().zip(statuses(&sim)) {
        if *iccid != target {
            assert_eq!(*was, now, "card {iccid} was touched");
        }
    }
    guard
        .wait_for("tibiot_guard_cards_switched_off", &[], 1.0)
        .await;

    // Repeated notifications later send nothing more.
    for _ in 0..3 {
        let (code, _) = guard.post("/webhook", one(&alert)).await;
        assert_eq!(code, 200);
    }
    assert_eq!(network_requests(&sim), 1);
    assert_eq!(guard.decisions("runaway", "disable", "done").await, 1.0);

    // The audit log has the dry-run decision, then sending and done with the batch code.
    let recs = files.audit_records();
    let outcomes: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["dry_run", "sending", "done"], "{recs:#?}");
    let done = &recs[2];
    assert_eq!(done["fingerprint"], "a1b2c3d4e5f60718");
    assert_eq!(done["policy"], "runaway");
    assert_eq!(done["iccid"], target.as_str());
    assert_eq!(done["account"], "main");
    assert_eq!(done["action"], "disable");
    assert!(
        done["batch_code"]
            .as_str()
            .is_some_and(|c| c.starts_with("BATCH-")),
        "{done}"
    );
    drop(guard);
    sim.shutdown().await;
}

/// A protected card, a card over the hourly limit and alerts that name no valid card or
/// account are refused, audited and counted; only the allowed card is switched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_over_limit_and_invalid_alerts_are_refused() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    let (protected, first, second) = (&cards[0], &cards[1], &cards[2]);
    let files = Files::new(
        &sim,
        &guard_yaml(
            "enforce",
            false,
            &format!("limits:\n  max_cards_per_hour: 1\nprotect: [{protected}]\n"),
        ),
    );
    let guard = Guard::start(&files, &[]);
    let mut bad_account = Alert::runaway(first, "00000000000000b1");
    bad_account.account = "nope".into();
    let bad_iccid = Alert::runaway("8986-not-an-iccid", "00000000000000b2");
    let (code, body) = guard
        .post(
            "/webhook",
            message(&[
                Alert::runaway(protected, "00000000000000a1"),
                Alert::runaway(first, "00000000000000a2"),
                bad_account,
                bad_iccid,
            ]),
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 4 decided, 0 repeated\n")
    );
    guard
        .wait_decisions("runaway", "disable", "done", 1.0)
        .await;
    // Over the limit of one card per hour.
    let (code, _) = guard
        .post(
            "/webhook",
            message(&[Alert::runaway(second, "00000000000000a3")]),
        )
        .await;
    assert_eq!(code, 200);
    guard
        .wait_decisions("runaway", "disable", "over_limit", 1.0)
        .await;
    assert_eq!(
        guard.decisions("runaway", "disable", "protected").await,
        1.0
    );
    assert_eq!(guard.decisions("runaway", "disable", "invalid").await, 2.0);
    assert_eq!(network_requests(&sim), 1);
    assert_eq!(
        sim.requests_for(tibiot_api::Endpoint::CardNetwork, first),
        1
    );
    assert_eq!(status(&sim, protected), 8);
    assert_eq!(status(&sim, second), 8);
    assert_eq!(status(&sim, first), 4);
    assert_eq!(
        guard.value("tibiot_guard_disables_last_hour", &[]).await,
        1.0
    );
    let recs = files.audit_records();
    let invalid: Vec<&serde_json::Value> =
        recs.iter().filter(|r| r["outcome"] == "invalid").collect();
    assert_eq!(invalid.len(), 2);
    assert!(
        invalid.iter().any(|r| r["message"]
            .as_str()
            .unwrap()
            .contains("\"nope\" is not in the configuration")),
        "{invalid:?}"
    );
    // Not a webhook message at all: 400, nothing decided.
    let (code, body) = guard
        .post("/webhook", "{\"version\":\"3\",\"alerts\":[]}".into())
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("version"), "{body}");
    assert_eq!(
        guard
            .value("tibiot_guard_notifications_total", &[("result", "invalid")])
            .await,
        1.0
    );
    drop(guard);
    sim.shutdown().await;
}

/// A resolved alert switches the card back on only under a policy with
/// `reenable_on_resolve: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_reenables_only_when_asked() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    let (a, b) = (&cards[1], &cards[2]);
    let extra =
        "  - name: keep-off\n    match: {alertname: TibiotCardKeepOff}\n    action: disable\n";
    let yaml = guard_yaml("enforce", true, "").replace("audit_log:", &format!("{extra}audit_log:"));
    let files = Files::new(&sim, &yaml);
    let guard = Guard::start(&files, &[]);
    let reenabled = Alert::runaway(a, "00000000000000c1");
    let mut kept = Alert::runaway(b, "00000000000000c2");
    kept.alertname = "TibiotCardKeepOff".into();
    guard
        .post("/webhook", message(&[reenabled.clone(), kept.clone()]))
        .await;
    guard
        .wait_decisions("runaway", "disable", "done", 1.0)
        .await;
    guard
        .wait_decisions("keep-off", "disable", "done", 1.0)
        .await;
    assert_eq!((status(&sim, a), status(&sim, b)), (4, 4));
    guard
        .wait_for("tibiot_guard_cards_switched_off", &[], 2.0)
        .await;

    let (code, body) = guard
        .post(
            "/webhook",
            message(&[reenabled.clone().resolved(), kept.clone().resolved()]),
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 1 decided, 0 repeated\n")
    );
    guard.wait_decisions("runaway", "enable", "done", 1.0).await;
    assert_eq!(status(&sim, a), 8, "re-enabled");
    assert_eq!(
        status(&sim, b),
        4,
        "stays off: its policy does not re-enable"
    );
    assert_eq!(network_requests(&sim), 3);
    guard
        .wait_for("tibiot_guard_cards_switched_off", &[], 1.0)
        .await;
    // A repeated resolved notification sends nothing.
    guard
        .post("/webhook", message(&[reenabled.resolved()]))
        .await;
    assert_eq!(network_requests(&sim), 3);
    drop(guard);
    sim.shutdown().await;
}

/// The state survives a restart: rebuilt from the audit log, a repeated notification sends
/// nothing, the hourly limit still counts, and a resolve still re-enables the card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_state() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    let (a, b) = (&cards[1], &cards[2]);
    let files = Files::new(
        &sim,
        &guard_yaml("enforce", true, "limits:\n  max_cards_per_hour: 1\n"),
    );
    let alert = Alert::runaway(a, "00000000000000d1");
    let guard = Guard::start(&files, &[]);
    guard.post("/webhook", one(&alert)).await;
    guard
        .wait_decisions("runaway", "disable", "done", 1.0)
        .await;
    assert_eq!(guard.stop().await, 0);

    let guard = Guard::start(&files, &[]);
    assert_eq!(
        guard.value("tibiot_guard_cards_switched_off", &[]).await,
        1.0
    );
    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 0 decided, 1 repeated\n")
    );
    guard
        .post(
            "/webhook",
            message(&[Alert::runaway(b, "00000000000000d2")]),
        )
        .await;
    guard
        .wait_decisions("runaway", "disable", "over_limit", 1.0)
        .await;
    assert_eq!(network_requests(&sim), 1);
    assert_eq!(status(&sim, b), 8);

    guard.post("/webhook", message(&[alert.resolved()])).await;
    guard.wait_decisions("runaway", "enable", "done", 1.0).await;
    assert_eq!(status(&sim, a), 8);
    assert_eq!(network_requests(&sim), 2);
    drop(guard);
    sim.shutdown().await;
}

/// An action whose request gets no answer is `unknown` and never sent again, even after
/// Alertmanager repeats the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_answer_is_never_resent() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    sim.set_fault(
        tibiot_sim::FaultRule::new(tibiot_sim::Fault::Http500)
            .endpoint(tibiot_api::Endpoint::CardNetwork),
    );
    let files = Files::new(&sim, &guard_yaml("enforce", false, ""));
    let guard = Guard::start(&files, &[]);
    let alert = Alert::runaway(&cards[1], "00000000000000e1");
    guard.post("/webhook", one(&alert)).await;
    guard
        .wait_decisions("runaway", "disable", "unknown", 1.0)
        .await;
    for _ in 0..3 {
        guard.post("/webhook", one(&alert)).await;
    }
    assert_eq!(network_requests(&sim), 1);
    let recs = files.audit_records();
    let last = recs.last().unwrap();
    assert_eq!(last["outcome"], "unknown");
    assert!(
        last["message"].as_str().unwrap().contains("not sent again"),
        "{last}"
    );
    drop(guard);
    sim.shutdown().await;
}

/// Alertmanager gets its answer while the action is still out (the API is slow here), and a
/// retry at that moment does not act twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_answers_before_the_action_ends() {
    let sim = sim().await;
    let cards = normal_cards(&sim);
    sim.set_fault(
        tibiot_sim::FaultRule::new(tibiot_sim::Fault::Slow(std::time::Duration::from_secs(8)))
            .endpoint(tibiot_api::Endpoint::CardNetwork),
    );
    let files = Files::new(&sim, &guard_yaml("enforce", false, ""));
    let guard = Guard::start(&files, &["--timeout=60s"]);
    let alert = Alert::runaway(&cards[1], "00000000000000f7");
    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 1 decided, 0 repeated\n")
    );
    // Answered, and the request is still with the (slow) API.
    assert_eq!(
        guard.value("tibiot_guard_actions_in_flight", &[]).await,
        1.0
    );
    assert_eq!(guard.decisions("runaway", "disable", "done").await, 0.0);
    let (code, body) = guard.post("/webhook", one(&alert)).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "accepted: 0 decided, 1 repeated\n")
    );
    guard
        .wait_decisions("runaway", "disable", "done", 1.0)
        .await;
    assert_eq!(
        guard.value("tibiot_guard_actions_in_flight", &[]).await,
        0.0
    );
    assert_eq!(network_requests(&sim), 1);
    drop(guard);
    sim.shutdown().await;
}
