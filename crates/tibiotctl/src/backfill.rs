//! `backfill [--days=30] [--months=12]`: the usage history of every configured target as
//! OpenMetrics text with timestamps on stdout, for
//! `promtool tsdb create-blocks-from openmetrics --max-block-duration=8760h FILE DIR`.
//!
//! - Written through the exporter's own history families and writer
//!   (`tibiot_exporter::kinds::history_sources`, `metrics::expo::Writer`): the same names,
//!   help, labels and escaping as the live `tibiot_pool_daily_usage_bytes{account,pool,date}`,
//!   `tibiot_pool_monthly_usage_bytes{account,pool,month}` and the card families with `iccid`;
//!   values are KB × 1024.
//! - A day's sample is stamped at the end of that day, a month's at the end of that month, on
//!   the API calendar (`collect.utc_offset`).
//! - Only closed periods are written: the windows are the exporter's (the last N days / months,
//!   today / this month included), but today and this month are skipped. Their values still
//!   grow, their end lies in the future (Prometheus and promtool must not get samples from the
//!   future), and the live exporter serves them anyway. So `--days=30` writes up to 29 days
//!   and `--months=12` up to 11 months per target.
//! - Each kind's `--days`/`--months` are capped by its history window in the configuration
//!   (`collect.history.pool_days`, `card_days`, …; 0 = none): what is backfilled is what the
//!   exporter serves live.
//! - Requests run concurrently with the exporter's per-account limits: at most
//!   `collect.concurrency` (or `--concurrency`) in flight and `collect.requests_per_second`
//!   per account, retries included. A failed request (after the client's GET retries) is
//!   reported on stderr, its sample left out, and the exit status is 1.

use crate::{Failure, client_for, load_config, pick_account, run_async};
use clap::Args;
use futures::StreamExt;
use std::io::Write;
use tibiot_api::calendar::{Month, format_day};
use tibiot_api::{ApiError, Client, Deadline, Gate, Query};
use tibiot_exporter::kinds::{HistorySource, history_sources};
use tibiot_exporter::metrics::expo::{Format, Writer};

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

/// One sample to fetch.
#[derive(Debug, Clone)]
pub struct Job {
    /// The kind's history.
    pub source: HistorySource,
    /// A month's usage (else a day's).
    pub month: bool,
    pub account: String,
    pub target: String,
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// Unix seconds: the end of the period.
    pub timestamp: i64,
}

impl Job {
    fn family(&self) -> &'static tibiot_exporter::metrics::Family {
        if self.month {
            self.source.monthly()
        } else {
            self.source.daily()
        }
    }

    /// Where the family sits in the output: kinds in order, days before months.
    fn family_index(&self) -> (usize, bool) {
        let kind = history_sources()
            .position(|s| s.name() == self.source.name())
            .unwrap_or(usize::MAX);
        (kind, self.month)
    }
}

/// A fetched sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub job: Job,
    /// Bytes.
    pub value: f64,
}

/// The OpenMetrics text of the samples, through the exporter's writer: the families in the
/// exporter's order, each with its `# HELP` and `# TYPE`, samples with timestamps, `# EOF`.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    // Stable: within a family, the samples keep their order.
    sorted.sort_by_key(|s| s.job.family_index());
    let mut w = Writer::new(Format::OpenMetrics);
    let mut current: Option<(usize, bool)> = None;
    for s in sorted {
        let j = &s.job;
        if current != Some(j.family_index()) {
            current = Some(j.family_index());
            w.family(j.family());
        }
        let period = if j.month { "month" } else { "date" };
        w.sample_at(
            &[("account", &j.account), (j.source.id_label(), &j.target)],
            &[(period, &j.period)],
            s.value,
            j.timestamp,
        );
    }
    w.finish()
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

