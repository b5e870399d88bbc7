//! The safe Rust API: contexts that own the buffers of their requests.
//!
//! A [`Request`] owns its buffers and names its descriptor through an
//! [`Fd`]; [`Context::submit`] keeps both in a slot whose iocb never moves
//! until the completion is reaped, and [`Context::wait`] hands them back
//! inside a [`Completion`]. Dropping a [`Context`] destroys it and returns
//! once nothing is in flight, so no buffer is ever freed while I/O may still
//! touch it. With the `tokio` feature, `AsyncContext` offers the same
//! requests as futures.
//!
//! All calls into the engine are in `sys`; nothing else here needs `unsafe`
//! but the aligned buffer's allocation.

mod buf;
mod builder;
mod completion;
mod context;
mod fd;
mod request;
mod slots;
mod sys;
#[cfg(feature = "tokio")]
mod tokio;

pub use buf::{AlignedBuf, IoBuffer};
pub use builder::{Backend, Builder};
pub use completion::{Completion, SubmitError, Ticket};
pub use context::Context;
pub use fd::Fd;
pub use request::{Opcode, Request};
pub use rustix::event::PollFlags;
pub use rustix::io::ReadWriteFlags;
#[cfg(feature = "tokio")]
pub use tokio::{AsyncContext, BufResult, Flight};
