//! Committed changes on their way into a lexical index's postings: the [`ChangeQueue`] the
//! writing thread appends to, and the one process-wide applier thread that empties the queues.
//!
//! The thread that applies committed batches (the store's commit observer: the one serial
//! stage of every write) only appends a change here; the postings are written on the applier
//! thread, beside it (docs/index.md "Lexical index", docs/benchmarks.md issue 38: appending to
//! the postings was more than half of that thread's time on a texts-only ingest).
//!
//! Invariants: changes enter the postings in the order they were queued (they are taken out
//! only under the index's write lock, so two appliers never reorder them); a read of the index
//! first applies what is queued ([`Shared::settled`]), so it sees every change queued before it
//! began, as if the change had been applied on the writing thread; the queues of the process
//! hold about [`QUEUED_AT_MOST`] changes at most, whatever the number of tenants (past it, a
//! writing thread applies its index's queue itself, so a slow applier slows writes down as the
//! postings did, and memory stays bounded).
//! Must never: block the writing thread on the applier, or apply a change twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use super::{Inner, ResolvedDoc, Shared};

/// Most changes queued in the process, over every index: past it, a writing thread applies its
/// index's queue itself. About 2 KB each for a 400-byte text of ~60 words by the layout of its
/// terms, their frequencies and ids (not measured): ~16 MB.
const QUEUED_AT_MOST: usize = 8192;

/// Most changes the applier applies under one hold of an index's write lock, so that a read
/// waits behind at most that many of its changes (the read then applies what is still queued
/// itself, as it must see it all).
const APPLIED_AT_ONCE: usize = 256;

/// Changes queued in the process, not taken out yet.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// One committed change of an entity's document.
#[derive(Debug)]
pub(super) enum Change {
    /// Index this document (resolved in this index, or not at all) as the entity's.
    Upsert(Arc<str>, ResolvedDoc),
    /// Remove the entity's document.
    Remove(Box<str>),
}

/// The changes of one index not applied yet.
#[derive(Debug, Default)]
pub(super) struct ChangeQueue {
    changes: VecDeque<Change>,
    /// The applier was handed this index and has not found its queue empty since.
    scheduled: bool,
}

impl ChangeQueue {
    /// True when no change waits.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl Shared {
    /// Queues `change`; the applier thread applies it (or this thread, when the process's
    /// queues are full or there is no applier).
    pub(super) fn enqueue(self: &Arc<Self>, change: Change) {
        let mut queue = self.queue.lock();
        queue.changes.push_back(change);
        if QUEUED.fetch_add(1, Ordering::Relaxed) + 1 >= QUEUED_AT_MOST {
            drop(queue);
            self.apply_queued(&mut self.inner.write(), usize::MAX);
            return;
        }
        if queue.scheduled {
            return;
        }
        queue.scheduled = true;
        drop(queue);
        if !hand_to_applier(self.clone()) {
            self.queue.lock().scheduled = false;
            self.apply_queued(&mut self.inner.write(), usize::MAX);
        }
    }

    /// The index with every queued change applied (read-locked).
    pub(super) fn settled(&self) -> RwLockReadGuard<'_, Inner> {
        if self.queue.lock().changes.is_empty() {
            // Changes are taken out only under the write lock: any taken before this read
            // are applied once it is granted.
            return self.inner.read();
        }
        let mut inner = self.inner.write();
        self.apply_queued(&mut inner, usize::MAX);
        RwLockWriteGuard::downgrade(inner)
    }

    /// Applies the first `at_most` queued changes, in order, to `inner` (this index's,
    /// write-locked).
    fn apply_queued(&self, inner: &mut Inner, at_most: usize) {
        let changes = take_queued(&mut self.queue.lock(), at_most);
        for change in changes {
            inner.apply(change, &self.dictionary);
        }
    }

    /// The applier's work on this index: applies queued changes, [`APPLIED_AT_ONCE`] at a
    /// time, until the queue is empty, then lets the next change hand the index over again.
    fn drain(&self) {
        loop {
            let mut inner = self.inner.write();
            {
                let mut queue = self.queue.lock();
                if queue.changes.is_empty() {
                    queue.scheduled = false;
                    return;
                }
            }
            // Only enqueues run meanwhile: changes are taken out under the write lock held.
            self.apply_queued(&mut inner, APPLIED_AT_ONCE);
        }
    }
}

/// Takes the first `at_most` changes out of `queue` (locked, under its index's write lock).
fn take_queued(queue: &mut ChangeQueue, at_most: usize) -> Vec<Change> {
    let taken = at_most.min(queue.changes.len());
    QUEUED.fetch_sub(taken, Ordering::Relaxed);
    queue.changes.drain(..taken).collect()
}

/// The applier thread's inbox (`None`: it could not be started).
static APPLIER: OnceLock<Option<Sender<Arc<Shared>>>> = OnceLock::new();

/// Hands `shared` to the applier thread, started on first use; false when there is none.
fn hand_to_applier(shared: Arc<Shared>) -> bool {
    let applier = APPLIER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Arc<Shared>>();
        let started = std::thread::Builder::new()
            .name("lexical-applier".to_owned())
            .spawn(move || {
                for shared in receiver {
                    shared.drain();
                }
            });
        match started {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "cannot start the lexical applier thread: committed texts are indexed on the writing thread");
                None
            }
        }
    });
    applier
        .as_ref()
        .is_some_and(|sender| sender.send(shared).is_ok())
}
