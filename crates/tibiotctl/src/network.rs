//! `card network (--enable | --disable) [ICCID...] [--from-file=F] [--yes] [--no-wait]`:
//! switches card networks in bulk. The list is validated before anything is sent, confirmed
//! on the terminal (or with `--yes`), sent in requests of at most 10 ICCIDs, and every
//! resulting batch is followed to the end ([`crate::batch::follow`]), ending with a per-ICCID
//! result table.
//!
//! The operation is never retried blindly: a request that got no answer (timeout, broken
//! connection, 5xx, unreadable body) may have been applied, so its cards are reported as
//! "unknown" with advice to check them, and nothing more is sent after it. Only an HTTP 429
//! (the API says it did not process the request) is sent again, after `Retry-After`.

use crate::batch::{self, Tracker};
use crate::iccid;
use crate::output::{OutputFormat, Table, cell, print_json, print_stdout};
use crate::{CommonArgs, Ctx, Failure, run_async};
use clap::{ArgGroup, Args};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tibiot_api::{ApiError, Client, NetworkResult, OperationState};
use tokio::time::Instant;

/// ICCIDs per request, the API's maximum.
pub const CHUNK: usize = 10;
/// Times a request refused with HTTP 429 is sent again.
const MAX_RATE_LIMITED_RESENDS: u32 = 3;

/// `card network` arguments.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["enable", "disable"])))]
pub struct NetworkArgs {
    /// Switch the cards' network on.
    #[arg(long)]
    pub enable: bool,
    /// Switch the cards' network off.
    #[arg(long)]
    pub disable: bool,
    /// ICCIDs (18 to 22 digits each).
    #[arg(value_name = "ICCID")]
    pub iccids: Vec<String>,
    /// Read more ICCIDs from this file: one a line, '#' comments and blank lines allowed.
    #[arg(long = "from-file", value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the batch codes and return without following the batches.
    #[arg(long = "no-wait")]
    pub no_wait: bool,
    /// How long to follow the batches at most.
    #[arg(long = "wait-timeout", value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

/// The final word on one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CardResult {
    /// In a batch, not followed (`--no-wait`).
    Accepted,
    /// Refused by the API; the message says why.
    Rejected,
    /// The request got no usable answer: it may or may not have been applied.
    Unknown,
    /// Not sent because an earlier request failed in a way that stopped the run.
    NotSent,
    /// Followed, but still pending / running when the wait ended.
    Pending,
    Running,
    Done,
    Failed,
}

impl CardResult {
    pub fn name(self) -> &'static str {
        match self {
            CardResult::Accepted => "accepted",
            CardResult::Rejected => "rejected",
            CardResult::Unknown => "unknown",
            CardResult::NotSent => "not_sent",
            CardResult::Pending => "pending",
            CardResult::Running => "running",
            CardResult::Done => "done",
            CardResult::Failed => "failed",
        }
    }

    /// Whether the card ended as the operator wanted.
    pub fn is_success(self, waited: bool) -> bool {
        if waited {
            self == CardResult::Done
        } else {
            self == CardResult::Accepted
        }
    }
}

/// One row of the result table.
#[derive(Debug, Clone, PartialEq)]
pub struct CardOutcome {
    pub iccid: String,
    pub batch_code: Option<String>,
    pub result: CardResult,
    pub message: Option<String>,
}

/// What became of one request.
#[derive(Debug, Clone)]
enum Sent {
    /// Answered: a batch for the accepted cards, the rejected ones with the API's message.
    Answered {
        batch_code: Option<String>,
        accepted: Vec<String>,
        rejected: Vec<(String, String)>,
    },
    /// The API refused the whole request.
    Refused(String),
    /// No usable answer: outcome unknown.
    Unknown(String),
    /// Not sent.
    Skipped(String),
}

