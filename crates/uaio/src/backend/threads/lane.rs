//! The direct lane: the thread pool's `O_DIRECT` reads and writes go to
//! one kernel AIO context of the process's own, with `RWF_NOWAIT`, instead
//! of one blocked worker each.
//!
//! A direct transfer waits for the device in whichever thread runs it, so
//! on workers a queue of 32 needs 32 threads, each request a hand-over to
//! one and a wake-up back. Where io_uring is refused, kernel AIO usually is
//! not (Docker's default seccomp profile allows it), and for direct I/O it
//! is what the kernel does best: `io_submit` issues the bio and the
//! interrupt completes it. The lane keeps uaio's promises on top of it:
//!
//! - **`io_submit` does not wait for the device.** Each iocb carries
//!   `RWF_NOWAIT`: where the kernel would sleep (no request tag free, an
//!   extent to read, cached pages to write back, a lock taken, a write that
//!   extends the file) it answers `-EAGAIN` and the request goes to a
//!   worker, as before. A request whose program asked for `RWF_NOWAIT`
//!   itself gets that answer as its result.
//! - **`aio-max-nr` is never uaio's limit.** The lane takes
//!   [`LANE_EVENTS`] slots of the host's count once per process, while a
//!   thread-pool context exists; when `io_setup` is refused (the count
//!   used up, a seccomp filter, no `CONFIG_AIO`), direct requests go to
//!   workers and the lane is tried again a second later at the earliest.
//!   Contexts themselves still take nothing from that count.
//! - **Requests are the pool's jobs.** A lane request is a claimed job
//!   (like one a worker is running): it holds its descriptor's duplicate
//!   (for a worker, should the kernel answer `EAGAIN`; the iocb names the
//!   program's descriptor, see [`iocb_of`]), a cancellation finds it
//!   running, and its completion goes through [`Shared::finish`]. It is
//!   never ordered: a direct request behind a file's queued buffered
//!   writes goes to the workers, which keep that order. A request alone
//!   in flight takes the lane too: its waiter sleeps on the lane's
//!   eventfd, and the completion wakes it alone, as kernel AIO's does (on
//!   a worker, the completion woke the worker, which then woke the
//!   waiter, mostly on the other processor).
//!
//! One thread, `uaio-reaper`, completes the lane's jobs that waiters do
//! not take (see below). It leaves, destroying the lane's context, once the
//! lane has nothing in flight, no waiter watches it, and no thread-pool
//! context is left (within a second) or nothing came for [`IDLE_TIMEOUT`].
//! A fork child starts without a lane (the kernel context belongs to the
//! parent's memory). `UAIO_DIRECT_LANE=0` turns the lane off.
//!
//! Every lane request also signals the lane's eventfd when it completes
//! (`IOCB_FLAG_RESFD`). A waiter whose context has requests in the lane
//! sleeps on that eventfd beside its own ([`Pool::lane_watch`]): the
//! completion wakes it directly, as the kernel's wakes a kernel AIO
//! waiter, and it takes what the lane holds itself, where the reaper
//! would wake and then wake it.
//!
//! The reaper stays out of the way of such waiters ([`reaper`]): while
//! waiters watch the lane, or did within the last [`WATCHED_GRACE`], it
//! sleeps that long at a time and then takes only what nobody watching
//! was left to take; otherwise it sleeps on the eventfd and takes each
//! completion as it comes. A reaper that woke for every completion split
//! the device's batches between itself and the waiter (each took part of
//! them, and the program resubmitted them in pieces), and on a request
//! alone in flight cost a second wake-up on the processor the interrupt
//! came to.

use super::*;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

/// Requests the lane's context is made for (`io_setup`'s `nr_events`; the
/// kernel counts twice as many, rounded, against `aio-max-nr`), and the
/// most the lane has in flight; more wait for workers.
pub(super) const LANE_EVENTS: usize = 256;

/// The most refused jobs a worker gives back to the lane in one
/// `io_submit` ([`Pool::run_refused`]).
const WORKER_BATCH: usize = 32;

/// How long the reaper sleeps before it looks whether it should leave.
const REAPER_TICK: Duration = Duration::from_secs(1);

