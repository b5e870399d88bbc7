//! The thread-pool backend, for hosts where io_uring is refused.
//!
//! What can complete without blocking is done inline by the submitting
//! thread: reads and writes are first tried with `RWF_NOWAIT`, so cached data
//! costs one system call and no thread hop. What would block goes elsewhere:
//! reads and writes of regular files and block devices, and syncs, to a
//! bounded pool of named worker threads; reads and writes of pipes, sockets
//! and other pollable files, and `IOCB_CMD_POLL`, to one poller thread that
//! waits for readiness with `poll(2)` and retries without blocking. A worker
//! never waits for a pipe, so cancellation of anything queued or polling is
//! immediate, and `io_destroy` only ever waits for I/O that finishes.
//!
//! **Partial transfers.** A non-blocking attempt on a regular file or block
//! device may move only part of the request (the cached pages of a read).
//! That is not the result: the rest goes to a worker, which adds its count,
//! as the kernel's read goes on past the cached part. On a stream a partial
//! read is final (a pipe read returns what is there), while a partial write
//! goes on until everything is written, as a blocking pipe or socket write
//! does.
//!
//! **Claiming.** Each queued or polling request is a job with a state. A
//! worker or the poller claims a job (waiting → running) before it touches
//! the file or the buffer, and a claimed job can no longer be cancelled; a
//! cancellation claims it the other way (waiting → done), completes it with
//! `-ECANCELED` and nobody touches the buffer after that. A cancellation
//! that finds the poller holding the job is remembered: if the poller finds
//! nothing to do, it completes the job as cancelled instead of waiting
//! again. A request with bytes already transferred (the first part of a
//! stream write, or of a file read) reports that count when cancelled,
//! never `-ECANCELED`, so that no byte is lost silently.
//!
//! **Descriptors.** A queued job holds a duplicate of the request's
//! descriptor, as the kernel holds a reference to the file: closing the
//! application's descriptor does not disturb the request. Jobs on the same
//! open file share one duplicate (found by descriptor number, and used only
//! if that number still names a file with the same device, inode and status
//! flags). A job's duplicate is released as soon as the job is done or
//! cancelled, before its event is visible. uaio's own descriptors
//! (duplicates, the poller's eventfd, the eventfds of `io_pgetevents`
//! sleepers) are [`InternalFd`]s: at or above a floor (half the soft
//! `RLIMIT_NOFILE`, at most 4096), so that they never take the low numbers
//! the application reuses. No descriptor is spent per context: waiters
//! sleep on a futex, or, when `io_pgetevents` gives a signal mask, in
//! `ppoll` on an eventfd lent to the sleeping thread, so that the mask is
//! installed atomically. When no duplicate can be had above the floor (or
//! no thread can be started), the request runs in the submitting thread
//! (`io_submit` then blocks, as the kernel's does for buffered I/O and for
//! pipes), and a POLL that is not ready at once completes with `-EAGAIN`:
//! uaio never takes a number below the floor.
//!
//! **Processes sharing memory but not descriptors.** The pool belongs to
//! the process that created it. A child made with `clone(CLONE_VM)` without
//! `CLONE_FILES` that submits through a context of that process resolves
//! descriptors in its own table, which the pool's threads cannot see; such
//! a child never starts a thread either (its exit would wait for it). Its
//! requests therefore run in its submitting thread: `io_submit` blocks for
//! file and stream I/O until it is done, and a POLL that is not ready at
//! once completes with `-EAGAIN`. Such a process never writes or closes the
//! pool's descriptors (their numbers mean nothing in its table): a
//! duplicate it lets go of (cancelling an owner's request) is closed by the
//! owner's threads, completions it produces are published by its own
//! `io_submit`, and waiters sleeping on the futex are woken; a thread of
//! the owner sleeping in `io_pgetevents`
//! with a signal mask is not woken by them (it returns at its timeout, on a
//! signal or with the next completion of the owner), and such a child's
//! own `io_pgetevents` installs its mask just before sleeping, not
//! atomically.
//!
//! **Write order.** Kernel AIO copies a buffered write into the page cache
//! inside `io_submit`, so of two writes to the same bytes the one submitted
//! last is what the file keeps. Workers run jobs in any order, so the
//! buffered writes of one file (regular file by device and inode, block
//! device by device number) form a chain: the first is queued, the others
//! wait behind it, and the worker that finishes one runs the next (a
//! cancelled one is skipped). While such a chain exists, a later buffered
//! write to that file is not tried inline either, even where the file
//! system would take it without blocking. Direct writes are not ordered,
//! as on the kernel, and neither are reads against queued writes (io_uring
//! does not order them either).
//!
//! **Workers.** A direct read or write waits for the device in its worker,
//! so a deep queue needs as many workers as requests in flight: there are
//! at most `UAIO_THREADS` workers, 256 by default, whatever the number of
//! cores. The jobs of one `io_submit` are queued together, and each job
//! that no worker already on its way will take wakes one sleeping worker
//! (the one that slept last) or starts a new one, up to that bound;
//! beyond it, jobs wait in the queue for the next free worker. A worker
//! that has just finished the only job in progress may spin for up to
//! 50 µs for the next one (one worker at a time, and only while such spins
//! keep finding work), since with one request in flight the wake-up of a
//! sleeping worker adds to each request's latency. A worker that has had
//! nothing to do for 10 seconds leaves, and every thread leaves once the
//! last context using this backend is gone; a `fork` child starts from an
//! empty pool.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

use super::{Backend, BackendOp, OpKind};
use crate::sys;
use crate::sys::internal_fds::InternalFd;

const RWF_NOWAIT: i32 = uaio_abi::RWF_NOWAIT as i32;

/// Job state: queued for a worker, or waiting in the poller.
const WAITING: u8 = 0;
/// Job state: claimed by a worker or the poller.
const RUNNING: u8 = 1;
/// Job state: claimed, and a cancellation arrived meanwhile.
const RUNNING_CANCEL: u8 = 2;
/// Job state: completed (by its claimer, or cancelled while waiting).
const DONE: u8 = 3;

/// Longest single futex sleep when the caller gave no timeout: a timed wait
/// returns `EINTR` on a signal whatever the handler's `SA_RESTART`, as
/// `io_getevents` does.
const LONG_SLEEP: Duration = Duration::from_secs(3600);
/// Eventfds kept for `io_pgetevents` sleepers once they are done.
const SPARE_EVENTFDS: usize = 4;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// The requests of one context that a worker or the poller has, by key, and
/// the keys cancelled before their job existed.
#[derive(Debug, Default)]
struct Jobs {
    live: HashMap<u64, Arc<Job>>,
    /// Keys whose cancellation found no job: a submission still on its way
    /// (it completes them as cancelled), or a request that already
    /// completed. At most one key per slot (its newest): an older one can no
    /// longer be submitted.
    early: Vec<u64>,
}

/// Results not yet drained.
#[derive(Debug, Default)]
struct Done {
    list: Vec<(u64, i32)>,
    /// Whoever waits for this list was told since the last drain, by a
    /// thread of the owner (which reaches every kind of sleeper).
    told: bool,
}

