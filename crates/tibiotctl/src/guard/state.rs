//! The guard's memory: the audit log (one JSON line per decision, appended and fsynced) and
//! the state rebuilt from it at start — which alert episodes were decided, which cards the
//! guard has switched off, and the disables of the last hour for the limit.
//!
//! An alert *episode* is Alertmanager's fingerprint (a hash of the label set) plus the alert's
//! `startsAt`: repeated notifications of one firing alert share both, while the same alert
//! firing again after it resolved has a new `startsAt`. Each episode is decided once per mode
//! and action; a card the guard has switched off is not switched off again whatever the
//! episode. An enforce action writes a `sending` line before the request leaves and its
//! outcome after the batch ends; a `sending` line without an outcome (the guard stopped in
//! between) becomes `unknown` at the next start, and is never sent again.

use crate::guard::config::Mode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest audit log read at start.
const MAX_AUDIT_BYTES: u64 = 512 << 20;

/// What a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Switch the card's network off.
    Disable,
    /// Switch it back on (a resolved alert, `reenable_on_resolve: true`).
    Enable,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Disable => "disable",
            Action::Enable => "enable",
        }
    }
}

/// How a decision ended (the `outcome` label), or `sending` while the request is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request is being sent and its batch followed (not a decision yet).
    Sending,
    /// The batch reports the operation done.
    Done,
    /// Refused by the API, or the batch reports it failed: nothing changed.
    Failed,
    /// No usable answer, or the batch did not end in time: the card may or may not have been
    /// switched. Never sent again.
    Unknown,
    /// Dry-run mode: logged and counted, nothing sent.
    DryRun,
    /// The card is on the protect list.
    Protected,
    /// `limits.max_cards_per_hour` reached.
    OverLimit,
    /// No valid ICCID, unknown account, or no usable fingerprint.
    Invalid,
}

impl Outcome {
    /// The decision outcomes, in the metric's order.
    pub const DECISIONS: [Outcome; 7] = [
        Outcome::Done,
        Outcome::Failed,
        Outcome::Unknown,
        Outcome::DryRun,
        Outcome::Protected,
        Outcome::OverLimit,
        Outcome::Invalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sending => "sending",
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::DryRun => "dry_run",
            Outcome::Protected => "protected",
            Outcome::OverLimit => "over_limit",
            Outcome::Invalid => "invalid",
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the line was written, RFC 3339 UTC.
    pub ts: DateTime<Utc>,
    /// `dry-run` or `enforce`.
    pub mode: String,
    pub policy: String,
    pub action: Action,
    pub outcome: Outcome,
    #[serde(default)]
    pub alertname: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub iccid: Option<String>,
    #[serde(default)]
    pub batch_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Record {
    fn mode(&self) -> Option<Mode> {
        match self.mode.as_str() {
            "dry-run" => Some(Mode::DryRun),
            "enforce" => Some(Mode::Enforce),
            _ => None,
        }
    }
}

/// Names one decision: mode, action and alert episode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    pub mode: Mode,
    pub action: Action,
    pub fingerprint: String,
    pub starts_at: String,
}

/// A card the guard has switched off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffCard {
    pub fingerprint: String,
    pub starts_at: String,
    pub policy: String,
    pub batch_code: Option<String>,
}

/// The guard's state.
#[derive(Debug, Default)]
pub struct State {
    /// The latest outcome of every decision.
    decided: HashMap<DecisionKey, Outcome>,
    /// (account, ICCID) → why it is off.
    off: HashMap<(String, String), OffCard>,
    /// Times of the disables counted against the hourly limit, per mode, oldest first.
    disables: HashMap<Mode, VecDeque<DateTime<Utc>>>,
}

impl State {
    pub fn outcome(&self, key: &DecisionKey) -> Option<Outcome> {
        self.decided.get(key).copied()
    }

