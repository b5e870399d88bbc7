//! Requests: an operation, its descriptor, its buffers and its options.

use std::fmt;

use uaio_abi::*;

use super::buf::IoBuffer;
use super::fd::Fd;
use super::{PollFlags, ReadWriteFlags};

/// The kind of a request (`IOCB_CMD_*`).
///
/// # Examples
///
/// ```
/// let file = tempfile::tempfile()?;
/// let r: uaio::Request = uaio::Request::fsync(&file);
/// assert_eq!(r.opcode(), uaio::Opcode::Fsync);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Opcode {
    /// `IOCB_CMD_PREAD`.
    Read,
    /// `IOCB_CMD_PWRITE`.
    Write,
    /// `IOCB_CMD_PREADV`.
    Readv,
    /// `IOCB_CMD_PWRITEV`.
    Writev,
    /// `IOCB_CMD_FSYNC`.
    Fsync,
    /// `IOCB_CMD_FDSYNC`.
    Fdsync,
    /// `IOCB_CMD_POLL`.
    Poll,
    /// `IOCB_CMD_NOOP` (completes with 0; the kernel refuses it, uaio runs it).
    Noop,
}

impl Opcode {
    /// The `aio_lio_opcode` value of the kernel ABI.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::Opcode::Poll.raw(), uaio::abi::IOCB_CMD_POLL);
    /// ```
    pub fn raw(self) -> u16 {
        match self {
            Opcode::Read => IOCB_CMD_PREAD,
            Opcode::Write => IOCB_CMD_PWRITE,
            Opcode::Readv => IOCB_CMD_PREADV,
            Opcode::Writev => IOCB_CMD_PWRITEV,
            Opcode::Fsync => IOCB_CMD_FSYNC,
            Opcode::Fdsync => IOCB_CMD_FDSYNC,
            Opcode::Poll => IOCB_CMD_POLL,
            Opcode::Noop => IOCB_CMD_NOOP,
        }
    }
}

