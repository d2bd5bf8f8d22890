//! The embedded TIBIOT simulator: a seeded world of pools and cards whose usage grows with a
//! controllable world clock, served over HTTP on all eight open-API endpoints with signature
//! verification, fault injection, network-operation batches and request counters.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tibiot_exporter::sim::{SimHandle, SimOptions};
//! let sim = SimHandle::start(SimOptions::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{} {:?}", sim.base_url(), sim.pools());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`world`] (generation and usage model), [`clock`] (world clock), [`auth`]
//! (signature checks), [`faults`], [`batches`], [`counters`], [`routes`] (request handling),
//! [`server`] (accept loop), [`cli`] (the `simulate` command).

#![warn(unreachable_pub)]

pub mod auth;
pub mod batches;
pub mod cli;
pub mod clock;
pub mod counters;
pub mod faults;
pub mod routes;
pub mod server;
pub mod world;

pub use faults::{Fault, FaultRule};

use chrono::{DateTime, NaiveDate, Utc};
use rand::RngCore;
use secrecy::SecretString;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tibiot_api::calendar::{ApiCalendar, Month};
use tibiot_api::{BatchCardStatus, CardDetail, Endpoint, PoolDetail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to build and run a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seed of the world; same seed, same world.
    pub seed: u64,
    /// Number of pools (`POOL-0001`, ...).
    pub pools: usize,
    /// Number of cards (20-digit ICCIDs starting `8986`).
    pub cards: usize,
    /// Added to every answer.
    pub latency: Duration,
    /// Share (0..=1) of requests answered with a random fault.
    pub error_rate: f64,
    /// The app key verified; made up when `None`.
    pub app_key: Option<String>,
    /// The app secret verified; made up when `None`.
    pub app_secret: Option<String>,
    /// Verify signatures (`auth: hmac-sha256`); `false` = `auth: none`.
    pub auth: bool,
    /// One step of a network-operation batch (pending → running → final takes 2-4 steps).
    pub batch_step: Duration,
    /// Targets (pool codes, ICCIDs) whose every request answers HTTP 500.
    pub failing_targets: Vec<String>,
    /// Targets whose every request answers after `slow_delay`.
    pub slow_targets: Vec<String>,
    pub slow_delay: Duration,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// Path prefix the endpoints live under (e.g. `/tibiot`); empty = at the root.
    pub path_prefix: String,
    /// The API calendar (default `+08:00`).
    pub calendar: ApiCalendar,
    /// Cards (ICCIDs) that run away from the start: `runaway_factor` × their normal daily
    /// usage on top of it, until the network operation switches them off.
    pub runaway_cards: Vec<String>,
    pub runaway_factor: f64,
    /// World time after the start at which the runaway cards start running away.
    pub runaway_after: Duration,
    /// The world clock runs this many times faster than real time (1 = real time).
    pub clock_speed: f64,
    /// World time at the start (`None`: real time).
    pub clock_start: Option<DateTime<Utc>>,
    /// Serve `POST /-/clock?at=RFC3339` (freeze the world clock there) and
    /// `POST /-/clock?resume` (let it run again), unauthenticated: for tests that read the
    /// world at chosen times. Off by default.
    pub clock_control: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            pools: 8,
            cards: 40,
            latency: Duration::ZERO,
            error_rate: 0.0,
            app_key: None,
            app_secret: None,
            auth: true,
            batch_step: Duration::from_millis(400),
            failing_targets: Vec::new(),
            slow_targets: Vec::new(),
            slow_delay: Duration::from_secs(30),
            faults: Vec::new(),
            path_prefix: String::new(),
            calendar: ApiCalendar::default(),
            runaway_cards: Vec::new(),
            runaway_factor: 100.0,
            runaway_after: Duration::ZERO,
            clock_speed: 1.0,
            clock_start: None,
            clock_control: false,
        }
    }
}

