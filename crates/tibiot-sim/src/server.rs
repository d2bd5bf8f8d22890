//! The simulator's HTTP server: an accept loop serving HTTP/1.1 and HTTP/2 with hyper, so
//! that a handler can drop a connection without an answer (the `ConnectionReset` fault: the
//! service returns an error and hyper closes the socket), and a graceful shutdown that stops
//! accepting, lets in-flight requests finish (at most 5 s) and then aborts the rest.

use crate::SimState;
use crate::routes::{self, ResetConnection};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The error a service returns to make hyper drop the connection.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (simulated fault)")
    }
}

impl std::error::Error for DropConnection {}

/// Resolves once the flag is true or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serves until `shutdown` turns true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    state: Arc<SimState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let mut stop = shutdown.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let state = state.clone();
                            async move {
                                let resp = routes::handle(&state, req.map(Body::new)).await;
                                if resp.extensions().get::<ResetConnection>().is_some() {
                                    Err(DropConnection)
                                } else {
                                    Ok(resp)
                                }
                            }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = stopped(&mut stop) => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: back off briefly, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            _ = stopped(&mut shutdown) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
