//! `io_getevents` and `io_pgetevents`: the events in the ring, and the
//! wait for more. One waiter at a time (the leader) sleeps inside the
//! backend and harvests what arrives; the others (followers) sleep on the
//! futex `seq`, which every publication bumps. The leader hands over when it
//! leaves. Waiters take events as the kernel's do since 6.9: when they
//! start, then only once there are enough for them, or when they leave.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use uaio_abi::io_event;

use super::Kioctx;
use crate::sys;
use crate::uaccess::UserPtr;

/// When `io_getevents` gives up waiting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Do not wait.
    Now,
    /// Wait until this instant, the call's relative timeout from its
    /// start (kept for a restart, see [`Deadline::restarted`]).
    At(Instant, Duration),
    /// Wait as long as it takes.
    Never,
}

impl Deadline {
    /// How long a sleep may last: `None` once the deadline has passed (or
    /// for `Now`), `Some(None)` without a limit.
    fn remaining(self) -> Option<Option<Duration>> {
        match self {
            Deadline::Now => None,
            Deadline::Never => Some(None),
            Deadline::At(t, _) => {
                let now = Instant::now();
                (t > now).then(|| Some(t - now))
            }
        }
    }

    /// The deadline of the call made again now, as the kernel restarts an
    /// interrupted `io_pgetevents` with its relative timeout whole.
    fn restarted(self) -> Deadline {
        match self {
            Deadline::At(_, d) => Instant::now().checked_add(d).map_or(Deadline::Never, |t| Deadline::At(t, d)),
            other => other,
        }
    }
}

