//! The guard's decisions: one webhook message in, one decision per alert episode out, each
//! written to the audit log before anything is sent; enforce actions run in the background
//! through the `card network` machinery ([`crate::network::switch`]: batch API, followed to
//! done / failed / unknown, a request without an answer never sent again) and end with a
//! second audit line. The handler never waits for the API, so Alertmanager gets its answer at
//! once; a notification repeated while an action is in flight finds the `sending` decision
//! and does nothing.
//!
//! Order of the checks for a firing alert matched by a policy: episode already decided →
//! repeat (nothing written); no usable fingerprint, unknown `account` or invalid `iccid` →
//! `invalid`; ICCID protected → `protected`; card already switched off by the guard →
//! ignored; hourly limit reached → `over_limit`; dry-run → `dry_run`; else the card is
//! switched off.

use crate::guard::alert::{Alert, Notification, is_valid_fingerprint, is_valid_starts_at};
use crate::guard::config::{GuardConfig, Mode, Policy};
use crate::guard::metrics::{AlertResult, Metrics};
use crate::guard::state::{Action, AuditLog, DecisionKey, Outcome, Record, State};
use crate::network::{self, CardResult, SwitchOptions};
use chrono::Utc;
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tibiot_api::{Client, Gate};
use tibiot_exporter::config::{Config, excerpt, is_valid_iccid};
use tibiot_web::WebConfig;

/// Where the guard reads its files and how it acts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: PathBuf,
    pub guard_file: PathBuf,
    pub web_config_file: Option<PathBuf>,
    /// `--web.listen-address`, for messages.
    pub listen: String,
    /// Whether every address it names is loopback: if not, enforce mode needs authentication.
    pub listen_loopback: bool,
    /// Upper bound of one API call.
    pub timeout: Duration,
    /// How long a batch is followed.
    pub wait_timeout: Duration,
}

