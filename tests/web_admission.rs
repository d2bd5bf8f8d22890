//! Connection admission against peers that hold connections without using them, on the real
//! binary: while 520 idle HTTP/2 connections (client preface and an empty SETTINGS frame, then
//! only PING answers), 600 silent TCP connections, or 600 slowloris connections (request
//! headers at one byte a second) are open, a Prometheus-like scrape on a new connection still
//! succeeds within its 10 s timeout, in plain HTTP with the default per-client share, and with
//! TLS and basic auth with no per-client share (so the connection cap itself is what is hit);
//! the header timeout is raised to a minute, so what lets the scrape in is admission, not the
//! attack connections timing out.
//! Every attack connection the server closes is reopened after a second, so the attacker keeps
//! holding what it can. In process: a kept-alive HTTP/1 connection outlives the header
//! timeout, an idle one is closed after the idle timeout, silent connections make room for a
//! request when the cap is reached, a body that stops arriving gets 408; the real binary reads
//! a streamed `/-/reload` body under the body limit (413 over it, as for an announced one).

mod web_support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tibiot_sim::{SimHandle, SimOptions};
use tibiot_web::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use web_support::*;

/// The attacks share the machine's file descriptors: one at a time.
static ONE_ATTACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Prometheus' scrape timeout in these tests.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises this process's open-files limit (inherited by the exporter) as far as allowed, and
/// returns the connection cap to run the exporter with: 512, the default, unless the limit
/// is too low for it and the attack; then smaller, and the attacks shrink along.
fn connection_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 128;
        }
        let want = lim.rlim_max.min(8192);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let fds = lim.rlim_cur as u64;
    // The attack (cap + 88) is open in this process and, accepted, in the exporter.
    ((fds.saturating_sub(400) / 2) as usize).clamp(64, 512)
}

