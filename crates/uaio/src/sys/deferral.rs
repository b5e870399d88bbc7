//! Signals held back until a uaio call is done with its work, as the
//! kernel delivers them only between system calls.
//!
//! The drop-in library routes the program's handlers of asynchronous
//! signals through [`trampoline`] ([`set_action`]). A signal that arrives
//! while its thread is inside a uaio call, and not asleep in it
//! ([`crate::sync::held_here`]), does not run the program's handler then:
//! it is queued again to the thread (with its `siginfo`) and left blocked
//! when the trampoline returns, and [`release`] unblocks it when the call
//! ends or goes to sleep, where the handler runs. A handler that jumps out
//! with `siglongjmp`, or calls into uaio, then finds no call half done: no
//! requests accepted and never started, no lock or count left held.
//!
//! Handlers installed before the library is loaded, or with the raw
//! `rt_sigaction` system call, are not routed (those signals reach the
//! program's handler at once, as before). Fault signals (`SIGSEGV`,
//! `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`) are never held back.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_void, siginfo_t};

/// Signal numbers are 1 to 64.
const NSIG: usize = 65;

/// The program's handler of each routed signal (0: not routed).
static HANDLERS: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// Its `sa_flags`.
static FLAGS: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// Some handler of the program's was routed once.
static ROUTED: AtomicBool = AtomicBool::new(false);

/// Whether the trampoline may ever run a handler of the program's (one was
/// routed through it).
pub(crate) fn any_routed() -> bool {
    ROUTED.load(Ordering::Relaxed)
}

thread_local! {
    /// Signals this thread holds back (bit `sig - 1`), pending, and
    /// blocked by uaio alone: the mask the program's code runs with does
    /// not block them (one that it blocks is no longer uaio's to let
    /// through, see [`mask_installed`]).
    static BLOCKED: Cell<u64> = const { Cell::new(0) };
}

thread_local! {
    /// Program handlers this thread's trampoline has run (see
    /// [`handlers_run`]).
    static RUN: Cell<u64> = const { Cell::new(0) };
}

/// How many of the program's routed handlers this thread has run so far:
/// a wait that a signal interrupted with no change of it, and with no
/// handler of the program's that is not routed ([`unrouted_handler`]),
/// was interrupted by no handler (a stop and continue, a tracer).
pub(crate) fn handlers_run() -> u64 {
    RUN.try_with(Cell::get).unwrap_or(0)
}

/// Whether some signal outside `blocked` (bit `sig - 1`) has a handler
/// of the program's that does not go through the trampoline (installed
/// with the raw system call, or under valgrind), which uaio cannot see
/// run. The C library's own for thread cancellation and `setxid` (32 and
/// 33) are not counted, nor uaio's fault handlers. Some 60 system calls:
/// for rare paths only.
pub(crate) fn unrouted_handler(blocked: u64) -> bool {
    let tramp = trampoline as *const () as usize;
    let open = |s: c_int| blocked & (1u64 << (s - 1)) == 0;
    (1..NSIG as c_int).filter(|&s| deferrable(s) && s != 32 && s != 33 && open(s)).any(|sig| {
        // The kernel's action: handler, flags, restorer, mask. The raw
        // system call: the drop-in's `sigaction` would report the
        // program's handler in place of the trampoline.
        let mut a = [0usize; 4];
        let r = crate::sys::signal_syscall(libc::SYS_rt_sigaction, sig as usize, 0, a.as_mut_ptr() as usize, 8);
        r == 0 && a[0] > libc::SIG_IGN && a[0] != tramp
    })
}

/// Signals blocked only because this thread holds them back.
pub(crate) fn held_blocked() -> u64 {
    BLOCKED.try_with(Cell::get).unwrap_or(0)
}

/// uaio installs `mask` as the thread's mask (its own, or the caller's
/// again): a held-back signal that `mask` blocks is blocked by the
/// program's mask from now on (it stays pending until the program
/// unblocks it); the others stay blocked by uaio alone. Returns those,
/// to be added to `mask`.
pub(crate) fn mask_installed(mask: u64) -> u64 {
    BLOCKED
        .try_with(|b| {
            b.set(b.get() & !mask);
            b.get()
        })
        .unwrap_or(0)
}

/// Whether `sig` may be held back: an asynchronous signal a handler can
/// catch.
fn deferrable(sig: c_int) -> bool {
    (1..NSIG as c_int).contains(&sig)
        && ![
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGKILL,
            libc::SIGSTOP,
        ]
        .contains(&sig)
}

