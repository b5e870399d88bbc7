//! The process-wide context table, the `aio-max-nr` budget, the backend
//! choice and fork handling.
//!
//! All process state hangs off one pointer. A `fork` child (through the
//! `pthread_atfork` handler registered at the first `io_setup`) swaps in a
//! fresh, empty state and leaks the parent's: the child then sees none of the
//! parent's contexts (`EINVAL`, as with the kernel), can create its own, and
//! cannot deadlock on a lock some parent thread held at the moment of fork.
//! The progress thread (see `progress`) is started with the first context
//! of each process.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustix::io::Errno;

use crate::backend::threads::{self, Threads};
use crate::backend::uring::{self, Uring};
use crate::backend::Backend;
use crate::kioctx::Kioctx;
use crate::progress;
use crate::ring::{page_size, possible_cpus, Geometry};
use crate::sync;
use crate::sys::internal_fds;
use crate::sys::process::{self, Leaked};
use crate::sys::spare::Spare;
use crate::uaccess::read_user;

#[derive(Debug, Default)]
struct Table {
    /// Contexts by id (`ring->id`), as the kernel's `ioctx_table`.
    slots: Vec<Option<Arc<Kioctx>>>,
    /// Sum of `max_reqs` of live contexts.
    budget_used: u64,
    /// Contexts taken out by `io_destroy` whose requests may still be in
    /// flight (until [`destroyed`]): the process's exit or `exec` waits for
    /// their file I/O too, as the kernel's waits for a context being
    /// destroyed.
    dying: Vec<Arc<Kioctx>>,
}

#[derive(Debug)]
struct Process {
    table: RwLock<Table>,
    progress: Mutex<Option<Arc<OwnedFd>>>,
    /// The process this state belongs to, the owner of the memory (a
    /// `vfork` or `CLONE_VM` child shares it without being it, even when
    /// its `io_setup` made it, see [`process::memory_owner`]).
    pid: i32,
}

static PROCESS: Leaked<Process> = Leaked::new();
static INIT: process::ForkOnce = process::ForkOnce::new();

fn fresh() -> Process {
    Process { table: RwLock::new(Table::default()), progress: Mutex::new(None), pid: process::memory_owner() }
}

extern "C" fn after_fork_in_child() {
    // The parent's state is leaked on purpose: other threads may have held
    // its locks at the moment of fork, and its contexts are not ours.
    process::forget_memory_owner();
    PROCESS.replace(fresh());
    EPOCH.fetch_add(1, Ordering::AcqRel);
    FORKS.fetch_add(1, Ordering::AcqRel);
    threads::after_fork_in_child();
    crate::backend::uring::after_fork_in_child();
    internal_fds::after_fork_in_child();
    crate::sys::procfs::after_fork_in_child();
    crate::sys::fdinfo::after_fork_in_child();
    crate::sys::direct_hint::after_fork_in_child();
    crate::writeback::after_fork_in_child();
    crate::progress::after_fork_in_child();
    process::watch_forks();
}

/// In a child forked by a raw system call (no fork handler ran, see
/// [`process::forked_unseen`]): what the handler does, now, before the
/// child touches any of its parent's state. Its parent's contexts are then
/// unknown to it (`EINVAL`, as the kernel answers a fork child), where
/// before it submitted into its parent's rings (a write of the child's
/// landed; the child crashed).
#[inline]
fn notice_unseen_fork() {
    if process::forked_unseen() {
        after_fork_in_child();
    }
}

/// Which backend executes I/O in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// io_uring.
    Uring,
    /// The thread pool.
    Threads,
}

/// The backend, decided once per process: `UAIO_BACKEND=uring|threads`
/// forces one; otherwise io_uring when `io_uring_setup` works here.
pub(crate) fn choice() -> Choice {
    // Threads racing to the first answer may each look.
    static C: Leaked<Choice> = Leaked::new();
    *C.get_or_init(|| match std::env::var("UAIO_BACKEND").as_deref() {
        Ok("threads") | Ok("thread") | Ok("pool") => Choice::Threads,
        // Asked for, but refused to this process (seccomp, a sysctl): each
        // context would fall back to the thread pool, and the process's
        // backend is named for what runs.
        Ok("uring") | Ok("io_uring") => {
            if uring::available() {
                Choice::Uring
            } else {
                Choice::Threads
            }
        }
        v => {
            if let Some(v) = v.ok().filter(|v| !v.is_empty()) {
                // A misspelt setting must not pass for the automatic
                // choice without a word.
                eprintln!("uaio: UAIO_BACKEND={v:?} is neither uring nor threads: ignored, the backend is chosen automatically");
            }
            if !under_valgrind() && uring::available() {
                Choice::Uring
            } else {
                Choice::Threads
            }
        }
    })
}

