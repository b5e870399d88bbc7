//! Small system helpers: file descriptor facts (`fdinfo`, `direct_hint`,
//! `remembered`),
//! uaio's own descriptors (`internal_fds`), signal masks (`signals`), the
//! program's signals held back inside uaio's calls (`deferral`), values
//! a thread keeps between calls (`spare`) and the system calls made directly
//! (`syscall`).
//!
//! Everything here goes through rustix's raw system calls or C library
//! functions that do not route through `syscall()`.

use std::os::fd::BorrowedFd;

pub(crate) mod deferral;
pub(crate) mod direct_hint;
pub(crate) mod fdinfo;
mod filestat;
pub(crate) mod internal_fds;
pub(crate) mod mmap;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod remembered;
mod signals;
pub(crate) mod spare;
mod syscall;
pub(crate) mod waiting;

pub(crate) use fdinfo::FdInfo;
pub(crate) use filestat::{file_stat, FileStat};
pub(crate) use signals::*;
pub(crate) use syscall::*;

/// Mode bits of an anonymous inode (eventfd, epoll, timerfd, ...): no type.
const S_IFMT: u32 = 0o170000;

/// Whether `fd` is a socket.
fn is_socket(fd: i32) -> bool {
    file_stat(fd).is_some_and(|st| st.kind() == libc::S_IFSOCK)
}

/// Whether `fd` is an eventfd: an anonymous inode (no file type bits) that
/// procfs names `anon_inode:[eventfd]`, or, where procfs cannot tell, that
/// takes an 8-byte write (adding 0 changes nothing). By name first: a
/// program that put one of its files under the number between the two
/// looks (a raw `dup2` onto a number of uaio's) would have had the write's
/// 8 bytes land in that file.
pub(crate) fn is_eventfd(fd: i32) -> bool {
    if file_stat(fd).is_none_or(|st| st.kind() != 0) {
        return false;
    }
    if let Ok(name) = rustix::fs::readlink(format!("/proc/self/fd/{fd}"), Vec::new()) {
        return name.as_bytes() == b"anon_inode:[eventfd]";
    }
    // SAFETY: an 8-byte write from a local buffer, to an anonymous inode.
    unsafe { libc::write(fd, 0u64.to_ne_bytes().as_ptr().cast(), 8) == 8 }
}

/// The coarse monotonic clock in nanoseconds: a vDSO read that moves once
/// per clock tick (a few milliseconds), for checks done at most once a tick.
pub(crate) fn coarse_clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec (a vDSO call).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Signals an eventfd `n` times (adds `n` to its counter), unless its
/// counter is at its maximum. A write that would pass the maximum waits,
/// on an eventfd without `O_NONBLOCK`, until the program reads it (and
/// `RWF_NOWAIT` is refused there), where the kernel's signal saturates the
/// counter and returns: so the write is made only when a poll shows room
/// for one more. (A write of several counts within that many of the
/// maximum can still wait; only a program that wrote such a value itself
/// gets there.)
pub(crate) fn eventfd_add(fd: i32, n: u64) {
    use rustix::event::{poll, PollFd, PollFlags};
    // SAFETY: the descriptor was validated at submission; if the application
    // closed it since, the calls fail harmlessly (or hit whatever took the
    // number, exactly as with a stale eventfd in the kernel's case it cannot).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut p = [PollFd::new(&fd, PollFlags::OUT)];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    if poll(&mut p, Some(&zero)) == Ok(1) && p[0].revents().contains(PollFlags::OUT) {
        let _ = rustix::io::write(fd, &n.to_ne_bytes());
    }
}

/// Adds 1 to one of uaio's own eventfds, unless its number now names a
/// file of another kind: a program that put one of its files on uaio's
/// number (`dup2`) must not receive the 8 bytes.
pub(crate) fn signal_own_eventfd(fd: BorrowedFd<'_>) {
    if file_stat(std::os::fd::AsRawFd::as_raw_fd(&fd)).is_some_and(|st| st.kind() == 0) {
        let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
    }
}

