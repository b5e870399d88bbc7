//! The progress thread: completions reach the ring even when no thread
//! calls into uaio (programs that reap from the ring themselves, or wait on
//! an eventfd). It sleeps on one eventfd that every backend signals while
//! no caller is inside the context, harvests the contexts that have
//! completions and no caller, and costs nothing while idle. It also does
//! the wait for file I/O in flight of a thread about to `_exit` or `exec`
//! ([`finish_file_io_elsewhere`]), which may be a signal handler that can
//! neither lock nor allocate.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

use crate::backend::threads;
use crate::kioctx::Kioctx;
use crate::sys::internal_fds;

/// The eventfd the backends signal for the progress thread of the process
/// whose slot is `slot`, with the thread started on first use; the thread
/// looks at the contexts `contexts` returns. One found closed or taken
/// over behind uaio's back (a raw system call) is replaced ([`renew`]).
pub(crate) fn eventfd(
    slot: &'static Mutex<Option<Arc<OwnedFd>>>,
    contexts: impl Fn() -> Vec<Arc<Kioctx>> + Send + 'static,
) -> Result<Arc<OwnedFd>, Errno> {
    let mut g = crate::sync::lock(slot);
    if let Some(fd) = g.as_ref() {
        if crate::sys::file_stat(fd.as_raw_fd()).is_some_and(|st| st.kind() == 0) {
            return Ok(fd.clone());
        }
    }
    if PROGRESS_STARTED.load(Ordering::SeqCst) {
        return renew(&mut g);
    }
    let fd = Arc::new(new_eventfd()?);
    crate::sys::spawn_thread("uaio-progress", move || run(slot, contexts)).map_err(|_| crate::sys::spawn_errno())?;
    PROGRESS_STARTED.store(true, Ordering::SeqCst);
    internal_fds::set_sweeper(fd.as_raw_fd());
    *g = Some(fd.clone());
    Ok(fd)
}

/// The progress thread of this process is started (it runs for the rest of
/// the process; a `fork` child starts its own).
static PROGRESS_STARTED: AtomicBool = AtomicBool::new(false);

fn new_eventfd() -> Result<OwnedFd, Errno> {
    let made = internal_fds::InternalFd::make(|| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC));
    Ok(made?.into_permanent())
}

/// Puts a new eventfd in the slot `g` holds, in place of one whose number
/// the program closed behind uaio's back (a raw `close_range` of every
/// descriptor, say) and something else may have taken: that number is let
/// go first, never closed (the value is leaked), and the new eventfd serves
/// the progress thread and the contexts made from now on. The rings made
/// before still notify the old one, which nothing watches now: their
/// completions reach the ring through their callers, or within the safety
/// net ([`PROGRESS_SAFETY_NET`]) when no caller is inside. Before, the
/// progress thread polled the closed number in a loop (`POLLNVAL` at once),
/// keeping a processor busy for good. An empty slot (a new eventfd could
/// not be made before) just gets one.
fn renew(g: &mut Option<Arc<OwnedFd>>) -> Result<Arc<OwnedFd>, Errno> {
    if let Some(old) = g.take() {
        internal_fds::lost_permanent(old.as_raw_fd());
        std::mem::forget(old);
    }
    let new = Arc::new(new_eventfd()?);
    internal_fds::set_sweeper(new.as_raw_fd());
    *g = Some(new.clone());
    Ok(new)
}

/// The progress thread found the eventfd number `lost` (-1: it has none):
/// replaced, unless another thread replaced it already.
fn replace_lost(slot: &Mutex<Option<Arc<OwnedFd>>>, lost: i32) {
    let mut g = crate::sync::lock(slot);
    if g.as_ref().is_none_or(|fd| fd.as_raw_fd() == lost) {
        let _ = renew(&mut g);
    }
}

/// How often the progress thread looks at contexts with requests in flight
/// even without a notification: a safety net for a completion whose
/// notification was lost between io_uring turning the eventfd back on and
/// posting (the kernel orders its tail store and its read of the flag with
/// no full barrier). Idle processes (nothing in flight) are never woken.
const PROGRESS_SAFETY_NET: std::time::Duration = std::time::Duration::from_millis(50);