    pub fn off_card(&self, account: &str, iccid: &str) -> Option<&OffCard> {
        self.off.get(&(account.to_owned(), iccid.to_owned()))
    }

    /// Cards currently switched off by the guard.
    pub fn off_count(&self) -> usize {
        self.off.len()
    }

    /// (account, ICCID) of the cards off, sorted.
    pub fn off_cards(&self) -> Vec<(String, String, OffCard)> {
        let mut v: Vec<_> = self
            .off
            .iter()
            .map(|((a, i), o)| (a.clone(), i.clone(), o.clone()))
            .collect();
        v.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        v
    }

    /// Disables of `mode` counted in the hour before `now`.
    pub fn disables_last_hour(&mut self, mode: Mode, now: DateTime<Utc>) -> usize {
        let q = self.disables.entry(mode).or_default();
        let since = now - chrono::Duration::hours(1);
        while q.front().is_some_and(|t| *t <= since) {
            q.pop_front();
        }
        q.len()
    }

    /// Takes in one record (at start from the log, later as it is written).
    pub fn apply(&mut self, r: &Record) {
        let Some(mode) = r.mode() else { return };
        let (Some(fp), Some(sa)) = (&r.fingerprint, &r.starts_at) else {
            // Refusals without a usable episode are audited but remembered nowhere.
            return;
        };
        let key = DecisionKey {
            mode,
            action: r.action,
            fingerprint: fp.clone(),
            starts_at: sa.clone(),
        };
        let previous = self.decided.insert(key, r.outcome);
        let counted = matches!(
            (mode, r.outcome),
            (Mode::Enforce, Outcome::Sending) | (Mode::DryRun, Outcome::DryRun)
        );
        if r.action == Action::Disable && counted && previous.is_none() {
            let q = self.disables.entry(mode).or_default();
            // Lines are written in time order; keep the queue sorted if a clock went back.
            let pos = q.partition_point(|t| *t <= r.ts);
            q.insert(pos, r.ts);
        }
        if mode != Mode::Enforce || r.outcome != Outcome::Done {
            return;
        }
        let (Some(account), Some(iccid)) = (&r.account, &r.iccid) else {
            return;
        };
        let card = (account.clone(), iccid.clone());
        match r.action {
            Action::Disable => {
                self.off.insert(
                    card,
                    OffCard {
                        fingerprint: fp.clone(),
                        starts_at: sa.clone(),
                        policy: r.policy.clone(),
                        batch_code: r.batch_code.clone(),
                    },
                );
            }
            Action::Enable => {
                self.off.remove(&card);
            }
        }
    }

