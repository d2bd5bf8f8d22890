//! `tibiot-exporter check-config`: every problem of a configuration file, one a line
//! (`KEY (line N): message`, in file order), exit 2; or a summary and each account's request
//! budget, exit 0.

use super::budget::RequestBudget;
use super::duration::format_duration;
use super::model::Config;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Checks the file at `path`; prints to stdout (valid) or stderr (problems).
pub fn check_config_command(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            print!("{}", report(&cfg, path));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let n = errors.len();
            eprintln!(
                "{}: invalid configuration, {n} problem{}:",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            for e in &errors {
                eprintln!("{e}");
            }
            ExitCode::from(2)
        }
    }
}

/// The summary of a valid configuration: targets and each account's request budget.
pub(super) fn report(cfg: &Config, path: &Path) -> String {
    let pools: usize = cfg.accounts.iter().map(|a| a.pools.len()).sum();
    let cards: usize = cfg.accounts.iter().map(|a| a.cards.len()).sum();
    let mut out = format!(
        "{}: OK ({} account(s), {pools} pool(s), {cards} card(s))\n",
        path.display(),
        cfg.accounts.len()
    );
    for (name, b) in cfg.request_budgets() {
        out += &budget_lines(name, &b, cfg);
    }
    out
}

/// The request budget of one account, as `check-config` prints it.
pub(super) fn budget_lines(account: &str, b: &RequestBudget, cfg: &Config) -> String {
    let c = &cfg.collect;
    let mut out = format!(
        "account {account}: {} pool(s), {} card(s); required {} req/s (pools {}, cards {}), allowed {}",
        b.targets.pools,
        b.targets.cards,
        rate(b.required_per_second()),
        rate(b.pools_per_second),
        rate(b.cards_per_second),
        match b.allowed_per_second {
            Some(a) => format!("{} req/s", rate(a)),
            None => "unlimited".into(),
        }
    );
    match b.allowed_per_second {
        Some(_) if b.over_budget() => {
            let h = &c.history;
            let mut periods = Vec::new();
            let mut stretched = |name: &str, effective: Duration, configured: Duration| {
                periods.push(format!(
                    "{name} {} (configured {})",
                    format_duration(whole_seconds(effective)),
                    format_duration(configured)
                ))
            };
            if b.targets.pools > 0 {
                stretched("pool_ttl", b.effective_pool_ttl(), c.pool_ttl);
            }
            if b.targets.cards > 0 {
                stretched("card_ttl", b.effective_card_ttl(), c.card_ttl);
            }
            let pool_history = b.targets.pools > 0 && (h.pool_days > 0 || h.pool_months > 0);
            let card_history = b.targets.cards > 0 && (h.card_days > 0 || h.card_months > 0);
            if pool_history || card_history {
                stretched("history_ttl", b.effective_history_ttl(), c.history_ttl);
            }
            let _ = write!(
                out,
                ": OVER BUDGET by {:.2}x; refresh periods stretch to {}",
                b.stretch(),
                periods.join(", ")
            );
        }
        Some(a) => {
            let _ = write!(
                out,
                ": within budget ({} used)",
                match 100.0 * b.required_per_second() / a {
                    u if u > 0.0 && u < 1.0 => "<1%".to_string(),
                    u => format!("{u:.0}%"),
                }
            );
        }
        None => {}
    }
    out.push('\n');
    if b.fill_requests > 0 {
        let _ = write!(
            out,
            "account {account}: history fill: {} one-off requests for closed days and months (fetched once, then kept)",
            b.fill_requests
        );
        if let Some(d) = b.fill_duration() {
            let _ = write!(
                out,
                ", about {} at the allowed rate",
                format_duration(Duration::from_secs(d.as_secs().max(1)))
            );
        }
        out.push('\n');
    }
    out
}

/// Rounded to the second (a stretched period is an estimate).
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().round() as u64)
}

fn rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else if r < 0.01 {
        format!("{r:.4}")
    } else {
        format!("{r:.2}")
    }
}
