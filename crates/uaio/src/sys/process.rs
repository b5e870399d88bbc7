//! Process-wide state and hooks: a value that a `fork` child replaces
//! wholesale (the old one is leaked, never freed, since threads of the
//! parent may have been using it), work done once per process that a
//! `fork` child can finish, and the `fork` and `exit` hooks.
//!
//! Nothing made once per process waits on a lock (no `Once`, `OnceLock` or
//! `LazyLock`): a `fork` while another thread held one would leave the
//! child's first uaio call waiting for ever.

use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// A process-wide value, set once and replaced (never freed) in a `fork`
/// child: readers get a `&'static T` that stays valid for ever.
#[derive(Debug)]
pub(crate) struct Leaked<T> {
    ptr: AtomicPtr<T>,
}

impl<T: Sync> Leaked<T> {
    /// Nothing yet.
    pub(crate) const fn new() -> Self {
        Leaked { ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The current value, if one was set.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `replace`
        // and is never freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The current value, or `make()`'s when none was set (if threads race,
    /// one value wins and the others are dropped unused).
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> T) -> &'static T {
        if let Some(v) = self.get() {
            return v;
        }
        let p = Box::into_raw(Box::new(make()));
        match self.ptr.compare_exchange(std::ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst) {
            // SAFETY: just made, never freed from now on.
            Ok(_) => unsafe { &*p },
            Err(winner) => {
                // SAFETY: `p` was never shared; `winner` came from
                // `Box::into_raw` and is never freed.
                unsafe {
                    drop(Box::from_raw(p));
                    &*winner
                }
            }
        }
    }

    /// Puts `v` in place and returns it; the previous value is leaked.
    pub(crate) fn replace(&self, v: T) -> &'static T {
        let p = Box::into_raw(Box::new(v));
        self.ptr.store(p, Ordering::SeqCst);
        // SAFETY: just made, never freed.
        unsafe { &*p }
    }
}

/// Something to do once per process, like `std::sync::Once`, that a `fork`
/// child can still do: a child forked while another thread of its parent
/// was doing it would wait for ever on a `Once` (that thread does not
/// exist in the child), so the one doing it is known by process, and a
/// process that finds another's mark takes the work over.
#[derive(Debug)]
pub(crate) struct ForkOnce {
    /// [`ForkOnce::DONE`], 0 (not done), or the process id of the process
    /// one of whose threads is doing it.
    state: AtomicI32,
}

impl ForkOnce {
    /// The work is done.
    const DONE: i32 = -1;

    /// Not done yet.
    pub(crate) const fn new() -> Self {
        ForkOnce { state: AtomicI32::new(0) }
    }

    /// Runs `f` unless it ran (or is running) in this process or before a
    /// `fork` in its parent; returns once it has run.
    #[inline]
    pub(crate) fn call_once(&self, f: impl FnOnce()) {
        if self.state.load(Ordering::Acquire) != Self::DONE {
            self.run(f);
        }
    }

    #[cold]
    fn run(&self, f: impl FnOnce()) {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let mut seen = 0;
        loop {
            match self.state.compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(Self::DONE) => return,
                // Another thread of this process is at it.
                Err(p) if p == me => {
                    std::thread::yield_now();
                    seen = 0;
                }
                // Not done, or left half done by a thread of the process
                // this one was forked from: taken over on the next try.
                Err(p) => seen = p,
            }
        }
        /// Gives the work back if `f` panics.
        struct Undo<'a>(&'a AtomicI32);
        impl Drop for Undo<'_> {
            fn drop(&mut self) {
                self.0.store(0, Ordering::Release);
            }
        }
        let undo = Undo(&self.state);
        f();
        std::mem::forget(undo);
        self.state.store(Self::DONE, Ordering::Release);
    }
}

/// A word on a private page of uaio's own that reads 1 while this memory is
/// the one uaio saw last and 0 in the copy a `fork` makes
/// (`MADV_WIPEONFORK`), whatever made the fork: null until [`watch_forks`]
/// first runs, or where the page could not be had.
static FORK_WATCH: AtomicPtr<std::sync::atomic::AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

