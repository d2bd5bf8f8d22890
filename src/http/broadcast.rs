//! One exposition written once for every scrape that overlaps it (docs/collection.md,
//! "Concurrent scrapes"). A [`Broadcast`] is produced by one writer on a blocking thread, in
//! chunks, and read by any number of responses, each at its own pace: a chunk is one
//! reference-counted `Bytes` shared by all readers, and it is freed once every reader has
//! passed it. A response may join while the broadcast is young (the first chunks are kept for
//! it); later scrapes start the next one. The writer stays at most [`AHEAD`] chunks ahead of
//! the fastest reader, so a broadcast holds a few chunks, not the whole exposition, unless
//! its readers fall behind (then what they have not read yet, once for all of them); it stops
//! when every reader has gone.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

/// Chunks the writer may be ahead of the fastest reader.
pub(super) const AHEAD: usize = 4;
/// A broadcast accepts new readers until it has written this many chunks.
pub(super) const JOINABLE_CHUNKS: usize = 16;

struct State {
    /// `chunks[i]` is chunk number `base + i`.
    chunks: VecDeque<Bytes>,
    base: usize,
    written: usize,
    done: bool,
    /// Position of each reader (`None`: gone).
    readers: Vec<Option<usize>>,
}

impl State {
    fn joinable(&self) -> bool {
        !self.done && self.base == 0 && self.written < JOINABLE_CHUNKS
    }

    fn live_readers(&self) -> impl Iterator<Item = usize> + '_ {
        self.readers.iter().flatten().copied()
    }

    /// Frees the chunks every reader has passed, once nobody can join any more.
    fn trim(&mut self) {
        if self.joinable() && !self.done {
            return;
        }
        let low = self.live_readers().min().unwrap_or(self.written);
        while self.base < low && !self.chunks.is_empty() {
            self.chunks.pop_front();
            self.base += 1;
        }
    }
}

/// One exposition being written for its readers.
pub(super) struct Broadcast {
    state: Mutex<State>,
    /// Wakes the writer when a reader moves on or leaves.
    moved: Condvar,
    /// Wakes readers when a chunk is written or the end is reached.
    written: watch::Sender<usize>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broadcast {
    /// A new broadcast with no reader yet.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                base: 0,
                written: 0,
                done: false,
                readers: Vec::new(),
            }),
            moved: Condvar::new(),
            written: watch::channel(0).0,
        })
    }

    /// A new reader from the first chunk, if the broadcast still accepts one.
    pub(super) fn join(self: &Arc<Self>) -> Option<Reader> {
        let mut s = lock(&self.state);
        if !s.joinable() {
            return None;
        }
        s.readers.push(Some(0));
        let id = s.readers.len() - 1;
        Some(Reader {
            b: self.clone(),
            id,
            rx: self.written.subscribe(),
        })
    }

    /// Writes one chunk (blocking while the writer is [`AHEAD`] of every reader). Returns
    /// false when every reader has gone: the writer should stop.
    pub(super) fn write(&self, chunk: Vec<u8>) -> bool {
        if chunk.is_empty() {
            return true;
        }
        let mut s = lock(&self.state);
        loop {
            let fastest = s.live_readers().max();
            match fastest {
                None if !s.joinable() => return false,
                Some(f) if s.written >= f + AHEAD && !s.joinable() => {
                    s = self.moved.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                _ => break,
            }
        }
        s.chunks.push_back(Bytes::from(chunk));
        s.written += 1;
        s.trim();
        let n = s.written;
        drop(s);
        self.written.send_replace(n);
        true
    }

    /// Marks the end (after the last chunk, or when the writer gives up).
    pub(super) fn finish(&self) {
        let mut s = lock(&self.state);
        s.done = true;
        s.trim();
        let n = s.written;
        drop(s);
        self.written.send_replace(n);
    }
}