/// `card network`.
pub fn run(common: &CommonArgs, args: NetworkArgs) -> Result<(), Failure> {
    let file = match &args.from_file {
        Some(p) => Some((
            p.display().to_string(),
            iccid::read_file(p).map_err(|e| Failure::Usage(e.to_string()))?,
        )),
        None => None,
    };
    let list = iccid::build(
        &args.iccids,
        file.as_ref().map(|(n, c)| (n.as_str(), c.as_str())),
    )
    .map_err(|errs| {
        Failure::Usage(format!(
            "invalid ICCIDs; nothing was sent:\n  {}",
            errs.join("\n  ")
        ))
    })?;
    if list.iccids.is_empty() {
        return Err(Failure::Usage(
            "no ICCIDs given (as arguments or with --from-file); nothing was sent".into(),
        ));
    }
    if list.duplicates > 0 {
        eprintln!("note: {} repeated ICCIDs ignored", list.duplicates);
    }
    let ctx = Ctx::load(common)?;
    let action = if args.enable { "enable" } else { "disable" };
    let n = list.iccids.len();
    let requests = n.div_ceil(CHUNK);
    if !args.yes {
        confirm(
            &format!(
                "{} the network of {n} card{} on account {:?} ({requests} request{})?",
                if args.enable { "Enable" } else { "Disable" },
                if n == 1 { "" } else { "s" },
                ctx.account.name,
                if requests == 1 { "" } else { "s" },
            ),
            action,
            n,
        )?;
    }
    run_async(execute(ctx, list.iccids, args, action))
}

/// Asks on stderr; a terminal is required.
fn confirm(question: &str, action: &str, n: usize) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "refusing to {action} the network of {n} cards without confirmation: stdin is not a \
             terminal; pass --yes to confirm; nothing was sent"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Runtime(format!("reading the answer: {e}")))?;
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::Runtime("not confirmed; nothing was sent".into())),
    }
}

/// How [`switch`] sends requests and follows their batches.
#[derive(Debug, Clone, Copy)]
pub struct SwitchOptions {
    /// Upper bound of one API call.
    pub timeout: Duration,
    /// How long to follow the batches; `None`: do not follow (`--no-wait`).
    pub wait: Option<Duration>,
}

/// What [`switch`] did: one outcome per ICCID in input order, and the batches it followed.
#[derive(Debug, Clone)]
pub struct Switched {
    pub outcomes: Vec<CardOutcome>,
    pub trackers: Vec<Tracker>,
    /// Every followed batch reached its end (always true when not following).
    pub finished: bool,
}

