//! The kernel's `struct kioctx`: one AIO context, its life cycle (setup,
//! cancellation, `io_destroy`, the wait at process exit) and the state the
//! other parts share. The parts follow the kernel's own lines:
//!
//! - `submit`: `io_submit`: each iocb checked in the kernel's order (the
//!   checks that need no context are in `validate`), event slots reserved,
//!   and the requests that complete without waiting done inline;
//! - `events`: events published to the ring, the backend's completions
//!   harvested into it, and events copied out to the caller;
//! - `wait`: `io_getevents`: one waiter (the leader) sleeps inside the
//!   backend, the others (followers) on a futex.
//!
//! Locking: `st` (the completion lock) guards the request table, the ring's
//! producer side and the accounting; the backend has its own submission
//! lock. Slots are reserved lock-free (`used`), and reclaimed under `st` from
//! the reader's `head`, as the kernel does.
//!
//! Waiting: one waiter at a time (the leader) sleeps inside the backend and
//! harvests what arrives; the others (followers) sleep on the futex `seq`,
//! which every publication of events bumps. When the leader leaves, followers
//! are woken so one of them takes over.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use slab::Slab;
use uaio_abi::*;

use crate::backend::Backend;
use crate::ring::{Geometry, Ring};
use crate::stats::{self, CtxStats};
use crate::sys;
use crate::sys::internal_fds::InternalFd;

mod events;
mod rw;
mod submit;
mod validate;
mod wait;

pub(crate) use submit::{FdCache, Prepared};
pub(crate) use wait::Deadline;

/// The eventfd of a request's `IOCB_FLAG_RESFD`, held for the request's
/// life as the kernel holds a reference to it: a duplicate of uaio's, so
/// that the program closing its number (and the number going to another
/// file) never sends the completion's 8 bytes elsewhere.
#[derive(Debug, Clone, Default)]
pub(crate) enum Resfd {
    /// No `IOCB_FLAG_RESFD`.
    #[default]
    None,
    /// uaio's duplicate.
    Held(Arc<InternalFd>),
    /// By number only: no descriptor number was left for a duplicate.
    Number(i32),
}

impl Resfd {
    fn raw(&self) -> Option<i32> {
        match self {
            Resfd::None => None,
            Resfd::Held(h) => Some(h.as_raw_fd()),
            Resfd::Number(n) => Some(*n),
        }
    }
}

/// A pending request.
#[derive(Debug)]
struct Req {
    /// The key the backend knows it by (see [`crate::backend::BackendOp::key`]).
    key: u64,
    /// Cancelled by `io_destroy`: a POLL, or a read or write of a stream,
    /// which may wait forever. Reads, writes and syncs of regular files and
    /// block devices always finish, and destroy waits for them as the
    /// kernel does.
    forever: bool,
    data: u64,
    obj: u64,
    poll: bool,
    /// Poll: the events the application asked for, plus ERR and HUP.
    wanted: u32,
    /// Submitted by the `start` call still running, which has not yet
    /// handed it to the backend, or is doing so: a cancel is then held
    /// back until it has (the backend may not know the request yet), and a
    /// POLL's completion comes from the initial readiness check, not from
    /// a wake-up.
    fresh: bool,
    /// Cancelled while `fresh`, by the thread handing it over: the
    /// hand-over sends the cancel to the backend when it ends.
    cancel_held: bool,
    resfd: Resfd,
    cancelled: bool,
    /// A buffered write to a regular file: its number among the process's
    /// buffered writes in a backend (`writeback::backend_write_started`)
    /// until it completes; 0 for other requests.
    write_id: u64,
    /// A read of a stream: counted among those in a backend until the
    /// request is gone (see [`rw::StreamRead`]).
    _stream_read: Option<rw::StreamRead>,
    /// A synchronous buffered write copied during submission, whose sync
    /// the backend runs: the bytes written, its result when the sync
    /// succeeds. It is not cancelled (the kernel's write is done when
    /// `io_submit` returns); 0 for other requests.
    written: i64,
    /// A read that moved part of its bytes during submission: not
    /// cancelled (its buffer is not as it was).
    started: bool,
    /// The iovec array the backend reads (vectored requests).
    _iov: Option<Box<[iovec]>>,
    /// The copy of a buffered write's bytes the backend writes from.
    _bounce: Option<Box<[u8]>>,
    /// `aio_lio_opcode`, and when it went to the backend (for `stats`).
    opcode: u16,
    start_ns: u64,
}

