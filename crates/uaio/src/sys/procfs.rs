//! The `/proc` and `/sys` files uaio reads (dirty-page counts and limits,
//! `aio-max-nr`, the possible CPUs, the mount table, the file locks), each opened once per
//! process and kept at a high descriptor number, then read again from
//! offset 0 whenever needed (their contents are made afresh at each read).
//!
//! Opening such a file inside a call would take the lowest free number
//! for a moment: a thread of the program that closes and reuses numbers
//! (a descriptor it owns, or one it believes it owns) could then have uaio
//! read its pipe or eventfd, and wait on it for ever. Only the first read
//! of each file opens it, and the number is moved above uaio's floor at
//! once. The table of numbers is lock-free (a `fork` child, whose copies
//! of uaio's descriptors are closed, empties it with atomic stores).

use std::os::fd::{AsFd, AsRawFd, IntoRawFd};

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::internal_fds::InternalFd;

/// A file uaio reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProcFile {
    /// `/proc/meminfo`.
    Meminfo,
    /// `/proc/sys/vm/dirty_bytes`.
    DirtyBytes,
    /// `/proc/sys/vm/dirty_ratio`.
    DirtyRatio,
    /// `/proc/sys/vm/dirty_background_bytes`.
    DirtyBackgroundBytes,
    /// `/proc/sys/vm/dirty_background_ratio`.
    DirtyBackgroundRatio,
    /// `/proc/sys/fs/aio-max-nr`.
    AioMaxNr,
    /// `/sys/devices/system/cpu/possible`.
    CpuPossible,
    /// `/proc/self/mountinfo`.
    Mountinfo,
    /// `/proc/locks` (opened only once a program's duplicate may hold one
    /// of its record locks, see `internal_fds`).
    Locks,
}

const COUNT: usize = 9;

impl ProcFile {
    fn path(self) -> &'static str {
        match self {
            ProcFile::Meminfo => "/proc/meminfo",
            ProcFile::DirtyBytes => "/proc/sys/vm/dirty_bytes",
            ProcFile::DirtyRatio => "/proc/sys/vm/dirty_ratio",
            ProcFile::DirtyBackgroundBytes => "/proc/sys/vm/dirty_background_bytes",
            ProcFile::DirtyBackgroundRatio => "/proc/sys/vm/dirty_background_ratio",
            ProcFile::AioMaxNr => "/proc/sys/fs/aio-max-nr",
            ProcFile::CpuPossible => "/sys/devices/system/cpu/possible",
            ProcFile::Mountinfo => "/proc/self/mountinfo",
            ProcFile::Locks => "/proc/locks",
        }
    }
}

/// The numbers of the files opened so far (-1: not yet).
static FDS: [AtomicI32; COUNT] = [const { AtomicI32::new(-1) }; COUNT];

/// The device and inode of each file, recorded before its number is
/// published in [`FDS`] (every opening of a path finds the same file).
static IDS: [[AtomicU64; 2]; COUNT] = [const { [const { AtomicU64::new(0) }; 2] }; COUNT];

/// uaio's descriptor for `f`, opened on first use; `None` if it cannot be
/// opened (or no number is left above the floor).
fn fd(f: ProcFile) -> Option<i32> {
    let slot = &FDS[f as usize];
    let known = slot.load(Ordering::Acquire);
    if known >= 0 {
        return Some(known);
    }
    let high = open_high(f.path())?;
    let (dev, ino) = high.ident().unwrap_or_default();
    IDS[f as usize][0].store(dev, Ordering::Release);
    IDS[f as usize][1].store(ino, Ordering::Release);
    match slot.compare_exchange(-1, high.as_raw_fd(), Ordering::AcqRel, Ordering::Acquire) {
        // Kept for the life of the process.
        Ok(_) => Some(high.into_permanent().into_raw_fd()),
        // Another thread opened it first: ours goes.
        Err(other) => Some(other),
    }
}

/// Opens `path` and moves the descriptor above the floor. The low number
/// it has for a moment is never owned by a Rust value: a program thread
/// may close it behind uaio's back (and open something else there), so it
/// is closed with errors ignored, and the duplicate is checked to be the
/// file at `path` (same device and inode) before it is used.
fn open_high(path: &str) -> Option<InternalFd> {
    let c = std::ffi::CString::new(path).ok()?;
    for _ in 0..3 {
        // The low number is moved and closed before the program may close
        // or reuse it (see `making`).
        let high = super::internal_fds::making(|| {
            // Without waiting: where /proc or /sys is not what it should be
            // (a mount namespace may put anything there), a FIFO at the
            // path would block the open until some writer came (it then
            // fails the read instead: a FIFO has no position).
            // SAFETY: open(2) of a NUL-terminated path.
            let low = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) };
            if low < 0 {
                return None;
            }
            let high = InternalFd::dup_of_number(low);
            // The number open(2) gave (a program that closes numbers
            // through the C library's close waits for this).
            super::close_own(low);
            Some(high)
        });
        let Some(Ok(high)) = high else { return None };
        if same_file(&high, &c) {
            return Some(high);
        }
    }
    None
}

