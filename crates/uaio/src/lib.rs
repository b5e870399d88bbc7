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
//! - [`Context`]: a safe API with owned buffers.
//!
//! ```
//! use std::os::fd::AsRawFd;
//! # fn main() -> std::io::Result<()> {
//! let file = tempfile::tempfile()?;
//! let ctx = uaio::Context::new(8)?;
//! ctx.submit(uaio::Request::write(file.as_raw_fd(), b"hello".to_vec(), 0).user_data(7))?;
//! let done = ctx.wait(1, None)?;
//! assert_eq!(done[0].user_data, 7);
//! assert_eq!(done[0].result, Ok(5));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod api;
mod backend;
mod kioctx;
pub mod raw;
mod ring;
mod sys;
mod table;
mod uaccess;
mod writeback;

pub use api::{Completion, Context, Op, Request, Ticket};
pub use uaio_abi as abi;

/// Name of the backend that executes I/O in this process: `"io_uring"` or
/// `"threads"`. Decided once per process (see the README: `UAIO_BACKEND`).
pub fn backend_name() -> &'static str {
    match table::choice() {
        table::Choice::Uring => "io_uring",
        table::Choice::Threads => "threads",
    }
}

/// Worker and poller threads of the thread-pool backend alive now.
pub fn pool_threads() -> usize {
    backend::threads::threads_alive()
}

/// Whether io_uring can be used by this process.
pub fn io_uring_available() -> bool {
    backend::uring::available()
}

/// Number of live contexts in this process.
pub fn live_contexts() -> usize {
    table::live_contexts()
}

/// The per-process budget of requests (`/proc/sys/fs/aio-max-nr`).
pub fn aio_max_nr() -> u64 {
    table::aio_max_nr()
}