/// The calling thread holds `CAP_SYS_ADMIN` or `CAP_SYS_NICE` (effective).
pub(crate) fn can_use_rt_ioprio() -> bool {
    use rustix::thread::CapabilitySet;
    match rustix::thread::capabilities(None) {
        Ok(c) => c.effective.intersects(CapabilitySet::SYS_ADMIN | CapabilitySet::SYS_NICE),
        Err(_) => false,
    }
}

/// The size of the file `fd` names (`None` if it is not open).
pub(crate) fn file_size(fd: i32) -> Option<u64> {
    file_stat(fd).map(|st| st.size)
}

/// The process's `RLIMIT_FSIZE` soft limit in bytes (`None`: unlimited).
pub(crate) fn file_size_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Fsize).current
}

/// [`file_size_limit`] as this thread last asked it in this coarse clock
/// tick (asked again otherwise): for a first, free question whose
/// positive answers are checked with [`file_size_limit`].
pub(crate) fn recent_file_size_limit() -> Option<u64> {
    use std::cell::Cell;
    std::thread_local! {
        static LAST: Cell<(u64, Option<u64>)> = const { Cell::new((u64::MAX, None)) };
    }
    let tick = coarse_clock_ns();
    match LAST.try_with(Cell::get) {
        Ok((t, limit)) if t == tick => limit,
        _ => {
            let limit = file_size_limit();
            let _ = LAST.try_with(|c| c.set((tick, limit)));
            limit
        }
    }
}

/// The system's swap space in bytes (`sysinfo`), `None` if the call fails.
pub(crate) fn total_swap() -> Option<u64> {
    // SAFETY: sysinfo(2) fills the zeroed struct it is given.
    let si = unsafe {
        let mut si: libc::sysinfo = core::mem::zeroed();
        (libc::sysinfo(&mut si) == 0).then_some(si)?
    };
    Some((si.totalswap as u64).saturating_mul(si.mem_unit.max(1) as u64))
}

/// Appends `bytes` to the file at `path` (created if needed), in one
/// `write`, errors ignored. The descriptor is never owned by a Rust value:
/// a program thread may close its number behind uaio's back.
pub(crate) fn append_to(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return };
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return;
    }
    // SAFETY: a write from a live buffer, then the close of the number
    // open(2) gave (errors ignored).
    unsafe {
        libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
    }
}

/// Whether `fd` is ready for the poll events of `mask` (or has an error or
/// a hangup) now, without waiting.
pub(crate) fn ready_now(fd: i32, mask: u32) -> bool {
    let wanted = mask | (libc::POLLERR | libc::POLLHUP) as u32;
    let mut pfd = libc::pollfd { fd, events: wanted as i16, revents: 0 };
    // SAFETY: poll(2) of one pollfd, without waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && (pfd.revents as u16 as u32) & wanted != 0
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// An eventfd is one; other anonymous inodes, a pipe and a regular
    /// file are not, and telling leaves the eventfd's counter as it was.
    #[test]
    fn is_eventfd_tells_eventfds_from_other_files() {
        let efd = rustix::event::eventfd(5, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
        assert!(super::is_eventfd(efd.as_raw_fd()));
        let mut count = [0u8; 8];
        assert_eq!(rustix::io::read(&efd, &mut count), Ok(8));
        assert_eq!(u64::from_ne_bytes(count), 5, "the counter changed");
        let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).expect("epoll");
        assert!(!super::is_eventfd(epoll.as_raw_fd()));
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        assert!(!super::is_eventfd(r.as_raw_fd()) && !super::is_eventfd(w.as_raw_fd()));
        let file = tempfile::tempfile().expect("file");
        assert!(!super::is_eventfd(file.as_raw_fd()));
        assert_eq!(file.metadata().expect("stat").len(), 0, "the file was written");
        drop(efd);
    }
}
