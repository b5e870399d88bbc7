//! The pool's threads: the workers, which run queued jobs (and sleep,
//! spin or leave when there is none), and the poller, which waits for
//! the readiness of pipes, sockets and POLLs.

use super::*;

/// Sleeper state: listed in [`PoolState::sleepers`], not asleep yet.
pub(super) const LISTED: u32 = 0;

/// Sleeper state: taken off the list by a waker.
pub(super) const WOKEN: u32 = 1;

/// Sleeper state: listed, asleep on its futex word.
pub(super) const ASLEEP: u32 = 2;

/// The futex word of one idle worker: `LISTED`, `WOKEN` or `ASLEEP`.
#[derive(Debug, Default)]
pub(super) struct Sleeper {
    pub(super) state: AtomicU32,
}

/// Longest spin of a worker waiting for its next job (see [`Pool::spin`]).
pub(super) const SPIN: Duration = Duration::from_micros(50);

impl Sleeper {
    /// Looks for a wake-up for at most [`SPIN`] without sleeping, letting
    /// other threads of this processor go first; `true` if woken.
    pub(super) fn spin(&self) -> bool {
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
    pub(super) fn sleep(&self, idle: Duration) -> bool {
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
    pub(super) fn mark(&self) -> bool {
        self.state.swap(WOKEN, Ordering::SeqCst) == ASLEEP
    }

    pub(super) fn wake(&self) {
        let _ = futex::wake(&self.state, futex::Flags::PRIVATE, 1);
    }
}

/// How long a worker with nothing to do waits for a job before it leaves.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker: runs queued jobs; sleeps when there is none, and leaves after
/// [`IDLE_TIMEOUT`] without one or once no context uses the pool.
/// `seeking`: started for a queued job (counted in [`PoolState::seeking`]).
pub(super) fn worker(p: &'static Pool, mut seeking: bool) {
    let here = Here::pool_thread();
    let me = Arc::new(Sleeper::default());
    // Whether a job ran since the last sleep.
    let mut ran = false;
    // The next write of a chain whose previous one this worker ran.
    let mut next: Option<Arc<Job>> = None;
    loop {
        let job = match next.take() {
            Some(j) => Some(j),
            None => match next_job(p, &me, &mut seeking, &mut ran) {
                Next::Run(j) => Some(j),
                Next::Orphans => None,
                Next::Leave => {
                    p.reap_orphans();
                    return;
                }
            },
        };
        p.reap_orphans();
        // A job cancelled while queued is done already: leave it alone.
        let Some(job) = job else { continue };
        if job.claim() {
            // A direct transfer the lane refused goes back to it without
            // the flag (with the others queued); its event completes it.
            if !p.run_refused(&job, &here) {
                let r = job.run();
                job.shared.finish(&job, r, &here);
            }
            ran = true;
        }
        if let Some(k) = job.order {
            next = p.chain_next(k);
        }
    }
}

/// What a worker does next.
enum Next {
    Run(Arc<Job>),
    /// Close the duplicates another process let go of.
    Orphans,
    /// Leave (counted out of the pool already).
    Leave,
}

/// Takes the next queued job, sleeping (or spinning, see [`Pool::spin`])
/// while there is none. `seeking`: the worker was counted as on its way
/// to a job; `ran`: a job ran since the last sleep.
fn next_job(p: &'static Pool, me: &Arc<Sleeper>, seeking: &mut bool, ran: &mut bool) -> Next {
    let mut st = lock(&p.st);
    loop {
        if *seeking {
            st.seeking -= 1;
            *seeking = false;
        }
        if let Some(j) = st.queue.pop_front() {
            return Next::Run(j);
        }
        if st.instances == 0 {
            st.threads -= 1;
            return Next::Leave;
        }
        if p.norphans.load(Ordering::SeqCst) > 0 {
            return Next::Orphans;
        }
        me.state.store(LISTED, Ordering::SeqCst);
        st.sleepers.push(me.clone());
        let alone = st.threads == st.sleepers.len();
        drop(st);
        let woken = (*ran && alone && p.spin(me)) || me.sleep(IDLE_TIMEOUT);
        *ran = false;
        st = lock(&p.st);
        // A waker that marked us took us off the list and counted us as
        // seeking; otherwise we are still listed.
        *seeking = me.state.load(Ordering::SeqCst) == WOKEN;
        if !*seeking {
            if let Some(i) = st.sleepers.iter().position(|s| Arc::ptr_eq(s, me)) {
                st.sleepers.remove(i);
            }
            if !woken && st.queue.is_empty() {
                st.threads -= 1;
                return Next::Leave;
            }
        }
    }
}

/// Wakes the poller, if it exists (owner's threads only).
pub(super) fn wake_poller(st: &PoolState) {
    if let Some(w) = &st.poll_wake {
        sys::signal_own_eventfd(w.as_fd());
    }
}

/// Readiness events a request waits for.
pub(super) fn poll_events(job: &Job) -> i16 {
    match job.kind {
        OpKind::Read | OpKind::Readv => libc::POLLIN | libc::POLLRDNORM,
        OpKind::Write | OpKind::Writev => libc::POLLOUT | libc::POLLWRNORM,
        _ => crate::backend::poll_companions(job.poll_mask) as i16,
    }
}

/// One non-blocking attempt of a claimed stream read or write the poller
/// found ready. Returns the result when the job is over, `None` when it must
/// wait again.
pub(super) fn attempt(job: &Job) -> Option<i32> {
    let mut cur = lock(&job.cur);
    if !job.file_unchanged() {
        return Some(cur.result(-libc::EBADF));
    }
    let mut r = cur.io(job.kind, job.fd, job.rw_flags | RWF_NOWAIT);
    if r == -libc::EOPNOTSUPP && job.rw_flags & RWF_NOWAIT == 0 {
        // The file refuses RWF_NOWAIT (a character device such as
        // /dev/full or a tty): found ready, it is read or written without
        // the flag, as io_uring does for such a file once its poll reports
        // it ready (a wait for readiness can still be cancelled; a worker
        // blocked in the read could not).
        r = cur.io(job.kind, job.fd, job.rw_flags);
    }
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

/// poll(2) of `fds` with `timeout` (ms). More entries than RLIMIT_NOFILE
/// (distinct descriptors opened before the program lowered its limit)
/// are refused by poll(2) with EINVAL: they are then looked at in turns
/// of that many, without waiting, and the poller naps 5 ms between rounds
/// that find nothing (the wake eventfd, first, ends the nap).
fn poll_all(fds: &mut [libc::pollfd], timeout: i32) -> i32 {
    // SAFETY: poll(2) over a valid array of pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return n;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1024).max(1) as usize;
    let mut found = 0;
    for part in fds.chunks_mut(limit) {
        // SAFETY: as above, over a part of the array.
        found += unsafe { libc::poll(part.as_mut_ptr(), part.len() as libc::nfds_t, 0) }.max(0);
    }
    if found == 0 {
        // SAFETY: as above, over the first entry (the wake eventfd).
        found = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5) }.max(0);
    }
    found
}

/// The poller's wake eventfd `old` was found closed behind uaio's back (a
/// raw system call, such as a `close_range` of every descriptor): its
/// number is let go, never closed (the values are leaked: something else
/// may have it now), and a new eventfd takes its place (`None` when none
/// can be made; the poller then looks on a timer). Before, the poller
/// polled the closed number in a loop (`POLLNVAL` at once), a whole
/// processor for good.
fn renew_wake(p: &'static Pool, old: Option<Arc<InternalFd>>) -> Option<Arc<InternalFd>> {
    let mut st = lock(&p.st);
    if let Some(old) = old {
        if st.poll_wake.as_ref().is_some_and(|w| Arc::ptr_eq(w, &old)) {
            std::mem::forget(st.poll_wake.take());
        }
        crate::sys::internal_fds::lost_permanent(old.as_raw_fd());
        std::mem::forget(old);
    }
    let new = new_eventfd().ok().map(Arc::new);
    st.poll_wake.clone_from(&new);
    new
}

/// How often the poller looks when it has no wake eventfd ([`renew_wake`]).
const UNWOKEN_LOOK: i32 = 50;

pub(super) fn poller(p: &'static Pool, wake: Arc<InternalFd>) {
    let mut wake = Some(wake);
    let here = Here::pool_thread();
    let mut jobs: Vec<Arc<Job>> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut ahead: Vec<FileKey> = Vec::new();
    // Per job, its entry in `fds` (`usize::MAX`: not looked at), and the
    // entry of each descriptor.
    let mut slots: Vec<usize> = Vec::new();
    let mut at: std::collections::HashMap<i32, usize> = std::collections::HashMap::new();
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
        fds.push(libc::pollfd { fd: wake.as_ref().map_or(-1, |w| w.as_raw_fd()), events: libc::POLLIN, revents: 0 });
        // A stream's reads take turns, and so do its writes: only the
        // oldest one not done is looked at. The jobs on one descriptor (a
        // held duplicate is shared by the requests on one open file) share
        // one entry, which asks for what any of them waits for: poll(2)
        // refuses more entries than RLIMIT_NOFILE (with EINVAL, at once:
        // 100 POLLs of one pipe under a limit of 100 kept this thread
        // spinning and never completed, a black-box attack).
        ahead.clear();
        at.clear();
        slots.clear();
        for j in &jobs {
            let waits = j.stream.is_some_and(|k| {
                let behind = ahead.contains(&k);
                if !j.is_done() {
                    ahead.push(k);
                }
                behind
            });
            if waits {
                slots.push(usize::MAX);
                continue;
            }
            let i = *at.entry(j.fd).or_insert_with(|| {
                fds.push(libc::pollfd { fd: j.fd, events: 0, revents: 0 });
                fds.len() - 1
            });
            fds[i].events |= poll_events(j);
            slots.push(i);
        }
        let n = poll_all(&mut fds, if wake.is_some() { -1 } else { UNWOKEN_LOOK });
        if n < 0 {
            continue;
        }
        if wake.is_none() || fds[0].revents & libc::POLLNVAL != 0 {
            wake = renew_wake(p, wake);
        } else if let (Some(w), true) = (&wake, fds[0].revents != 0) {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(w.as_fd(), &mut b);
        }
        let ready = |j: &Arc<Job>, &slot: &usize| {
            // What this job waits for (and what poll(2) always reports) of
            // its entry's events.
            let revents = fds
                .get(slot)
                .map_or(0, |f| f.revents & (poll_events(j) | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL));
            // A job cancelled during the sleep is done: its descriptor
            // number may name another file by now, and is not used.
            if revents == 0 || !j.claim() {
                return;
            }
            let res = if j.kind == OpKind::Poll { Some((revents as u16) as i32) } else { attempt(j) };
            match res {
                Some(r) => j.shared.finish(j, r, &here),
                // Again later; or cancelled while we held it, and nothing
                // happened.
                None => {
                    j.unclaim_or_cancel(&here);
                }
            }
        };
        // Reads and writes in submission order (a stream's take turns);
        // then the POLLs, newest first, as the kernel wakes the POLLs
        // waiting on one file (each new one waits at the head of the
        // file's queue: six POLLs of a pipe complete 5 4 3 2 1 0).
        let pairs = || jobs.iter().zip(slots.iter());
        pairs().filter(|(j, _)| j.kind != OpKind::Poll).for_each(|(j, f)| ready(j, f));
        pairs().rev().filter(|(j, _)| j.kind == OpKind::Poll).for_each(|(j, f)| ready(j, f));
    }
}
