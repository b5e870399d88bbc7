//! Which contexts' waits each thread is counted in, and which of those
//! waits a handler of the program's has taken its thread away from:
//! `io_destroy` waits for a context's waiters to leave, but not for those
//! that cannot leave before it returns. Those are the waits of its own
//! thread that a handler jumped out of (`siglongjmp`) or that the handler
//! running the destroy interrupted, and the waits of any thread running a
//! handler now, which the kernel's `io_getevents` would have left before
//! the handler ran (they answer `EINTR` when the handler returns; those a
//! handler jumped out of never end). Contexts are named by their serial.
//!
//! The record of waits away is written by the drop-in's signal trampoline
//! ([`handler_begins`], [`handler_ends`]): atomics and constant
//! thread-locals only, safe in a signal handler.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most contexts whose waits one thread is counted in at a time (see
/// [`held_here`]). One more takes the place of the oldest context's
/// record (the lowest serial), whose destroy by this thread then waits for
/// the count's bound, as for another thread's. A destroy by this thread
/// frees its context's place ([`forget_held`]).
const HELD_SLOTS: usize = 32;

thread_local! {
    /// The registrations in contexts' counts of waiters this thread holds:
    /// by context serial, how many (0: a free slot).
    static HELD: [Cell<(u64, u32)>; HELD_SLOTS] = const { [const { Cell::new((0, 0)) }; HELD_SLOTS] };
}

/// Records a registration of this thread's in the waiters of the context
/// `serial` (`add`), or its end. Made after the count rises and before it
/// falls, so that a handler interrupting in between sees fewer than the
/// thread holds, never more: the destroy it runs may then wait for the
/// bound, but never goes on while another thread's waiter is inside.
pub(crate) fn hold(serial: u64, add: bool) {
    let _ = HELD.try_with(|h| {
        let mine = h.iter().find(|e| e.get().0 == serial && e.get().1 > 0);
        match (add, mine) {
            (true, Some(e)) => e.set((serial, e.get().1 + 1)),
            (true, None) => {
                let free = h.iter().find(|e| e.get().1 == 0);
                if let Some(e) = free.or_else(|| h.iter().min_by_key(|e| e.get().0)) {
                    e.set((serial, 1));
                }
            }
            (false, Some(e)) => e.set((serial, e.get().1 - 1)),
            (false, None) => {}
        }
    });
}

/// How many registrations in the waiters of the context `serial` this
/// thread holds: a wait that a handler of its jumped out of (`siglongjmp`)
/// never ends, and one that a handler running now interrupted ends only
/// once the handler returns. Destroy does not wait for those.
pub(crate) fn held_here(serial: u64) -> u32 {
    HELD.try_with(|h| count_of(h, serial)).unwrap_or(0)
}

