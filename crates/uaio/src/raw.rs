//! The raw interface: the six AIO calls with the kernel's arguments.
//!
//! Each function takes what the system call takes and returns what it
//! returns, with errors as negative errno values (the libaio convention; the
//! drop-in library turns them into `-1`/`errno` where the `syscall()`
//! convention is wanted). Pointers are the application's and are never
//! trusted: unreadable or unwritable memory gives `-EFAULT`, never a crash.
//!
//! # Safety
//! The functions are `unsafe` because they write where the application
//! points (`*ctxp`, `aio_key` of each iocb, the events array) and because
//! submitted buffers are read and written by the I/O until the request
//! completes: the caller must own that memory, exactly as with the kernel.
//!
//! # Calls from signal handlers
//! A kernel system call is whole between signal handlers; a uaio call is
//! not, and a handler that calls uaio may interrupt one holding a lock or
//! inside `malloc`. Such a call (made while the thread is inside a uaio
//! call and not asleep, or holds one of the engine's locks,
//! `sync::held_here`) takes no lock and allocates nothing: `io_submit`,
//! `io_cancel`, `io_setup` and `io_destroy` answer `-EAGAIN`,
//! `io_getevents` 0 events when `min_nr` is 0 and `-EINTR` otherwise. A
//! handler that interrupts a uaio call asleep in `io_getevents`, or code
//! outside uaio, makes an ordinary call.

use std::time::{Duration, Instant};

use rustix::io::Errno;
use uaio_abi::{aio_context_t, aio_sigset, io_event, iocb};

use crate::backend::BackendOp;
use crate::kioctx::{Deadline, FdCache, Kioctx, Prepared};
use crate::sync;
use crate::sys::spare::Spare;
use crate::table;
use crate::uaccess::{self, read_user, user_field, UserPtr};

pub use crate::sys::deferral::{set_action as set_signal_action, RealSigaction};

fn neg(e: Errno) -> i64 {
    -(e.raw_os_error() as i64)
}

/// `io_setup(2)`: creates a context able to hold `nr_events` requests and
/// stores its handle in `*ctxp`, which must be 0. Returns 0 or `-errno`.
///
/// # Safety
/// `ctxp` is written if it is readable and holds 0.
pub unsafe fn io_setup(nr_events: u32, ctxp: *mut aio_context_t) -> i64 {
    let _faults = uaccess::enter(true);
    let handle_at = UserPtr::<u64>::new(ctxp as u64);
    let Ok(cur) = handle_at.read() else { return neg(Errno::FAULT) };
    if cur != 0 || nr_events == 0 {
        return neg(Errno::INVAL);
    }
    // See "Calls from signal handlers" above.
    let Some(_call) = sync::enter_call() else { return neg(Errno::AGAIN) };
    crate::sys::internal_fds::sweep();
    match table::create(nr_events, None) {
        Ok(handle) => {
            if handle_at.write(&handle).is_err() {
                if let Some(ctx) = table::remove(handle) {
                    ctx.kill();
                    table::destroyed(&ctx);
                }
                return neg(Errno::FAULT);
            }
            0
        }
        Err(e) => neg(setup_errno(e)),
    }
}

/// What `io_setup` answers for a failure of uaio's own: the kernel's call
/// fails only with `EAGAIN`, `EFAULT`, `EINVAL`, `ENOMEM` or `ENOSYS` (the
/// last where AIO is not built, which is never uaio's case), and a
/// resource uaio could not get for the context (a descriptor, a thread, a
/// system call a seccomp filter refuses, with whatever errno) is `EAGAIN`,
/// as the kernel answers when it has no room (before, the raw errno came
/// back: `EPERM` when a filter refused `eventfd2`).
fn setup_errno(e: Errno) -> Errno {
    if [Errno::AGAIN, Errno::FAULT, Errno::INVAL, Errno::NOMEM].contains(&e) {
        e
    } else {
        Errno::AGAIN
    }
}

