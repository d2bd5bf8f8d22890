//! `backfill [--days=30] [--months=12]`: the history of every configured pool (and of every
//! card whose history the configuration enables) as OpenMetrics text with timestamps on
//! stdout, for `promtool tsdb create-blocks-from openmetrics FILE DIR`.
//!
//! - Same metric names and labels as the live exporter: `tibiot_pool_daily_usage_bytes
//!   {account,pool,date}`, `tibiot_pool_monthly_usage_bytes{account,pool,month}` and the card
//!   equivalents with `iccid`; values are KB × 1024.
//! - A day's sample is stamped at the end of that day, a month's at the end of that month, on
//!   the API calendar (`collect.utc_offset`).
//! - Only closed periods are written: the windows are the exporter's (the last N days / months,
//!   today / this month included), but today and this month are skipped. Their values still
//!   grow, their end lies in the future (Prometheus and promtool must not get samples from the
//!   future), and the live exporter serves them anyway. So `--days=30` writes up to 29 days
//!   and `--months=12` up to 11 months per target.
//! - Cards: `--days`/`--months` capped by `collect.history.card_days`/`card_months` (0 = none).
//! - Requests run concurrently with the exporter's per-account limits: at most
//!   `collect.concurrency` (or `--concurrency`) in flight and `collect.requests_per_second`
//!   per account, retries included. A failed request (after the client's GET retries) is
//!   reported on stderr, its sample left out, and the exit status is 1.

use crate::{Failure, client_for, load_config, pick_account, run_async};
use clap::Args;
use futures::StreamExt;
use std::fmt::Write as _;
use std::io::Write;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{ApiError, Client, Deadline, Gate, Query, Subject};

/// `backfill` arguments.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Day-usage window: the last N days, today included (only closed days are written).
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=30))]
    pub days: u32,
    /// Month-usage window: the last N months, this month included (only closed months are written).
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u32).range(0..=12))]
    pub months: u32,
    /// Upstream requests in flight at most (default: collect.concurrency).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Option<u32>,
}

/// The four history families, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    PoolDaily,
    PoolMonthly,
    CardDaily,
    CardMonthly,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::PoolDaily,
        Family::PoolMonthly,
        Family::CardDaily,
        Family::CardMonthly,
    ];

    pub fn metric(self) -> &'static str {
        match self {
            Family::PoolDaily => "tibiot_pool_daily_usage_bytes",
            Family::PoolMonthly => "tibiot_pool_monthly_usage_bytes",
            Family::CardDaily => "tibiot_card_daily_usage_bytes",
            Family::CardMonthly => "tibiot_card_monthly_usage_bytes",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Family::PoolDaily => "Data used by the pool on one day of the API calendar, in bytes.",
            Family::PoolMonthly => {
                "Data used by the pool in one month of the API calendar, in bytes."
            }
            Family::CardDaily => "Data used by the card on one day of the API calendar, in bytes.",
            Family::CardMonthly => {
                "Data used by the card in one month of the API calendar, in bytes."
            }
        }
    }

    fn target_label(self) -> &'static str {
        match self {
            Family::PoolDaily | Family::PoolMonthly => "pool",
            Family::CardDaily | Family::CardMonthly => "iccid",
        }
    }

    fn period_label(self) -> &'static str {
        match self {
            Family::PoolDaily | Family::CardDaily => "date",
            Family::PoolMonthly | Family::CardMonthly => "month",
        }
    }
}

/// One sample to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub family: Family,
    pub account: String,
    pub target: String,
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// Unix seconds: the end of the period.
    pub timestamp: i64,
}

/// A fetched sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub job: Job,
    /// Bytes.
    pub value: f64,
}