#[derive(Debug)]
struct State {
    /// uaio's own tail (the page's copy is only ever written).
    tail: u32,
    /// Events written to the ring whose slots are not reclaimed yet.
    unreclaimed: u32,
    /// Requests handed to the backend and not yet harvested.
    in_flight: u32,
    reqs: Slab<Req>,
    /// Generation of the next request key (never all ones).
    gen: u32,
    /// What the context did, when `UAIO_STATS` asks (see `stats`).
    stats: Option<Box<CtxStats>>,
}

/// An AIO context.
#[derive(Debug)]
pub(crate) struct Kioctx {
    ring: Ring,
    /// Index in the process table, as written in the ring header.
    id: u32,
    /// `io_setup`'s `nr_events`, counted against `aio-max-nr`.
    pub(crate) max_reqs: u32,
    capacity: u32,
    dead: AtomicBool,
    /// `io_submit` calls between their lookup and the end of `start`: the
    /// kernel's submitters hold a reference to the context, and destroy
    /// cancels only once every one has let go.
    submitters: AtomicU32,
    /// Threads inside `io_getevents` on this context (a thread whose
    /// handler jumped out of one stays counted; see [`sys::waiting::held_here`]).
    getters: AtomicU32,
    /// Unique in the process's life (ids are used again).
    serial: u64,
    /// uaio's duplicates of the RESFD eventfds seen last, by the program's
    /// number (a few; each also held by the requests that use it).
    resfds: Mutex<Vec<(i32, Arc<InternalFd>)>>,
    used: AtomicU32,
    st: Mutex<State>,
    backend: Box<dyn Backend>,
    seq: AtomicU32,
    /// Events written into the ring and requests entered for the backend
    /// so far (both under the completion lock); read by the signal
    /// trampoline when a handler begins in a wait (see
    /// `sys::waiting::sleeping_on`).
    counts: Arc<sys::waiting::Counts>,
    /// Completions the waiter sleeping in the backend (the leader) waits
    /// for; 0 when no thread leads.
    leader: AtomicU32,
    /// The thread that leads ([`crate::sync::this_thread`]), 0 when none.
    leader_thread: AtomicUsize,
    followers: AtomicU32,
    /// A harvest is moving completions from the backend to the ring.
    harvesting: AtomicBool,
    active: AtomicU32,
    /// Harvests that consumed something, so far.
    harvests: AtomicU64,
    /// The progress thread's last look at a context whose completions
    /// waited for a caller inside it: [`Kioctx::harvests`] then, and when
    /// (see [`Kioctx::callers_stalled`]).
    stall_mark: Mutex<Option<(u64, Instant)>>,
}

/// How long completions may wait in the backend, no harvest happening, while
/// callers are counted inside a context, before the progress thread
/// harvests them itself: a caller whose signal handler jumped out of its
/// wait (`siglongjmp`) stays counted, and no one else would.
const CALLERS_STALL: Duration = Duration::from_millis(50);

/// How many times `io_cancel` looks again at a request whose `io_submit`
/// is still handing it to the backend before it cancels it anyway: 100
/// yields, then sleeps of 50 µs (a hand-over takes microseconds; one that
/// a signal handler left with `siglongjmp` never ends).
const FRESH_WAITS: u32 = 1100;

impl Kioctx {
    /// Creates a context for `nr_events` with a ring of geometry `geo`.
    pub(crate) fn new(nr_events: u32, geo: Geometry, id: u32, backend: Box<dyn Backend>) -> Result<Kioctx, Errno> {
        let counts = Arc::new(sys::waiting::Counts::default());
        if let Some(m) = backend.completion_mark() {
            let _ = counts.mark.set(m);
        }
        Ok(Kioctx {
            ring: Ring::new(geo, id)?,
            id,
            max_reqs: nr_events,
            capacity: geo.capacity,
            dead: AtomicBool::new(false),
            submitters: AtomicU32::new(0),
            getters: AtomicU32::new(0),
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
            resfds: Mutex::new(Vec::new()),
            used: AtomicU32::new(0),
            st: Mutex::new(State {
                tail: 0,
                unreclaimed: 0,
                in_flight: 0,
                reqs: Slab::with_capacity(geo.capacity.min(4096) as usize),
                gen: 0,
                stats: stats::on().then(|| CtxStats::new(id, nr_events, backend.name())),
            }),
            backend,
            seq: AtomicU32::new(0),
            counts,
            leader: AtomicU32::new(0),
            leader_thread: AtomicUsize::new(0),
            followers: AtomicU32::new(0),
            harvesting: AtomicBool::new(false),
            active: AtomicU32::new(0),
            harvests: AtomicU64::new(0),
            stall_mark: Mutex::new(None),
        })
    }

