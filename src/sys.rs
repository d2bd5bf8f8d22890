//! Process-level helpers every layer uses: the wall clock as unix seconds, locking a mutex
//! without caring about poisoning, and the allocator tuning that keeps the resident size close
//! to the live data (docs/benchmarks.md).

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks a mutex, ignoring poisoning (a panicking fetch must not wedge the cache).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current time as unix seconds.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Hands memory freed by a large scrape back to the operating system (glibc keeps freed
/// pages of its per-thread arenas otherwise, and the resident size would track the largest
/// scrape ever made). Called after a scrape's exposition was written (off the request's
/// critical path, on the encoder's thread); a no-op off glibc.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas (one per thread by default, each keeping its own freed
/// memory). Two are enough for an exporter on a small machine and keep the resident size
/// close to the live data. Call before the runtime starts; a no-op off glibc.
pub(crate) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