/// Whether the process runs under valgrind (its preloaded core library is
/// in `LD_PRELOAD`). Valgrind 3.19 holds its global lock across
/// `io_uring_enter`, so a waiting thread stops every other thread, and a
/// signal during the wait aborts it: the thread pool is used instead.
fn under_valgrind() -> bool {
    std::env::var_os("LD_PRELOAD").is_some_and(|v| v.to_string_lossy().contains("/vgpreload_"))
}

fn process() -> &'static Process {
    INIT.call_once(|| {
        PROCESS.replace(fresh());
        process::on_fork_child(after_fork_in_child);
        process::at_exit(finish_file_io_at_exit);
        process::watch_forks();
    });
    PROCESS.get().expect("set on first use")
}

/// Runs when the process calls `exit` or returns from `main`: the kernel
/// lets every request in flight finish before a process is gone, so reads,
/// writes and syncs of files still in flight are waited for here (uaio's
/// threads and io_uring's workers would otherwise die with the process and
/// take accepted writes with them). What could wait forever (POLLs, stream
/// reads) is not waited for. `_exit`, `exec` and fatal signals run no such
/// hook; the README says what that means.
extern "C" fn finish_file_io_at_exit() {
    let Some(p) = process_if_any() else { return };
    // As for `_exit`: a signal handler may call `exit` too, having
    // interrupted `malloc` or a uaio call.
    finish_file_io_before_leaving(crate::kioctx::begin_exit);
    if crate::stats::on() && !sync::held_here() {
        for c in contexts(p) {
            c.write_stats();
        }
    }
}

/// For a process about to end without its exit handlers (`_exit`,
/// `_Exit`, the `exit_group` system call): waits, as
/// [`finish_file_io_at_exit`] does, for the file I/O in flight, the wait
/// done by the progress thread ([`progress::finish_file_io_elsewhere`]:
/// `_exit` may come from a signal handler that interrupted `malloc`).
/// Nothing in a `vfork` child (which shares the memory of a process whose
/// contexts are not its own).
pub(crate) fn finish_file_io_before_exit() {
    finish_file_io_before_leaving(crate::kioctx::begin_exit);
}

/// For a process about to `exec`: waits for the file I/O in flight, as
/// the kernel does when `exec` lets go of the old memory (its `exit_aio`),
/// in the same way as [`finish_file_io_before_exit`]. Meanwhile other
/// threads' `io_submit` calls wait before accepting anything (the
/// kernel's `exec` ends the other threads first), until [`exec_failed`].
pub(crate) fn finish_file_io_before_exec() {
    finish_file_io_before_leaving(crate::kioctx::begin_exec);
}

/// The wait of [`finish_file_io_before_exit`] and
/// [`finish_file_io_before_exec`], after `hold_back` (which keeps other
/// threads' submissions from being accepted meanwhile).
fn finish_file_io_before_leaving(hold_back: fn()) {
    if own_process().is_none() {
        return;
    }
    hold_back();
    // A signal handler that interrupted a uaio call: that call may be an
    // `io_submit` that never ends, so the progress thread waits for the
    // calls under way only briefly.
    let rounds = if sync::held_here() { INTERRUPTED_SUBMIT_ROUNDS } else { u32::MAX };
    progress::finish_file_io_elsewhere(rounds);
}

/// How long (in naps of 50 µs) the wait for a process leaving from a
/// signal handler that interrupted a uaio call waits for `io_submit` calls
/// under way to end: one of them may be the interrupted one.
const INTERRUPTED_SUBMIT_ROUNDS: u32 = 2000;

/// The `exec` that [`finish_file_io_before_exec`] prepared for failed: the
/// other threads' `io_submit` calls go on.
pub(crate) fn exec_failed() {
    crate::kioctx::end_exec();
}

/// The process state, if there is one and it is the calling process's
/// (not the parent's, seen from a `vfork` child).
fn own_process() -> Option<&'static Process> {
    let p = process_if_any()?;
    (p.pid == rustix::process::getpid().as_raw_nonzero().get()).then_some(p)
}

fn process_if_any() -> Option<&'static Process> {
    PROCESS.get()
}

