//! Locks that survive a panic: a thread that panicked while holding one
//! (a bug, or a panic the application's code raised inside a callback)
//! leaves data that every later caller still needs, as the kernel's
//! locks would; the guard is taken whatever the poison flag says.
//!
//! The engine's guards are counted per thread ([`held_here`]): a signal
//! handler that calls uaio while the thread it interrupted holds one of
//! uaio's locks would wait for that lock for ever (the kernel's system
//! calls are whole between handlers; uaio's calls are not), so the entry
//! points answer such a call without taking any lock. So is a call made
//! while the interrupted thread is anywhere inside a uaio call
//! ([`enter_call`]) but asleep ([`asleep`]): it may be inside `malloc`,
//! whose lock a second allocation would wait for, or whose heap it would
//! corrupt.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

thread_local! {
    /// The engine's locks this thread holds.
    static HELD: Cell<u32> = const { Cell::new(0) };
    /// Calls into uaio this thread is inside (one, or none while asleep).
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// An identity of the calling thread, never 0, unique among the
/// process's live threads (the address of a thread-local).
pub(crate) fn this_thread() -> usize {
    HELD.with(|h| h as *const Cell<u32> as usize)
}

/// Whether this thread holds one of the engine's locks, or is inside a
/// uaio call and not asleep: a call into uaio now comes from a signal
/// handler that interrupted it.
pub(crate) fn held_here() -> bool {
    HELD.try_with(Cell::get).unwrap_or(0) > 0 || CALLS.try_with(Cell::get).unwrap_or(0) > 0
}

/// A call of the application's into uaio, counted in [`held_here`] for
/// its length (see the module documentation), with the thread's
/// cancellation (`pthread_cancel`) held off: the kernel's AIO calls are no
/// cancellation points, but uaio's waits and closes go through the C
/// library's, and a cancel acted on there would leave a batch half
/// submitted, or unwind through uaio (which aborts the process). A
/// pending cancel is acted on at the program's next cancellation point,
/// as after the kernel's call.
#[derive(Debug)]
pub(crate) struct InCall(#[allow(dead_code)] crate::sys::NoCancel);

/// Starts a call into uaio: `None` when [`held_here`] (the call comes from
/// a handler, and must answer without allocating or locking).
pub(crate) fn enter_call() -> Option<InCall> {
    if held_here() {
        return None;
    }
    let hold = crate::sys::NoCancel::new();
    let _ = CALLS.try_with(|c| c.set(c.get() + 1));
    Some(InCall(hold))
}

impl Drop for InCall {
    fn drop(&mut self) {
        let _ = CALLS.try_with(|c| c.set(c.get().saturating_sub(1)));
        release_held_back();
    }
}

/// Runs `sleep`, a wait that holds no lock and allocates nothing, with
/// the thread's call not counted: a handler that interrupts the sleep
/// makes an ordinary call. Signals held back during the call are let
/// through first (see [`crate::sys::deferral`]); if there were any, the
/// sleep is skipped and `EINTR` returned, as a signal that came during a
/// system call's sleep would end it.
pub(crate) fn asleep<T>(sleep: impl FnOnce() -> Result<T, rustix::io::Errno>) -> Result<T, rustix::io::Errno> {
    uncounted(|| if release_held_back() { Err(rustix::io::Errno::INTR) } else { sleep() })
}

/// Runs `f`, which holds no lock and leaves nothing half done if a
/// handler jumps out of it, with the thread's call not counted (as
/// [`asleep`]): signals held back so far, and those `f` lets through, reach
/// their handlers now.
pub(crate) fn outside_call<R>(f: impl FnOnce() -> R) -> R {
    uncounted(|| {
        release_held_back();
        f()
    })
}

/// Runs `f` with the thread's call not counted in [`held_here`].
fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let saved = CALLS.try_with(|c| c.replace(0)).unwrap_or(0);
    let r = f();
    let _ = CALLS.try_with(|c| c.set(saved));
    r
}

/// Lets the signals this thread held back through if it is no longer
/// inside a call or holding a lock (see [`crate::sys::deferral`]); returns
/// whether any was.
fn release_held_back() -> bool {
    !held_here() && crate::sys::deferral::release()
}

fn count(up: bool) {
    // One thread's own counter; a handler that runs in between the read
    // and the write of the update leaves it as it found it.
    let _ = HELD.try_with(|h| h.set(if up { h.get() + 1 } else { h.get().saturating_sub(1) }));
    if !up {
        release_held_back();
    }
}

/// A held engine lock, counted in [`held_here`] from before it is asked
/// for until after it is let go (a handler that runs in between the count
/// and the lock, or the unlock and the count, only ever finds it counted).
#[derive(Debug)]
pub(crate) struct Counted<G> {
    /// `None` only while being dropped.
    guard: Option<G>,
}

impl<G> Counted<G> {
    /// Counts, then takes the lock with `take`.
    fn new(take: impl FnOnce() -> G) -> Counted<G> {
        count(true);
        Counted { guard: Some(take()) }
    }
}

impl<G> Drop for Counted<G> {
    fn drop(&mut self) {
        drop(self.guard.take());
        count(false);
    }
}

impl<G: Deref> Deref for Counted<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        self.guard.as_ref().expect("a live guard")
    }
}

impl<G: DerefMut> DerefMut for Counted<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        self.guard.as_mut().expect("a live guard")
    }
}

/// Locks `m`, poisoned or not (an engine lock, counted).
pub(crate) fn lock<T>(m: &Mutex<T>) -> Counted<MutexGuard<'_, T>> {
    Counted::new(|| lock_plain(m))
}

/// Locks `m`, poisoned or not, uncounted: the safe API's own locks, held
/// around its calls into the engine.
pub(crate) fn lock_plain<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, poisoned or not (counted).
pub(crate) fn read<T>(l: &RwLock<T>) -> Counted<RwLockReadGuard<'_, T>> {
    Counted::new(|| l.read().unwrap_or_else(|e| e.into_inner()))
}

/// Write-locks `l`, poisoned or not (counted).
pub(crate) fn write<T>(l: &RwLock<T>) -> Counted<RwLockWriteGuard<'_, T>> {
    Counted::new(|| l.write().unwrap_or_else(|e| e.into_inner()))
}