/// Per-context state shared with the pool and the poller.
#[derive(Debug)]
struct Shared {
    done: Mutex<Done>,
    ndone: AtomicUsize,
    jobs: Mutex<Jobs>,
    /// Length of `jobs.early`, read without the lock.
    nearly: AtomicUsize,
    /// Futex word, bumped by every completion and wake-up.
    seq: AtomicU32,
    /// Threads sleeping on `seq`.
    sleepers: AtomicU32,
    /// A wake-up for the current or next sleeper.
    kicked: AtomicBool,
    /// Eventfds of threads sleeping in `ppoll` (`io_pgetevents` with a
    /// signal mask), numbers in the owner's table.
    ppollers: Mutex<Vec<i32>>,
    nppoll: AtomicU32,
    notify: Option<Arc<OwnedFd>>,
    notify_on: AtomicBool,
}

/// Whether the calling thread belongs to the process that owns the pool,
/// found out on first need.
#[derive(Debug)]
struct Here {
    owner: i32,
    known: Cell<Option<bool>>,
}

impl Here {
    /// A thread of unknown process.
    fn caller(p: &Pool) -> Here {
        Here { owner: p.owner, known: Cell::new(None) }
    }

    /// A pool thread, which lives in the owner.
    fn pool_thread() -> Here {
        Here { owner: 0, known: Cell::new(Some(true)) }
    }

    fn owner(&self) -> bool {
        if let Some(k) = self.known.get() {
            return k;
        }
        // SAFETY: getpid(2) takes no arguments and cannot fail.
        let k = unsafe { libc::getpid() } == self.owner;
        self.known.set(Some(k));
        k
    }
}

impl Shared {
    /// Publishes a result (the caller made sure it is the only one).
    ///
    /// Only the first result after a drain wakes anyone (or the first from
    /// the owner, which alone reaches every kind of sleeper): a sleeper
    /// (which sleeps only when no result waits) or the progress thread
    /// woken for it takes the later ones too, and a result pushed just
    /// after a drain took the list finds it empty and wakes them itself.
    fn complete(&self, key: u64, res: i32, here: &Here) {
        let tell = {
            let mut d = lock(&self.done);
            d.list.push((key, res));
            // Counted under the lock: a sleeper that finds no result left
            // must find the list empty, which the next result will see.
            self.ndone.store(d.list.len(), Ordering::SeqCst);
            let tell = d.list.len() == 1 || !d.told;
            if tell && here.owner() {
                d.told = true;
            }
            tell
        };
        if !tell {
            return;
        }
        self.signal(here);
        if self.notify_on.load(Ordering::SeqCst) && here.owner() {
            if let Some(n) = &self.notify {
                write_one(n.as_fd());
            }
        }
    }

    /// Wakes whoever sleeps in [`Backend::wait`]. The eventfds of `ppoll`
    /// sleepers are numbers in the owner's table, written only there.
    fn signal(&self, here: &Here) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(&self.seq, futex::Flags::PRIVATE, i32::MAX as u32);
        }
        if self.nppoll.load(Ordering::SeqCst) > 0 && here.owner() {
            for &fd in lock(&self.ppollers).iter() {
                // SAFETY: a sleeper's eventfd, open while it is listed (the
                // sleeper unlists it under this lock before giving it back).
                write_one(unsafe { BorrowedFd::borrow_raw(fd) });
            }
        }
    }

    /// Makes `job` findable by [`Backend::cancel`]; `false` (and nothing
    /// registered) if its key was cancelled already.
    fn register(&self, job: &Arc<Job>) -> bool {
        let mut j = lock(&self.jobs);
        if let Some(i) = j.early.iter().position(|&k| k == job.key) {
            j.early.swap_remove(i);
            self.nearly.store(j.early.len(), Ordering::SeqCst);
            return false;
        }
        j.live.insert(job.key, job.clone());
        true
    }

    /// Takes `key`'s slot out of the cancelled-early list (an older key of
    /// the slot is stale); `true` if `key` itself was there.
    fn take_early(&self, key: u64) -> bool {
        if self.nearly.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut j = lock(&self.jobs);
        let Some(i) = j.early.iter().position(|&k| k as u32 == key as u32) else { return false };
        let k = j.early.swap_remove(i);
        self.nearly.store(j.early.len(), Ordering::SeqCst);
        k == key
    }

    /// Removes the finished `job` and publishes its result.
    fn finish(&self, job: &Job, res: i32, here: &Here) {
        job.state.store(DONE, Ordering::SeqCst);
        // The duplicate goes before the event is visible.
        pool().release(lock(&job.hold).take(), here);
        {
            let mut j = lock(&self.jobs);
            if j.live.get(&job.key).is_some_and(|l| std::ptr::eq(&**l, job)) {
                j.live.remove(&job.key);
            }
        }
        self.complete(job.key, res, here);
    }
}