/// Prepares the process to end without its exit handlers: call it just
/// before `_exit`, `_Exit` or the `exit_group` system call. The kernel lets
/// the requests in flight finish before a process is gone; `exit` runs
/// uaio's `atexit` hook for that, and this is the same wait for the ways
/// out that run no hook: file and block-device reads, writes and syncs
/// accepted so far complete (their events go to the rings as usual), other
/// threads' later `io_submit` calls never return. The drop-in library
/// calls it from its own `_exit`, `_Exit` and `syscall(SYS_exit_group)`.
/// The calling thread takes no lock and allocates nothing (the progress
/// thread does the wait), so a signal handler may call it like `_exit`.
/// It does nothing in a `vfork` child. Called from a signal handler that
/// interrupted a uaio call of the same thread, it waits, taking no lock,
/// for the thread pool's file requests only, and gives up when they stop
/// progressing for 2 s (a worker may need a lock the interrupted call
/// holds).
pub fn before_exit() {
    table::finish_file_io_before_exit();
}

/// The calling thread is about to end without running its thread-local
/// destructors: call it just before the main thread's `pthread_exit`
/// (the C library runs no thread-local destructor for it) or a `SYS_exit`
/// system call. On io_uring, requests end when the thread that submitted
/// them does; uaio starts what they still had to do again from a living
/// thread, for the threads it knows to be gone. The drop-in library calls
/// it from its `pthread_exit` (main thread) and `syscall(SYS_exit)`.
pub fn thread_leaving() {
    crate::backend::uring::thread_leaving();
}

/// Prepares the process for `exec`: call it just before an `execve` (or
/// any of the C library's `exec` functions) that replaces this process,
/// and keep what it returns until the `exec` call returns. The kernel lets
/// the requests in flight finish when `exec` lets go of the old memory;
/// uaio's threads and io_uring's workers would instead die with the old
/// program and take accepted writes with them. File and block-device
/// reads, writes and syncs accepted so far complete (their events go to
/// the rings as usual, for the process to reap if the `exec` fails), and
/// other threads' `io_submit` calls wait, accepting nothing, until the
/// returned [`ExecHold`] is dropped (the `exec` failed), as the kernel's
/// `exec` ends the other threads before it waits. The calling thread
/// takes no lock and allocates nothing (the progress thread does the
/// wait), so a signal handler may call it like `execve`. The drop-in
/// library calls it from its `exec` functions and from
/// `syscall(SYS_execve)` and `syscall(SYS_execveat)`. It waits for
/// nothing in a `vfork` child; from a signal handler that interrupted a
/// uaio call it waits as [`before_exit`] does then.
pub fn before_exec() -> ExecHold {
    table::finish_file_io_before_exec();
    crate::uaccess::before_exec();
    ExecHold(())
}

/// What [`before_exec`] returns: dropping it (when the `exec` failed) lets
/// the other threads' `io_submit` calls go on.
#[must_use = "other threads' io_submit calls go on when it is dropped: keep it across the exec call"]
#[derive(Debug)]
pub struct ExecHold(());

impl Drop for ExecHold {
    fn drop(&mut self) {
        crate::uaccess::after_failed_exec();
        table::exec_failed();
    }
}

/// Whether `fd` is one of uaio's own descriptors (io_uring instances,
/// eventfds, duplicates of the program's files that requests in flight
/// hold): numbers the program was never given, as a kernel AIO context
/// gives it none. The drop-in library's `close`, `close_range`,
/// `closefrom`, `dup2` and `dup3` leave them alone, so that a program that
/// closes every descriptor it does not know of (a daemon's
/// `close_range(3, ~0U, 0)`) keeps its contexts working, as on the
/// kernel. Takes no lock and allocates nothing.
pub fn is_own_fd(fd: i32) -> bool {
    crate::sys::internal_fds::is_internal(fd)
}

/// Runs `f`, a `close`, `close_range`, `closefrom`, `dup2` or `dup3` of
/// the program's (the drop-in library's, which look at [`is_own_fd`] and
/// then call the C library's), while uaio makes no descriptor of its own:
/// uaio makes one at a low number and then moves it above its floor and
/// marks it, and a program's close between the two would close or
/// replace it. The wait is for a few system calls of another thread's.
/// Inside a uaio call (a signal handler that interrupted one) and on
/// uaio's own threads, `f` runs at once. `f` may call uaio itself (the
/// descriptors its thread makes meanwhile are made at once), but must not
/// wait for a request to complete: uaio's threads make no descriptor
/// until `f` returns.
pub fn program_closing<T>(f: impl FnOnce() -> T) -> T {
    crate::sys::remembered::changing(|| crate::sys::internal_fds::program_closing(f))
}

