//! The synchronous context: submit, wait, cancel, destroy on drop.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use uaio_abi::aio_context_t;

use super::buf::IoBuffer;
use super::request::{Opcode, Request};
use super::slots::{data_of, Slots};
use super::{sys, PollFlags};

/// Source of context ids, so that a ticket of one context never names a
/// request of another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Names one submitted request of one [`Context`], for
/// [`Context::cancel`] and to match a [`Completion`] with its submission.
///
/// A ticket holds the context's id and the request's slot with a 64-bit
/// generation, so it never names any other request: once its request
/// completed, [`Context::cancel`] with it fails (`EINVAL`) even if the slot
/// serves a newer request.
///
/// # Examples
///
/// ```
/// let ctx = uaio::Context::new(4)?;
/// let t1 = ctx.submit(uaio::Request::noop())?;
/// let done = ctx.wait_one(None)?;
/// assert_eq!(done.ticket(), t1);
/// let t2 = ctx.submit(uaio::Request::noop())?; // may reuse the slot of t1
/// assert_ne!(t1, t2);
/// # ctx.wait_one(None)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    ctx: u64,
    index: u32,
    gen: u64,
}

/// Which engine executes the I/O: io_uring, or uaio's thread pool.
///
/// The process's default is chosen **once**, at the first context, from the
/// `UAIO_BACKEND` environment variable (`uring` or `threads`) or, without
/// it, by probing io_uring (`io_uring_setup` may be refused by seccomp,
/// `kernel.io_uring_disabled` or a low memlock limit); contexts made with
/// `io_setup` or [`Backend::Auto`] use it. A context built with
/// [`Builder::backend`] runs on the backend named there. Even on io_uring,
/// an `Auto` context may run on the thread pool when the kernel refuses it
/// a ring of its own (memory, descriptors); [`Context::backend`] tells.
///
/// # Examples
///
/// ```
/// let b = uaio::Backend::current();
/// assert!(matches!(b, uaio::Backend::IoUring | uaio::Backend::Threads));
/// assert_eq!(b.name(), uaio::backend_name());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Whatever the process uses (io_uring where it works).
    #[default]
    Auto,
    /// io_uring.
    IoUring,
    /// The thread pool (`RWF_NOWAIT` attempts inline, workers and a poller
    /// thread for the rest).
    Threads,
}

impl Backend {
    /// The backend of this process (decides it if no context exists yet).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_ne!(uaio::Backend::current(), uaio::Backend::Auto);
    /// ```
    pub fn current() -> Backend {
        match crate::backend_name() {
            "io_uring" => Backend::IoUring,
            _ => Backend::Threads,
        }
    }

    /// `"auto"`, `"io_uring"` or `"threads"` (the names of
    /// [`backend_name`](crate::backend_name)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::Backend::Threads.name(), "threads");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Threads => "threads",
        }
    }
}

/// Options for a new [`Context`] (from [`Context::builder`]).
///
/// # Examples
///
/// ```
/// use uaio::{Backend, Context};
/// let ctx = Context::builder().entries(256).backend(Backend::Auto).build()?;
/// ctx.submit(uaio::Request::noop())?;
/// # ctx.wait_one(None)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    entries: u32,
    backend: Backend,
}

