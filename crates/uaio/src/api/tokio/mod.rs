//! The async API on tokio: one eventfd per context, registered with the
//! runtime's reactor, signalled by every completion.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;
use rustix::event::{eventfd, EventfdFlags};
use uaio_abi::{aio_context_t, io_event, IOCB_FLAG_RESFD};

use crate::api::buf::IoBuffer;
use crate::api::request::Request;
use crate::api::slots::{data_of, Slots};
use crate::api::sys;

mod flight;
mod ops;

pub use flight::Flight;

/// A result together with the buffer (or buffers) the operation owned,
/// handed back whether it succeeded or not.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::AsyncContext::new(8)?;
/// let (res, buf): uaio::BufResult<usize, Vec<u8>> = ctx.write(&file, vec![1; 10], 0).await;
/// assert_eq!((res?, buf.len()), (10, 10));
/// # Ok(())
/// # }
/// ```
pub type BufResult<T, B> = (io::Result<T>, B);

/// What the context keeps per request in flight.
enum Slot<'fd> {
    /// Submitted; the waker of the future that waits for it.
    Waiting(Option<Waker>),
    /// Reaped; the event's `res`, for the future to take.
    Done(i64),
    /// Its future was dropped before the completion: the request (with
    /// its buffers and descriptor) stays here until the completion is
    /// reaped, so that no memory the I/O may still write is freed.
    Orphan(#[allow(dead_code)] Box<dyn Send + 'fd>),
}

struct State<'fd> {
    slots: Slots<Slot<'fd>>,
    /// The future whose task the eventfd's readiness may wake (the last one
    /// that asked the reactor, see [`AsyncContext::drive`]); when it goes,
    /// another waiting one is woken to take its place.
    driver: Option<(u32, u64)>,
}

/// An AIO context for tokio: `async fn` reads, writes, syncs and polls.
///
/// Every request carries `IOCB_FLAG_RESFD` with the context's own eventfd,
/// which is registered with tokio's reactor ([`AsyncFd`]). Whichever future
/// is polled when the eventfd is ready reaps every completion of the
/// context (`io_getevents(2)` without waiting) and wakes the futures they
/// belong to; no thread is spent waiting.
///
/// The descriptors and buffers follow the rules of the synchronous
/// [`Context`](crate::Context): descriptors are [`Fd`](crate::Fd)s (borrowed for
/// `'fd`, or owned), buffers are [`IoBuffer`]s owned by the operation and
/// returned in a [`BufResult`].
///
/// # Cancellation
///
/// Dropping a future before it completes cancels its request
/// (`io_cancel(2)`). Whether or not the cancellation succeeds, the request,
/// with its buffers and descriptor, moves into the context, which frees it
/// only when its completion has been reaped (by another future, or when
/// the context is dropped): memory the I/O may still write is never freed.
///
/// # Dropping
///
/// As for [`Context`](crate::Context): the drop cancels what could wait
/// forever, waits for file I/O still in flight (blocking the thread that
/// drops it), then frees what the requests owned. The process-wide effects
/// described there apply too.
///
/// # Runtime
///
/// The eventfd is registered with the runtime current at
/// [`AsyncContext::new`]. Once that runtime has shut down, the context has
/// no reactor: a request that cannot complete at once is cancelled and
/// resolves to `ECANCELED` (or to its result, if it finished first),
/// waited for with blocking calls in the polling thread. While that
/// runtime lives but is not driven (a current-thread runtime no thread
/// runs), the context's futures polled in another runtime wait for it, as
/// tokio's own I/O types do: their completions are seen by the first
/// runtime's reactor only. Make the context in the runtime that uses it.
///
/// # Panics
///
/// [`AsyncContext::new`] panics outside a tokio runtime with I/O enabled
/// (as tokio's [`AsyncFd`] registration does).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let file = tempfile::tempfile()?;
/// let ctx = uaio::AsyncContext::new(32)?;
/// let (res, _) = ctx.write(&file, b"hello, tokio".to_vec(), 0).await;
/// res?;
/// ctx.fsync(&file).await?;
/// let (res, buf) = ctx.read(&file, vec![0; 5], 0).await;
/// assert_eq!(&buf[..res?], b"hello");
/// # Ok(())
/// # }
/// ```
///
/// Many operations at once, from many tasks:
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// use std::sync::Arc;
/// let file = Arc::new(tempfile::tempfile()?);
/// let ctx = Arc::new(uaio::AsyncContext::new(64)?);
/// let mut tasks = tokio::task::JoinSet::new();
/// for i in 0..16u64 {
///     let (ctx, file) = (ctx.clone(), file.clone());
///     tasks.spawn(async move { ctx.write(file, vec![i as u8; 4096], i * 4096).await.0 });
/// }
/// while let Some(written) = tasks.join_next().await {
///     assert_eq!(written??, 4096);
/// }
/// assert_eq!(file.metadata()?.len(), 16 * 4096);
/// # Ok(())
/// # }
/// ```
///
/// # References
///
/// - [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html)
///   (`IOCB_FLAG_RESFD`), [`eventfd(2)`](https://man7.org/linux/man-pages/man2/eventfd.2.html),
///   [`io_cancel(2)`](https://man7.org/linux/man-pages/man2/io_cancel.2.html)
/// - `aio_complete` in [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
pub struct AsyncContext<'fd> {
    handle: aio_context_t,
    efd: AsyncFd<OwnedFd>,
    state: Mutex<State<'fd>>,
    /// The waker the reactor holds for the eventfd (see [`Relay`]).
    relay: Arc<Relay>,
}