/// Escapes a label value for the exposition formats.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The OpenMetrics text of the samples: families in order, each with `# HELP` and
/// `# TYPE gauge`, samples with timestamps, `# EOF` at the end.
pub fn encode(samples: &[Sample]) -> String {
    let mut out = String::new();
    for fam in Family::ALL {
        let mut rows = samples.iter().filter(|s| s.job.family == fam).peekable();
        if rows.peek().is_none() {
            continue;
        }
        let name = fam.metric();
        let _ = writeln!(out, "# HELP {name} {}", fam.help());
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in rows {
            let _ = writeln!(
                out,
                "{name}{{account=\"{}\",{}=\"{}\",{}=\"{}\"}} {} {}",
                escape_label(&s.job.account),
                fam.target_label(),
                escape_label(&s.job.target),
                fam.period_label(),
                escape_label(&s.job.period),
                s.value,
                s.job.timestamp,
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The closed days of the last `n` days (today included), oldest first.
fn closed_days(
    cal: &tibiot_api::calendar::ApiCalendar,
    today: chrono::NaiveDate,
    n: u32,
) -> Vec<chrono::NaiveDate> {
    cal.last_days(today, n)
        .into_iter()
        .filter(|d| *d < today)
        .collect()
}

/// The closed months of the last `n` months (this month included), oldest first.
fn closed_months(
    cal: &tibiot_api::calendar::ApiCalendar,
    today: chrono::NaiveDate,
    n: u32,
) -> Vec<Month> {
    let this = Month::of(today);
    cal.last_months(today, n)
        .into_iter()
        .filter(|m| *m < this)
        .collect()
}

/// Every sample to fetch for one account, in output order within each family.
pub fn plan(
    account: &tibiot_exporter::config::Account,
    cal: &tibiot_api::calendar::ApiCalendar,
    today: chrono::NaiveDate,
    days: u32,
    months: u32,
    card_days: u32,
    card_months: u32,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut add = |family: Family, targets: &[String], n_days: u32, n_months: u32| {
        for t in targets {
            match family {
                Family::PoolDaily | Family::CardDaily => {
                    for d in closed_days(cal, today, n_days) {
                        jobs.push(Job {
                            family,
                            account: account.name.clone(),
                            target: t.clone(),
                            period: format_day(d),
                            timestamp: cal.day_end(d),
                        });
                    }
                }
                Family::PoolMonthly | Family::CardMonthly => {
                    for m in closed_months(cal, today, n_months) {
                        jobs.push(Job {
                            family,
                            account: account.name.clone(),
                            target: t.clone(),
                            period: m.to_string(),
                            timestamp: cal.month_end(m),
                        });
                    }
                }
            }
        }
    };
    add(Family::PoolDaily, &account.pools, days, 0);
    add(Family::PoolMonthly, &account.pools, 0, months);
    add(Family::CardDaily, &account.cards, days.min(card_days), 0);
    add(
        Family::CardMonthly,
        &account.cards,
        0,
        months.min(card_months),
    );
    jobs
}

/// One job's request; the client's gate holds the account's limits, and the budget starts
/// once the first attempt is admitted (queued jobs do not time out in the queue).
async fn fetch(
    client: &Client,
    job: &Job,
    timeout: std::time::Duration,
) -> Result<Option<f64>, ApiError> {
    let deadline = Deadline::AfterAdmission(timeout);
    let query = match job.family {
        Family::PoolDaily => Query::day_usage(Subject::Pool, &job.target, &job.period),
        Family::PoolMonthly => Query::month_usage(Subject::Pool, &job.target, &job.period),
        Family::CardDaily => Query::day_usage(Subject::Card, &job.target, &job.period),
        Family::CardMonthly => Query::month_usage(Subject::Card, &job.target, &job.period),
    };
    client.get(query, deadline).await
}

/// `backfill`.
/// `--account` selects one account; without it every configured account is written.
pub fn run(common: &crate::CommonArgs, args: BackfillArgs) -> Result<(), Failure> {
    let config = load_config(&common.config_file)?;
    let accounts: Vec<&tibiot_exporter::config::Account> = match &common.account {
        Some(name) => vec![pick_account(&config, Some(name))?],
        None => config.accounts.iter().collect(),
    };
    if accounts.is_empty() {
        return Err(Failure::Usage("the configuration has no accounts".into()));
    }
    let cal = config.collect.calendar;
    let hist = &config.collect.history;
    let concurrency = args
        .concurrency
        .map(|c| c as usize)
        .unwrap_or(config.collect.concurrency)
        .max(1);
    let timeout = common.timeout;
    let mut work: Vec<(Client, Job)> = Vec::new();
    let today = cal.today();
    let (mut pools, mut cards) = (0usize, 0usize);
    for acc in &accounts {
        let gate = Gate::new(concurrency, config.collect.requests_per_second);
        let client = client_for(acc, gate, common.timeout)?;
        pools += acc.pools.len();
        if hist.card_days.min(args.days) > 0 || hist.card_months.min(args.months) > 0 {
            cards += acc.cards.len();
        }
        for job in plan(
            acc,
            &cal,
            today,
            args.days,
            args.months,
            hist.card_days,
            hist.card_months,
        ) {
            work.push((client.clone(), job));
        }
    }
    run_async(async move {
        let started = std::time::Instant::now();
        let total = work.len();
        let pb = crate::batch::counter_bar(total as u64, "backfill", "requests");
        let pb = &pb;
        let mut results: Vec<(usize, Result<Option<f64>, ApiError>)> =
            futures::stream::iter(work.iter().enumerate())
                .map(|(i, (client, job))| async move {
                    let r = fetch(client, job, timeout).await;
                    pb.inc(1);
                    (i, r)
                })
                .buffer_unordered(concurrency * accounts.len())
                .collect()
                .await;
        pb.finish_and_clear();
        results.sort_by_key(|(i, _)| *i);
        let mut samples = Vec::new();
        let mut failed = 0usize;
        for (i, r) in results {
            let job = &work[i].1;
            match r {
                Ok(Some(kb)) if kb.is_finite() => samples.push(Sample {
                    job: job.clone(),
                    value: kb * 1024.0,
                }),
                Ok(_) => {
                    failed += 1;
                    eprintln!(
                        "tibiot-exporter: {} {} {} of account {:?}: the answer has no usable useFlowKb; sample left out",
                        job.family.metric(),
                        job.target,
                        job.period,
                        job.account
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "tibiot-exporter: {} {} {} of account {:?}: {e}; sample left out",
                        job.family.metric(),
                        job.target,
                        job.period,
                        job.account
                    );
                }
            }
        }
        let text = encode(&samples);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| Failure::Runtime(format!("writing the output: {e}")))?;
        eprintln!(
            "backfill: {} samples for {pools} pools and {cards} cards from {total} requests ({failed} failed) in {:.1}s",
            samples.len(),
            started.elapsed().as_secs_f64()
        );
        if failed > 0 {
            return Err(Failure::Runtime(format!(
                "{failed} of {total} requests failed; the output lacks their samples"
            )));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibiot_api::calendar::{ApiCalendar, parse_day};

    #[test]
    fn closed_periods_only_stamped_at_their_end() {
        let cal = ApiCalendar::default();
        let today = parse_day("2026-03-02").unwrap();
        let days = closed_days(&cal, today, 30);
        assert_eq!(days.len(), 29);
        assert_eq!(format_day(*days.last().unwrap()), "2026-03-01");
        assert_eq!(format_day(days[0]), "2026-02-01");
        let months = closed_months(&cal, today, 12);
        assert_eq!(months.len(), 11);
        assert_eq!(months.last().unwrap().to_string(), "2026-02");
        assert_eq!(months[0].to_string(), "2025-04");
        assert!(closed_days(&cal, today, 1).is_empty());
        assert!(closed_months(&cal, today, 0).is_empty());
        // 2026-03-01 ends at 2026-03-02T00:00+08:00.
        assert_eq!(cal.day_end(days[28]), 1_772_380_800);
    }

    #[test]
    fn openmetrics_text_escapes_labels_and_ends_with_eof() {
        let job = |family, target: &str, period: &str| Job {
            family,
            account: "main".into(),
            target: target.into(),
            period: period.into(),
            timestamp: 1_772_380_800,
        };
        let s = encode(&[
            Sample {
                job: job(Family::PoolMonthly, "P\"1\\\n", "2026-02"),
                value: 2048.0,
            },
            Sample {
                job: job(Family::PoolDaily, "池", "2026-03-01"),
                value: 1536.5,
            },
        ]);
        let want = "# HELP tibiot_pool_daily_usage_bytes Data used by the pool on one day of the API calendar, in bytes.\n\
# TYPE tibiot_pool_daily_usage_bytes gauge\n\
tibiot_pool_daily_usage_bytes{account=\"main\",pool=\"池\",date=\"2026-03-01\"} 1536.5 1772380800\n\
# HELP tibiot_pool_monthly_usage_bytes Data used by the pool in one month of the API calendar, in bytes.\n\
# TYPE tibiot_pool_monthly_usage_bytes gauge\n\
tibiot_pool_monthly_usage_bytes{account=\"main\",pool=\"P\\\"1\\\\\\n\",month=\"2026-02\"} 2048 1772380800\n\
# EOF\n";
        assert_eq!(s, want);
        assert_eq!(encode(&[]), "# EOF\n");
    }
}
