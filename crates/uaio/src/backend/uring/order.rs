//! Buffered writes to one file land in submission order on io_uring too.
//!
//! Kernel AIO copies a buffered write into the page cache inside
//! `io_submit`, so writes to one file land in the order they were
//! submitted, whichever thread or context submitted them, and the last
//! one's bytes are what the file keeps. io_uring keeps no such order: a
//! write it can do without blocking runs at once, past an earlier one that
//! had to go to a worker (a partial page that must be read first), and each
//! submitting thread has workers of its own, so the writes of threads
//! taking turns run side by side. Files without non-blocking buffered
//! writes (tmpfs) send every write to those workers.
//!
//! So the process keeps at most one buffered write per file (its
//! [`FileKey`], whatever ring the writes go to) in the kernel. The others
//! wait here, in submission order, each with the ring it belongs to; when
//! the one in the kernel completes, whichever thread drains that completion
//! sends the next to its ring. A sync (`fsync`, `fdatasync`) or a direct
//! read or write of a file with buffered writes here takes its place
//! behind them, since kernel AIO's sees every write submitted before it
//! done, and the file's later writes wait for it; with none, it goes at
//! once (direct writes are not ordered among themselves, as on the kernel,
//! except those that append, which the engine makes members of the chain:
//! their position is the end of the file when they run). The writes of a
//! stream (a pipe, socket or character device), and its reads, under a
//! key of their own, take turns the same way (see
//! [`crate::backend::order_key`]): io_uring would give the bytes that
//! arrive to whichever read it tries first. The table is a short list: it
//! holds only files with a request of such a turn in io_uring at this
//! moment.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Held, Ring, Sqe};
use crate::backend::FileKey;
use crate::sys::process::Leaked;

/// A write waiting for the one before it: its entry and its ring.
pub(super) struct Waiting {
    /// The ring it goes to.
    pub ring: Arc<Ring>,
    /// Its submission queue entry (`user_data` is the request's key),
    /// naming what `held` is.
    pub sqe: Sqe,
    /// The request's file, held from `io_submit` until the request
    /// completes (see `fixed`): the write goes to the file the descriptor
    /// named then, as the kernel's did, even if the program closes the
    /// number and opens another file on it before the write's turn.
    pub held: Held,
    /// Device and inode of the file (see `owners`).
    pub file: (u64, u64),
    /// Prepared without `O_DIRECT` (see `Owners::direct_since`).
    pub buffered: bool,
    /// The program's descriptor number it was submitted on.
    pub number: i32,
}

// SAFETY: the entry's only pointer is the address of the application's
// buffer, which uaio hands to the kernel and never dereferences; the ring
// is `Send` and `Sync` itself.
unsafe impl Send for Waiting {}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("key", &self.sqe.user_data.u64_()).finish_non_exhaustive()
    }
}

/// The buffered writes of one file that were handed to io_uring and have
/// not completed: the one in the kernel, then the waiting ones.
#[derive(Debug)]
struct Chain {
    file: FileKey,
    /// The ring (its address) and key of the write in the kernel.
    head: (usize, u64),
    waiting: VecDeque<Waiting>,
}

/// Every chain of the process.
#[derive(Debug, Default)]
struct Table {
    chains: Vec<Chain>,
}

/// The process's table; a `fork` child starts a new one (the parent's
/// threads may have held the lock, and its rings are not the child's).
static TABLE: Leaked<Mutex<Table>> = Leaked::new();

/// Chains in the table, read without its lock: a sync or a direct transfer
/// with none to follow goes without taking it.
static NCHAINS: AtomicUsize = AtomicUsize::new(0);

fn table() -> crate::sync::Counted<MutexGuard<'static, Table>> {
    crate::sync::lock(TABLE.get_or_init(Mutex::default))
}

/// Called in a fork child.
pub(crate) fn after_fork_in_child() {
    TABLE.replace(Mutex::default());
    NCHAINS.store(0, Ordering::SeqCst);
}

/// The address that names `ring` in the table.
fn id(ring: &Ring) -> usize {
    ring as *const Ring as usize
}

/// Whether the write `sqe` to `file`, for `ring`, goes to the kernel now
/// (`true`: it is the file's only one, and its completion must be reported
/// with [`finished`]) or was kept to follow the file's earlier writes. A
/// sync or a direct transfer (`after`) follows them too, and the file's
/// later writes follow it; with none before it, it goes at once and orders
/// nothing.
///
/// A request whose file cannot be held (neither a descriptor number above
/// uaio's floor nor a slot of registered files is left, see `fixed`) is
/// not kept, since by its turn the number may name another file: when the
/// file's only write in flight is in the same ring,
/// it goes at once with `IOSQE_IO_DRAIN` ([`Admit::Drained`]), which
/// starts it once everything before it in the ring is done (and nothing
/// after it before it is done); otherwise at once, unordered.
pub(super) fn admit(
    ring: &Arc<Ring>,
    file: FileKey,
    sqe: &Sqe,
    after: bool,
    ident: (u64, u64),
    buffered: bool,
) -> Admit {
    if after && NCHAINS.load(Ordering::SeqCst) == 0 {
        return Admit::Now;
    }
    let mut t = table();
    if let Some(c) = t.chains.iter_mut().find(|c| c.file == file) {
        // The request's descriptor, open now (the engine looked it up in
        // this io_submit); if the program closed it meanwhile, holding its
        // file fails.
        let (mut sqe, number) = (*sqe, sqe.fd);
        let Some(held) = ring.hold(&mut sqe) else {
            return if c.head.0 == id(ring) && c.waiting.is_empty() { Admit::Drained } else { Admit::Now };
        };
        c.waiting.push_back(Waiting { ring: ring.clone(), sqe, held, file: ident, number, buffered });
        return Admit::Kept;
    }
    if after {
        return Admit::Now;
    }
    t.chains.push(Chain { file, head: (id(ring), sqe.user_data.u64_()), waiting: VecDeque::new() });
    NCHAINS.store(t.chains.len(), Ordering::SeqCst);
    ring.heads.fetch_add(1, Ordering::SeqCst);
    Admit::Now
}