/// Arms [`forked_unseen`]: at the first context, and again in a fork child
/// once uaio has done what a fork asks of it.
pub(crate) fn watch_forks() {
    let mut p = FORK_WATCH.load(Ordering::Acquire);
    if p.is_null() {
        let page = crate::ring::page_size();
        // SAFETY: a fresh anonymous private mapping at an address the
        // kernel chooses, never unmapped (its address is kept below).
        let Ok(m) = (unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                page,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }) else {
            return;
        };
        // SAFETY: madvise(2) of the page just mapped.
        if unsafe { libc::madvise(m, page, libc::MADV_WIPEONFORK) } != 0 {
            // SAFETY: our own mapping, unused.
            let _ = unsafe { rustix::mm::munmap(m, page) };
            return;
        }
        let word = m.cast::<std::sync::atomic::AtomicU32>();
        // SAFETY: the page is ours, aligned and mapped for good; the word
        // is set before its address is shared, so that no thread sees 0
        // in a memory that was not forked.
        unsafe { (*word).store(1, Ordering::Release) };
        p = match FORK_WATCH.compare_exchange(std::ptr::null_mut(), word, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => word,
            Err(other) => {
                // SAFETY: ours lost the race and was never shared.
                let _ = unsafe { rustix::mm::munmap(m, page) };
                other
            }
        };
    }
    // SAFETY: the page is mapped for good (see above).
    unsafe { (*p).store(1, Ordering::Release) };
}

/// Whether this memory is a `fork` child's copy that uaio's fork handler
/// did not see: a child made by a raw `fork`, `clone` or `clone3` system
/// call, which runs no `pthread_atfork` handler. One load.
#[inline]
pub(crate) fn forked_unseen() -> bool {
    let p = FORK_WATCH.load(Ordering::Relaxed);
    // SAFETY: a non-null address is the word of the page mapped for good.
    !p.is_null() && unsafe { (*p).load(Ordering::Relaxed) } == 0
}

/// The process whose memory this is (0: not known yet), see
/// [`memory_owner`].
static MEMORY_OWNER: AtomicI32 = AtomicI32::new(0);

/// The process id of the process that owns this memory: the calling
/// process, unless it is a `vfork` or `CLONE_VM` child sharing its
/// parent's memory, whose uaio state (contexts, threads, descriptors kept
/// by number) is the parent's; such a child ends without ending the
/// memory, and its threads and descriptors die with it. Asked once per
/// memory (a `fork` child asks again, see [`forget_memory_owner`]).
pub(crate) fn memory_owner() -> i32 {
    let known = MEMORY_OWNER.load(Ordering::Acquire);
    if known != 0 {
        return known;
    }
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let owner = if parent > 0 && shares_memory_with(parent) { parent } else { me };
    match MEMORY_OWNER.compare_exchange(0, owner, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => owner,
        Err(other) => other,
    }
}

/// Whether the process `other` shares the calling process's memory: by
/// `kcmp`, or where that is refused (Docker's default seccomp profile), by
/// whether `other`'s `maps` shows a mapping made for the purpose (the
/// same permission as `kcmp`'s is needed to read them, but no system call
/// a filter may refuse). False when neither can tell.
fn shares_memory_with(other: i32) -> bool {
    super::kcmp_memory(other).unwrap_or_else(|| {
        let page = crate::ring::page_size();
        let Ok(m) = super::mmap::Mapping::marker(page) else { return false };
        let start = m.as_ptr() as usize + page;
        let line = format!("{start:x}-{:x} r--p ", start + page);
        std::fs::read_to_string(format!("/proc/{other}/maps")).is_ok_and(|t| t.lines().any(|l| l.starts_with(&line)))
    })
}

/// In a `fork` child: the memory is a copy, the child's own.
pub(crate) fn forget_memory_owner() {
    MEMORY_OWNER.store(0, Ordering::Release);
}

/// Runs `f` in the child of every later `fork` (`pthread_atfork`).
pub(crate) fn on_fork_child(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::pthread_atfork(None, None, Some(f)) };
}

