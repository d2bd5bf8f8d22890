//! Following network-operation batches: the [`Tracker`] of one batch (per-ICCID state from
//! `batch_status`), [`follow`] (polls every unfinished batch with jittered backoff until all
//! cards are done or failed, or an overall deadline passes, with a progress bar on stderr) and
//! the `batch status BATCHCODE [--wait]` command.

use crate::output::{OutputFormat, Table, opt_cell, print_json, print_stdout};
use crate::{Ctx, Failure};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::Duration;
use tibiot_api::{ApiError, BatchCardStatus, Client, OperationState, Query};
use tokio::time::Instant;

/// First pause between polls, growth factor and cap.
const FIRST_DELAY: Duration = Duration::from_millis(400);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Polls in a row in which expected cards are missing from a finished-looking batch before
/// they are reported as unknown.
const MISSING_ROUNDS: u32 = 3;
/// Failed polls in a row before a batch is given up.
const MAX_POLL_ERRORS: u32 = 5;

/// `batch status` arguments.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The batch code returned by `card network`.
    #[arg(value_name = "BATCHCODE")]
    pub batch_code: String,
    /// Poll with backoff until every card is done or failed.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits at most.
    #[arg(long = "wait-timeout", value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

/// The latest known state of one card of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CardState {
    pub iccid: String,
    pub msisdn: Option<String>,
    /// `operationCardStatus`; `None` while the batch does not list the card.
    pub state: Option<i64>,
}

impl CardState {
    pub fn is_final(&self) -> bool {
        self.state
            .and_then(OperationState::from_code)
            .is_some_and(OperationState::is_final)
    }

    /// `pending`, `running`, `done`, `failed`, `code_<n>`, or `unlisted`.
    pub fn state_name(&self) -> String {
        self.state
            .map(|s| OperationState::label(s).into_owned())
            .unwrap_or_else(|| "unlisted".into())
    }
}

/// One batch being followed.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub batch_code: String,
    /// The ICCIDs the network operation accepted into this batch (empty: take what the batch
    /// lists, for `batch status`).
    pub expected: Vec<String>,
    /// Latest per-card state: the expected cards in order, or the listed ones.
    pub cards: Vec<CardState>,
    /// Following stopped because polling failed (the last error).
    pub error: Option<String>,
    /// Nothing more to learn: every card final, or given up.
    pub complete: bool,
    /// Successful polls.
    pub polls: u32,
    missing_rounds: u32,
    poll_errors: u32,
}

impl Tracker {
    pub fn new(batch_code: impl Into<String>, expected: Vec<String>) -> Self {
        let cards = expected
            .iter()
            .map(|i| CardState {
                iccid: i.clone(),
                msisdn: None,
                state: None,
            })
            .collect();
        Self {
            batch_code: batch_code.into(),
            expected,
            cards,
            error: None,
            complete: false,
            polls: 0,
            missing_rounds: 0,
            poll_errors: 0,
        }
    }

    /// Cards whose operation will not change any more.
    pub fn final_count(&self) -> usize {
        self.cards.iter().filter(|c| c.is_final()).count()
    }

    pub fn state_of(&self, iccid: &str) -> Option<&CardState> {
        self.cards.iter().find(|c| c.iccid == iccid)
    }

    /// Takes in one answer of `batch_status`.
    pub fn update(&mut self, items: Vec<BatchCardStatus>) {
        self.polls += 1;
        self.poll_errors = 0;
        let mut listed: Vec<CardState> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for it in items {
            let Some(iccid) = it.iccid.map(|s| s.trim().to_owned()) else {
                continue;
            };
            let st = CardState {
                iccid: iccid.clone(),
                msisdn: it.msisdn,
                state: it.operation_card_status,
            };
            match index.get(&iccid) {
                Some(&i) => listed[i] = st,
                None => {
                    index.insert(iccid, listed.len());
                    listed.push(st);
                }
            }
        }
        let listed_final = listed.iter().all(CardState::is_final);
        let missing;
        if self.expected.is_empty() {
            missing = listed.is_empty();
            self.cards = listed;
        } else {
            self.cards = self
                .expected
                .iter()
                .map(|i| match index.get(i) {
                    Some(&k) => listed[k].clone(),
                    None => CardState {
                        iccid: i.clone(),
                        msisdn: None,
                        state: None,
                    },
                })
                .collect();
            missing = self.cards.iter().any(|c| c.state.is_none());
        }
        if !missing && self.cards.iter().all(CardState::is_final) {
            self.complete = true;
        } else if missing && listed_final {
            // Everything the batch lists is final, but cards we expect are not listed (or the
            // batch lists nothing yet): give it a few more polls, then stop.
            self.missing_rounds += 1;
            if self.missing_rounds >= MISSING_ROUNDS {
                self.complete = true;
            }
        } else {
            self.missing_rounds = 0;
        }
    }