/// The waker the context hands tokio's reactor for its eventfd: it wakes
/// the driver's task (the waker of the last [`AsyncContext::drive`]). The
/// reactor drops the waker it holds when it is given another, inside the
/// readiness check that `drive` makes under the state lock; handed the
/// program's waker, it dropped that there, and a waker whose `Drop` calls
/// into the context waited for the lock for ever. The reactor holds this
/// one instead, which the context keeps alive, and the program's wakers
/// go outside the lock.
#[derive(Default)]
struct Relay(Mutex<Option<Waker>>);

impl Relay {
    /// Makes `waker` the one to wake; returns the one it replaces, to be
    /// dropped once the state lock is released.
    fn set(&self, waker: &Waker) -> Option<Waker> {
        let mut w = crate::sync::lock_plain(&self.0);
        if w.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return None;
        }
        w.replace(waker.clone())
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // As the reactor's own wakers: woken once; the driver's next
        // readiness check sets it again.
        let w = crate::sync::lock_plain(&self.0).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Events reaped per `io_getevents` call.
const REAP_BATCH: usize = 64;

impl<'fd> AsyncContext<'fd> {
    /// Creates a context for `entries` requests in flight at once
    /// (`io_setup(2)`), with its eventfd registered with the current tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let ctx = uaio::AsyncContext::new(128)?;
    /// assert_eq!(ctx.pending(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(entries: u32) -> io::Result<Self> {
        AsyncContext::on(entries, crate::Backend::Auto)
    }

    /// [`AsyncContext::new`] on the backend `backend` (see
    /// [`Builder::backend`](crate::Builder::backend)).
    pub(crate) fn on(entries: u32, backend: crate::Backend) -> io::Result<Self> {
        let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open, with the
        // same number, until the AsyncFd is dropped.
        let efd = unsafe { AsyncFd::register_with_interest(efd, Interest::READABLE) }.map_err(io::Error::from)?;
        let handle = sys::setup_on(entries, backend)?;
        Ok(AsyncContext {
            handle,
            efd,
            state: Mutex::new(State { slots: Slots::default(), driver: None }),
            relay: Arc::default(),
        })
    }

