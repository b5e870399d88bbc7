//! Signal masks: uaio holds asynchronous signals back inside its calls
//! (except while sleeping under the caller's `io_pgetevents` mask), and
//! sleeps in `ppoll` with a mask installed atomically.

use rustix::io::Errno;

/// Signals a fault raises synchronously: never blocked by uaio, since a
/// blocked one kills the process instead of reaching a handler (uaio's own
/// fault recovery included).
const SYNCHRONOUS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Blocks every signal but the synchronous ones (`SIGSEGV`, `SIGBUS`,
/// `SIGILL`, `SIGFPE`, left as they were: one the thread blocks may be
/// pending, for the program's `sigwait`) in the calling thread; returns
/// the previous mask.
pub(crate) fn block_async_signals() -> u64 {
    let all = SYNCHRONOUS.iter().fold(!0u64, |m, &s| m & !bit(s));
    let old = change_mask(libc::SIG_BLOCK, all);
    // Signals blocked only because uaio holds them back are not the
    // caller's (see `deferral`).
    old & !super::deferral::held_blocked()
}

/// The bit of signal `sig` in an 8-byte kernel sigset.
const fn bit(sig: libc::c_int) -> u64 {
    1u64 << (sig - 1)
}

/// `pthread_sigmask(how, mask)` with 8-byte kernel sigsets: returns the
/// previous mask.
fn change_mask(how: libc::c_int, mask: u64) -> u64 {
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask through the C library (not via syscall()), with
    // 8-byte kernel sigsets, which is what pthread_sigmask passes on x86-64.
    // The C library silently keeps its own internal signals unblocked, as
    // it does for every caller.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        let mut prev: libc::sigset_t = core::mem::zeroed();
        core::ptr::copy_nonoverlapping(
            (&mask as *const u64).cast::<u8>(),
            (&mut set as *mut libc::sigset_t).cast::<u8>(),
            8,
        );
        libc::pthread_sigmask(how, &set, &mut prev);
        core::ptr::copy_nonoverlapping(
            (&prev as *const libc::sigset_t).cast::<u8>(),
            (&mut old as *mut u64).cast::<u8>(),
            8,
        );
    }
    old
}

/// The calling thread's id (never 0).
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Signals pending for the calling thread or its process, as an 8-byte
/// kernel sigset.
pub(crate) fn pending_signals() -> u64 {
    let mut out = 0u64;
    // SAFETY: sigpending into a zeroed set; its first 8 bytes are the
    // kernel's sigset on x86-64.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigpending(&mut set);
        core::ptr::copy_nonoverlapping(
            (&set as *const libc::sigset_t).cast::<u8>(),
            (&mut out as *mut u64).cast::<u8>(),
            8,
        );
    }
    out
}

/// The calling thread's signal mask, as an 8-byte kernel sigset.
pub(crate) fn thread_signal_mask() -> u64 {
    let mut out = 0u64;
    super::signal_syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK as usize, 0, &mut out as *mut u64 as usize, 8);
    out
}

/// Installs `mask` (8-byte kernel sigset) as the thread's signal mask.
/// uaio installs masks only around its own sleeps, where nothing faults.
pub(crate) fn set_signal_mask(mask: u64) {
    // Signals uaio holds back stay blocked whatever the mask (see
    // `deferral`).
    let mask = mask | super::deferral::mask_installed(mask);
    change_mask(libc::SIG_SETMASK, mask);
}

/// `ppoll` on one descriptor for `POLLIN`, with `sigmask` (8-byte kernel
/// sigset) installed atomically while waiting. Returns the count of ready
/// descriptors (0 on timeout).
pub(crate) fn ppoll_one(fd: i32, timeout: Option<std::time::Duration>, sigmask: Option<&u64>) -> Result<usize, Errno> {
    ppoll_fds(&[fd], timeout, sigmask).map(|ready| ready.count_ones() as usize)
}

/// What a wait on one of uaio's own eventfds found ([`ppoll_own_eventfd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnWake {
    /// The time ran out.
    Timeout,
    /// The eventfd has a count to read.
    Ready,
    /// The number is closed (`POLLNVAL`), or names a file of another kind:
    /// the program closed it behind uaio's back (a raw system call) and
    /// something else may have taken it.
    Lost,
}