fn write_one(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Where a read or write stands: what is left to transfer, where, and how
/// much was transferred already.
#[derive(Debug)]
struct Cursor {
    iov: Vec<libc::iovec>,
    off: u64,
    done: i64,
}

// SAFETY: the iovecs point into the application's buffers, which the
// request owns until its completion is reaped; exactly one thread (the
// job's claimer) uses them at a time.
unsafe impl Send for Cursor {}

impl Cursor {
    /// The buffers of `op` (a read or write): uaio's own iovec array for
    /// vectored requests is copied, since the remainder may be adjusted.
    fn new(op: &BackendOp) -> Cursor {
        let iov = match op.kind {
            OpKind::Read | OpKind::Write => {
                vec![libc::iovec { iov_base: op.addr as *mut libc::c_void, iov_len: op.len as usize }]
            }
            OpKind::Readv | OpKind::Writev => {
                // SAFETY: for vectored requests `addr` is the context's own
                // array of `len` iovecs (C layout), alive until the request
                // is harvested, which is after this job completes.
                let v = unsafe { std::slice::from_raw_parts(op.addr as *const uaio_abi::iovec, op.len as usize) };
                v.iter()
                    .map(|e| libc::iovec { iov_base: e.iov_base as *mut libc::c_void, iov_len: e.iov_len as usize })
                    .collect()
            }
            _ => Vec::new(),
        };
        Cursor { iov, off: op.off, done: 0 }
    }

    /// Bytes left to transfer.
    fn remaining(&self) -> u64 {
        self.iov.iter().map(|e| e.iov_len as u64).sum()
    }

    /// Records `n` more bytes transferred and moves past them.
    fn advance(&mut self, n: usize) {
        self.done += n as i64;
        self.off += n as u64;
        let mut n = n;
        let full = self.iov.iter().take_while(|e| {
            if n >= e.iov_len {
                n -= e.iov_len;
                true
            } else {
                false
            }
        });
        let k = full.count();
        self.iov.drain(..k);
        if n > 0 {
            let e = &mut self.iov[0];
            // SAFETY: `n` is less than this iovec's length, so the new base
            // stays inside the same buffer.
            e.iov_base = unsafe { e.iov_base.cast::<u8>().add(n) }.cast();
            e.iov_len -= n;
        }
    }

    /// The request's result after a last call that returned `r`: bytes
    /// moved earlier count even if that call failed.
    fn result(&self, r: i32) -> i32 {
        match (self.done, r) {
            (0, r) => r,
            (d, r) if r < 0 => d as i32,
            (d, r) => (d + r as i64) as i32,
        }
    }

    /// Result of a cancelled request: the bytes moved so far, if any.
    fn cancelled(&self) -> i32 {
        if self.done > 0 {
            self.done as i32
        } else {
            -libc::ECANCELED
        }
    }

    /// One `preadv2`/`pwritev2` of the remainder on `fd`.
    fn io(&self, kind: OpKind, fd: i32, flags: i32) -> i32 {
        prw(kind, fd, self.iov.as_ptr(), self.iov.len(), self.off, flags)
    }
}

/// One `preadv2`/`pwritev2` of `cnt` iovecs at `iov` on `fd`. A stream has
/// no position: AIO ignores the offset there, and -1 is how preadv2 says
/// "no position".
fn prw(kind: OpKind, fd: i32, iov: *const libc::iovec, cnt: usize, off: u64, flags: i32) -> i32 {
    let call = |off: i64| {
        // SAFETY: the iovecs and the buffers they name were validated at
        // submission and belong to the request until its completion is
        // reaped. preadv2/pwritev2 are direct system calls in the C library.
        let r = unsafe {
            match kind {
                OpKind::Read | OpKind::Readv => libc::preadv2(fd, iov, cnt as i32, off, flags),
                _ => libc::pwritev2(fd, iov, cnt as i32, off, flags),
            }
        };
        if r < 0 {
            -errno()
        } else {
            r as i32
        }
    };
    match call(off as i64) {
        r if r == -libc::ESPIPE => call(-1),
        r => r,
    }
}

/// The first, non-blocking attempt of a read or write, on the request's own
/// buffers (no copy); returns the result and the request's byte count.
fn first_try(op: &BackendOp, flags: i32) -> (i32, u64) {
    match op.kind {
        OpKind::Read | OpKind::Write => {
            let one = libc::iovec { iov_base: op.addr as *mut libc::c_void, iov_len: op.len as usize };
            (prw(op.kind, op.fd, &one, 1, op.off, flags), op.len as u64)
        }
        _ => {
            let iov = op.addr as *const libc::iovec;
            let r = prw(op.kind, op.fd, iov, op.len as usize, op.off, flags);
            let total = if r > 0 {
                // SAFETY: as in `Cursor::new`: the context's own array of
                // `len` iovecs, alive until the request is harvested.
                let v = unsafe { std::slice::from_raw_parts(iov, op.len as usize) };
                v.iter().map(|e| e.iov_len as u64).sum()
            } else {
                0
            };
            (r, total)
        }
    }
}

/// A duplicate of an application's open file, shared by the jobs on it and
/// closed with the last of them.
#[derive(Debug)]
struct Held {
    fd: InternalFd,
    /// The pool whose registry lists it.
    pool: &'static Pool,
    /// The application's descriptor number it was taken from.
    app_fd: i32,
    dev: u64,
    ino: u64,
    flags: i32,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut reg = lock(&self.pool.held);
        if reg.get(&self.app_fd).is_some_and(|w| std::ptr::eq(w.as_ptr(), self)) {
            reg.remove(&self.app_fd);
        }
    }
}

/// One queued or polling request.
#[derive(Debug)]
struct Job {
    shared: Arc<Shared>,
    key: u64,
    kind: OpKind,
    /// The held duplicate's number.
    fd: i32,
    rw_flags: i32,
    ioprio: u16,
    poll_mask: u32,
    /// `WAITING`, `RUNNING`, `RUNNING_CANCEL` or `DONE`.
    state: AtomicU8,
    /// Waits in the poller (not in the workers' queue).
    polled: bool,
    /// The duplicate, released as soon as the job is done.
    hold: Mutex<Option<Arc<Held>>>,
    cur: Mutex<Cursor>,
    /// The file whose buffered writes run one after the other, in
    /// submission order (see the module's "Write order").
    order: Option<FileKey>,
}

/// A file as buffered writes are ordered on it: a regular file's device and
/// inode, or a block device's device number (whatever node names it).
type FileKey = (u64, u64);

/// The key under which a buffered write to the file `st` is ordered, if
/// it is one ([`Job::order`]).
fn order_key(kind: OpKind, st: &libc::stat, file_flags: i32) -> Option<FileKey> {
    if !matches!(kind, OpKind::Write | OpKind::Writev) || file_flags & libc::O_DIRECT != 0 {
        return None;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Some((st.st_dev, st.st_ino)),
        libc::S_IFBLK => Some((u64::MAX, st.st_rdev)),
        _ => None,
    }
}