impl Builder {
    /// How many requests may be in flight at once (`io_setup`'s `nr_events`;
    /// 128 by default). More are refused with `EAGAIN`. Counted against the
    /// process's `aio-max-nr` budget.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::builder().entries(1).build()?;
    /// ctx.submit(uaio::Request::noop())?;
    /// # ctx.wait_one(None)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn entries(mut self, n: u32) -> Builder {
        self.entries = n;
        self
    }

    /// The backend the context runs on, whatever the process's default
    /// (see [`Backend`]). [`Backend::Threads`] always works;
    /// [`Backend::IoUring`] makes [`Builder::build`] fail with
    /// [`io::ErrorKind::Unsupported`] where io_uring cannot be set up;
    /// [`Backend::Auto`] (the default) takes the process's default.
    ///
    /// # Examples
    ///
    /// ```
    /// use uaio::{Backend, Context};
    /// let pool = Context::builder().backend(Backend::Threads).build()?;
    /// assert_eq!(pool.backend(), Backend::Threads);
    /// match Context::builder().backend(Backend::IoUring).build() {
    ///     Ok(ring) => assert_eq!(ring.backend(), Backend::IoUring),
    ///     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(mut self, b: Backend) -> Builder {
        self.backend = b;
        self
    }

    /// Creates the context (`io_setup(2)`), for requests with `Vec<u8>`
    /// buffers ([`Builder::build_for`] takes other buffer types).
    ///
    /// # Errors
    ///
    /// `EINVAL` for 0 entries or too many, `EAGAIN` past the process's
    /// `aio-max-nr` budget, [`io::ErrorKind::Unsupported`] for io_uring
    /// where it cannot be set up.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::builder().entries(8).build()?;
    /// assert_eq!(ctx.pending(), 0);
    /// assert!(uaio::Context::builder().entries(0).build().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build<'fd>(&self) -> io::Result<Context<'fd, Vec<u8>>> {
        self.build_for()
    }

    /// Creates the context (`io_setup(2)`) for requests whose buffers are
    /// of type `B`, such as [`AlignedBuf`](crate::AlignedBuf) for `O_DIRECT`.
    /// Errors as [`Builder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use uaio::{AlignedBuf, Context, Request};
    /// let file = tempfile::tempfile()?;
    /// let ctx = Context::builder().entries(8).build_for::<AlignedBuf>()?;
    /// ctx.submit(Request::write(&file, AlignedBuf::new(4096), 0))?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build_for<'fd, B: IoBuffer>(&self) -> io::Result<Context<'fd, B>> {
        Context::on(self.entries, self.backend)
    }

    /// Creates an [`AsyncContext`](crate::AsyncContext) for tokio (see
    /// there; must run inside a tokio runtime with I/O enabled).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let ctx = uaio::Context::builder().entries(32).build_async()?;
    /// ctx.noop().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn build_async<'fd>(&self) -> io::Result<super::tokio::AsyncContext<'fd>> {
        super::tokio::AsyncContext::on(self.entries, self.backend)
    }
}

/// A finished request: its result, and everything it owned (buffers,
/// descriptor) handed back.
///
/// # Examples
///
/// ```
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::Context::new(4)?;
/// let t = ctx.submit(uaio::Request::write(&file, vec![7; 100], 0).user_data(3))?;
/// let done = ctx.wait_one(None)?;
/// assert_eq!(done.ticket(), t);
/// assert_eq!(done.user_data(), 3);
/// assert_eq!(done.opcode(), uaio::Opcode::Write);
/// assert_eq!(done.result()?, 100);
/// let buf = done.into_buf().unwrap(); // reuse it for the next request
/// assert_eq!(buf.len(), 100);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Completion<'fd, B = Vec<u8>> {
    ticket: Ticket,
    res: i64,
    req: Request<'fd, B>,
}