/// `ppoll` for input on `fd`, one of uaio's own eventfds, for at most
/// `timeout`. An eventfd reports `POLLIN` alone; regular files, pipes,
/// sockets and `/proc` files report `POLLRDNORM` with it, so a number that
/// now names one of those is found [`OwnWake::Lost`] before anything reads
/// from it (an eventfd, timerfd or signalfd of the program's put on the
/// number cannot be told apart this way).
pub(crate) fn ppoll_own_eventfd(fd: i32, timeout: Option<std::time::Duration>) -> Result<OwnWake, Errno> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDNORM, revents: 0 };
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
    // SAFETY: ppoll(2) with one valid pollfd and a valid timespec or null.
    let r = unsafe {
        libc::ppoll(&mut pfd, 1, ts.as_ref().map_or(core::ptr::null(), |t| t as *const _), core::ptr::null())
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINTR)));
    }
    Ok(if r == 0 {
        OwnWake::Timeout
    } else if pfd.revents & (libc::POLLNVAL | libc::POLLRDNORM) != 0 {
        OwnWake::Lost
    } else {
        OwnWake::Ready
    })
}

/// Reads the count of the eventfd at number `fd` into `buf`: `false` when
/// the read is not an eventfd's (an error, or other than 8 bytes).
pub(crate) fn read_eventfd(fd: i32, buf: &mut [u8; 8]) -> bool {
    // SAFETY: read(2) of 8 bytes into a valid buffer; a number that names
    // nothing fails with EBADF.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) == 8 }
}

/// `ppoll` for input on each of `fds` (two at most), as [`ppoll_one`]:
/// which ones are ready (bit `i` for `fds[i]`), 0 on timeout.
pub(crate) fn ppoll_fds(
    fds: &[i32],
    timeout: Option<std::time::Duration>,
    sigmask: Option<&u64>,
) -> Result<u32, Errno> {
    let mut pfds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 2];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
    }
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
    // SAFETY: ppoll(2) through the C library with valid pollfds, timespec
    // and sigset; glibc copies only the 8 bytes the kernel uses.
    let r = unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        if let Some(m) = sigmask {
            core::ptr::copy_nonoverlapping(
                (m as *const u64).cast::<u8>(),
                (&mut set as *mut libc::sigset_t).cast::<u8>(),
                8,
            );
        }
        libc::ppoll(
            pfds.as_mut_ptr(),
            n as libc::nfds_t,
            ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec),
            if sigmask.is_some() { &set } else { core::ptr::null() },
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINTR)))
    } else {
        Ok(pfds[..n].iter().enumerate().filter(|(_, p)| p.revents != 0).fold(0, |m, (i, _)| m | 1 << i))
    }
}

/// The stack of each of uaio's threads: they run uaio's own code only
/// (system calls, queues, no recursion; a program's handler never runs
/// there, every asynchronous signal being blocked), and the default of
/// 2 MiB of address space per thread made `io_setup` fail under an
/// `RLIMIT_AS` that leaves the kernel's AIO room for its ring.
const THREAD_STACK: usize = 256 << 10;

/// Starts one of uaio's own threads, named `name`, with every asynchronous
/// signal blocked from its first instruction (the mask is set in the
/// calling thread around the spawn, and inherited): a signal sent to the
/// process is then always taken by one of the program's threads, as with
/// the kernel's AIO, which has no threads. A program that blocks a signal
/// in its threads and waits for it with `sigwait` still gets it.
pub(crate) fn spawn_thread<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let old = block_async_signals();
    // Of the synchronous signals, uaio's threads take only the faults of
    // their own copies to and from the program's memory: the others, sent
    // to the process, go to the program's threads (the kernel kills a
    // thread that raises one it blocks, as it would the program). The
    // faults are blocked too until the thread is marked as uaio's (below):
    // a fault signal sent to the process before then would be taken for
    // the program's. Restored below with the rest of the mask.
    let faults = bit(libc::SIGSEGV) | bit(libc::SIGBUS);
    change_mask(libc::SIG_BLOCK, bit(libc::SIGILL) | bit(libc::SIGFPE) | faults);
    crate::sys::process::own_thread_starting(true);
    let real_time = in_real_time();
    let r = std::thread::Builder::new().name(name.into()).stack_size(THREAD_STACK).spawn(move || {
        if real_time {
            // SAFETY: setpriority(2) of the calling thread (PRIO_PROCESS
            // with 0 names it on Linux); refused without CAP_SYS_NICE,
            // which leaves the inherited nice value.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
        }
        // Marked first: a fault signal sent to the process may come as
        // soon as they are unblocked.
        crate::uaccess::own_thread();
        // The faults of its copies must reach uaio's handler, whatever
        // the spawning thread blocked.
        change_mask(libc::SIG_UNBLOCK, faults);
        // Not one of the program's threads for the C library's "last
        // thread ends the process" (see `Uncounted`).
        let _uncounted = crate::sys::process::Uncounted::new(crate::progress::program_threads_ended);
        crate::sys::process::own_thread_starting(false);
        f()
    });
    match &r {
        Ok(h) if real_time => leave_real_time(h),
        Ok(_) => {}
        Err(_) => crate::sys::process::own_thread_starting(false),
    }
    set_signal_mask(old);
    r
}

