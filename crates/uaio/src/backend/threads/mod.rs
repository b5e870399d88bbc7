//! The thread-pool backend, for hosts where io_uring is refused.
//!
//! What can complete without blocking is done inline by the submitting
//! thread: reads and writes are first tried with `RWF_NOWAIT`, so cached data
//! costs one system call and no thread hop. What would block goes elsewhere:
//! reads and writes of regular files and block devices, and syncs, to a
//! bounded pool of named worker threads; reads and writes of pipes, sockets
//! and other pollable files, and `IOCB_CMD_POLL`, to one poller thread that
//! waits for readiness with `poll(2)` and retries without blocking (a file
//! that refuses `RWF_NOWAIT`, such as some character devices, is read or
//! written without the flag once found ready, as io_uring does). A worker
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
//! system would take it without blocking. A sync, or a direct read or
//! write, of a file with such a chain joins it, since kernel AIO's sees
//! the writes submitted before it done (with none, it runs at once). Direct writes are not ordered,
//! as on the kernel, and neither are reads against queued writes (io_uring
//! does not order them either).
//!
//! **Direct lane.** Reads and writes of files open `O_DIRECT` go first to
//! one kernel AIO context of the process's own, with `RWF_NOWAIT`, and
//! reach a worker only when the kernel would have waited (see `lane.rs`).
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