impl<'fd, B: IoBuffer> Completion<'fd, B> {
    /// The ticket [`Context::submit`] returned for this request.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// let t = ctx.submit(uaio::Request::noop())?;
    /// assert_eq!(ctx.wait_one(None)?.ticket(), t);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// The value given to [`Request::user_data`].
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop().user_data(99))?;
    /// assert_eq!(ctx.wait_one(None)?.user_data(), 99);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn user_data(&self) -> u64 {
        self.req.user_data
    }

    /// The request's opcode.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop())?;
    /// assert_eq!(ctx.wait_one(None)?.opcode(), uaio::Opcode::Noop);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn opcode(&self) -> Opcode {
        self.req.opcode()
    }

    /// The outcome: bytes transferred (reads, writes), 0 (syncs, NOOP), the
    /// ready mask (polls; see [`Completion::poll_flags`]), or the error
    /// (`ECANCELED` for a cancelled request, `EFAULT`, `EIO`...).
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let t = ctx.submit(uaio::Request::read(&reader, vec![0; 8], 0))?;
    /// ctx.cancel(t)?;
    /// let err = ctx.wait_one(None)?.result().unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(libc::ECANCELED));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn result(&self) -> io::Result<usize> {
        if self.res < 0 {
            Err(io::Error::from_raw_os_error(-self.res as i32))
        } else {
            Ok(self.res as usize)
        }
    }

    /// The event's `res` field as the kernel ABI has it (`-errno` on error).
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop())?;
    /// assert_eq!(ctx.wait_one(None)?.raw_result(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn raw_result(&self) -> i64 {
        self.res
    }

    /// For a poll that succeeded, the events that are ready; `None`
    /// otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use uaio::PollFlags;
    /// let (_reader, writer) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::poll(&writer, PollFlags::OUT))?;
    /// let done = ctx.wait_one(None)?;
    /// assert!(done.poll_flags().unwrap().contains(PollFlags::OUT));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_flags(&self) -> Option<PollFlags> {
        (self.opcode() == Opcode::Poll && self.res >= 0).then(|| PollFlags::from_bits_retain(self.res as u16))
    }

    /// The buffer of a read or write (for a read, filled up to the result).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"xyz")?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::read(&file, vec![0; 3], 0))?;
    /// assert_eq!(ctx.wait_one(None)?.into_buf(), Some(b"xyz".to_vec()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_buf(self) -> Option<B> {
        self.req.into_buf()
    }

    /// Every buffer, in order (see [`Request::into_bufs`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::writev(&file, vec![vec![1; 2], vec![2; 2]], 0))?;
    /// assert_eq!(ctx.wait_one(None)?.into_bufs().len(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_bufs(self) -> Vec<B> {
        self.req.into_bufs()
    }

    /// The result and the buffer of a read or write, as a pair.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::write(&file, vec![1; 10], 0))?;
    /// let (res, buf) = ctx.wait_one(None)?.into_result_and_buf();
    /// assert_eq!((res?, buf.map(|b| b.len())), (10, Some(10)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_result_and_buf(self) -> (io::Result<usize>, Option<B>) {
        (self.result(), self.req.into_buf())
    }

    /// The request, with its options and buffers, ready to be submitted
    /// again.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop().user_data(1))?;
    /// let again = ctx.wait_one(None)?.into_request();
    /// ctx.submit(again)?;
    /// assert_eq!(ctx.wait_one(None)?.user_data(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_request(self) -> Request<'fd, B> {
        self.req
    }
}

impl<B: IoBuffer> fmt::Debug for Completion<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("ticket", &self.ticket)
            .field("res", &self.res)
            .field("request", &self.req)
            .finish()
    }
}

/// A request that [`Context::submit`] could not submit, with the reason.
///
/// Converts into [`io::Error`] (so `?` works in functions returning
/// `io::Result`); [`SubmitError::into_request`] gives the request, and its
/// buffers, back.
///
/// # Examples
///
/// ```
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::Context::new(4)?;
/// let err = ctx.submit(uaio::Request::write(&file, vec![1; 8], u64::MAX)).unwrap_err();
/// assert_eq!(err.error().raw_os_error(), Some(libc::EINVAL)); // negative offset
/// let buf = err.into_request().into_buf().unwrap();
/// assert_eq!(buf, vec![1; 8]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SubmitError<'fd, B = Vec<u8>> {
    error: io::Error,
    request: Request<'fd, B>,
}

impl<'fd, B: IoBuffer> SubmitError<'fd, B> {
    /// Why the submission failed (the errno `io_submit(2)` gives).
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _w) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let e = ctx.submit(uaio::Request::fsync(&reader)).unwrap_err();
    /// assert_eq!(e.error().raw_os_error(), Some(libc::EINVAL)); // a pipe cannot sync
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// The request, unsubmitted.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _w) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let e = ctx.submit(uaio::Request::fsync(&reader).user_data(4)).unwrap_err();
    /// assert_eq!(e.into_request().get_user_data(), 4);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_request(self) -> Request<'fd, B> {
        self.request
    }

    /// The error and the request.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _w) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let (err, req) = ctx.submit(uaio::Request::fsync(&reader)).unwrap_err().into_parts();
    /// assert_eq!((err.kind(), req.opcode()), (std::io::ErrorKind::InvalidInput, uaio::Opcode::Fsync));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_parts(self) -> (io::Error, Request<'fd, B>) {
        (self.error, self.request)
    }
}

impl<B: IoBuffer> fmt::Debug for SubmitError<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError").field("error", &self.error).field("request", &self.request).finish()
    }
}