/// Whether `fd` is the file at `path`.
fn same_file(fd: &InternalFd, path: &std::ffi::CStr) -> bool {
    let a = rustix::fs::fstat(fd);
    let b = rustix::fs::stat(path);
    matches!((a, b), (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// How many of the files are open now (descriptors uaio keeps for the
/// life of the process).
pub(crate) fn open_count() -> usize {
    FDS.iter().filter(|f| f.load(Ordering::Relaxed) >= 0).count()
}

/// In a `fork` child, after uaio's descriptors were closed there
/// (`internal_fds::after_fork_in_child`): the files are opened again on
/// first use. Only atomic stores.
pub(crate) fn after_fork_in_child() {
    for f in &FDS {
        f.store(-1, Ordering::Relaxed);
    }
}

/// The contents of `f` now (`None` if it cannot be read). The number is
/// checked to name the file still (one `statx`): a program may close it
/// behind uaio's back (a raw system call, which uaio cannot refuse), and
/// the number may then name another file, even one of uaio's own (it read
/// `aio-max-nr` from a `dirty_*` file and refused every `io_setup`). Such a
/// number is let go, not closed, and the file opened again.
pub(crate) fn read(f: ProcFile) -> Option<String> {
    for _ in 0..2 {
        let fd = fd(f)?;
        let id = (IDS[f as usize][0].load(Ordering::Acquire), IDS[f as usize][1].load(Ordering::Acquire));
        if super::file_stat(fd).is_some_and(|st| st.ident() == id) {
            // SAFETY: uaio's own descriptor, open for the life of the
            // process, and the file it was opened for (just checked).
            return read_all(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        }
        if FDS[f as usize].compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            super::internal_fds::lost_permanent(fd);
        }
    }
    None
}

/// The contents of the file at `path`, opened for this read only (above
/// uaio's floor, like the others) and closed after it; `None` if it cannot
/// be opened or read.
pub(crate) fn read_path(path: &str) -> Option<String> {
    let fd = open_high(path)?;
    read_all(fd.as_fd())
}

/// What `fd` holds from offset 0 to its end.
fn read_all(fd: std::os::fd::BorrowedFd<'_>) -> Option<String> {
    // Read straight into the result: a buffer on the stack would add 4 KiB
    // to the stack a program's call into uaio needs (its thread may have a
    // small one, or be a signal handler on an alternate stack).
    const CHUNK: usize = 4096;
    let mut out = Vec::new();
    loop {
        let len = out.len();
        out.resize(len + CHUNK, 0);
        match rustix::io::pread(fd, &mut out[len..], len as u64) {
            Ok(0) => {
                out.truncate(len);
                break;
            }
            Ok(n) => out.truncate(len + n),
            Err(rustix::io::Errno::INTR) => out.truncate(len),
            Err(_) => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_afresh_through_one_high_descriptor() {
        let a = read(ProcFile::Meminfo).expect("/proc/meminfo");
        assert!(a.contains("\nDirty: "), "{a}");
        let first = FDS[ProcFile::Meminfo as usize].load(Ordering::SeqCst);
        assert!(super::super::internal_fds::is_internal(first), "descriptor {first} is not above the floor");
        let b = read(ProcFile::Meminfo).expect("again");
        assert!(b.contains("\nDirty: "));
        assert_eq!(FDS[ProcFile::Meminfo as usize].load(Ordering::SeqCst), first, "opened twice");
        let n: u64 = read(ProcFile::AioMaxNr).expect("aio-max-nr").trim().parse().expect("a number");
        assert!(n > 0);
    }

    #[test]
    fn a_fifo_in_place_of_a_file_is_unreadable_not_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aio-max-nr");
        let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
        // SAFETY: mkfifo(3) of a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_str().expect("utf-8").to_owned();
        std::thread::spawn(move || tx.send(read_path(&p)));
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(r) => assert_eq!(r, None),
            Err(_) => panic!("read_path of a FIFO with no writer still waits after 10 s"),
        }
    }
}