/// How long the reaper leaves the lane's completions to waiters after the
/// last watch began: the most an event that completes between two waits
/// of a program (and that no later wait takes) waits for the reaper.
const WATCHED_GRACE: Duration = Duration::from_micros(200);

/// Longest sleep of the reaper on the lane's eventfd while requests are in
/// flight: it sleeps on a number the program could take over (closing it,
/// or putting a file of its own there), and then looks again at least this
/// often.
const EVENTFD_CAP: Duration = Duration::from_millis(100);

/// How long watchers that neither end a watch nor begin one, while the
/// lane has nothing in flight, may still be live (a waiter's sleep ends
/// within `PPOLL_CAP`, and with it the watch): beyond, they are gone.
const STALE_WATCH: Duration = Duration::from_secs(2);

/// After a refused `io_setup`, how long direct requests go to workers
/// before the lane is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The lane: the kernel context and what it has in flight.
#[derive(Debug)]
pub(super) struct Lane {
    ctx: u64,
    /// Requests submitted (or about to be) and not yet completed; changed
    /// upward only under [`Pool::lane`]'s lock.
    inflight: AtomicUsize,
    /// The eventfd every lane request signals when it completes
    /// (`IOCB_FLAG_RESFD`), which a waiter of a context with requests in
    /// the lane watches (see [`Pool::lane_watch`]); `None` when it could
    /// not be made.
    efd: Option<InternalFd>,
    /// The program took `efd`'s number over (closed it, or put a file of
    /// its own there): requests no longer signal it, nobody watches it.
    efd_lost: AtomicBool,
    /// Waiters watching the lane: its context is not destroyed meanwhile
    /// (they reap it).
    watchers: AtomicUsize,
    /// Events taken from the lane so far, by the reaper or a waiter.
    taken: AtomicU64,
    /// Watches begun so far ([`Pool::lane_watch`]).
    watches: AtomicU64,
    /// Futex word the reaper sleeps on while waiters watch; bumped when
    /// the eventfd is lost (the reaper then must not wait for waiters).
    lost_seq: AtomicU32,
    /// The reaper is about to destroy the lane's context: nobody takes
    /// events from it any more (a waiter judged gone that was only slow
    /// may still end its watch; see [`Lane::take`]).
    retired: AtomicBool,
    /// Calls of [`Lane::take`] under way, which the destroy waits for.
    takers: AtomicUsize,
}

/// [`Pool::lane`]: the lane if it exists, and when it last could not be
/// made.
#[derive(Debug, Default)]
pub(super) struct LaneSlot {
    lane: Option<Arc<Lane>>,
    refused: Option<Instant>,
    /// `UAIO_DIRECT_LANE=0`, read when the slot is first used.
    off: Option<bool>,
}

/// Whether a job on the duplicate `held`, routed to a worker and ordered
/// after nothing, may take the lane. `st` is the file as the request's
/// submission saw it, `cur` its transfer.
///
/// A write that extends a regular file (every write, on an `O_APPEND`
/// description) does not: the file system answers `-EAGAIN` to
/// `RWF_NOWAIT` there (extending takes the inode's lock and a size
/// update), and the request would reach a worker only after that round
/// trip (O_DIRECT appends one at a time ran 10-20% slower through it).
pub(super) fn eligible(kind: OpKind, held: &Held, order: Option<FileKey>, st: &FileStat, cur: &Cursor) -> bool {
    let write = matches!(kind, OpKind::Write | OpKind::Writev);
    let extends = write
        && st.kind() == libc::S_IFREG
        && (held.flags & libc::O_APPEND != 0 || cur.off.saturating_add(cur.remaining()) > st.size);
    order.is_none()
        && held.flags & libc::O_DIRECT != 0
        && (write || matches!(kind, OpKind::Read | OpKind::Readv))
        && !extends
}