impl<B: IoBuffer> fmt::Display for SubmitError<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_submit of a {:?} request: {}", self.request.opcode(), self.error)
    }
}

impl<B: IoBuffer> std::error::Error for SubmitError<'_, B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<B: IoBuffer> From<SubmitError<'_, B>> for io::Error {
    fn from(e: SubmitError<'_, B>) -> io::Error {
        e.error
    }
}

struct Inner<'fd, B> {
    slots: Slots<Request<'fd, B>>,
    /// iocb addresses of the batch being submitted (reused).
    ptrs: Vec<u64>,
    /// Slot indices of the batch being submitted (reused).
    batch: Vec<u32>,
}

/// An AIO context: requests go in with [`submit`](Context::submit) or
/// [`submit_batch`](Context::submit_batch), and come back, with their
/// buffers, from [`wait`](Context::wait).
///
/// `'fd` is the lifetime of the descriptors that requests borrow (see
/// [`Fd`](crate::Fd)); `B` the type of their buffers (`Vec<u8>` for
/// [`Context::new`] and [`Builder::build`]; choose
/// [`AlignedBuf`](crate::AlignedBuf) with [`Builder::build_for`] for
/// `O_DIRECT`).
///
/// A context is `Send` and `Sync`: any thread may submit, wait or cancel;
/// each completion is returned to exactly one waiter.
///
/// # Dropping
///
/// Dropping a context destroys it (`io_destroy(2)`): requests that could
/// wait forever (polls, reads and writes of pipes and sockets) are
/// cancelled, the others (file reads, writes and syncs) are waited for, and
/// the drop returns only when no request is in flight. Only then are the
/// buffers freed, so no buffer is ever freed while I/O may still touch it.
/// The drop may therefore block as long as the slowest file request.
///
/// # Process-wide effects
///
/// The engine behind every context is process-wide, and its first context
/// (of either API, or through `io_setup`) sets it up:
/// - a thread named `uaio-progress` starts and stays for the life of the
///   process (it moves completions to the rings when no thread is inside
///   uaio); on the thread-pool backend, `uaio-worker` threads
///   (`UAIO_THREADS` at most, 256 by default) and a `uaio-poller` thread
///   start on demand and leave when idle or when the last context goes;
/// - a `SIGSEGV`/`SIGBUS` handler is installed, so that a bad pointer
///   handed to the raw calls gives `EFAULT` instead of a crash; faults that
///   are not uaio's are passed to the handler that was there before (or to
///   one installed later: uaio notices and puts itself in front again);
/// - a `pthread_atfork` child handler: a `fork` child sees no context of
///   its parent (every call on one fails with `EINVAL`; do not use a
///   `Context` there except to drop it) and may create its own;
/// - an `atexit` hook waits for file reads, writes and syncs still in
///   flight when the process exits, as the kernel does;
/// - uaio's own descriptors (io_uring instances, eventfds) are moved to
///   high numbers with close-on-exec;
/// - the environment is read once: `UAIO_BACKEND` (`uring` or `threads`,
///   see [`Backend`]), `UAIO_THREADS` (the thread pool's bound) and
///   `UAIO_FAULTS` (fault injection for tests; never set it otherwise).
///
/// # Examples
///
/// ```
/// use std::os::unix::fs::FileExt;
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::Context::new(64)?;
/// let mut reqs: Vec<uaio::Request> =
///     (0..8u64).map(|i| uaio::Request::write(&file, vec![i as u8; 512], i * 512).user_data(i)).collect();
/// let mut tickets = Vec::new();
/// while !reqs.is_empty() {
///     ctx.submit_batch(&mut reqs, &mut tickets)?;
/// }
/// let mut done = Vec::with_capacity(8);
/// while done.len() < 8 {
///     ctx.wait(1, None, &mut done)?;
/// }
/// assert!(done.iter().all(|c| c.result().ok() == Some(512)));
/// let mut back = [0u8; 1];
/// file.read_exact_at(&mut back, 7 * 512)?;
/// assert_eq!(back[0], 7);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A borrowed file must outlive the context, or the program does not compile:
///
/// ```compile_fail
/// let ctx = uaio::Context::new(4)?;
/// {
///     let file = tempfile::tempfile()?;
///     ctx.submit(uaio::Request::fsync(&file))?;
/// } // `file` would be closed here while the context may still use it
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # References
///
/// - [`io_setup(2)`](https://man7.org/linux/man-pages/man2/io_setup.2.html),
///   [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html),
///   [`io_getevents(2)`](https://man7.org/linux/man-pages/man2/io_getevents.2.html),
///   [`io_cancel(2)`](https://man7.org/linux/man-pages/man2/io_cancel.2.html),
///   [`io_destroy(2)`](https://man7.org/linux/man-pages/man2/io_destroy.2.html)
/// - [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c) (Linux 6.18)
pub struct Context<'fd, B = Vec<u8>> {
    handle: aio_context_t,
    id: u64,
    inner: Mutex<Inner<'fd, B>>,
}

