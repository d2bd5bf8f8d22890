//! The numbers that protect the server: connection admission (how many connections, how many
//! per client, how long a connection may stay silent or idle: enforced by `admission` and
//! `connection`), request admission (how many requests at once, how large a body, how long a
//! handler: enforced by `guard`) and the shutdown grace period (`server`).

use std::time::Duration;

/// Limits that protect the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest a request may take inside the router; 503 after it. A safety net: scrapes are
    /// bounded by their own deadline (keep it below this).
    pub request_timeout: Duration,
    /// Requests served at once; beyond it 503 at once. 0: no limit.
    pub max_concurrent_requests: usize,
    /// Largest accepted request body, whether announced by `Content-Length` or streamed.
    pub max_request_body_bytes: usize,
    /// Time a client has to send a request body once its headers arrived (408 after it).
    pub body_read_timeout: Duration,
    /// Open connections at once. A new connection beyond it closes the longest-idle one
    /// (connections that never sent a request first); it is refused only when every other
    /// connection has a request in progress.
    pub max_connections: usize,
    /// Open connections from one client address (IPv4; for IPv6 its /64). A new connection
    /// beyond it closes that client's own longest-idle connection. 0: no per-client limit.
    pub max_connections_per_client: usize,
    /// Time from accept to a connection's first complete request headers (TLS handshake,
    /// HTTP/2 preface and settings included), and from the first byte of any later HTTP/1
    /// request to its complete headers.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress, between requests.
    pub idle_timeout: Duration,
    /// HTTP/2: a PING is sent after this long without frames from the client...
    pub http2_keep_alive_interval: Duration,
    /// ...and the connection is closed when it is not answered within this time.
    pub http2_keep_alive_timeout: Duration,
    /// On shutdown, how long in-flight requests may still take.
    pub shutdown_grace: Duration,
}

/// Requests served at once by default (`--web.max-requests`), every endpoint counted.
pub const DEFAULT_MAX_REQUESTS: usize = 64;
/// Open connections by default (`--web.max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Open connections per client by default (`--web.max-connections-per-client`).
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 128;
/// Default `header_read_timeout` (`--web.read-header-timeout`).
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `idle_timeout` (`--web.idle-timeout`): above the longest common scrape interval
/// (2 minutes), so a kept-alive scrape connection is reused rather than reopened.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(180);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(300),
            max_concurrent_requests: DEFAULT_MAX_REQUESTS,
            max_request_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