    /// Decisions whose request went out but whose outcome was never written.
    pub fn unfinished(&self) -> Vec<DecisionKey> {
        self.decided
            .iter()
            .filter(|(_, o)| **o == Outcome::Sending)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The audit log file, open for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

/// What reading the log at start found.
#[derive(Debug)]
pub struct Rebuilt {
    pub state: State,
    /// The records of unfinished decisions (the last `sending` line of each).
    pub unfinished: Vec<Record>,
    /// Lines that could not be read (1-based line numbers), e.g. a line cut by a crash.
    pub skipped: Vec<usize>,
}

impl AuditLog {
    /// Opens (creating it, mode 0600) the log at `path` and rebuilds the state from it. A last
    /// line without its newline (cut by a crash) is closed so new lines start clean.
    pub fn open(path: &Path) -> std::io::Result<(AuditLog, Rebuilt)> {
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path)?;
        let len = file.metadata()?.len();
        if len > MAX_AUDIT_BYTES {
            return Err(std::io::Error::other(format!(
                "{} is larger than {} MiB: move it away while the guard is stopped (the cards it \
                 lists as switched off are then forgotten)",
                path.display(),
                MAX_AUDIT_BYTES >> 20
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let mut state = State::default();
        let mut skipped = Vec::new();
        let mut last_sending: HashMap<DecisionKey, Record> = HashMap::new();
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(r) => {
                    state.apply(&r);
                    if let (Some(mode), Some(fp), Some(sa)) =
                        (r.mode(), &r.fingerprint, &r.starts_at)
                    {
                        let key = DecisionKey {
                            mode,
                            action: r.action,
                            fingerprint: fp.clone(),
                            starts_at: sa.clone(),
                        };
                        if r.outcome == Outcome::Sending {
                            last_sending.insert(key, r);
                        } else {
                            last_sending.remove(&key);
                        }
                    }
                }
                Err(_) => skipped.push(n + 1),
            }
        }
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        let mut unfinished: Vec<Record> = last_sending.into_values().collect();
        unfinished.sort_by_key(|r| r.ts);
        Ok((
            AuditLog {
                path: path.to_path_buf(),
                file,
            },
            Rebuilt {
                state,
                unfinished,
                skipped,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and waits until it is on disk.
    pub fn append(&mut self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mode: &str, action: Action, outcome: Outcome, fp: &str, iccid: &str) -> Record {
        Record {
            ts: Utc::now(),
            mode: mode.into(),
            policy: "p".into(),
            action,
            outcome,
            alertname: Some("A".into()),
            fingerprint: Some(fp.into()),
            starts_at: Some("2026-01-01T00:00:00Z".into()),
            account: Some("main".into()),
            iccid: Some(iccid.into()),
            batch_code: None,
            message: None,
        }
    }

    #[test]
    fn rebuilds_from_the_log_and_survives_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let (mut log, rb) = AuditLog::open(&path).unwrap();
            assert_eq!(rb.state.off_count(), 0);
            for r in [
                rec("enforce", Action::Disable, Outcome::Sending, "a1", "1"),
                rec("enforce", Action::Disable, Outcome::Done, "a1", "1"),
                rec("enforce", Action::Disable, Outcome::Sending, "b2", "2"),
                rec("enforce", Action::Disable, Outcome::Done, "b2", "2"),
                rec("enforce", Action::Enable, Outcome::Sending, "b2", "2"),
                rec("enforce", Action::Enable, Outcome::Done, "b2", "2"),
                rec("enforce", Action::Disable, Outcome::Sending, "c3", "3"),
                rec("dry-run", Action::Disable, Outcome::DryRun, "d4", "4"),
            ] {
                log.append(&r).unwrap();
            }
        }
        // a crash cut the last line
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"ts\":\"2026-").unwrap();
        drop(f);
        let (mut log, mut rb) = AuditLog::open(&path).unwrap();
        assert_eq!(rb.skipped, vec![9]);
        assert_eq!(rb.state.off_count(), 1);
        assert!(rb.state.off_card("main", "1").is_some());
        assert!(rb.state.off_card("main", "2").is_none());
        assert_eq!(rb.unfinished.len(), 1);
        assert_eq!(rb.unfinished[0].fingerprint.as_deref(), Some("c3"));
        assert_eq!(rb.state.disables_last_hour(Mode::Enforce, Utc::now()), 3);
        assert_eq!(rb.state.disables_last_hour(Mode::DryRun, Utc::now()), 1);
        assert_eq!(
            rb.state
                .disables_last_hour(Mode::Enforce, Utc::now() + chrono::Duration::minutes(61)),
            0
        );
        // the next line starts on its own line
        log.append(&rec(
            "enforce",
            Action::Disable,
            Outcome::Unknown,
            "c3",
            "3",
        ))
        .unwrap();
        let (_, rb) = AuditLog::open(&path).unwrap();
        assert_eq!(rb.skipped, vec![9]);
        assert!(rb.unfinished.is_empty());
        let key = DecisionKey {
            mode: Mode::Enforce,
            action: Action::Disable,
            fingerprint: "c3".into(),
            starts_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(rb.state.outcome(&key), Some(Outcome::Unknown));
    }
}