/// Runs `f`, a change of a descriptor's status flags by the program
/// (the drop-in library's `fcntl` with `F_SETFL`): what uaio kept about
/// descriptors from earlier calls is not used while it runs, nor after.
pub fn program_sets_flags<T>(f: impl FnOnce() -> T) -> T {
    crate::sys::remembered::changing(f)
}

/// The program is about to close or replace its descriptors `lo..=hi`
/// (called by the drop-in library's `close`, `close_range`, `closefrom`,
/// `dup2`, `dup3` and `fclose`, inside [`program_closing`], before the C library's
/// call): duplicates uaio kept for requests on those descriptors go first,
/// so that the program's close releases the file as the kernel's would.
/// Takes no lock and allocates nothing.
pub fn program_closes(lo: i32, hi: i32) {
    crate::sys::internal_fds::program_closes(lo, hi);
}

/// Tells uaio that every `close`, `close_range`, `closefrom`, `dup2` and
/// `dup3` of the program runs through [`program_closing`], and every
/// `fcntl(F_SETFL)` through [`program_sets_flags`] (the drop-in library
/// checks that the program's calls reach its own definitions): what a
/// descriptor number named, and its status flags, may then be kept from
/// one call to the next until one of them runs (`statx` and `F_GETFL` are
/// not repeated at every `io_submit`). Without it, every call looks at the
/// file again.
pub fn descriptor_changes_seen() {
    crate::sys::remembered::changes_seen();
}

/// Splits `first..=last` around uaio's own descriptors ([`is_own_fd`]):
/// calls `piece(a, b)` for each largest range `a..=b` within it that holds
/// none of them, lowest first, and stops at the first call that does not
/// return 0, whose value it returns (0 when every call did, or when there
/// was none). Takes no lock and allocates nothing, so a `fork` child or a
/// signal handler may use it.
pub fn around_own_fds(first: u32, last: u32, mut piece: impl FnMut(u32, u32) -> i32) -> i32 {
    let (mut lo, hi) = (u64::from(first), u64::from(last));
    while lo <= hi {
        let Some(own) = crate::sys::internal_fds::first_internal_in(lo, hi) else {
            return piece(lo as u32, hi as u32);
        };
        if own > lo {
            let r = piece(lo as u32, (own - 1) as u32);
            if r != 0 {
                return r;
            }
        }
        lo = own + 1;
    }
    0
}

/// `io_setup` for the safe API's builder: a context for `nr_events` on the
/// backend `want` (see [`table::create`]), its handle returned.
pub(crate) fn setup_on(nr_events: u32, want: table::Choice) -> Result<u64, Errno> {
    if nr_events == 0 {
        return Err(Errno::INVAL);
    }
    table::create(nr_events, Some(want))
}

/// `io_destroy(2)`: cancels what is pending, waits for every request in
/// flight, and invalidates the handle. Returns 0 or `-EINVAL`.
///
/// # Safety
/// None beyond the module's: the handle is only looked up.
pub unsafe fn io_destroy(ctx: aio_context_t) -> i64 {
    let _faults = uaccess::enter(true);
    let Some(_call) = sync::enter_call() else { return neg(Errno::AGAIN) };
    crate::sys::internal_fds::sweep();
    match table::remove(ctx) {
        Some(c) => {
            c.kill();
            table::destroyed(&c);
            0
        }
        None => neg(Errno::INVAL),
    }
}

/// `io_submit(2)`: submits up to `nr` iocbs; returns how many were
/// submitted, or `-errno` when the first one fails.
///
/// # Safety
/// See the module documentation: buffers of submitted requests must stay
/// valid until their completion is reaped.
pub unsafe fn io_submit(ctx: aio_context_t, nr: i64, iocbpp: *mut *mut iocb) -> i64 {
    let _faults = uaccess::enter(false);
    if nr < 0 {
        return neg(Errno::INVAL);
    }
    let Some(_call) = sync::enter_call() else { return neg(Errno::AGAIN) };
    crate::sys::internal_fds::sweep();
    let Some(c) = table::lookup(ctx) else { return neg(Errno::INVAL) };
    if !c.begin_submit() {
        return neg(Errno::INVAL);
    }
    let r = if crate::sys::remembered::changes_are_seen() {
        crate::sys::internal_fds::submitting(|| submit_to(&c, nr, iocbpp))
    } else {
        submit_to(&c, nr, iocbpp)
    };
    c.end_submit();
    r
}