/// Sends one request; resends only after an HTTP 429 (the API says it did not process it).
async fn send_chunk(
    client: &Client,
    chunk: &[String],
    on: bool,
    timeout: Duration,
    note: &(dyn Fn(&str) + Sync),
) -> Result<NetworkResult, ApiError> {
    let mut resends = 0;
    loop {
        match client
            .card_network(chunk, on, Instant::now() + timeout)
            .await
        {
            Err(ApiError::RateLimited { retry_after }) if resends < MAX_RATE_LIMITED_RESENDS => {
                resends += 1;
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .clamp(Duration::from_millis(100), Duration::from_secs(30));
                note(&format!(
                    "rate limited (HTTP 429, not processed); sending again in {}",
                    humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
                ));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Sorts one answer into accepted and rejected cards.
fn classify(chunk: &[String], r: NetworkResult, note: &(dyn Fn(&str) + Sync)) -> Sent {
    let mut rejected: Vec<(String, String)> = Vec::new();
    let mut rejected_ids: HashMap<String, String> = HashMap::new();
    for e in r.error_info {
        if let Some(i) = e.iccid.map(|s| s.trim().to_owned()) {
            let msg = e
                .info_message
                .map(|m| tibiot_api::error::clean_text(&m))
                .unwrap_or_else(|| "rejected (no message)".into());
            rejected_ids.entry(i).or_insert(msg);
        }
    }
    let mut accepted = Vec::new();
    for i in chunk {
        match rejected_ids.get(i) {
            Some(m) => rejected.push((i.clone(), m.clone())),
            None => accepted.push(i.clone()),
        }
    }
    if let Some(sc) = r.success_count
        && sc != accepted.len() as f64
    {
        note(&format!(
            "the API reports successCount={sc} for a request of which {} ICCIDs were not rejected",
            accepted.len()
        ));
    }
    Sent::Answered {
        batch_code: r
            .batch_code
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty()),
        accepted,
        rejected,
    }
}

/// Switches the network of `iccids` (already validated) on or off: requests of at most
/// [`CHUNK`] ICCIDs, one after the other; a request without a usable answer is never sent
/// again and stops the run (its cards are `unknown`, the rest `not_sent`); then every batch is
/// followed until its cards are final or `opts.wait` has passed. `note` receives the
/// warnings worth telling the operator (rate limiting, failed requests). Shared by
/// `card network` and the guard.
pub async fn switch(
    client: &Client,
    account: &str,
    iccids: &[String],
    on: bool,
    opts: SwitchOptions,
    progress: &ProgressBar,
    note: &(dyn Fn(&str) + Sync),
) -> Switched {
    let chunks: Vec<Vec<String>> = iccids.chunks(CHUNK).map(<[String]>::to_vec).collect();
    let mut sent: Vec<Sent> = Vec::new();
    let mut stop: Option<String> = None;
    for (k, chunk) in chunks.iter().enumerate() {
        if let Some(why) = &stop {
            sent.push(Sent::Skipped(why.clone()));
            continue;
        }
        let outcome = match send_chunk(client, chunk, on, opts.timeout, note).await {
            Ok(r) => classify(chunk, r, note),
            Err(e) => {
                let what = format!("request {} of {}", k + 1, chunks.len());
                let definite = match &e {
                    ApiError::Api { .. } | ApiError::Invalid(_) | ApiError::RateLimited { .. } => {
                        true
                    }
                    ApiError::Http { status, .. } => *status < 500,
                    ApiError::Timeout | ApiError::Transport(_) | ApiError::Decode(_) => false,
                };
                note(Failure::api(&what, account, &e).message());
                if !definite {
                    stop = Some(format!("stopped after {what} had an unknown outcome"));
                    Sent::Unknown(format!(
                        "outcome unknown ({e}); not sent again: check with `card show`"
                    ))
                } else {
                    if e.is_auth() || matches!(e, ApiError::RateLimited { .. }) {
                        stop = Some(format!("stopped after {what} was refused"));
                    }
                    Sent::Refused(e.to_string())
                }
            }
        };
        sent.push(outcome);
    }

    // Batches to follow.
    let mut trackers: Vec<Tracker> = sent
        .iter()
        .filter_map(|s| match s {
            Sent::Answered {
                batch_code: Some(code),
                accepted,
                ..
            } if !accepted.is_empty() => Some(Tracker::new(code.clone(), accepted.clone())),
            _ => None,
        })
        .collect();
    let mut finished = true;
    if let Some(wait) = opts.wait
        && !trackers.is_empty()
    {
        let total: usize = trackers.iter().map(|t| t.expected.len()).sum();
        progress.set_length(total as u64);
        finished = batch::follow(
            client,
            &mut trackers,
            Instant::now() + wait,
            opts.timeout,
            progress,
        )
        .await;
    }
    let outcomes = outcomes(&chunks, &sent, &trackers, opts.wait.is_some());
    Switched {
        outcomes,
        trackers,
        finished,
    }
}

async fn execute(
    ctx: Ctx,
    iccids: Vec<String>,
    args: NetworkArgs,
    action: &'static str,
) -> Result<(), Failure> {
    let waited = !args.no_wait;
    let pb = if waited {
        batch::progress_bar(iccids.len() as u64, action)
    } else {
        ProgressBar::hidden()
    };
    let opts = SwitchOptions {
        timeout: ctx.timeout,
        wait: waited.then_some(args.wait_timeout),
    };
    let note = |m: &str| {
        // Above the progress bar, which redraws itself.
        pb.suspend(|| eprintln!("tibiotctl: {m}"));
    };
    let Switched {
        outcomes,
        trackers,
        finished,
    } = switch(
        &ctx.client,
        &ctx.account.name,
        &iccids,
        args.enable,
        opts,
        &pb,
        &note,
    )
    .await;
    pb.finish_and_clear();
    report(&ctx, action, &outcomes, &trackers, waited);

    // Exit status and advice.
    let bad: Vec<&CardOutcome> = outcomes
        .iter()
        .filter(|o| !o.result.is_success(waited))
        .collect();
    if waited && !finished {
        let codes: Vec<String> = trackers
            .iter()
            .filter(|t| !t.complete)
            .map(|t| cell(&t.batch_code))
            .collect();
        eprintln!(
            "note: batches not finished after {}: follow them with `tibiotctl batch status CODE --wait` ({})",
            humantime::format_duration(args.wait_timeout),
            codes.join(", ")
        );
    }
    if !waited {
        for t in &trackers {
            eprintln!(
                "follow with: tibiotctl batch status {} --wait",
                cell(&t.batch_code)
            );
        }
    }
    let unknown = outcomes
        .iter()
        .filter(|o| o.result == CardResult::Unknown)
        .count();
    if unknown > 0 {
        eprintln!(
            "warning: the outcome for {unknown} cards is unknown: the request got no usable answer and \
             was NOT sent again; check those cards with `tibiotctl card show ICCID` before trying again"
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &bad {
            *by.entry(o.result.name()).or_default() += 1;
        }
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} {k}")).collect();
        Err(Failure::Runtime(format!(
            "{} of {} cards did not succeed ({})",
            bad.len(),
            outcomes.len(),
            parts.join(", ")
        )))
    }
}

/// The per-ICCID outcome, in input order.
fn outcomes(
    chunks: &[Vec<String>],
    sent: &[Sent],
    trackers: &[Tracker],
    waited: bool,
) -> Vec<CardOutcome> {
    let mut out = Vec::new();
    for (chunk, s) in chunks.iter().zip(sent) {
        match s {
            Sent::Answered {
                batch_code,
                accepted: _,
                rejected,
            } => {
                let rej: HashMap<&str, &str> = rejected
                    .iter()
                    .map(|(i, m)| (i.as_str(), m.as_str()))
                    .collect();
                let tracker = batch_code.as_deref().and_then(|c| {
                    trackers
                        .iter()
                        .find(|t| t.batch_code == c && t.expected.iter().any(|e| chunk.contains(e)))
                });
                for i in chunk {
                    let (result, message) = if let Some(m) = rej.get(i.as_str()) {
                        (CardResult::Rejected, Some((*m).to_owned()))
                    } else if batch_code.is_none() {
                        (
                            CardResult::Unknown,
                            Some("accepted, but the API returned no batch code: check with `card show`".into()),
                        )
                    } else if !waited {
                        (CardResult::Accepted, None)
                    } else {
                        followed(tracker, i)
                    };
                    out.push(CardOutcome {
                        iccid: i.clone(),
                        batch_code: if result == CardResult::Rejected {
                            None
                        } else {
                            batch_code.clone()
                        },
                        result,
                        message,
                    });
                }
            }
            Sent::Refused(m) => out.extend(chunk.iter().map(|i| CardOutcome {
                iccid: i.clone(),
                batch_code: None,
                result: CardResult::Rejected,
                message: Some(m.clone()),
            })),
            Sent::Unknown(m) => out.extend(chunk.iter().map(|i| CardOutcome {
                iccid: i.clone(),
                batch_code: None,
                result: CardResult::Unknown,
                message: Some(m.clone()),
            })),
            Sent::Skipped(m) => out.extend(chunk.iter().map(|i| CardOutcome {
                iccid: i.clone(),
                batch_code: None,
                result: CardResult::NotSent,
                message: Some(m.clone()),
            })),
        }
    }
    out
}

/// The result of a followed card.
fn followed(tracker: Option<&Tracker>, iccid: &str) -> (CardResult, Option<String>) {
    let Some(t) = tracker else {
        return (CardResult::Unknown, Some("batch not followed".into()));
    };
    let st = t.state_of(iccid).and_then(|c| c.state);
    match st.and_then(OperationState::from_code) {
        Some(OperationState::Done) => (CardResult::Done, None),
        Some(OperationState::Failed) => (
            CardResult::Failed,
            Some("the batch reports the operation failed".into()),
        ),
        other => {
            let result = match other {
                Some(OperationState::Running) => CardResult::Running,
                Some(OperationState::Pending) => CardResult::Pending,
                _ => CardResult::Unknown,
            };
            let msg = match (&t.error, st) {
                (Some(e), _) => format!("stopped following the batch: {e}"),
                (None, None) => "not listed by the batch status".to_owned(),
                (None, Some(s)) if OperationState::from_code(s).is_none() => {
                    format!("batch reports state {}", OperationState::label(s))
                }
                _ => "not finished when the wait ended".to_owned(),
            };
            (result, Some(msg))
        }
    }
}

fn report(ctx: &Ctx, action: &str, outcomes: &[CardOutcome], trackers: &[Tracker], waited: bool) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        *counts.entry(o.result.name()).or_default() += 1;
    }
    match ctx.output {
        OutputFormat::Json => print_json(&json!({
            "account": ctx.account.name,
            "action": action,
            "waited": waited,
            "batches": trackers.iter().map(|t| json!({
                "batch_code": t.batch_code,
                "cards": t.expected.len(),
                "complete": t.complete,
                "error": t.error,
            })).collect::<Vec<Value>>(),
            "counts": counts,
            "cards": outcomes.iter().map(|o| json!({
                "iccid": o.iccid,
                "batch_code": o.batch_code,
                "result": o.result.name(),
                "message": o.message,
            })).collect::<Vec<Value>>(),
        })),
        OutputFormat::Table => {
            let mut t = Table::new(&["ICCID", "BATCH", "RESULT", "MESSAGE"]);
            for o in outcomes {
                t.row([
                    o.iccid.clone(),
                    o.batch_code.clone().unwrap_or_else(|| "-".into()),
                    o.result.name().to_owned(),
                    o.message.clone().unwrap_or_default(),
                ]);
            }
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let mut s = t.render();
            s.push_str(&format!(
                "\n{action}: {} cards: {}\n",
                outcomes.len(),
                summary.join(", ")
            ));
            if !waited {
                for tr in trackers {
                    s.push_str(&format!(
                        "batch {}: {} cards\n",
                        cell(&tr.batch_code),
                        tr.expected.len()
                    ));
                }
            }
            print_stdout(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::NetworkErrorInfo;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("8986{i:016}")).collect()
    }

    #[test]
    fn classify_splits_accepted_and_rejected() {
        let chunk = ids(3);
        let r = NetworkResult {
            success_count: Some(2.0),
            batch_code: Some(" B1 ".into()),
            error_info: vec![NetworkErrorInfo {
                iccid: Some(chunk[1].clone()),
                info_message: Some("card in\nliquidation".into()),
            }],
        };
        let Sent::Answered {
            batch_code,
            accepted,
            rejected,
        } = classify(&chunk, r, &|_| {})
        else {
            panic!("answered")
        };
        assert_eq!(batch_code.as_deref(), Some("B1"));
        assert_eq!(accepted, vec![chunk[0].clone(), chunk[2].clone()]);
        assert_eq!(
            rejected,
            vec![(chunk[1].clone(), "card in liquidation".into())]
        );
    }

    #[test]
    fn outcomes_cover_every_card_in_order() {
        let all = ids(25);
        let chunks: Vec<Vec<String>> = all.chunks(CHUNK).map(<[String]>::to_vec).collect();
        let sent = vec![
            Sent::Answered {
                batch_code: Some("B1".into()),
                accepted: chunks[0][1..].to_vec(),
                rejected: vec![(chunks[0][0].clone(), "no".into())],
            },
            Sent::Unknown("timed out".into()),
            Sent::Skipped("stopped".into()),
        ];
        let mut t = Tracker::new("B1", chunks[0][1..].to_vec());
        t.update(
            chunks[0][1..]
                .iter()
                .enumerate()
                .map(|(k, i)| tibiot_api::BatchCardStatus {
                    operation_card_status: Some(if k == 0 { 4 } else { 3 }),
                    iccid: Some(i.clone()),
                    msisdn: None,
                })
                .collect(),
        );
        let o = outcomes(&chunks, &sent, &[t], true);
        assert_eq!(o.len(), 25);
        assert_eq!(o.iter().map(|c| c.iccid.clone()).collect::<Vec<_>>(), all);
        assert_eq!(o[0].result, CardResult::Rejected);
        assert_eq!(o[1].result, CardResult::Failed);
        assert_eq!(o[2].result, CardResult::Done);
        assert_eq!(o[2].batch_code.as_deref(), Some("B1"));
        assert!(o[10..20].iter().all(|c| c.result == CardResult::Unknown));
        assert!(o[20..].iter().all(|c| c.result == CardResult::NotSent));
    }
}
