//! The descriptors that requests name.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A file descriptor named by a [`Request`](crate::Request): borrowed for
/// `'fd`, or shared-owned.
///
/// A request never holds a bare descriptor number. It holds an `Fd`, which
/// keeps the descriptor open for as long as the request exists:
///
/// - a borrowed descriptor (`&File`, `&OwnedFd`, `&TcpStream`, any
///   `&impl AsFd`, or a [`BorrowedFd<'fd>`]) ties the request, and the
///   [`Context<'fd>`](crate::Context) it is submitted to, to the lifetime
///   `'fd` of the borrow. A context waits for every request when it is
///   dropped, so the borrow checker rejects any program that could close
///   the file while I/O on it is in flight;
/// - an owned descriptor (`File`, `OwnedFd`, or an [`Arc`] of anything that
///   is [`AsFd`]) lives inside the request and is given back, or dropped,
///   with its completion. Use it for contexts that live long (`'static`,
///   held in a struct or shared between tasks); pass an `Arc` to share one
///   file between many requests without an allocation per request.
///
/// Either way the descriptor number stays open, and names the same file,
/// for as long as the request may use it: a number closed and reused for
/// another file can never receive a request's data.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use uaio::Fd;
///
/// let file = tempfile::tempfile()?;
/// let borrowed: Fd<'_> = Fd::from(&file); // lives as long as the borrow of `file`
/// let shared: Fd<'static> = Fd::from(Arc::new(tempfile::tempfile()?));
/// assert_ne!(borrowed.raw(), shared.raw());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Fd<'fd>(Repr<'fd>);

#[derive(Clone)]
enum Repr<'fd> {
    Borrowed(BorrowedFd<'fd>),
    Owned(Arc<dyn AsFd + Send + Sync + 'fd>),
}

impl Fd<'_> {
    /// The descriptor's number (for logs and comparisons; it stays open
    /// while this `Fd` exists).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// let file = tempfile::tempfile()?;
    /// assert_eq!(uaio::Fd::from(&file).raw(), file.as_raw_fd());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn raw(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Fd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Repr::Borrowed(b) => b.as_fd(),
            Repr::Owned(o) => o.as_fd(),
        }
    }
}

impl fmt::Debug for Fd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Repr::Borrowed(_) => "borrowed",
            Repr::Owned(_) => "owned",
        };
        f.debug_struct("Fd").field("fd", &self.raw()).field("kind", &kind).finish()
    }
}

impl<'fd, T: AsFd + ?Sized> From<&'fd T> for Fd<'fd> {
    fn from(t: &'fd T) -> Fd<'fd> {
        Fd(Repr::Borrowed(t.as_fd()))
    }
}

impl<'fd> From<BorrowedFd<'fd>> for Fd<'fd> {
    fn from(b: BorrowedFd<'fd>) -> Fd<'fd> {
        Fd(Repr::Borrowed(b))
    }
}

impl<'fd, T: AsFd + Send + Sync + 'fd> From<Arc<T>> for Fd<'fd> {
    fn from(a: Arc<T>) -> Fd<'fd> {
        Fd(Repr::Owned(a))
    }
}

impl From<OwnedFd> for Fd<'_> {
    fn from(o: OwnedFd) -> Self {
        Fd(Repr::Owned(Arc::new(o)))
    }
}

impl From<File> for Fd<'_> {
    fn from(f: File) -> Self {
        Fd(Repr::Owned(Arc::new(f)))
    }
}