thread_local! {
    /// The submitting thread's array of prepared requests, and its room
    /// for the operations they give the backend, kept between calls (taken
    /// out for the call, so a call from a signal handler that interrupts
    /// one makes its own).
    static PREPS: Spare<(Vec<Prepared>, Vec<BackendOp>)> = const { Spare::new() };
    /// The submitting thread's descriptor facts, emptied for each call (its
    /// room kept), taken out for the call as `PREPS` is.
    static FDS: Spare<FdCache> = const { Spare::new() };
}

/// Batches smaller than this try reads inline (one system call per read);
/// larger ones go to the backend together, where one call carries them all.
const INLINE_BATCH_LIMIT: usize = 4;

/// iocb pointers read from the application per copy.
const POINTER_CHUNK: usize = 16;

fn submit_to(c: &Kioctx, nr: i64, iocbpp: *mut *mut iocb) -> i64 {
    let nr = nr.min(c.ring_nr() as i64) as usize;
    if nr == 0 {
        return 0;
    }
    let mut fds = FDS.try_with(Spare::take).ok().flatten().unwrap_or_default();
    // Another thread submitting to this context at the same time would
    // queue behind this one in the io_uring (its submissions run one at a
    // time): reads then go inline, in parallel, whatever the batch size.
    fds.reset(nr < INLINE_BATCH_LIMIT || c.others_submitting());
    let mut scratch = PREPS.try_with(Spare::take).ok().flatten().unwrap_or_default();
    let (preps, ops) = &mut *scratch;
    let mut reserved = c.reserve_slots(nr as u32);
    let mut err = None;
    let mut n = 0usize;
    let mut ptrs = [0u64; POINTER_CHUNK];
    'chunks: for base in (0..nr).step_by(POINTER_CHUNK) {
        let k = (nr - base).min(POINTER_CHUNK);
        let at = UserPtr::<u64>::new(iocbpp as u64).add(base);
        // One copy for the chunk; where it faults, one pointer at a time, so
        // that the requests before an unreadable pointer are submitted.
        let whole = k == POINTER_CHUNK && at.read_slice(&mut ptrs).is_ok();
        for (i, slot) in ptrs.iter_mut().enumerate().take(k) {
            if !whole {
                match at.add(i).read() {
                    Ok(v) => *slot = v,
                    Err(_) => {
                        err = Some(Errno::FAULT);
                        break 'chunks;
                    }
                }
            }
            if preps.len() <= n {
                preps.push(Prepared::default());
            }
            fds.preparing(n);
            if let Err(e) = c.prepare(*slot, &mut fds, &mut preps[n], &mut reserved) {
                // What a failed preparation held (a RESFD) goes now.
                preps[n] = Prepared::default();
                err = Some(e);
                break 'chunks;
            }
            n += 1;
        }
    }
    c.release_slots(reserved);
    fds.apply_settled(&mut preps[..n]);
    c.start(&mut preps[..n], ops);
    let _ = PREPS.try_with(|v| v.put(scratch));
    let _ = FDS.try_with(|v| v.put(fds));
    match (n, err) {
        (0, Some(e)) => neg(e),
        (n, _) => n as i64,
    }
}

/// `io_cancel(2)`: asks for the request whose iocb is `iocb` to be
/// cancelled. Returns `-EINPROGRESS` when it was pending (its event comes
/// through the ring), else `-EINVAL`, or `-EFAULT` for an unreadable iocb.
/// `result` is not used, as in current kernels.
///
/// # Safety
/// None beyond the module's.
pub unsafe fn io_cancel(ctx: aio_context_t, iocb: *mut iocb, _result: *mut io_event) -> i64 {
    let _faults = uaccess::enter(false);
    let Ok(key) = user_field!(UserPtr::<iocb>::new(iocb as u64), iocb, aio_key).read() else {
        return neg(Errno::FAULT);
    };
    if key != uaio_abi::KIOCB_KEY {
        return neg(Errno::INVAL);
    }
    // "Not cancelled".
    let Some(_call) = sync::enter_call() else { return neg(Errno::AGAIN) };
    let Some(c) = table::lookup(ctx) else { return neg(Errno::INVAL) };
    match c.cancel(iocb as u64) {
        Ok(()) => neg(Errno::INPROGRESS),
        Err(e) => neg(e),
    }
}