    /// Index in the process table (the ring header's `id`).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The handle (ring address).
    pub(crate) fn handle(&self) -> u64 {
        self.ring.addr()
    }

    /// Makes `addr` the handle if the ring was moved there (see
    /// [`Ring::adopt`], which needs the completion lock).
    pub(crate) fn adopt_handle(&self, addr: u64) -> bool {
        let st = self.lock();
        self.ring.adopt(addr, st.tail)
    }

    /// Unmaps the application's view of the ring (`io_destroy`).
    pub(crate) fn unmap_ring(&self) {
        self.ring.unmap_user()
    }

    /// The backend this context runs on: `"io_uring"` or `"threads"`.
    pub(crate) fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Whether `addr` lies in uaio's own view of this context's ring.
    pub(crate) fn in_own_ring_view(&self, addr: u64) -> bool {
        self.ring.in_own_view(addr)
    }

    /// The address of uaio's own view of this context's ring (tests).
    #[cfg(test)]
    pub(crate) fn own_ring_view(&self) -> u64 {
        self.ring.own_view()
    }

    /// Event slots in the ring.
    pub(crate) fn ring_nr(&self) -> u32 {
        self.ring.nr()
    }

    /// Whether the progress thread may harvest now (no caller inside).
    pub(crate) fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }

    /// Whether completions wait in the backend.
    pub(crate) fn has_completions(&self) -> bool {
        self.backend.has_completions()
    }

    /// Whether events may be on their way to the ring: completions wait in
    /// the backend, or a harvest (another thread's) has taken some from it
    /// and may not have published them yet. A caller that found the ring
    /// empty before this answered false and finds it empty again after has
    /// missed nothing that had completed.
    pub(crate) fn may_have_events(&self) -> bool {
        self.backend.has_completions() || self.harvesting.load(Ordering::SeqCst)
    }

    /// For the progress thread, which calls it on each look at a context
    /// that has callers inside (not [`Kioctx::idle`]) and completions
    /// waiting (`waiting`): whether those completions waited at least
    /// [`CALLERS_STALL`] with no harvest at all. The callers inside harvest
    /// for themselves, unless one of them left its call without ending it:
    /// a handler that jumped out of `io_getevents` with `siglongjmp`. Its
    /// count stays, the backend keeps its notifications for callers off, and
    /// a program that reads the ring or waits on its own eventfd would
    /// otherwise see no event again until it calls into uaio.
    pub(crate) fn callers_stalled(&self, waiting: bool, now: Instant) -> bool {
        let mut mark = crate::sync::lock(&self.stall_mark);
        if !waiting {
            *mark = None;
            return false;
        }
        let h = self.harvests.load(Ordering::SeqCst);
        match *mark {
            Some((seen, since)) if seen == h => now.duration_since(since) >= CALLERS_STALL,
            _ => {
                *mark = Some((h, now));
                false
            }
        }
    }

    fn lock(&self) -> crate::sync::Counted<std::sync::MutexGuard<'_, State>> {
        crate::sync::lock(&self.st)
    }

    fn enter(&self) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.backend.set_notify(false);
        }
    }

    fn leave(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.backend.set_notify(true);
            // Completions that arrived while notification was off.
            if self.backend.has_completions() {
                self.harvest();
            }
        }
    }

    /// Whether requests are in flight in the backend.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0
    }

    fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Moves the futex `seq`, which ends the sleep of every follower, and
    /// wakes those asleep. A follower counts itself before it looks at
    /// `seq`, so one that is not counted yet will see the move.
    fn wake_followers(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.followers.load(Ordering::SeqCst) > 0 {
            wake_all(&self.seq);
        }
    }

    /// `io_cancel` of the request whose iocb is at `obj`.
    pub(crate) fn cancel(&self, obj: u64) -> Result<(), Errno> {
        let mut waits = 0u32;
        let (mut looked, mut ready) = (false, false);
        let key = loop {
            // What has completed already is no longer pending (the kernel
            // knows at once; uaio learns it from the backend).
            if self.backend.has_completions() {
                self.enter();
                self.harvest();
                self.leave();
            }
            let mut st = self.lock();
            // A write whose bytes are in the file already is no longer
            // pending, as the kernel's, done inside io_submit.
            let Some((_, req)) =
                st.reqs.iter_mut().find(|(_, r)| r.obj == obj && !r.cancelled && r.written == 0 && !r.started)
            else {
                return Err(Errno::INVAL);
            };
            // Its io_submit, on another thread, is still handing it to the
            // backend, which may complete it there (a POLL found ready: the
            // kernel's completes inside io_submit and is never cancellable).
            // The answer waits for the hand-over, unless this thread is the
            // one handing over (a signal handler interrupted it: the cancel
            // is held back and sent when the hand-over ends) or the
            // hand-over never ends (a handler left io_submit with
            // `siglongjmp`).
            let hold = req.fresh && events::handing_over();
            if req.fresh && !hold && waits < FRESH_WAITS {
                drop(st);
                waits += 1;
                pause(waits);
                continue;
            }
            if req.poll && !req.fresh && !looked {
                // Made ready by a file operation before this call: done,
                // as the kernel's, whose wake-up completed it in that
                // operation (the backend may not have heard yet).
                let key = req.key;
                drop(st);
                looked = true;
                ready = self.backend.complete_if_ready(key);
                continue;
            }
            if ready && waits < FRESH_WAITS {
                // Completed so, its event on its way from the backend.
                drop(st);
                waits += 1;
                pause(waits);
                continue;
            }
            req.cancelled = true;
            req.cancel_held = hold;
            let key = req.key;
            if let Some(s) = st.stats.as_deref_mut() {
                s.cancel_call();
            }
            if hold {
                return Ok(());
            }
            break key;
        };
        self.enter();
        self.backend.cancel(key);
        if self.backend.has_completions() {
            self.harvest();
        }
        self.leave();
        Ok(())
    }

    /// `io_destroy`: marks the context dead, waits until no `io_submit`
    /// still works on it, cancels what could wait forever (POLLs, reads and
    /// writes of streams), wakes every waiter, and returns once no request
    /// is in flight. Reads, writes and syncs of files are waited for, never
    /// cancelled, as the kernel does.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        wait_until_at_most(&self.submitters, || 0, u32::MAX);
        // Waiters learn of the death before anything is cancelled, so that
        // they answer EINVAL rather than reap the cancellations' events (the
        // kernel's cancellations run only after its waiters were woken). A
        // waiter always leaves once woken; the bound only guards against a
        // thread stuck elsewhere (in a signal handler, say).
        self.wake_followers();
        self.backend.wake();
        // Not for this thread's own registrations: those of calls its
        // handlers jumped out of (`siglongjmp`), or of the call a handler
        // running this destroy interrupted, which waits for it to return;
        // nor for the calls of threads running a handler (see
        // `sys::waiting`).
        wait_until_at_most(&self.getters, || sys::waiting::not_to_wait_for(self.serial), 10_000);
        sys::waiting::forget_held(self.serial);
        self.enter();
        let keys: Vec<u64> = {
            let mut st = self.lock();
            st.reqs
                .iter_mut()
                .filter(|(_, r)| r.forever && !r.cancelled)
                .map(|(_, r)| {
                    r.cancelled = true;
                    r.key
                })
                .collect()
        };
        for key in keys {
            self.backend.cancel(key);
        }
        self.wake_followers();
        self.backend.wake();
        loop {
            self.harvest();
            if self.in_flight() == 0 {
                break;
            }
            let _ = self.backend.wait(1, Some(Duration::from_millis(10)), None);
        }
        self.backend.destroyed();
        self.leave();
        self.write_stats();
    }

    /// Writes what the context did where `UAIO_STATS` says (once; nothing
    /// when it is not set).
    pub(crate) fn write_stats(&self) {
        if let Some(s) = self.lock().stats.as_deref_mut() {
            s.write_out();
        }
    }

    /// Waits until no request that always finishes (file and block device
    /// I/O, syncs) is in flight; the events go to the ring as usual.
    /// Only requests accepted before the call are waited for (see
    /// [`begin_exit`], which holds new submissions back first). `rounds`
    /// bounds the wait for `io_submit` calls under way in other threads to
    /// end (naps of 50 µs; see [`wait_until_at_most`]). `all`: every
    /// context of the process, whose completions are drained too: a write
    /// of this context may wait for its file's turn behind another
    /// context's (the writes of one file take turns, whatever context they
    /// came from), and goes to the kernel once that one's completion is
    /// drained (before, the wait stalled and the process left without it).
    pub(crate) fn finish_file_io(&self, rounds: u32, all: &[Arc<Kioctx>]) {
        beat();
        wait_until_at_most(&self.submitters, || 0, rounds);
        self.enter();
        let keys: Vec<u64> = self.lock().reqs.iter().filter(|(_, r)| !r.forever).map(|(_, r)| r.key).collect();
        let mut last = keys.len();
        loop {
            self.harvest();
            for c in all {
                if !std::ptr::eq(&**c, self) && c.has_completions() {
                    c.harvest();
                }
            }
            let pending = {
                let st = self.lock();
                keys.iter().filter(|&&k| st.reqs.get(k as u32 as usize).is_some_and(|r| r.key == k)).count()
            };
            if pending == 0 {
                break;
            }
            if pending != last {
                last = pending;
                beat();
            }
            let _ = self.backend.wait(1, Some(Duration::from_millis(10)), None);
        }
        self.leave();
    }
}

