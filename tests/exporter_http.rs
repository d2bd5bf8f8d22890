//! The HTTP surface over real HTTP (the real router on 127.0.0.1:0, the real simulator):
//! gzip, OpenMetrics negotiation, `/probe`, the landing page (every target, HTML escaped),
//! `/config` redaction, health endpoints and `POST /-/reload` with good and bad files.

mod exporter_support;

use exporter_support::*;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::Endpoint;
use tibiot_exporter::config::Config;
use tibiot_exporter::http::Loader;
use tibiot_sim::{FaultRule, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_openmetrics_negotiation() {
    let sim = sim(SimOptions::default()).await;
    let server = Server::start(&config_yaml(&sim, &sim.pools(), &sim.cards(), ""), None).await;
    // after the history backfill, so that both scrapes hold the same series
    let _ = get(&server.url("/metrics")).await;
    let plain = settled(&server).await;

    let r = client()
        .get(server.url("/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let gz = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let names = |t: &str| {
        let mut v: Vec<String> = parse(t)
            .into_iter()
            .filter(|s| s.name.starts_with("tibiot_pool") || s.name.starts_with("tibiot_card"))
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&text), names(&plain));
    let r = client()
        .get(server.url("/metrics"))
        .header("Accept-Encoding", "gzip;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert!(!plain.contains("# EOF"));
    assert!(plain.contains("# TYPE tibiot_pool_info gauge"));

    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = client()
        .get(server.url("/metrics"))
        .header("Accept", prometheus_accept)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE tibiot_pool info\n"));
    assert!(om.contains("# TYPE tibiot_api_requests counter\n"));
    assert!(om.contains("# TYPE tibiot_api_request_duration_seconds histogram\n"));
    assert_eq!(names(&om), names(&plain));
    let lint = promtool(&plain);
    assert!(lint.is_empty(), "{lint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_one_target() {
    let sim = sim(SimOptions::default()).await;
    sim.freeze_clock(None);
    let pools = sim.pools();
    let cards = sim.cards();
    // Only the first pool is configured: probes may ask for other targets of the account.
    let server = Server::start(&config_yaml(&sim, &pools[..1], &[], ""), None).await;

    let (status, text) = get(&server.url(&format!("/probe?account=test&pool={}", pools[3]))).await;
    assert_eq!(status, 200, "{text}");
    let s = parse(&text);
    assert_eq!(value(&s, "tibiot_probe_success", &[]), Some(1.0));
    assert!(value(&s, "tibiot_probe_duration_seconds", &[]).is_some());
    let d = sim.pool_detail(&pools[3]).unwrap();
    assert_eq!(
        value(&s, "tibiot_pool_used_bytes", &[("pool", pools[3].as_str())]),
        d.use_flow.map(|v| v * 1024.0)
    );
    assert!(find(&s, "tibiot_pool_used_bytes", &[("pool", pools[0].as_str())]).is_empty());
    for name in [
        "tibiot_exporter_build_info",
        "tibiot_api_requests_total",
        "process_cpu_seconds_total",
        "tibiot_scrape_duration_seconds",
    ] {
        assert!(
            find(&s, name, &[]).is_empty(),
            "{name} must not be on /probe"
        );
    }
    assert!(promtool(&text).is_empty());

    let (status, text) = get(&server.url(&format!("/probe?account=test&card={}", cards[0]))).await;
    assert_eq!(status, 200);
    let s = parse(&text);
    assert_eq!(value(&s, "tibiot_probe_success", &[]), Some(1.0));
    assert_eq!(
        find(&s, "tibiot_card_status", &[])
            .iter()
            .filter(|x| x.value == 1.0)
            .count(),
        1
    );

    // A failing target: still 200, probe_success 0.
    sim.set_fault(FaultRule::new(tibiot_sim::Fault::BusinessError).target(pools[4].clone()));
    let (status, text) = get(&server.url(&format!("/probe?account=test&pool={}", pools[4]))).await;
    assert_eq!(status, 200);
    assert_eq!(value(&parse(&text), "tibiot_probe_success", &[]), Some(0.0));

    for (query, why) in [
        ("", "exactly one of"),
        ("?account=nobody&pool=POOL-0001", "unknown account"),
        ("?account=test", "exactly one of"),
        (
            "?account=test&pool=POOL-0001&card=89860000000000000001",
            "exactly one of",
        ),
        ("?account=test&pool=a%20b", "malformed pool code"),
        ("?account=test&pool=%3Cscript%3E", "malformed pool code"),
        ("?account=test&card=1234", "malformed ICCID"),
        ("?account=test&pool=POOL-0001&pool=POOL-0002", "once"),
    ] {
        let r = client()
            .get(server.url(&format!("/probe{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let body = r.text().await.unwrap();
        assert!(body.contains(why), "{query}: {body}");
    }
}

/// `account` may be left out when one account is configured, and not when there are two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_account_is_needed_only_with_several_accounts() {
    let sim = sim(SimOptions::default()).await;
    let pool = sim.pools()[0].clone();
    let one = config_yaml(&sim, std::slice::from_ref(&pool), &[], "");
    let server = Server::start(&one, None).await;
    let (status, text) = get(&server.url(&format!("/probe?pool={pool}"))).await;
    assert_eq!(status, 200, "{text}");
    let s = parse(&text);
    assert_eq!(value(&s, "tibiot_probe_success", &[]), Some(1.0));
    assert!(
        value(
            &s,
            "tibiot_pool_used_bytes",
            &[("account", "test"), ("pool", &pool)]
        )
        .is_some()
    );

    let (accounts, collect) = one.split_once("collect:").unwrap();
    let second = accounts
        .trim_start_matches("accounts:\n")
        .replace("name: test", "name: second");
    let two = format!("{accounts}{second}collect:{collect}");
    let server = Server::start(&two, None).await;
    let (status, text) = get(&server.url(&format!("/probe?pool={pool}"))).await;
    assert_eq!(status, 400);
    assert!(text.contains("missing parameter: account"), "{text}");
    let (status, _) = get(&server.url(&format!("/probe?account=second&pool={pool}"))).await;
    assert_eq!(status, 200);
}

/// A hostile upstream: names full of HTML and quotes. (Not a mock of our code: a stand-in
/// for a vendor that returns markup in user-entered names.)
async fn hostile_upstream() -> String {
    use axum::routing::get;
    let detail = serde_json::json!({
        "code": 0, "message": "ok", "traceId": "t-<b>",
        "data": {"upoolCode": "P-1", "upoolName": "<script>alert('x')</script> & \"pool\"",
                 "poolType": 1, "useFlow": 10, "totalFlow": 100, "upoolStatus": 1}
    });
    let app = axum::Router::new().route(
        "/api/v1/pool/detail",
        get(move || {
            let d = detail.clone();
            async move { axum::Json(d) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_lists_every_target_and_escapes_html() {
    let sim = sim(SimOptions::default()).await;
    let hostile = hostile_upstream().await;
    let yaml = format!(
        "{}  - name: other\n    base_url: {hostile}\n    auth: none\n    pools: [P-1]\n",
        config_yaml(&sim, &sim.pools(), &sim.cards(), "")
            .replace("collect:\n  requests_per_second: 0\n", "")
    ) + "collect:\n  requests_per_second: 0\n  history: {pool_days: 0, pool_months: 0}\n";
    let server = Server::start(&yaml, None).await;
    assert_eq!(get(&server.url("/metrics")).await.0, 200);
    let (status, html) = get(&server.url("/")).await;
    assert_eq!(status, 200);
    // Every pool, and every card (40: one page of the card list).
    for t in sim.pools().iter().chain(sim.cards().iter()) {
        assert!(html.contains(&format!(">{t}</a>")), "{t} missing");
    }
    assert!(html.contains("class=\"bar\""), "a usage bar per pool");
    assert!(!html.contains("<script>"), "upstream HTML must be escaped");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;pool&quot;")
    );
    assert!(!html.contains("src=\"http"), "no external assets");
    assert!(!html.contains(sim.app_secret()));
    assert!(html.contains("<td><b>test</b></td>"), "the account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_never_waits_for_upstream_and_refreshes_in_the_background() {
    use tibiot_sim::Fault;
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools();
    // Every pool detail answers after an hour, the first time: the page must not wait.
    sim.set_fault(
        FaultRule::new(Fault::Slow(Duration::from_secs(3600)))
            .endpoint(Endpoint::PoolDetail)
            .times(pools.len() as u32),
    );
    let server = Server::start(
        &config_yaml(
            &sim,
            &pools,
            &[],
            "  timeout: 1h\n  history: {pool_days: 0, pool_months: 0}\n",
        ),
        None,
    )
    .await;
    // The first visit, before any scrape: served at once from the empty cache, with every
    // pool pending, and it asked for them in the background.
    let (status, html) = get(&server.url("/")).await;
    assert_eq!(status, 200);
    assert!(html.contains("class=\"st pending\">pending<"), "{html}");
    assert!(
        html.contains(&format!(" {} pending.", pools.len())),
        "{html}"
    );
    let asked = eventually(Duration::from_secs(30), || async {
        sim.requests(Endpoint::PoolDetail) == pools.len() as u64
    })
    .await;
    assert!(asked, "the page started one background refresh");
    // Visits while those hang are served too, and start nothing more (fetches are shared).
    for _ in 0..3 {
        assert_eq!(get(&server.url("/")).await.0, 200);
    }
    assert_eq!(sim.requests(Endpoint::PoolDetail), pools.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_shows_an_oversubscribed_request_budget() {
    let sim = sim(SimOptions::default()).await;
    // 8 pools every 5 s and 40 cards every minute need more than one request a second.
    let collect = "  requests_per_second: 1\n  pool_ttl: 5s\n  card_ttl: 1m\n  history: {pool_days: 0, pool_months: 0}\n";
    let yaml = config_yaml(&sim, &sim.pools(), &sim.cards(), "")
        .replace("  requests_per_second: 0\n", collect);
    let server = Server::start(&yaml, None).await;
    let (status, html) = get(&server.url("/")).await;
    assert_eq!(status, 200);
    let problems = &html[html.find("id=\"problems\"").unwrap()..];
    let problems = &problems[..problems.find("</section>").unwrap()];
    assert!(
        problems.contains("Request budget over-subscribed")
            && problems.contains("1.0/s are allowed"),
        "{problems}"
    );
    // Within budget: no such problem.
    let yaml = config_yaml(&sim, &sim.pools(), &sim.cards(), "");
    let server = Server::start(&yaml, None).await;
    let (_, html) = get(&server.url("/")).await;
    assert!(!html.contains("Request budget over-subscribed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_refresh_fills_the_cache_a_scrape_then_reuses() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools();
    let server = Server::start(&config_yaml(&sim, &pools, &[], ""), None).await;
    let (status, _) = get(&server.url("/")).await;
    assert_eq!(status, 200);
    // Without any scrape, the page's background refresh fills the cache.
    let filled = eventually(Duration::from_secs(60), || async {
        get(&server.url("/")).await.1.contains(" 0 pending.")
    })
    .await;
    assert!(filled, "the background refresh filled the cache");
    let detail_calls = sim.requests(Endpoint::PoolDetail);
    assert_eq!(detail_calls, pools.len() as u64);
    // A scrape within the TTL reuses what the page's refresh fetched.
    let (status, body) = get(&server.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains(&format!(
        "tibiot_pool_used_bytes{{account=\"test\",pool=\"{}\"}}",
        pools[0]
    )));
    assert_eq!(sim.requests(Endpoint::PoolDetail), detail_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_redacted_and_health_endpoints_answer() {
    let sim = sim(SimOptions::default()).await;
    let server = Server::start(&config_yaml(&sim, &sim.pools(), &[], ""), None).await;
    let (status, body) = get(&server.url("/config")).await;
    assert_eq!(status, 200);
    assert!(body.contains("app_secret"), "{body}");
    assert!(!body.contains(sim.app_secret()), "secret leaked: {body}");
    assert!(body.contains(&sim.pools()[0]));
    assert_eq!(get(&server.url("/-/healthy")).await.0, 200);
    assert_eq!(get(&server.url("/-/ready")).await.0, 200);
    // Secrets are not in the metrics either.
    assert!(
        !get(&server.url("/metrics"))
            .await
            .1
            .contains(sim.app_secret())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_good_files_and_keeps_the_old_config_on_bad_ones() {
    let sim = sim(SimOptions::default()).await;
    let pools = sim.pools();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let cards_file = dir.path().join("cards.txt");
    std::fs::write(&cards_file, format!("# cards\n{}\n", sim.cards()[0])).unwrap();
    let yaml = |pools: &[String]| {
        config_yaml(&sim, pools, &[], "").replace("    cards: []\n", "    cards_file: cards.txt\n")
    };
    std::fs::write(&path, yaml(&pools[..1])).unwrap();
    let p = path.clone();
    let loader: Loader = Arc::new(move || Config::load(&p));
    let server = Server::start_config(Config::load(&path).unwrap(), Some(loader)).await;
    let reload = || async {
        let r = client().post(server.url("/-/reload")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let scrape = || async { parse(&get(&server.url("/metrics")).await.1) };
    let has_pool =
        |s: &[Sample], p: &str| value(s, "tibiot_pool_used_bytes", &[("pool", p)]).is_some();
    let has_card = |s: &[Sample], c: &str| {
        value(s, "tibiot_card_cycle_usage_bytes", &[("iccid", c)]).is_some()
    };

    let s = scrape().await;
    assert!(has_pool(&s, &pools[0]) && !has_pool(&s, &pools[1]));
    assert!(has_card(&s, &sim.cards()[0]));

    // Good new files: a second pool, another card in the cards file.
    std::fs::write(&path, yaml(&pools[..2])).unwrap();
    std::fs::write(
        &cards_file,
        format!("{}\n{}\n", sim.cards()[0], sim.cards()[1]),
    )
    .unwrap();
    assert_eq!(reload().await.0, 200);
    let s = scrape().await;
    assert!(has_pool(&s, &pools[1]));
    assert!(has_card(&s, &sim.cards()[1]));
    assert_eq!(
        value(&s, "tibiot_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // A bad file: 500 naming the key, the old configuration stays, the gauge drops to 0.
    std::fs::write(
        &path,
        yaml(&pools[..2]).replace("collect:\n", "collect:\n  timeout: soon\n"),
    )
    .unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 500);
    assert!(body.contains("collect.timeout"), "{body}");
    let s = scrape().await;
    assert!(has_pool(&s, &pools[1]));
    assert_eq!(
        value(&s, "tibiot_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );

    // A missing cards file is bad too.
    std::fs::write(&path, yaml(&pools[..1])).unwrap();
    std::fs::remove_file(&cards_file).unwrap();
    let (status, body) = reload().await;
    assert_eq!(status, 500);
    assert!(body.contains("cards_file"), "{body}");
    assert!(has_pool(&scrape().await, &pools[1]));
}