impl Kioctx {
    /// `io_getevents`: at least `min_nr`, at most `nr` events into `out`.
    /// `restartable` for `io_pgetevents` (with or without a mask), which
    /// the kernel restarts when a wait is interrupted and no handler runs
    /// (a stop and continue), where `io_getevents` answers `EINTR`.
    pub(crate) fn getevents(
        &self,
        min_nr: usize,
        nr: usize,
        out: UserPtr<io_event>,
        deadline: Deadline,
        sigmask: Option<u64>,
        restartable: bool,
    ) -> Result<usize, Errno> {
        // Events already in the ring are enough: taken without the waiting
        // machinery (no sleep can follow, so no one needs to know we are here).
        let mut got = 0;
        if sigmask.is_none() && nr > 0 {
            // Completions waiting in the backend join the ring first, so
            // that a caller finding enough events there sees them too.
            if self.backend.has_completions() {
                self.harvest();
            }
            got = self.consume(out, nr)?;
            if got >= min_nr.max(1) {
                // What was found may be the event of a request that
                // destroy cancelled: destroy cancels only once no waiter
                // is registered, and this one is not. The call then counts
                // as made after destroy began, and fails as the kernel's
                // lookup of a killed context does.
                if self.dead.load(Ordering::SeqCst) {
                    return Err(Errno::INVAL);
                }
                return Ok(got);
            }
        }
        self.getters.fetch_add(1, Ordering::SeqCst);
        sys::waiting::hold(self.serial, true);
        // Registered before looking: either destroy sees this waiter and
        // cancels nothing until it leaves, or this waiter sees the context
        // dead and answers EINVAL without taking anything from the ring.
        if self.dead.load(Ordering::SeqCst) {
            sys::waiting::hold(self.serial, false);
            self.getters.fetch_sub(1, Ordering::SeqCst);
            return Err(Errno::INVAL);
        }
        self.enter();
        let r = self.getevents_inner(got, min_nr, nr, out, deadline, sigmask, restartable);
        self.leave();
        sys::waiting::hold(self.serial, false);
        self.getters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn getevents_inner(
        &self,
        mut got: usize,
        min_nr: usize,
        nr: usize,
        out: UserPtr<io_event>,
        mut deadline: Deadline,
        sigmask: Option<u64>,
        restartable: bool,
    ) -> Result<usize, Errno> {
        let mut leading = false;
        // With a mask given (io_pgetevents), signals are held back for the
        // whole call except while sleeping, where the mask is in force.
        let saved_mask: Option<u64> = sigmask.map(|_| sys::block_async_signals());
        let mut first = true;
        let result = loop {
            // As the kernel's waiters (since 6.9), a waiter takes events
            // when it starts and then only once there are enough for it, or
            // when it leaves: fewer stay in the ring for other readers.
            let take = first
                || self.ring_available() >= min_nr - got
                || self.dead.load(Ordering::SeqCst)
                || matches!(deadline, Deadline::At(t, _) if t <= Instant::now());
            first = false;
            if take {
                match self.consume(out.add(got), nr - got) {
                    Ok(n) => got += n,
                    Err(e) => break if got > 0 { Ok(got) } else { Err(e) },
                }
            }
            if got >= min_nr {
                break Ok(got);
            }
            if self.dead.load(Ordering::SeqCst) {
                break if got > 0 { Ok(got) } else { Err(Errno::INVAL) };
            }
            if self.backend.has_completions() && self.harvest_by(leading) > 0 {
                continue;
            }
            let Some(timeout) = deadline.remaining() else { break Ok(got) };
            if self.await_submitter() {
                continue;
            }
            let handlers_before = sys::deferral::handlers_run();
            let sleep = sys::waiting::sleeping_on(&self.counts);
            let mut slept = self.sleep_once(&mut leading, min_nr - got, timeout, sigmask);
            // A handler of the program's ran in the sleep: the kernel's call
            // returned before it, with the events there when the signal
            // came (and ended by the signal, whatever woke this sleep).
            let handler_at = sys::waiting::woke(sleep);
            if handler_at.is_some() {
                slept = Err(Errno::INTR);
            }
            if self.dead.load(Ordering::SeqCst)
                && (slept == Err(Errno::INTR) || sys::deferral::handlers_run() != handlers_before)
            {
                // Interrupted, and a handler of this thread's destroyed the
                // context meanwhile (a handler of another thread's may
                // have): the kernel runs handlers once the call has
                // returned, so the call ends as interrupted, without the
                // events of the requests destroy cancelled.
                break if got > 0 { Ok(got) } else { Err(Errno::INTR) };
            }
            match slept {
                Ok(()) | Err(Errno::TIME) => continue,
                // io_pgetevents is restarted when no handler ran (a stop
                // and continue), as the kernel's (ERESTARTNOHAND);
                // io_getevents answers EINTR whatever interrupted it.
                Err(Errno::INTR) if restartable && no_handler_since(handlers_before, sigmask) => {
                    deadline = deadline.restarted();
                    continue;
                }
                Err(Errno::INTR) => {
                    // What is there goes with the interruption, as the
                    // kernel reads once more before it leaves (with the
                    // completions the backend holds from before the
                    // signal), except events published while a handler
                    // ran, which came after the kernel's call returned.
                    let (published, entered) = handler_at.map_or((0, 0), |at| self.counts.since(at));
                    let holds = self.backend.holds_completions_across_signals();
                    if published == 0 && entered == 0 && holds && self.backend.has_completions() {
                        // Those the backend's queue held when the handler
                        // began (those that came while it ran are later).
                        self.harvest_before(leading, handler_at.and_then(|at| at.backend));
                    }
                    let before = match handler_at {
                        Some(at) if published > 0 => at.published,
                        _ => u64::MAX,
                    };
                    if let Ok(n) = self.consume_published_before(out.add(got), nr - got, before) {
                        got += n;
                    }
                    break if got > 0 { Ok(got) } else { Err(Errno::INTR) };
                }
                Err(_) => continue,
            }
        };
        if leading {
            self.step_down();
        }
        end_signal_mask(result, sigmask, saved_mask)
    }

    /// The leader leaves: a follower takes over.
    fn step_down(&self) {
        let me = crate::sync::this_thread();
        let _ = self.leader_thread.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
        self.leader.store(0, Ordering::SeqCst);
        if self.followers.load(Ordering::SeqCst) > 0 {
            self.wake_followers();
        }
    }

    /// For the progress thread, when completions waited long with no
    /// harvest while callers are inside ([`Kioctx::callers_stalled`]):
    /// the leader, if any, is gone (a handler jumped out of its wait in
    /// another thread), so the next waiter to sleep leads. Should it only
    /// have been slow, two waiters lead for a while, each harvesting what
    /// it wakes for.
    pub(crate) fn depose_leader(&self) {
        if self.leader.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.leader_thread.store(0, Ordering::SeqCst);
        self.leader.store(0, Ordering::SeqCst);
        self.wake_followers();
    }

    /// One sleep, as the leader (which `leading` says this waiter is, or
    /// becomes if no other is) or as a follower, for `need` more events.
    pub(super) fn sleep_once(
        &self,
        leading: &mut bool,
        need: usize,
        timeout: Option<Duration>,
        sigmask: Option<u64>,
    ) -> Result<(), Errno> {
        let want = (need as u32).min(self.in_flight()).max(1);
        let me = crate::sync::this_thread();
        // A leader of this very thread is not sleeping in the backend: a
        // handler jumped out of its call (`siglongjmp`), or this call runs
        // in a handler that interrupted it. Its followers would wait for
        // it in vain, this call among them; this call leads instead.
        if *leading
            || self.leader.compare_exchange(0, want, Ordering::SeqCst, Ordering::SeqCst).is_ok()
            || self.leader_thread.load(Ordering::SeqCst) == me
        {
            *leading = true;
            self.leader_thread.store(me, Ordering::SeqCst);
            self.lead(want, need, timeout, sigmask.as_ref())
        } else {
            self.follow(need, timeout, sigmask)
        }
    }
}

/// Whether no handler of the program's can have run on this thread since
/// [`sys::deferral::handlers_run`] said `before`, in a sleep under the
/// mask `sigmask` (the thread's own when `None`).
#[cold]
fn no_handler_since(before: u64, sigmask: Option<u64>) -> bool {
    let blocked = sigmask.unwrap_or_else(sys::thread_signal_mask);
    sys::deferral::handlers_run() == before && !sys::deferral::unrouted_handler(blocked)
}

/// The end of an `io_pgetevents` call with the mask `sigmask`: the
/// caller's own mask (`saved`) goes back in place, after a pending signal
/// the call's mask lets through is delivered.
fn end_signal_mask(result: Result<usize, Errno>, sigmask: Option<u64>, saved: Option<u64>) -> Result<usize, Errno> {
    let mut result = result;
    if let (Ok(n), Some(m)) = (result, sigmask) {
        // A signal pending that the caller's mask lets through is
        // delivered under that mask, as the kernel delivers it before
        // putting the old mask back (installing the mask delivers it);
        // with nothing to return it also interrupts the call, as the
        // kernel's check after its wait does (even without a wait).
        if sys::pending_signals() & !m & !SYNCHRONOUS_MASK != 0 {
            // Delivered now, not held back to the end of the call (which
            // puts the caller's mask back): the call has nothing left half
            // done, as if it slept.
            crate::sync::outside_call(|| sys::set_signal_mask(m));
            if n == 0 {
                result = Err(Errno::INTR);
            }
        }
    }
    if let Some(m) = saved {
        sys::set_signal_mask(m);
    }
    result
}

impl Kioctx {
    /// While another thread is inside `io_submit` on this context, whose
    /// page-cache requests complete there, spins a little for its events
    /// instead of going to sleep at once: a sleep and a wake-up cost more
    /// than the submission takes. Returns whether events were published.
    pub(super) fn await_submitter(&self) -> bool {
        let seq = self.seq.load(Ordering::SeqCst);
        for _ in 0..SUBMITTER_SPINS {
            if self.submitters.load(Ordering::Relaxed) == 0 {
                break;
            }
            if self.seq.load(Ordering::Relaxed) != seq {
                return true;
            }
            core::hint::spin_loop();
        }
        self.seq.load(Ordering::SeqCst) != seq
    }

