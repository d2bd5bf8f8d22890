//! How the collection machinery sees a kind of target: [`TargetKind`], an object-safe view
//! with the kind's names, where its targets come from in the configuration, its TTL and
//! history window, and its fetch, whose result is kept as opaque [`Values`]. The machinery
//! (cache slots, scrape planning, snapshots) knows kinds only through this trait and the list
//! of registered kinds it is given; the kinds themselves live in `crate::kinds`.

use super::cache::Fetched;
use super::stats::AccountStats;
use crate::config::{Account, CollectConfig};
use futures::future::BoxFuture;
use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;
use tibiot_api::calendar::ApiCalendar;
use tibiot_api::{ApiError, Client, Deadline, Subject};

/// A fetched detail as the kind built it; only the kind (and its families) looks inside.
pub(crate) type Values = dyn Any + Send + Sync;

/// What a fetch gets besides the client and the id.
#[derive(Debug, Clone)]
pub(crate) struct FetchCx<'a> {
    /// The account's name.
    pub(crate) account: &'a str,
    /// The API calendar (`collect.utc_offset`).
    pub(crate) calendar: ApiCalendar,
    pub(crate) deadline: Deadline,
    pub(crate) stats: &'a AccountStats,
}

impl FetchCx<'_> {
    /// Reports an answer that had to be bounded (docs/metrics.md, "Bounds"): one log line
    /// naming the target, and the account's count of truncated label values.
    pub(crate) fn bounded(
        &self,
        kind: &'static str,
        id: &str,
        truncated: &[(&str, usize)],
        folded: usize,
    ) {
        if truncated.is_empty() && folded == 0 {
            return;
        }
        self.stats.truncated(kind, truncated.len() as u64);
        crate::logging::bounded(self.account, kind, id, truncated, folded);
    }
}

/// A kind of target, type-erased. Implemented for every `crate::kinds::Kind`.
pub(crate) trait TargetKind: Send + Sync + 'static {
    /// The `kind` label of its collection-health series; also the name of its `/probe`
    /// parameter.
    fn name(&self) -> &'static str;
    /// The `kind` label of its history's collection-health series.
    fn history_name(&self) -> &'static str;
    /// The API subject: which usage endpoints serve its history.
    fn subject(&self) -> Subject;
    /// The configured ids of this kind in `account`.
    fn configured<'a>(&self, account: &'a Account) -> &'a [Arc<str>];
    /// How long a fetched detail is reused.
    fn ttl(&self, c: &CollectConfig) -> Duration;
    /// Days and months of usage history to keep (0 and 0: none).
    fn history_window(&self, c: &CollectConfig) -> (u32, u32);
    /// Whether `id` is well formed (what `/probe` accepts).
    fn is_valid_id(&self, id: &str) -> bool;
    /// What an id is and its well-formed shape, in words (for the `/probe` error).
    fn id_form(&self) -> &'static str;
    /// Fetches one target's detail.
    fn fetch<'a>(
        &'a self,
        client: &'a Client,
        id: &'a str,
        cx: &'a FetchCx<'a>,
    ) -> BoxFuture<'a, Result<Arc<Fetched<Values>>, ApiError>>;
    /// Identifies the kind (the `TypeId` of its type).
    fn kind_id(&self) -> TypeId;
}

impl std::fmt::Debug for dyn TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether two registrations are the same kind.
pub(crate) fn same(a: &dyn TargetKind, b: &dyn TargetKind) -> bool {
    a.kind_id() == b.kind_id()
}