/// Whether `--web.listen-address` names loopback addresses only (`:PORT` is every interface;
/// a host name counts as loopback only if all its addresses are).
pub fn is_loopback_listen(listen: &str) -> bool {
    if listen.starts_with(':') {
        return false;
    }
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    match std::net::ToSocketAddrs::to_socket_addrs(listen) {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// What is (re)loaded together.
struct Loaded {
    guard: GuardConfig,
    clients: HashMap<String, Client>,
}

struct Inner {
    state: State,
    audit: AuditLog,
}

/// The running guard.
pub struct Guard {
    settings: Settings,
    loaded: RwLock<Arc<Loaded>>,
    inner: Mutex<Inner>,
    metrics: Metrics,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Why the guard cannot start or reload (exit status 2 at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An audit line that could not be written: nothing was done (HTTP 500, Alertmanager retries).
#[derive(Debug)]
pub struct AuditFailed(pub String);

/// Enforce mode on an address reachable from elsewhere needs authentication: basic auth
/// users, or client certificates required and verified.
pub fn check_exposure(
    mode: Mode,
    listen: &str,
    loopback: bool,
    web_config: Option<&std::path::Path>,
) -> Result<(), SetupError> {
    if mode != Mode::Enforce || loopback {
        return Ok(());
    }
    let refuse = |why: &str| {
        Err(SetupError(format!(
            "refusing enforce mode on {listen} without authentication ({why}): anyone who can \
             reach it could switch cards off. Listen on a loopback address, or give a \
             --web.config.file with basic_auth_users or client_auth_type \
             RequireAndVerifyClientCert"
        )))
    };
    let Some(path) = web_config else {
        return refuse("no --web.config.file");
    };
    if !web_config_authenticates(path)? {
        return refuse(
            "the web config has neither basic_auth_users nor verified client certificates",
        );
    }
    Ok(())
}

/// Whether a web config file requires authentication (basic auth users, or verified client
/// certificates), as the web layer reads it. Its errors never quote the file (it holds
/// password hashes).
fn web_config_authenticates(path: &std::path::Path) -> Result<bool, SetupError> {
    let web = WebConfig::load(path).map_err(|e| SetupError(format!("invalid {e}")))?;
    Ok(web.requires_authentication())
}

fn load(settings: &Settings) -> Result<Loaded, SetupError> {
    let guard = GuardConfig::load(&settings.guard_file).map_err(|e| {
        SetupError(format!(
            "invalid guard file {}: {e}",
            settings.guard_file.display()
        ))
    })?;
    let config = Config::load(&settings.config_file).map_err(|e| {
        SetupError(format!(
            "invalid configuration {}:\n{e}",
            settings.config_file.display()
        ))
    })?;
    check_exposure(
        guard.mode,
        &settings.listen,
        settings.listen_loopback,
        settings.web_config_file.as_deref(),
    )?;
    let mut clients = HashMap::new();
    for account in &config.accounts {
        let gate = Gate::new(
            config.collect.concurrency,
            config.collect.requests_per_second,
        );
        let client = crate::client_for(account, gate, settings.timeout)
            .map_err(|f| SetupError(f.message().to_owned()))?;
        clients.insert(account.name.clone(), client);
    }
    Ok(Loaded { guard, clients })
}

/// What became of one alert, for the caller's log and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub decided: usize,
    pub repeats: usize,
}

/// A decision taken under the lock, to act on after it is released.
struct Job {
    record: Record,
    client: Client,
}

impl Guard {
    /// Loads the files, opens the audit log and rebuilds the state. Decisions left `sending`
    /// by an earlier run are closed as `unknown` (never sent again).
    pub fn start(settings: Settings) -> Result<Arc<Guard>, SetupError> {
        let loaded = load(&settings)?;
        let path = loaded.guard.audit_log.clone();
        let (mut audit, rebuilt) = AuditLog::open(&path).map_err(|e| {
            SetupError(format!("cannot open the audit log {}: {e}", path.display()))
        })?;
        if !rebuilt.skipped.is_empty() {
            tracing::warn!(
                file = %path.display(),
                lines = ?rebuilt.skipped,
                "audit log lines that are not records were skipped (a line cut by a crash is expected)"
            );
        }
        let mut state = rebuilt.state;
        let metrics = Metrics::new();
        for r in rebuilt.unfinished {
            let fin = Record {
                ts: Utc::now(),
                outcome: Outcome::Unknown,
                message: Some(
                    "the guard stopped before the outcome was known; not sent again: check the \
                     card with `tibiotctl card show ICCID`"
                        .into(),
                ),
                ..r
            };
            audit.append(&fin).map_err(|e| {
                SetupError(format!(
                    "cannot write the audit log {}: {e}",
                    path.display()
                ))
            })?;
            state.apply(&fin);
            metrics.decision(&fin.policy, fin.action, fin.outcome);
            tracing::warn!(
                policy = %fin.policy,
                action = fin.action.name(),
                account = fin.account.as_deref().unwrap_or(""),
                iccid = fin.iccid.as_deref().unwrap_or(""),
                "an action was in flight when the guard stopped: outcome unknown"
            );
        }
        for p in &loaded.guard.policies {
            metrics.declare_policy(&p.name, p.reenable_on_resolve);
        }
        metrics.set_config(
            loaded.guard.mode == Mode::Enforce,
            loaded.guard.max_cards_per_hour,
        );
        metrics.set_cards_off(state.off_count());
        metrics.reloaded(true);
        tracing::info!(
            mode = loaded.guard.mode.name(),
            policies = loaded.guard.policies.len(),
            protected = loaded.guard.protect.len(),
            max_cards_per_hour = loaded.guard.max_cards_per_hour,
            cards_switched_off = state.off_count(),
            audit_log = %path.display(),
            "guard loaded"
        );
        Ok(Arc::new(Guard {
            settings,
            loaded: RwLock::new(Arc::new(loaded)),
            inner: Mutex::new(Inner { state, audit }),
            metrics,
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }))
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exposure check again, on the files as they are now: the web layer applies a changed
    /// web config file without a restart, so authentication could have been removed since.
    pub fn still_protected(&self) -> Result<(), SetupError> {
        check_exposure(
            self.mode(),
            &self.settings.listen,
            self.settings.listen_loopback,
            self.settings.web_config_file.as_deref(),
        )
    }

    /// Counts one webhook message by result.
    pub fn metrics_notification(&self, result: &str) {
        self.metrics.notification(result);
    }

    pub fn mode(&self) -> Mode {
        self.loaded().guard.mode
    }

    /// Re-reads the guard file, its protect file and the configuration; a bad one keeps the
    /// previous (error returned, `tibiot_guard_config_last_reload_successful 0`).
    pub fn reload(&self) -> Result<(), SetupError> {
        let result = load(&self.settings).and_then(|new| {
            let old = self.loaded();
            if new.guard.audit_log != old.guard.audit_log {
                return Err(SetupError(format!(
                    "audit_log cannot change on reload ({} → {}): restart the guard",
                    old.guard.audit_log.display(),
                    new.guard.audit_log.display()
                )));
            }
            Ok(new)
        });
        match result {
            Ok(new) => {
                for p in &new.guard.policies {
                    self.metrics.declare_policy(&p.name, p.reenable_on_resolve);
                }
                self.metrics.set_config(
                    new.guard.mode == Mode::Enforce,
                    new.guard.max_cards_per_hour,
                );
                tracing::info!(
                    mode = new.guard.mode.name(),
                    policies = new.guard.policies.len(),
                    protected = new.guard.protect.len(),
                    max_cards_per_hour = new.guard.max_cards_per_hour,
                    "guard reloaded"
                );
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                self.metrics.reloaded(true);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the previous guard file and configuration stay in force");
                self.metrics.reloaded(false);
                Err(e)
            }
        }
    }

    /// The exposition of the guard's metrics.
    pub fn encode_metrics(&self, openmetrics: bool) -> String {
        let loaded = self.loaded();
        {
            let mut inner = self.lock();
            let n = inner
                .state
                .disables_last_hour(loaded.guard.mode, Utc::now());
            self.metrics.set_disables_last_hour(n);
            self.metrics.set_cards_off(inner.state.off_count());
        }
        self.metrics
            .set_in_flight(self.in_flight.load(Ordering::SeqCst));
        self.metrics.encode(openmetrics)
    }

    /// A plain-text summary for the landing page.
    pub fn summary(&self) -> String {
        let loaded = self.loaded();
        let g = &loaded.guard;
        let mut s = format!(
            "tibiotctl guard {}\n\nmode: {}\npolicies: {}\nmax cards per hour: {}\nprotected cards: {}\naudit log: {}\nactions in flight: {}\n",
            env!("CARGO_PKG_VERSION"),
            g.mode.name(),
            g.policies
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            g.max_cards_per_hour,
            g.protect.len(),
            g.audit_log.display(),
            self.in_flight.load(Ordering::SeqCst),
        );
        let off = self.lock().state.off_cards();
        s.push_str(&format!(
            "\ncards switched off by the guard: {}\n",
            off.len()
        ));
        for (account, iccid, o) in off {
            s.push_str(&format!(
                "  {account} {iccid} policy={} batch={} fingerprint={}\n",
                o.policy,
                o.batch_code.as_deref().unwrap_or("-"),
                o.fingerprint
            ));
        }
        s.push_str("\nPOST /webhook (Alertmanager), GET /metrics, POST /-/reload\n");
        s
    }

    /// Takes in one webhook message: decides every alert, writes the decisions, starts the
    /// actions in the background and returns at once.
    pub fn handle(self: &Arc<Self>, n: Notification) -> Result<Handled, AuditFailed> {
        let loaded = self.loaded();
        if n.truncated_alerts > 0 {
            tracing::warn!(
                truncated = n.truncated_alerts,
                "Alertmanager left alerts out of this message (max_alerts): they come again with the group's next notification"
            );
        }
        let mut handled = Handled {
            decided: 0,
            repeats: 0,
        };
        let mut jobs = Vec::new();
        let mut failure = None;
        for alert in &n.alerts {
            let Some(policy) = loaded.guard.policy_for(&alert.labels) else {
                self.metrics.alert(&alert.status, AlertResult::Unmatched);
                continue;
            };
            let r = match alert.status.as_str() {
                "firing" => self.on_firing(&loaded, policy, alert),
                "resolved" => self.on_resolved(&loaded, policy, alert),
                _ => Ok((AlertResult::Ignored, None)),
            };
            match r {
                Ok((result, job)) => {
                    self.metrics.alert(&alert.status, result);
                    match result {
                        AlertResult::Decided => handled.decided += 1,
                        AlertResult::Repeat => handled.repeats += 1,
                        _ => {}
                    }
                    jobs.extend(job);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for job in jobs {
            self.spawn(job);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    fn base_record(&self, mode: Mode, policy: &Policy, action: Action, alert: &Alert) -> Record {
        let episode =
            is_valid_fingerprint(&alert.fingerprint) && is_valid_starts_at(&alert.starts_at);
        Record {
            ts: Utc::now(),
            mode: mode.name().to_owned(),
            policy: policy.name.clone(),
            action,
            outcome: Outcome::Invalid,
            alertname: alert.labels.get("alertname").map(|s| excerpt_plain(s)),
            fingerprint: episode.then(|| alert.fingerprint.clone()),
            starts_at: episode.then(|| alert.starts_at.clone()),
            account: None,
            iccid: None,
            batch_code: None,
            message: None,
        }
    }

    /// Writes a decision (under the lock) and counts it.
    fn decide(&self, inner: &mut Inner, record: Record) -> Result<(), AuditFailed> {
        inner.audit.append(&record).map_err(|e| {
            tracing::error!(
                file = %inner.audit.path().display(),
                error = %e,
                "cannot write the audit log: nothing done; Alertmanager will send the alert again"
            );
            AuditFailed(format!("cannot write the audit log: {e}"))
        })?;
        inner.state.apply(&record);
        self.metrics
            .decision(&record.policy, record.action, record.outcome);
        let level_warn = matches!(
            record.outcome,
            Outcome::Invalid | Outcome::OverLimit | Outcome::Failed | Outcome::Unknown
        );
        macro_rules! log {
            ($lvl:ident) => {
                tracing::$lvl!(
                    mode = %record.mode,
                    policy = %record.policy,
                    action = record.action.name(),
                    outcome = record.outcome.name(),
                    account = record.account.as_deref().unwrap_or(""),
                    iccid = record.iccid.as_deref().unwrap_or(""),
                    fingerprint = record.fingerprint.as_deref().unwrap_or(""),
                    batch = record.batch_code.as_deref().unwrap_or(""),
                    message = record.message.as_deref().unwrap_or(""),
                    "decision"
                )
            };
        }
        if level_warn {
            log!(warn);
        } else {
            log!(info);
        }
        Ok(())
    }

    /// The account and ICCID an alert names, or why it names none.
    fn target(loaded: &Loaded, alert: &Alert) -> Result<(String, String), String> {
        let account = match alert.labels.get("account") {
            None => return Err("the alert has no account label".into()),
            Some(a) if !loaded.clients.contains_key(a) => {
                return Err(format!(
                    "account {} is not in the configuration",
                    excerpt(a)
                ));
            }
            Some(a) => a.clone(),
        };
        let iccid = match alert.labels.get("iccid") {
            None => return Err("the alert has no iccid label".into()),
            Some(i) if !is_valid_iccid(i) => {
                return Err(format!("{} is not an ICCID (18-22 digits)", excerpt(i)));
            }
            Some(i) => i.clone(),
        };
        Ok((account, iccid))
    }

    fn on_firing(
        &self,
        loaded: &Loaded,
        policy: &Policy,
        alert: &Alert,
    ) -> Result<(AlertResult, Option<Job>), AuditFailed> {
        let g = &loaded.guard;
        let mode = g.mode;
        let mut record = self.base_record(mode, policy, Action::Disable, alert);
        let mut inner = self.lock();
        if let (Some(fp), Some(sa)) = (&record.fingerprint, &record.starts_at) {
            let key = DecisionKey {
                mode,
                action: Action::Disable,
                fingerprint: fp.clone(),
                starts_at: sa.clone(),
            };
            if inner.state.outcome(&key).is_some() {
                return Ok((AlertResult::Repeat, None));
            }
        } else {
            record.message = Some(format!(
                "no usable fingerprint/startsAt ({} / {}): without them the guard cannot tell repeats apart",
                excerpt(&alert.fingerprint),
                excerpt(&alert.starts_at)
            ));
            self.decide(&mut inner, record)?;
            return Ok((AlertResult::Decided, None));
        }
        let (account, iccid) = match Self::target(loaded, alert) {
            Ok(t) => t,
            Err(why) => {
                record.message = Some(why);
                self.decide(&mut inner, record)?;
                return Ok((AlertResult::Decided, None));
            }
        };
        record.account = Some(account.clone());
        record.iccid = Some(iccid.clone());
        if g.protect.contains(&iccid) {
            record.outcome = Outcome::Protected;
            record.message = Some("the card is on the protect list".into());
            self.decide(&mut inner, record)?;
            return Ok((AlertResult::Decided, None));
        }
        if let Some(off) = inner.state.off_card(&account, &iccid)
            && mode == Mode::Enforce
        {
            tracing::info!(
                policy = %policy.name,
                account = %account,
                iccid = %iccid,
                switched_off_for = %off.fingerprint,
                "the card is already switched off by the guard (another alert): nothing sent"
            );
            return Ok((AlertResult::Ignored, None));
        }
        if inner.state.disables_last_hour(mode, Utc::now()) >= g.max_cards_per_hour as usize {
            record.outcome = Outcome::OverLimit;
            record.message = Some(format!(
                "limits.max_cards_per_hour ({}) reached: not switched off",
                g.max_cards_per_hour
            ));
            self.decide(&mut inner, record)?;
            return Ok((AlertResult::Decided, None));
        }
        if mode == Mode::DryRun {
            record.outcome = Outcome::DryRun;
            record.message = Some("dry-run: would switch the card off".into());
            self.decide(&mut inner, record)?;
            return Ok((AlertResult::Decided, None));
        }
        let Some(client) = loaded.clients.get(&account).cloned() else {
            // target() checked it
            return Ok((AlertResult::Ignored, None));
        };
        record.outcome = Outcome::Sending;
        self.decide(&mut inner, record.clone())?;
        Ok((AlertResult::Decided, Some(Job { record, client })))
    }

    fn on_resolved(
        &self,
        loaded: &Loaded,
        policy: &Policy,
        alert: &Alert,
    ) -> Result<(AlertResult, Option<Job>), AuditFailed> {
        if !policy.reenable_on_resolve {
            return Ok((AlertResult::Ignored, None));
        }
        let mode = loaded.guard.mode;
        let mut record = self.base_record(mode, policy, Action::Enable, alert);
        let (Some(fp), Some(sa)) = (record.fingerprint.clone(), record.starts_at.clone()) else {
            return Ok((AlertResult::Ignored, None));
        };
        let Ok((account, iccid)) = Self::target(loaded, alert) else {
            // Nothing was switched off for it.
            return Ok((AlertResult::Ignored, None));
        };
        let mut inner = self.lock();
        let key = DecisionKey {
            mode,
            action: Action::Enable,
            fingerprint: fp.clone(),
            starts_at: sa.clone(),
        };
        if inner.state.outcome(&key).is_some() {
            return Ok((AlertResult::Repeat, None));
        }
        record.account = Some(account.clone());
        record.iccid = Some(iccid.clone());
        match mode {
            Mode::DryRun => {
                let disabled = DecisionKey {
                    mode,
                    action: Action::Disable,
                    fingerprint: fp,
                    starts_at: sa,
                };
                if inner.state.outcome(&disabled) != Some(Outcome::DryRun) {
                    return Ok((AlertResult::Ignored, None));
                }
                record.outcome = Outcome::DryRun;
                record.message = Some("dry-run: would switch the card back on".into());
                self.decide(&mut inner, record)?;
                Ok((AlertResult::Decided, None))
            }
            Mode::Enforce => {
                let ours = inner
                    .state
                    .off_card(&account, &iccid)
                    .is_some_and(|o| o.fingerprint == fp);
                if !ours {
                    return Ok((AlertResult::Ignored, None));
                }
                let Some(client) = loaded.clients.get(&account).cloned() else {
                    return Ok((AlertResult::Ignored, None));
                };
                record.outcome = Outcome::Sending;
                self.decide(&mut inner, record.clone())?;
                Ok((AlertResult::Decided, Some(Job { record, client })))
            }
        }
    }

    fn spawn(self: &Arc<Self>, job: Job) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            me.act(job).await;
            if me.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                me.idle.notify_waiters();
            }
        });
    }

    /// Sends one network operation, follows its batch and writes the outcome.
    async fn act(&self, job: Job) {
        let Job { record, client } = job;
        let (Some(account), Some(iccid)) = (record.account.clone(), record.iccid.clone()) else {
            return;
        };
        let on = record.action == Action::Enable;
        let note = |m: &str| {
            tracing::warn!(account = %account, iccid = %iccid, "{m}");
        };
        let sw = network::switch(
            &client,
            &account,
            std::slice::from_ref(&iccid),
            on,
            SwitchOptions {
                timeout: self.settings.timeout,
                wait: Some(self.settings.wait_timeout),
            },
            &ProgressBar::hidden(),
            &note,
        )
        .await;
        let (outcome, batch_code, message) = match sw.outcomes.first() {
            Some(o) => {
                let outcome = match o.result {
                    CardResult::Done => Outcome::Done,
                    CardResult::Failed | CardResult::Rejected => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
                let mut message = o.message.clone();
                if outcome == Outcome::Unknown {
                    message = Some(format!(
                        "{} ({}); not sent again: check the card with `tibiotctl card show {iccid}`",
                        message.unwrap_or_else(|| "outcome unknown".into()),
                        o.result.name()
                    ));
                }
                (outcome, o.batch_code.clone(), message)
            }
            None => (Outcome::Unknown, None, Some("no outcome".into())),
        };
        let fin = Record {
            ts: Utc::now(),
            outcome,
            batch_code,
            message,
            ..record
        };
        let mut inner = self.lock();
        if self.decide(&mut inner, fin).is_err() {
            tracing::error!(
                account = %account,
                iccid = %iccid,
                outcome = outcome.name(),
                "the outcome could not be written: at the next start this action is reported unknown"
            );
        }
        self.metrics.set_cards_off(inner.state.off_count());
    }

    /// Waits until no action is in flight, at most `grace`; returns how many still are.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            let n = self.in_flight.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst);
            }
        }
    }
}

/// A label value for the audit log: at most 128 bytes, control characters replaced.
fn excerpt_plain(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 128 {
        let mut cut = 128;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