    /// Takes in one failed poll: an answer that will not change (unknown batch, credentials)
    /// stops following at once, other failures after a few in a row.
    pub fn failed(&mut self, e: &ApiError) {
        self.poll_errors += 1;
        let permanent = match e {
            ApiError::Api { .. } | ApiError::Invalid(_) => true,
            ApiError::Http { status, .. } => *status < 500,
            _ => false,
        };
        if permanent || self.poll_errors >= MAX_POLL_ERRORS {
            self.error = Some(e.to_string());
            self.complete = true;
        }
    }
}

/// A progress bar on stderr over `total` cards; hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    counter_bar(total, what, "cards final")
}

/// A progress bar on stderr counting `unit`s; hidden when stderr is not a terminal.
pub fn counter_bar(total: u64, what: &str, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template =
        format!("{{spinner}} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}) {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + d.saturating_sub(half).mul_f64(rand::rng().random::<f64>())
}

/// Polls every unfinished tracker until all are complete or `deadline` passes. Returns
/// whether all completed.
pub async fn follow(
    client: &Client,
    trackers: &mut [Tracker],
    deadline: Instant,
    per_call: Duration,
    progress: &ProgressBar,
) -> bool {
    let mut delay = FIRST_DELAY;
    loop {
        let polls = trackers
            .iter_mut()
            .filter(|t| !t.complete)
            .map(|t| async move {
                let until = deadline.min(Instant::now() + per_call);
                match client.get(Query::batch_status(&t.batch_code), until).await {
                    Ok(items) => t.update(items),
                    Err(e) => t.failed(&e),
                }
            });
        futures::future::join_all(polls).await;
        let total: usize = trackers.iter().map(|t| t.cards.len()).sum();
        let fin: usize = trackers.iter().map(Tracker::final_count).sum();
        let failed: usize = trackers
            .iter()
            .flat_map(|t| &t.cards)
            .filter(|c| c.state == Some(OperationState::Failed.code()))
            .count();
        progress.set_length(total as u64);
        progress.set_position(fin as u64);
        progress.set_message(if failed > 0 {
            format!("{failed} failed")
        } else {
            String::new()
        });
        if trackers.iter().all(|t| t.complete) {
            return true;
        }
        let pause = jitter(delay);
        if Instant::now() + pause >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        delay = delay.mul_f64(1.5).min(MAX_DELAY);
    }
}

/// Counts per state name; the four states always present.
pub fn counts<'a>(cards: impl IntoIterator<Item = &'a CardState>) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = OperationState::ALL
        .iter()
        .map(|s| (s.name().to_owned(), 0))
        .collect();
    for c in cards {
        *m.entry(c.state_name()).or_default() += 1;
    }
    m
}

