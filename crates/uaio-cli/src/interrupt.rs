//! Interruptions of the commands that make things they must undo (`uaio
//! check`'s fixtures, `uaio stress`'s scratch files): the first SIGINT,
//! SIGTERM or SIGHUP is recorded, the command stops at its next look and
//! undoes what it made (a loop device, a throttled cgroup, a mount, scratch
//! files, which an interrupted run left behind), then ends as the signal
//! would have ended it; a second signal ends it at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received, 0 before.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_interrupt(sig: libc::c_int) {
    if INTERRUPTED.swap(sig, Ordering::SeqCst) != 0 {
        // SAFETY: signal(2) and raise(3), both async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Catches the signals that end a run from outside.
pub fn catch() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction(2) with a zeroed, then filled, struct and a
        // handler that only touches an atomic (or ends the process).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal that interrupted the run, if one did.
pub fn signal() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Ends the process as the signal `sig` would have, once the command has
/// cleaned up after itself.
pub fn die_of(sig: i32) -> ! {
    // SAFETY: restoring a signal's default disposition, unblocking it in
    // this thread and raising it there.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