impl Job {
    /// Claims a waiting job for its runner.
    fn claim(&self) -> bool {
        self.state.compare_exchange(WAITING, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Puts a claimed job back to waiting; `false` if a cancellation came
    /// meanwhile (the caller then completes it as cancelled).
    fn unclaim(&self) -> bool {
        self.state.compare_exchange(RUNNING, WAITING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DONE
    }

    /// Runs a claimed job to the end, blocking (workers).
    fn run(&self) -> i32 {
        let cur = lock(&self.cur);
        run_blocking(self.kind, self.fd, &cur, self.rw_flags, self.ioprio)
    }
}

/// Runs a read, write or sync to the end on `fd`, blocking.
fn run_blocking(kind: OpKind, fd: i32, cur: &Cursor, rw_flags: i32, ioprio: u16) -> i32 {
    match kind {
        OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => {
            let r = if ioprio != 0 {
                let old = sys::ioprio_get_thread();
                sys::ioprio_set_thread(ioprio as i32);
                let r = cur.io(kind, fd, rw_flags);
                sys::ioprio_set_thread(old);
                r
            } else {
                cur.io(kind, fd, rw_flags)
            };
            cur.result(r)
        }
        OpKind::Fsync | OpKind::Fdatasync => {
            // SAFETY: plain fsync/fdatasync on a descriptor number.
            let r = unsafe {
                if kind == OpKind::Fsync {
                    libc::fsync(fd)
                } else {
                    libc::fdatasync(fd)
                }
            };
            if r < 0 {
                -errno()
            } else {
                0
            }
        }
        OpKind::Poll => 0,
    }
}

#[derive(Debug, Default)]
struct PoolState {
    queue: VecDeque<Arc<Job>>,
    instances: usize,
    /// Workers alive (the poller not counted).
    threads: usize,
    /// Workers asleep, the most recent last: woken from the end, so that
    /// the same few stay busy and the others reach their idle timeout.
    sleepers: Vec<Arc<Sleeper>>,
    /// Workers woken or started for queued jobs that have not looked at
    /// the queue yet: each will take a job, so a new job needs another.
    seeking: usize,
    /// Jobs handed to the poller since its last pass.
    polls: Vec<Arc<Job>>,
    poller: bool,
    /// The poller's wake-up eventfd, made with the poller and closed when
    /// it leaves.
    poll_wake: Option<Arc<InternalFd>>,
    /// Jobs cancelled since `queue` and `polls` were last swept.
    husks: usize,
    /// Files with a buffered write queued or running: the writes that wait
    /// behind it, in submission order.
    chains: HashMap<FileKey, VecDeque<Arc<Job>>>,
}

/// Sleeper state: listed in [`PoolState::sleepers`], not asleep yet.
const LISTED: u32 = 0;
/// Sleeper state: taken off the list by a waker.
const WOKEN: u32 = 1;
/// Sleeper state: listed, asleep on its futex word.
const ASLEEP: u32 = 2;

/// The futex word of one idle worker: `LISTED`, `WOKEN` or `ASLEEP`.
#[derive(Debug, Default)]
struct Sleeper {
    state: AtomicU32,
}

/// Longest spin of a worker waiting for its next job (see [`Pool::spin`]).
const SPIN: Duration = Duration::from_micros(50);

impl Sleeper {
    /// Looks for a wake-up for at most [`SPIN`] without sleeping, letting
    /// other threads of this processor go first; `true` if woken.
    fn spin(&self) -> bool {
        let start = std::time::Instant::now();
        loop {
            for _ in 0..64 {
                if self.state.load(Ordering::SeqCst) == WOKEN {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= SPIN {
                return false;
            }
            // SAFETY: sched_yield(2) takes no arguments.
            unsafe { libc::sched_yield() };
        }
    }

    /// Waits until woken or `idle` has passed; `true` if woken.
    fn sleep(&self, idle: Duration) -> bool {
        let end = std::time::Instant::now() + idle;
        if self.state.compare_exchange(LISTED, ASLEEP, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return true;
        }
        loop {
            if self.state.load(Ordering::SeqCst) == WOKEN {
                return true;
            }
            let Some(d) = end.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) else {
                return false;
            };
            let ts = futex::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ };
            // Woken, timed out, interrupted or spurious: the loop looks again.
            let _ = futex::wait(&self.state, futex::Flags::PRIVATE, ASLEEP, Some(&ts));
        }
    }

    /// Marks the worker woken; `true` if it sleeps on its futex and needs
    /// [`Sleeper::wake`] (once the pool's lock is let go).
    fn mark(&self) -> bool {
        self.state.swap(WOKEN, Ordering::SeqCst) == ASLEEP
    }

    fn wake(&self) {
        let _ = futex::wake(&self.state, futex::Flags::PRIVATE, 1);
    }
}

impl PoolState {
    /// Takes up to `n` idle workers off the list (counted as seeking);
    /// returns how many, and those asleep, for [`Sleeper::wake`] once the
    /// lock is let go.
    fn take_sleepers(&mut self, n: usize) -> (usize, Vec<Arc<Sleeper>>) {
        let n = n.min(self.sleepers.len());
        let mut v = self.sleepers.split_off(self.sleepers.len() - n);
        v.retain(|s| s.mark());
        self.seeking += n;
        (n, v)
    }
}

/// How long a worker with nothing to do waits for a job before it leaves.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on the workers: enough for one blocked worker per request
/// of a deep queue of direct I/O (which waits for the device in the
/// worker), whatever the number of cores.
const DEFAULT_MAX_THREADS: usize = 256;

#[derive(Debug)]
struct Pool {
    st: Mutex<PoolState>,
    max_threads: usize,
    /// A worker spins.
    spinning: AtomicBool,
    /// How well spinning has paid lately (see [`Pool::spin`]).
    spin_score: AtomicU32,
    /// Chances to spin passed up while the score was 0.
    spin_skips: AtomicU32,
    /// The process whose descriptor table the pool's threads use.
    owner: i32,
    /// Held duplicates by the application's descriptor number.
    held: Mutex<HashMap<i32, Weak<Held>>>,
    /// Eventfds lent to `io_pgetevents` sleepers.
    spare_efds: Mutex<Vec<InternalFd>>,
    /// Duplicates let go of in another process (a CLONE_VM child, where
    /// their numbers mean nothing), closed by the next pool thread or
    /// owner's call that passes by.
    orphans: Mutex<Vec<Arc<Held>>>,
    norphans: AtomicUsize,
    /// `st.chains.len()`, read without the lock.
    nchains: AtomicUsize,
}

static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

fn max_threads() -> usize {
    std::env::var("UAIO_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_MAX_THREADS)
}

/// A new eventfd of uaio's own (high number, close-on-exec, non-blocking).
fn new_eventfd() -> Result<InternalFd, Errno> {
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
    InternalFd::new(fd)
}

/// The process's pool. It exists whenever a [`Threads`] does (created by
/// [`try_pool`] in [`Threads::new`]).
fn pool() -> &'static Pool {
    try_pool().expect("the pool exists while a context uses it")
}

/// The process's pool, created on first use (again in a fork child).
fn try_pool() -> Result<&'static Pool, Errno> {
    let p = POOL.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: pools are never freed (a fork child's old one is leaked).
        return Ok(unsafe { &*p });
    }
    let fresh = Box::into_raw(Box::new(Pool {
        st: Mutex::new(PoolState::default()),
        max_threads: max_threads(),
        spinning: AtomicBool::new(false),
        spin_score: AtomicU32::new(SPIN_SCORE_MAX / 2),
        spin_skips: AtomicU32::new(0),
        // SAFETY: getpid(2) takes no arguments and cannot fail.
        owner: unsafe { libc::getpid() },
        held: Mutex::new(HashMap::new()),
        spare_efds: Mutex::new(Vec::new()),
        orphans: Mutex::new(Vec::new()),
        norphans: AtomicUsize::new(0),
        nchains: AtomicUsize::new(0),
    }));
    match POOL.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published, never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(other) => {
            // SAFETY: ours lost the race and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above.
            Ok(unsafe { &*other })
        }
    }
}

/// Ceiling of [`Pool::spin_score`].
const SPIN_SCORE_MAX: u32 = 16;

impl Pool {
    /// Lets a worker that has just run a job, while no other worker was
    /// active, wait for the next one spinning for a while instead of
    /// sleeping: with one request in flight, the wake-up of a sleeping
    /// worker adds to every request's latency. One worker spins at a time,
    /// and only while spinning pays: each spin that sees no job halves the
    /// score, each that does adds one; at 0 only one chance in 64 is tried
    /// (a busy machine delays the submitter, and a spin then only takes
    /// processor time from others). `true` if woken while spinning.
    fn spin(&self, me: &Sleeper) -> bool {
        let score = self.spin_score.load(Ordering::Relaxed);
        if score == 0 && !self.spin_skips.fetch_add(1, Ordering::Relaxed).is_multiple_of(64) {
            return false;
        }
        if self.spinning.swap(true, Ordering::SeqCst) {
            return false;
        }
        let woken = me.spin();
        self.spinning.store(false, Ordering::SeqCst);
        let score = if woken { (score + 1).min(SPIN_SCORE_MAX) } else { score / 2 };
        self.spin_score.store(score, Ordering::Relaxed);
        woken
    }