/// The progress thread sleeps with no timeout (nothing was in flight at
/// its last look): the next request handed to a backend wakes it
/// ([`requests_in_flight`]), so that its safety net runs while requests
/// are in flight even when no backend notifies it (callers are inside
/// their contexts, see [`Kioctx::callers_stalled`]).
static UNTIMED: AtomicBool = AtomicBool::new(false);

/// Tells the progress thread that requests are in flight, if it sleeps
/// with no timeout: one eventfd write per such sleep, none otherwise.
pub(crate) fn requests_in_flight() {
    if UNTIMED.load(Ordering::SeqCst) && UNTIMED.swap(false, Ordering::SeqCst) {
        internal_fds::poke_sweeper();
    }
}

/// One of uaio's threads found, as it started, no other thread in the C
/// library's count (see `sys::process::Uncounted`): either every thread of
/// the program has ended (by returning or `pthread_exit`) while it was
/// starting, and the process must end as the C library ends it after its
/// last thread, or the process is ending already. The progress thread
/// looks at the process's threads until it knows, and in the first case
/// finishes the file I/O in flight and calls `exit(0)`.
static PROGRAM_GONE_SUSPECTED: AtomicBool = AtomicBool::new(false);

/// How often the progress thread looks at the process's threads while
/// [`PROGRAM_GONE_SUSPECTED`] (the program's last thread may still be on
/// its way out, or running the process's exit).
const PROGRAM_GONE_LOOK: Duration = Duration::from_millis(10);

