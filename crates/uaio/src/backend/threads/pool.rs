//! The process's pool: the queue of jobs, the workers' count and
//! sleepers, the chains of ordered writes, the held duplicates, and the
//! eventfds lent to `io_pgetevents` sleepers.

use super::*;

#[derive(Debug, Default)]
pub(super) struct PoolState {
    pub(super) queue: VecDeque<Arc<Job>>,
    pub(super) instances: usize,
    /// Workers alive (the poller not counted).
    pub(super) threads: usize,
    /// Workers asleep, the most recent last: woken from the end, so that
    /// the same few stay busy and the others reach their idle timeout.
    pub(super) sleepers: Vec<Arc<Sleeper>>,
    /// Workers woken or started for queued jobs that have not looked at
    /// the queue yet: each will take a job, so a new job needs another.
    pub(super) seeking: usize,
    /// Jobs handed to the poller since its last pass.
    pub(super) polls: Vec<Arc<Job>>,
    pub(super) poller: bool,
    /// The direct lane's reapers alive (see `lane.rs`): one, and for a
    /// moment two, an old one destroying its lane's context while a new
    /// lane is made.
    pub(super) reapers: usize,
    /// The poller's wake-up eventfd, made with the poller and closed when
    /// it leaves.
    pub(super) poll_wake: Option<Arc<InternalFd>>,
    /// Jobs cancelled since `queue` and `polls` were last swept.
    pub(super) husks: usize,
    /// Files with a buffered write queued or running: the writes that wait
    /// behind it, in submission order.
    pub(super) chains: KeyMap<FileKey, VecDeque<Arc<Job>>>,
    /// Streams with a read or write handed to the poller: those (the
    /// poller runs a stream's reads one at a time, in this order, and its
    /// writes likewise, under another key; see [`Pool::stream_busy`]).
    pub(super) streams: KeyMap<FileKey, Vec<Weak<Job>>>,
}

impl PoolState {
    /// Takes up to `n` idle workers off the list (counted as seeking);
    /// returns how many, and those asleep, for [`Sleeper::wake`] once the
    /// lock is let go.
    pub(super) fn take_sleepers(&mut self, n: usize) -> (usize, Vec<Arc<Sleeper>>) {
        let n = n.min(self.sleepers.len());
        let mut v = self.sleepers.split_off(self.sleepers.len() - n);
        v.retain(|s| s.mark());
        self.seeking += n;
        (n, v)
    }
}

/// Default bound on the workers: enough for one blocked worker per request
/// of a deep queue of direct I/O (which waits for the device in the
/// worker), whatever the number of cores.
pub(super) const DEFAULT_MAX_THREADS: usize = 256;

#[derive(Debug)]
pub(super) struct Pool {
    pub(super) st: Mutex<PoolState>,
    pub(super) max_threads: usize,
    /// A worker spins.
    pub(super) spinning: AtomicBool,
    /// How well spinning has paid lately (see [`Pool::spin`]).
    pub(super) spin_score: AtomicU32,
    /// Chances to spin passed up while the score was 0.
    pub(super) spin_skips: AtomicU32,
    /// The process whose descriptor table the pool's threads use.
    pub(super) owner: i32,
    /// Held duplicates by the application's descriptor number.
    pub(super) held: Mutex<KeyMap<i32, Weak<Held>>>,
    /// Eventfds lent to `io_pgetevents` sleepers.
    pub(super) spare_efds: Mutex<Vec<InternalFd>>,
    /// Duplicates let go of in another process (a CLONE_VM child, where
    /// their numbers mean nothing), closed by the next pool thread or
    /// owner's call that passes by.
    pub(super) orphans: Mutex<Vec<Arc<Held>>>,
    pub(super) norphans: AtomicUsize,
    /// `st.chains.len()`, read without the lock.
    pub(super) nchains: AtomicUsize,
    /// The direct lane (see `lane.rs`); taken before `st`, never after.
    pub(super) lane: Mutex<LaneSlot>,
}

pub(super) static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

pub(super) fn max_threads() -> usize {
    let Ok(s) = std::env::var("UAIO_THREADS") else { return DEFAULT_MAX_THREADS };
    match s.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!(
                "uaio: UAIO_THREADS={s:?} is not a positive number: ignored, at most {DEFAULT_MAX_THREADS} threads"
            );
            DEFAULT_MAX_THREADS
        }
    }
}