/// The C library's `sigaction`, as the drop-in found it.
pub type RealSigaction = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

/// `sigaction(sig, act, old)` for the drop-in library: a handler of an
/// asynchronous signal is installed behind uaio's trampoline (the kernel sees
/// the trampoline, with the program's mask and flags, `SA_SIGINFO` added
/// and `SA_RESETHAND` done by the trampoline), and `old` reports the
/// program's own handler. `SIGSEGV` and `SIGBUS` go to uaio's fault
/// handling (`uaccess::set_fault_action`). `real` is the C library's
/// function.
///
/// # Safety
/// As `sigaction(2)`: `act` and `old` null or valid.
pub unsafe fn set_action(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
    real: RealSigaction,
) -> c_int {
    if sig == libc::SIGSEGV || sig == libc::SIGBUS {
        // SAFETY: forwarded contract.
        return unsafe { crate::uaccess::set_fault_action(sig, act, old, real) };
    }
    if !deferrable(sig) || under_valgrind() {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(sig, act, old) };
    }
    let i = sig as usize;
    let (prev_h, prev_f) = (HANDLERS[i].load(Ordering::SeqCst), FLAGS[i].load(Ordering::SeqCst));
    // SAFETY: a plain C struct, all zeroes valid.
    let mut was: libc::sigaction = unsafe { core::mem::zeroed() };
    let tramp = trampoline as *const () as usize;
    let rc = if act.is_null() {
        // SAFETY: a query into a local.
        unsafe { real(sig, core::ptr::null(), &mut was) }
    } else {
        // SAFETY: the caller vouches for `act`.
        let mut a = unsafe { *act };
        if a.sa_sigaction == tramp {
            // The trampoline itself, as the C library's own functions
            // (`sigset`, `siginterrupt`) report it: the program puts back
            // the handler it had.
            a.sa_sigaction = prev_h;
            a.sa_flags = (a.sa_flags & !(libc::SA_SIGINFO | libc::SA_RESETHAND))
                | (prev_f as c_int & (libc::SA_SIGINFO | libc::SA_RESETHAND));
        }
        if a.sa_sigaction > libc::SIG_IGN && a.sa_sigaction != libc::SIG_ERR {
            // Recorded first: a signal that comes as soon as the trampoline
            // is in place finds the handler.
            FLAGS[i].store(a.sa_flags as usize, Ordering::SeqCst);
            HANDLERS[i].store(a.sa_sigaction, Ordering::SeqCst);
            ROUTED.store(true, Ordering::SeqCst);
            let mut routed = a;
            routed.sa_sigaction = trampoline as *const () as usize;
            routed.sa_flags = (a.sa_flags | libc::SA_SIGINFO) & !libc::SA_RESETHAND;
            // SAFETY: a valid action, and a local for the old one.
            let rc = unsafe { real(sig, &routed, &mut was) };
            if rc != 0 {
                FLAGS[i].store(prev_f, Ordering::SeqCst);
                HANDLERS[i].store(prev_h, Ordering::SeqCst);
            }
            rc
        } else {
            // SAFETY: the caller's action, and a local for the old one.
            let rc = unsafe { real(sig, &a, &mut was) };
            if rc == 0 {
                HANDLERS[i].store(0, Ordering::SeqCst);
            }
            rc
        }
    };
    if rc == 0 && !old.is_null() {
        if was.sa_sigaction == tramp {
            // The kernel's flags (the ones it knows, and the C library's
            // SA_RESTORER), with the two the trampoline stands for.
            let own = libc::SA_SIGINFO | libc::SA_RESETHAND;
            was.sa_sigaction = prev_h;
            was.sa_flags = (was.sa_flags & !own) | (prev_f as c_int & own);
        }
        // SAFETY: the caller vouches for `old`.
        unsafe { *old = was };
    }
    rc
}

/// Whether the process runs under valgrind, whose signal frames do not
/// take a handler's change to the mask it returns to: a held-back signal
/// would come back at once, for ever. Nothing is routed there.
fn under_valgrind() -> bool {
    static UNDER: super::process::Leaked<bool> = super::process::Leaked::new();
    *UNDER.get_or_init(|| std::env::var_os("LD_PRELOAD").is_some_and(|v| v.to_string_lossy().contains("vgpreload")))
}

