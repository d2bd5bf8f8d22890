//! Property test (bounded fuzzing) of `/probe` over HTTP: arbitrary query strings against the
//! real exporter binary (with the simulator as upstream). Every answer is 200 or 400 — never
//! a 5xx, never a dropped connection; a 400 is a short printable message; a 200 carries
//! `tibiot_probe_success`; nothing shows the app secret; the process stays up.
//!
//! Cases: `PROPTEST_CASES` (default 160).

mod fault_support;

use fault_support::{Exporter, Metrics, config_for};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::atomic::{AtomicUsize, Ordering};
use tibiot_sim::{SimHandle, SimOptions};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One query parameter: a name (known or not) and a value (known-good, plausible or junk).
fn arb_param(pools: Vec<String>, cards: Vec<String>) -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => prop::sample::select(vec!["account", "pool", "card"]).prop_map(str::to_owned),
        1 => ".{0,10}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec!["main", "backup", "nope"]).prop_map(str::to_owned),
        prop::sample::select(pools),
        prop::sample::select(cards),
        "[A-Za-z0-9_.-]{1,70}",
        "[0-9]{15,25}",
        ".{0,120}",
    ];
    (name, value)
}

/// The exporter (and simulator) live only as long as this test: no process outlives it.
#[test]
fn probe_answers_200_or_400() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        SimHandle::start(
            SimOptions {
                seed: 3,
                pools: 3,
                cards: 3,
                ..SimOptions::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap()
    });
    let pools = sim.pools();
    let cards = sim.cards();
    let yaml = format!(
        "accounts:\n{}{}collect:\n  timeout: 5s\n  history: {{pool_days: 1, pool_months: 1}}\n",
        config_for(
            "main",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &pools[..1],
            &cards[..1]
        ),
        config_for(
            "backup",
            &sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            &[],
            &[]
        ),
    );
    let mut exporter = Exporter::start(&yaml);
    let client = fault_support::http();
    let secret = sim.app_secret().to_owned();
    let addr = exporter.addr.clone();
    // Half well-formed (one account, one target: mostly 200), half anything.
    let well_formed = (
        prop::sample::select(vec!["main", "backup"]),
        prop_oneof![
            prop::sample::select(pools.clone()).prop_map(|p| ("pool", p)),
            prop::sample::select(cards.clone()).prop_map(|c| ("card", c)),
            "[A-Za-z0-9_.-]{1,64}".prop_map(|p| ("pool", p)),
            "[0-9]{18,22}".prop_map(|c| ("card", c)),
        ],
    )
        .prop_map(|(a, (k, v))| vec![("account".to_owned(), a.to_owned()), (k.to_owned(), v)]);
    let strategy = (
        prop_oneof![
            well_formed,
            proptest::collection::vec(arb_param(pools.clone(), cards.clone()), 0..5),
        ],
        any::<bool>(),
    );
    let answered = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let mut runner = TestRunner::new(config(160));
    let result = runner.run(&strategy, |(params, raw)| {
        let query: String = params
            .iter()
            .map(|(k, v)| {
                if raw {
                    // unencoded: whatever survives as a URL
                    format!("{k}={v}")
                } else {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, NON_ALPHANUMERIC),
                        utf8_percent_encode(v, NON_ALPHANUMERIC)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        let url = format!("http://{addr}/probe?{query}");
        let Ok(parsed) = reqwest::Url::parse(&url) else {
            return Ok(());
        };
        let (status, body) = rt.block_on(async {
            let r = client
                .get(parsed)
                .send()
                .await
                .expect("an answer, not a dropped connection");
            let s = r.status().as_u16();
            (s, r.text().await.expect("a body"))
        });
        prop_assert!(
            status == 200 || status == 400,
            "HTTP {} for {}: {}",
            status,
            url,
            body
        );
        answered[usize::from(status == 400)].fetch_add(1, Ordering::Relaxed);
        prop_assert!(!body.contains(&secret), "secret in the answer");
        if status == 400 {
            prop_assert!(
                body.len() <= 300,
                "long 400 body ({} bytes): {}",
                body.len(),
                body
            );
            prop_assert!(
                !body.trim_end().chars().any(|c| c.is_control()),
                "control character in the 400 body: {:?}",
                body
            );
        } else {
            let m = Metrics::parse(&body);
            prop_assert!(
                m.find("tibiot_probe_success", &[]).len() == 1,
                "no probe_success: {}",
                body
            );
            prop_assert!(
                m.find("tibiot_api_requests_total", &[]).is_empty(),
                "self-metrics on /probe"
            );
        }
        Ok(())
    });
    println!(
        "probe fuzzing: {} answered 200, {} answered 400",
        answered[0].load(Ordering::Relaxed),
        answered[1].load(Ordering::Relaxed)
    );
    assert!(
        exporter.alive(),
        "exporter died; log:\n{}",
        exporter.log_text()
    );
    drop(exporter);
    rt.block_on(sim.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
}