/// The context `serial` is destroyed: this thread's record of its waits
/// goes (a wait a handler interrupted, still to return, finds none), and
/// every thread's marks of waits away from it.
pub(crate) fn forget_held(serial: u64) {
    let clear = |c: &[Cell<(u64, u32)>]| c.iter().filter(|e| e.get().0 == serial).for_each(|e| e.set((0, 0)));
    let _ = HELD.try_with(|h| clear(h));
    let _ = MARKED.try_with(|m| clear(m));
    for a in &AWAY {
        let mut v = a.load(Ordering::SeqCst);
        while v != 0 && v >> COUNT_BITS == serial {
            match a.compare_exchange(v, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
    }
}

/// How many registrations in the waiters of the context `serial` its
/// destroy by this thread does not wait for: this thread's own
/// ([`held_here`]) and those of other threads running a handler.
pub(crate) fn not_to_wait_for(serial: u64) -> u32 {
    let marked_here = MARKED.try_with(|m| count_of(m, serial)).unwrap_or(0);
    held_here(serial) + away(serial).saturating_sub(marked_here)
}

fn count_of(c: &[Cell<(u64, u32)>], serial: u64) -> u32 {
    c.iter().map(Cell::get).filter(|e| e.0 == serial).map(|e| e.1).sum()
}

/// Places in the process's record of waits away.
const AWAY_SLOTS: usize = 64;
/// The low bits of an [`AWAY`] entry count; the serial is above them.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Registrations in contexts' waiters whose threads run a handler of the
/// program's (or jumped out of the wait): `serial << COUNT_BITS | count`,
/// 0 for a free place. Serial and count in one word, so that an entry
/// freed and taken by another context is never changed for the first.
static AWAY: [AtomicU64; AWAY_SLOTS] = [const { AtomicU64::new(0) }; AWAY_SLOTS];

/// Most contexts one thread marks away at once.
const MARKED_SLOTS: usize = 8;

thread_local! {
    /// This thread's part of [`AWAY`]: by context serial, how many.
    static MARKED: [Cell<(u64, u32)>; MARKED_SLOTS] = const { [const { Cell::new((0, 0)) }; MARKED_SLOTS] };
}

/// How many registrations in the waiters of the context `serial` are away
/// (all threads).
fn away(serial: u64) -> u32 {
    AWAY.iter()
        .map(|a| a.load(Ordering::SeqCst))
        .filter(|&v| v != 0 && v >> COUNT_BITS == serial)
        .map(|v| (v & COUNT_MASK) as u32)
        .sum()
}

/// Adds `n` to the registrations away from the context `serial`; false
/// when the record has no room (the destroy then waits for the bound).
fn away_add(serial: u64, n: u32) -> bool {
    if serial == 0 || serial >> (64 - COUNT_BITS) != 0 || u64::from(n) > COUNT_MASK / 2 {
        return false;
    }
    for a in &AWAY {
        let mut v = a.load(Ordering::SeqCst);
        while v != 0 && v >> COUNT_BITS == serial && (v & COUNT_MASK) + u64::from(n) <= COUNT_MASK {
            match a.compare_exchange(v, v + u64::from(n), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
    }
    let entry = serial << COUNT_BITS | u64::from(n);
    AWAY.iter().any(|a| a.compare_exchange(0, entry, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

/// Takes `n` from the registrations away from the context `serial` (those
/// no longer recorded, the context destroyed meanwhile, are passed over).
fn away_sub(serial: u64, n: u32) {
    let mut left = u64::from(n);
    for a in &AWAY {
        let mut v = a.load(Ordering::SeqCst);
        while left > 0 && v != 0 && v >> COUNT_BITS == serial {
            let take = left.min(v & COUNT_MASK);
            let next = if take == v & COUNT_MASK { 0 } else { v - take };
            match a.compare_exchange(v, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    left -= take;
                    break;
                }
                Err(now) => v = now,
            }
        }
    }
}

/// Most contexts one handler's marks name.
const MARKS: usize = 4;

/// What [`handler_begins`] marked away: (context serial, how many).
#[derive(Debug, Default)]
pub(crate) struct Marks([(u64, u32); MARKS]);

/// A reading of how far a backend's own queue of completions has come
/// (see `Backend::completion_mark`); safe in a signal handler.
pub(crate) type Mark = Box<dyn Fn() -> u32 + Send + Sync>;

/// What a context counts for [`sleeping_on`].
#[derive(Default)]
pub(crate) struct Counts {
    /// Events written into the ring so far.
    pub published: AtomicU64,
    /// Requests entered for the backend so far.
    pub entered: AtomicU64,
    /// The backend's mark, if it keeps completions in a queue of its own.
    pub mark: std::sync::OnceLock<Mark>,
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counts").field("published", &self.published).field("entered", &self.entered).finish()
    }
}

/// [`Counts`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// [`Counts::published`].
    pub published: u64,
    /// [`Counts::entered`].
    pub entered: u64,
    /// The backend's mark then ([`Counts::mark`]).
    pub backend: Option<u32>,
}

impl Counts {
    fn now(&self) -> Snapshot {
        Snapshot {
            published: self.published.load(Ordering::SeqCst),
            entered: self.entered.load(Ordering::SeqCst),
            backend: self.mark.get().map(|m| m()),
        }
    }

    /// Events published and requests entered since `then`.
    pub(crate) fn since(&self, then: Snapshot) -> (u64, u64) {
        let now = self.now();
        (now.published - then.published, now.entered - then.entered)
    }
}

thread_local! {
    /// [`SLEEPING`] was set on this thread once (so that the trampoline
    /// never is the first to touch it, which may allocate).
    static SLEPT: Cell<bool> = const { Cell::new(false) };
    /// The counts of the context whose wait this thread sleeps in now
    /// ([`sleeping_on`]).
    static SLEEPING: Cell<Option<Arc<Counts>>> = const { Cell::new(None) };
    /// Those counts when a handler of the program's first began in the
    /// sleep.
    static STAMP: Cell<Option<Snapshot>> = const { Cell::new(None) };
}

/// What [`sleeping_on`] put aside: the record of an outer sleep (a wait
/// that a handler interrupted, in which this one runs).
#[derive(Debug)]
pub(crate) struct Sleep(Option<Arc<Counts>>, Option<Snapshot>);

/// This thread goes to sleep in a wait on a context that counts `counts`:
/// a handler of the program's that begins in the sleep notes them
/// ([`woke`] tells them). The kernel runs handlers after the call
/// returned, so the events published since then, and the completions of
/// requests submitted since, are not the interrupted call's.
pub(crate) fn sleeping_on(counts: &Arc<Counts>) -> Option<Sleep> {
    if !super::deferral::any_routed() {
        // No handler of the program's runs through the trampoline.
        return None;
    }
    let _ = SLEPT.try_with(|s| s.set(true));
    let outer = SLEEPING.try_with(|s| s.replace(Some(counts.clone()))).ok().flatten();
    Some(Sleep(outer, STAMP.try_with(|s| s.replace(None)).ok().flatten()))
}

/// The sleep [`sleeping_on`] began is over: the counts when a handler
/// first began in it, if one did.
pub(crate) fn woke(outer: Option<Sleep>) -> Option<Snapshot> {
    let outer = outer?;
    let _ = SLEEPING.try_with(|s| s.set(outer.0));
    STAMP.try_with(|s| s.replace(outer.1)).ok().flatten()
}

/// Notes the counts of the context whose wait this thread sleeps in (see
/// [`sleeping_on`]), unless noted already for this sleep.
fn stamp() {
    if !SLEPT.try_with(Cell::get).unwrap_or(false) || STAMP.try_with(Cell::get).ok().flatten().is_some() {
        return;
    }
    // Taken out and put back: no reference count moves, nothing is freed.
    let Ok(Some(counts)) = SLEEPING.try_with(Cell::take) else { return };
    let _ = STAMP.try_with(|s| s.set(Some(counts.now())));
    let _ = SLEEPING.try_with(|s| s.set(Some(counts)));
}

/// A handler of the program's starts on this thread: its registrations in
/// waits not yet marked away are, until [`handler_ends`] (for ever if the
/// handler jumps out), and the wait it interrupted notes its context's
/// counts (see [`sleeping_on`]). Called by the signal trampoline.
pub(crate) fn handler_begins() -> Marks {
    stamp();
    let mut marks = Marks::default();
    let _ = HELD.try_with(|h| {
        let _ = MARKED.try_with(|m| {
            let mut n = 0;
            for (serial, held) in h.iter().map(Cell::get).filter(|e| e.1 > 0) {
                if n == MARKS {
                    break;
                }
                let slot = m.iter().find(|e| e.get().0 == serial && e.get().1 > 0);
                let marked = slot.map_or(0, |e| e.get().1);
                let Some(slot) = slot.or_else(|| m.iter().find(|e| e.get().1 == 0)) else { continue };
                if held <= marked || !away_add(serial, held - marked) {
                    continue;
                }
                slot.set((serial, held));
                marks.0[n] = (serial, held - marked);
                n += 1;
            }
        });
    });
    marks
}

/// The handler [`handler_begins`] began for returned: the waits it marked
/// away are back.
pub(crate) fn handler_ends(marks: Marks) {
    for (serial, n) in marks.0.into_iter().filter(|e| e.1 > 0) {
        away_sub(serial, n);
        let _ = MARKED.try_with(|m| {
            if let Some(e) = m.iter().find(|e| e.get().0 == serial && e.get().1 > 0) {
                let left = e.get().1.saturating_sub(n);
                e.set(if left == 0 { (0, 0) } else { (serial, left) });
            }
        });
    }
}