    /// One sleep of the leader inside the backend, for `want` completions
    /// (one when followers wait too, so that they hear of every event),
    /// unless `need` events are in the ring already.
    /// Leadership is kept across sleeps: it passes on only when the leader
    /// leaves `io_getevents`.
    pub(super) fn lead(
        &self,
        want: u32,
        need: usize,
        timeout: Option<Duration>,
        sigmask: Option<&u64>,
    ) -> Result<(), Errno> {
        let want = if self.followers.load(Ordering::SeqCst) > 0 { 1 } else { want };
        // Announce what we wait for before looking: a publisher that misses
        // our look sees the announcement and wakes the backend (see
        // `notify_waiters`).
        self.leader.store(want, Ordering::SeqCst);
        if self.ring_available() >= need || self.backend.has_completions() || self.dead.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.backend.wait(want, timeout, sigmask)
    }

    /// One sleep of a follower on the futex `seq`, which moves whenever
    /// events are published or the leader leaves, unless `need` events are
    /// in the ring already.
    pub(super) fn follow(&self, need: usize, timeout: Option<Duration>, sigmask: Option<u64>) -> Result<(), Errno> {
        let seq = self.seq.load(Ordering::SeqCst);
        if self.followers.fetch_add(1, Ordering::SeqCst) == 0 && self.leader.load(Ordering::SeqCst) > 1 {
            // The leader waits for several completions; make it come back
            // and wait for one at a time while followers are there.
            self.backend.wake();
        }
        let r = if self.seq.load(Ordering::SeqCst) != seq
            || self.dead.load(Ordering::SeqCst)
            || self.leader.load(Ordering::SeqCst) == 0
            || self.ring_available() >= need
        {
            Ok(())
        } else {
            // Always with a time limit: an interrupted timed futex wait
            // returns EINTR whatever the handler's SA_RESTART, as
            // io_getevents does; an untimed one would be restarted and the
            // signal would go unnoticed.
            let d = timeout.unwrap_or(Duration::from_secs(3600));
            let ts = rustix::thread::futex::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ };
            if let Some(m) = sigmask {
                sys::set_signal_mask(m);
            }
            let r = crate::sync::asleep(|| {
                rustix::thread::futex::wait(&self.seq, rustix::thread::futex::Flags::PRIVATE, seq, Some(&ts))
            });
            if sigmask.is_some() {
                sys::block_async_signals();
            }
            match r {
                Err(Errno::AGAIN) => Ok(()),
                Err(Errno::TIMEDOUT) => Err(Errno::TIME),
                other => other,
            }
        };
        self.followers.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

/// Rounds of [`Kioctx::await_submitter`]'s spin (a few microseconds).
const SUBMITTER_SPINS: u32 = 2000;

/// Signals uaio never blocks (see [`sys::block_async_signals`]): a pending
/// one of them is not the caller's business.
const SYNCHRONOUS_MASK: u64 =
    1 << (libc::SIGSEGV - 1) | 1 << (libc::SIGBUS - 1) | 1 << (libc::SIGILL - 1) | 1 << (libc::SIGFPE - 1);
