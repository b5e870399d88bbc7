//! uaio: Linux asynchronous I/O (`io_setup`, `io_submit`, `io_getevents`,
//! `io_pgetevents`, `io_cancel`, `io_destroy`) implemented in user space.
//!
//! The engine behaves like the kernel's AIO: same validation order and
//! errno values, same completion ring (the context handle is the address of
//! a `struct aio_ring` that programs may reap from directly), same waiting,
//! cancellation and teardown rules. The I/O itself runs on io_uring. On top
//! of that it lifts the kernel's limits: `io_submit` never blocks on I/O,
//! `io_cancel` works for reads, writes and syncs, `IOCB_CMD_NOOP` completes,
//! and `aio-max-nr` is a per-process budget instead of a host-wide one.
//!
//! Two layers:
//! - [`raw`]: the six calls with the kernel's arguments, for the C library
//!   and for programs that speak the system call interface;
//! - [`Context`]: a safe API. [`Request`]s own their buffers ([`Vec<u8>`],
//!   or [`AlignedBuf`] for `O_DIRECT`) and borrow or own their descriptor
//!   ([`Fd`]); they are submitted one by one or in batches, and their
//!   [`Completion`]s hand the buffers back. With the `tokio` feature,
//!   `AsyncContext` runs the same requests as futures.
//!
//! ```
//! use std::os::unix::fs::FileExt;
//! let file = tempfile::tempfile()?;
//! let ctx = uaio::Context::new(8)?;
//! ctx.submit(uaio::Request::write(&file, b"hello".to_vec(), 0).user_data(7))?;
//! let done = ctx.wait_one(None)?;
//! assert_eq!((done.user_data(), done.result()?), (7, 5));
//! let mut back = [0; 5];
//! file.read_exact_at(&mut back, 0)?;
//! assert_eq!(&back, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Process-wide effects
//!
//! The first context of a process (through either layer) starts the
//! `uaio-progress` thread, installs a `SIGSEGV`/`SIGBUS` handler (bad
//! pointers become `EFAULT`; other faults go to the previous handler), a
//! `pthread_atfork` child handler (a child sees none of its parent's
//! contexts) and an `atexit` hook (file I/O in flight is finished before
//! the process exits), and reads `UAIO_BACKEND`, `UAIO_THREADS`,
//! `UAIO_FAULTS`, `UAIO_DURABLE_SUBMIT` and `UAIO_READS_IN_SUBMIT`.
//! [`Context`] says more about each.
//!
//! # Features
//!
//! - `tokio` (off by default): `AsyncContext`, `async fn` reads, writes,
//!   syncs and polls driven by an eventfd registered with tokio's reactor.
//!   The core library starts no runtime.
//!
//! # Supported targets
//!
//! Linux only (the API mirrors Linux AIO and the engine uses io_uring,
//! eventfd, futexes and `/proc`), and 64-bit only (the engine reads the
//! application's iocb pointers as 64-bit values). x86_64 is the tested
//! target and the only one with the assembly fault-recovering copy; other
//! 64-bit Linux targets (aarch64, riscv64, ...) build with portable
//! fallbacks (`process_vm_readv`) and are not tested.
//!
//! # References
//!
//! - [`aio(7)`](https://man7.org/linux/man-pages/man7/aio.7.html),
//!   [`io_submit(2)`](https://man7.org/linux/man-pages/man2/io_submit.2.html)
//!   and the other `io_*` pages
//! - [`fs/aio.c`](https://elixir.bootlin.com/linux/v6.18/source/fs/aio.c)
//!   (Linux 6.18), the kernel implementation uaio follows
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Unsafe code is allowed only in the modules that must touch memory or the
// kernel directly (ARCHITECTURE.md, "Where unsafe is allowed"): application
// memory (`uaccess`), the ring, each backend, the system calls (`sys`), the
// raw entry points and the safe API's bridge to them. The policy modules
// (`kioctx`, `table`, `progress`, `writeback`) have none.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!("uaio implements Linux AIO on io_uring: it supports Linux targets only");
#[cfg(not(target_pointer_width = "64"))]
compile_error!("uaio supports 64-bit Linux targets only (x86_64 is tested; aarch64, riscv64 and others build)");

#[allow(unsafe_code)]
mod api;
#[allow(unsafe_code)]
mod backend;
mod kioctx;
mod progress;
#[allow(unsafe_code)]
pub mod raw;
#[allow(unsafe_code)]
mod ring;
mod stats;
mod sync;
#[allow(unsafe_code)]
mod sys;
mod table;
#[allow(unsafe_code)]
mod uaccess;
mod writeback;

pub use api::{
    AlignedBuf, Backend, Builder, Completion, Context, Fd, IoBuffer, Opcode, PollFlags, ReadWriteFlags, Request,
    SubmitError, Ticket,
};
#[cfg(feature = "tokio")]
pub use api::{AsyncContext, BufResult, Flight};
pub use uaio_abi as abi;

/// Name of the backend that executes I/O in this process: `"io_uring"` or
/// `"threads"`. Decided once per process (see the README: `UAIO_BACKEND`);
/// a context built with [`Builder::backend`] may run on the other one.
///
/// # Examples
///
/// ```
/// assert!(["io_uring", "threads"].contains(&uaio::backend_name()));
/// ```
pub fn backend_name() -> &'static str {
    match table::choice() {
        table::Choice::Uring => "io_uring",
        table::Choice::Threads => "threads",
    }
}

