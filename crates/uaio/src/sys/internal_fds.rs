//! uaio's own descriptors (io_uring instances, eventfds) and the rule that
//! keeps them out of the application's way:
//! - they live at high numbers, at or above a floor (half the soft
//!   `RLIMIT_NOFILE`, at most 4096), so the low numbers the application
//!   gets from `open` stay free, and a number it closed is never reused by
//!   uaio behind its back;
//! - a request naming one of them is refused with `EBADF`, as the kernel
//!   refuses a descriptor the application does not have;
//! - they use at most a quarter of the soft limit: past that, new contexts
//!   run on the thread pool instead of opening another io_uring
//!   (see [`internal_fds::room_for_one_more`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

use rustix::io::Errno;

/// Numbers tracked exactly above the floor (a bit each).
const SPAN: usize = 4096;
static FLOOR: AtomicI32 = AtomicI32::new(0);
static BITS: [AtomicU64; SPAN / 64] = [const { AtomicU64::new(0) }; SPAN / 64];
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn soft_limit() -> usize {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return 1 << 20;
    }
    rl.rlim_cur as usize
}

fn floor() -> i32 {
    match FLOOR.load(Ordering::Relaxed) {
        0 => {
            let f = (soft_limit() / 2).clamp(3, SPAN) as i32;
            FLOOR.store(f, Ordering::Relaxed);
            f
        }
        f => f,
    }
}

/// A descriptor of uaio's own, at a high number, refused in requests.
///
/// Held by number, not as an `OwnedFd`: a program may close it behind
/// uaio's back (`close_range` in a daemon), and the number may then
/// name a file of the program's. Its file's device and inode are
/// recorded, and it is closed on drop only while the number still
/// names a file with the same device and inode.
#[derive(Debug)]
pub(crate) struct InternalFd {
    fd: i32,
    id: Option<(u64, u64)>,
}

fn file_id(fd: i32) -> Option<(u64, u64)> {
    super::file_stat(fd).map(|st| st.ident())
}

impl InternalFd {
    /// Moves `fd` to a number at or above the floor (close-on-exec) and
    /// records it as uaio's. `EMFILE` when no number is left there.
    pub(crate) fn new(fd: OwnedFd) -> Result<InternalFd, Errno> {
        Self::dup_of(fd.as_fd())
    }

    /// A duplicate of `fd` (which stays open, and may be the
    /// application's) at a number at or above the floor (close-on-exec),
    /// recorded as uaio's. `EMFILE` when no number is left there, `EBADF`
    /// when `fd` is no longer open.
    pub(crate) fn dup_of(fd: BorrowedFd<'_>) -> Result<InternalFd, Errno> {
        InternalFd::dup_of_number(fd.as_raw_fd())
    }

    /// [`InternalFd::dup_of`] by number: what the number names at the
    /// moment of the call (`EBADF` if nothing).
    pub(crate) fn dup_of_number(fd: i32) -> Result<InternalFd, Errno> {
        let min = floor();
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor number (a closed one just
        // fails); the result, if any, is a new descriptor that only this
        // function holds.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        if d < 0 {
            // EBADF when the descriptor was closed meanwhile; any other
            // failure means no number is left above the floor.
            let e = std::io::Error::last_os_error().raw_os_error();
            return Err(if e == Some(libc::EBADF) { Errno::BADF } else { Errno::MFILE });
        }
        set(d, true);
        COUNT.fetch_add(1, Ordering::SeqCst);
        Ok(InternalFd { fd: d, id: file_id(d) })
    }
}

impl InternalFd {
    /// The device and inode of the file, as recorded when the descriptor
    /// was made (`None` if they could not be read).
    pub(crate) fn ident(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// Lets go of the number without closing it: the program took it over
    /// (closed it, or put a file of its own there), so what it names now
    /// is the program's, and uaio's duplicate is gone already.
    pub(crate) fn disown(mut self) {
        self.id = None;
    }

    /// Whether the number still names the file it was made for (a program
    /// may have closed it, or put a file of its own there).
    pub(crate) fn intact(&self) -> bool {
        self.id.is_some() && file_id(self.fd) == self.id
    }

    /// The descriptor, staying recorded as uaio's for the rest of the
    /// process (for descriptors that live as long as the process).
    pub(crate) fn into_permanent(self) -> OwnedFd {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: the descriptor was created by `dup_of` and `me` is
        // never dropped, so ownership passes exactly once.
        unsafe { OwnedFd::from_raw_fd(me.fd) }
    }
}

impl AsFd for InternalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: uaio's own descriptor, open until this value drops
        // (unless the program closes it behind uaio's back, which then
        // makes uaio's calls on it fail, never touch memory).
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl AsRawFd for InternalFd {
    fn as_raw_fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for InternalFd {
    fn drop(&mut self) {
        set(self.fd, false);
        COUNT.fetch_sub(1, Ordering::SeqCst);
        if self.intact() {
            // SAFETY: the number still names the file uaio duplicated;
            // closing it releases uaio's reference.
            unsafe { libc::close(self.fd) };
        }
    }
}

fn set(fd: i32, on: bool) {
    let i = fd - FLOOR.load(Ordering::Relaxed);
    if i < 0 || i as usize >= SPAN {
        return;
    }
    let (w, b) = (i as usize / 64, 1u64 << (i % 64));
    if on {
        BITS[w].fetch_or(b, Ordering::SeqCst);
    } else {
        BITS[w].fetch_and(!b, Ordering::SeqCst);
    }
}

/// Whether `fd` is one of uaio's own descriptors (a request naming it
/// gets `EBADF`). Numbers below the floor cost one comparison.
#[inline]
pub(crate) fn is_internal(fd: i32) -> bool {
    let f = FLOOR.load(Ordering::Relaxed);
    if f == 0 || fd < f {
        return false;
    }
    let i = (fd - f) as usize;
    i < SPAN && BITS[i / 64].load(Ordering::Relaxed) & (1u64 << (i % 64)) != 0
}

/// In a fork child: the parent's descriptors of uaio's are closed (the
/// child inherits no context, as with the kernel) and the record starts
/// empty. Only async-signal-safe calls.
pub(crate) fn after_fork_in_child() {
    let f = FLOOR.load(Ordering::Relaxed);
    for (w, word) in BITS.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::SeqCst);
        while bits != 0 {
            let b = bits.trailing_zeros() as i32;
            bits &= bits - 1;
            // SAFETY: closing the child's copy of a descriptor that was
            // uaio's in the parent; nothing in the child refers to it.
            unsafe { libc::close(f + w as i32 * 64 + b) };
        }
    }
    COUNT.store(0, Ordering::SeqCst);
    FLOOR.store(0, Ordering::Relaxed);
}

/// Whether uaio may open one more descriptor of its own: it keeps to a
/// quarter of the soft `RLIMIT_NOFILE`, and takes none while the
/// program's next descriptor (the lowest free number, found by
/// duplicating `any`) is past half the limit, so that a program short
/// of descriptors never loses one to uaio.
pub(crate) fn room_for_one_more(any: BorrowedFd<'_>) -> bool {
    let limit = soft_limit();
    if COUNT.load(Ordering::SeqCst) >= (limit / 4).max(1) {
        return false;
    }
    // SAFETY: F_DUPFD_CLOEXEC of a valid descriptor; the duplicate is
    // closed at once.
    let low = unsafe { libc::fcntl(any.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if low < 0 {
        return false;
    }
    // SAFETY: closing the duplicate just made.
    unsafe { libc::close(low) };
    (low as usize) < limit / 2
}
