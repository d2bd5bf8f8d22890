//! What one part of one target costs upstream (docs/collection.md): fetching a detail through
//! its kind, fetching the due days and months of a history, recording every result in the
//! cache (the last real error of a failure, logged once), and when a part is due next.

use super::cache::FetchError;
use super::history::{History, Period, period_due_at};
use super::sched::{Driving, DueEnv, Item, NextDue, Part};
use super::scrape::window;
use super::{FetchCx, Target, TargetKind};
use crate::config::CollectConfig;
use crate::sys::{lock, unix_now};
use std::sync::Arc;
use tibiot_api::{Deadline, Query};
use tokio::time::Instant;

/// When `item` is due next, from its cache: a detail never fetched (or whose value is past
/// `stale_after`) now, a failed one `min(TTL, 1 minute)` after the failure, a good one on its
/// phase within its TTL; a history at its earliest due period.
pub(crate) fn next_due(
    item: &Item,
    kind: &dyn TargetKind,
    now: Instant,
    env: &DueEnv,
    s: &CollectConfig,
) -> NextDue {
    match item.part {
        Part::Detail => {
            let ttl = kind.ttl(s);
            let slot = lock(&item.target.detail);
            match (slot.last_ok, &slot.good) {
                (Some(false), _) => NextDue {
                    at: Some(env.retry(ttl, now)),
                    cold: false,
                },
                (Some(true), Some(g)) if now.saturating_duration_since(g.at) < s.stale_after => {
                    NextDue {
                        at: Some(env.refresh(ttl, g.at)),
                        cold: false,
                    }
                }
                _ => NextDue {
                    at: Some(now),
                    cold: true,
                },
            }
        }
        Part::History => {
            let Some(w) = window(kind, s) else {
                return NextDue {
                    at: None,
                    cold: false,
                };
            };
            let ttl = s.history_ttl;
            let mut guard = lock(&item.target.history);
            let h = guard.get_or_insert_with(Default::default);
            let (at, cold) = h.next_due(&w, now, unix_now(), ttl, |f| env.refresh(ttl, f));
            NextDue { at, cold }
        }
    }
}

/// Fetches `item` of `kind` and records the results (`env`: what its due instants were
/// computed with).
pub(crate) async fn run(item: Item, kind: &'static dyn TargetKind, d: Arc<Driving>, env: DueEnv) {
    match item.part {
        Part::Detail => detail(&item, kind, &d).await,
        Part::History => history(&item, kind, &d, &env).await,
    }
}

async fn detail(item: &Item, kind: &dyn TargetKind, d: &Driving) {
    let cx = FetchCx {
        account: &d.account,
        stats: &d.stats,
        calendar: d.settings.calendar,
        deadline: Deadline::AfterAdmission(d.settings.timeout),
    };
    let t = &item.target;
    let res = kind.fetch(&d.client, &t.id, &cx).await;
    let res = res.map_err(|e| {
        let ep = kind.subject().detail();
        crate::logging::fetch_failed(&d.account, kind.name(), &t.id, None, ep, &e);
        Arc::new(FetchError::from_api(&e))
    });
    lock(&t.detail).record_fetched(res);
}

/// Fetches every period of the target's window that is due now, concurrently (each request
/// passes the account's gate) — or, for a history never fetched in full (the backfill), the
/// newest due period only.
async fn history(item: &Item, kind: &dyn TargetKind, d: &Driving, env: &DueEnv) {
    let s = &d.settings;
    let Some(w) = window(kind, s) else {
        return;
    };
    let ttl = s.history_ttl;
    let now = Instant::now();
    let now_unix = unix_now();
    let mut due: Vec<(Period, i64)> = {
        let mut guard = lock(&item.target.history);
        let h = guard.get_or_insert_with(Default::default);
        h.align(&w);
        History::periods(&w)
            .filter(|(p, end)| {
                h.slot(*p).is_some_and(|slot| {
                    period_due_at(slot, *end, now, now_unix, ttl, |f| env.refresh(ttl, f))
                        .is_some_and(|at| at <= now)
                })
            })
            .collect()
    };
    if env.cold {
        // The backfill of a cold history goes one period per turn of the queue, newest first,
        // so that its share of the account's requests is its share of the turns.
        due.sort_by_key(|(_, end)| std::cmp::Reverse(*end));
        due.truncate(1);
    }
    futures::future::join_all(due.into_iter().map(|(p, _)| period(item, kind, d, p))).await;
}

async fn period(item: &Item, kind: &dyn TargetKind, d: &Driving, p: Period) {
    let t = &item.target;
    let label = p.label();
    let subject = kind.subject();
    let query = match p {
        Period::Day(_) => Query::day_usage(subject, &t.id, &label),
        Period::Month(_) => Query::month_usage(subject, &t.id, &label),
    };
    let ep = query.endpoint();
    let res = d
        .client
        .get(query, Deadline::AfterAdmission(d.settings.timeout))
        .await
        // KB from the API, bytes in the cache and on the wire.
        .map(|kb| kb.map(|kb| kb * 1024.0));
    let res = res.map_err(|e| {
        let name = kind.history_name();
        crate::logging::fetch_failed(&d.account, name, &t.id, Some(&label), ep, &e);
        Arc::new(FetchError::from_api(&e))
    });
    record_period(t, p, res);
}

fn record_period(t: &Target, p: Period, res: Result<Option<f64>, Arc<FetchError>>) {
    let mut guard = lock(&t.history);
    let Some(h) = guard.as_mut() else { return };
    if let Some(slot) = h.slot(p) {
        slot.record(res);
    }
    h.invalidate();
}

/// Records a fetch that panicked as a failure of the part (its history: of every period that
/// has no final value).
pub(crate) fn record_internal_error(item: &Item) {
    let e = Arc::new(FetchError::internal());
    match item.part {
        Part::Detail => lock(&item.target.detail).record_fetched(Err(e)),
        Part::History => {
            let mut guard = lock(&item.target.history);
            let Some(h) = guard.as_mut() else { return };
            for slot in h.days.values_mut().chain(h.months.values_mut()) {
                if slot.last_ok != Some(true) {
                    slot.record(Err(e.clone()));
                }
            }
            h.invalidate();
        }
    }
}
