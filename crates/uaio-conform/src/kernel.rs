//! Kernel AIO through raw system calls, one function per call, with
//! [`uaio::raw`]'s arguments and return convention (the result, or
//! `-errno`). The conformance oracle ([`crate::Kernel`]), the benchmarks and
//! the stress test all call the kernel through these.
//!
//! # References
//! `io_setup(2)`, `io_submit(2)`, `io_getevents(2)`, `io_pgetevents(2)`,
//! `io_cancel(2)`, `io_destroy(2)`.

use uaio_abi::{aio_context_t, aio_sigset, io_event, iocb};

/// `io_pgetevents` system call number (x86-64; the C library's headers name
/// it, the `libc` crate does not for this target).
pub const SYS_IO_PGETEVENTS: libc::c_long = 333;

/// Turns a `syscall()` return (`-1` and `errno` on failure) into `-errno`.
fn ret(r: libc::c_long) -> i64 {
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
    } else {
        r
    }
}

/// `io_setup(nr, ctxp)`: 0 with the new handle in `*ctxp`, or `-errno`.
///
/// # Safety
/// As the system call: the kernel checks `ctxp` itself (`-EFAULT`).
pub unsafe fn io_setup(nr: u32, ctxp: *mut aio_context_t) -> i64 {
    // SAFETY: the caller upholds the system call's contract; the kernel
    // checks every pointer itself.
    ret(unsafe { libc::syscall(libc::SYS_io_setup, nr as libc::c_long, ctxp) })
}

/// `io_destroy(ctx)`: 0 once nothing is in flight any more, or `-errno`.
///
/// # Safety
/// The kernel unmaps the ring at `ctx` (for the ring's length, whatever the
/// program has mapped there since): nothing the caller still uses may live
/// there. An invalid handle is only looked up (`-EINVAL`).
pub unsafe fn io_destroy(ctx: aio_context_t) -> i64 {
    // SAFETY: the caller vouches for what lies at the handle; the kernel
    // checks the handle itself.
    ret(unsafe { libc::syscall(libc::SYS_io_destroy, ctx) })
}

/// `io_submit(ctx, nr, iocbpp)`: how many were accepted, or `-errno`.
///
/// # Safety
/// As the system call: the iocbs' buffers must stay valid, and untouched by
/// the caller, until the requests are reaped; bad addresses are the kernel's
/// to report (`-EFAULT` or an event with `res = -EFAULT`).
pub unsafe fn io_submit(ctx: aio_context_t, nr: i64, iocbpp: *mut *mut iocb) -> i64 {
    // SAFETY: the caller upholds the system call's contract; the kernel
    // checks every pointer itself.
    ret(unsafe { libc::syscall(libc::SYS_io_submit, ctx, nr as libc::c_long, iocbpp) })
}

/// `io_cancel(ctx, iocb, result)`: `-EINPROGRESS` for a cancelled POLL, or
/// `-errno`.
///
/// # Safety
/// As the system call: the kernel checks both pointers itself.
pub unsafe fn io_cancel(ctx: aio_context_t, iocb: *mut iocb, result: *mut io_event) -> i64 {
    // SAFETY: the caller upholds the system call's contract; the kernel
    // checks every pointer itself.
    ret(unsafe { libc::syscall(libc::SYS_io_cancel, ctx, iocb, result) })
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)`: how many events were
/// copied to `events`, or `-errno`.
///
/// # Safety
/// As the system call: the kernel checks both pointers itself.
pub unsafe fn io_getevents(
    ctx: aio_context_t,
    min_nr: i64,
    nr: i64,
    events: *mut io_event,
    timeout: *mut libc::timespec,
) -> i64 {
    // SAFETY: the caller upholds the system call's contract; the kernel
    // checks every pointer itself.
    ret(unsafe {
        libc::syscall(libc::SYS_io_getevents, ctx, min_nr as libc::c_long, nr as libc::c_long, events, timeout)
    })
}

/// `io_pgetevents(ctx, min_nr, nr, events, timeout, sig)`: as
/// [`io_getevents`], with the signal mask of `sig` (if not null) in force
/// while it waits.
///
/// # Safety
/// As the system call: the kernel checks every pointer itself.
pub unsafe fn io_pgetevents(
    ctx: aio_context_t,
    min_nr: i64,
    nr: i64,
    events: *mut io_event,
    timeout: *mut libc::timespec,
    sig: *const aio_sigset,
) -> i64 {
    // SAFETY: the caller upholds the system call's contract; the kernel
    // checks every pointer itself.
    ret(unsafe {
        libc::syscall(SYS_IO_PGETEVENTS, ctx, min_nr as libc::c_long, nr as libc::c_long, events, timeout, sig)
    })
}
