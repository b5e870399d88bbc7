//! Options for a new context: the number of entries and the backend.

use std::io;

use super::buf::IoBuffer;
use super::context::Context;

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
    pub(super) entries: u32,
    pub(super) backend: Backend,
}

impl Builder {
    /// How many requests the context is made for (`io_setup`'s `nr_events`;
    /// 128 by default). As on the kernel, the ring is rounded up (to at
    /// least `4 * CPUs` entries, then doubled and filled to whole pages),
    /// so more may be in flight at once: past the ring's room
    /// ([`ring_geometry`](crate::ring_geometry)`(n).capacity`),
    /// submissions are refused with `EAGAIN`. Counted against the
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