/// Worker and poller threads of the thread-pool backend alive now.
///
/// # Examples
///
/// ```
/// let (r, _w) = std::os::unix::net::UnixStream::pair()?;
/// let ctx = uaio::Context::builder().backend(uaio::Backend::Threads).build()?;
/// ctx.submit(uaio::Request::poll(&r, uaio::PollFlags::IN))?; // waits in the poller thread
/// assert!(uaio::pool_threads() >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pool_threads() -> usize {
    backend::threads::threads_alive()
}

/// Whether io_uring can be used by this process (`io_uring_setup` may be
/// refused by seccomp, `kernel.io_uring_disabled` or the memlock limit).
///
/// # Examples
///
/// ```
/// if !uaio::io_uring_available() {
///     assert_eq!(uaio::backend_name(), "threads");
/// }
/// ```
pub fn io_uring_available() -> bool {
    backend::uring::available()
}

/// Descriptors uaio keeps open beyond its contexts: the `/proc` and `/sys`
/// files it reads (dirty-page counts, `aio-max-nr`, the possible CPUs, the
/// mount table), each opened on first use above uaio's floor and kept for
/// the life of the process; and duplicates of the program's files that
/// requests used, kept while a record lock (`fcntl` `F_SETLK`) is held on
/// their file, since closing one would release the program's locks (they
/// are closed by a later call once the locks are gone); and the io_uring
/// instances kept for later contexts ([`kept_rings`]). A tool that checks
/// a program for descriptor leaks leaves these out.
///
/// # Examples
///
/// ```
/// assert!(uaio::kept_descriptors() <= 9 + 8); // nothing locked here
/// ```
pub fn kept_descriptors() -> usize {
    sys::procfs::open_count() + sys::internal_fds::kept_count() + kept_rings()
}

/// Number of live contexts in this process.
///
/// # Examples
///
/// ```
/// let before = uaio::live_contexts();
/// let ctx = uaio::Context::new(4)?;
/// assert!(uaio::live_contexts() >= 1);
/// drop(ctx);
/// # let _ = before;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn live_contexts() -> usize {
    table::live_contexts()
}

/// The io_uring instances uaio keeps open for later contexts (at most 8):
/// an instance nothing uses any more after its context was destroyed
/// waits for the next context of the same sizes instead of being closed,
/// since the kernel's teardown of one interrupts every thread that ever
/// submitted to it (see the README). Each holds one descriptor.
///
/// ```
/// assert!(uaio::kept_rings() <= 8);
/// ```
pub fn kept_rings() -> usize {
    backend::uring::kept()
}

/// The per-process budget of requests (`/proc/sys/fs/aio-max-nr`, which
/// the kernel applies to the whole host and uaio to each process).
///
/// # Examples
///
/// ```
/// assert!(uaio::aio_max_nr() > 0);
/// ```
pub fn aio_max_nr() -> u64 {
    table::aio_max_nr()
}

/// Why this process uses the backend [`backend_name`] names: set by
/// `UAIO_BACKEND`, or the automatic choice (io_uring when this process may
/// use it and does not run under valgrind, else the thread pool).
///
/// # Examples
///
/// ```
/// println!("{} ({})", uaio::backend_name(), uaio::backend_reason());
/// ```
pub fn backend_reason() -> &'static str {
    let var = std::env::var("UAIO_BACKEND");
    let set = matches!(var.as_deref(), Ok("threads" | "thread" | "pool" | "uring" | "io_uring"));
    let uring_asked = matches!(var.as_deref(), Ok("uring" | "io_uring"));
    match (set, table::choice(), io_uring_available()) {
        (true, table::Choice::Threads, false) if uring_asked => {
            "UAIO_BACKEND asks for io_uring, which is not available to this process: the thread pool runs instead"
        }
        (true, _, _) => "set by UAIO_BACKEND",
        (false, table::Choice::Uring, _) => "automatic: io_uring is available to this process",
        (false, table::Choice::Threads, false) => "automatic: io_uring is not available to this process",
        (false, table::Choice::Threads, true) => {
            "automatic: the process runs under valgrind, which holds its lock across io_uring_enter"
        }
    }
}

/// The completion ring `io_setup(nr_events)` makes on this machine, by the
/// kernel's sizing rule (the same for uaio and for the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    /// Possible CPUs, as the kernel counts them for the sizing.
    pub cpus: u32,
    /// The page size the ring is rounded to.
    pub page_size: usize,
    /// Event slots (`ring->nr`): `max(nr_events, 4 * cpus) * 2 + 2`,
    /// rounded up to whole pages of 32-byte events after a 32-byte header.
    pub nr: u32,
    /// Bytes mapped for the ring (whole pages).
    pub bytes: usize,
    /// Requests that may be pending at once (the kernel keeps per-CPU slack).
    pub capacity: u32,
}

/// The ring geometry for `io_setup(nr_events)`, or the errno the sizing
/// fails with (`EINVAL` when the doubled count is too large, `EAGAIN` when
/// it wraps to 0). `io_setup`'s other checks (`nr_events == 0`,
/// `aio-max-nr`) are not made here.
///
/// # Examples
///
/// ```
/// let g = uaio::ring_geometry(128)?;
/// assert!(g.nr >= 2 * 128 + 2);
/// assert_eq!(g.bytes % g.page_size, 0);
/// assert!(uaio::ring_geometry(0x8000_0000).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ring_geometry(nr_events: u32) -> Result<RingGeometry, std::io::Error> {
    let (cpus, page_size) = (ring::possible_cpus(), ring::page_size());
    let g = ring::Geometry::for_events(nr_events, cpus, page_size)
        .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
    Ok(RingGeometry { cpus, page_size, nr: g.nr, bytes: g.bytes, capacity: g.capacity })
}