/// Where the kernel delivers a routed signal: held back while the thread
/// is inside a uaio call (see the module documentation), otherwise handed
/// to the program's handler as the kernel would have.
extern "C" fn trampoline(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let i = sig as usize;
    if crate::sync::held_here() && hold_back(sig, info, uc) {
        return;
    }
    let (h, flags) = (HANDLERS[i].load(Ordering::SeqCst), FLAGS[i].load(Ordering::SeqCst) as c_int);
    if h == 0 {
        // Changed to the default or ignored meanwhile.
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        HANDLERS[i].store(0, Ordering::SeqCst);
        reset_to_default(sig, flags);
    }
    let _ = RUN.try_with(|r| r.set(r.get().wrapping_add(1)));
    // The waits the handler interrupted are away until it returns: a
    // destroy in another thread does not wait for them (nor, if it jumps
    // out, ever).
    let away = super::waiting::handler_begins();
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed `h` with SA_SIGINFO: this type.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = unsafe { core::mem::transmute(h) };
        crate::uaccess::in_handler(|| f(sig, info, uc));
    } else {
        // SAFETY: the program installed `h` without SA_SIGINFO: this type.
        let f: extern "C" fn(c_int) = unsafe { core::mem::transmute(h) };
        crate::uaccess::in_handler(|| f(sig));
    }
    super::waiting::handler_ends(away);
}

/// Holds `sig` back: blocked for the thread, now and after the handler
/// returns, and queued again to it with its `siginfo`. False if the system
/// refused (the handler then runs at once, as before).
#[cfg(target_arch = "x86_64")]
fn hold_back(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) -> bool {
    use crate::sys::signal_syscall;
    let bit = 1u64 << (sig - 1);
    let errno = errno_get();
    let set = bit;
    signal_syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK as usize, &set as *const u64 as usize, 0, 8);
    let pid = std::process::id() as usize;
    let tid = crate::sys::gettid() as usize;
    let r = signal_syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig as usize, info as usize);
    if r < 0 {
        signal_syscall(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK as usize, &set as *const u64 as usize, 0, 8);
        errno_set(errno);
        return false;
    }
    // SAFETY: the kernel's ucontext for this delivery; the mask it puts
    // back on return is its `uc_sigmask`.
    unsafe { libc::sigaddset(&mut (*uc.cast::<libc::ucontext_t>()).uc_sigmask, sig) };
    let _ = BLOCKED.try_with(|d| d.set(d.get() | bit));
    errno_set(errno);
    true
}

#[cfg(not(target_arch = "x86_64"))]
fn hold_back(_sig: c_int, _info: *mut siginfo_t, _uc: *mut c_void) -> bool {
    false
}

/// The default action for `sig` again (a handler installed with
/// `SA_RESETHAND` runs once), its flags kept, as the kernel keeps them.
fn reset_to_default(sig: c_int, flags: c_int) {
    // SAFETY: a plain C struct, all zeroes valid: SIG_DFL.
    let mut dfl: libc::sigaction = unsafe { core::mem::zeroed() };
    dfl.sa_flags = flags;
    let errno = errno_get();
    // SAFETY: through the name `sigaction` (the drop-in's, which passes
    // the default action on to the C library's), with a valid action.
    unsafe { libc::sigaction(sig, &dfl, core::ptr::null_mut()) };
    errno_set(errno);
}

/// Lets the signals this thread held back through: called where a uaio
/// call ends or goes to sleep, when the thread holds nothing of uaio's
/// ([`crate::sync::held_here`] false, so no signal is held back while this
/// runs). Their handlers run before it returns (those the program's mask
/// blocks stay pending); returns whether any was let through.
pub(crate) fn release() -> bool {
    // Those the program's mask blocks stay pending, as they would have.
    let ours = BLOCKED.try_with(|c| c.replace(0)).unwrap_or(0);
    if ours != 0 {
        unblock(ours);
    }
    ours != 0
}

#[cfg(target_arch = "x86_64")]
fn unblock(set: u64) {
    let errno = errno_get();
    crate::sys::signal_syscall(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK as usize, &set as *const u64 as usize, 0, 8);
    errno_set(errno);
}

#[cfg(not(target_arch = "x86_64"))]
fn unblock(_set: u64) {}

fn errno_get() -> c_int {
    // SAFETY: the thread's errno location.
    unsafe { *libc::__errno_location() }
}

fn errno_set(v: c_int) {
    // SAFETY: the thread's errno location.
    unsafe { *libc::__errno_location() = v };
}