/// A new eventfd of uaio's own (high number, close-on-exec, non-blocking).
pub(super) fn new_eventfd() -> Result<InternalFd, Errno> {
    InternalFd::make(|| {
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)
    })
}

/// The process's pool. It exists whenever a [`Threads`] does (created by
/// [`try_pool`] in [`Threads::new`]).
pub(super) fn pool() -> &'static Pool {
    try_pool().expect("the pool exists while a context uses it")
}

/// The process's pool, created on first use (again in a fork child).
pub(super) fn try_pool() -> Result<&'static Pool, Errno> {
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
        // The memory's owner, not a `vfork` child that happens to make
        // the first context: the pool's threads are the owner's.
        owner: crate::sys::process::memory_owner(),
        held: Mutex::new(KeyMap::default()),
        spare_efds: Mutex::new(Vec::new()),
        orphans: Mutex::new(Vec::new()),
        norphans: AtomicUsize::new(0),
        nchains: AtomicUsize::new(0),
        lane: Mutex::new(LaneSlot::default()),
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
pub(super) const SPIN_SCORE_MAX: u32 = 16;

/// Eventfds kept for `io_pgetevents` sleepers once they are done.
pub(super) const SPARE_EVENTFDS: usize = 4;

impl Pool {
    /// Lets a worker that has just run a job, while no other worker was
    /// active, wait for the next one spinning for a while instead of
    /// sleeping: with one request in flight, the wake-up of a sleeping
    /// worker adds to every request's latency. One worker spins at a time,
    /// and only while spinning pays: each spin that sees no job halves the
    /// score, each that does adds one; at 0 only one chance in 64 is tried
    /// (a busy machine delays the submitter, and a spin then only takes
    /// processor time from others). `true` if woken while spinning.
    pub(super) fn spin(&self, me: &Sleeper) -> bool {
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

    /// A duplicate of the application's `fd` (whose file is `st`, with the
    /// status flags `flags`, looked up here when not given) for a job: the
    /// one other jobs hold if `fd` names that file, otherwise a new one at
    /// or above the floor. `None` when there is no room there (or `fd` is
    /// not open). A new duplicate is recorded as the file it names, whose
    /// flags are looked up again when it is not `st`'s (the number was
    /// reopened since the engine looked). `generation`: see
    /// [`crate::backend::Seen::generation`].
    pub(super) fn hold(
        &'static self,
        fd: i32,
        st: &FileStat,
        flags: Option<u32>,
        generation: Option<u64>,
    ) -> Option<Arc<Held>> {
        let flags = flags.map_or_else(|| sys::status_flags(fd), |f| f as i32);
        if flags < 0 {
            return None;
        }
        // The number still names the file of the duplicate held for it:
        // the engine's look may be one kept from an earlier call, which a
        // `dup2` or `close` the drop-in library cannot see (a raw system
        // call) leaves standing for the rest of the clock tick, and a
        // request given the old file's duplicate wrote into the file the
        // number named before (a black-box attack: 4 MiB writes, a raw
        // dup2 of another file after each, 3–7 of 24 in the wrong file or
        // lost, 4 of 5 runs; the kernel's write goes to the file the number
        // names at io_submit).
        let same =
            |h: &Held| (h.dev, h.ino) == st.ident() && h.flags == flags && sys::same_open_file(fd, h.fd.as_raw_fd());
        // Dropped outside the lock: the last reference's drop takes it.
        let known = lock(&self.held).get(&fd).and_then(Weak::upgrade);
        if let Some(h) = known.filter(|h| same(h)) {
            return Some(h);
        }
        let (dup, ident, flags) = self.dup_checked(fd, st.ident(), flags, generation)?;
        let h = Arc::new(Held { fd: dup, pool: self, app_fd: fd, dev: ident.0, ino: ident.1, flags });
        lock(&self.held).insert(fd, Arc::downgrade(&h));
        Some(h)
    }

    /// A duplicate of the application's `fd`, which the engine found to
    /// name the file `ident` with the status flags `flags`, and the file
    /// and flags it names. It names another file when the program reopened
    /// `fd` since the engine looked (`fd` then names that file now: the
    /// duplicate's file and flags count), or when the program took the
    /// duplicate's number over as soon as it was made (`dup2` of a file of
    /// its own there, or `close`, through a raw system call): that number is
    /// then the program's, left open, and a new duplicate is made. `None`
    /// after three failed tries, or when `fd` is not open (or no number is
    /// free above the floor). While the program has closed and replaced
    /// no descriptor since the engine's look (`generation`, see
    /// [`crate::backend::Seen::generation`]), the duplicate names the
    /// file the engine saw, and is not looked at again.
    fn dup_checked(
        &self,
        fd: i32,
        ident: (u64, u64),
        flags: i32,
        generation: Option<u64>,
    ) -> Option<(InternalFd, (u64, u64), i32)> {
        let mut seen = generation.map(|g| (ident, g));
        for _ in 0..3 {
            // `fd` was open a moment ago; if it was closed since, the
            // duplication fails.
            let dup = InternalFd::dup_of_program(fd, seen.take()).ok()?;
            let Some(now) = dup.ident() else {
                dup.disown();
                continue;
            };
            if now == ident {
                return Some((dup, ident, flags));
            }
            if sys::file_stat(fd).map(|s| s.ident()) == Some(now) {
                let f = sys::status_flags(dup.as_raw_fd());
                return Some((dup, now, f));
            }
            // `fd` named another file at each of the three looks (another
            // thread of the program puts files on it in turn): the
            // duplicate is of one of them, uaio's, and is closed (the
            // drop-in library's `close` and `dup2` wait while uaio makes a
            // descriptor, so the program did not put a file of its own on
            // that number meanwhile). Letting go of it without a close left
            // it open for ever.
            drop(dup);
        }
        None
    }

    /// Hands registered jobs to the workers: each job that no woken or
    /// starting worker will take wakes a sleeping one or starts a new one,
    /// up to the bound. Returns the jobs if no worker exists to run them.
    pub(super) fn queue(&'static self, jobs: &mut Vec<Arc<Job>>) -> Result<(), Vec<Arc<Job>>> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut st = lock(&self.st);
        for job in jobs.drain(..) {
            job.io_begins();
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
            if sys::spawn_thread("uaio-worker", move || worker(self, true)).is_err() {
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

    /// Takes a queued job of the context `shared` that no worker has
    /// claimed yet, for a waiter of that context to run itself (see
    /// [`Threads::help`]); jobs of a chain of ordered writes stay for the
    /// workers, which run the chain.
    pub(super) fn take_job_of(&self, shared: &Arc<Shared>) -> Option<Arc<Job>> {
        let mut st = lock(&self.st);
        let i = st.queue.iter().position(|j| Arc::ptr_eq(&j.shared, shared) && j.order.is_none() && !j.is_done())?;
        st.queue.remove(i)
    }

    /// Wakes every sleeping worker (to leave, or to close orphans).
    pub(super) fn wake_all(&self) {
        let woken = {
            let mut st = lock(&self.st);
            let n = st.sleepers.len();
            st.take_sleepers(n).1
        };
        for s in woken {
            s.wake();
        }
    }

    /// Starts the poller if it is not running (it leaves once no context
    /// is left); false if it could not be started.
    fn poller_running(&'static self, st: &mut PoolState) -> bool {
        if !st.poller {
            let Ok(wake) = new_eventfd().map(Arc::new) else { return false };
            let w = wake.clone();
            if sys::spawn_thread("uaio-poller", move || poller(self, w)).is_err() {
                return false;
            }
            st.poller = true;
            st.poll_wake = Some(wake);
        }
        true
    }

    /// Starts the poller with a context of the pool's owner, if it is not
    /// running, so that the context's POLLs and waiting stream requests
    /// have it even once the process may start no more threads (a pids
    /// cgroup or `RLIMIT_NPROC` at its limit, an `RLIMIT_AS` reached): the
    /// kernel's need none. A failure here is not the context's: its first
    /// such request tries again.
    pub(super) fn start_poller(&'static self) {
        let mut st = lock(&self.st);
        let _ = self.poller_running(&mut st);
    }

    /// Hands a registered job to the poller; `Err` if there is none.
    pub(super) fn watch(&'static self, job: Arc<Job>) -> Result<(), Arc<Job>> {
        let mut st = lock(&self.st);
        if !self.poller_running(&mut st) {
            return Err(job);
        }
        if let Some(k) = job.stream {
            if st.streams.len() >= 64 {
                st.streams.retain(|_, jobs| {
                    jobs.retain(still_to_do);
                    !jobs.is_empty()
                });
            }
            let jobs = st.streams.entry(k).or_default();
            if jobs.len() >= 64 {
                jobs.retain(still_to_do);
            }
            jobs.push(Arc::downgrade(&job));
        }
        st.polls.push(job);
        wake_poller(&st);
        Ok(())
    }

    /// Whether the stream `k` (its reads' key or its writes') has a
    /// request in the poller not done yet: a new one goes behind it,
    /// untried.
    pub(super) fn stream_busy(&self, k: FileKey) -> bool {
        // Any of them, not the last only: a later one may be cancelled
        // while an earlier one still waits.
        let mut st = lock(&self.st);
        let Some(jobs) = st.streams.get_mut(&k) else { return false };
        jobs.retain(still_to_do);
        !jobs.is_empty()
    }

    /// Counts a job cancelled while queued or polling, and sweeps such jobs
    /// out of the queue and the poller's inbox once they are many.
    pub(super) fn husk(&self, polled: bool, here: &Here) {
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
    pub(super) fn chain_next(&self, k: FileKey) -> Option<Arc<Job>> {
        let mut st = lock(&self.st);
        let next = st.chains.get_mut(&k).and_then(VecDeque::pop_front);
        if next.is_none() {
            st.chains.remove(&k);
            self.nchains.store(st.chains.len(), Ordering::SeqCst);
        }
        next
    }

    /// Whether a buffered write to the file `k` is queued or running.
    pub(super) fn chained(&self, k: FileKey) -> bool {
        self.nchains.load(Ordering::SeqCst) > 0 && lock(&self.st).chains.contains_key(&k)
    }

    /// Lets go of a job's duplicate: at once in the owner; in another
    /// process (whose table has something else at that number), left to
    /// the owner's threads, a worker woken for it.
    pub(super) fn release(&self, held: Option<Arc<Held>>, here: &Here) {
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
    pub(super) fn reap_orphans(&self) {
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
    pub(super) fn take_efd(&self) -> Option<InternalFd> {
        if let Some(fd) = lock(&self.spare_efds).pop() {
            return Some(fd);
        }
        new_eventfd().ok()
    }

    /// Gives back an eventfd taken with [`Pool::take_efd`], emptied when
    /// `ready` (its sleep found it readable). One whose number the program
    /// took over (closed it, or put a file of its own there) is let go
    /// of without a read: the 8 bytes would come out of the program's file.
    pub(super) fn put_efd(&self, fd: InternalFd, ready: bool) {
        if ready {
            if !fd.intact() {
                fd.disown();
                return;
            }
            let mut b = [0u8; 8];
            let _ = rustix::io::read(&fd, &mut b);
        }
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
    FILE_IO.store(0, Ordering::SeqCst);
}

/// Reads, writes and syncs of files handed to the workers or the direct
/// lane and not over yet ([`Job::io_begins`], [`Job::io_over`]), counted
/// without a lock.
static FILE_IO: AtomicUsize = AtomicUsize::new(0);

/// Counts one more file request handed over.
pub(super) fn file_io_begins() {
    FILE_IO.fetch_add(1, Ordering::SeqCst);
}

/// Counts one file request's system call over (never below zero: a `fork`
/// child starts from zero and may let go of a parent's job).
pub(super) fn file_io_ends() {
    let _ = FILE_IO.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// The number of file requests handed to the workers or the direct lane
/// and not over yet, read without a lock.
pub(crate) fn file_io_pending() -> usize {
    FILE_IO.load(Ordering::SeqCst)
}

/// Number of pool and poller threads alive now.
pub(crate) fn threads_alive() -> usize {
    let p = POOL.load(Ordering::SeqCst);
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `pool`.
    let st = lock(&unsafe { &*p }.st);
    st.threads + st.poller as usize + st.reapers
}

/// Whether a stream's job handed to the poller is still there and not done.
fn still_to_do(j: &Weak<Job>) -> bool {
    j.upgrade().is_some_and(|j| !j.is_done())
}