/// Every sample to fetch for one account: kind by kind, days then months, each capped by the
/// kind's history window in the configuration.
pub fn plan(
    account: &tibiot_exporter::config::Account,
    collect: &tibiot_exporter::config::CollectConfig,
    today: chrono::NaiveDate,
    days: u32,
    months: u32,
) -> Vec<Job> {
    let cal = &collect.calendar;
    let mut jobs = Vec::new();
    for source in history_sources() {
        let (max_days, max_months) = source.window(collect);
        let job = |target: &std::sync::Arc<str>, month: bool, period: String, timestamp: i64| Job {
            source,
            month,
            account: account.name.clone(),
            target: target.to_string(),
            period,
            timestamp,
        };
        for t in source.targets(account) {
            for d in closed_days(cal, today, days.min(max_days)) {
                jobs.push(job(t, false, format_day(d), cal.day_end(d)));
            }
        }
        for t in source.targets(account) {
            for m in closed_months(cal, today, months.min(max_months)) {
                jobs.push(job(t, true, m.to_string(), cal.month_end(m)));
            }
        }
    }
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
    let subject = job.source.subject();
    let query = if job.month {
        Query::month_usage(subject, &job.target, &job.period)
    } else {
        Query::day_usage(subject, &job.target, &job.period)
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
    let concurrency = args
        .concurrency
        .map(|c| c as usize)
        .unwrap_or(config.collect.concurrency)
        .max(1);
    let timeout = common.timeout;
    let mut work: Vec<(Client, Job)> = Vec::new();
    let today = cal.today();
    // Targets with something to backfill, by kind.
    let mut targets: Vec<(&'static str, usize)> =
        history_sources().map(|s| (s.name(), 0)).collect();
    for acc in &accounts {
        let gate = Gate::new(concurrency, config.collect.requests_per_second);
        let client = client_for(acc, gate, common.timeout)?;
        for (source, count) in history_sources().zip(&mut targets) {
            let (d, m) = source.window(&config.collect);
            if d.min(args.days) > 0 || m.min(args.months) > 0 {
                count.1 += source.targets(acc).len();
            }
        }
        for job in plan(acc, &config.collect, today, args.days, args.months) {
            work.push((client.clone(), job));
        }
    }
    let targets = targets
        .iter()
        .map(|(kind, n)| format!("{n} {kind}s"))
        .collect::<Vec<_>>()
        .join(", ");
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
                        job.family().name,
                        job.target,
                        job.period,
                        job.account
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "tibiot-exporter: {} {} {} of account {:?}: {e}; sample left out",
                        job.family().name,
                        job.target,
                        job.period,
                        job.account
                    );
                }
            }
        }
        let text = encode(&samples);
        let mut out = std::io::stdout().lock();
        out.write_all(&text)
            .and_then(|_| out.flush())
            .map_err(|e| Failure::Runtime(format!("writing the output: {e}")))?;
        eprintln!(
            "backfill: {} samples for {targets} from {total} requests ({failed} failed) in {:.1}s",
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
    fn openmetrics_through_the_exporters_families_and_writer() {
        let pools = history_sources().find(|s| s.name() == "pool").unwrap();
        let job = |month, target: &str, period: &str| Job {
            source: pools,
            month,
            account: "main".into(),
            target: target.into(),
            period: period.into(),
            timestamp: 1_772_380_800,
        };
        let s = encode(&[
            Sample {
                job: job(true, "P\"1\\\n", "2026-02"),
                value: 2048.0,
            },
            Sample {
                job: job(false, "池", "2026-03-01"),
                value: 1536.5,
            },
        ]);
        let (daily, monthly) = (pools.daily(), pools.monthly());
        let want = format!(
            "# HELP tibiot_pool_daily_usage_bytes {}\n\
# TYPE tibiot_pool_daily_usage_bytes gauge\n\
tibiot_pool_daily_usage_bytes{{account=\"main\",pool=\"池\",date=\"2026-03-01\"}} 1536.5 1772380800\n\
# HELP tibiot_pool_monthly_usage_bytes {}\n\
# TYPE tibiot_pool_monthly_usage_bytes gauge\n\
tibiot_pool_monthly_usage_bytes{{account=\"main\",pool=\"P\\\"1\\\\\\n\",month=\"2026-02\"}} 2048 1772380800\n\
# EOF\n",
            daily.help, monthly.help
        );
        assert_eq!(String::from_utf8(s).unwrap(), want);
        assert_eq!(encode(&[]), b"# EOF\n");
    }
}
