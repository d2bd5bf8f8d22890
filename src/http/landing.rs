//! The landing page `/`: server-rendered HTML with inline CSS and no external assets (works
//! offline). Version, links, and every target with its last collection result, error, data
//! age and, for pools, a usage bar. It reads the cache and never triggers upstream calls.
//! Everything that came from upstream or the configuration is HTML-escaped.

use super::App;
use crate::collect::{Health, Snapshot};
use crate::kinds::card::{Card, CardValues};
use crate::kinds::pool::{Pool, PoolValues};
use crate::metrics::{REVISION, VERSION};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn age(now: f64, at: Option<f64>) -> String {
    let Some(at) = at else {
        return "—".into();
    };
    let s = (now - at).max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn bytes(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "—".into();
    };
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{x:.0} {}", UNITS[i])
    } else {
        format!("{x:.1} {}", UNITS[i])
    }
}

fn result_cells(out: &mut String, h: &Health) {
    let (class, word) = match (h.attempted, h.ok) {
        (false, _) => ("pending", "pending"),
        (true, true) => ("ok", "ok"),
        (true, false) => ("fail", "failed"),
    };
    let err = h
        .error
        .as_ref()
        .filter(|_| !h.ok)
        .map(|e| {
            let mut s = format!("{}: {}", e.outcome, e.message);
            if let Some(c) = e.api_code {
                let _ = write!(s, " (code {c})");
            }
            s
        })
        .unwrap_or_default();
    let _ = write!(
        out,
        "<td class=\"{class}\">{word}</td><td class=\"err\">{}</td>",
        esc(&err)
    );
}

/// Renders the page from a snapshot of the cache.
pub fn render(snap: &Snapshot, reload_ok: bool) -> String {
    let now = snap.now_unix;
    let cards: usize = snap.accounts.iter().map(|a| a.targets(&Card).len()).sum();
    let mut o = String::with_capacity(4096 + cards * 300);
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TIBIOT Exporter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
th,td{{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}}
th{{background:#f4f4f4}} .ok{{color:#1a7f37}} .fail{{color:#c62828;font-weight:bold}} .pending{{color:#888}}
.err{{color:#c62828;max-width:40em;word-break:break-word}}
.bar{{width:12em;height:.9em;background:#eee;border:1px solid #ccc;display:inline-block;vertical-align:middle}}
.bar>span{{display:block;height:100%;background:#2e7d32}} .bar>span.hi{{background:#f9a825}} .bar>span.full{{background:#c62828}}
code{{background:#f4f4f4;padding:0 .2em}}
</style></head><body>
<h1>TIBIOT Exporter</h1>
<p>Version {} (revision {}). Configuration {}.</p>
<ul>
<li><a href="metrics">/metrics</a> — every configured target and the exporter's own metrics</li>
<li><code>/probe?account=NAME&amp;pool=CODE</code> or <code>&amp;card=ICCID</code> — one target (<code>account</code> may be left out with one account)</li>
<li><a href="config">/config</a> — the effective configuration, secrets redacted</li>
<li><a href="-/healthy">/-/healthy</a>, <a href="-/ready">/-/ready</a></li>
</ul>
<p>Values below are as of this page: fetched for it where older than their TTL (sharing fetches with concurrent scrapes), else from the cache.</p>
"#,
        esc(VERSION),
        esc(REVISION),
        if reload_ok {
            "loaded"
        } else {
            "<b class=\"fail\">reload failed, previous configuration in use</b>"
        }
    );
    for a in &snap.accounts {
        let up = match a.up {
            Some(true) => "<span class=\"ok\">up</span>",
            Some(false) => "<span class=\"fail\">down</span>",
            None => "<span class=\"pending\">no request yet</span>",
        };
        let _ = write!(
            o,
            "<h2>Account {} — {up}</h2>\n<h3>Pools ({})</h3>\n<table><tr><th>pool</th><th>name</th><th>type</th><th>usage</th><th>used</th><th>capacity</th><th>result</th><th>error</th><th>data age</th><th>history</th></tr>\n",
            esc(&a.name),
            a.targets(&Pool).len()
        );
        for p in a.targets(&Pool) {
            let v = p.value::<PoolValues>();
            let used = v.and_then(|v| v.used_bytes);
            let cap = v.and_then(|v| v.capacity_bytes);
            let bar = match (used, cap) {
                (Some(u), Some(c)) if c > 0.0 => {
                    let pct = (u / c * 100.0).clamp(0.0, 100.0);
                    let class = if pct >= 95.0 {
                        "full"
                    } else if pct >= 80.0 {
                        "hi"
                    } else {
                        ""
                    };
                    format!(
                        "<span class=\"bar\" title=\"{pct:.1}%\"><span class=\"{class}\" style=\"width:{pct:.1}%\"></span></span> {pct:.1}%"
                    )
                }
                _ => "—".into(),
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{bar}</td><td>{}</td><td>{}</td>",
                esc(p.id()),
                esc(v.map(|v| &*v.name).unwrap_or("")),
                esc(v.and_then(|v| v.type_label.as_deref()).unwrap_or("")),
                bytes(used),
                bytes(cap),
            );
            result_cells(&mut o, &p.health);
            let _ = write!(o, "<td>{}</td>", age(now, p.health.last_success));
            match &p.history {
                Some((view, h)) => {
                    let _ = write!(
                        o,
                        "<td>{} days, {} months{}</td>",
                        view.days.len(),
                        view.months.len(),
                        if h.attempted && !h.ok {
                            " <span class=\"fail\">(failures)</span>"
                        } else {
                            ""
                        }
                    );
                }
                None => o.push_str("<td>—</td>"),
            }
            o.push_str("</tr>\n");
        }
        let _ = write!(
            o,
            "</table>\n<h3>Cards ({})</h3>\n<table><tr><th>ICCID</th><th>status</th><th>billing</th><th>cycle usage</th><th>month usage</th><th>capacity</th><th>result</th><th>error</th><th>data age</th></tr>\n",
            a.targets(&Card).len()
        );
        for c in a.targets(&Card) {
            let v = c.value::<CardValues>();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                esc(c.id()),
                esc(v.and_then(|v| v.status_label()).as_deref().unwrap_or("")),
                esc(v.and_then(|v| v.billing_label.as_deref()).unwrap_or("")),
                bytes(v.and_then(|v| v.cycle_bytes)),
                bytes(v.and_then(|v| v.month_bytes)),
                bytes(v.and_then(|v| v.capacity_bytes)),
            );
            result_cells(&mut o, &c.health);
            let _ = writeln!(o, "<td>{}</td></tr>", age(now, c.health.last_success));
        }
        o.push_str("</table>\n");
    }
    o.push_str("</body></html>\n");
    o
}

/// The landing page collects like a scrape (what is due, under the scrape deadline, joining
/// fetches already in flight), so a person opening it sees current values and costs no more
/// upstream calls than a Prometheus scrape would.
pub(super) async fn page(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    let snap = app.collector.scrape(app.deadline(&headers)).await;
    let reload_ok = app.reload_ok();
    let html = tokio::task::spawn_blocking(move || render(&snap, reload_ok))
        .await
        .unwrap_or_else(|_| "internal error".into());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_formatting() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(bytes(Some(1536.0)), "1.5 KiB");
        assert_eq!(bytes(Some(10.0)), "10 B");
        assert_eq!(age(100.0, Some(40.0)), "60s");
        assert_eq!(age(10_000.0, Some(0.0)), "2h");
    }
}