/// The error of an `io_setup` (or other call) that needed one of uaio's
/// threads and could not start it (`spawn_thread` failed): `ENOMEM` when
/// the process has no address space left for the thread's stack (an
/// `RLIMIT_AS` reached; the kernel's `io_setup` answers `ENOMEM` when its
/// ring does not fit), `EAGAIN` otherwise (a limit on threads:
/// `RLIMIT_NPROC`, a cgroup's `pids.max`, `threads-max`), which the C
/// library reports the same way.
pub(crate) fn spawn_errno() -> Errno {
    // SAFETY: an anonymous mapping that nothing else knows of, unmapped
    // at once if made.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            THREAD_STACK,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM) {
            Errno::NOMEM
        } else {
            Errno::AGAIN
        };
    }
    // SAFETY: the mapping made just above, of that length.
    unsafe { libc::munmap(p, THREAD_STACK) };
    Errno::AGAIN
}

/// Whether the calling thread runs under a real-time policy (`SCHED_FIFO`,
/// `SCHED_RR`).
fn in_real_time() -> bool {
    // SAFETY: sched_getscheduler(0) asks about the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) } & !libc::SCHED_RESET_ON_FORK;
    policy == libc::SCHED_FIFO || policy == libc::SCHED_RR
}

/// A new thread inherits the scheduling policy of the thread that made it,
/// which is a program's thread inside a uaio call. Under a real-time policy
/// (`SCHED_FIFO`, `SCHED_RR`), uaio's thread would then share the
/// program's priority: a program thread that polls for completions
/// without sleeping (`io_getevents` with `min_nr` 0 in a loop) on the same
/// processor keeps it off that processor for ever, and the completion it
/// polls for never comes (the kernel's AIO completes in interrupts and in
/// its own worker threads, which run under the normal policy). uaio's
/// threads made by a real-time thread take the normal policy instead,
/// like those workers, at the highest priority it has (nice -20, as the
/// kernel's high-priority workers; the thread sets it itself, where the
/// process may): real-time throttling leaves them their share of the
/// processor, and other programs' threads under the normal policy do not
/// delay them much. The policy is set from here, before the thread may
/// have run at all on a processor the program's thread holds.
fn leave_real_time<T>(h: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the handle's thread is not joined or detached yet, so its
    // pthread_t is valid; `param` is a valid sched_param. A failure leaves
    // the inherited policy.
    unsafe { libc::pthread_setschedparam(h.as_pthread_t(), libc::SCHED_OTHER, &param) };
}

extern "C" {
    fn pthread_setcancelstate(state: libc::c_int, oldstate: *mut libc::c_int) -> libc::c_int;
}

/// `PTHREAD_CANCEL_ENABLE` and `PTHREAD_CANCEL_DISABLE` (glibc and musl).
const CANCEL_ENABLE: libc::c_int = 0;
const CANCEL_DISABLE: libc::c_int = 1;

/// The calling thread's cancellation (`pthread_cancel`) disabled while
/// this lives, then set back to what it was.
#[derive(Debug)]
pub(crate) struct NoCancel(libc::c_int);

impl NoCancel {
    /// Disables the calling thread's cancellation.
    pub(crate) fn new() -> NoCancel {
        let mut old = CANCEL_DISABLE;
        // SAFETY: sets the calling thread's cancel state; `old` is a valid
        // place for the previous one.
        unsafe { pthread_setcancelstate(CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        if self.0 == CANCEL_ENABLE {
            // SAFETY: as above; the previous state is not wanted.
            unsafe { pthread_setcancelstate(CANCEL_ENABLE, std::ptr::null_mut()) };
        }
    }
}