/// What [`admit`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// It goes to the kernel now (if it is a write, its completion must be
    /// reported with [`finished`]).
    Now,
    /// It goes to the kernel now, with `IOSQE_IO_DRAIN`.
    Drained,
    /// It was kept, to follow the file's earlier writes.
    Kept,
}

/// The request `key` of `ring` completed (or never reached the kernel):
/// if it was a file's write in the kernel, the file's next write, which
/// the caller must send ([`send`]) and which takes its place.
#[inline]
pub(super) fn finished(ring: &Ring, key: u64) -> Option<Waiting> {
    if ring.heads.load(Ordering::SeqCst) == 0 {
        return None;
    }
    next_of(ring, key)
}

/// [`finished`] when the ring has a file's write in the kernel.
fn next_of(ring: &Ring, key: u64) -> Option<Waiting> {
    let mut t = table();
    let i = t.chains.iter().position(|c| c.head == (id(ring), key))?;
    ring.heads.fetch_sub(1, Ordering::SeqCst);
    let c = &mut t.chains[i];
    match c.waiting.pop_front() {
        Some(next) => {
            c.head = (id(&next.ring), next.sqe.user_data.u64_());
            next.ring.heads.fetch_add(1, Ordering::SeqCst);
            Some(next)
        }
        None => {
            t.chains.swap_remove(i);
            NCHAINS.store(t.chains.len(), Ordering::SeqCst);
            None
        }
    }
}

/// Sends a write whose turn came to its ring; one that cannot be
/// submitted completes with the error, and the next write takes its turn.
/// `from` is the ring whose completion made the turn come (`None` when
/// none did). A write sent to another ring comes with a wake-up of its
/// waiter, which may be asleep waiting for more completions than that
/// ring will now produce first: the write's completion must be drained
/// at once, since the file's next write waits for it.
pub(super) fn send(mut next: Option<Waiting>, from: Option<&Ring>) {
    while let Some(w) = next.take() {
        let key = w.sqe.user_data.u64_();
        let own = from.is_some_and(|f| id(f) == id(&w.ring));
        let sqes = [w.sqe, super::wake_sqe()];
        if !own {
            w.ring.wakes_pushed.fetch_add(1, Ordering::SeqCst);
        }
        let me = super::owners::me();
        me.pushes_to(&w.ring);
        crate::sync::lock(&w.ring.owners).record(&me, &w.sqe, w.file, w.number, w.buffered);
        let pushed = w.ring.push(&sqes[..if own { 1 } else { 2 }]);
        if pushed.is_err() && !own {
            // The wake, last, was not taken.
            w.ring.wakes_pushed.fetch_sub(1, Ordering::SeqCst);
        }
        match pushed {
            // The write was taken (and perhaps not the wake after it).
            Ok(()) | Err((1.., _)) => {
                w.ring.entered(1);
                w.ring.keep_until_done(key, w.held);
            }
            Err((_, e)) => {
                crate::sync::lock(&w.ring.owners).forget(key);
                w.ring.complete_here(key, -e.raw_os_error());
                next = finished(&w.ring, key);
            }
        }
    }
}

/// Takes the waiting write `key` of `ring` out of its chain (a cancel, a
/// failed submission): it never reaches the kernel, so it is no longer
/// watched as a stream's write either; `false` when no write of that ring
/// with that key waits.
pub(super) fn withdraw(ring: &Ring, key: u64) -> bool {
    // Let go of after the table's lock: what held its file may take locks
    // of its ring.
    let found = {
        let mut t = table();
        t.chains.iter_mut().find_map(|c| {
            let at = c.waiting.iter().position(|w| id(&w.ring) == id(ring) && w.sqe.user_data.u64_() == key);
            at.and_then(|i| c.waiting.remove(i))
        })
    };
    if found.is_some() {
        ring.streams.forget(key);
    }
    found.is_some()
}

/// A submission of `ring` failed part way: of its ordered requests
/// (`(key, pushed)`), each still waiting leaves its chain and is no longer
/// watched as a stream's write (it is reported failed: none runs after
/// that); each that took its file's place but was not pushed (`!pushed`)
/// passes the place on. Those in the kernel run and complete as usual.
/// Returns the keys of those withdrawn.
pub(super) fn abandon(ring: &Ring, writes: impl Iterator<Item = (u64, bool)>) -> Vec<u64> {
    let mut withdrawn = Vec::new();
    for (key, pushed) in writes {
        if withdraw(ring, key) {
            withdrawn.push(key);
        } else if !pushed {
            send(finished(ring, key), None);
        }
    }
    withdrawn
}

/// `ring` goes away: writes it still had in the kernel's place pass it on
/// (none should: a context waits for its writes before it is destroyed).
pub(super) fn forget(ring: &Ring) {
    while ring.heads.load(Ordering::SeqCst) > 0 {
        let key = {
            let t = table();
            match t.chains.iter().find(|c| c.head.0 == id(ring)) {
                Some(c) => c.head.1,
                None => return,
            }
        };
        send(finished(ring, key), None);
    }
}