/// Shared state of a running simulator.
#[derive(Debug)]
pub struct SimState {
    pub(crate) world: world::World,
    pub(crate) clock: clock::WorldClock,
    pub(crate) verifier: Option<auth::Verifier>,
    pub(crate) faults: faults::Faults,
    pub(crate) counters: counters::Counters,
    pub(crate) batches: batches::Batches,
    pub(crate) latency: Duration,
    pub(crate) prefix: String,
    pub(crate) clock_control: bool,
    pub(crate) trace_salt: u64,
    pub(crate) trace_counter: AtomicU64,
}

/// A running simulator. Dropping it stops the server (without waiting);
/// [`SimHandle::shutdown`] stops it gracefully.
pub struct SimHandle {
    state: Arc<SimState>,
    addr: SocketAddr,
    app_key: String,
    app_secret: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl SimHandle {
    /// Generates the world, binds `listen` (use port 0 in tests) and starts serving.
    pub async fn start(opts: SimOptions, listen: SocketAddr) -> io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app_key = opts
            .app_key
            .clone()
            .unwrap_or_else(|| format!("sim-{}", random_hex(4)));
        let app_secret = opts.app_secret.clone().unwrap_or_else(|| random_hex(16));
        let prefix = opts.path_prefix.trim_end_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path_prefix must start with '/'",
            ));
        }
        let clock = clock::WorldClock::default();
        if let Some(at) = opts.clock_start {
            clock.freeze(Some(at));
            clock.resume();
        }
        clock.set_speed(opts.clock_speed);
        let mut world = world::World::generate(opts.seed, opts.pools, opts.cards, opts.calendar);
        for iccid in &opts.runaway_cards {
            let Some(i) = world.card_idx(iccid) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("runaway card {iccid:?} is not a card of the simulator"),
                ));
            };
            let after = chrono::Duration::from_std(opts.runaway_after)
                .unwrap_or(chrono::Duration::MAX)
                .min(chrono::Duration::days(3650));
            world = world.with_runaway(i, clock.now() + after, opts.runaway_factor);
        }
        let state = Arc::new(SimState {
            world,
            clock,
            verifier: opts.auth.then(|| {
                auth::Verifier::new(app_key.clone(), SecretString::from(app_secret.clone()))
            }),
            faults: faults::Faults::new(
                opts.failing_targets,
                opts.slow_targets,
                opts.slow_delay,
                opts.error_rate,
                opts.faults,
            ),
            counters: counters::Counters::default(),
            batches: batches::Batches::new(opts.batch_step),
            latency: opts.latency,
            prefix,
            clock_control: opts.clock_control,
            trace_salt: rand::rng().next_u64(),
            trace_counter: AtomicU64::new(1),
        });
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, state.clone(), rx));
        Ok(SimHandle {
            state,
            addr,
            app_key,
            app_secret,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path_prefix>`: the `base_url` of an account.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.state.prefix)
    }

    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    pub fn app_secret(&self) -> &str {
        &self.app_secret
    }

    /// Every pool code, in order.
    pub fn pools(&self) -> Vec<String> {
        self.state
            .world
            .pools()
            .iter()
            .map(|p| p.code.clone())
            .collect()
    }

    /// Every ICCID, in order.
    pub fn cards(&self) -> Vec<String> {
        self.state
            .world
            .cards()
            .iter()
            .map(|c| c.iccid.clone())
            .collect()
    }

    /// The generated world (static attributes of pools and cards).
    pub fn world(&self) -> &world::World {
        &self.state.world
    }

    // ---- values as served at the current world clock ----

    /// The current world time.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.clock.now()
    }

    /// Today on the API calendar at the world time.
    pub fn today(&self) -> NaiveDate {
        self.state.world.calendar().date_at(self.now())
    }

    /// The pool detail the endpoint serves now.
    pub fn pool_detail(&self, code: &str) -> Option<PoolDetail> {
        let i = self.state.world.pool_idx(code)?;
        self.state.batches.settle(&self.state.world, self.now());
        Some(self.state.world.pool_detail(i, self.now()))
    }

    /// The card detail the endpoint serves now.
    pub fn card_detail(&self, iccid: &str) -> Option<CardDetail> {
        let i = self.state.world.card_idx(iccid)?;
        self.state.batches.settle(&self.state.world, self.now());
        Some(self.state.world.card_detail(i, self.now()))
    }

    /// Pool usage of `date`, KB (0 outside the data; the endpoint only serves the last 30 days).
    pub fn pool_day_usage_kb(&self, code: &str, date: NaiveDate) -> Option<u64> {
        let i = self.state.world.pool_idx(code)?;
        Some(self.state.world.pool_day_usage(i, date, self.now()))
    }

    /// Pool usage of `month`, KB.
    pub fn pool_month_usage_kb(&self, code: &str, month: Month) -> Option<u64> {
        let i = self.state.world.pool_idx(code)?;
        Some(self.state.world.pool_month_usage(i, month, self.now()))
    }

    /// Card usage of `date`, KB.
    pub fn card_day_usage_kb(&self, iccid: &str, date: NaiveDate) -> Option<u64> {
        let i = self.state.world.card_idx(iccid)?;
        Some(self.state.world.card_day_usage(i, date, self.now()))
    }

    /// Card usage of `month`, KB.
    pub fn card_month_usage_kb(&self, iccid: &str, month: Month) -> Option<u64> {
        let i = self.state.world.card_idx(iccid)?;
        Some(self.state.world.card_month_usage(i, month, self.now()))
    }

    /// The batch status the endpoint serves now.
    pub fn batch_status(&self, batch_code: &str) -> Option<Vec<BatchCardStatus>> {
        let items = self
            .state
            .batches
            .status(&self.state.world, batch_code, self.now())?;
        Some(
            items
                .into_iter()
                .map(|i| BatchCardStatus {
                    operation_card_status: Some(i64::from(i.state)),
                    iccid: Some(i.iccid),
                    msisdn: Some(i.msisdn),
                })
                .collect(),
        )
    }

    /// Sets a card's status (e.g. to prepare a test); false for an unknown ICCID.
    pub fn set_card_status(&self, iccid: &str, status: u8) -> bool {
        match self.state.world.card_idx(iccid) {
            Some(i) => {
                self.state.world.set_card_status(i, status);
                true
            }
            None => false,
        }
    }

    // ---- world clock ----

    /// Stops the world clock at `at` (or where it stands when `None`).
    pub fn freeze_clock(&self, at: Option<DateTime<Utc>>) {
        self.state.clock.freeze(at);
    }

    /// Moves the world clock by `by` (negative to go back).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.state.clock.advance(by);
    }

    /// Lets a frozen world clock run again from where it stands.
    pub fn resume_clock(&self) {
        self.state.clock.resume();
    }

    /// Back to real time.
    pub fn reset_clock(&self) {
        self.state.clock.reset();
    }

    /// Runs the world clock `speed` times faster than real time from now on.
    pub fn set_clock_speed(&self, speed: f64) {
        self.state.clock.set_speed(speed);
    }

    // ---- faults ----

    /// Adds a fault rule (newest rules win).
    pub fn set_fault(&self, rule: FaultRule) {
        self.state.faults.add(rule);
    }

    /// Removes every runtime fault rule (named targets and the error rate stay).
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    // ---- counters ----

    /// Requests received on `endpoint` (every request to its path counts).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.state.counters.requests(endpoint)
    }

    /// Requests on `endpoint` about `target` (pool code, ICCID or batch code).
    pub fn requests_for(&self, endpoint: Endpoint, target: &str) -> u64 {
        self.state.counters.requests_for(endpoint, target)
    }

    pub fn total_requests(&self) -> u64 {
        self.state.counters.total()
    }

    pub fn reset_counters(&self) {
        self.state.counters.reset();
    }

    // ---- lifecycle ----

    /// Stops accepting, lets in-flight requests finish (at most 5 s), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