fn deadline(timeout: *const libc::timespec) -> Result<Deadline, Errno> {
    if timeout.is_null() {
        return Ok(Deadline::Never);
    }
    let ts: [i64; 2] = read_user(timeout as u64).map_err(|_| Errno::FAULT)?;
    // The kernel's conversion: seconds past the largest representable
    // time mean no limit; otherwise the nanoseconds are computed in 64
    // bits and wrap, as its multiplication does.
    const KTIME_SEC_MAX: i64 = i64::MAX / 1_000_000_000;
    if ts[0] >= KTIME_SEC_MAX {
        return Ok(Deadline::Never);
    }
    let ns = ts[0].wrapping_mul(1_000_000_000).wrapping_add(ts[1]);
    if ns == 0 {
        return Ok(Deadline::Now);
    }
    if ns < 0 {
        // The kernel turns a negative relative timeout into an expiry that
        // looks like an overflow, and waits without limit.
        return Ok(Deadline::Never);
    }
    let d = Duration::from_nanos(ns as u64);
    Ok(Instant::now().checked_add(d).map_or(Deadline::Never, |t| Deadline::At(t, d)))
}

/// `io_getevents(2)`: waits for at least `min_nr` and reaps at most `nr`
/// events into `events`, for at most `timeout` (relative; null waits as long
/// as needed; zero does not wait). Returns the count or `-errno`.
///
/// # Safety
/// `events` must have room for `nr` events (it is written as the kernel
/// would; unmapped memory gives `-EFAULT`).
pub unsafe fn io_getevents(
    ctx: aio_context_t,
    min_nr: i64,
    nr: i64,
    events: *mut io_event,
    timeout: *mut libc::timespec,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { getevents(ctx, min_nr, nr, events, timeout, None) }
}

/// `io_pgetevents(2)`: `io_getevents` with the signal mask of `sig` in force
/// while waiting. Returns the count or `-errno`.
///
/// # Safety
/// As [`io_getevents`].
pub unsafe fn io_pgetevents(
    ctx: aio_context_t,
    min_nr: i64,
    nr: i64,
    events: *mut io_event,
    timeout: *mut libc::timespec,
    sig: *const aio_sigset,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { getevents(ctx, min_nr, nr, events, timeout, Some(sig)) }
}

unsafe fn getevents(
    ctx: aio_context_t,
    min_nr: i64,
    nr: i64,
    events: *mut io_event,
    timeout: *mut libc::timespec,
    sig: Option<*const aio_sigset>,
) -> i64 {
    let _faults = uaccess::enter(false);
    let deadline = match deadline(timeout) {
        Ok(d) => d,
        Err(e) => return neg(e),
    };
    let mut mask = None;
    if let Some(sig) = sig.filter(|s| !s.is_null()) {
        let Ok(s) = read_user::<[u64; 2]>(sig as u64) else { return neg(Errno::FAULT) };
        if s[0] != 0 {
            if s[1] != 8 {
                return neg(Errno::INVAL);
            }
            let Ok(m) = read_user::<u64>(s[0]) else { return neg(Errno::FAULT) };
            mask = Some(m);
        }
    }
    let Some(_call) = sync::enter_call() else {
        // Nothing can be harvested or copied without the locks or the
        // allocator the interrupted call may hold: no event now, and a
        // wait for some ends as interrupted (the events stay for the next
        // call).
        return match (min_nr, nr) {
            (m, n) if m < 0 || n < 0 || m > n => neg(Errno::INVAL),
            (0, _) => 0,
            _ => neg(Errno::INTR),
        };
    };
    let Some(c) = table::lookup(ctx) else { return neg(Errno::INVAL) };
    if min_nr < 0 || nr < 0 || min_nr > nr {
        return neg(Errno::INVAL);
    }
    match c.getevents(min_nr as usize, nr as usize, UserPtr::new(events as u64), deadline, mask, sig.is_some()) {
        Ok(n) => n as i64,
        Err(e) => neg(e),
    }
}

