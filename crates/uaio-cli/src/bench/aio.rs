//! The AIO calls of one engine: the kernel's (raw system calls, through
//! [`uaio_conform::kernel`]) or uaio's ([`uaio::raw`]), both with the kernel's arguments and the negative-errno
//! return convention.

use std::io;

use uaio::abi::{aio_context_t, io_event, iocb};
use uaio_conform::kernel;

/// Which implementation of the AIO calls a worker drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aio {
    /// The kernel's AIO, through `syscall(SYS_io_*)`.
    Kernel,
    /// uaio, through [`uaio::raw`] (its backend is the process's choice).
    Uaio,
}

/// Name of a negative errno return, for messages: `EINVAL (Invalid argument)`.
pub fn errno_name(r: i64) -> String {
    let e = (-r) as i32;
    let Some(name) = uaio_conform::errno_symbol(e) else {
        return format!("errno {e} ({})", io::Error::from_raw_os_error(e));
    };
    let text = io::Error::from_raw_os_error(e).to_string();
    let text = text.split(" (os error").next().unwrap_or("");
    format!("{name} ({text})")
}

impl Aio {
    /// `io_setup(nr, &ctx)`: the new context, or `-errno`.
    pub fn setup(self, nr: u32) -> Result<aio_context_t, i64> {
        let mut ctx: aio_context_t = 0;
        let ctxp: *mut aio_context_t = &mut ctx;
        let r = match self {
            // SAFETY: ctxp points to a live, zeroed local that the call fills in.
            Aio::Kernel => unsafe { kernel::io_setup(nr, ctxp) },
            // SAFETY: as above.
            Aio::Uaio => unsafe { uaio::raw::io_setup(nr, ctxp) },
        };
        if r < 0 {
            Err(r)
        } else {
            Ok(ctx)
        }
    }

    /// `io_destroy(ctx)`: returns once nothing is in flight any more.
    pub fn destroy(self, ctx: aio_context_t) {
        match self {
            // SAFETY: io_destroy looks the handle up and unmaps only the ring
            // of a context it names; the bench maps nothing over its rings.
            Aio::Kernel => unsafe {
                kernel::io_destroy(ctx);
            },
            // SAFETY: as above.
            Aio::Uaio => unsafe {
                uaio::raw::io_destroy(ctx);
            },
        }
    }

    /// `io_submit(ctx, nr, iocbpp)`: the number accepted, or `-errno`.
    ///
    /// # Safety
    /// `iocbpp` must point to `nr` pointers to valid iocbs whose buffers stay
    /// valid, and are not touched, until the requests are reaped.
    pub unsafe fn submit(self, ctx: aio_context_t, nr: usize, iocbpp: *mut *mut iocb) -> i64 {
        match self {
            // SAFETY: forwarded contract.
            Aio::Kernel => unsafe { kernel::io_submit(ctx, nr as i64, iocbpp) },
            // SAFETY: forwarded contract.
            Aio::Uaio => unsafe { uaio::raw::io_submit(ctx, nr as i64, iocbpp) },
        }
    }

    /// `io_getevents(ctx, min_nr, events.len(), events, timeout)`; `None`
    /// waits without limit.
    pub fn getevents(
        self,
        ctx: aio_context_t,
        min_nr: usize,
        events: &mut [io_event],
        timeout: Option<libc::timespec>,
    ) -> i64 {
        let nr = events.len();
        let ev = events.as_mut_ptr();
        let mut ts = timeout.unwrap_or(libc::timespec { tv_sec: 0, tv_nsec: 0 });
        let tsp: *mut libc::timespec = if timeout.is_some() { &mut ts } else { std::ptr::null_mut() };
        match self {
            // SAFETY: `ev` has room for `nr` events; `tsp` is null or a live local.
            Aio::Kernel => unsafe { kernel::io_getevents(ctx, min_nr as i64, nr as i64, ev, tsp) },
            // SAFETY: as above.
            Aio::Uaio => unsafe { uaio::raw::io_getevents(ctx, min_nr as i64, nr as i64, ev, tsp) },
        }
    }
}