    /// A duplicate of the application's `fd` (whose `fstat` is `st`) for a
    /// job: the one other jobs hold if `fd` still names the same file,
    /// otherwise a new one at or above the floor. `None` when there is no
    /// room there (or `fd` is not open).
    fn hold(&'static self, fd: i32, st: &libc::stat) -> Option<Arc<Held>> {
        // SAFETY: F_GETFL on a descriptor number.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return None;
        }
        let same = |h: &Held| h.dev == st.st_dev && h.ino == st.st_ino && h.flags == flags;
        // Dropped outside the lock: the last reference's drop takes it.
        let known = lock(&self.held).get(&fd).and_then(Weak::upgrade);
        if let Some(h) = known.filter(|h| same(h)) {
            return Some(h);
        }
        // SAFETY: `fd` was open a moment ago; if it was closed since, the
        // duplication fails.
        let dup = InternalFd::dup_of(unsafe { BorrowedFd::borrow_raw(fd) }).ok()?;
        let h = Arc::new(Held { fd: dup, pool: self, app_fd: fd, dev: st.st_dev, ino: st.st_ino, flags });
        lock(&self.held).insert(fd, Arc::downgrade(&h));
        Some(h)
    }

    /// Hands registered jobs to the workers: each job that no woken or
    /// starting worker will take wakes a sleeping one or starts a new one,
    /// up to the bound. Returns the jobs if no worker exists to run them.
    fn queue(&'static self, jobs: &mut Vec<Arc<Job>>) -> Result<(), Vec<Arc<Job>>> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut st = lock(&self.st);
        for job in jobs.drain(..) {
            match job.order {
                Some(k) => match st.chains.get_mut(&k) {
                    Some(behind) => behind.push_back(job),
                    None => {
                        st.chains.insert(k, VecDeque::new());
                        st.queue.push_back(job);
                    }
                },
                None => st.queue.push_back(job),
            }
        }
        self.nchains.store(st.chains.len(), Ordering::SeqCst);
        let mut need = st.queue.len().saturating_sub(st.seeking);
        let (taken, woken) = st.take_sleepers(need);
        need -= taken;
        while need > 0 && st.threads < self.max_threads {
            st.threads += 1;
            st.seeking += 1;
            let b = std::thread::Builder::new().name("uaio-worker".into());
            if b.spawn(move || worker(self, true)).is_err() {
                st.threads -= 1;
                st.seeking -= 1;
                break;
            }
            need -= 1;
        }
        if st.threads == 0 {
            // No worker at all: whatever is queued was queued just now
            // (workers leave only once the queue is empty), and so was
            // every chain, each behind its first write in the queue.
            let mut all = Vec::new();
            while let Some(job) = st.queue.pop_front() {
                let behind = job.order.and_then(|k| st.chains.remove(&k));
                all.push(job);
                all.extend(behind.into_iter().flatten());
            }
            self.nchains.store(st.chains.len(), Ordering::SeqCst);
            return Err(all);
        }
        drop(st);
        for s in woken {
            s.wake();
        }
        Ok(())
    }

    /// Wakes every sleeping worker (to leave, or to close orphans).
    fn wake_all(&self) {
        let woken = {
            let mut st = lock(&self.st);
            let n = st.sleepers.len();
            st.take_sleepers(n).1
        };
        for s in woken {
            s.wake();
        }
    }

    /// Hands a registered job to the poller; `Err` if there is none.
    fn watch(&'static self, job: Arc<Job>) -> Result<(), Arc<Job>> {
        let mut st = lock(&self.st);
        if !st.poller {
            let Ok(wake) = new_eventfd().map(Arc::new) else { return Err(job) };
            let w = wake.clone();
            if std::thread::Builder::new().name("uaio-poller".into()).spawn(move || poller(self, w)).is_err() {
                return Err(job);
            }
            st.poller = true;
            st.poll_wake = Some(wake);
        }
        st.polls.push(job);
        wake_poller(&st);
        Ok(())
    }

    /// Counts a job cancelled while queued or polling, and sweeps such jobs
    /// out of the queue and the poller's inbox once they are many.
    fn husk(&self, polled: bool, here: &Here) {
        let mut st = lock(&self.st);
        st.husks += 1;
        if st.husks >= 64 && st.husks * 2 >= st.queue.len() + st.polls.len() {
            // The first write of a chain stays: the worker that takes it
            // starts the next one.
            st.queue.retain(|j| !j.is_done() || j.order.is_some());
            st.polls.retain(|j| !j.is_done());
            st.husks = 0;
        }
        if polled && here.owner() {
            // The poller's current pass may hold it: let it drop it (and the
            // file reference its sleep holds).
            wake_poller(&st);
        }
    }

    /// The next buffered write of the file `k`, once the one before it is
    /// over (run or cancelled); `None` ends the chain.
    fn chain_next(&self, k: FileKey) -> Option<Arc<Job>> {
        let mut st = lock(&self.st);
        let next = st.chains.get_mut(&k).and_then(VecDeque::pop_front);
        if next.is_none() {
            st.chains.remove(&k);
            self.nchains.store(st.chains.len(), Ordering::SeqCst);
        }
        next
    }

    /// Whether a buffered write to the file `k` is queued or running.
    fn chained(&self, k: FileKey) -> bool {
        self.nchains.load(Ordering::SeqCst) > 0 && lock(&self.st).chains.contains_key(&k)
    }

    /// Lets go of a job's duplicate: at once in the owner; in another
    /// process (whose table has something else at that number), left to
    /// the owner's threads, a worker woken for it.
    fn release(&self, held: Option<Arc<Held>>, here: &Here) {
        let Some(h) = held else { return };
        if here.owner() {
            drop(h);
            return;
        }
        let mut o = lock(&self.orphans);
        o.push(h);
        self.norphans.store(o.len(), Ordering::SeqCst);
        drop(o);
        self.wake_all();
    }

    /// Closes the duplicates [`Pool::release`] left (owner's threads only).
    fn reap_orphans(&self) {
        if self.norphans.load(Ordering::SeqCst) == 0 {
            return;
        }
        let v = {
            let mut o = lock(&self.orphans);
            self.norphans.store(0, Ordering::SeqCst);
            std::mem::take(&mut *o)
        };
        drop(v);
    }

    /// An eventfd for a `ppoll` sleeper.
    fn take_efd(&self) -> Option<InternalFd> {
        if let Some(fd) = lock(&self.spare_efds).pop() {
            return Some(fd);
        }
        new_eventfd().ok()
    }

    /// Gives back an eventfd taken with [`Pool::take_efd`], emptied.
    fn put_efd(&self, fd: InternalFd) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&fd, &mut b);
        let mut spare = lock(&self.spare_efds);
        if spare.len() < SPARE_EVENTFDS {
            spare.push(fd);
        }
    }
}

/// Called in a fork child: the parent's threads do not exist here, and its
/// pool's locks may be held; the next use creates a new pool.
pub(crate) fn after_fork_in_child() {
    POOL.store(std::ptr::null_mut(), Ordering::SeqCst);
}

/// Number of pool and poller threads alive now.
pub(crate) fn threads_alive() -> usize {
    let p = POOL.load(Ordering::SeqCst);
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `pool`.
    let st = lock(&unsafe { &*p }.st);
    st.threads + st.poller as usize
}