/// The next context's [`Kioctx::serial`].
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// Counts the steps of progress of [`Kioctx::finish_file_io`] waits (a
/// request completed, an `io_submit` ended): a thread waiting for another
/// to do that wait (see `progress`) sees whether it moves.
static BEAT: AtomicU32 = AtomicU32::new(0);

fn beat() {
    BEAT.fetch_add(1, Ordering::Relaxed);
}

/// The count of [`Kioctx::finish_file_io`] rounds so far.
pub(crate) fn beats() -> u32 {
    BEAT.load(Ordering::Relaxed)
}

/// The thread id of a thread about to `exec` (0: none): until it lets go
/// ([`end_exec`], when the `exec` failed), other threads' `io_submit`
/// calls wait before accepting anything, so that the requests the `exec`
/// waits for are exactly those accepted before (the kernel's `exec` ends
/// the other threads first).
static EXECING: AtomicU32 = AtomicU32::new(0);

/// The calling thread is about to `exec` (see [`EXECING`]). Takes no lock
/// and allocates nothing.
pub(crate) fn begin_exec() {
    EXECING.store(sys::gettid() as u32, Ordering::SeqCst);
}

/// The calling thread's `exec` failed: the `io_submit` calls held back go
/// on. Nothing when another thread (or none) is the one about to `exec`
/// (a `vfork` child's failed `exec` leaves its parent's threads alone).
pub(crate) fn end_exec() {
    let me = sys::gettid() as u32;
    if EXECING.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        wake_all(&EXECING);
    }
}