/// libaio's user-space shortcut, checked without risk: true when `timeout`
/// is `{0, 0}` and the ring at `ctx` (with a valid magic) holds no event, in
/// which case libaio's `io_getevents` returns 0 without entering the kernel
/// (even where the kernel would have refused the arguments); false when
/// the context's backend holds completions not yet in the ring.
pub fn libaio_empty_poll(ctx: aio_context_t, timeout: *const libc::timespec) -> bool {
    // (Before the entry's checks, which cost more than these: a wait
    // without a timeout, the common case, never takes the shortcut.)
    if ctx == 0 || timeout.is_null() {
        return false;
    }
    let _faults = uaccess::enter(false);
    let Ok(ts) = read_user::<[i64; 2]>(timeout as u64) else { return false };
    if ts != [0, 0] {
        return false;
    }
    if !ring_empty(ctx) {
        return false;
    }
    // uaio's own view of a ring holds the magic too, but is no handle: the
    // kernel's refuses it, as would libaio, which finds no magic there.
    // Completions the backend holds are events the kernel would have put
    // in the ring already (a POLL woken by this thread's own `write`): the
    // call goes on and takes them. (Not looked at from a signal handler
    // inside a uaio call, which may hold the table's lock.)
    match sync::enter_call() {
        Some(_call) => match table::lookup(ctx) {
            // Looked at again: a harvest that ended after the first look
            // published what it took.
            Some(c) => !c.may_have_events() && ring_empty(ctx),
            None => !table::in_own_ring_view(ctx),
        },
        None => true,
    }
}

/// The ring at `ctx` has a valid magic and holds no event.
fn ring_empty(ctx: aio_context_t) -> bool {
    match read_user::<uaio_abi::aio_ring>(ctx) {
        Ok(h) => h.magic == uaio_abi::AIO_RING_MAGIC && h.head == h.tail,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_libaio_shortcut_takes_no_address_of_uaios_own_view_of_a_ring() {
        let mut ctx = 0;
        // SAFETY: a valid place for the handle.
        assert_eq!(unsafe { super::io_setup(8, &mut ctx) }, 0);
        let own = crate::table::lookup(ctx).expect("the context").own_ring_view();
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // The handle's ring is empty: libaio answers 0 without a call.
        assert!(super::libaio_empty_poll(ctx, &zero));
        // uaio's view holds the same header, magic included, but names no
        // context: the call goes on and answers EINVAL, as the kernel's.
        assert!(!super::libaio_empty_poll(own, &zero));
        // SAFETY: the context made above.
        assert_eq!(unsafe { super::io_destroy(ctx) }, 0);
    }

    #[test]
    fn the_libaio_shortcut_is_not_taken_while_events_are_on_their_way() {
        let mut ctx = 0;
        // SAFETY: a valid place for the handle.
        assert_eq!(unsafe { super::io_setup(8, &mut ctx) }, 0);
        let c = crate::table::lookup(ctx).expect("the context");
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        for i in 0..200 {
            let mut p = [0i32; 2];
            // SAFETY: room for two descriptors.
            assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
            let mut cb = uaio_abi::iocb {
                aio_lio_opcode: uaio_abi::IOCB_CMD_POLL,
                aio_fildes: p[0] as u32,
                aio_buf: libc::POLLIN as u64,
                aio_data: i,
                ..Default::default()
            };
            let mut cbs = [&mut cb as *mut uaio_abi::iocb];
            // SAFETY: the iocb outlives the request (reaped below).
            assert_eq!(unsafe { super::io_submit(ctx, 1, cbs.as_mut_ptr()) }, 1);
            // SAFETY: a one-byte write to the pipe made above.
            assert_eq!(unsafe { libc::write(p[1], b"x".as_ptr().cast(), 1) }, 1);
            // Once the POLL's completion exists (in the backend, on its way
            // to the ring, or in it), an empty-handed answer would hide an
            // event the kernel's ring holds.
            let start = std::time::Instant::now();
            while !c.may_have_events() && super::ring_empty(ctx) {
                assert!(start.elapsed() < std::time::Duration::from_secs(5), "the POLL never completed");
                std::thread::yield_now();
            }
            assert!(!super::libaio_empty_poll(ctx, &zero), "POLL {i}: the shortcut answered 0 events");
            let mut ev = [uaio_abi::io_event::default(); 1];
            // SAFETY: room for one event; the timespec is valid.
            let n = unsafe { super::io_getevents(ctx, 1, 1, ev.as_mut_ptr(), std::ptr::null_mut()) };
            assert_eq!((n, ev[0].data), (1, i));
            assert!(ev[0].res & libc::POLLIN as i64 != 0, "POLL {i}: {:#x}", ev[0].res);
            // SAFETY: closing the pipe made above.
            unsafe {
                libc::close(p[0]);
                libc::close(p[1]);
            }
        }
        drop(c);
        // SAFETY: the context made above.
        assert_eq!(unsafe { super::io_destroy(ctx) }, 0);
    }
}
