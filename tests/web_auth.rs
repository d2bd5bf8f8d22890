//! Basic auth and self-protection over real HTTP: 401 with `WWW-Authenticate: Basic` for
//! missing, wrong and unknown credentials on every endpoint; 200 with the right ones; verified
//! credentials come from the cache on later requests; the concurrency limit answers 503, the
//! request timeout answers 503, an oversized body 413.

mod web_support;

use std::time::Duration;
use tibiot_web::Limits;
use web_support::*;

const PATHS: &[&str] = &["/", "/metrics", "/config", "/-/healthy", "/no-such-page"];

#[tokio::test]
async fn basic_auth_covers_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yml");
    write_atomically(
        &cfg,
        &format!(
            "basic_auth_users:\n  prometheus: {}\n  alice: {}\n",
            hash("scrape-pass"),
            hash("alice-pass")
        ),
    );
    let srv = start(options(Some(cfg))).await;
    let c = plain_client();

    for path in PATHS {
        for (user, pass) in [
            (None, None),
            (Some("prometheus"), Some("wrong")),
            (Some("prometheus"), None),
            (Some("nobody"), Some("scrape-pass")),
            (Some("alice"), Some("scrape-pass")),
        ] {
            let mut req = c.get(srv.http(path));
            if let Some(u) = user {
                req = req.basic_auth(u, pass);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {user:?} {pass:?}");
            assert_eq!(r.headers()["www-authenticate"], "Basic");
        }
        let r = c
            .get(srv.http(path))
            .basic_auth("prometheus", Some("scrape-pass"))
            .send()
            .await
            .unwrap();
        let want = if *path == "/no-such-page" { 404 } else { 200 };
        assert_eq!(r.status(), want, "{path}");
    }
    let r = c.post(srv.http("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401, "POST /-/reload needs auth too");
    let r = c
        .post(srv.http("/-/reload"))
        .basic_auth("alice", Some("alice-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A malformed Authorization header is a plain 401.
    let r = c
        .get(srv.http("/"))
        .header("authorization", "Basic %%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    srv.stop().await;
}

#[tokio::test]
async fn verified_credentials_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yml");
    write_atomically(&cfg, &format!("basic_auth_users:\n  p: {}\n", hash("pw")));
    let srv = start(options(Some(cfg.clone()))).await;
    let c = plain_client();
    let get = |user: &'static str, pw: &'static str| {
        let c = c.clone();
        let url = srv.http("/metrics");
        async move {
            c.get(url)
                .basic_auth(user, Some(pw))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get("p", "pw").await, 200);
    let after_first = srv.stats.auth();
    assert_eq!(after_first.bcrypt_runs, 1);
    for _ in 0..5 {
        assert_eq!(get("p", "pw").await, 200);
    }
    let s = srv.stats.auth();
    assert_eq!(s.bcrypt_runs, 1, "no bcrypt for cached credentials: {s:?}");
    assert_eq!(s.cache_hits, 5);
    // Wrong passwords and unknown users are never served from the cache: each pays bcrypt.
    assert_eq!(get("p", "nope").await, 401);
    assert_eq!(get("q", "pw").await, 401);
    assert_eq!(srv.stats.auth().bcrypt_runs, 3);
    // A new hash for the same password misses the cache (the key includes the hash).
    write_atomically(&cfg, &format!("basic_auth_users:\n  p: {}\n", hash("pw")));
    eventually("the new hash is verified with bcrypt", || async {
        let before = srv.stats.auth().bcrypt_runs;
        get("p", "pw").await == 200 && srv.stats.auth().bcrypt_runs > before
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn concurrency_limit_answers_503() {
    let opts = tibiot_web::ServerOptions {
        limits: Limits {
            max_concurrent_requests: 2,
            ..Limits::default()
        },
        ..options(None)
    };
    let srv = start(opts).await;
    let c = plain_client();
    // Two requests that never finish hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::spawn(c.get(srv.http("/slow")).send()));
    }
    eventually("a third request is refused with 503", || async {
        let r = c.get(srv.http("/")).send().await.unwrap();
        r.status() == 503 && r.headers().contains_key("retry-after")
    })
    .await;
    for h in &held {
        h.abort();
    }
    eventually("slots are free again once the clients go away", || async {
        c.get(srv.http("/")).send().await.unwrap().status() == 200
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn request_timeout_and_body_limit() {
    let opts = tibiot_web::ServerOptions {
        limits: Limits {
            request_timeout: Duration::from_millis(300),
            max_request_body_bytes: 1024,
            ..Limits::default()
        },
        ..options(None)
    };
    let srv = start(opts).await;
    let c = plain_client();
    let r = c.get(srv.http("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a handler over the request timeout");
    let r = c
        .post(srv.http("/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1000 bytes");
    let r = c
        .post(srv.http("/echo"))
        .body(vec![b'x'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    srv.stop().await;
}

#[tokio::test]
async fn silent_and_slow_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opts = tibiot_web::ServerOptions {
        limits: Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..options(None)
    };
    let srv = start(opts).await;
    // Waits (at most 30 s) for the server to close the connection.
    async fn closed_by_server(mut s: tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
    let silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    assert!(
        closed_by_server(silent).await,
        "a client that sends nothing"
    );
    let mut partial = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(partial).await, "headers never finished");
    // A normal client is unaffected.
    assert_eq!(
        plain_client()
            .get(srv.http("/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    srv.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let e = entered.clone();
    let router = test_router().route(
        "/takes-a-moment",
        axum::routing::get(move || async move {
            e.notify_one();
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let srv = start_with(options(None), router).await;
    let c = plain_client();
    let url = srv.http("/takes-a-moment");
    let inflight = tokio::spawn(async move { c.get(url).send().await.unwrap().text().await });
    // Once the request is in the handler, stop the server.
    tokio::time::timeout(Duration::from_secs(30), entered.notified())
        .await
        .expect("the request reaches the handler");
    let addr = srv.addr;
    srv.stop().await;
    assert_eq!(inflight.await.unwrap().unwrap(), "done");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// Not a timed test: prints the latency of cached and uncached basic auth once, for the record.
/// `cargo test --release --test web_auth -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_basic_auth_latency() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yml");
    let h = bcrypt::hash("pw", 10).unwrap();
    write_atomically(&cfg, &format!("basic_auth_users:\n  p: {h}\n"));
    let srv = start(options(Some(cfg))).await;
    let c = plain_client();
    let req = |u: &'static str, p: &'static str| c.get(srv.http("/metrics")).basic_auth(u, Some(p));
    req("x", "y").send().await.unwrap(); // open the connection
    let t = Instant::now();
    assert_eq!(req("p", "pw").send().await.unwrap().status(), 200);
    let uncached = t.elapsed();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(req("p", "pw").send().await.unwrap().status(), 200);
    }
    let cached = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(req("p", "bad").send().await.unwrap().status(), 401);
    }
    let wrong = t.elapsed() / 5;
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(req("nobody", "bad").send().await.unwrap().status(), 401);
    }
    let unknown = t.elapsed() / 5;
    let s = srv.stats.auth();
    assert_eq!(s.cache_hits, u64::from(n));
    eprintln!(
        "bcrypt cost 10: uncached {uncached:?}, cached {cached:?}, wrong password {wrong:?}, \
         unknown user {unknown:?} ({s:?})"
    );
    srv.stop().await;
}