pub(crate) enum Op<'fd, B> {
    Read { fd: Fd<'fd>, buf: B, offset: u64 },
    Write { fd: Fd<'fd>, buf: B, offset: u64 },
    Readv { fd: Fd<'fd>, bufs: Vec<B>, offset: u64 },
    Writev { fd: Fd<'fd>, bufs: Vec<B>, offset: u64 },
    Fsync { fd: Fd<'fd> },
    Fdsync { fd: Fd<'fd> },
    Poll { fd: Fd<'fd>, events: PollFlags },
    Noop,
}

/// One I/O request: an operation, the descriptor it names, the buffers it
/// owns while it runs, and its options.
///
/// Built by one constructor per opcode, then adjusted with the builder
/// methods; submitted with [`Context::submit`](crate::Context::submit) or
/// [`Context::submit_batch`](crate::Context::submit_batch). The buffers come
/// back in the [`Completion`](crate::Completion) (or from a rejected
/// request, with [`Request::into_buf`]).
///
/// `B` is the buffer type: the context's (`Vec<u8>` by default, an
/// [`AlignedBuf`](crate::AlignedBuf) for `O_DIRECT`). A request without a
/// buffer (fsync, poll, noop) takes it from the context it is submitted to;
/// alone, it needs a type annotation (`Request::<Vec<u8>>::noop()`).
///
/// # Examples
///
/// ```
/// use uaio::{ReadWriteFlags, Request};
/// let file = tempfile::tempfile()?;
/// let req: Request<'_> = Request::write(&file, b"data".to_vec(), 0)
///     .user_data(42)
///     .flags(ReadWriteFlags::DSYNC);
/// assert_eq!(req.opcode(), uaio::Opcode::Write);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # References
///
/// - [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html)
///   (`struct iocb`)
/// - [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
///   (`io_submit_one`, `aio_prep_rw`, `aio_poll`)
pub struct Request<'fd, B = Vec<u8>> {
    pub(crate) op: Op<'fd, B>,
    pub(crate) user_data: u64,
    pub(crate) flags: ReadWriteFlags,
    pub(crate) ioprio: Option<u16>,
    pub(crate) eventfd: Option<Fd<'fd>>,
}

impl<'fd, B: IoBuffer> Request<'fd, B> {
    fn new(op: Op<'fd, B>) -> Self {
        Request { op, user_data: 0, flags: ReadWriteFlags::empty(), ioprio: None, eventfd: None }
    }

    /// Reads `buf.len()` bytes of `fd` at `offset` into `buf`
    /// (`IOCB_CMD_PREAD`). The result is the count read: short at the end
    /// of the file, 0 past it. Streams (pipes, sockets) ignore `offset`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"hello")?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::read(&file, vec![0; 16], 0))?;
    /// let done = ctx.wait_one(None)?;
    /// assert_eq!(done.result()?, 5);
    /// assert_eq!(&done.into_buf().unwrap()[..5], b"hello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read(fd: impl Into<Fd<'fd>>, buf: B, offset: u64) -> Self {
        Self::new(Op::Read { fd: fd.into(), buf, offset })
    }

    /// Writes all of `buf` to `fd` at `offset` (`IOCB_CMD_PWRITE`); the
    /// result is the count written.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::write(&file, b"hello".to_vec(), 10))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 5);
    /// assert_eq!(file.metadata()?.len(), 15);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write(fd: impl Into<Fd<'fd>>, buf: B, offset: u64) -> Self {
        Self::new(Op::Write { fd: fd.into(), buf, offset })
    }

    /// Reads into `bufs` in order, starting at `offset`
    /// (`IOCB_CMD_PREADV`, at most 1024 buffers).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"abcdef")?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::readv(&file, vec![vec![0; 2], vec![0; 4]], 0))?;
    /// let done = ctx.wait_one(None)?;
    /// assert_eq!(done.result()?, 6);
    /// assert_eq!(done.into_bufs(), vec![b"ab".to_vec(), b"cdef".to_vec()]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn readv(fd: impl Into<Fd<'fd>>, bufs: Vec<B>, offset: u64) -> Self {
        Self::new(Op::Readv { fd: fd.into(), bufs, offset })
    }

    /// Writes `bufs` in order, starting at `offset` (`IOCB_CMD_PWRITEV`, at
    /// most 1024 buffers).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::fs::FileExt;
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::writev(&file, vec![b"ab".to_vec(), b"cd".to_vec()], 0))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 4);
    /// let mut back = [0; 4];
    /// file.read_exact_at(&mut back, 0)?;
    /// assert_eq!(&back, b"abcd");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn writev(fd: impl Into<Fd<'fd>>, bufs: Vec<B>, offset: u64) -> Self {
        Self::new(Op::Writev { fd: fd.into(), bufs, offset })
    }

    /// Flushes the file's data and metadata to its device (`IOCB_CMD_FSYNC`,
    /// as `fsync(2)`); the result is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::fsync(&file))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fsync(fd: impl Into<Fd<'fd>>) -> Self {
        Self::new(Op::Fsync { fd: fd.into() })
    }

    /// Flushes the file's data (`IOCB_CMD_FDSYNC`, as `fdatasync(2)`); the
    /// result is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::fdsync(&file))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fdsync(fd: impl Into<Fd<'fd>>) -> Self {
        Self::new(Op::Fdsync { fd: fd.into() })
    }

    /// Waits once for `events` on `fd` (`IOCB_CMD_POLL`); the result is the
    /// ready mask ([`Completion::poll_flags`](crate::Completion::poll_flags)).
    /// It completes only when an event is ready, or when cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use uaio::PollFlags;
    /// let (reader, writer) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::poll(&reader, PollFlags::IN))?;
    /// rustix::io::write(&writer, b"x")?;
    /// let done = ctx.wait_one(None)?;
    /// assert!(done.poll_flags().unwrap().contains(PollFlags::IN));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll(fd: impl Into<Fd<'fd>>, events: PollFlags) -> Self {
        Self::new(Op::Poll { fd: fd.into(), events })
    }

    /// Does nothing and completes with 0 (`IOCB_CMD_NOOP`: an extension of
    /// uaio; the kernel refuses it with `EINVAL`).
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop().user_data(5))?;
    /// let done = ctx.wait_one(None)?;
    /// assert_eq!((done.user_data(), done.result()?), (5, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn noop() -> Self {
        Self::new(Op::Noop)
    }

    /// Sets the value that [`Completion::user_data`](crate::Completion::user_data)
    /// returns (0 by default). uaio keeps it beside the request; it is not
    /// the iocb's `aio_data`, which the API uses to find the request.
    ///
    /// # Examples
    ///
    /// ```
    /// let r: uaio::Request = uaio::Request::noop().user_data(7);
    /// assert_eq!(r.get_user_data(), 7);
    /// ```
    pub fn user_data(mut self, v: u64) -> Self {
        self.user_data = v;
        self
    }

    /// The value set by [`Request::user_data`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::Request::<Vec<u8>>::noop().get_user_data(), 0);
    /// ```
    pub fn get_user_data(&self) -> u64 {
        self.user_data
    }

    /// Sets `RWF_*` flags (`aio_rw_flags`) of a read or write, as
    /// `preadv2(2)`/`pwritev2(2)` take them. Unknown bits make the
    /// submission fail with `EOPNOTSUPP`.
    ///
    /// # Examples
    ///
    /// ```
    /// use uaio::ReadWriteFlags;
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::write(&file, vec![1; 8], 0).flags(ReadWriteFlags::DSYNC))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 8);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flags(mut self, flags: ReadWriteFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the request's I/O priority (`IOCB_FLAG_IOPRIO`, in the
    /// `ioprio_set(2)` encoding). Real-time classes need `CAP_SYS_ADMIN`
    /// or `CAP_SYS_NICE` (`EPERM`).
    ///
    /// # Examples
    ///
    /// ```
    /// const BEST_EFFORT_LEVEL_4: u16 = (2 << 13) | 4;
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::write(&file, vec![1; 8], 0).ioprio(BEST_EFFORT_LEVEL_4))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 8);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ioprio(mut self, prio: u16) -> Self {
        self.ioprio = Some(prio);
        self
    }

    /// Adds 1 to the eventfd `efd` when the request's completion is ready
    /// to be reaped (`IOCB_FLAG_RESFD`). A descriptor that is not an
    /// eventfd makes the submission fail with `EINVAL`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rustix::event::{eventfd, EventfdFlags};
    /// let efd = eventfd(0, EventfdFlags::CLOEXEC)?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop().eventfd(&efd))?;
    /// let mut count = [0u8; 8];
    /// rustix::io::read(&efd, &mut count)?; // blocks until the completion is ready
    /// assert_eq!(u64::from_ne_bytes(count), 1);
    /// ctx.wait_one(None)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn eventfd(mut self, efd: impl Into<Fd<'fd>>) -> Self {
        self.eventfd = Some(efd.into());
        self
    }

    /// The request's opcode.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::Request::<Vec<u8>>::noop().opcode(), uaio::Opcode::Noop);
    /// ```
    pub fn opcode(&self) -> Opcode {
        match self.op {
            Op::Read { .. } => Opcode::Read,
            Op::Write { .. } => Opcode::Write,
            Op::Readv { .. } => Opcode::Readv,
            Op::Writev { .. } => Opcode::Writev,
            Op::Fsync { .. } => Opcode::Fsync,
            Op::Fdsync { .. } => Opcode::Fdsync,
            Op::Poll { .. } => Opcode::Poll,
            Op::Noop => Opcode::Noop,
        }
    }

    /// The buffer of a read or write (`None` for other opcodes; a vectored
    /// request's buffers come from [`Request::into_bufs`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let r = uaio::Request::write(&file, vec![9; 3], 0);
    /// assert_eq!(r.into_buf(), Some(vec![9; 3]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_buf(self) -> Option<B> {
        match self.op {
            Op::Read { buf, .. } | Op::Write { buf, .. } => Some(buf),
            _ => None,
        }
    }

    /// Every buffer of the request, in order: those of a vectored request,
    /// the one of a read or write, none for the others.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let r = uaio::Request::writev(&file, vec![vec![1], vec![2, 3]], 0);
    /// assert_eq!(r.into_bufs(), vec![vec![1], vec![2, 3]]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_bufs(self) -> Vec<B> {
        match self.op {
            Op::Read { buf, .. } | Op::Write { buf, .. } => vec![buf],
            Op::Readv { bufs, .. } | Op::Writev { bufs, .. } => bufs,
            _ => Vec::new(),
        }
    }

    /// Fills `cb` (and `iov`, for vectored requests) to describe this
    /// request, with `aio_data = data`. Every address written points into
    /// buffers this request owns, whose memory does not move with it.
    pub(crate) fn fill(&mut self, cb: &mut iocb, iov: &mut Vec<iovec>, data: u64) {
        *cb = iocb::default();
        cb.aio_data = data;
        cb.aio_lio_opcode = self.opcode().raw();
        cb.aio_rw_flags = self.flags.bits();
        if let Some(p) = self.ioprio {
            cb.aio_flags |= IOCB_FLAG_IOPRIO;
            cb.aio_reqprio = p as i16;
        }
        if let Some(efd) = &self.eventfd {
            cb.aio_flags |= IOCB_FLAG_RESFD;
            cb.aio_resfd = efd.raw() as u32;
        }
        iov.clear();
        match &mut self.op {
            Op::Read { fd, buf, offset } | Op::Write { fd, buf, offset } => {
                cb.aio_fildes = fd.raw() as u32;
                let s: &mut [u8] = buf;
                cb.aio_buf = s.as_mut_ptr() as u64;
                cb.aio_nbytes = s.len() as u64;
                cb.aio_offset = *offset as i64;
            }
            Op::Readv { fd, bufs, offset } | Op::Writev { fd, bufs, offset } => {
                cb.aio_fildes = fd.raw() as u32;
                iov.extend(bufs.iter_mut().map(|b| {
                    let s: &mut [u8] = b;
                    iovec { iov_base: s.as_mut_ptr() as u64, iov_len: s.len() as u64 }
                }));
                cb.aio_buf = iov.as_ptr() as u64;
                cb.aio_nbytes = iov.len() as u64;
                cb.aio_offset = *offset as i64;
            }
            Op::Fsync { fd } | Op::Fdsync { fd } => cb.aio_fildes = fd.raw() as u32,
            Op::Poll { fd, events } => {
                cb.aio_fildes = fd.raw() as u32;
                cb.aio_buf = events.bits() as u64;
            }
            Op::Noop => {}
        }
    }
}

impl<B: IoBuffer> fmt::Debug for Request<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Request");
        d.field("opcode", &self.opcode());
        match &self.op {
            Op::Read { fd, buf, offset } | Op::Write { fd, buf, offset } => {
                d.field("fd", fd).field("len", &buf.len()).field("offset", offset);
            }
            Op::Readv { fd, bufs, offset } | Op::Writev { fd, bufs, offset } => {
                d.field("fd", fd).field("bufs", &bufs.len()).field("offset", offset);
            }
            Op::Fsync { fd } | Op::Fdsync { fd } => {
                d.field("fd", fd);
            }
            Op::Poll { fd, events } => {
                d.field("fd", fd).field("events", events);
            }
            Op::Noop => {}
        }
        d.field("user_data", &self.user_data).field("flags", &self.flags);
        if let Some(p) = self.ioprio {
            d.field("ioprio", &p);
        }
        if let Some(e) = &self.eventfd {
            d.field("eventfd", e);
        }
        d.finish()
    }
}
