//! `pool show|usage` and `card show|usage` through the real binary against the simulator:
//! table and JSON output carry the simulator's values (KB × 1024, product names), and the
//! exit codes follow README, "Command line" (2 bad usage/config, 1 API failure).

mod cli_support;

use chrono::{TimeZone, Utc};
use cli_support::*;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{BillingMethod, CardStatus, PoolType};
use tibiotctl::output::human_kb;

fn frozen_sim_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 15, 4, 30, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_show_in_table_and_json() {
    let sim = sim(fast()).await;
    sim.freeze_clock(Some(frozen_sim_time()));
    let pools = sim.pools();
    let s = config(&sim, &pools, &[], "");
    for code in &pools {
        let want = sim.pool_detail(code).unwrap();
        let r = run(Some(&s.config), &["pool", "show", code, "--output=json"]).await;
        r.expect(0);
        no_secret(&sim, &r);
        let v = r.json();
        assert_eq!(v["account"], "main");
        assert_eq!(v["pool"], code.as_str());
        let used = want.use_flow.unwrap();
        assert_eq!(v["used_kb"].as_f64(), Some(used));
        assert_eq!(v["used_bytes"].as_f64(), Some(used * 1024.0));
        let ty = want.pool_type.unwrap();
        assert_eq!(v["type"], PoolType::label(ty).as_ref());
        assert_eq!(v["type_code"], ty);
        if ty == PoolType::UsageBilled.code() {
            assert!(v["capacity_bytes"].is_null());
        } else {
            assert_eq!(
                v["capacity_bytes"].as_f64(),
                want.total_flow.map(|k| k * 1024.0)
            );
        }
        assert_eq!(v["cards"].as_f64(), want.total_card);
        let by = v["cards_by_status"].as_array().unwrap();
        assert_eq!(by.len(), want.bind_card_status_count.len());
        for (got, c) in by.iter().zip(&want.bind_card_status_count) {
            assert_eq!(
                got["status"],
                CardStatus::label(c.card_status.unwrap()).as_ref()
            );
            assert_eq!(got["cards"].as_f64(), c.total);
        }

        let r = run(Some(&s.config), &["pool", "show", code]).await;
        r.expect(0);
        let t = &r.stdout;
        assert!(t.lines().next().unwrap().starts_with("pool "), "{t}");
        assert!(t.contains(code.as_str()));
        assert!(t.contains(PoolType::label(ty).as_ref()), "{t}");
        assert!(t.contains(&human_kb(Some(used))), "{t}");
        assert!(t.contains("CARD STATUS"), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_usage_month_and_day() {
    let sim = sim(fast()).await;
    sim.freeze_clock(Some(frozen_sim_time()));
    let code = sim.pools()[0].clone();
    let s = config(&sim, std::slice::from_ref(&code), &[], "");
    let today = sim.today();
    let month = Month::of(today).minus(2);
    let day = today - chrono::Duration::days(3);
    let kb_m = sim.pool_month_usage_kb(&code, month).unwrap() as f64;
    let kb_d = sim.pool_day_usage_kb(&code, day).unwrap() as f64;

    let m = month.to_string();
    let r = run(
        Some(&s.config),
        &["pool", "usage", &code, "--month", &m, "--output=json"],
    )
    .await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["pool"], code.as_str());
    assert_eq!(v["month"], m.as_str());
    assert_eq!(v["usage_kb"].as_f64(), Some(kb_m));
    assert_eq!(v["usage_bytes"].as_f64(), Some(kb_m * 1024.0));

    let d = format_day(day);
    let r = run(
        Some(&s.config),
        &[
            "pool",
            "usage",
            &code,
            &format!("--day={d}"),
            "--output=json",
        ],
    )
    .await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["date"], d.as_str());
    assert_eq!(v["usage_bytes"].as_f64(), Some(kb_d * 1024.0));

    let r = run(
        Some(&s.config),
        &["pool", "usage", &code, &format!("--day={d}")],
    )
    .await;
    r.expect(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("POOL"), "{}", r.stdout);
    assert!(lines[1].contains(&d) && lines[1].contains(&human_kb(Some(kb_d))));
    assert!(lines[1].trim_end().ends_with(&format!("{}", kb_d as u64)));

    // A day outside the API's 30-day window: the API refuses (code 400), exit 1, with its message.
    let old = format_day(today - chrono::Duration::days(40));
    let r = run(
        Some(&s.config),
        &["pool", "usage", &code, &format!("--day={old}")],
    )
    .await;
    r.expect(1);
    assert!(
        r.stderr.contains("code=400") && r.stderr.contains("last 30 days"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("traceId="), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_show_and_usage() {
    let sim = sim(fast()).await;
    sim.freeze_clock(Some(frozen_sim_time()));
    let cards = sim.cards();
    let s = config(&sim, &[], &cards[..8], "");
    for iccid in &cards[..8] {
        let want = sim.card_detail(iccid).unwrap();
        let r = run(
            Some(&s.config),
            &["card", "show", iccid, "--output", "json"],
        )
        .await;
        r.expect(0);
        let v = r.json();
        assert_eq!(v["iccid"], iccid.as_str());
        assert_eq!(
            v["status"],
            CardStatus::label(want.card_status.unwrap()).as_ref()
        );
        assert_eq!(v["status_code"], want.card_status.unwrap());
        assert_eq!(
            v["billing_method"],
            BillingMethod::label(want.billing_method.unwrap()).as_ref()
        );
        assert_eq!(v["imsi"].as_str(), want.imsi.as_deref());
        assert_eq!(v["msisdn"].as_str(), want.msisdn.as_deref());
        assert_eq!(v["imei"].as_str(), want.imei.as_deref());
        assert_eq!(
            v["cycle_usage_bytes"].as_f64(),
            want.use_flow.map(|k| k * 1024.0)
        );
        assert_eq!(
            v["month_usage_bytes"].as_f64(),
            want.use_month_flow.map(|k| k * 1024.0)
        );
        let r = run(Some(&s.config), &["card", "show", iccid]).await;
        r.expect(0);
        assert!(
            r.stdout
                .contains(CardStatus::label(want.card_status.unwrap()).as_ref())
        );
        assert!(
            r.stdout.contains(&human_kb(want.use_month_flow)),
            "{}",
            r.stdout
        );
    }
    let iccid = &cards[0];
    let today = sim.today();
    let month = Month::of(today);
    let kb = sim.card_month_usage_kb(iccid, month).unwrap() as f64;
    let r = run(
        Some(&s.config),
        &[
            "card",
            "usage",
            iccid,
            &format!("--month={month}"),
            "--output=json",
        ],
    )
    .await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["iccid"], iccid.as_str());
    assert_eq!(v["usage_bytes"].as_f64(), Some(kb * 1024.0));
    let day = today - chrono::Duration::days(1);
    let kb = sim.card_day_usage_kb(iccid, day).unwrap() as f64;
    let r = run(
        Some(&s.config),
        &[
            "card",
            "usage",
            iccid,
            &format!("--day={}", format_day(day)),
        ],
    )
    .await;
    r.expect(0);
    assert!(r.stdout.starts_with("ICCID"), "{}", r.stdout);
    assert!(r.stdout.contains(&human_kb(Some(kb))), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_bad_usage_bad_config_and_api_failures() {
    let sim = sim(fast()).await;
    let code = sim.pools()[0].clone();
    let s = config(&sim, std::slice::from_ref(&code), &[], "");
    let cfg = Some(s.config.as_path());

    // Bad usage: 2.
    for args in [
        vec!["pool", "usage", code.as_str()],
        vec!["pool", "usage", code.as_str(), "--month=2026-13"],
        vec![
            "pool",
            "usage",
            code.as_str(),
            "--month=2026-01",
            "--day=2026-01-01",
        ],
        vec!["pool", "show", code.as_str(), "--output=xml"],
        vec!["pool", "frobnicate"],
        vec!["card", "network", "89860000000000000001"],
        vec!["backfill", "--days=31"],
        vec!["backfill", "--months=13"],
        // Flags only where they mean something.
        vec!["backfill", "--output=json"],
        vec!["guard", "--account=main"],
        vec!["guard", "--output=json"],
    ] {
        let r = run(cfg, &args).await;
        r.expect(2);
    }
    let r = run(cfg, &["pool", "show", &code, "--account=nope"]).await;
    r.expect(2);
    assert!(
        r.stderr.contains("\"nope\"") && r.stderr.contains("main"),
        "{}",
        r.stderr
    );

    // --config.file before the subcommand works as well, and the lookup flags go before or
    // after the subcommand's own.
    let flag = format!("--config.file={}", s.config.display());
    run(None, &[&flag, "pool", "show", &code]).await.expect(0);
    let r = run(cfg, &["pool", "--output=json", "show", &code]).await;
    r.expect(0);
    r.json();
    run(None, &[&flag, "backfill", "--days=2", "--months=0"])
        .await
        .expect(0);

    // Unknown pool: the API's 404 with message and trace id, exit 1.
    let r = run(cfg, &["pool", "show", "NO-SUCH-POOL"]).await;
    r.expect(1);
    assert!(r.stderr.contains("code=404"), "{}", r.stderr);
    assert!(r.stderr.contains("NO-SUCH-POOL"), "{}", r.stderr);
    assert!(r.stderr.contains("traceId="), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = run(cfg, &["card", "show", "89860000000000009999"]).await;
    r.expect(1);

    // Bad configuration: 2, naming the key.
    let bad = s.dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&s.config).unwrap() + "  bogus_key: 1\n",
    )
    .unwrap();
    let r = run(Some(&bad), &["pool", "show", &code]).await;
    r.expect(2);
    assert!(r.stderr.contains("bogus_key"), "{}", r.stderr);
    let r = run(
        Some(&s.dir.path().join("missing.yml")),
        &["pool", "show", &code],
    )
    .await;
    r.expect(2);

    // Wrong secret: the API's 401, exit 1, the secret never printed.
    let wrong = s.dir.path().join("wrong.yml");
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(sim.app_secret(), "not-the-secret-0123");
    std::fs::write(&wrong, text).unwrap();
    let r = run(Some(&wrong), &["pool", "show", &code]).await;
    r.expect(1);
    assert!(
        r.stderr.contains("code=401") && r.stderr.contains("credentials"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("not-the-secret-0123"));
    no_secret(&sim, &r);
}

/// `tibiotctl --help` lists the operator commands; each command's help shows only its flags,
/// grouped under headings.
#[tokio::test]
async fn help_lists_the_commands_and_groups_the_flags() {
    let r = run(None, &["--help"]).await;
    r.expect(0);
    for cmd in ["pool", "card", "batch", "backfill", "guard"] {
        assert!(
            r.stdout.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("Global options:"), "{}", r.stdout);
    let r = run(None, &["pool", "show", "--help"]).await;
    r.expect(0);
    for heading in [
        "API:",
        "Output:",
        "Global options:",
        "--account",
        "--output",
        "--timeout",
    ] {
        assert!(r.stdout.contains(heading), "{heading}:\n{}", r.stdout);
    }
    let r = run(None, &["backfill", "--help"]).await;
    r.expect(0);
    assert!(!r.stdout.contains("--output"), "{}", r.stdout);
    assert!(r.stdout.contains("--account"), "{}", r.stdout);
    let r = run(None, &["guard", "--help"]).await;
    r.expect(0);
    for want in [
        "Guard:",
        "Web:",
        "Logging:",
        "--guard.file",
        "--web.config.file",
        "--timeout",
    ] {
        assert!(r.stdout.contains(want), "{want}:\n{}", r.stdout);
    }
    for unwanted in ["--account", "--output", "--web.max-requests=", "--days"] {
        assert!(!r.stdout.contains(unwanted), "{unwanted}:\n{}", r.stdout);
    }
    // Only the guard serves HTTP: nobody else has --web.* flags.
    let r = run(None, &["card", "network", "--help"]).await;
    r.expect(0);
    assert!(!r.stdout.contains("--web."), "{}", r.stdout);
}