/// `batch status BATCHCODE [--wait]`.
pub async fn run_status(ctx: Ctx, args: StatusArgs) -> Result<(), Failure> {
    let code = args.batch_code.trim();
    if code.is_empty() || code.chars().any(char::is_control) {
        return Err(Failure::Usage(format!("{code:?} is not a batch code")));
    }
    let mut trackers = vec![Tracker::new(code, Vec::new())];
    let mut timed_out = false;
    if args.wait {
        let pb = progress_bar(0, &format!("batch {code}"));
        let all = follow(
            &ctx.client,
            &mut trackers,
            Instant::now() + args.wait_timeout,
            ctx.timeout,
            &pb,
        )
        .await;
        pb.finish_and_clear();
        timed_out = !all;
    } else {
        let items = ctx
            .client
            .get(Query::batch_status(code), ctx.deadline())
            .await
            .map_err(|e| ctx.api_failure(&format!("batch {code}"), &e))?;
        trackers[0].update(items);
    }
    let t = &trackers[0];
    if let Some(e) = &t.error
        && t.polls == 0
    {
        return Err(Failure::Runtime(format!("batch {code}: {e}")));
    }
    if t.cards.is_empty() {
        return Err(Failure::Runtime(format!(
            "batch {code}: the API lists no cards for it (unknown batch code?)"
        )));
    }
    let counts = counts(&t.cards);
    let all_final = t.cards.iter().all(CardState::is_final);
    match ctx.output {
        OutputFormat::Json => print_json(&json!({
            "account": ctx.account.name,
            "batch_code": code,
            "final": all_final,
            "counts": counts,
            "cards": t.cards.iter().map(|c| json!({
                "iccid": c.iccid,
                "msisdn": c.msisdn,
                "status": c.state_name(),
                "status_code": c.state,
            })).collect::<Vec<Value>>(),
        })),
        OutputFormat::Table => {
            let mut tab = Table::new(&["ICCID", "MSISDN", "STATUS"]);
            for c in &t.cards {
                tab.row([
                    c.iccid.clone(),
                    opt_cell(c.msisdn.as_deref()),
                    c.state_name(),
                ]);
            }
            let summary: Vec<String> = counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            print_stdout(&format!(
                "{}\nbatch {code}: {} cards: {}\n",
                tab.render(),
                t.cards.len(),
                summary.join(", ")
            ));
        }
    }
    if args.wait {
        if let Some(e) = &t.error {
            return Err(Failure::Runtime(format!(
                "batch {code}: stopped polling: {e}"
            )));
        }
        if timed_out {
            return Err(Failure::Runtime(format!(
                "batch {code}: not finished after {}; check again later",
                humantime::format_duration(args.wait_timeout)
            )));
        }
        let failed = counts.get("failed").copied().unwrap_or(0);
        if failed > 0 {
            return Err(Failure::Runtime(format!(
                "batch {code}: {failed} of {} cards failed",
                t.cards.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(iccid: &str, st: i64) -> BatchCardStatus {
        BatchCardStatus {
            operation_card_status: Some(st),
            iccid: Some(iccid.into()),
            msisdn: None,
        }
    }

    #[test]
    fn complete_when_every_expected_card_is_final() {
        let mut t = Tracker::new("B", vec!["a".into(), "b".into()]);
        t.update(vec![item("a", 1), item("b", 2)]);
        assert!(!t.complete);
        t.update(vec![item("a", 3), item("b", 2)]);
        assert!(!t.complete);
        assert_eq!(t.final_count(), 1);
        t.update(vec![item("b", 4), item("a", 3), item("zzz", 1)]);
        assert!(t.complete);
        assert_eq!(t.state_of("b").unwrap().state_name(), "failed");
        assert_eq!(t.cards.len(), 2);
    }

    #[test]
    fn unlisted_cards_end_after_a_few_rounds() {
        let mut t = Tracker::new("B", vec!["a".into(), "b".into()]);
        for _ in 0..MISSING_ROUNDS - 1 {
            t.update(vec![item("a", 3)]);
            assert!(!t.complete);
        }
        t.update(vec![item("a", 3)]);
        assert!(t.complete);
        assert_eq!(t.state_of("b").unwrap().state_name(), "unlisted");
    }

    #[test]
    fn unknown_state_codes_are_not_final() {
        let mut t = Tracker::new("B", Vec::new());
        t.update(vec![item("a", 7)]);
        assert!(!t.complete);
        assert_eq!(t.cards[0].state_name(), "code_7");
    }

    #[test]
    fn permanent_poll_errors_stop_at_once_transient_after_several() {
        let mut t = Tracker::new("B", Vec::new());
        t.failed(&ApiError::Timeout);
        assert!(!t.complete);
        t.failed(&ApiError::Api {
            status: 200,
            code: Some(404),
            message: Some("no such batch".into()),
            trace_id: None,
        });
        assert!(t.complete);
        assert!(t.error.as_deref().unwrap().contains("no such batch"));
        let mut t = Tracker::new("B", Vec::new());
        for _ in 0..MAX_POLL_ERRORS {
            t.failed(&ApiError::Transport("reset".into()));
        }
        assert!(t.complete);
    }
}
