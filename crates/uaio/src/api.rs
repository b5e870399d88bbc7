//! The safe Rust API: contexts that own the buffers of their requests.
//!
//! A [`Request`] carries its buffers; [`Context::submit`] keeps them (with
//! the iocb) in a heap slot whose address is stable until the completion is
//! reaped, and [`Context::wait`] hands them back inside a [`Completion`].
//! Dropping a [`Context`] destroys it: pending requests are cancelled and
//! the drop returns once nothing is in flight, so no buffer is ever freed
//! while I/O may still touch it.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Duration;

use uaio_abi::*;

use crate::raw;

/// An operation together with the buffers it uses.
#[derive(Debug)]
pub enum Op {
    /// Read into `buf` (its length is the request size) at `offset`.
    Read {
        /// File descriptor.
        fd: RawFd,
        /// Destination; comes back filled (up to the result).
        buf: Vec<u8>,
        /// File offset.
        offset: u64,
    },
    /// Write `buf` at `offset`.
    Write {
        /// File descriptor.
        fd: RawFd,
        /// Data to write.
        buf: Vec<u8>,
        /// File offset.
        offset: u64,
    },
    /// Scatter read into `bufs` at `offset`.
    Readv {
        /// File descriptor.
        fd: RawFd,
        /// Destinations, filled in order.
        bufs: Vec<Vec<u8>>,
        /// File offset.
        offset: u64,
    },
    /// Gather write of `bufs` at `offset`.
    Writev {
        /// File descriptor.
        fd: RawFd,
        /// Data, written in order.
        bufs: Vec<Vec<u8>>,
        /// File offset.
        offset: u64,
    },
    /// `fsync`.
    Fsync {
        /// File descriptor.
        fd: RawFd,
    },
    /// `fdatasync`.
    Fdatasync {
        /// File descriptor.
        fd: RawFd,
    },
    /// One-shot poll; the result is the ready mask.
    Poll {
        /// File descriptor.
        fd: RawFd,
        /// `POLLIN`, `POLLOUT`, ... as in poll(2).
        events: u16,
    },
    /// No operation; completes with 0.
    Noop,
}

/// A request to submit: an [`Op`] and its options.
#[derive(Debug)]
pub struct Request {
    op: Op,
    user_data: u64,
    rw_flags: u32,
    ioprio: Option<u16>,
    eventfd: Option<RawFd>,
}

impl Request {
    /// A request for `op` with default options.
    pub fn new(op: Op) -> Request {
        Request { op, user_data: 0, rw_flags: 0, ioprio: None, eventfd: None }
    }

    /// Read `len` bytes at `offset`.
    pub fn read(fd: RawFd, len: usize, offset: u64) -> Request {
        Request::new(Op::Read { fd, buf: vec![0; len], offset })
    }

    /// Write `buf` at `offset`.
    pub fn write(fd: RawFd, buf: Vec<u8>, offset: u64) -> Request {
        Request::new(Op::Write { fd, buf, offset })
    }

    /// `fsync` the file.
    pub fn fsync(fd: RawFd) -> Request {
        Request::new(Op::Fsync { fd })
    }

    /// Poll `fd` for `events`.
    pub fn poll(fd: RawFd, events: u16) -> Request {
        Request::new(Op::Poll { fd, events })
    }

    /// Sets the value returned in [`Completion::user_data`].
    pub fn user_data(mut self, v: u64) -> Request {
        self.user_data = v;
        self
    }

    /// Sets `RWF_*` flags (reads and writes).
    pub fn rw_flags(mut self, flags: u32) -> Request {
        self.rw_flags = flags;
        self
    }

    /// Sets the I/O priority (`IOCB_FLAG_IOPRIO`).
    pub fn ioprio(mut self, prio: u16) -> Request {
        self.ioprio = Some(prio);
        self
    }

    /// Signals `fd` (an eventfd) on completion (`IOCB_FLAG_RESFD`).
    pub fn eventfd(mut self, fd: RawFd) -> Request {
        self.eventfd = Some(fd);
        self
    }
}

/// A finished request.
#[derive(Debug)]
pub struct Completion {
    /// The request's user data.
    pub user_data: u64,
    /// Bytes transferred, the poll mask, or the error.
    pub result: Result<u64, i32>,
    /// The operation, with its buffers.
    pub op: Op,
}

/// Identifies a submitted request, for [`Context::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

struct Slot {
    cb: iocb,
    op: Op,
    _iov: Vec<iovec>,
}

/// An AIO context. Dropping it destroys it (see the module documentation).
///
/// ```
/// use std::os::fd::AsRawFd;
/// # fn main() -> std::io::Result<()> {
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::Context::new(4)?;
/// ctx.submit(uaio::Request::write(file.as_raw_fd(), vec![1; 4096], 0))?;
/// ctx.wait(1, None)?;
/// ctx.submit(uaio::Request::read(file.as_raw_fd(), 4096, 0).user_data(1))?;
/// let c = ctx.wait(1, Some(std::time::Duration::from_secs(5)))?.pop().unwrap();
/// match c.op {
///     uaio::Op::Read { buf, .. } => assert_eq!(buf, vec![1; 4096]),
///     _ => unreachable!(),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Context {
    handle: u64,
    pending: Mutex<HashMap<u64, Box<SlotDebug>>>,
}

/// Wrapper so `Slot` (holding raw iocbs) can sit in a Debug map.
struct SlotDebug(Slot);

impl std::fmt::Debug for SlotDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("op", &self.0.op).finish()
    }
}

fn check(r: i64) -> io::Result<i64> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r)
    }
}