/// Runs `f` when the process calls `exit` or returns from `main`.
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::atexit(f) };
}

/// The C library's count of the process's threads: glibc ends the process
/// with `exit(0)` when the thread that brings it to zero ends (the last
/// thread returns or calls `pthread_exit`, the main thread included).
/// uaio's own threads must not count in it, or a program whose threads
/// all end that way would never end (the kernel's AIO has no threads).
/// glibc (2.34 on, and its libpthread before) exports the count as
/// `__nptl_nthreads`; another C library gives `None`, and uaio's threads
/// then count.
fn c_thread_count() -> Option<&'static std::sync::atomic::AtomicU32> {
    use std::sync::atomic::AtomicUsize;
    // 0: not looked up yet; 1: not found.
    static AT: AtomicUsize = AtomicUsize::new(0);
    let mut at = AT.load(Ordering::Relaxed);
    if at == 0 {
        // SAFETY: dlsym with a valid, NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__nptl_nthreads".as_ptr()) } as usize;
        // A count read while this thread runs is at least 1.
        // SAFETY: glibc's count is an aligned `unsigned int` that lives as
        // long as the C library; it is changed only with atomic operations.
        let plausible = p != 0
            && p.is_multiple_of(align_of::<u32>())
            && unsafe { (*(p as *const std::sync::atomic::AtomicU32)).load(Ordering::SeqCst) } >= 1;
        at = if plausible { p } else { 1 };
        AT.store(at, Ordering::Relaxed);
    }
    // SAFETY: as above: the C library's count, valid for ever.
    (at != 1).then(|| unsafe { &*(at as *const std::sync::atomic::AtomicU32) })
}

/// Whether the C library counts no thread (uaio's are not counted, see
/// [`Uncounted`]): the program's last thread ended by returning or with
/// `pthread_exit`, and the C library's `exit` (or the progress thread's,
/// see `progress::PROGRAM_GONE_SUSPECTED`) ends the process. `None` where
/// the count is not known.
pub(crate) fn c_thread_count_is_zero() -> Option<bool> {
    c_thread_count().map(|c| c.load(Ordering::SeqCst) == 0)
}

/// Held by each of uaio's threads for its whole life: the thread is taken
/// out of the C library's thread count ([`c_thread_count`]) and put back
/// just before it ends (the C library takes it out once more as it ends,
/// and ends the process if it was the last). It is also listed among
/// uaio's threads ([`program_threads_left`]) until it starts to end.
pub(crate) struct Uncounted(Option<&'static std::sync::atomic::AtomicU32>);

impl Uncounted {
    /// Takes the calling thread (one of uaio's) out of the count. When it
    /// finds no other thread counted, either the program's last thread
    /// ended while this one was starting (without ending the process,
    /// since this one still counted), or the process is ending: `suspect`
    /// then runs, to look at the process's threads ([`program_threads_left`])
    /// and end it if none of the program's is left.
    pub(crate) fn new(suspect: impl FnOnce()) -> Self {
        register_own_thread(true);
        let Some(c) = c_thread_count() else { return Uncounted(None) };
        if c.fetch_sub(1, Ordering::SeqCst) == 1 {
            suspect();
        }
        Uncounted(Some(c))
    }
}

impl Drop for Uncounted {
    fn drop(&mut self) {
        // From here on, this thread may be the one the C library has end
        // the process: it is no longer one of uaio's for the look at
        // the process's threads. Counted first, for a look under way
        // (see `OWN_THREADS_CHANGES`).
        OWN_THREADS_CHANGES.fetch_add(1, Ordering::SeqCst);
        register_own_thread(false);
        let Some(c) = self.0 else { return };
        // With no thread counted the process is ending (or about to be
        // ended for want of the program's threads): this thread must not
        // bring the count from 1 to 0 and end it a second time, so it puts
        // one more back, which stays.
        let _ = c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(if n == 0 { 2 } else { n + 1 }));
    }
}