/// The thread id of another thread about to `exec`, if any.
fn exec_elsewhere() -> Option<u32> {
    let e = EXECING.load(Ordering::SeqCst);
    (e != 0 && e != sys::gettid() as u32).then_some(e)
}

/// Sleeps while thread `e` is about to `exec` (a second at most).
fn wait_for_exec(e: u32) {
    let ts = rustix::thread::futex::Timespec { tv_sec: 1, tv_nsec: 0 };
    let _ = rustix::thread::futex::wait(&EXECING, rustix::thread::futex::Flags::PRIVATE, e, Some(&ts));
}

/// The thread id of the thread running the process's exit (0: none yet).
static EXITING: AtomicI32 = AtomicI32::new(0);

/// The calling thread is running the process's `exit`: from now on other
/// threads' `io_submit` calls never return (they end with the process), so
/// that the requests to wait for are exactly those accepted so far. The
/// exiting thread itself may still submit (an exit handler may).
pub(crate) fn begin_exit() {
    EXITING.store(sys::gettid(), Ordering::SeqCst);
}

/// Waits (yielding, then napping) until `count` is `floor()` or less, for
/// at most `rounds` naps.
fn wait_until_at_most(count: &AtomicU32, floor: impl Fn() -> u32, rounds: u32) {
    let mut spins = 0u32;
    let mut last = 0;
    loop {
        let n = count.load(Ordering::SeqCst);
        if n <= floor() {
            break;
        }
        if n != last {
            last = n;
            beat();
        }
        spins += 1;
        if spins >= 100 && spins - 100 >= rounds {
            return;
        }
        pause(spins);
    }
}

/// Step `step` (from 1) of a short wait for another thread: a yield for the
/// first 99, then naps of 50 µs.
fn pause(step: u32) {
    if step < 100 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Wakes every thread sleeping on the futex `seq`.
fn wake_all(seq: &AtomicU32) {
    let _ = rustix::thread::futex::wake(seq, rustix::thread::futex::Flags::PRIVATE, i32::MAX as u32);
}