impl<'fd> Context<'fd, Vec<u8>> {
    /// Creates a context for `entries` requests in flight at once, whose
    /// requests use `Vec<u8>` buffers (`io_setup(2)`).
    ///
    /// # Errors
    ///
    /// `EINVAL` for 0 or too many entries, `EAGAIN` past the process's
    /// `aio-max-nr` budget.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(32)?;
    /// assert_eq!(ctx.pending(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// [`io_setup(2)`](https://man7.org/linux/man-pages/man2/io_setup.2.html),
    /// `ioctx_alloc` in [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
    pub fn new(entries: u32) -> io::Result<Self> {
        Context::on(entries, Backend::Auto)
    }

    /// Options for a new context: number of entries, backend, buffer type
    /// (the type parameter of [`Builder::build`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::builder().entries(16).build_for::<uaio::AlignedBuf>()?;
    /// assert_eq!(ctx.pending(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder { entries: 128, backend: Backend::Auto }
    }
}

impl<'fd, B: IoBuffer> Context<'fd, B> {
    fn on(entries: u32, backend: Backend) -> io::Result<Self> {
        let handle = sys::setup_on(entries, backend)?;
        let inner = Inner { slots: Slots::default(), ptrs: Vec::new(), batch: Vec::new() };
        Ok(Context { handle, id: next_id(), inner: Mutex::new(inner) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<'fd, B>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The raw context handle (the completion ring's address), for
    /// [`raw`](crate::raw) calls. Destroying it behind the context's back
    /// makes every later call fail with `EINVAL`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// let ring = ctx.handle() as *const uaio::abi::aio_ring;
    /// // SAFETY: the handle is the address of the live ring's header.
    /// assert_eq!(unsafe { (*ring).magic }, uaio::abi::AIO_RING_MAGIC);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn handle(&self) -> aio_context_t {
        self.handle
    }

    /// The backend this context runs on (never [`Backend::Auto`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::builder().backend(uaio::Backend::Threads).build()?;
    /// assert_eq!(ctx.backend(), uaio::Backend::Threads);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        sys::backend_of(self.handle)
    }

