//! What the thread pool keeps per context: the completions waiting to be
//! harvested, the jobs that can still be cancelled, and the wake-ups of
//! the context's waiters; and who is calling ([`Here`]).

use super::*;

/// The requests of one context that a worker or the poller has, by key, and
/// the keys cancelled before their job existed.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    pub(super) live: KeyMap<u64, Arc<Job>>,
    /// Keys whose cancellation found no job: a submission still on its way
    /// (it completes them as cancelled), or a request that already
    /// completed. At most one key per slot (its newest): an older one can no
    /// longer be submitted.
    pub(super) early: Vec<u64>,
}

/// Results not yet drained.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub(super) list: Vec<(u64, i32)>,
    /// An emptied list with its room, handed back by the last drain: the
    /// next one takes it, so that results are not pushed into a fresh
    /// allocation after every drain.
    pub(super) spare: Vec<(u64, i32)>,
    /// Whoever waits for this list was told since the last drain, by a
    /// thread of the owner (which reaches every kind of sleeper).
    pub(super) told: bool,
}

/// Per-context state shared with the pool and the poller.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) done: Mutex<Done>,
    pub(super) ndone: AtomicUsize,
    pub(super) jobs: Mutex<Jobs>,
    /// Length of `jobs.early`, read without the lock.
    pub(super) nearly: AtomicUsize,
    /// Futex word, bumped by every completion and wake-up.
    pub(super) seq: AtomicU32,
    /// Threads sleeping on `seq`.
    pub(super) sleepers: AtomicU32,
    /// A wake-up for the current or next sleeper.
    pub(super) kicked: AtomicBool,
    /// Eventfds of threads sleeping in `ppoll` (`io_pgetevents` with a
    /// signal mask), numbers in the owner's table.
    pub(super) ppollers: Mutex<Vec<i32>>,
    pub(super) nppoll: AtomicU32,
    pub(super) notify: Option<Arc<OwnedFd>>,
    pub(super) notify_on: AtomicBool,
    /// Requests of this context in the direct lane's kernel context.
    pub(super) inlane: AtomicUsize,
}

/// Whether the calling thread belongs to the process that owns the pool,
/// found out on first need.
#[derive(Debug)]
pub(super) struct Here {
    pub(super) owner: i32,
    pub(super) known: Cell<Option<bool>>,
}

impl Here {
    /// A thread of unknown process.
    pub(super) fn caller(p: &Pool) -> Here {
        Here { owner: p.owner, known: Cell::new(None) }
    }

    /// A pool thread, which lives in the owner.
    pub(super) fn pool_thread() -> Here {
        Here { owner: 0, known: Cell::new(Some(true)) }
    }

    pub(super) fn owner(&self) -> bool {
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
    pub(super) fn complete(&self, key: u64, res: i32, here: &Here) {
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
                sys::signal_own_eventfd(n.as_fd());
            }
        }
    }

    /// Wakes whoever sleeps in [`Backend::wait`]. The eventfds of `ppoll`
    /// sleepers are numbers in the owner's table, written only there.
    pub(super) fn signal(&self, here: &Here) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _ = futex::wake(&self.seq, futex::Flags::PRIVATE, i32::MAX as u32);
        }
        if self.nppoll.load(Ordering::SeqCst) > 0 && here.owner() {
            for &fd in lock(&self.ppollers).iter() {
                // SAFETY: a sleeper's eventfd, open while it is listed (the
                // sleeper unlists it under this lock before giving it back).
                sys::signal_own_eventfd(unsafe { BorrowedFd::borrow_raw(fd) });
            }
        }
    }

    /// Makes `job` findable by [`Backend::cancel`]; `false` (and nothing
    /// registered) if its key was cancelled already.
    pub(super) fn register(&self, job: &Arc<Job>) -> bool {
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
    pub(super) fn take_early(&self, key: u64) -> bool {
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
    pub(super) fn finish(&self, job: &Job, res: i32, here: &Here) {
        job.io_over();
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