/// Thread-pool backend state for one context.
#[derive(Debug)]
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

/// What one [`Backend::submit`] call gathers for the workers, handed over
/// together at its end, and what it learnt of the descriptors it met.
#[derive(Debug, Default)]
struct Batch {
    jobs: Vec<Arc<Job>>,
    /// One entry per descriptor number (a few at most are kept): the
    /// engine resolves a descriptor once per `io_submit` too.
    files: Vec<FileFacts>,
    /// The files of the ordered writes among `jobs` ([`Job::order`]).
    ordered: Vec<FileKey>,
}

/// What a batch knows of one descriptor number.
#[derive(Debug)]
struct FileFacts {
    fd: i32,
    st: Option<libc::stat>,
    /// The duplicate its jobs hold, not kept open by the batch: a
    /// duplicate goes as soon as its last job is done.
    held: Weak<Held>,
}

/// Descriptors a batch remembers.
const BATCH_FILES: usize = 8;

impl Batch {
    fn facts(&mut self, fd: i32) -> &mut FileFacts {
        if let Some(i) = self.files.iter().position(|f| f.fd == fd) {
            return &mut self.files[i];
        }
        if self.files.len() >= BATCH_FILES {
            self.files.remove(0);
        }
        self.files.push(FileFacts { fd, st: fstat(fd), held: Weak::new() });
        self.files.last_mut().expect("just pushed")
    }

    /// `fstat` of `fd`, once per batch.
    fn stat(&mut self, fd: i32) -> Option<libc::stat> {
        self.facts(fd).st
    }

    /// [`Pool::hold`], once per batch and descriptor.
    fn hold(&mut self, p: &'static Pool, fd: i32, st: &libc::stat) -> Option<Arc<Held>> {
        let f = self.facts(fd);
        if let Some(h) = f.held.upgrade() {
            return Some(h);
        }
        let h = p.hold(fd, st)?;
        f.held = Arc::downgrade(&h);
        Some(h)
    }
}

/// Runs a registered job that no thread could take in the calling thread,
/// unless it was cancelled meanwhile.
fn run_unhanded(job: &Job, route: Route, here: &Here) {
    if job.claim() {
        let cur = lock(&job.cur);
        let res = match route {
            Route::Poller if job.kind == OpKind::Poll => -libc::EAGAIN,
            _ => run_blocking(job.kind, job.fd, &cur, job.rw_flags, job.ioprio),
        };
        drop(cur);
        job.shared.finish(job, res, here);
    }
}

/// Where a request that cannot complete at once goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Worker,
    Poller,
}

impl Threads {
    /// A backend whose completions signal `notify` while notification is on.
    pub(crate) fn new(notify: Option<Arc<OwnedFd>>) -> Result<Threads, Errno> {
        let p = try_pool()?;
        lock(&p.st).instances += 1;
        Ok(Threads {
            shared: Arc::new(Shared {
                done: Mutex::new(Done::default()),
                ndone: AtomicUsize::new(0),
                jobs: Mutex::new(Jobs::default()),
                nearly: AtomicUsize::new(0),
                seq: AtomicU32::new(0),
                sleepers: AtomicU32::new(0),
                kicked: AtomicBool::new(false),
                ppollers: Mutex::new(Vec::new()),
                nppoll: AtomicU32::new(0),
                notify,
                notify_on: AtomicBool::new(true),
            }),
        })
    }

    fn submit_one(&self, p: &'static Pool, op: &BackendOp, here: &Here, batch: &mut Batch) {
        if self.shared.take_early(op.key) {
            self.shared.complete(op.key, -libc::ECANCELED, here);
            return;
        }
        match op.kind {
            OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => {
                let flags = op.rw_flags as i32;
                // A direct transfer waits for the device even with
                // RWF_NOWAIT: it goes to a worker untried (with the
                // program's RWF_NOWAIT, if it gave one, for its answer).
                let direct = sys::direct_hint::is_direct(op.fd);
                if !direct && flags & RWF_NOWAIT == 0 && self.behind_writes(p, op, batch) {
                    // After the file's queued writes, in order.
                    let st = batch.stat(op.fd);
                    return self.start(p, op, Cursor::new(op), Route::Worker, st, here, batch);
                }
                let (r, total) = if direct { (-libc::EAGAIN, 0) } else { first_try(op, flags | RWF_NOWAIT) };
                if flags & RWF_NOWAIT != 0 && !direct {
                    self.shared.complete(op.key, r, here);
                    return;
                }
                let would_block = r == -libc::EAGAIN || r == -libc::EOPNOTSUPP;
                let partial = r > 0 && (r as u64) < total;
                if !would_block && !partial {
                    self.shared.complete(op.key, r, here);
                    return;
                }
                let st = batch.stat(op.fd);
                let file = st.as_ref().is_none_or(is_regular_or_block);
                let write = matches!(op.kind, OpKind::Write | OpKind::Writev);
                if partial {
                    // A stream read returns what was there; anything else
                    // goes on with the rest.
                    if !file && !write {
                        self.shared.complete(op.key, r, here);
                        return;
                    }
                }
                let mut cur = Cursor::new(op);
                if partial {
                    cur.advance(r as usize);
                }
                let route = if file { Route::Worker } else { Route::Poller };
                self.start(p, op, cur, route, st, here, batch);
            }
            OpKind::Fsync | OpKind::Fdatasync => {
                let st = batch.stat(op.fd);
                self.start(p, op, Cursor::new(op), Route::Worker, st, here, batch);
            }
            OpKind::Poll => {
                let mut pfd = libc::pollfd { fd: op.fd, events: op.poll_mask as i16, revents: 0 };
                // SAFETY: poll(2) on one pollfd, no waiting.
                let n = unsafe { libc::poll(&mut pfd, 1, 0) };
                if n > 0 {
                    self.shared.complete(op.key, (pfd.revents as u16) as i32, here);
                } else {
                    let st = batch.stat(op.fd);
                    self.start(p, op, Cursor::new(op), Route::Poller, st, here, batch);
                }
            }
        }
    }

    /// Whether `op` is a buffered write to a file with a buffered write
    /// queued or running (in the pool, or in this batch on its way there):
    /// it must then run after them.
    fn behind_writes(&self, p: &Pool, op: &BackendOp, batch: &mut Batch) -> bool {
        if !matches!(op.kind, OpKind::Write | OpKind::Writev) {
            return false;
        }
        if p.nchains.load(Ordering::SeqCst) == 0 && batch.ordered.is_empty() {
            return false;
        }
        let Some(k) = batch.stat(op.fd).and_then(|st| order_key(op.kind, &st, 0)) else { return false };
        batch.ordered.contains(&k) || p.chained(k)
    }