impl Pool {
    /// Sends `jobs` (registered, eligible, not yet claimed) to the lane;
    /// those it cannot take (the lane is full or missing, the kernel
    /// refused one) are appended to `workers`, unclaimed. Jobs cancelled
    /// meanwhile are left alone (they are done).
    pub(super) fn lane_submit(&'static self, jobs: &mut Vec<Arc<Job>>, workers: &mut Vec<Arc<Job>>) {
        if jobs.is_empty() {
            return;
        }
        let Some((lane, n)) = self.lane_reserve(jobs.len()) else {
            workers.append(jobs);
            return;
        };
        // Beyond what the lane can hold: workers.
        workers.extend(jobs.drain(n..));
        let mut iocbs: Vec<uaio_abi::iocb> = Vec::with_capacity(n);
        let mut taken: Vec<Arc<Job>> = Vec::with_capacity(n);
        let resfd = lane.resfd();
        for job in jobs.drain(..) {
            if job.claim() {
                iocbs.push(iocb_of(&job, resfd));
                taken.push(job);
            }
        }
        // Slots reserved for jobs cancelled before they were claimed.
        lane.inflight.fetch_sub(n - taken.len(), Ordering::SeqCst);
        let mut at = 0;
        while at < taken.len() {
            let ptrs: Vec<*const uaio_abi::iocb> = iocbs[at..].iter().map(|c| c as *const _).collect();
            for job in &taken[at..] {
                // The reaper's reference, given back by it or below.
                let _ = Arc::into_raw(job.clone());
                job.shared.inlane.fetch_add(1, Ordering::SeqCst);
                job.io_begins();
            }
            let r = sys::kernel_aio::submit(lane.ctx, &ptrs);
            let ok = r.max(0) as usize;
            // The refused ones (from the first the kernel did not take):
            // their references come back, and they go to the workers.
            for job in &taken[at + ok..] {
                job.shared.inlane.fetch_sub(1, Ordering::SeqCst);
                job.io_over();
                // SAFETY: the reference leaked just above for this job,
                // which the kernel did not take.
                drop(unsafe { Arc::from_raw(Arc::as_ptr(job)) });
            }
            at += ok;
            if at < taken.len() && resfd.is_some() && !lane.efd_lost.load(Ordering::SeqCst) && !lane.efd_intact() {
                // Refused for the eventfd, whose number the program took
                // over: the requests go without it, and are offered again.
                lane.lose_efd();
                for cb in &mut iocbs[at..] {
                    cb.aio_flags &= !uaio_abi::IOCB_FLAG_RESFD;
                    cb.aio_resfd = 0;
                }
                continue;
            }
            if at < taken.len() {
                // The first refused one goes to a worker; the rest are
                // offered again (a refusal is about one request: its
                // flags, or its file).
                lane.inflight.fetch_sub(1, Ordering::SeqCst);
                let job = taken[at].clone();
                at += 1;
                if job.unclaim_or_cancel(&Here::caller(self)) {
                    workers.push(job);
                }
            }
        }
    }