use super::{Backend, BackendOp, FileKey, OpKind, Order};
use crate::sync::lock;
use crate::sys;
use crate::sys::internal_fds::InternalFd;
use crate::sys::FileStat;
use rustix::io::Errno;
use rustix::thread::futex;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The hasher of the pool's maps. Their keys are uaio's own numbers (a
/// request's key, a descriptor number, a file's device and inode), which
/// no one picks to collide against another party, so the standard
/// library's SipHash, which guards against that, is not needed; it cost
/// about 140 instructions a look-up, three look-ups a request. A multiply
/// and shift per word mixes the bits into the low ones that choose a
/// bucket and the high ones the table compares.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map of the pool's, hashed with [`KeyHasher`].
pub(super) type KeyMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<KeyHasher>>;

mod job;
mod lane;
mod pool;
mod shared;
mod submit;
mod workers;

use job::*;
use lane::*;
use pool::*;
use shared::*;
use submit::*;
use workers::*;

pub(crate) use pool::{after_fork_in_child, file_io_pending, threads_alive};

const RWF_NOWAIT: i32 = uaio_abi::RWF_NOWAIT as i32;

/// Longest single `ppoll` sleep of a waiter (the wait goes on after it):
/// the eventfds it sleeps on live at numbers the program can close or take
/// over (`close_range` in a daemon), and a sleeper whose eventfd is gone
/// hears of nothing; it looks again at least this often. A waiter of a
/// thread-pool context was seen asleep for ever after `close_range(4, ~0)`
/// and `io_destroy`.
const PPOLL_CAP: Duration = Duration::from_secs(1);

/// Longest single futex sleep when the caller gave no timeout: a timed wait
/// returns `EINTR` on a signal whatever the handler's `SA_RESTART`, as
/// `io_getevents` does.
const LONG_SLEEP: Duration = Duration::from_secs(3600);

/// Thread-pool backend state for one context.
#[derive(Debug)]
pub(crate) struct Threads {
    shared: Arc<Shared>,
    /// Counted in the pool's `instances` (until destroyed or dropped).
    counted: AtomicBool,
}

impl Threads {
    /// A backend whose completions signal `notify` while notification is on.
    pub(crate) fn new(notify: Option<Arc<OwnedFd>>) -> Result<Threads, Errno> {
        let p = try_pool()?;
        lock(&p.st).instances += 1;
        if notify.is_some() {
            p.start_poller();
        }
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
                inlane: AtomicUsize::new(0),
            }),
            counted: AtomicBool::new(true),
        })
    }

    /// A waiter whose context has one request in the pool, queued and not
    /// claimed by a worker yet, runs it itself: its result is then there
    /// when the waiter returns, with no hand-over to a worker and no
    /// wake-up back, which cost more than a direct read. With more in
    /// flight it does not: it would sit in one request while others
    /// complete. Only for waits without a time limit or a signal mask,
    /// since the job blocks this thread until it is done (a read, write or
    /// sync of a file, which ends by itself). Signals are held back
    /// meanwhile: one that arrives is delivered once the job is done, and
    /// the wait then ends with `EINTR`, as the kernel's ends when
    /// interrupted (with the job's event, which is there by then). `None`
    /// when it ran nothing.
    fn help(&self, here: &Here) -> Option<Result<(), Errno>> {
        let p = pool();
        if !here.owner() || lock(&self.shared.jobs).live.len() != 1 {
            return None;
        }
        let job = p.take_job_of(&self.shared)?;
        let mask = sys::block_async_signals();
        if !job.claim() {
            // Cancelled meanwhile: done already.
            sys::set_signal_mask(mask);
            return None;
        }
        let r = job.run();
        job.shared.finish(&job, r, here);
        let interrupted = sys::pending_signals() & !mask != 0;
        sys::set_signal_mask(mask);
        Some(if interrupted { Err(Errno::INTR) } else { Ok(()) })
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
            match crate::sync::asleep(|| futex::wait(&sh.seq, futex::Flags::PRIVATE, seq, Some(&ts))) {
                Err(Errno::TIMEDOUT) if timeout.is_some() => Err(Errno::TIME),
                Err(Errno::INTR) => Err(Errno::INTR),
                _ => Ok(()),
            }
        };
        sh.sleepers.fetch_sub(1, Ordering::SeqCst);
        sh.kicked.store(false, Ordering::SeqCst);
        r
    }

    /// Sleeps in `ppoll` on a lent eventfd with `mask` (if any) installed
    /// atomically, and on the eventfd of `lane` (if given, watched by
    /// [`Pool::lane_watch`]): a request of this context that completes in
    /// the lane then wakes this thread itself, which completes what the
    /// lane holds, where the reaper would have to wake and then wake it.
    fn wait_ppoll(
        &self,
        p: &'static Pool,
        efd: InternalFd,
        timeout: Option<Duration>,
        mask: Option<&u64>,
        lane: Option<Arc<Lane>>,
        here: &Here,
    ) -> Result<(), Errno> {
        let sh = &self.shared;
        let fd = efd.as_raw_fd();
        let fds = [fd, lane.as_ref().map_or(-1, |l| l.efd())];
        let fds = if lane.is_some() { &fds[..] } else { &fds[..1] };
        {
            let mut l = lock(&sh.ppollers);
            l.push(fd);
            sh.nppoll.fetch_add(1, Ordering::SeqCst);
        }
        // At most PPOLL_CAP at a time: see there.
        let capped = Some(timeout.map_or(PPOLL_CAP, |t| t.min(PPOLL_CAP)));
        let r = if sh.kicked.swap(false, Ordering::SeqCst) || self.has_completions() {
            Ok(0b11)
        } else {
            crate::sync::asleep(|| sys::ppoll_fds(fds, capped, mask))
        };
        let ready = *r.as_ref().unwrap_or(&0b11);
        {
            let mut l = lock(&sh.ppollers);
            if let Some(i) = l.iter().position(|&x| x == fd) {
                l.swap_remove(i);
            }
            sh.nppoll.fetch_sub(1, Ordering::SeqCst);
        }
        sh.kicked.store(false, Ordering::SeqCst);
        p.put_efd(efd, ready & 1 != 0);
        if let Some(l) = lane {
            l.unwatch(p, here, ready & 2 != 0);
        }
        match r {
            Ok(0) if self.has_completions() => Ok(()),
            Ok(0) => Err(Errno::TIME),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl Threads {
    /// This context no longer counts in the pool's `instances`: when none
    /// is left, the pool's threads leave.
    fn uncount(&self) {
        if !self.counted.swap(false, Ordering::SeqCst) {
            return;
        }
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

impl Backend for Threads {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn destroyed(&self) {
        self.uncount();
    }

    fn submit(&self, ops: &[BackendOp]) -> Result<(), super::Refused> {
        let p = pool();
        let here = Here::caller(p);
        if p.norphans.load(Ordering::SeqCst) > 0 && here.owner() {
            p.reap_orphans();
        }
        let mut batch = Batch::default();
        for op in ops {
            self.submit_one(p, op, &here, &mut batch);
        }
        p.lane_submit(&mut batch.lane, &mut batch.jobs);
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
        let mut v = {
            let mut d = lock(&self.shared.done);
            d.told = false;
            self.shared.ndone.store(0, Ordering::SeqCst);
            let spare = std::mem::take(&mut d.spare);
            std::mem::replace(&mut d.list, spare)
        };
        for &(key, res) in &v {
            sink(key, res);
        }
        let n = v.len();
        v.clear();
        let mut d = lock(&self.shared.done);
        if d.spare.capacity() < v.capacity() {
            d.spare = v;
        }
        n
    }

    fn has_completions(&self) -> bool {
        self.shared.ndone.load(Ordering::SeqCst) > 0
    }

    fn wait(&self, _min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        let p = pool();
        // One look at which process this is, for the whole wait.
        let here = Here::caller(p);
        if timeout.is_none() && sigmask.is_none() {
            if let Some(r) = self.help(&here) {
                return r;
            }
        }
        // With requests of this context in the direct lane, or a signal
        // mask to install, the sleep is a `ppoll` on eventfds (numbers in
        // the owner's table).
        let watch = self.shared.inlane.load(Ordering::SeqCst) > 0;
        if (sigmask.is_some() || watch) && here.owner() {
            let lane = if watch { p.lane_watch(&self.shared) } else { None };
            if sigmask.is_some() || lane.is_some() {
                match p.take_efd() {
                    Some(efd) => return self.wait_ppoll(p, efd, timeout, sigmask, lane, &here),
                    None => {
                        if let Some(l) = lane {
                            l.unwatch(p, &here, false);
                        }
                    }
                }
            }
        }
        let Some(mask) = sigmask else { return self.wait_futex(timeout) };
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

    fn complete_if_ready(&self, key: u64) -> bool {
        // A POLL handed over is in the table until its completion is
        // on its way (see `Shared::finish`): not there, it is over.
        let Some(job) = lock(&self.shared.jobs).live.get(&key).cloned() else { return true };
        if job.kind != OpKind::Poll {
            return false;
        }
        let mut spins = 0;
        while !job.claim() {
            // The poller holds it, found ready (it completes it with its
            // events at once), or another cancel looks at it: the result
            // is awaited, a short while.
            match job.state.load(Ordering::SeqCst) {
                RUNNING if spins < 1000 => {
                    spins += 1;
                    std::thread::yield_now();
                }
                DONE => return true,
                _ => return false,
            }
        }
        // Ours until put back: the poller passes it by.
        let here = Here::caller(pool());
        let mut p = libc::pollfd { fd: job.fd, events: workers::poll_events(&job), revents: 0 };
        // SAFETY: poll(2) of one pollfd on the job's own duplicate, which
        // stays open while the job is claimed; no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n == 1 && p.revents != 0 {
            self.shared.finish(&job, (p.revents as u16) as i32, &here);
            pool().husk(job.polled, &here);
            return true;
        }
        job.unclaim_or_cancel(&here);
        false
    }

    fn set_notify(&self, on: bool) {
        self.shared.notify_on.store(on, Ordering::SeqCst);
    }
}
