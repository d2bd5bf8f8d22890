//! Logging: `tracing` events written as logfmt (the default, like the Prometheus exporters)
//! or JSON (`--log.format=json`), filtered by `--log.level`, to stderr. [`fetch_failed`] is
//! the one line per failed upstream fetch: account, target, error class (`outcome`), API code
//! and traceId. Secrets never reach an event: errors carry only cleaned upstream text.

use std::fmt::{self, Write as _};
use tibiot_api::{ApiError, Endpoint};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

/// The accepted `--log.level` values.
pub(crate) const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Installs the global subscriber. An unknown level is an error (exit 2 for the caller).
/// Installing twice (tests) is not an error.
pub(crate) fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let level = level.trim().to_ascii_lowercase();
    if !LEVELS.contains(&level.as_str()) {
        return Err(format!(
            "--log.level: unknown level {level:?} (one of {})",
            LEVELS.join(", ")
        ));
    }
    // Our crate at the chosen level; dependencies one notch quieter than debug.
    let filter = EnvFilter::try_new(format!(
        "{level},hyper=warn,reqwest=warn,h2=warn,rustls=warn,tower_http=warn"
    ))
    .map_err(|e| format!("--log.level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not panic the task that logs (the default reports the failed
        // write with eprintln!, which panics when stderr is gone).
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
    Ok(())
}

/// Logs an upstream answer that exceeded the exporter's bounds (docs/metrics.md, "Bounds"):
/// the label values cut (name and original length in bytes) and the card statuses folded
/// into `status="other"`.
pub(crate) fn bounded(
    account: &str,
    kind: &str,
    target: &str,
    truncated: &[(&str, usize)],
    folded_statuses: usize,
) {
    let labels = truncated
        .iter()
        .map(|(label, len)| format!("{label}:{len}"))
        .collect::<Vec<_>>()
        .join(",");
    tracing::warn!(
        account,
        kind,
        target,
        truncated_labels = labels,
        folded_statuses,
        "upstream answer exceeds the exporter's bounds; values were cut"
    );
}

/// Logs one failed upstream fetch.
pub(crate) fn fetch_failed(
    account: &str,
    kind: &str,
    target: &str,
    period: Option<&str>,
    endpoint: Endpoint,
    e: &ApiError,
) {
    tracing::warn!(
        account,
        kind,
        target,
        period = period.unwrap_or(""),
        endpoint = endpoint.name(),
        outcome = e.outcome().as_str(),
        api_code = e.api_code().map(|c| c.to_string()).unwrap_or_default(),
        trace_id = e.trace_id().unwrap_or(""),
        error = %e,
        "fetch failed"
    );
}

/// The logfmt event format: `ts=... level=... caller=<module> msg="..." key=value ...`.
pub(crate) struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let meta = event.metadata();
        write!(
            w,
            "ts={ts} level={} caller={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut v = LogfmtVisitor {
            msg: None,
            fields: String::new(),
        };
        event.record(&mut v);
        if let Some(m) = v.msg {
            w.write_str(" msg=")?;
            w.write_str(&quote(&m))?;
        }
        w.write_str(&v.fields)?;
        writeln!(w)
    }
}

struct LogfmtVisitor {
    msg: Option<String>,
    fields: String,
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = Some(value.to_owned());
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), quote(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let s = format!("{value:?}");
        self.record_str(field, &s);
    }
}

/// A logfmt value: bare when safe, else quoted with `\"`, `\\` and `\n`-style escapes.
pub(crate) fn quote(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if bare {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quoting() {
        assert_eq!(quote("demo"), "demo");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x=\"y\"\n"), "\"x=\\\"y\\\"\\n\"");
    }

    #[test]
    fn bad_level_is_an_error() {
        assert!(init("loud", LogFormat::Logfmt).is_err());
    }
}
