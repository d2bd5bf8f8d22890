//! One connection, from accept to close: the TLS handshake when the web config asks for TLS,
//! the HTTP version (ALPN, else sniffed from the first bytes), hyper-util's HTTP/1.1 or
//! HTTP/2 connection serving the protected router, and the connection's deadlines from
//! [`crate::admission`]: complete request headers `header_read_timeout` after accept (TLS
//! handshake and HTTP/2 preface included) and after the first byte of a later HTTP/1 request,
//! `idle_timeout` between requests, and at once when the connection is chosen to make room.
//! HTTP/2 connections also answer for themselves with keep-alive PINGs.

use crate::admission::{Busy, ConnState, Expiry, Ticket};
use crate::guard::Active;
use crate::limits::Limits;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Version};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a connection closed for being idle may take to say goodbye (HTTP/2 GOAWAY).
const GOODBYE: Duration = Duration::from_secs(1);

/// What every connection of a server shares.
#[derive(Clone)]
pub(crate) struct Serving {
    /// The router inside the protective layers.
    pub app: Router,
    pub limits: Limits,
    /// Becomes true when the server shuts down.
    pub stop: watch::Receiver<bool>,
}

/// Which HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
    /// Sniffed from the first bytes (plain connections, TLS without ALPN).
    Auto,
}

/// Serves one accepted connection until it ends, is closed by its deadline or to make room,
/// or the server stops. `active` is the web configuration in force at accept.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    active: Arc<Active>,
    serving: Serving,
) {
    let _ = tcp.set_nodelay(true);
    let state = ticket.state().clone();
    match &active.tls {
        None => {
            let proto = if active.http2 {
                Proto::Auto
            } else {
                Proto::Http1
            };
            serve(tcp, peer, proto, &ticket, serving).await
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            let mut stop = serving.stop.clone();
            let tls = tokio::select! {
                r = acceptor.accept(tcp) => r,
                why = must_close(&state, &serving.limits) => {
                    closing(&ticket, peer, why);
                    return;
                }
                _ = stop.wait_for(|s| *s) => return,
            };
            let tls = match tls {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let proto = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::Http2,
                Some(_) => Proto::Http1,
                None if active.http2 => Proto::Auto,
                None => Proto::Http1,
            };
            serve(tls, peer, proto, &ticket, serving).await
        }
    }
}

/// Serves HTTP on an established stream (plain or TLS).
async fn serve<I>(io: I, peer: SocketAddr, proto: Proto, ticket: &Ticket, serving: Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        app,
        limits,
        mut stop,
    } = serving;
    let state = ticket.state().clone();
    let io = TokioIo::new(Watched {
        io,
        state: state.clone(),
    });
    let requests = state.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let busy = requests.request_begins(req.version() == Version::HTTP_2);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let builder = builder(proto, &limits);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let deadline = must_close(&state, &limits);
    tokio::pin!(deadline);
    let mut stopping = false;
    loop {
        let event = tokio::select! {
            r = conn.as_mut() => Event::Ended(r.err()),
            why = &mut deadline, if !stopping => Event::Deadline(why),
            _ = stop.wait_for(|s| *s), if !stopping => Event::Stop,
        };
        match event {
            Event::Ended(err) => {
                if let Some(e) = err {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Event::Deadline(why) => {
                closing(ticket, peer, why);
                if why == Some(Expiry::Idle) {
                    // Idle between requests: a polite close (HTTP/2 says GOAWAY first).
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(GOODBYE, conn.as_mut()).await;
                }
                return;
            }
            Event::Stop => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What ended a wait of [`serve`].
enum Event {
    Ended(Option<Box<dyn std::error::Error + Send + Sync>>),
    Deadline(Option<Expiry>),
    Stop,
}

/// hyper-util's connection builder for `proto` with the limits applied. HTTP/1 has no header
/// timer of its own here: hyper's starts when a connection becomes idle, which would close
/// every kept-alive connection between scrapes; the connection's deadlines replace it.
fn builder(proto: Proto, limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(limits.http2_keep_alive_interval))
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    match proto {
        Proto::Http1 => builder.http1_only(),
        Proto::Http2 => builder.http2_only(),
        Proto::Auto => builder,
    }
}

/// Resolves when the connection must be closed: `None` when it was chosen to make room,
/// `Some(why)` when its deadline passed. Re-reads the deadline whenever the state changes.
async fn must_close(state: &ConnState, limits: &Limits) -> Option<Expiry> {
    loop {
        let changed = state.wake.notified();
        if state.evicted() {
            return None;
        }
        match state.deadline(limits) {
            None => changed.await,
            Some((at, _)) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => {
                        if let Some((at, why)) = state.deadline(limits)
                            && at <= tokio::time::Instant::now()
                        {
                            return Some(why);
                        }
                    }
                }
            }
        }
    }
}

fn closing(ticket: &Ticket, peer: SocketAddr, why: Option<Expiry>) {
    match why {
        None => tracing::debug!(%peer, "closing an idle connection to admit a new one"),
        Some(why) => {
            ticket.admission().expired(why);
            match why {
                Expiry::Headers => {
                    tracing::debug!(%peer, "closing a connection: request headers not received in time")
                }
                Expiry::Idle => tracing::debug!(%peer, "closing an idle connection"),
            }
        }
    }
}

/// The connection's stream, telling its state when bytes arrive (after TLS).
struct Watched<I> {
    io: I,
    state: Arc<ConnState>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as in progress until it is sent (or
/// dropped), so a connection streaming a large response is never taken for idle.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