    /// Gives a direct read or write the lane refused with `-EAGAIN`
    /// ([`LANE_REFUSED`]), claimed by the worker calling, to the lane again
    /// without `RWF_NOWAIT`, together with the other refused jobs queued
    /// for workers (up to [`WORKER_BATCH`], in one `io_submit`): the
    /// kernel's `io_submit` then waits, in this worker, for what the file
    /// system needed (a block allocated, say, for a write into a hole or a
    /// fallocated range), and mostly not for the device, and the worker
    /// goes on while the transfers are in flight, where its own blocking
    /// `pwrite` would wait for the device (a pool of workers then held one
    /// write each, and the inode's lock: 4 KiB direct writes into a sparse
    /// file at queue depth 64 ran at 0.08x kernel AIO). The iocbs name the
    /// held duplicates, which are checked, as before a worker's own
    /// transfer, to still name their files. Jobs the lane cannot take are
    /// run here. `false` when `job` is not such a job (the caller runs it).
    pub(super) fn run_refused(&'static self, job: &Arc<Job>, here: &Here) -> bool {
        if job.lane.load(Ordering::SeqCst) != LANE_REFUSED {
            return false;
        }
        let mut jobs = vec![job.clone()];
        {
            let mut st = lock(&self.st);
            let mut i = 0;
            while i < st.queue.len() && jobs.len() < WORKER_BATCH {
                if st.queue[i].lane.load(Ordering::SeqCst) == LANE_REFUSED {
                    jobs.extend(st.queue.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        // The others are claimed here (one cancelled meanwhile is done).
        let mut mine: Vec<Arc<Job>> = Vec::with_capacity(jobs.len());
        for (i, j) in jobs.into_iter().enumerate() {
            if i == 0 || j.claim() {
                mine.push(j);
            }
        }
        // A duplicate whose number now names another file: the job's own
        // run answers for it.
        let (ok, mut left): (Vec<_>, Vec<_>) = mine.into_iter().partition(|j| j.file_unchanged());
        let lane = self.lane_reserve(ok.len());
        let took = lane.as_ref().map_or(0, |(_, n)| *n);
        let mut pending = ok;
        left.extend(pending.drain(took..));
        if let Some((lane, _)) = lane {
            let resfd = lane.resfd();
            let cbs: Vec<uaio_abi::iocb> =
                pending.iter().map(|j| iocb_on(j, j.fd, j.rw_flags as u32 & !uaio_abi::RWF_NOWAIT, resfd)).collect();
            let ptrs: Vec<*const uaio_abi::iocb> = cbs.iter().map(|c| c as *const _).collect();
            for j in &pending {
                j.lane.store(LANE_WAITS, Ordering::SeqCst);
                // The reaper's reference, given back by it or below.
                let _ = Arc::into_raw(j.clone());
                j.shared.inlane.fetch_add(1, Ordering::SeqCst);
                j.io_begins();
            }
            let n = sys::kernel_aio::submit(lane.ctx, &ptrs).max(0) as usize;
            // Those the kernel did not take: their references come back,
            // and they run here.
            for j in &pending[n..] {
                j.shared.inlane.fetch_sub(1, Ordering::SeqCst);
                j.io_over();
                j.lane.store(LANE_REFUSED, Ordering::SeqCst);
                // SAFETY: the reference leaked just above for this job,
                // which the kernel did not take.
                drop(unsafe { Arc::from_raw(Arc::as_ptr(j)) });
            }
            lane.inflight.fetch_sub(pending.len() - n, Ordering::SeqCst);
            left.extend(pending.drain(n..));
        }
        for j in left {
            let r = j.run();
            j.shared.finish(&j, r, here);
        }
        true
    }

    /// Reserves room for up to `want` requests in the lane, making it if
    /// needed; the lane and how many it took.
    fn lane_reserve(&'static self, want: usize) -> Option<(Arc<Lane>, usize)> {
        let mut slot = lock(&self.lane);
        if *slot.off.get_or_insert_with(|| std::env::var("UAIO_DIRECT_LANE").is_ok_and(|v| v == "0")) {
            return None;
        }
        if slot.lane.is_none() {
            if slot.refused.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
                return None;
            }
            match self.lane_start() {
                Some(l) => slot.lane = Some(l),
                None => {
                    slot.refused = Some(Instant::now());
                    return None;
                }
            }
        }
        let lane = slot.lane.clone()?;
        let free = LANE_EVENTS.saturating_sub(lane.inflight.load(Ordering::SeqCst));
        let n = want.min(free);
        if n == 0 {
            return None;
        }
        lane.inflight.fetch_add(n, Ordering::SeqCst);
        Some((lane, n))
    }

    /// Starts the reaper, which makes the lane's context (so that the
    /// context's ring exists only while a `uaio-reaper` thread does, which
    /// is how an observer tells it from a program's own).
    fn lane_start(&'static self) -> Option<Arc<Lane>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut st = lock(&self.st);
        let spawned = sys::spawn_thread("uaio-reaper", move || {
            let made = sys::kernel_aio::setup(LANE_EVENTS as u32).ok().map(|ctx| {
                keep_from_children(ctx);
                Arc::new(Lane {
                    ctx,
                    inflight: AtomicUsize::new(0),
                    efd: new_eventfd().ok(),
                    efd_lost: AtomicBool::new(false),
                    watchers: AtomicUsize::new(0),
                    taken: AtomicU64::new(0),
                    watches: AtomicU64::new(0),
                    lost_seq: AtomicU32::new(0),
                    retired: AtomicBool::new(false),
                    takers: AtomicUsize::new(0),
                })
            });
            let _ = tx.send(made.clone());
            if let Some(lane) = made {
                reaper(self, lane);
            }
        });
        if spawned.is_err() {
            return None;
        }
        st.reapers += 1;
        drop(st);
        let lane = rx.recv().ok().flatten();
        if lane.is_none() {
            lock(&self.st).reapers -= 1;
        }
        lane
    }
}

/// Keeps a fork child from inheriting the lane's ring (`MADV_DONTFORK`):
/// the context is the parent's, and a ring in a child would look like a
/// kernel AIO context of its own.
fn keep_from_children(ctx: u64) {
    // The ring's header: `nr` at offset 4, `header_length` at 28; the
    // mapping is the header and `nr` events, in whole pages.
    // SAFETY: `ctx` is the address of the ring io_setup just mapped in
    // this process, at least one page long.
    let (nr, header) = unsafe {
        let p = ctx as *const u32;
        (std::ptr::read_volatile(p.add(1)) as usize, std::ptr::read_volatile(p.add(7)) as usize)
    };
    let page = rustix::param::page_size();
    let len = (header + nr * std::mem::size_of::<uaio_abi::io_event>()).div_ceil(page) * page;
    // SAFETY: advice on this process's own mapping of the ring; it changes
    // only what fork copies.
    unsafe { libc::madvise(ctx as *mut libc::c_void, len, libc::MADV_DONTFORK) };
}

/// The iocb of a claimed lane job, with `RWF_NOWAIT`, the job's address
/// as `aio_data`, signalling `resfd`. It names the program's own
/// descriptor, not the held duplicate: the lane's `io_submit` is made
/// inside the program's, and the kernel takes its reference to the file
/// there, as kernel AIO does. uaio's duplicate lives at a number the
/// program may take over (`dup2` of a file of its own, `close_range`),
/// and a write issued on it then would go to that file.
fn iocb_of(job: &Arc<Job>, resfd: Option<i32>) -> uaio_abi::iocb {
    let fd = lock(&job.hold).as_ref().map_or(job.fd, |h| h.app_fd);
    iocb_on(job, fd, job.rw_flags as u32 | uaio_abi::RWF_NOWAIT, resfd)
}

/// The iocb of a claimed lane job on descriptor `fd`, with `rw_flags`.
fn iocb_on(job: &Arc<Job>, fd: i32, rw_flags: u32, resfd: Option<i32>) -> uaio_abi::iocb {
    let cur = lock(&job.cur);
    let (opcode, buf, nbytes) = match job.kind {
        OpKind::Read | OpKind::Write => {
            let op = if job.kind == OpKind::Read { uaio_abi::IOCB_CMD_PREAD } else { uaio_abi::IOCB_CMD_PWRITE };
            let e = cur.iov.first().map_or((0, 0), |e| (e.iov_base as u64, e.iov_len as u64));
            (op, e.0, e.1)
        }
        _ => {
            let op = if job.kind == OpKind::Readv { uaio_abi::IOCB_CMD_PREADV } else { uaio_abi::IOCB_CMD_PWRITEV };
            (op, cur.iov.as_ptr() as u64, cur.iov.len() as u64)
        }
    };
    uaio_abi::iocb {
        aio_data: Arc::as_ptr(job) as u64,
        aio_key: 0,
        aio_rw_flags: rw_flags,
        aio_lio_opcode: opcode,
        aio_reqprio: job.ioprio as i16,
        aio_fildes: fd as u32,
        aio_buf: buf,
        aio_nbytes: nbytes,
        aio_offset: cur.off as i64,
        aio_reserved2: 0,
        aio_flags: if job.ioprio != 0 { uaio_abi::IOCB_FLAG_IOPRIO } else { 0 }
            | if resfd.is_some() { uaio_abi::IOCB_FLAG_RESFD } else { 0 },
        aio_resfd: resfd.unwrap_or(0) as u32,
    }
}

/// The reaper: completes the lane's jobs as their events come, and
/// leaves (destroying the lane's context) when the lane is no longer
/// needed.
///
/// While the lane's eventfd works, the reaper is in one of two modes. When
/// a waiter watches the lane or began to since its last look, it sleeps
/// [`WATCHED_GRACE`] (not woken by completions: the watching waiters are)
/// and then takes what the lane holds if nobody watches at that moment.
/// Otherwise it sleeps on the eventfd and takes each completion at once,
/// as the kernel's interrupt puts an event in the ring: programs that read
/// the ring or wait on their own eventfd see their events without delay.
fn reaper(p: &'static Pool, lane: Arc<Lane>) {
    let here = Here::pool_thread();
    let mut events = [uaio_abi::io_event::default(); 64];
    let mut last = Instant::now();
    let mut taken = 0;
    let mut seen_watches = 0;
    let mut left_at = None;
    // Watchers judged gone: they let events sit a whole sleep untouched,
    // or, with nothing in flight, neither ended a watch nor began one for
    // [`STALE_WATCH`] (a waiter that left its wait by `siglongjmp` never
    // ends its watch; a live one ends it within `PPOLL_CAP`). Each one that
    // does end its watch lowers the count back.
    let mut gone = 0;
    let mut still = (0, 0, Instant::now());
    loop {
        if lane.resfd().is_some() {
            let watchers = lane.watchers.load(Ordering::SeqCst);
            gone = gone.min(watchers);
            let watches = lane.watches.load(Ordering::SeqCst);
            if (still.0, still.1) != (watches, watchers) {
                still = (watches, watchers, Instant::now());
            } else if watchers > gone && lane.inflight.load(Ordering::SeqCst) == 0 && still.2.elapsed() >= STALE_WATCH {
                gone = watchers;
            }
            if watchers > gone || watches != seen_watches {
                seen_watches = watches;
                lane.sleep_while_watched();
                // Taken when nobody watches, or when events stayed a whole
                // sleep untouched.
                let head = lane.pending_from();
                let watchers = lane.watchers.load(Ordering::SeqCst);
                if head.is_some() && (watchers <= gone || head == left_at) {
                    if head == left_at {
                        gone = watchers;
                    }
                    lane.take(p, &here);
                    left_at = None;
                } else {
                    left_at = head;
                }
            } else {
                let cap = if lane.inflight.load(Ordering::SeqCst) > 0 { EVENTFD_CAP } else { REAPER_TICK };
                let ready = sys::ppoll_one(lane.efd(), Some(cap), None).unwrap_or(0) > 0;
                if ready && lane.watchers.load(Ordering::SeqCst) > gone {
                    // A waiter began to watch: the eventfd is its to read.
                    continue;
                }
                if (ready || lane.inflight.load(Ordering::SeqCst) > 0) && !lane.efd_intact() {
                    lane.lose_efd();
                } else if ready {
                    lane.read_efd();
                }
                // Emptied before the events are taken: one that comes
                // after the take signals it again.
                lane.take(p, &here);
            }
        } else {
            let n = sys::kernel_aio::getevents(lane.ctx, 1, &mut events, REAPER_TICK);
            if n > 0 {
                lane.complete(p, &events[..n as usize], &here);
            } else if n < 0 && n != -(libc::ETIME as isize) && n != -(libc::EINTR as isize) {
                // The context is unusable (never expected): nothing more can
                // complete through it, and the next direct request makes a
                // new lane.
                let mut slot = lock(&p.lane);
                if slot.lane.as_ref().is_some_and(|l| Arc::ptr_eq(l, &lane)) {
                    slot.lane = None;
                }
                break;
            }
        }
        // Events a waiter took count as the lane's use too.
        let now_taken = lane.taken.load(Ordering::SeqCst);
        if now_taken != taken {
            (taken, last) = (now_taken, Instant::now());
            continue;
        }
        if lane.inflight.load(Ordering::SeqCst) != 0 {
            continue;
        }
        let mut slot = lock(&p.lane);
        let instances = lock(&p.st).instances;
        if lane.inflight.load(Ordering::SeqCst) == 0
            && lane.watchers.load(Ordering::SeqCst) <= gone
            && (instances == 0 || last.elapsed() >= IDLE_TIMEOUT)
        {
            slot.lane = None;
            drop(slot);
            break;
        }
    }
    lane.retire();
    sys::kernel_aio::destroy(lane.ctx);
    lock(&p.st).reapers -= 1;
}

impl Pool {
    /// The lane, for a waiter of the context `shared` to watch while it
    /// sleeps: when some of that context's requests are in the lane and
    /// the lane signals an eventfd. [`Lane::unwatch`] ends the watch; the
    /// lane's context is not destroyed before.
    pub(super) fn lane_watch(&self, shared: &Shared) -> Option<Arc<Lane>> {
        if shared.inlane.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let slot = lock(&self.lane);
        let lane = slot.lane.as_ref().filter(|l| l.resfd().is_some())?.clone();
        lane.watchers.fetch_add(1, Ordering::SeqCst);
        lane.watches.fetch_add(1, Ordering::SeqCst);
        Some(lane)
    }
}

impl Lane {
    /// The eventfd lane requests signal, unless it could not be made or
    /// its number was taken over.
    fn resfd(&self) -> Option<i32> {
        self.efd.as_ref().filter(|_| !self.efd_lost.load(Ordering::SeqCst)).map(|e| e.as_raw_fd())
    }

    /// Whether the eventfd's number still names it.
    fn efd_intact(&self) -> bool {
        self.efd.as_ref().is_some_and(|e| e.intact())
    }

    /// The eventfd the lane's requests signal (see [`Pool::lane_watch`]).
    pub(super) fn efd(&self) -> i32 {
        self.efd.as_ref().map_or(-1, |e| e.as_raw_fd())
    }

    /// Ends a watch begun by [`Pool::lane_watch`], after taking and
    /// completing whatever events the lane holds (without waiting): the
    /// waiter's own among them are then in its context's list. The
    /// eventfd is emptied when `ready` (the sleep found it readable),
    /// unless its number was taken over (then it is not read: the bytes
    /// would be the program's).
    pub(super) fn unwatch(&self, p: &'static Pool, here: &Here, ready: bool) {
        if ready && !self.efd_lost.load(Ordering::SeqCst) {
            if self.efd_intact() {
                self.read_efd();
            } else {
                self.lose_efd();
            }
        }
        self.take(p, here);
        self.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Empties the eventfd (its number still names it).
    fn read_efd(&self) {
        if let Some(e) = &self.efd {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(e, &mut b);
        }
    }

    /// Marks the eventfd's number taken over: requests no longer signal it,
    /// nobody watches it, and a reaper leaving the lane to waiters is woken.
    fn lose_efd(&self) {
        self.efd_lost.store(true, Ordering::SeqCst);
        self.lost_seq.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wake(&self.lost_seq, futex::Flags::PRIVATE, 1);
    }

    /// The reaper's sleep while waiters watch: [`WATCHED_GRACE`], or until
    /// the eventfd is lost.
    fn sleep_while_watched(&self) {
        let seq = self.lost_seq.load(Ordering::SeqCst);
        if self.resfd().is_none() {
            return;
        }
        let ts = futex::Timespec { tv_sec: 0, tv_nsec: WATCHED_GRACE.as_nanos() as _ };
        let _ = futex::wait(&self.lost_seq, futex::Flags::PRIVATE, seq, Some(&ts));
    }

    /// Where the events nobody took yet begin in the lane's ring (its
    /// head), if it holds any.
    fn pending_from(&self) -> Option<u32> {
        // The ring's header: `head` at offset 8, `tail` at 12.
        // SAFETY: `ctx` is the address of the lane's ring, mapped while the
        // context lives; only the reaper, which destroys the context,
        // calls this.
        let (head, tail) = unsafe {
            let p = self.ctx as *const u32;
            (std::ptr::read_volatile(p.add(2)), std::ptr::read_volatile(p.add(3)))
        };
        (head != tail).then_some(head)
    }

    /// Takes and completes whatever events the lane holds, without waiting;
    /// nothing once the lane is retired (its context's number may name
    /// another lane's by then).
    fn take(&self, p: &'static Pool, here: &Here) {
        self.takers.fetch_add(1, Ordering::SeqCst);
        let mut events = [uaio_abi::io_event::default(); 64];
        while !self.retired.load(Ordering::SeqCst) {
            let n = sys::kernel_aio::getevents(self.ctx, 0, &mut events, Duration::ZERO);
            if n <= 0 {
                break;
            }
            self.complete(p, &events[..n as usize], here);
            if (n as usize) < events.len() {
                break;
            }
        }
        self.takers.fetch_sub(1, Ordering::SeqCst);
    }

    /// The reaper leaves: from now on [`Lane::take`] takes nothing, and
    /// the calls of it under way (which never wait) have ended when this
    /// returns, so the context can go.
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        while self.takers.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
    }

    /// Completes the lane's `events`.
    fn complete(&self, p: &'static Pool, events: &[uaio_abi::io_event], here: &Here) {
        for ev in events {
            // SAFETY: `data` is the reference `lane_submit` leaked for this
            // job when the kernel took its iocb; each event comes once, to
            // one caller of io_getevents.
            let job = unsafe { Arc::from_raw(ev.data as *const Job) };
            lane_done(p, job, ev.res, here);
        }
        self.taken.fetch_add(events.len() as u64, Ordering::SeqCst);
        self.inflight.fetch_sub(events.len(), Ordering::SeqCst);
    }
}

/// A lane job's event: its result, or, for an `-EAGAIN` or `-EOPNOTSUPP`
/// the program did not ask for (`RWF_NOWAIT` was the lane's), a worker.
fn lane_done(p: &'static Pool, job: Arc<Job>, res: i64, here: &Here) {
    job.shared.inlane.fetch_sub(1, Ordering::SeqCst);
    let asked_nowait = job.rw_flags as u32 & uaio_abi::RWF_NOWAIT != 0;
    // `EOPNOTSUPP`: the file refuses `RWF_NOWAIT` for this request (a
    // buffered write on ext4, when the description lost `O_DIRECT` after
    // uaio looked at it); without the flag it is an ordinary request.
    let refused_nowait = res == -(libc::EAGAIN as i64) || res == -(libc::EOPNOTSUPP as i64);
    // A job given to the lane without the flag (by a worker) has its
    // result, whatever it is.
    let without_flag = job.lane.load(Ordering::SeqCst) == LANE_WAITS;
    if refused_nowait && !asked_nowait && !without_flag {
        // (Cancelled while in the lane: nothing was transferred.)
        if !job.unclaim_or_cancel(here) {
            return;
        }
        if res == -(libc::EAGAIN as i64) {
            job.lane.store(LANE_REFUSED, Ordering::SeqCst);
        }
        if let Err(jobs) = p.queue(&mut vec![job]) {
            for job in jobs {
                run_unhanded(&job, Route::Worker, here);
            }
        }
        return;
    }
    if !asked_nowait && !without_flag && res > 0 && goes_on(&job, res as u64) {
        // Short where the file goes on: the rest, from where it stopped,
        // goes to a worker (which gives it to the lane without the flag).
        // A file system may serve a direct read from the page cache (ext4
        // mounted data=journal does), where RWF_NOWAIT stops at a page not
        // in it: taken for the whole answer, the read lost the rest of its
        // bytes (4,096 of a 6,000-byte file, where the kernel's read 6,000).
        lock(&job.cur).advance(res as usize);
        if !job.unclaim_or_cancel(here) {
            return;
        }
        job.lane.store(LANE_REFUSED, Ordering::SeqCst);
        if let Err(jobs) = p.queue(&mut vec![job]) {
            for job in jobs {
                run_unhanded(&job, Route::Worker, here);
            }
        }
        return;
    }
    let r = lock(&job.cur).result(res as i32);
    job.shared.finish(&job, r, here);
}

/// Whether a lane job that moved `n` of its bytes with the lane's
/// `RWF_NOWAIT` has more to move: fewer than it asked for, and, for a read,
/// short of the end of the file (where a direct read ends short).
fn goes_on(job: &Job, n: u64) -> bool {
    let cur = lock(&job.cur);
    if n >= cur.remaining() {
        return false;
    }
    match job.kind {
        OpKind::Read | OpKind::Readv => sys::file_size(job.fd).is_some_and(|size| cur.off.saturating_add(n) < size),
        _ => true,
    }
}