    /// Submits one request (`io_submit(2)`); the context keeps it, and its
    /// buffers, until its completion is reaped by [`Context::wait`].
    ///
    /// # Errors
    ///
    /// The request comes back inside the [`SubmitError`], with the errno
    /// of `io_submit(2)`: `EAGAIN` when the context is full, `EBADF`,
    /// `EINVAL`, `EOPNOTSUPP` for unknown [`ReadWriteFlags`](crate::ReadWriteFlags)...
    /// Errors of the I/O itself (`EIO`, `EFAULT`, end of pipe) come in the
    /// completion.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let t = ctx.submit(uaio::Request::write(&file, vec![0; 4096], 0))?;
    /// assert_eq!(ctx.wait_one(None)?.ticket(), t);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html),
    /// `io_submit_one` in [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
    pub fn submit(&self, req: Request<'fd, B>) -> Result<Ticket, SubmitError<'fd, B>> {
        let mut g = self.lock();
        let inner = &mut *g;
        let (index, gen) = self.stage(inner, req);
        let submitted = self.submit_staged(inner);
        inner.batch.clear();
        match submitted {
            Ok(1) => Ok(Ticket { ctx: self.id, index, gen }),
            Ok(_) => Err(SubmitError {
                error: io::Error::from_raw_os_error(libc::EAGAIN),
                request: inner.slots.remove(index).expect("staged"),
            }),
            Err(error) => Err(SubmitError { error, request: inner.slots.remove(index).expect("staged") }),
        }
    }

    /// Submits the requests at the front of `reqs` with one `io_submit(2)`,
    /// removes those submitted from `reqs` and appends their tickets to
    /// `tickets`; returns how many were submitted.
    ///
    /// As the system call, it stops at the first request that fails: the
    /// ones before it are submitted, it and those after it stay in `reqs`
    /// (in order), and the error is returned only when the very first one
    /// fails. More requests than the context has room for are submitted up
    /// to its size. Reuse `reqs` and `tickets` across calls: no allocation
    /// is made once they are large enough.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(8)?;
    /// let mut reqs: Vec<uaio::Request> = (0..4).map(|i| uaio::Request::noop().user_data(i)).collect();
    /// let mut tickets = Vec::with_capacity(4);
    /// assert_eq!(ctx.submit_batch(&mut reqs, &mut tickets)?, 4);
    /// assert!(reqs.is_empty());
    /// assert_eq!(tickets.len(), 4);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html)
    pub fn submit_batch(&self, reqs: &mut Vec<Request<'fd, B>>, tickets: &mut Vec<Ticket>) -> io::Result<usize> {
        if reqs.is_empty() {
            return Ok(0);
        }
        let mut g = self.lock();
        let inner = &mut *g;
        for req in reqs.drain(..) {
            self.stage(inner, req);
        }
        let r = self.submit_staged(inner);
        let n = *r.as_ref().unwrap_or(&0);
        let Inner { slots, batch, .. } = inner;
        for &index in &batch[..n] {
            tickets.push(Ticket { ctx: self.id, index, gen: slots.entry(index).gen });
        }
        reqs.extend(batch[n..].iter().map(|&i| slots.remove(i).expect("staged")));
        batch.clear();
        r
    }

    /// Puts `req` in a slot and its iocb in the batch.
    fn stage(&self, inner: &mut Inner<'fd, B>, req: Request<'fd, B>) -> (u32, u64) {
        let (index, gen) = inner.slots.insert(req);
        let (cb, e) = inner.slots.parts(index);
        let req = e.value.as_mut().expect("just inserted");
        req.fill(cb, &mut e.iov, data_of(index, gen));
        inner.batch.push(index);
        (index, gen)
    }

    /// Submits the staged batch; returns how many were submitted. The
    /// caller takes back what was not, and clears the batch.
    fn submit_staged(&self, inner: &mut Inner<'fd, B>) -> io::Result<usize> {
        let Inner { slots, ptrs, batch } = inner;
        ptrs.clear();
        ptrs.extend(batch.iter().map(|&i| slots.cb_ptr(i) as u64));
        // SAFETY: each iocb lives in a chunk of `slots` that never moves
        // while the context lives; it names buffers owned by the request
        // kept in the same slot (IoBuffer: their memory does not move) and
        // its iovec array, kept there too. A slot is emptied only when its
        // completion has been reaped, when the submission did not take it
        // (below, by the callers), or after io_destroy in Drop.
        unsafe { sys::submit(self.handle, ptrs) }
    }

    /// Waits until at least `min` completions are ready, or `timeout`
    /// passes (`None`: no limit; `Some(Duration::ZERO)`: do not wait), and
    /// appends the completions to `out`; returns how many were appended.
    ///
    /// It reaps at most `out`'s spare capacity (`capacity - len`), and at
    /// least `min` (at least 1): give `out` the capacity of the batches you
    /// want and reuse it, so that no call allocates. Each completion goes
    /// to exactly one waiter, whatever the number of threads waiting.
    ///
    /// # Errors
    ///
    /// `EINTR` when a signal handler ran before anything was ready.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = uaio::Context::new(8)?;
    /// for i in 0..3 {
    ///     ctx.submit(uaio::Request::noop().user_data(i))?;
    /// }
    /// let mut done = Vec::with_capacity(8);
    /// let mut total = 0;
    /// while total < 3 {
    ///     done.clear();
    ///     total += ctx.wait(1, Some(Duration::from_secs(10)), &mut done)?;
    /// }
    /// assert_eq!(ctx.wait(0, Some(Duration::ZERO), &mut done)?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// [`io_getevents(2)`](https://man7.org/linux/man-pages/man2/io_getevents.2.html),
    /// `read_events` in [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
    pub fn wait(&self, min: usize, timeout: Option<Duration>, out: &mut Vec<Completion<'fd, B>>) -> io::Result<usize> {
        let max = (out.capacity() - out.len()).max(min).max(1);
        self.reap(min, max, timeout, |c| out.push(c))
    }

    /// Waits for one completion, at most `timeout` (`None`: no limit), and
    /// returns it; [`io::ErrorKind::TimedOut`] if none came in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = uaio::Context::new(4)?;
    /// let err = ctx.wait_one(Some(Duration::ZERO)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// ctx.submit(uaio::Request::noop())?;
    /// assert_eq!(ctx.wait_one(None)?.result()?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_one(&self, timeout: Option<Duration>) -> io::Result<Completion<'fd, B>> {
        let mut one = None;
        self.reap(1, 1, timeout, |c| one = Some(c))?;
        one.ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    }