/// How many times a thread of uaio's was listed in or taken out of
/// [`OWN_THREADS`]. A look at the process's threads that passed a thread
/// before it was listed takes it for the program's; one that passed it
/// while it was listed, and found none of the program's, may have seen
/// the program's last thread end without the C library ending the process
/// (a thread of uaio's counts again in the C library's count from the
/// moment it is taken out to its very end, and the last of the count is
/// then that thread's). Either look is made again when the number moved
/// meanwhile.
static OWN_THREADS_CHANGES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The thread ids of uaio's own threads (0: a free slot). A thread that
/// finds no free slot is taken for one of the program's (the process then
/// ends with its exit, not before).
static OWN_THREADS: [std::sync::atomic::AtomicI32; 512] = [const { std::sync::atomic::AtomicI32::new(0) }; 512];

/// Lists (`true`) or unlists the calling thread among uaio's own.
fn register_own_thread(on: bool) {
    let me = super::gettid();
    let (from, to) = if on { (0, me) } else { (me, 0) };
    for slot in &OWN_THREADS {
        if slot.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            break;
        }
    }
    if on {
        OWN_THREADS_CHANGES.fetch_add(1, Ordering::SeqCst);
    }
}

/// In a `fork` child: none of the parent's threads is there.
pub(crate) fn forget_own_threads() {
    for slot in &OWN_THREADS {
        slot.store(0, Ordering::SeqCst);
    }
    STARTING.store(0, Ordering::SeqCst);
}

