//! What comes back: tickets that name one submitted request, completions
//! that hand the buffers back, and submission errors that hand the request
//! back.

use std::fmt;
use std::io;

use super::buf::IoBuffer;
#[cfg(doc)]
use super::context::Context;
use super::request::{Opcode, Request};
use super::PollFlags;

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
    pub(super) ctx: u64,
    pub(super) index: u32,
    pub(super) gen: u64,
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
    pub(super) ticket: Ticket,
    pub(super) res: i64,
    pub(super) req: Request<'fd, B>,
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
    pub(super) error: io::Error,
    pub(super) request: Request<'fd, B>,
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
