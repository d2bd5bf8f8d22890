//! `tibiot-exporter check-config`: every problem of a configuration file, one a line
//! (`KEY (line N): message`, in file order), exit 2; or a summary and each account's request
//! budget, exit 0.

use super::budget::RequestBudget;
use super::duration::format_duration;
use super::model::Config;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

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
pub fn report(cfg: &Config, path: &Path) -> String {
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
pub fn budget_lines(account: &str, b: &RequestBudget, cfg: &Config) -> String {
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
        Some(a) if b.over_budget() => {
            let _ = write!(
                out,
                ": OVER BUDGET by {:.2}x; refresh periods stretch to pool_ttl {} (configured {}), card_ttl {} (configured {}), history_ttl {} (configured {})",
                b.stretch(),
                format_duration(b.effective_pool_ttl()),
                format_duration(c.pool_ttl),
                format_duration(b.effective_card_ttl()),
                format_duration(c.card_ttl),
                format_duration(b.effective_history_ttl()),
                format_duration(c.history_ttl),
            );
            let _ = a;
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

use std::time::Duration;

fn rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else if r < 0.01 {
        format!("{r:.4}")
    } else {
        format!("{r:.2}")
    }
}