/// One response's view of a [`Broadcast`].
pub(super) struct Reader {
    b: Arc<Broadcast>,
    id: usize,
    rx: watch::Receiver<usize>,
}

impl Reader {
    /// The next chunk, or `None` at the end.
    pub(super) async fn next(&mut self) -> Option<Bytes> {
        loop {
            {
                let mut s = lock(&self.b.state);
                let pos = s.readers[self.id].unwrap_or(usize::MAX);
                if pos < s.written {
                    let chunk = s.chunks.get(pos - s.base).cloned();
                    s.readers[self.id] = Some(pos + 1);
                    s.trim();
                    drop(s);
                    self.b.moved.notify_all();
                    return chunk;
                }
                if s.done {
                    return None;
                }
                self.rx.mark_unchanged();
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The chunks as a stream.
    pub(super) fn into_stream(self) -> impl futures::Stream<Item = Bytes> + Send {
        futures::stream::unfold(self, |mut r| async move { r.next().await.map(|c| (c, r)) })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut s = lock(&self.b.state);
        s.readers[self.id] = None;
        s.trim();
        drop(s);
        self.b.moved.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn writer(b: Arc<Broadcast>, n: usize) -> std::thread::JoinHandle<usize> {
        writer_from(b, 0, n)
    }

    fn writer_from(b: Arc<Broadcast>, from: usize, n: usize) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut wrote = from;
            for i in from..n {
                if !b.write(vec![i as u8; 10]) {
                    break;
                }
                wrote += 1;
            }
            b.finish();
            wrote
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_reader_gets_every_chunk_once() {
        let b = Broadcast::new();
        let readers: Vec<Reader> = (0..3).map(|_| b.join().unwrap()).collect();
        let w = writer(b.clone(), 100);
        let mut got = Vec::new();
        for r in readers {
            got.push(tokio::spawn(async move {
                r.into_stream().map(|c| c[0]).collect::<Vec<u8>>().await
            }));
        }
        for g in got {
            let v = g.await.unwrap();
            assert_eq!(v, (0..100).map(|i| i as u8).collect::<Vec<_>>());
        }
        assert_eq!(w.join().unwrap(), 100);
        assert!(
            lock(&b.state).chunks.is_empty(),
            "chunks kept after every reader passed"
        );
        assert!(b.join().is_none(), "joined a finished broadcast");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_reader_joins_while_young_and_the_writer_waits_for_readers() {
        let b = Broadcast::new();
        let mut first = b.join().unwrap();
        assert!(b.write(vec![0; 10]) && b.write(vec![1; 10]));
        assert_eq!(first.next().await.map(|c| c[0]), Some(0));
        let mut late = b.join().expect("young broadcast accepts a reader");
        // the writer keeps the joinable prefix and then waits AHEAD chunks past the readers
        let w = writer_from(b.clone(), 2, 40);
        let mut a = vec![0u8];
        let mut c = Vec::new();
        loop {
            match (first.next().await, late.next().await) {
                (Some(x), Some(y)) => {
                    a.push(x[0]);
                    c.push(y[0]);
                }
                (Some(x), None) => a.push(x[0]),
                (None, Some(y)) => c.push(y[0]),
                (None, None) => break,
            }
            let s = lock(&b.state);
            assert!(
                s.chunks.len() <= JOINABLE_CHUNKS + AHEAD + 1,
                "{} chunks held",
                s.chunks.len()
            );
        }
        assert_eq!(a.len(), 40);
        assert_eq!(c.len(), 40);
        assert_eq!(w.join().unwrap(), 40);
    }

    #[tokio::test]
    async fn the_writer_stops_when_every_reader_left() {
        let b = Broadcast::new();
        let r = b.join().unwrap();
        let w = writer(b.clone(), 10_000);
        drop(r);
        let wrote = tokio::task::spawn_blocking(move || w.join().unwrap())
            .await
            .unwrap();
        assert!(wrote < 10_000, "the writer went on for nobody");
    }
}