/// uaio's threads spawned and not listed yet ([`OWN_THREADS`]): until
/// they are, a look at the process's threads takes them for the program's.
static STARTING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One of uaio's threads is about to be spawned (`true`), or is listed or
/// failed to start (`false`).
pub(crate) fn own_thread_starting(on: bool) {
    if on {
        STARTING.fetch_add(1, Ordering::SeqCst);
    } else {
        let _ = STARTING.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// Whether one of uaio's threads is starting, not listed yet.
pub(crate) fn own_threads_starting() -> bool {
    STARTING.load(Ordering::SeqCst) > 0
}

/// Whether a thread of the process that is not one of uaio's is still
/// alive (not a zombie): `/proc/self/task`, every thread's `stat`. `true`
/// when the look fails.
/// `starting`: the caller is one of uaio's threads that is starting itself
/// (see [`own_thread_starting`]); its look waits for no other thread's
/// start (two starting at once would wait for each other).
pub(crate) fn program_threads_left(starting: bool) -> bool {
    !matches!(look_at_threads(!starting), Ok(None))
}

/// A thread of the process that is not one of uaio's (nor one of
/// io_uring's workers, `iou-*`, which belong to the kernel) and is still
/// alive (not a zombie), the first thread if it is one of them; `Err` when
/// `/proc/self/task` cannot be read. With it, whether its name is one of
/// uaio's (`uaio-*`): one of uaio's threads on its way out, no longer
/// listed among uaio's (see [`Uncounted`]), looks like the program's until
/// it is gone, and is given only when no other is left.
pub(crate) fn live_program_thread() -> Result<Option<(i32, bool)>, ()> {
    look_at_threads(true)
}

/// [`live_program_thread`]; `wait`: whether to wait for uaio's threads
/// that are starting to be listed.
fn look_at_threads(wait: bool) -> Result<Option<(i32, bool)>, ()> {
    let others_starting = || wait && own_threads_starting();
    loop {
        let changes = OWN_THREADS_CHANGES.load(Ordering::SeqCst);
        let starting = others_starting();
        let found = look_for_program_thread(&listed_threads()?);
        // A thread of uaio's starting, not listed yet, looks like the
        // program's (its name may not be set yet) or like one of uaio's on
        // its way out; either may live on for long (the progress thread, a
        // worker spawned for a job): look again once it is listed.
        if starting || others_starting() {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        // One was listed (started and listed during the look) or unlisted
        // (began to end) meanwhile.
        if OWN_THREADS_CHANGES.load(Ordering::SeqCst) != changes {
            continue;
        }
        return Ok(found);
    }
}

/// Whether the thread `tid` is listed among uaio's own.
pub(crate) fn is_own_thread(tid: i32) -> bool {
    OWN_THREADS.iter().any(|t| t.load(Ordering::SeqCst) == tid)
}

/// The thread ids in `/proc/self/task`, listed until two lists in a row
/// agree: the kernel's list of a thread group stops early when the thread
/// it has just listed ends before it moves on (it goes from thread to
/// thread, and an ended one links to nothing), and the threads after it
/// would be missed. A list cut that way names a thread that has ended,
/// which the next list cannot name, so two equal lists are whole.
fn listed_threads() -> Result<Vec<i32>, ()> {
    let mut last = list_threads_once()?;
    loop {
        let again = list_threads_once()?;
        if again == last {
            return Ok(last);
        }
        last = again;
    }
}

/// One list of `/proc/self/task`, sorted (see [`listed_threads`]).
fn list_threads_once() -> Result<Vec<i32>, ()> {
    let dir = std::fs::read_dir("/proc/self/task").map_err(|_| ())?;
    let mut tids: Vec<i32> =
        dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect();
    tids.sort_unstable();
    Ok(tids)
}

/// [`live_program_thread`]'s look at the threads `tids`.
fn look_for_program_thread(tids: &[i32]) -> Option<(i32, bool)> {
    let first = std::process::id() as i32;
    let mut found = None;
    for &tid in tids {
        if is_own_thread(tid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else { continue };
        // The command name is between the first '(' and the last ')'; the
        // state follows.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map_or("", |(_, comm)| comm);
        let state = rest.trim_start().chars().next();
        if comm.starts_with("iou-") || matches!(state, Some('Z' | 'X')) {
            continue;
        }
        let named_own = comm.starts_with("uaio-");
        if tid == first {
            return Some((tid, named_own));
        }
        // The program's threads before uaio's on their way out.
        if found.is_none_or(|(_, own)| own && !named_own) {
            found = Some((tid, named_own));
        }
    }
    found
}

/// The status the thread `tid` of this process ended with (`stat`'s 52nd
/// field, in `waitpid`'s form), while it is a zombie: the first thread
/// stays one until the process ends.
pub(crate) fn thread_exit_status(tid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields from the state (the 3rd) on: the 52nd is the 50th of them.
    rest.split_whitespace().nth(49)?.parse().ok()
}

/// The address of the first thread's `clear_child_tid` word (set with
/// `set_tid_address` by the C library, which the kernel clears and wakes
/// when the thread ends), 0 while not known. Only the thread itself can
/// ask for it; a fork child asks again.
static FIRST_TID_WORD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Notes the first thread's `clear_child_tid` word if the caller is the
/// first thread; returns whether it is known.
pub(crate) fn note_first_thread() -> bool {
    if FIRST_TID_WORD.load(Ordering::SeqCst) != 0 {
        return true;
    }
    let tid = super::gettid();
    if tid != std::process::id() as i32 {
        return false;
    }
    let mut word: *mut i32 = std::ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS stores one pointer at the address given.
    let r = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut word as *mut *mut i32) };
    // SAFETY: a non-null answer is the address of the thread's own tid
    // word, in the C library's descriptor of the first thread, which is
    // never freed.
    if r != 0 || word.is_null() || unsafe { word.read_volatile() } != tid {
        return false;
    }
    FIRST_TID_WORD.store(word as usize, Ordering::SeqCst);
    true
}

/// In a fork child: the first thread is another one.
pub(crate) fn forget_first_thread() {
    FIRST_TID_WORD.store(0, Ordering::SeqCst);
}

/// Waits until the first thread is ending (its `clear_child_tid` word
/// reads 0: the kernel clears it on the way out, before the thread is a
/// zombie); returns its thread id, or `None` when the word is not known.
pub(crate) fn wait_for_first_thread_end() -> Option<i32> {
    let addr = FIRST_TID_WORD.load(Ordering::SeqCst);
    if addr == 0 {
        return None;
    }
    // SAFETY: the word lives in the C library's descriptor of the first
    // thread, which is never freed; it is aligned and read atomically
    // (the kernel writes it once, with 0, when the thread ends).
    let word = unsafe { &*(addr as *const std::sync::atomic::AtomicU32) };
    loop {
        let v = word.load(Ordering::SeqCst);
        if v == 0 {
            return Some(std::process::id() as i32);
        }
        // The kernel's wake at the thread's end is not a private one.
        let _ = rustix::thread::futex::wait(word, rustix::thread::futex::Flags::empty(), v, None);
    }
}

/// Ends the process at once with `code` (`_exit`: no exit handler runs,
/// no stdio buffer is flushed).
pub(crate) fn end_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process.
    unsafe { libc::_exit(code) }
}

/// A descriptor that becomes readable when the thread `tid` of this
/// process ends (`pidfd_open` with `PIDFD_THREAD`, Linux 6.9), as one of
/// uaio's descriptors.
pub(crate) fn watch_thread(tid: i32) -> Result<super::internal_fds::InternalFd, rustix::io::Errno> {
    let pid = rustix::process::Pid::from_raw(tid).ok_or(rustix::io::Errno::SRCH)?;
    let thread = rustix::process::PidfdFlags::from_bits_retain(libc::O_EXCL as u32);
    super::internal_fds::InternalFd::make(|| rustix::process::pidfd_open(pid, thread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{mpsc, Arc};

    /// Lists the process's threads with `list` while threads made before
    /// a watched one end one after another; returns how many lists missed
    /// the watched thread (which lives all along), of how many.
    fn misses(list: fn() -> Result<Vec<i32>, ()>, rounds: usize) -> (usize, usize) {
        let (missed, lists) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for _ in 0..rounds {
            let mut ends = Vec::new();
            let mut mortal = Vec::new();
            for _ in 0..8 {
                let (tx, rx) = mpsc::channel::<()>();
                ends.push(tx);
                mortal.push(std::thread::spawn(move || {
                    let _ = rx.recv();
                }));
            }
            let (tid_tx, tid_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let watched = std::thread::spawn(move || {
                tid_tx.send(crate::sys::gettid()).unwrap();
                let _ = stop_rx.recv();
            });
            let tid = tid_rx.recv().unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let lister = {
                let (done, missed, lists) = (done.clone(), missed.clone(), lists.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        let tids = list().unwrap();
                        lists.fetch_add(1, Ordering::SeqCst);
                        if !tids.contains(&tid) {
                            missed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            };
            for (end, t) in ends.into_iter().zip(mortal) {
                drop(end);
                t.join().unwrap();
            }
            done.store(true, Ordering::SeqCst);
            lister.join().unwrap();
            drop(stop_tx);
            watched.join().unwrap();
        }
        (missed.load(Ordering::SeqCst), lists.load(Ordering::SeqCst))
    }

    /// A thread ending while `/proc/self/task` is read cuts the kernel's
    /// list short; the list the look at the process's threads uses names
    /// every living thread all the same (one read alone missed the watched
    /// thread 14 times in 213,801 lists here: a process taken for ended).
    #[test]
    fn threads_ending_during_a_list_hide_no_living_thread() {
        let (missed, lists) = misses(listed_threads, 400);
        assert_eq!(missed, 0, "the watched thread was missing from {missed} of {lists} lists");
    }

    #[test]
    fn fork_once_runs_once_across_threads() {
        static ONCE: ForkOnce = ForkOnce::new();
        static RUNS: AtomicI32 = AtomicI32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    ONCE.call_once(|| {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        RUNS.fetch_add(1, Ordering::SeqCst);
                    });
                    // Nobody returns before the work is done.
                    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
                });
            }
        });
        ONCE.call_once(|| {
            RUNS.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn fork_once_left_half_done_by_another_process_is_taken_over() {
        // What a fork child finds when a thread of its parent was at it.
        let once = ForkOnce { state: AtomicI32::new(i32::MAX) };
        let mut runs = 0;
        once.call_once(|| runs += 1);
        once.call_once(|| runs += 1);
        assert_eq!(runs, 1);
    }
}