/// The live context behind `handle`, found as the kernel finds it: the
/// `id` field of the ring header at that address (read defensively: the page
/// is the application's) indexes the table, and the context there must have
/// exactly this handle. A forged handle, a destroyed one, or a ring whose
/// `id` was overwritten gives `None` (`EINVAL`).
///
/// The kernel follows the application's `mremap` of the ring: the new
/// address becomes the handle and the old one stops working. uaio learns of
/// the move when the new address is first used: if the context named by the
/// `id` there has another handle, the memory at `handle` is proven to show
/// that context's ring pages (not a copy; see [`Kioctx::adopt_handle`]) and
/// then becomes the handle.
///
/// Each thread remembers the context it found last, valid while no context
/// was removed or moved and no fork happened since ([`EPOCH`]): then the
/// lookup costs one read of `id` instead of the table's lock.
pub(crate) fn lookup(handle: u64) -> Option<Arc<Kioctx>> {
    notice_unseen_fork();
    let epoch = EPOCH.load(Ordering::Acquire);
    // Taken out while in use: a call from a signal handler meanwhile finds
    // nothing and looks in the table.
    let mut last = LAST.try_with(Spare::take).ok().flatten();
    if let Some(l) = last.take() {
        let (h, e, weak) = &*l;
        if *h == handle && *e == epoch {
            if let Some(c) = weak.upgrade() {
                if read_user::<u32>(handle) == Ok(c.id()) {
                    let _ = LAST.try_with(|s| s.put(l));
                    return Some(c);
                }
            }
        }
        last = Some(l);
    }
    let p = process_if_any()?;
    let t = sync::read(&p.table);
    let id = find(&t, handle)?;
    let c = t.slots[id].clone()?;
    // The box of the stale entry is reused (no allocation once warm).
    let entry = (handle, epoch, Arc::downgrade(&c));
    let boxed = match last {
        Some(mut b) => {
            *b = entry;
            b
        }
        None => Box::new(entry),
    };
    // (Not during the thread's exit, when its thread-locals are gone.)
    let _ = LAST.try_with(|s| s.put(boxed));
    Some(c)
}

/// Moves on whenever a context is removed or takes a new handle, and in a
/// fork child: every thread's remembered lookup ([`LAST`]) is then stale.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Forks this process descends from since uaio was loaded (counted in the
/// child), so that state made before one can tell it is the parent's.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// [`FORKS`] now: a value kept from before a `fork` differs in the child.
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Acquire)
}

thread_local! {
    /// The thread's last lookup: handle, [`EPOCH`] then, and the context.
    static LAST: Spare<(u64, u64, Weak<Kioctx>)> = const { Spare::new() };
}

/// The table index of the context `handle` names (see [`lookup`]). The
/// caller holds the table lock, so a context being removed cannot adopt a
/// handle meanwhile.
fn find(t: &Table, handle: u64) -> Option<usize> {
    let id = read_user::<u32>(handle).ok()? as usize;
    let ctx = t.slots.get(id)?.as_ref()?;
    if ctx.handle() == handle {
        return Some(id);
    }
    if ctx.adopt_handle(handle) {
        EPOCH.fetch_add(1, Ordering::AcqRel);
        return Some(id);
    }
    None
}

/// `/proc/sys/fs/aio-max-nr`, uaio's per-process budget.
pub(crate) fn aio_max_nr() -> u64 {
    crate::sys::procfs::read(crate::sys::procfs::ProcFile::AioMaxNr)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65536)
}

/// Creates a context and returns its handle: on the backend `want`, or on
/// the process's choice ([`choice`]) when `None`. A context that wants
/// io_uring and cannot have a ring fails with `EOPNOTSUPP`; one that goes
/// with the process's choice falls back to the thread pool instead.
pub(crate) fn create(nr_events: u32, want: Option<Choice>) -> Result<u64, Errno> {
    notice_unseen_fork();
    let geo = Geometry::for_events(nr_events, possible_cpus(), page_size())?;
    let max = aio_max_nr();
    if nr_events as u64 > max {
        return Err(Errno::AGAIN);
    }
    let p = process();
    crate::writeback::note_submit_modes();
    let backend: Box<dyn Backend> = if own_process().is_some() {
        owner_backend(p, geo.capacity, want)?
    } else {
        // A `vfork` or `CLONE_VM` child: as on the kernel, its context
        // belongs to the memory, which outlives the child, and the parent
        // may go on using it. Nothing of it may die with the child: no
        // ring (its descriptor and its io_uring work are the child's), no
        // progress thread or eventfd. The thread pool's requests run in
        // the submitting thread of a process that is not the pool's
        // owner, and on the owner's threads once the owner submits.
        if want == Some(Choice::Uring) {
            return Err(Errno::OPNOTSUPP);
        }
        Box::new(Threads::new(None)?)
    };
    let backend = crate::backend::faulty::wrap(backend)?;
    let mut t = sync::write(&p.table);
    if t.budget_used + nr_events as u64 > max {
        return Err(Errno::AGAIN);
    }
    let id = match t.slots.iter().position(Option::is_none) {
        Some(i) => i,
        None => {
            t.slots.push(None);
            t.slots.len() - 1
        }
    };
    let ctx = Kioctx::new(nr_events, geo, id as u32, backend).map_err(|_| Errno::NOMEM)?;
    let handle = ctx.handle();
    t.budget_used += nr_events as u64;
    t.slots[id] = Some(Arc::new(ctx));
    Ok(handle)
}

