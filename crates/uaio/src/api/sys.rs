//! The API's only calls into the engine's raw entry points.

use std::io;
use std::time::Duration;

use uaio_abi::{aio_context_t, io_event, iocb};

use super::Backend;
use crate::raw;
use crate::table::Choice;

fn check(r: i64) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// `io_setup(2)`: a new context for `nr` requests.
pub(crate) fn setup(nr: u32) -> io::Result<aio_context_t> {
    let mut h: aio_context_t = 0;
    // SAFETY: `h` is a valid, zeroed handle location.
    check(unsafe { raw::io_setup(nr, &mut h) })?;
    Ok(h)
}

/// `io_setup(2)` on the backend `b` ([`Backend::Auto`]: the process's).
pub(crate) fn setup_on(nr: u32, b: Backend) -> io::Result<aio_context_t> {
    let want = match b {
        Backend::IoUring => Choice::Uring,
        Backend::Threads => Choice::Threads,
        _ => return setup(nr),
    };
    raw::setup_on(nr, want).map_err(|e| {
        if e == rustix::io::Errno::OPNOTSUPP {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "uaio: io_uring was asked for, but this process cannot set up an io_uring \
                 (seccomp, kernel.io_uring_disabled or the memlock limit); Backend::Auto falls back to the thread pool",
            )
        } else {
            io::Error::from_raw_os_error(e.raw_os_error())
        }
    })
}

/// The backend the context `h` runs on.
pub(crate) fn backend_of(h: aio_context_t) -> Backend {
    match crate::table::backend_of(h) {
        Some("io_uring") => Backend::IoUring,
        _ => Backend::Threads,
    }
}

/// The most events one `io_getevents` on `h` can return: the ring's
/// slots (no more completions can be ready at once).
pub(crate) fn events_at_most(h: aio_context_t) -> usize {
    crate::table::ring_nr_of(h).map_or(1, |n| n as usize).max(1)
}

/// `io_destroy(2)` of a handle this API created: returns once no request
/// of the context is in flight.
pub(crate) fn destroy(h: aio_context_t) {
    // SAFETY: io_destroy only looks the handle up.
    unsafe {
        raw::io_destroy(h);
    }
}

/// `io_submit(2)` of the iocbs at the addresses in `ptrs`; returns how many
/// were submitted.
///
/// # Safety
/// Each iocb, and every buffer and iovec array it names, must stay valid
/// (and the buffers unused by anyone else) until its completion is reaped
/// or the context is destroyed.
pub(crate) unsafe fn submit(h: aio_context_t, ptrs: &mut [u64]) -> io::Result<usize> {
    const _: () = assert!(size_of::<u64>() == size_of::<*mut iocb>());
    // SAFETY: forwarded contract; `ptrs` holds `len` iocb addresses (the
    // pointer array has the C layout of `struct iocb **` on 64-bit).
    check(unsafe { raw::io_submit(h, ptrs.len() as i64, ptrs.as_mut_ptr().cast()) })
}

/// `io_getevents(2)`: waits up to `timeout` (`None`: as long as needed) for
/// at least `min` events and reaps at most `out.len()`.
pub(crate) fn getevents(
    h: aio_context_t,
    min: usize,
    out: &mut [io_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut ts = timeout
        .map(|d| libc::timespec { tv_sec: d.as_secs().min(i64::MAX as u64 / 2) as _, tv_nsec: d.subsec_nanos() as _ });
    let tsp = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
    // SAFETY: `out` has room for `out.len()` events; `tsp` is null or valid.
    check(unsafe { raw::io_getevents(h, min as i64, out.len() as i64, out.as_mut_ptr(), tsp) })
}

/// `io_cancel(2)` of the request submitted with the iocb `cb`: `Ok` when it
/// was pending (its completion comes later through the ring), else the
/// error (`EINVAL`: not pending any more).
pub(crate) fn cancel(h: aio_context_t, cb: &mut iocb) -> io::Result<()> {
    let mut ev = io_event::default();
    // SAFETY: `cb` is a live iocb (io_cancel reads its `aio_key` and uses
    // its address as the request's name); `ev` is a valid event location.
    let r = unsafe { raw::io_cancel(h, cb, &mut ev) };
    if r == -(libc::EINPROGRESS as i64) {
        Ok(())
    } else {
        check(r).map(|_| ())
    }
}

thread_local! {
    /// Each thread's event array for `io_getevents`, kept between calls
    /// (taken out for the call, so a nested call makes its own).
    static EVENTS: crate::sys::spare::Spare<Vec<io_event>> = const { crate::sys::spare::Spare::new() };
}

/// Runs `f` with this thread's event array, `n` events long, without
/// allocating once the array has grown to `n`.
pub(crate) fn with_events<R>(n: usize, f: impl FnOnce(&mut [io_event]) -> R) -> R {
    let mut v = EVENTS.try_with(crate::sys::spare::Spare::take).ok().flatten().unwrap_or_default();
    if v.len() < n {
        v.resize(n, io_event::default());
    }
    let r = f(&mut v[..n]);
    let _ = EVENTS.try_with(|c| c.put(v));
    r
}
