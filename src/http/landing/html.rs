//! Renders the landing page's view model ([`Landing`]) as one HTML document: inline CSS, no
//! script, no external asset (it works offline and behind any proxy; every link is relative).
//! Every string is HTML-escaped here, whatever its origin.

use super::view::{
    CardQuery, CardRow, CardsView, Fetch, Landing, Level, PSEUDO_STATUSES, PoolRow, ProblemGroup,
    Subject, TargetState, bytes, days,
};
use super::{age_text, esc};
use std::fmt::Write;

const CSS: &str = r#"
:root{--bad:#c62828;--bad-bg:#fdecea;--warn:#a15c00;--warn-bg:#fff4e0;--ok:#1a7f37;--ok-bg:#e8f5ec;
--muted:#6b7280;--line:#e5e7eb;--head:#f6f7f9;--ink:#1f2328;--link:#0b5cad}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;margin:0;color:var(--ink);background:#fff}
a{color:var(--link);text-decoration:none} a:hover{text-decoration:underline}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4em 1.2em;padding:.8em 1.5em;background:#17324d;color:#fff}
header h1{font-size:1.25em;margin:0} header .ver{color:#c9d6e3;font-size:.9em}
header nav{margin-left:auto} header nav a{color:#fff;margin-left:1em}
main{padding:0 1.5em 2em;max-width:1600px}
h2{font-size:1.1em;margin:1.6em 0 .5em;padding-bottom:.25em;border-bottom:2px solid var(--line)}
h3{font-size:1em;margin:1em 0 .4em}
.asof{color:var(--muted);margin:.8em 0}
.tiles{display:flex;flex-wrap:wrap;gap:.7em;margin:.8em 0}
.tile{border:1px solid var(--line);border-radius:6px;padding:.5em .9em;min-width:10em;background:var(--head)}
.tile b{display:block;font-size:1.5em;line-height:1.2}
.tile.critical{border-color:var(--bad);background:var(--bad-bg)} .tile.critical b{color:var(--bad)}
.tile.warning{border-color:#e0a040;background:var(--warn-bg)} .tile.warning b{color:var(--warn)}
.tile.good b{color:var(--ok)}
.group{border-left:5px solid var(--line);border-radius:4px;padding:.4em .9em .5em;margin:.6em 0;background:var(--head)}
.group.critical{border-color:var(--bad);background:var(--bad-bg)} .group.warning{border-color:#e0a040;background:var(--warn-bg)}
.group h3{margin:.2em 0 .3em} .group ul{margin:0;padding-left:1.2em} .group li{margin:.15em 0}
.lvl{display:inline-block;font-size:.72em;font-weight:700;letter-spacing:.04em;text-transform:uppercase;border-radius:3px;padding:0 .45em;margin-right:.5em;vertical-align:.1em;color:#fff}
.lvl.critical{background:var(--bad)} .lvl.warning{background:var(--warn)}
.none{border-left:5px solid var(--ok);background:var(--ok-bg);padding:.6em .9em;border-radius:4px}
.acct{color:var(--muted);font-size:.9em}
.detail{word-break:break-word}
table{border-collapse:collapse;margin:.3em 0 1em;width:100%} table.narrow{width:auto}
th,td{border-bottom:1px solid var(--line);padding:.3em .55em;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.critical td{background:var(--bad-bg)} tr.warning td{background:var(--warn-bg)}
tr.critical td:first-child{box-shadow:inset 4px 0 var(--bad)} tr.warning td:first-child{box-shadow:inset 4px 0 #e0a040}
.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.92em;white-space:nowrap}
td.id{white-space:nowrap} td.name{min-width:10em}
.bar{display:inline-block;width:9em;height:.8em;background:#eceff3;border-radius:2px;vertical-align:middle;overflow:hidden;margin-right:.4em}
.bar>span{display:block;height:100%;background:#2e7d32}
.bar>span.warning{background:#e69a00} .bar>span.critical{background:var(--bad)}
.st{white-space:nowrap} .st.ok{color:var(--ok)} .st.failing{color:var(--bad);font-weight:600} .st.pending{color:var(--muted)}
.err{color:var(--bad);font-size:.9em;word-break:break-word} td .err{max-width:22em;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.flag{display:inline-block;font-size:.8em;border-radius:3px;padding:0 .4em;margin-right:.25em;background:var(--warn-bg);color:var(--warn);border:1px solid #e0a040}
.flag.critical{background:var(--bad-bg);color:var(--bad);border-color:var(--bad)}
.chips{display:flex;flex-wrap:wrap;gap:.4em;margin:.4em 0 .8em}
.chip{border:1px solid var(--line);border-radius:999px;padding:.1em .7em;background:#fff;white-space:nowrap}
.chip b{margin-left:.3em} .chip.on{background:#17324d;color:#fff;border-color:#17324d}
.chip.critical{border-color:var(--bad);color:var(--bad)} .chip.warning{border-color:#e0a040;color:var(--warn)}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(30em,1fr));gap:0 2em}
form.filter{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.4em 0}
form.filter input,form.filter select,form.filter button{font:inherit;padding:.2em .45em}
.pager{display:flex;gap:.8em;align-items:center;margin:.3em 0 1em}
footer{color:var(--muted);font-size:.9em;border-top:1px solid var(--line);margin-top:2em;padding-top:.8em}
footer code{background:var(--head);padding:0 .25em}
"#;

fn level_class(l: Option<Level>) -> &'static str {
    l.map_or("", Level::as_str)
}

fn num(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt_bytes(v: Option<f64>) -> String {
    v.map(bytes).unwrap_or_else(|| "—".into())
}

/// The usage bar and percentage.
fn bar(pct: Option<f64>, warn: f64, crit: f64) -> String {
    match pct {
        Some(p) => {
            let class = if p >= crit {
                "critical"
            } else if p >= warn {
                "warning"
            } else {
                ""
            };
            let w = p.clamp(0.0, 100.0);
            format!(
                "<span class=\"bar\" title=\"{p:.1}%\"><span class=\"{class}\" style=\"width:{w:.1}%\"></span></span>{p:.1}%"
            )
        }
        None => "<span class=\"muted\">—</span>".into(),
    }
}

/// An error inside a table cell: its first words, the whole text on hover (and in full in
/// the problem list above).
fn err_div(e: &str) -> String {
    const SHOWN: usize = 48;
    let short: String = if e.chars().count() > SHOWN {
        e.chars().take(SHOWN).collect::<String>() + "…"
    } else {
        e.to_owned()
    };
    format!(
        "<div class=\"err\" title=\"{}\">{}</div>",
        esc(e),
        esc(&short)
    )
}

/// The collection state of a target: ok / failing (with the error) / pending, and data age.
fn state_cell(s: &TargetState) -> String {
    let age = s
        .age
        .map(|a| format!(" <span class=\"muted\">{}</span>", age_text(a)))
        .unwrap_or_default();
    match &s.fetch {
        Fetch::Ok => format!("<span class=\"st ok\">ok</span>{age}"),
        Fetch::Pending => "<span class=\"st pending\">pending</span>".into(),
        Fetch::Failing(e) => format!(
            "<span class=\"st failing\">failing</span>{age}{}",
            err_div(e)
        ),
    }
}

fn probe_link(account: &str, key: &str, id: &str) -> String {
    format!(
        "<a class=\"mono\" href=\"probe?account={}&amp;{key}={}\" title=\"this target's metrics\">{}</a>",
        esc(&percent(account)),
        esc(&percent(id)),
        esc(id)
    )
}

/// Percent-encodes a query value (account names, pool codes and ICCIDs are plain ASCII
/// already; this keeps anything else from breaking the URL).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The card list URL with `query` changed as given (relative, ends at the list).
fn list_url(q: &str, status: Option<&str>, page: usize) -> String {
    let mut u = String::from("./?");
    if !q.is_empty() {
        let _ = write!(u, "q={}&", percent(q));
    }
    if let Some(s) = status {
        let _ = write!(u, "status={}&", percent(s));
    }
    if page > 1 {
        let _ = write!(u, "page={page}&");
    }
    u.pop();
    u.push_str("#cards-list");
    esc(&u)
}

fn tile(o: &mut String, class: &str, value: &str, label: &str) {
    let _ = write!(
        o,
        "<div class=\"tile {class}\"><b>{value}</b>{}</div>",
        esc(label)
    );
}

fn problems(o: &mut String, groups: &[ProblemGroup], accounts: bool) {
    let total: usize = groups.iter().map(|g| g.total).sum();
    let _ = writeln!(o, "<section id=\"problems\"><h2>Problems ({total})</h2>");
    if groups.is_empty() {
        o.push_str("<p class=\"none\">No problems: every account answers, every target is collected, no pool or card is near its limit.</p>\n");
    }
    for g in groups {
        let lv = g.level.as_str();
        let _ = writeln!(
            o,
            "<div class=\"group {lv}\"><h3><span class=\"lvl {lv}\">{lv}</span>{} ({})</h3><ul>",
            esc(g.kind.title()),
            g.total
        );
        for p in &g.items {
            let acct = if accounts {
                format!(" <span class=\"acct\">({})</span>", esc(&p.account))
            } else {
                String::new()
            };
            let subject = match &p.subject {
                Subject::Account => format!("account <b>{}</b>", esc(&p.account)),
                Subject::Pool(c) => format!("pool {}{acct}", probe_link(&p.account, "pool", c)),
                Subject::Card(c) => format!("card {}{acct}", probe_link(&p.account, "card", c)),
            };
            let subject = if p.account.is_empty() && p.subject == Subject::Account {
                String::new()
            } else {
                subject + ": "
            };
            let _ = writeln!(
                o,
                "<li>{subject}<span class=\"detail\">{}</span></li>",
                esc(&p.detail)
            );
        }
        if g.total > g.items.len() {
            let more = g.total - g.items.len();
            match g.kind.card_filter() {
                Some(f) => {
                    let what = if f == "failing" {
                        "list the failing cards"
                    } else {
                        "list them all"
                    };
                    let _ = write!(
                        o,
                        "<li>and {} more — <a href=\"{}\">{what}</a></li>",
                        num(more),
                        list_url("", Some(f), 1),
                    );
                }
                None => {
                    let _ = write!(o, "<li class=\"muted\">and {} more</li>", num(more));
                }
            }
        }
        o.push_str("</ul></div>\n");
    }
    o.push_str("</section>\n");
}

fn pools(o: &mut String, rows: &[PoolRow], accounts: bool) {
    let _ = write!(
        o,
        "<section id=\"pools\"><h2>Pools ({})</h2>\n<p class=\"muted\">Problems first, then the fullest. \"Runs out\": at the average daily use of the last closed days of history.</p>\n",
        rows.len()
    );
    if rows.is_empty() {
        o.push_str("<p class=\"muted\">No pools configured.</p></section>\n");
        return;
    }
    o.push_str("<table><tr><th>pool</th><th>name</th><th>type</th><th>usage</th><th class=\"n\">used</th><th class=\"n\">capacity</th><th class=\"n\">per day</th><th>runs out</th><th>end date</th><th class=\"n\">cards</th><th>status</th><th>collection</th><th>history</th></tr>\n");
    for p in rows {
        let valid = match p.valid {
            Some(true) => "valid".to_owned(),
            Some(false) => "<span class=\"flag\">invalid</span>".to_owned(),
            None => "<span class=\"muted\">—</span>".to_owned(),
        };
        let runs_out = match (p.days_to_exhaustion, p.capacity) {
            (Some(d), _) => days(d),
            (None, None) if p.used.is_some() => "<span class=\"muted\">no cap</span>".into(),
            _ => "<span class=\"muted\">—</span>".into(),
        };
        let end = match (&p.end_date, p.days_to_end) {
            (Some(date), Some(d)) if d >= 0.0 => {
                format!(
                    "<span class=\"st\">{}</span> <span class=\"muted st\">in {}</span>",
                    esc(date),
                    days(d)
                )
            }
            (Some(date), _) => format!(
                "<span class=\"st\">{}</span> <span class=\"muted\">ended</span>",
                esc(date)
            ),
            _ => "<span class=\"muted\">—</span>".into(),
        };
        let history = match &p.history {
            Some((s, d, m)) => {
                let mut h = format!("<span class=\"st\">{d} d, {m} mo</span>");
                if let Fetch::Failing(e) = &s.fetch {
                    let _ = write!(
                        h,
                        " <span class=\"st failing\">failing</span>{}",
                        err_div(e)
                    );
                } else if s.fetch == Fetch::Pending {
                    h.push_str(" <span class=\"st pending\">pending</span>");
                }
                h
            }
            None => "<span class=\"muted\">off</span>".into(),
        };

        let _ = writeln!(
            o,
            "<tr class=\"{}\"><td class=\"id\">{}{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"st\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{runs_out}</td><td>{end}</td><td class=\"n\">{}</td><td>{valid}</td><td>{}</td><td>{history}</td></tr>",
            level_class(p.level),
            probe_link(&p.account, "pool", &p.code),
            if accounts {
                format!(" <span class=\"acct\">{}</span>", esc(&p.account))
            } else {
                String::new()
            },
            esc(&p.name),
            esc(&p.type_label),
            bar(
                p.pct,
                super::view::POOL_WARNING_PCT,
                super::view::POOL_CRITICAL_PCT
            ),
            opt_bytes(p.used),
            opt_bytes(p.capacity),
            opt_bytes(p.daily_rate),
            p.cards
                .map(|c| num(c.max(0.0) as usize))
                .unwrap_or_else(|| "—".into()),
            state_cell(&p.state),
        );
    }
    o.push_str("</table></section>\n");
}

/// Which columns a card table has.
#[derive(Clone, Copy, PartialEq)]
enum Columns {
    /// ICCID, status (with flags and a collection error), cycle usage, cap, share of cap.
    Compact,
    /// Everything, with the collection state.
    Full,
}

fn card_table(o: &mut String, rows: &[CardRow], cols: Columns, accounts: bool) {
    o.push_str("<table><tr><th>ICCID</th><th>status</th>");
    if cols == Columns::Full {
        o.push_str("<th>billing</th>");
    }
    o.push_str("<th class=\"n\">cycle usage</th>");
    if cols == Columns::Full {
        o.push_str("<th class=\"n\">month usage</th>");
    }
    o.push_str("<th class=\"n\">cap</th><th>of cap</th>");
    if cols == Columns::Full {
        o.push_str("<th>collection</th>");
    }
    o.push_str("</tr>\n");
    for c in rows {
        let mut status = esc(c.status.as_deref().unwrap_or("—"));
        for f in &c.flags {
            let class = if *f == "over cap" { " critical" } else { "" };
            let _ = write!(status, " <span class=\"flag{class}\">{f}</span>");
        }
        if cols == Columns::Compact
            && let Fetch::Failing(e) = &c.state.fetch
        {
            status.push_str(&err_div(e));
        }
        let account = if accounts {
            format!(" <span class=\"acct\">{}</span>", esc(&c.account))
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<tr class=\"{}\"><td class=\"id\">{}{account}</td><td>{status}</td>",
            level_class(c.level),
            probe_link(&c.account, "card", &c.iccid),
        );
        if cols == Columns::Full {
            let _ = write!(o, "<td>{}</td>", esc(c.billing.as_deref().unwrap_or("—")));
        }
        let _ = write!(o, "<td class=\"n\">{}</td>", opt_bytes(c.cycle));
        if cols == Columns::Full {
            let _ = write!(o, "<td class=\"n\">{}</td>", opt_bytes(c.month));
        }
        let _ = write!(
            o,
            "<td class=\"n\">{}</td><td class=\"st\">{}</td>",
            opt_bytes(c.capacity),
            bar(c.pct, super::view::CARD_NEAR_CAP_PCT, 100.0),
        );
        if cols == Columns::Full {
            let _ = write!(o, "<td>{}</td>", state_cell(&c.state));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

fn cards(o: &mut String, v: &CardsView, accounts: bool) {
    let _ = writeln!(o, "<section id=\"cards\"><h2>Cards ({})</h2>", num(v.total));
    if v.total == 0 {
        o.push_str("<p class=\"muted\">No cards configured.</p></section>\n");
        return;
    }
    let q: &CardQuery = &v.query;
    o.push_str("<div class=\"chips\">");
    for (s, n) in &v.by_status {
        let class = if s == "abnormal" { " warning" } else { "" };
        let on = if q.status.as_deref() == Some(s.as_str()) {
            " on"
        } else {
            ""
        };
        let _ = write!(
            o,
            "<a class=\"chip{class}{on}\" href=\"{}\">{}<b>{}</b></a>",
            list_url(&q.q, Some(s), 1),
            esc(s),
            num(*n)
        );
    }
    for (s, n) in &v.by_flag {
        let label = PSEUDO_STATUSES
            .iter()
            .find(|(k, _)| k == s)
            .map_or(*s, |(_, l)| *l);
        let class = match *s {
            "over_cap" | "failing" => " critical",
            "problems" | "near_cap" => " warning",
            _ => "",
        };
        let on = if q.status.as_deref() == Some(*s) {
            " on"
        } else {
            ""
        };
        let _ = write!(
            o,
            "<a class=\"chip{class}{on}\" href=\"{}\">{}<b>{}</b></a>",
            list_url(&q.q, Some(s), 1),
            esc(label),
            num(*n)
        );
    }
    o.push_str("</div>\n<div class=\"cols\"><div>");
    let _ = writeln!(o, "<h3>Top {} by usage this cycle</h3>", v.top.len());
    if v.top.is_empty() {
        o.push_str("<p class=\"muted\">No usage reported yet.</p>");
    } else {
        card_table(o, &v.top, Columns::Compact, accounts);
    }
    let _ = writeln!(
        o,
        "</div><div><h3>Problem cards ({})</h3>",
        num(v.problem_total)
    );
    if v.problems.is_empty() {
        o.push_str(
            "<p class=\"muted\">None: no card over or near its cap, abnormal or failing.</p>",
        );
    } else {
        card_table(o, &v.problems, Columns::Compact, accounts);
        if v.problem_total > v.problems.len() {
            let _ = write!(
                o,
                "<p><a href=\"{}\">All {} problem cards</a></p>",
                list_url("", Some("problems"), 1),
                num(v.problem_total)
            );
        }
    }
    o.push_str("</div></div>\n");

    // The full list: filter form (plain GET, no script) and one page.
    let _ = write!(
        o,
        "<h3 id=\"cards-list\">All cards</h3>\n<form class=\"filter\" method=\"get\" action=\"./#cards-list\"><label>ICCID or account <input name=\"q\" value=\"{}\" size=\"24\" maxlength=\"64\" placeholder=\"part of an ICCID\"></label> <label>status <select name=\"status\"><option value=\"\">any</option>",
        esc(&q.q)
    );
    let mut options: Vec<(String, String)> = v
        .by_status
        .iter()
        .map(|(s, _)| (s.clone(), s.clone()))
        .collect();
    options.extend(
        PSEUDO_STATUSES
            .iter()
            .map(|(k, l)| ((*k).to_owned(), (*l).to_owned())),
    );
    if let Some(s) = &q.status
        && !options.iter().any(|(k, _)| k == s)
    {
        options.push((s.clone(), s.clone()));
    }
    for (k, l) in options {
        let sel = if q.status.as_deref() == Some(k.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(o, "<option value=\"{}\"{sel}>{}</option>", esc(&k), esc(&l));
    }
    o.push_str("</select></label> <button type=\"submit\">Filter</button>");
    if q.filtered() {
        let _ = write!(o, " <a href=\"{}\">clear</a>", list_url("", None, 1));
    }
    o.push_str("</form>\n");
    let first = (q.page - 1) * super::view::PAGE_SIZE;
    let pager = |o: &mut String| {
        o.push_str("<div class=\"pager\">");
        if q.page > 1 {
            let _ = write!(
                o,
                "<a href=\"{}\">← previous</a>",
                list_url(&q.q, q.status.as_deref(), q.page - 1)
            );
        }
        let _ = write!(
            o,
            "<span>{}–{} of {} {}· page {} of {}</span>",
            num(if v.matched == 0 { 0 } else { first + 1 }),
            num(first + v.page.len()),
            num(v.matched),
            if q.filtered() { "matching " } else { "" },
            num(q.page),
            num(v.pages)
        );
        if q.page < v.pages {
            let _ = write!(
                o,
                "<a href=\"{}\">next →</a>",
                list_url(&q.q, q.status.as_deref(), q.page + 1)
            );
        }
        o.push_str("</div>\n");
    };
    pager(o);
    if v.page.is_empty() {
        o.push_str("<p class=\"muted\">No card matches.</p>\n");
    } else {
        card_table(o, &v.page, Columns::Full, accounts);
        pager(o);
    }
    o.push_str("</section>\n");
}

/// Renders the whole page.
pub(super) fn render(v: &Landing) -> String {
    let shown_cards = v.cards.top.len() + v.cards.problems.len() + v.cards.page.len();
    let mut o = String::with_capacity(16_384 + (v.pools.len() + shown_cards) * 600);
    let problem_count: usize = v.problems.iter().map(|g| g.total).sum();
    let title = if problem_count == 0 {
        "TIBIOT Exporter".to_owned()
    } else {
        format!("({problem_count}) TIBIOT Exporter")
    };
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        esc(&title)
    );
    if v.pending > 0 {
        // Values are still arriving: look again in a few seconds (stops once all are in).
        o.push_str("<meta http-equiv=\"refresh\" content=\"5\">\n");
    }
    let _ = write!(
        o,
        "<style>{CSS}</style></head><body>\n<header><h1>TIBIOT Exporter</h1><span class=\"ver\">version {} · revision {}</span><nav><a href=\"metrics\">Metrics</a><a href=\"config\">Configuration</a><a href=\"-/healthy\">Health</a></nav></header>\n<main>\n",
        esc(v.version),
        esc(v.revision)
    );
    let as_of = chrono::DateTime::from_timestamp(v.now as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "<p class=\"asof\">As of {as_of}, from the exporter's cache (this page never waits for the API; it asks for a refresh of what is due). {} of {} collections ok, {} failing, {} pending.{}</p>",
        num(v.targets - v.failing - v.pending),
        num(v.targets),
        num(v.failing),
        num(v.pending),
        if v.reload_ok {
            ""
        } else {
            " <b class=\"err\">The latest configuration reload failed; the previous configuration is in use.</b>"
        }
    );

    // Summary tiles.
    o.push_str("<div class=\"tiles\">");
    let down = v
        .accounts
        .iter()
        .filter(|a| a.level == Some(Level::Critical))
        .count();
    tile(
        &mut o,
        if down > 0 { "critical" } else { "good" },
        &format!("{}/{}", v.accounts.len() - down, v.accounts.len()),
        "accounts up",
    );
    let crit = v
        .problems
        .iter()
        .filter(|g| g.level == Level::Critical)
        .map(|g| g.total)
        .sum::<usize>();
    let warn = problem_count - crit;
    tile(
        &mut o,
        if crit > 0 { "critical" } else { "good" },
        &num(crit),
        "critical problems",
    );
    tile(
        &mut o,
        if warn > 0 { "warning" } else { "good" },
        &num(warn),
        "warnings",
    );
    tile(&mut o, "", &num(v.pools.len()), "pools");
    tile(&mut o, "", &num(v.cards.total), "cards");
    tile(
        &mut o,
        if v.failing > 0 { "warning" } else { "good" },
        &num(v.failing),
        "failing collections",
    );
    o.push_str("</div>\n");

    problems(&mut o, &v.problems, v.accounts.len() > 1);

    // Accounts.
    o.push_str("<section id=\"accounts\"><h2>Accounts</h2><table class=\"narrow\"><tr><th>account</th><th>API</th><th class=\"n\">pools</th><th class=\"n\">cards</th><th class=\"n\">collections ok</th><th class=\"n\">failing</th><th class=\"n\">never collected</th><th class=\"n\">being fetched</th><th class=\"n\">requests/s needed</th><th class=\"n\">allowed</th><th>oldest data</th></tr>\n");
    for a in &v.accounts {
        let (class, up) = match (a.up, a.level) {
            (Some(true), _) => ("", "<span class=\"st ok\">up</span>"),
            (Some(false), Some(Level::Warning)) => {
                ("warning", "<span class=\"st failing\">errors</span>")
            }
            (Some(false), _) => ("critical", "<span class=\"st failing\">down</span>"),
            (None, _) => ("", "<span class=\"st pending\">no request yet</span>"),
        };
        let class =
            if class.is_empty() && (a.oversubscribed().is_some() || a.paused_until.is_some()) {
                "warning"
            } else {
                class
            };
        let allowed = match (a.allowed_rps, a.oversubscribed()) {
            (None, _) => "unlimited".to_owned(),
            (Some(r), Some(f)) => format!("<span class=\"flag\">{r:.1} ({f:.1}× short)</span>"),
            (Some(r), None) => format!("{r:.1}"),
        };
        let paused = a
            .paused_until
            .map(|t| {
                format!(
                    " <span class=\"flag\">paused {}</span>",
                    age_text((t - v.now).max(0.0))
                )
            })
            .unwrap_or_default();
        let oldest = if a.oldest.is_empty() {
            "<span class=\"muted\">—</span>".to_owned()
        } else {
            a.oldest
                .iter()
                .map(|(k, age)| format!("<span class=\"st\">{} {}</span>", esc(k), age_text(*age)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            o,
            "<tr class=\"{class}\"><td><b>{}</b></td><td>{up}{paused}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{allowed}</td><td>{oldest}</td></tr>",
            esc(&a.name),
            num(a.pools),
            num(a.cards),
            num(a.ok),
            num(a.failing),
            num(a.pending),
            num(a.refreshing),
            a.required_rps,
        );
    }
    o.push_str("</table></section>\n");

    pools(&mut o, &v.pools, v.accounts.len() > 1);
    cards(&mut o, &v.cards, v.accounts.len() > 1);

    o.push_str("<footer><a href=\"metrics\">/metrics</a>: every configured target and the exporter's own metrics · <code>/probe?account=NAME&amp;pool=CODE</code> or <code>&amp;card=ICCID</code>: one target (the links above) · <a href=\"config\">/config</a>: the effective configuration, secrets redacted · <a href=\"-/healthy\">/-/healthy</a>, <a href=\"-/ready\">/-/ready</a></footer>\n</main></body></html>\n");
    o
}
