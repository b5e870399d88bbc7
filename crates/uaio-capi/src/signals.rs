//! The C library's `sigaction` and `signal` functions, through which the
//! program's handlers of asynchronous signals are installed behind uaio's
//! trampoline ([`raw::set_signal_action`]): a signal that comes while the
//! thread is inside a uaio call runs its handler when the call is done
//! with its work, as the kernel runs handlers only between system calls.
//! The C library's `signal` family calls its own `sigaction` inside the
//! library, where no interposed name is reached, so each is defined here.

use std::sync::atomic::AtomicUsize;

use libc::{c_int, sighandler_t};
use uaio::raw;

use crate::{next_definition, set_errno};

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