impl Context {
    /// Creates a context for `nr_events` concurrent requests.
    pub fn new(nr_events: u32) -> io::Result<Context> {
        let mut h: aio_context_t = 0;
        // SAFETY: `h` is a valid, zeroed handle location.
        check(unsafe { raw::io_setup(nr_events, &mut h) })?;
        Ok(Context { handle: h, pending: Mutex::new(HashMap::new()) })
    }

    /// The raw handle (the completion ring's address).
    pub fn handle(&self) -> aio_context_t {
        self.handle
    }

    /// Submits one request. On error the request is dropped.
    pub fn submit(&self, req: Request) -> io::Result<Ticket> {
        let mut slot = Box::new(SlotDebug(Slot { cb: iocb::default(), op: req.op, _iov: Vec::new() }));
        let s = &mut slot.0;
        let cb = &mut s.cb;
        cb.aio_data = req.user_data;
        cb.aio_rw_flags = req.rw_flags;
        if let Some(p) = req.ioprio {
            cb.aio_flags |= IOCB_FLAG_IOPRIO;
            cb.aio_reqprio = p as i16;
        }
        if let Some(fd) = req.eventfd {
            cb.aio_flags |= IOCB_FLAG_RESFD;
            cb.aio_resfd = fd as u32;
        }
        let opcode = match s.op {
            Op::Read { .. } => IOCB_CMD_PREAD,
            Op::Write { .. } => IOCB_CMD_PWRITE,
            Op::Readv { .. } => IOCB_CMD_PREADV,
            Op::Writev { .. } => IOCB_CMD_PWRITEV,
            Op::Fsync { .. } => IOCB_CMD_FSYNC,
            Op::Fdatasync { .. } => IOCB_CMD_FDSYNC,
            Op::Poll { .. } => IOCB_CMD_POLL,
            Op::Noop => IOCB_CMD_NOOP,
        };
        cb.aio_lio_opcode = opcode;
        match &mut s.op {
            Op::Read { fd, buf, offset } | Op::Write { fd, buf, offset } => {
                cb.aio_fildes = *fd as u32;
                cb.aio_buf = buf.as_mut_ptr() as u64;
                cb.aio_nbytes = buf.len() as u64;
                cb.aio_offset = *offset as i64;
            }
            Op::Readv { fd, bufs, offset } | Op::Writev { fd, bufs, offset } => {
                cb.aio_fildes = *fd as u32;
                s._iov = bufs
                    .iter_mut()
                    .map(|b| iovec { iov_base: b.as_mut_ptr() as u64, iov_len: b.len() as u64 })
                    .collect();
                cb.aio_buf = s._iov.as_ptr() as u64;
                cb.aio_nbytes = s._iov.len() as u64;
                cb.aio_offset = *offset as i64;
            }
            Op::Fsync { fd } => {
                cb.aio_fildes = *fd as u32;
            }
            Op::Fdatasync { fd } => {
                cb.aio_fildes = *fd as u32;
            }
            Op::Poll { fd, events } => {
                cb.aio_fildes = *fd as u32;
                cb.aio_buf = *events as u64;
            }
            Op::Noop => {}
        }
        let mut p: *mut iocb = &mut slot.0.cb;
        let key = p as u64;
        // Register before submitting so a concurrent `wait` finds the slot.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the iocb and every buffer it names live in `slot`, which is
        // kept (at a stable heap address) until its completion is reaped or
        // the context is destroyed.
        let r = unsafe { raw::io_submit(self.handle, 1, &mut p) };
        if r == 1 {
            pending.insert(key, slot);
            Ok(Ticket(key))
        } else {
            check(r)?;
            Err(io::Error::from_raw_os_error(libc::EAGAIN))
        }
    }

    /// Waits for at least `min` completions (at most `timeout`; `None` waits
    /// as long as needed) and returns every completion available, up to 64.
    pub fn wait(&self, min: usize, timeout: Option<Duration>) -> io::Result<Vec<Completion>> {
        let mut evs = [io_event::default(); 64];
        let mut ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
        let tsp = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
        // SAFETY: `evs` has room for 64 events; `tsp` is null or valid.
        let n =
            check(unsafe { raw::io_getevents(self.handle, min.min(64) as i64, 64, evs.as_mut_ptr(), tsp) })? as usize;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(n);
        for ev in &evs[..n] {
            let Some(slot) = pending.remove(&ev.obj) else { continue };
            let result = if ev.res < 0 { Err(-ev.res as i32) } else { Ok(ev.res as u64) };
            out.push(Completion { user_data: ev.data, result, op: slot.0.op });
        }
        Ok(out)
    }

    /// Asks for a pending request to be cancelled. `Ok(())` means it was
    /// pending: its completion (usually `Err(ECANCELED)`) still arrives
    /// through [`Context::wait`].
    pub fn cancel(&self, t: Ticket) -> io::Result<()> {
        let mut ev = io_event::default();
        // SAFETY: the ticket is the address of an iocb this context keeps
        // alive while it is pending; if it completed, the kernel-style lookup
        // by address simply fails with EINVAL (the key is read from a slot
        // still owned here, or from memory the lookup never dereferences).
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.contains_key(&t.0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: see above; the slot is alive while we hold the lock.
        let r = unsafe { raw::io_cancel(self.handle, t.0 as *mut iocb, &mut ev) };
        drop(pending);
        if r == -(libc::EINPROGRESS as i64) {
            Ok(())
        } else {
            check(r).map(|_| ())
        }
    }

    /// Requests submitted and not yet returned by [`Context::wait`].
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: our own handle; io_destroy returns once no request is in
        // flight, after which the buffers in `pending` may be freed.
        unsafe {
            raw::io_destroy(self.handle);
        }
    }
}