    /// Hands a request that cannot complete now to a worker or the poller,
    /// or runs it here when they cannot take it.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        p: &'static Pool,
        op: &BackendOp,
        cur: Cursor,
        route: Route,
        st: Option<libc::stat>,
        here: &Here,
        batch: &mut Batch,
    ) {
        let held = match st {
            Some(st) if here.owner() => batch.hold(p, op.fd, &st),
            _ => None,
        };
        let Some(held) = held else {
            return self.run_here(op, &cur, route, here);
        };
        let order = st.and_then(|st| order_key(op.kind, &st, held.flags));
        let job = Arc::new(Job {
            shared: self.shared.clone(),
            key: op.key,
            kind: op.kind,
            fd: held.fd.as_raw_fd(),
            rw_flags: op.rw_flags as i32,
            ioprio: op.ioprio,
            poll_mask: op.poll_mask,
            state: AtomicU8::new(WAITING),
            polled: route == Route::Poller,
            hold: Mutex::new(Some(held)),
            cur: Mutex::new(cur),
            order,
        });
        if !self.shared.register(&job) {
            let res = lock(&job.cur).cancelled();
            drop(job);
            self.shared.complete(op.key, res, here);
            return;
        }
        match route {
            Route::Worker => {
                if let Some(k) = order.filter(|k| !batch.ordered.contains(k)) {
                    batch.ordered.push(k);
                }
                batch.jobs.push(job)
            }
            Route::Poller => {
                if let Err(job) = p.watch(job) {
                    run_unhanded(&job, route, here);
                }
            }
        }
    }

    /// Runs a request in the submitting thread, on the application's own
    /// descriptor: blocking for reads, writes and syncs; a POLL not ready
    /// completes with `-EAGAIN`.
    fn run_here(&self, op: &BackendOp, cur: &Cursor, route: Route, here: &Here) {
        let res = if route == Route::Poller && op.kind == OpKind::Poll {
            -libc::EAGAIN
        } else {
            run_blocking(op.kind, op.fd, cur, op.rw_flags as i32, op.ioprio)
        };
        self.shared.complete(op.key, res, here);
    }

    /// Sleeps on the futex `seq`.
    fn wait_futex(&self, timeout: Option<Duration>) -> Result<(), Errno> {
        let sh = &self.shared;
        sh.sleepers.fetch_add(1, Ordering::SeqCst);
        let seq = sh.seq.load(Ordering::SeqCst);
        let r = if sh.kicked.swap(false, Ordering::SeqCst) || self.has_completions() {
            Ok(())
        } else {
            let d = timeout.unwrap_or(LONG_SLEEP);
            let ts = futex::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ };
            match futex::wait(&sh.seq, futex::Flags::PRIVATE, seq, Some(&ts)) {
                Err(Errno::TIMEDOUT) if timeout.is_some() => Err(Errno::TIME),
                Err(Errno::INTR) => Err(Errno::INTR),
                _ => Ok(()),
            }
        };
        sh.sleepers.fetch_sub(1, Ordering::SeqCst);
        sh.kicked.store(false, Ordering::SeqCst);
        r
    }

    /// Sleeps in `ppoll` on a lent eventfd with `mask` installed atomically.
    fn wait_ppoll(&self, p: &Pool, efd: InternalFd, timeout: Option<Duration>, mask: &u64) -> Result<(), Errno> {
        let sh = &self.shared;
        let fd = efd.as_raw_fd();
        {
            let mut l = lock(&sh.ppollers);
            l.push(fd);
            sh.nppoll.fetch_add(1, Ordering::SeqCst);
        }
        let r = if sh.kicked.swap(false, Ordering::SeqCst) || self.has_completions() {
            Ok(1)
        } else {
            sys::ppoll_one(fd, timeout, Some(mask))
        };
        {
            let mut l = lock(&sh.ppollers);
            if let Some(i) = l.iter().position(|&x| x == fd) {
                l.swap_remove(i);
            }
            sh.nppoll.fetch_sub(1, Ordering::SeqCst);
        }
        sh.kicked.store(false, Ordering::SeqCst);
        p.put_efd(efd);
        match r {
            Ok(0) => Err(Errno::TIME),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let p = pool();
        let mut st = lock(&p.st);
        st.instances -= 1;
        let last = st.instances == 0;
        if Here::caller(p).owner() {
            wake_poller(&st);
        }
        drop(st);
        p.wake_all();
        if last {
            // Nothing of the pool outlives the last context: the poller and
            // the workers leave, and the spare eventfds go.
            drop(std::mem::take(&mut *lock(&p.spare_efds)));
        }
    }
}

/// Wakes the poller, if it exists (owner's threads only).
fn wake_poller(st: &PoolState) {
    if let Some(w) = &st.poll_wake {
        write_one(w.as_fd());
    }
}

fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: fstat(2) into a zeroed struct; an invalid descriptor just fails.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st)
    }
}

fn is_regular_or_block(st: &libc::stat) -> bool {
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFBLK)
}

/// A worker: runs queued jobs; sleeps when there is none, and leaves after
/// [`IDLE_TIMEOUT`] without one or once no context uses the pool.
/// `seeking`: started for a queued job (counted in [`PoolState::seeking`]).
fn worker(p: &'static Pool, mut seeking: bool) {
    let here = Here::pool_thread();
    let me = Arc::new(Sleeper::default());
    // Whether a job ran since the last sleep.
    let mut ran = false;
    // The next write of a chain whose previous one this worker ran.
    let mut next: Option<Arc<Job>> = None;
    loop {
        let job = if next.is_some() {
            next.take()
        } else {
            let mut st = lock(&p.st);
            loop {
                if seeking {
                    st.seeking -= 1;
                    seeking = false;
                }
                if let Some(j) = st.queue.pop_front() {
                    break Some(j);
                }
                if st.instances == 0 {
                    st.threads -= 1;
                    drop(st);
                    p.reap_orphans();
                    return;
                }
                if p.norphans.load(Ordering::SeqCst) > 0 {
                    break None;
                }
                me.state.store(LISTED, Ordering::SeqCst);
                st.sleepers.push(me.clone());
                let alone = st.threads == st.sleepers.len();
                drop(st);
                let woken = (ran && alone && p.spin(&me)) || me.sleep(IDLE_TIMEOUT);
                ran = false;
                st = lock(&p.st);
                // A waker that marked us took us off the list and counted
                // us as seeking; otherwise we are still listed.
                seeking = me.state.load(Ordering::SeqCst) == WOKEN;
                if !seeking {
                    if let Some(i) = st.sleepers.iter().position(|s| Arc::ptr_eq(s, &me)) {
                        st.sleepers.remove(i);
                    }
                    if !woken && st.queue.is_empty() {
                        st.threads -= 1;
                        drop(st);
                        p.reap_orphans();
                        return;
                    }
                }
            }
        };
        p.reap_orphans();
        // A job cancelled while queued is done already: leave it alone.
        let Some(job) = job else { continue };
        if job.claim() {
            let r = job.run();
            job.shared.finish(&job, r, &here);
            ran = true;
        }
        if let Some(k) = job.order {
            next = p.chain_next(k);
        }
    }
}

/// Readiness events a request waits for.
fn poll_events(job: &Job) -> i16 {
    match job.kind {
        OpKind::Read | OpKind::Readv => libc::POLLIN | libc::POLLRDNORM,
        OpKind::Write | OpKind::Writev => libc::POLLOUT | libc::POLLWRNORM,
        _ => {
            let mut m = job.poll_mask as i16;
            if m & libc::POLLIN != 0 {
                m |= libc::POLLRDNORM;
            }
            if m & libc::POLLOUT != 0 {
                m |= libc::POLLWRNORM;
            }
            m
        }
    }
}