struct Exporter {
    child: Child,
    port: u16,
    pki: Option<Pki>,
    password: Option<&'static str>,
    _dir: tempfile::TempDir,
    _sim: SimHandle,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The exporter with a simulator behind it; `secure`: TLS and basic auth.
async fn exporter(secure: bool, flags: &[String]) -> Exporter {
    let sim = SimHandle::start(
        SimOptions {
            pools: 2,
            cards: 2,
            ..SimOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let pki = secure.then(Pki::new);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tibiot-exporter.yml");
    std::fs::write(
        &config,
        format!(
            "accounts:\n  - name: main\n    base_url: {}\n    app_key: {}\n    app_secret: {}\n    \
             pools: {:?}\n",
            sim.base_url(),
            sim.app_key(),
            sim.app_secret(),
            sim.pools(),
        ),
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tibiot-exporter"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let password = secure.then_some("scrape-pass");
    if let Some(pki) = &pki {
        let web = pki.write_web_config(&format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {}\n",
            hash("scrape-pass")
        ));
        cmd.arg(format!("--web.config.file={}", web.display()));
    }
    let exp = Exporter {
        child: cmd.spawn().unwrap(),
        port,
        pki,
        password,
        _dir: dir,
        _sim: sim,
    };
    eventually("the exporter answers", || async {
        scrape(&exp, "/-/healthy").await.is_ok()
    })
    .await;
    exp
}

/// One Prometheus-like request on a new connection: Ok(body) for a 200 within the timeout.
async fn scrape(exp: &Exporter, path: &str) -> Result<String, String> {
    let builder = match &exp.pki {
        Some(pki) => pki.client(),
        None => client_builder(),
    };
    let client = builder
        .pool_max_idle_per_host(0)
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .unwrap();
    let scheme = if exp.pki.is_some() { "https" } else { "http" };
    let mut req = client
        .get(format!("{scheme}://localhost:{}{path}", exp.port))
        .header("X-Prometheus-Scrape-Timeout-Seconds", "10");
    if let Some(pw) = exp.password {
        req = req.basic_auth("prometheus", Some(pw));
    }
    let r = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("{e:?}"))?;
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    Ok(body)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// HTTP/2 preface + empty SETTINGS, then only PING answers.
    IdleHttp2,
    /// Connect, then nothing (with TLS: not even a ClientHello).
    Silent,
    /// HTTP/1.1 request headers at one byte a second.
    Slowloris,
}

/// Attack connections, each reopened a second after the server closes it.
struct Attack {
    /// Connections that got as far as their first bytes at least once.
    opened: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Attack {
    fn start(exp: &Exporter, kind: Kind, n: usize) -> Attack {
        let opened = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tls = exp.pki.as_ref().map(|pki| tls_connector(pki, kind));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (opened, stop, tls) = (opened.clone(), stop.clone(), tls.clone());
            let port = exp.port;
            tasks.spawn(async move {
                let mut counted = false;
                while !stop.load(Ordering::Relaxed) {
                    let _ = hold(port, tls.as_ref(), kind, || {
                        if !std::mem::replace(&mut counted, true) {
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .await;
                    // Reopen a moment later, as an attacker holding slots would.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        Attack {
            opened,
            stop,
            tasks,
        }
    }

    /// Waits until every attack connection was open at least once.
    async fn in_place(&self, n: usize) {
        let opened = self.opened.clone();
        eventually(&format!("{n} attack connections opened"), || {
            let opened = opened.clone();
            async move { opened.load(Ordering::Relaxed) >= n }
        })
        .await;
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn tls_connector(pki: &Pki, kind: Kind) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.pem().as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = match kind {
        Kind::IdleHttp2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One attack connection, until the server closes it.
async fn hold(
    port: u16,
    tls: Option<&tokio_rustls::TlsConnector>,
    kind: Kind,
    opened: impl FnOnce(),
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    match (kind, tls) {
        (Kind::Silent, _) => {
            opened();
            until_closed(tcp).await
        }
        (_, Some(tls)) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let s = tls.connect(name, tcp).await?;
            behave(s, kind, opened).await
        }
        (_, None) => behave(tcp, kind, opened).await,
    }
}

async fn behave<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    kind: Kind,
    opened: impl FnOnce(),
) -> std::io::Result<()> {
    match kind {
        Kind::IdleHttp2 => {
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await?;
            opened();
            loop {
                let mut head = [0u8; 9];
                s.read_exact(&mut head).await?;
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len.min(1 << 20)];
                s.read_exact(&mut payload).await?;
                // A PING that is not an ACK: answer it, and nothing else.
                if head[3] == 6 && head[4] & 1 == 0 {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    s.write_all(&ack).await?;
                }
            }
        }
        Kind::Slowloris => {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .await?;
            opened();
            let mut buf = [0u8; 1024];
            loop {
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                    _ => s.write_all(b"a").await?,
                }
            }
        }
        Kind::Silent => {
            opened();
            until_closed(s).await
        }
    }
}

async fn until_closed<S: AsyncRead + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}

/// `n` attack connections of `kind` against an exporter, and three scrapes meanwhile: plain
/// HTTP with the default per-client share (the attack comes from the scraper's own address),
/// then TLS with basic auth and no per-client share (the connection cap is what fills up).
/// The header timeout is a minute, so the attack is not merely cut short by it.
/// The connection was closed before any response (not a timeout, not a refusal by status).
fn closed_before_response(e: &str) -> bool {
    e.contains("IncompleteMessage")
        || e.contains("ConnectionReset")
        || e.contains("connection closed")
}

async fn scrapes_get_through(kind: Kind, extra_over_cap: usize) {
    let _one = ONE_ATTACK_AT_A_TIME.lock().await;
    let cap = connection_cap();
    let n = cap + extra_over_cap;
    for secure in [false, true] {
        // Attack connections may stay a minute before sending headers: only admission
        // (closing them to make room) lets a scrape in within its timeout.
        let mut flags = vec![
            format!("--web.max-connections={cap}"),
            "--web.read-header-timeout=60s".to_string(),
        ];
        if secure {
            flags.push("--web.max-connections-per-client=0".into());
        }
        let mut exp = exporter(secure, &flags).await;
        // The first scrape fills the cache; what follows is about admission only.
        scrape(&exp, "/metrics")
            .await
            .expect("scrape before the attack");
        let attack = Attack::start(&exp, kind, n);
        attack.in_place(n).await;
        let mut lost = 0;
        for i in 0..3 {
            // A lockout shows as a scrape that times out or is refused. On a starved machine
            // a scrape's brand-new connection can also lose a race before its request is
            // read: the attack's connections reconnect from the same address many times a
            // second, and the oldest one that has not begun a request makes room (Prometheus
            // records one missed scrape). That is retried, at most twice; a timeout never is.
            let mut attempt = 0;
            let body = loop {
                match scrape(&exp, "/metrics").await {
                    Ok(body) => break body,
                    Err(e) if attempt < 2 && closed_before_response(&e) => {
                        attempt += 1;
                        lost += 1;
                    }
                    Err(e) => panic!("{kind:?} x{n}, secure={secure}: scrape {i} failed: {e}"),
                }
            };
            assert!(body.contains("tibiot_"), "{body}");
        }
        if lost > 0 {
            eprintln!(
                "{kind:?} x{n}, secure={secure}: {lost} scrape connection(s) closed before the response, retried"
            );
        }
        attack.stop().await;
        assert!(
            exp.child.try_wait().unwrap().is_none(),
            "{kind:?}: the exporter is still running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_do_not_lock_out_scrapes() {
    scrapes_get_through(Kind::IdleHttp2, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_lock_out_scrapes() {
    scrapes_get_through(Kind::Silent, 88).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_lock_out_scrapes() {
    scrapes_get_through(Kind::Slowloris, 88).await;
}

/// POST /-/reload with a body over the limit: 413 whether announced or streamed (chunked);
/// a small body is read and the reload happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_body_limit_holds_for_streamed_bodies() {
    let exp = exporter(false, &[]).await;
    let port = exp.port;
    let post = |head: String, body: Vec<u8>| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut r, mut w) = s.split();
        let send = async {
            let _ = w.write_all(head.as_bytes()).await;
            let _ = w.write_all(&body).await;
        };
        let mut answer = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            // The status line is all that is needed; the server may close before the end.
            while !answer.windows(2).any(|w| w == b"\r\n") {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(send, read) })
            .await
            .expect("an answer within 30 s");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let head =
        |extra: &str| format!("POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n");
    let ten_mb = 10 * 1024 * 1024;
    let mut chunked = Vec::with_capacity(ten_mb + 4096);
    for _ in 0..(ten_mb / 65536) {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(b'x', 65536));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = post(head("Transfer-Encoding: chunked\r\n"), chunked).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "chunked: {streamed}");
    let announced = post(
        head(&format!("Content-Length: {ten_mb}\r\n")),
        vec![b'x'; 1024],
    )
    .await;
    assert!(
        announced.starts_with("HTTP/1.1 413"),
        "announced: {announced}"
    );
    let small = post(
        head("Transfer-Encoding: chunked\r\n"),
        b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
    )
    .await;
    assert!(small.starts_with("HTTP/1.1 200"), "small: {small}");
}

/// Reads one HTTP/1.1 response with a Content-Length from `s`; its status code.
async fn read_response(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while data.len() < end + 4 + len {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                data.extend_from_slice(&buf[..n]);
            }
            let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok(status);
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// Waits (at most 30 s) for the server to close `s`.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

const GET: &[u8] = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";

/// A kept-alive HTTP/1 connection is reused after more than the header timeout without a
/// request (the header timer starts with a request's first byte, not when the connection
/// becomes idle), and closed after the idle timeout.
#[tokio::test]
async fn kept_alive_connections_outlive_the_header_timeout_until_idle() {
    let srv = start(tibiot_web::ServerOptions {
        limits: Limits {
            header_read_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..options(None)
    })
    .await;
    let mut kept = TcpStream::connect(srv.addr).await.unwrap();
    kept.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut kept).await.unwrap(), 200);
    // A silent connection opened after that request is closed by the header timeout: by
    // then the kept-alive one has been idle for longer than that.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "silent connection");
    kept.write_all(GET).await.unwrap();
    assert_eq!(
        read_response(&mut kept).await.unwrap(),
        200,
        "the kept-alive connection is reused"
    );
    assert!(srv.stats.admission().header_timeouts >= 1);
    assert_eq!(srv.stats.admission().idle_timeouts, 0);
    srv.stop().await;

    let srv = start(tibiot_web::ServerOptions {
        limits: Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..options(None)
    })
    .await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap(), 200);
    assert!(closed_by_server(&mut idle).await, "idle connection");
    assert_eq!(srv.stats.admission().idle_timeouts, 1);
    srv.stop().await;
}

/// At the connection cap, a new connection closes the oldest one that never sent a request;
/// a connection with a request in progress is kept.
#[tokio::test]
async fn at_the_cap_idle_connections_make_room() {
    let srv = start(tibiot_web::ServerOptions {
        limits: Limits {
            max_connections: 3,
            ..Limits::default()
        },
        ..options(None)
    })
    .await;
    let c = plain_client();
    // One connection busy with a request that never finishes.
    let busy = tokio::spawn(c.get(srv.http("/slow")).send());
    eventually("the slow request is in progress", || async {
        srv.stats.admission().open == 1
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    eventually("three connections open", || async {
        srv.stats.admission().open == 3
    })
    .await;
    // A scrape takes the place of a silent connection.
    assert_eq!(
        plain_client()
            .get(srv.http("/-/healthy"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        closed_by_server(&mut silent[0]).await,
        "the oldest silent one"
    );
    let s = srv.stats.admission();
    assert!(s.evicted >= 1, "{s:?}");
    assert!(!busy.is_finished(), "the request in progress is kept");
    busy.abort();
    srv.stop().await;
}

/// A request body that stops arriving is answered 408 after the body read timeout; the
/// request does not wait for the handler's (much longer) timeout.
#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let srv = start(tibiot_web::ServerOptions {
        limits: Limits {
            body_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..options(None)
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), read_response(&mut s))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    assert_eq!(status, 408);
    srv.stop().await;
}
