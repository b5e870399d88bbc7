//! The synchronous context: submit, wait, cancel, destroy on drop.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use uaio_abi::aio_context_t;

use super::buf::IoBuffer;
use super::builder::{Backend, Builder};
use super::completion::{Completion, SubmitError, Ticket};
use super::request::Request;
use super::slots::{data_of, Slots};
use super::sys;

/// Source of context ids, so that a ticket of one context never names a
/// request of another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

struct Inner<'fd, B> {
    slots: Slots<Request<'fd, B>>,
    /// iocb addresses of the batch being submitted (reused).
    ptrs: Vec<u64>,
    /// Slot indices of the batch being submitted (reused).
    batch: Vec<u32>,
}

/// The requests of a submission being staged: if staging panics (an
/// [`IoBuffer`]'s `Deref` may), their slots are emptied and the batch
/// cleared, so that no request the call never submitted stays counted in
/// [`Context::pending`], or goes out with the next call's batch (whose
/// caller would then get back a request that was submitted).
struct Staging<'a, 'fd, B>(Option<&'a mut Inner<'fd, B>>);

impl<'a, 'fd, B> Staging<'a, 'fd, B> {
    /// The context's state, to stage into.
    fn inner(&mut self) -> &mut Inner<'fd, B> {
        self.0.as_deref_mut().expect("staging")
    }

    /// Staging went through: the batch is the caller's again.
    fn done(mut self) -> &'a mut Inner<'fd, B> {
        self.0.take().expect("staging")
    }
}

impl<B> Drop for Staging<'_, '_, B> {
    fn drop(&mut self) {
        if let Some(Inner { slots, batch, .. }) = self.0.take() {
            for &index in batch.iter() {
                slots.remove(index);
            }
            batch.clear();
        }
    }
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
///   (`UAIO_THREADS` at most, 256 by default) start on demand and leave
///   when idle or when the last context goes, and a `uaio-poller` thread
///   (which waits for POLLs and stream requests) starts with the first
///   context and leaves when the last one goes;
/// - a `SIGSEGV`/`SIGBUS` handler is installed, so that a bad pointer
///   handed to the raw calls gives `EFAULT` instead of a crash; faults that
///   are not uaio's are passed to the handler that was there before (or to
///   one installed later: uaio notices and puts itself in front again);
/// - a `pthread_atfork` child handler: a `fork` child sees no context of
///   its parent (every call on one fails with `EINVAL` and
///   [`Context::pending`] answers 0, whatever the parent's other threads
///   were doing at the fork; dropping it is the one other use) and may
///   create its own;
/// - an `atexit` hook waits for file reads, writes and syncs still in
///   flight when the process exits, as the kernel does;
/// - uaio's own descriptors (io_uring instances, eventfds) are moved to
///   high numbers with close-on-exec;
/// - the environment is read once: `UAIO_BACKEND` (`uring` or `threads`,
///   see [`Backend`]), `UAIO_THREADS` (the thread pool's bound) and
///   `UAIO_FAULTS` (fault injection for tests; never set it otherwise);
///   `UAIO_DURABLE_SUBMIT=1`, read as each context is made, has every
///   buffered write to a regular file, and every `O_DIRECT` write that
///   extends its file, done inside `submit` as kernel AIO does them
///   (waiting for the device where the kernel's `io_submit` waits), so
///   that a process killed right after keeps them; `UAIO_READS_IN_SUBMIT=1`,
///   read the same way, has every buffered read of a regular file or block
///   device done inside `submit`, as kernel AIO does them (waiting for the
///   device when the pages are not cached), so that its buffer holds the
///   bytes when `submit` returns (a read of bytes a write still in the
///   backend covers follows that write there; with both variables set,
///   no such write is left).
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
    /// [`crate::table::forks`] when it was made: in a `fork` child the
    /// context is the parent's, whose lock a vanished thread may hold.
    forks: u64,
    /// The most events one wait can reap: the ring's slots.
    most: usize,
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
    pub(super) fn on(entries: u32, backend: Backend) -> io::Result<Self> {
        let handle = sys::setup_on(entries, backend)?;
        let inner = Inner { slots: Slots::default(), ptrs: Vec::new(), batch: Vec::new() };
        let most = sys::events_at_most(handle);
        Ok(Context { handle, id: next_id(), forks: crate::table::forks(), most, inner: Mutex::new(inner) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<'fd, B>> {
        crate::sync::lock_plain(&self.inner)
    }

    /// [`Context::lock`], or `EINVAL` in a `fork` child: the context is the
    /// parent's (every call on it fails there, as on the kernel), and a
    /// thread of the parent's that does not exist in the child may have
    /// held the lock at the fork.
    fn lock_here(&self) -> io::Result<MutexGuard<'_, Inner<'fd, B>>> {
        if self.forks != crate::table::forks() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(self.lock())
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
        let mut g = match self.lock_here() {
            Ok(g) => g,
            Err(error) => return Err(SubmitError { error, request: req }),
        };
        let mut staging = Staging(Some(&mut g));
        let (index, gen) = self.stage(staging.inner(), req);
        let inner = staging.done();
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
        let mut g = self.lock_here()?;
        let mut staging = Staging(Some(&mut g));
        for req in reqs.drain(..) {
            self.stage(staging.inner(), req);
        }
        let inner = staging.done();
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

    /// Puts `req` in a slot and its iocb in the batch (under a [`Staging`]:
    /// the request's buffer may panic when asked for its address).
    fn stage(&self, inner: &mut Inner<'fd, B>, req: Request<'fd, B>) -> (u32, u64) {
        let (index, gen) = inner.slots.insert(req);
        // In the batch before its buffer is asked for its address.
        inner.batch.push(index);
        let (cb, e) = inner.slots.parts(index);
        let req = e.value.as_mut().expect("just inserted");
        req.fill(cb, &mut e.iov, data_of(index, gen));
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
    /// `EINTR` when a signal handler ran before anything was ready;
    /// `EINVAL` when `min` is more than the context's ring holds (no call
    /// could ever reap that many).
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
        // Sized by the ring, not by `out` or `min`: a larger array would
        // be allocated (`min` of 2^30 aborted the process) for events that
        // cannot come.
        let most = self.most;
        if min > most {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let max = (out.capacity() - out.len()).max(min).clamp(1, most);
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
            let mut g = self.lock_here()?;
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
        let mut g = self.lock_here()?;
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
        // In a fork child none of the parent's requests is the child's.
        self.lock_here().map_or(0, |g| g.slots.len())
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