    /// `io_getevents` for `min..=max` events; each one that names a request
    /// of this context goes to `push`, with the request. Returns the count.
    fn reap(
        &self,
        min: usize,
        max: usize,
        timeout: Option<Duration>,
        mut push: impl FnMut(Completion<'fd, B>),
    ) -> io::Result<usize> {
        sys::with_events(max, |evs| {
            let n = sys::getevents(self.handle, min, evs, timeout)?;
            let mut g = self.lock();
            let mut count = 0;
            for ev in &evs[..n] {
                let Some(index) = g.slots.find_data(ev.data) else { continue };
                let gen = g.slots.entry(index).gen;
                let req = g.slots.remove(index).expect("found");
                push(Completion { ticket: Ticket { ctx: self.id, index, gen }, res: ev.res, req });
                count += 1;
            }
            Ok(count)
        })
    }

    /// Asks for a submitted request to be cancelled (`io_cancel(2)`).
    ///
    /// `Ok(())` means it was still pending: its completion (with
    /// `ECANCELED`, or its real result if it finished first) still comes
    /// through [`Context::wait`], with its buffers. uaio cancels reads,
    /// writes and syncs that have not started, not only polls as the kernel
    /// does.
    ///
    /// # Errors
    ///
    /// `EINVAL` when the request is not pending any more (it completed, or
    /// is being executed and can no longer be stopped), or when the ticket
    /// is of another context or of a request already reaped.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = rustix::pipe::pipe()?;
    /// let ctx = uaio::Context::new(4)?;
    /// let t = ctx.submit(uaio::Request::read(&reader, vec![0; 8], 0))?;
    /// ctx.cancel(t)?;
    /// let done = ctx.wait_one(None)?;
    /// assert_eq!(done.result().unwrap_err().raw_os_error(), Some(libc::ECANCELED));
    /// assert!(ctx.cancel(t).is_err()); // reaped: the ticket names nothing now
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// [`io_cancel(2)`](https://man7.org/linux/man-pages/man2/io_cancel.2.html),
    /// `SYSCALL_DEFINE3(io_cancel, ...)` in [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
    pub fn cancel(&self, t: Ticket) -> io::Result<()> {
        let mut g = self.lock();
        let Some(index) = (t.ctx == self.id).then(|| g.slots.find(t.index, t.gen)).flatten() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let (cb, _) = g.slots.parts(index);
        sys::cancel(self.handle, cb)
    }

    /// Requests submitted and not yet returned by [`Context::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = uaio::Context::new(4)?;
    /// ctx.submit(uaio::Request::noop())?;
    /// assert_eq!(ctx.pending(), 1);
    /// ctx.wait_one(None)?;
    /// assert_eq!(ctx.pending(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.lock().slots.len()
    }
}

impl<B> fmt::Debug for Context<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.inner.lock().map(|g| g.slots.len()).unwrap_or(0);
        f.debug_struct("Context")
            .field("handle", &format_args!("{:#x}", self.handle))
            .field("pending", &pending)
            .finish()
    }
}

impl<B> Drop for Context<'_, B> {
    fn drop(&mut self) {
        // Returns once no request is in flight; only then do the slots,
        // with the buffers, go.
        sys::destroy(self.handle);
    }
}