/// The backend of a new context of the memory's owner `p` (see
/// [`create`]), with the progress thread and its eventfd started if they
/// are not yet.
fn owner_backend(p: &'static Process, capacity: u32, want: Option<Choice>) -> Result<Box<dyn Backend>, Errno> {
    // Running out of descriptors is uaio's concern, not the caller's: the
    // kernel never answers EMFILE here.
    let notify = crate::progress::eventfd(&p.progress, move || contexts(p)).map_err(|e| {
        if e == Errno::MFILE || e == Errno::NFILE {
            Errno::AGAIN
        } else {
            e
        }
    })?;
    // uaio's threads must not keep the process alive once the program's
    // last thread has ended, however it ended.
    if crate::sys::process::note_first_thread() {
        crate::progress::watch_program_threads(move || contexts(p));
    }
    // A context runs on io_uring while uaio's own descriptors keep within
    // their budget and the kernel grants the ring (memory, limits);
    // otherwise on the thread pool, never failing for uaio's own reasons.
    let ring = match want.unwrap_or_else(choice) {
        Choice::Uring if internal_fds::room_for_one_more(notify.as_fd()) => {
            Uring::new(capacity, Some(notify.as_fd())).ok()
        }
        _ => None,
    };
    if want == Some(Choice::Uring) && ring.is_none() {
        return Err(Errno::OPNOTSUPP);
    }
    Ok(match ring {
        Some(u) => Box::new(u),
        None => Box::new(Threads::new(Some(notify))?),
    })
}

/// Removes the context from the table (later lookups fail), unmaps the
/// application's view of its ring as the kernel's `io_destroy` does, and
/// returns it.
pub(crate) fn remove(handle: u64) -> Option<Arc<Kioctx>> {
    notice_unseen_fork();
    let p = process_if_any()?;
    let mut t = sync::write(&p.table);
    let id = find(&t, handle)?;
    let ctx = t.slots[id].take()?;
    EPOCH.fetch_add(1, Ordering::AcqRel);
    t.budget_used -= ctx.max_reqs as u64;
    ctx.unmap_ring();
    t.dying.push(ctx.clone());
    Some(ctx)
}

/// The context `ctx`, taken out by [`remove`], has nothing in flight any
/// more.
pub(crate) fn destroyed(ctx: &Arc<Kioctx>) {
    let Some(p) = process_if_any() else { return };
    sync::write(&p.table).dying.retain(|d| !Arc::ptr_eq(d, ctx));
}

/// The backend of the context behind `handle` (`None`: no such context).
pub(crate) fn backend_of(handle: u64) -> Option<&'static str> {
    lookup(handle).map(|c| c.backend_name())
}

/// Event slots in the ring of the context `handle`.
pub(crate) fn ring_nr_of(handle: u64) -> Option<u32> {
    lookup(handle).map(|c| c.ring_nr())
}

/// Whether `addr` lies in uaio's own view of a context's ring (which the
/// application never sees, but may guess: it can hold the ring's magic).
pub(crate) fn in_own_ring_view(addr: u64) -> bool {
    process_if_any().is_some_and(|p| contexts(p).iter().any(|c| c.in_own_ring_view(addr)))
}

/// Number of live contexts in this process.
pub(crate) fn live_contexts() -> usize {
    process_if_any().map(|p| sync::read(&p.table).slots.iter().flatten().count()).unwrap_or(0)
}

/// The contexts of `p` at this moment: the live ones, and those being
/// destroyed.
fn contexts(p: &Process) -> Vec<Arc<Kioctx>> {
    let t = sync::read(&p.table);
    t.slots.iter().flatten().chain(t.dying.iter()).cloned().collect()
}
