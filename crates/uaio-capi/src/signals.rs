//! The C library's `sigaction` and `signal` functions, through which the
//! program's handlers of asynchronous signals are installed behind uaio's
//! trampoline ([`raw::set_signal_action`]): a signal that comes while the
//! thread is inside a uaio call runs its handler when the call is done
//! with its work, as the kernel runs handlers only between system calls.
//! The C library's `signal` family (and `sigset`) calls its own
//! `sigaction` inside the library, where no interposed name is reached, so
//! each is defined here.

use std::sync::atomic::AtomicUsize;

use libc::{c_int, sighandler_t};
use uaio::raw;

use crate::{next_definition, set_errno};

/// glibc's `SIG_HOLD` disposition of `sigset` (2).
const SIG_HOLD: sighandler_t = 2;

static NEXT_SIGACTION: AtomicUsize = AtomicUsize::new(0);

/// The C library's `sigaction`.
fn real_sigaction() -> Option<raw::RealSigaction> {
    let f = next_definition(c"sigaction", &NEXT_SIGACTION)?;
    // SAFETY: the C library's sigaction, of this type.
    Some(unsafe { std::mem::transmute::<*mut libc::c_void, raw::RealSigaction>(f) })
}

/// `sigaction(sig, act, old)`.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    match real_sigaction() {
        // SAFETY: the caller's arguments.
        Some(real) => unsafe { raw::set_signal_action(sig, act, old, real) },
        None => {
            set_errno(libc::ENOSYS);
            -1
        }
    }
}

/// `signal` with the given flags and mask of the handler's own signal,
/// returning the previous handler or `SIG_ERR`.
fn install(sig: c_int, handler: sighandler_t, flags: c_int, mask_self: bool) -> sighandler_t {
    if handler == libc::SIG_ERR {
        set_errno(libc::EINVAL);
        return libc::SIG_ERR;
    }
    // SAFETY: a plain C struct, all zeroes valid.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    if mask_self && (1..65).contains(&sig) {
        // SAFETY: a valid set and signal number.
        unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
    }
    // SAFETY: valid action and output.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// `signal(sig, handler)` with the C library's BSD semantics (the handler
/// stays, interrupted calls restart, the signal is blocked in its handler).
///
/// # Safety
/// As `signal(2)`.
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    install(sig, handler, libc::SA_RESTART, true)
}

/// `sysv_signal(sig, handler)`: System V semantics (the handler runs once,
/// unblocked, and interrupted calls do not restart).
///
/// # Safety
/// As `signal(2)`.
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    install(sig, handler, libc::SA_RESETHAND | libc::SA_NODEFER, false)
}

/// `sigset(sig, disposition)` (System V): `SIG_HOLD` blocks the signal;
/// anything else is installed with no flags and an empty mask, and the
/// signal unblocked. Returns `SIG_HOLD` if the signal was blocked before,
/// else the previous disposition; `SIG_ERR` on error.
///
/// # Safety
/// As `sigset(3)`.
pub unsafe extern "C" fn sigset(sig: c_int, disposition: sighandler_t) -> sighandler_t {
    if !(1..65).contains(&sig) || disposition == libc::SIG_ERR {
        set_errno(libc::EINVAL);
        return libc::SIG_ERR;
    }
    // SAFETY: plain C structs, all zeroes valid.
    let (mut one, mut before): (libc::sigset_t, libc::sigset_t) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: a valid set and signal number.
    unsafe { libc::sigaddset(&mut one, sig) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    if disposition == SIG_HOLD {
        // SAFETY: a query of the previous action into a local.
        if unsafe { sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return libc::SIG_ERR;
        }
        // SAFETY: valid sets.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &one, &mut before) };
    } else {
        // SAFETY: as above.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = disposition;
        // SAFETY: a valid action, and a local for the old one.
        if unsafe { sigaction(sig, &act, &mut old) } != 0 {
            return libc::SIG_ERR;
        }
        // SAFETY: valid sets.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, &mut before) };
    }
    // SAFETY: a valid set and signal number.
    if unsafe { libc::sigismember(&before, sig) } == 1 {
        SIG_HOLD
    } else {
        old.sa_sigaction
    }
}