/// One non-blocking attempt of a claimed stream read or write the poller
/// found ready. Returns the result when the job is over, `None` when it must
/// wait again.
fn attempt(job: &Job) -> Option<i32> {
    let mut cur = lock(&job.cur);
    let r = cur.io(job.kind, job.fd, job.rw_flags | RWF_NOWAIT);
    let write = matches!(job.kind, OpKind::Write | OpKind::Writev);
    if r == -libc::EAGAIN {
        return None;
    }
    if write && r > 0 && (r as u64) < cur.remaining() {
        cur.advance(r as usize);
        return None;
    }
    Some(cur.result(r))
}

fn poller(p: &'static Pool, wake: Arc<InternalFd>) {
    let here = Here::pool_thread();
    let mut jobs: Vec<Arc<Job>> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        p.reap_orphans();
        {
            let mut st = lock(&p.st);
            jobs.append(&mut st.polls);
            // Cancelled jobs are done already; their duplicates are closed.
            jobs.retain(|j| !j.is_done());
            if st.instances == 0 && jobs.is_empty() {
                // Every context is gone (destroy cancels what polls).
                st.poller = false;
                st.poll_wake = None;
                return;
            }
        }
        fds.clear();
        fds.push(libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(jobs.iter().map(|j| libc::pollfd { fd: j.fd, events: poll_events(j), revents: 0 }));
        // SAFETY: poll(2) over a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(wake.as_fd(), &mut b);
        }
        for (j, f) in jobs.iter().zip(fds[1..].iter()) {
            // A job cancelled during the sleep is done: its descriptor
            // number may name another file by now, and is not used.
            if f.revents == 0 || !j.claim() {
                continue;
            }
            let res = if j.kind == OpKind::Poll { Some((f.revents as u16) as i32) } else { attempt(j) };
            match res {
                Some(r) => j.shared.finish(j, r, &here),
                None => {
                    if !j.unclaim() {
                        // Cancelled while we held it, and nothing happened.
                        let r = lock(&j.cur).cancelled();
                        j.shared.finish(j, r, &here);
                    }
                }
            }
        }
    }
}

impl Backend for Threads {
    fn submit(&self, ops: &[BackendOp]) -> Result<(), Errno> {
        let p = pool();
        let here = Here::caller(p);
        if p.norphans.load(Ordering::SeqCst) > 0 && here.owner() {
            p.reap_orphans();
        }
        let mut batch = Batch::default();
        for op in ops {
            self.submit_one(p, op, &here, &mut batch);
        }
        if let Err(jobs) = p.queue(&mut batch.jobs) {
            for job in jobs {
                run_unhanded(&job, Route::Worker, &here);
            }
        }
        Ok(())
    }

    fn drain(&self, sink: &mut dyn FnMut(u64, i32)) -> usize {
        if self.shared.ndone.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let v = {
            let mut d = lock(&self.shared.done);
            d.told = false;
            self.shared.ndone.store(0, Ordering::SeqCst);
            std::mem::take(&mut d.list)
        };
        for &(key, res) in &v {
            sink(key, res);
        }
        v.len()
    }

    fn has_completions(&self) -> bool {
        self.shared.ndone.load(Ordering::SeqCst) > 0
    }

    fn wait(&self, _min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        let Some(mask) = sigmask else { return self.wait_futex(timeout) };
        let p = pool();
        if Here::caller(p).owner() {
            if let Some(efd) = p.take_efd() {
                return self.wait_ppoll(p, efd, timeout, mask);
            }
        }
        // No eventfd this process can use: the mask goes in just before the
        // sleep. A signal it unblocks that is pending already is taken now.
        let pending = sys::pending_signals();
        sys::set_signal_mask(*mask);
        let r = if pending & !*mask != 0 { Err(Errno::INTR) } else { self.wait_futex(timeout) };
        sys::block_async_signals();
        r
    }

    fn wake(&self) {
        self.shared.kicked.store(true, Ordering::SeqCst);
        self.shared.signal(&Here::caller(pool()));
    }

    fn cancel(&self, key: u64) {
        let job = {
            let mut j = lock(&self.shared.jobs);
            match j.live.get(&key) {
                Some(job) => job.clone(),
                None => {
                    // Not registered yet (its submission is on its way) or
                    // over already: remembered, one key per slot.
                    j.early.retain(|&k| k as u32 != key as u32);
                    j.early.push(key);
                    self.shared.nearly.store(j.early.len(), Ordering::SeqCst);
                    return;
                }
            }
        };
        loop {
            match job.state.compare_exchange(WAITING, DONE, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(RUNNING) => {
                    let to = RUNNING_CANCEL;
                    if job.state.compare_exchange(RUNNING, to, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        // Ours: nobody will touch the file or the buffer again.
        let here = Here::caller(pool());
        let res = lock(&job.cur).cancelled();
        self.shared.finish(&job, res, &here);
        pool().husk(job.polled, &here);
    }

    fn set_notify(&self, on: bool) {
        self.shared.notify_on.store(on, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(lens: &[usize]) -> (Vec<u8>, Cursor) {
        let total: usize = lens.iter().sum();
        let mut buf = vec![0u8; total];
        let mut iov = Vec::new();
        let mut at = 0;
        for &l in lens {
            // SAFETY: `at` stays within `buf`.
            let base = unsafe { buf.as_mut_ptr().add(at) };
            iov.push(libc::iovec { iov_base: base.cast(), iov_len: l });
            at += l;
        }
        (buf, Cursor { iov, off: 100, done: 0 })
    }

    #[test]
    fn advance_moves_through_iovecs() {
        let (buf, mut c) = cursor(&[4, 0, 8, 4]);
        let base = buf.as_ptr() as usize;
        c.advance(2);
        assert_eq!((c.done, c.off, c.remaining()), (2, 102, 14));
        assert_eq!(c.iov[0].iov_base as usize, base + 2);
        c.advance(2);
        // The exhausted first iovec and the empty one are gone.
        assert_eq!(c.iov.len(), 2);
        assert_eq!((c.iov[0].iov_base as usize, c.iov[0].iov_len), (base + 4, 8));
        c.advance(9);
        assert_eq!(c.iov.len(), 1);
        assert_eq!((c.iov[0].iov_base as usize, c.iov[0].iov_len), (base + 13, 3));
        c.advance(3);
        assert!(c.iov.is_empty());
        assert_eq!((c.done, c.off, c.remaining()), (16, 116, 0));
    }

    #[test]
    fn results_count_earlier_bytes() {
        let (_buf, mut c) = cursor(&[16]);
        assert_eq!(c.result(-libc::EIO), -libc::EIO);
        assert_eq!(c.cancelled(), -libc::ECANCELED);
        c.advance(4);
        assert_eq!(c.result(12), 16);
        assert_eq!(c.result(0), 4);
        assert_eq!(c.result(-libc::EIO), 4);
        assert_eq!(c.cancelled(), 4);
    }
}