thread_local! {
    /// Set in the progress thread.
    static ON_PROGRESS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the uaio thread that finds, as it starts, no other thread in
/// the C library's count: has the progress thread look. Without a progress
/// thread no request can be in flight, and the calling thread looks.
pub(crate) fn program_threads_ended() {
    PROGRAM_GONE_SUSPECTED.store(true, Ordering::SeqCst);
    if !internal_fds::poke_sweeper() && !crate::sys::process::program_threads_left(true) {
        std::process::exit(0);
    }
}

fn run(slot: &'static Mutex<Option<Arc<OwnedFd>>>, contexts: impl Fn() -> Vec<Arc<Kioctx>>) {
    ON_PROGRESS_THREAD.with(|p| p.set(true));
    let mut buf = [0u8; 8];
    let mut timeout = None;
    loop {
        // None when no eventfd could be made in place of a lost one: the
        // contexts are then looked at on a timer (ppoll of no descriptor is
        // a plain sleep), and a new one is tried each time.
        let efd = crate::sync::lock(slot).as_ref().map_or(-1, |f| f.as_raw_fd());
        if efd < 0 {
            timeout = Some(timeout.map_or(PROGRESS_SAFETY_NET, |t: Duration| t.min(PROGRESS_SAFETY_NET)));
        }
        let suspected = PROGRAM_GONE_SUSPECTED.load(Ordering::SeqCst);
        if suspected && !crate::sys::process::program_threads_left(false) {
            finish_file_io_for_the_end(&contexts);
            std::process::exit(0);
        }
        if suspected {
            timeout = Some(timeout.map_or(PROGRAM_GONE_LOOK, |t: Duration| t.min(PROGRAM_GONE_LOOK)));
        }
        if timeout.is_none() {
            // Announced before the last look: a request handed over after
            // that look finds the flag and wakes this thread.
            UNTIMED.store(true, Ordering::SeqCst);
            if contexts().iter().any(|c| c.busy()) {
                UNTIMED.store(false, Ordering::SeqCst);
                timeout = Some(PROGRESS_SAFETY_NET);
            }
        }
        let r = crate::sys::ppoll_own_eventfd(efd, timeout);
        UNTIMED.store(false, Ordering::SeqCst);
        let lost = match r {
            Ok(crate::sys::OwnWake::Timeout) | Err(Errno::INTR) => false,
            Ok(crate::sys::OwnWake::Ready) => !crate::sys::read_eventfd(efd, &mut buf),
            Ok(crate::sys::OwnWake::Lost) => true,
            Err(_) => return,
        };
        if lost || efd < 0 {
            replace_lost(slot, efd);
        }
        let asked = LEAVE_ASKED.load(Ordering::SeqCst);
        if asked != LEAVE_DONE.load(Ordering::SeqCst) {
            let rounds = LEAVE_ROUNDS.load(Ordering::SeqCst);
            let all = contexts();
            for c in &all {
                c.finish_file_io(rounds, &all);
            }
            LEAVE_DONE.store(asked, Ordering::SeqCst);
            let _ = futex::wake(&LEAVE_DONE, futex::Flags::PRIVATE, u32::MAX);
        }
        let mut busy = false;
        let now = Instant::now();
        for c in contexts() {
            let waiting = c.has_completions();
            if waiting && c.idle() {
                c.harvest();
            } else if waiting && c.callers_stalled(waiting, now) {
                c.harvest();
                c.depose_leader();
            } else if !waiting {
                c.callers_stalled(false, now);
            }
            busy |= c.busy();
        }
        // Duplicates kept aside for a program's record lock go once the
        // lock is gone, even if the program makes no more calls (until
        // then they keep its open file, and so a `flock` on it, alive).
        internal_fds::sweep();
        let kept = internal_fds::kept_count() > 0;
        timeout = [busy.then_some(PROGRESS_SAFETY_NET), kept.then_some(KEPT_SWEEP)].into_iter().flatten().min();
    }
}

/// The process ends when its last thread does, however that thread ends:
/// the C library's `exit` covers threads that return or call
/// `pthread_exit` (see [`PROGRAM_GONE_SUSPECTED`]), but a thread that ends
/// with the raw `exit` system call tells nobody, and uaio's threads would
/// keep the process alive for ever. So a thread of uaio's, started once
/// the first thread's end can be waited for (its `clear_child_tid` word,
/// see [`crate::sys::process::note_first_thread`]), waits for it; then
/// watches one living thread of the program after another (a descriptor
/// readable at its end); and when none is left, finishes the file I/O in
/// flight and ends the process as the kernel would have, with no exit
/// handler run and the status of the first thread if that was the last
/// (else 0: the status of another thread is gone with it), unless the C
/// library saw the last thread end (then its `exit` ends the process).
/// It sleeps all the while (waking once a second while it watches a
/// thread, [`WATCH_RECHECK`]), and gives up where a thread cannot be
/// watched (before Linux 6.9, or with no descriptor left).
pub(crate) fn watch_program_threads(contexts: impl Fn() -> Vec<Arc<Kioctx>> + Send + 'static) {
    use crate::sys::process;
    if WATCHER_STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let watch = move || {
        let Some(mut ended) = process::wait_for_first_thread_end() else { return };
        let first = ended;
        loop {
            match process::live_program_thread() {
                Err(()) => return,
                // One of uaio's threads, starting, may have been taken for
                // the program's: look again once it is listed. The first
                // thread is still on its way out (the kernel clears its
                // word before the end): look again once it is a zombie (a
                // descriptor of it would tell nothing before the
                // process's end).
                Ok(Some((tid, _))) if process::own_threads_starting() || tid == first => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(Some((tid, named_own))) => match process::watch_thread(tid) {
                    Ok(fd) => {
                        // Until it ends; a thread of uaio's taken for the
                        // program's (which may never end) is let go once
                        // it shows as uaio's.
                        let program = loop {
                            match crate::sys::ppoll_one(fd.as_raw_fd(), Some(WATCH_RECHECK), None) {
                                Ok(0) if process::is_own_thread(tid) => break false,
                                Ok(0) | Err(Errno::INTR) => {}
                                _ => break !named_own,
                            }
                        };
                        // It was alive after the first thread ended: the
                        // first was not the last. One of uaio's threads on
                        // its way out is waited for (the C library may end
                        // the process with it), but the process's status
                        // is not its.
                        if program {
                            ended = tid;
                        }
                    }
                    // It ended meanwhile: look again.
                    Err(Errno::SRCH) => {}
                    Err(_) => return,
                },
                Ok(None) => {
                    while process::own_threads_starting() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if PROGRAM_GONE_SUSPECTED.load(Ordering::SeqCst) || process::c_thread_count_is_zero() == Some(true)
                    {
                        // The C library saw the last thread end (it counts
                        // the threads that end by returning or with
                        // `pthread_exit`, never uaio's): its `exit`, or
                        // the progress thread's, ends the process, with
                        // the exit handlers.
                        return;
                    }
                    let status = Some(ended).filter(|&t| t == first).and_then(process::thread_exit_status);
                    finish_file_io_for_the_end(&contexts);
                    process::end_now((status.unwrap_or(0) >> 8) & 0xff)
                }
            }
        }
    };
    if crate::sys::spawn_thread("uaio-watch", watch).is_err() {
        WATCHER_STARTED.store(false, Ordering::SeqCst);
    }
}

/// The process ends now that the program's last thread has: other calls
/// accept nothing more, and the file I/O in flight completes first.
fn finish_file_io_for_the_end(contexts: &impl Fn() -> Vec<Arc<Kioctx>>) {
    crate::kioctx::begin_exit();
    let all = contexts();
    for c in &all {
        c.finish_file_io(u32::MAX, &all);
    }
}

/// How often the watch of one of the program's threads looks whether the
/// thread is one of uaio's after all (see [`watch_program_threads`]).
const WATCH_RECHECK: Duration = Duration::from_secs(1);

/// Whether [`watch_program_threads`] started its thread in this process.
static WATCHER_STARTED: AtomicBool = AtomicBool::new(false);

/// How often the progress thread closes what [`internal_fds::sweep`] can
/// while duplicates are kept aside for record locks.
const KEPT_SWEEP: std::time::Duration = std::time::Duration::from_millis(100);

/// Requests of threads about to leave (`_exit`, `exec`) that the progress
/// thread wait for the file I/O in flight ([`finish_file_io_elsewhere`]),
/// and the last request it has answered.
static LEAVE_ASKED: AtomicU32 = AtomicU32::new(0);
static LEAVE_DONE: AtomicU32 = AtomicU32::new(0);
/// The last request's bound on the wait for `io_submit` calls under way.
static LEAVE_ROUNDS: AtomicU32 = AtomicU32::new(u32::MAX);

/// How long [`finish_file_io_elsewhere`] waits for the progress thread's
/// wait to show a sign of life.
const LEAVE_STALL: Duration = Duration::from_secs(2);

/// Has the progress thread wait until every context's file I/O accepted
/// so far is complete ([`Kioctx::finish_file_io`]), and waits for it to be
/// done: for a thread about to end the process or `exec`. The calling
/// thread takes no lock and allocates nothing: `_exit` and `execve` may be
/// called from a signal handler that interrupted any code, `malloc`
/// included, and a wait of its own would then hang on the lock that code
/// holds. Gives up when the progress thread's wait shows no progress for
/// 2 s (it may need a lock the interrupted code holds). Returns at once
/// when the process has no progress thread (it never had a context).
/// `rounds` bounds its wait for `io_submit` calls under way to end (see
/// [`Kioctx::finish_file_io`]).
pub(crate) fn finish_file_io_elsewhere(rounds: u32) {
    // The progress thread itself ends the process only once it has done
    // this wait (see `run`).
    if ON_PROGRESS_THREAD.try_with(|p| p.get()).unwrap_or(false) {
        return;
    }
    LEAVE_ROUNDS.store(rounds, Ordering::SeqCst);
    let asked = LEAVE_ASKED.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
    if !internal_fds::poke_sweeper() {
        return;
    }
    let mut beats = crate::kioctx::beats();
    let mut low = threads::file_io_pending();
    let mut since = Instant::now();
    loop {
        let done = LEAVE_DONE.load(Ordering::SeqCst);
        // Answered: this request, or a later one.
        if done.wrapping_sub(asked) < u32::MAX / 2 {
            return;
        }
        let ts = futex::Timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        let _ = futex::wait(&LEAVE_DONE, futex::Flags::PRIVATE, done, Some(&ts));
        // Progress: the wait saw requests complete, or the thread pool's
        // workers ran requests (they go on when the progress thread waits
        // for a lock the interrupted code holds).
        let (now, left) = (crate::kioctx::beats(), threads::file_io_pending());
        if now != beats || left < low {
            beats = now;
            low = left;
            since = Instant::now();
        } else if since.elapsed() >= LEAVE_STALL {
            return;
        }
    }
}

/// In a `fork` child: no request is pending.
pub(crate) fn after_fork_in_child() {
    PROGRESS_STARTED.store(false, Ordering::SeqCst);
    PROGRAM_GONE_SUSPECTED.store(false, Ordering::SeqCst);
    WATCHER_STARTED.store(false, Ordering::SeqCst);
    crate::sys::process::forget_own_threads();
    crate::sys::process::forget_first_thread();
    LEAVE_ASKED.store(0, Ordering::SeqCst);
    LEAVE_DONE.store(0, Ordering::SeqCst);
}