    /// The raw context handle (see [`Context::handle`](crate::Context::handle)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// assert_ne!(ctx.handle(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn handle(&self) -> aio_context_t {
        self.handle
    }

    /// The backend this context runs on (see
    /// [`Context::backend`](crate::Context::backend)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let ctx = uaio::Context::builder().backend(uaio::Backend::Threads).build_async()?;
    /// assert_eq!(ctx.backend(), uaio::Backend::Threads);
    /// # Ok(())
    /// # }
    /// ```
    pub fn backend(&self) -> crate::Backend {
        sys::backend_of(self.handle)
    }

    fn lock(&self) -> MutexGuard<'_, State<'fd>> {
        crate::sync::lock_plain(&self.state)
    }

    /// Requests in flight, including those whose futures were dropped and
    /// whose completion has not been reaped yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// ctx.noop().await?;
    /// assert_eq!(ctx.pending(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pending(&self) -> usize {
        self.lock().slots.len()
    }

    /// Runs any [`Request`] and resolves to its result and the request
    /// (with its buffers) back. The request is submitted when the future
    /// is first polled; dropping the future cancels it (see the type's
    /// documentation). The request's own eventfd, if any, is replaced by
    /// the context's.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use uaio::{ReadWriteFlags, Request};
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let req = Request::write(&file, vec![3; 512], 0).flags(ReadWriteFlags::DSYNC);
    /// let (res, req) = ctx.run(req).await;
    /// assert_eq!(res?, 512);
    /// assert_eq!(req.into_buf().unwrap().len(), 512);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<B: IoBuffer>(&self, req: Request<'fd, B>) -> Flight<'_, 'fd, B> {
        Flight { ctx: self, req: Some(req), slot: None }
    }

    /// Submits `req` in a new slot; on failure the slot is freed again.
    fn submit<B: IoBuffer>(&self, req: &mut Request<'fd, B>, waker: &Waker) -> io::Result<(u32, u64)> {
        let mut st = self.lock();
        let (index, gen) = st.slots.insert(Slot::Waiting(Some(waker.clone())));
        let (cb, e) = st.slots.parts(index);
        req.fill(cb, &mut e.iov, data_of(index, gen));
        cb.aio_flags |= IOCB_FLAG_RESFD;
        cb.aio_resfd = std::os::fd::AsRawFd::as_raw_fd(self.efd.get_ref()) as u32;
        let mut ptr = [st.slots.cb_ptr(index) as u64];
        // SAFETY: the iocb lives in a chunk of `slots` that never moves; the
        // buffers and iovec array it names are owned by the request, which
        // the future keeps until the slot is `Done` and, if dropped before,
        // moves into the slot (`Orphan`) until the completion is reaped.
        // The context frees slots only after io_destroy in Drop.
        match unsafe { sys::submit(self.handle, &mut ptr) } {
            Ok(1) => Ok((index, gen)),
            r => {
                // The slot's clone of the waker goes once the lock is
                // released.
                let removed = st.slots.remove(index);
                drop(st);
                drop(removed);
                Err(r.err().unwrap_or_else(|| io::Error::from_raw_os_error(libc::EAGAIN)))
            }
        }
    }

    /// Records each event in its request's slot and wakes its future; the
    /// slot of an orphan (its future was dropped) is freed. The wakers run
    /// and the orphans' requests (buffers, descriptors) are dropped once
    /// the state lock is released: their code may call into the context.
    fn record(&self, evs: &[io_event]) {
        let mut wakers = Vec::new();
        let mut freed = Vec::new();
        {
            let mut st = self.lock();
            for ev in evs {
                let Some(index) = st.slots.find_data(ev.data) else { continue };
                let e = st.slots.entry(index);
                match e.value.take() {
                    Some(Slot::Waiting(w)) => {
                        e.value = Some(Slot::Done(ev.res));
                        wakers.extend(w);
                    }
                    other => {
                        e.value = other;
                        freed.extend(st.slots.remove(index));
                    }
                }
            }
        }
        drop(freed);
        for w in wakers {
            w.wake();
        }
    }

    /// Reaps every completion ready (without waiting), records each in its
    /// slot and wakes its future; frees the slots of orphans.
    fn reap(&self) -> io::Result<()> {
        loop {
            let n = sys::with_events(REAP_BATCH, |evs| -> io::Result<usize> {
                let n = sys::getevents(self.handle, 0, evs, Some(Duration::ZERO))?;
                self.record(&evs[..n]);
                Ok(n)
            })?;
            if n < REAP_BATCH {
                return Ok(());
            }
        }
    }

    /// Consumes the eventfd's count, then reaps. Pending when nothing is
    /// ready: the task of `cx` is then the one the next completion wakes.
    ///
    /// `me` is recorded as the driver whatever the answer: tokio keeps the
    /// waker of the last `poll_read_ready` that found the descriptor not
    /// ready, and that call may still answer ready (readiness arrived
    /// between its two looks), having replaced the previous driver's waker
    /// with `cx`'s. The call and the record happen under the state lock
    /// (`st`), so the future whose waker the reactor may hold is always
    /// the driver, and a driver that leaves hands the duty on
    /// ([`AsyncContext::hand_off`]). The reactor holds the context's
    /// [`Relay`], which wakes `cx`'s task.
    fn drive(
        &self,
        mut st: MutexGuard<'_, State<'fd>>,
        me: (u32, u64),
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<()>> {
        let replaced = self.relay.set(cx.waker());
        let relay = Waker::from(self.relay.clone());
        let ready = self.efd.poll_read_ready(&mut TaskContext::from_waker(&relay));
        st.driver = Some(me);
        drop(st);
        drop(replaced);
        let mut guard = match ready {
            Poll::Ready(Ok(g)) => g,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let mut count = [0u8; 8];
        // Read until the eventfd is empty: `try_io` clears the readiness on
        // EAGAIN, so the next completion makes it ready again.
        while let Ok(r) = guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut count).map_err(io::Error::from)) {
            r?;
        }
        Poll::Ready(self.reap())
    }

    /// Wakes a waiting future other than `me` so that it takes over the
    /// reactor registration, when `me` leaves as the driver, or when there
    /// is none: a future woken to take over may have found its completion
    /// through the eventfd at once and is leaving without registering.
    /// Returns that future's waker, for the caller to wake once the state
    /// lock is released (a waker is the program's code, and may call into
    /// the context).
    #[must_use = "the waker must be woken once the lock is released"]
    fn hand_off(st: &mut State<'fd>, me: (u32, u64)) -> Option<Waker> {
        if st.driver.is_some_and(|d| d != me) {
            return None;
        }
        st.driver = None;
        for (i, e) in st.slots.iter_mut() {
            if (i, e.gen) == me {
                continue;
            }
            if let Some(Slot::Waiting(Some(w))) = &e.value {
                return Some(w.clone());
            }
        }
        None
    }

    /// Slow path when the reactor fails: cancel, then wait for the
    /// completion with blocking calls (short timeouts, as other threads may
    /// reap it).
    fn finish_blocking(&self, me: (u32, u64)) -> i64 {
        {
            let mut st = self.lock();
            let (cb, _) = st.slots.parts(me.0);
            let _ = sys::cancel(self.handle, cb);
        }
        loop {
            {
                let mut st = self.lock();
                if let Some(Slot::Done(res)) = st.slots.entry(me.0).value {
                    st.slots.remove(me.0);
                    let next = AsyncContext::hand_off(&mut st, me);
                    drop(st);
                    if let Some(w) = next {
                        w.wake();
                    }
                    return res;
                }
            }
            let _ = sys::with_events(REAP_BATCH, |evs| -> io::Result<()> {
                let n = sys::getevents(self.handle, 1, evs, Some(Duration::from_millis(10)))?;
                self.record(&evs[..n]);
                Ok(())
            });
        }
    }
}

impl fmt::Debug for AsyncContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncContext")
            .field("handle", &format_args!("{:#x}", self.handle))
            .field("pending", &self.pending())
            .finish()
    }
}

impl Drop for AsyncContext<'_> {
    fn drop(&mut self) {
        // Returns once no request is in flight; only then do the slots,
        // with the orphaned requests, go.
        sys::destroy(self.handle);
    }
}
