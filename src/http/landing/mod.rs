//! The landing page `/`: the daily look at the fleet. Served from the exporter's cache at
//! once — it never waits for the API; when something is due it starts one background refresh
//! (the same collection a scrape does, sharing in-flight fetches) and shows what is there now.
//! Problems come first, then accounts, pools and cards (the card list paginated and filtered
//! with `?q=`, `?status=`, `?page=`).
//!
//! [`view`] builds the page's view model from a collection snapshot (the one place that reads
//! it) and [`html`] renders that model: server-side HTML with inline CSS, no script and no
//! external asset, so it works offline. Everything from upstream or the configuration is
//! HTML-escaped.

mod html;
mod view;

use super::App;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Escapes text for HTML element content and attribute values.
pub(super) fn esc(s: &str) -> String {
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

/// An age in seconds as short text ("45s", "12m", "3h", "2d").
pub(super) fn age_text(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Clears the "refresh running" flag when the background refresh ends, however it ends.
struct RefreshGuard(Arc<App>);

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.0.landing_refresh.store(false, Ordering::Release);
    }
}

/// Starts one background collection of what is due (at most one at a time; a scrape that
/// runs meanwhile shares its fetches). The page does not wait for it.
fn refresh_in_background(app: &Arc<App>) {
    if app.landing_refresh.swap(true, Ordering::AcqRel) {
        return;
    }
    let guard = RefreshGuard(app.clone());
    tokio::spawn(async move {
        let deadline = guard.0.deadline(&HeaderMap::new());
        let _ = guard.0.collector.scrape(deadline).await;
        drop(guard);
    });
}

/// `GET /`: the page from the cache as it is now.
pub(super) async fn page(
    State(app): State<Arc<App>>,
    params: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let snap = app.collector.snapshot();
    refresh_in_background(&app);
    let ctx = view::Context {
        reload_ok: app.reload_ok(),
        calendar: app.collector.config().collect.calendar,
        query: view::CardQuery::from_params(&params),
    };
    let html = tokio::task::spawn_blocking(move || {
        let page = {
            let view = view::build(&snap, &ctx);
            html::render(&view)
        };
        drop(snap);
        // The view of 10,000 cards leaves freed memory behind, as a scrape does.
        crate::sys::release_freed_memory();
        page
    })
    .await
    .unwrap_or_else(|_| "internal error while rendering the page\n".into());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_ages() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(age_text(60.0), "60s");
        assert_eq!(age_text(10_000.0), "2h");
        assert_eq!(age_text(-5.0), "0s");
    }
}
