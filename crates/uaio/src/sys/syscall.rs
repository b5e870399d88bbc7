//! System calls made directly (not through the C library's wrappers, which
//! are cancellation points, nor through `syscall()`, which uaio's drop-in
//! library interposes): `preadv2`/`pwritev2`, `kcmp`, `ioprio_get`/`set`,
//! `close` of uaio's own descriptors, `F_GETFL`;
//! and whether two descriptors name one open file.

use super::is_socket;

#[cfg(target_arch = "x86_64")]
fn raw_syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    raw_syscall5(nr, a, b, c, 0, 0)
}

/// One `preadv2`/`pwritev2` system call; `-errno` on failure.
#[cfg(target_arch = "x86_64")]
fn prwv2_once(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> i64 {
    // SAFETY: every caller passes an array of uaio's own (copied from the
    // application at submission, or built on uaio's stack), read here only
    // when it has exactly one element.
    let (base, len) = if n == 1 { unsafe { ((*iov).iov_base, (*iov).iov_len) } } else { (0, 0) };
    // Where a write lands does not matter when it moves nothing.
    let placement = uaio_abi::RWF_APPEND | uaio_abi::RWF_NOAPPEND;
    if n <= 1 && off >= 0 && (flags == 0 || (len == 0 && flags & !placement == 0)) {
        // One buffer or none, no flag, a position: `pread64`/`pwrite64` do
        // the same transfer as the vectored calls, and the kernel skips
        // copying and importing an iovec array (about 2% of a cached 4 KiB
        // write). They also hand an empty transfer to the file, as kernel
        // AIO does (ext4 refuses even an empty write to an immutable
        // inode), where the vectored calls answer 0 without asking it.
        let nr = if write { libc::SYS_pwrite64 } else { libc::SYS_pread64 };
        return raw_syscall6(nr as usize, fd as usize, base as usize, len as usize, off as usize, 0, 0) as i64;
    }
    let nr = if write { libc::SYS_pwritev2 } else { libc::SYS_preadv2 };
    // The position goes in two halves; on 64-bit the low one holds it all
    // and the high one is ignored (-1, "no position", fits as it is). The
    // iovecs and their buffers were validated by the caller; the kernel
    // reports unmapped ones as EFAULT.
    raw_syscall6(nr as usize, fd as usize, iov as usize, n, off as usize, 0, flags as usize) as i64
}

/// One `preadv2`/`pwritev2` call through the C library; `-errno` on failure.
#[cfg(not(target_arch = "x86_64"))]
fn prwv2_once(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> i64 {
    // SAFETY: the iovecs were validated against the user address range;
    // the kernel reports unmapped buffers as EFAULT.
    let r = unsafe {
        if write {
            libc::pwritev2(fd, iov.cast(), n as i32, off, flags as i32)
        } else {
            libc::preadv2(fd, iov.cast(), n as i32, off, flags as i32)
        }
    };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
    } else {
        r as i64
    }
}

/// A system call with six arguments that may name memory the kernel reads
/// or writes (the caller vouches for it), returning `-errno` on failure.
#[cfg(target_arch = "x86_64")]
fn raw_syscall6(nr: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction with the x86-64 Linux convention.
    // Memory named by the arguments is the caller's to hand over (the asm
    // is not marked `nomem`, so the compiler assumes it is read and
    // written).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            in("r9") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// [`raw_syscall6`] with five arguments. It avoids the C library's
/// `syscall()`, which the drop-in library wraps.
#[cfg(target_arch = "x86_64")]
fn raw_syscall5(nr: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    raw_syscall6(nr, a, b, c, d, e, 0)
}

/// `F_GETFL` of a descriptor number, made directly: negative (`-errno`)
/// when it is not open. Through the C library it reached the drop-in
/// library's own `fcntl` first (which looks for `F_SETFL`), then the C
/// library's: about 160 instructions around a system call that every
/// `O_DIRECT` or buffered-write `io_submit` makes.
#[cfg(target_arch = "x86_64")]
pub(crate) fn status_flags(fd: i32) -> i32 {
    raw_syscall3(libc::SYS_fcntl as usize, fd as usize, libc::F_GETFL as usize, 0) as i32
}

/// `F_GETFL` of a descriptor number through the C library (negative when
/// it is not open).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn status_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL on a descriptor number; a closed one just fails.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

/// A system call about signals (`rt_sigprocmask`, `rt_sigaction`,
/// `rt_tgsigqueueinfo`) with four arguments, made directly: it runs inside
/// signal handlers, where the C library's `syscall()` (which the drop-in
/// wraps) is best avoided. Returns `-errno` on failure.
#[cfg(target_arch = "x86_64")]
pub(crate) fn signal_syscall(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    raw_syscall6(nr as usize, a, b, c, d, 0, 0)
}

/// Closes a descriptor of uaio's own (one it made, or a number it opened
/// and no longer needs). Made directly: through the C library's `close`,
/// which the drop-in library interposes, it would count as a close of the
/// program's and make every thread look at its files again
/// (`remembered`), although no number of the program's changed.
#[cfg(target_arch = "x86_64")]
pub(crate) fn close_own(fd: i32) {
    raw_syscall3(libc::SYS_close as usize, fd as usize, 0, 0);
}

/// [`close_own`] through the C library.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn close_own(fd: i32) {
    // SAFETY: closing a number the caller owns.
    unsafe { libc::close(fd) };
}

/// `cachestat` of `[off, off + len)` of `fd` (Linux 6.5 and later): pages
/// in the page cache, dirty, under writeback, evicted, recently evicted;
/// `None` where the call is missing or refused. It reads no page.
#[cfg(target_arch = "x86_64")]
pub(crate) fn cachestat(fd: i32, off: u64, len: u64) -> Option<[u64; 5]> {
    /// `SYS_cachestat` on x86-64.
    const CACHESTAT: usize = 451;
    let range = [off, len];
    let mut out = [0u64; 5];
    let r = raw_syscall6(CACHESTAT, fd as usize, range.as_ptr() as usize, out.as_mut_ptr() as usize, 0, 0, 0);
    (r == 0).then_some(out)
}

/// `cachestat` is not made on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn cachestat(_fd: i32, _off: u64, _len: u64) -> Option<[u64; 5]> {
    None
}

/// How many pages of `[off, off + len)` of `fd` are in the page cache
/// (`None` where `cachestat` is missing), found without reading any, for
/// tests.
#[cfg(test)]
pub(crate) fn cached_pages(fd: i32, off: u64, len: u64) -> Option<u64> {
    cachestat(fd, off, len).map(|c| c[0])
}

/// `fcntl` command asking whether two descriptors name the same open file
/// (Linux 6.10 and later).
const F_DUPFD_QUERY: i32 = 1027;

/// Whether `F_DUPFD_QUERY` is known to work (1), known not to (2), or not
/// tried yet (0).
static DUPFD_QUERY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether descriptors `a` and `b` of this process name the same open file.
/// `fcntl(F_DUPFD_QUERY)` tells it for the price of an `fcntl`, and no
/// seccomp profile that allows `fcntl` refuses it; before Linux 6.10 (the
/// command is then `EINVAL`) `kcmp(KCMP_FILE)` does, several times slower,
/// and refused by Docker's default profile (then the answer is false:
/// not known to be the same).
pub(crate) fn same_open_file(a: i32, b: i32) -> bool {
    use std::sync::atomic::Ordering;
    if DUPFD_QUERY.load(Ordering::Relaxed) != 2 {
        // SAFETY: fcntl on descriptor numbers, no memory involved; a closed
        // one gives EBADF.
        let r = unsafe { libc::fcntl(a, F_DUPFD_QUERY, b) };
        if r >= 0 {
            DUPFD_QUERY.store(1, Ordering::Relaxed);
            return r == 1;
        }
        let unknown = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
        if !unknown || DUPFD_QUERY.load(Ordering::Relaxed) == 1 {
            // One of them is not open (or the command works and the
            // kernel said no for another reason): not the same file.
            return false;
        }
        DUPFD_QUERY.store(2, Ordering::Relaxed);
    }
    same_open_file_kcmp(a, b)
}

/// [`same_open_file`] by `kcmp(KCMP_FILE)`; false when that cannot be told
/// (no kcmp here, or a seccomp filter refuses it).
#[cfg(target_arch = "x86_64")]
fn same_open_file_kcmp(a: i32, b: i32) -> bool {
    const SYS_KCMP: usize = 312;
    const KCMP_FILE: usize = 0;
    let pid = rustix::process::getpid().as_raw_nonzero().get() as usize;
    raw_syscall5(SYS_KCMP, pid, pid, KCMP_FILE, a as usize, b as usize) == 0
}

/// Whether two descriptors name the same open file (not known on this
/// architecture without `F_DUPFD_QUERY`: never).
#[cfg(not(target_arch = "x86_64"))]
fn same_open_file_kcmp(_a: i32, _b: i32) -> bool {
    false
}

/// For a read or write prepared while the open file of `fd` had no
/// `O_DIRECT`, that failed with `EINVAL` because the program has set
/// `O_DIRECT` on that open file since (`F_SETFL`): a new open file of the
/// same file (`/proc/self/fd/N`, checked to be `ident`), without
/// `O_DIRECT`, for the request to run on as the kernel ran it (which fixed
/// the request's mode at submission and copied a buffered write at once).
/// `None` when `fd` has no `O_DIRECT` now, or the file cannot be opened
/// again (its permissions changed, the number was closed or reused).
pub(crate) fn buffered_again(fd: i32, write: bool, ident: (u64, u64)) -> Option<super::internal_fds::InternalFd> {
    let flags = status_flags(fd);
    if flags < 0 || flags & libc::O_DIRECT == 0 {
        return None;
    }
    let keep = flags & (libc::O_DSYNC | libc::O_SYNC | libc::O_NOATIME);
    let mode = if write { libc::O_WRONLY } else { libc::O_RDONLY };
    let how = rustix::fs::OFlags::from_bits_retain((mode | keep | libc::O_CLOEXEC) as u32);
    let path = format!("/proc/self/fd/{fd}");
    let again =
        super::internal_fds::InternalFd::make(|| rustix::fs::open(path.as_str(), how, rustix::fs::Mode::empty()))
            .ok()?;
    (super::file_stat(std::os::fd::AsRawFd::as_raw_fd(&again))?.ident() == ident).then_some(again)
}

/// Whether the process `other` shares the calling process's memory, by
/// `kcmp(KCMP_VM)`; `None` when that cannot be told (no kcmp here, a
/// seccomp filter, or no permission to compare the two).
#[cfg(target_arch = "x86_64")]
pub(crate) fn kcmp_memory(other: i32) -> Option<bool> {
    const SYS_KCMP: usize = 312;
    const KCMP_VM: usize = 1;
    let pid = rustix::process::getpid().as_raw_nonzero().get() as usize;
    let r = raw_syscall5(SYS_KCMP, pid, other as usize, KCMP_VM, 0, 0);
    (r >= 0).then_some(r == 0)
}

/// Whether the process `other` shares the calling process's memory (not
/// told by kcmp on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn kcmp_memory(_other: i32) -> Option<bool> {
    None
}

const IOPRIO_WHO_PROCESS: usize = 1;

/// The calling thread's I/O priority.
#[cfg(target_arch = "x86_64")]
pub(crate) fn ioprio_get_thread() -> i32 {
    raw_syscall3(252, IOPRIO_WHO_PROCESS, 0, 0).max(0) as i32
}

/// Sets the calling thread's I/O priority (errors ignored: best effort).
#[cfg(target_arch = "x86_64")]
pub(crate) fn ioprio_set_thread(prio: i32) {
    let _ = raw_syscall3(251, IOPRIO_WHO_PROCESS, 0, prio as usize);
}

/// The calling thread's I/O priority (not available on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn ioprio_get_thread() -> i32 {
    0
}

/// No-op on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn ioprio_set_thread(_prio: i32) {}

/// `preadv2(2)` into an array of `n` iovecs (uaio's iovec layout is the C
/// one); a stream (pipe, socket) has no position, so `ESPIPE` is retried at
/// position -1. Returns the byte count or `-errno`, and whether the file is
/// a stream (where reads consume data, so any count is final).
pub(crate) fn preadv2(fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> (i64, bool) {
    prwv2(false, fd, iov, n, off, flags)
}

/// A one-byte read at `off` of `fd` into `into`, with `flags`, made to
/// learn something of the file (a page cached, a flag taken, a buffer
/// byte writable): `-errno` on failure. Only ever positional: where the
/// number names a pipe or a socket after all (a look kept from an earlier
/// call, the number changed by a system call the drop-in library could
/// not see), `-ESPIPE`, never a read that takes the stream's byte, as
/// [`preadv2`]'s second try without a position would.
pub(crate) fn probe_read(fd: i32, into: *mut u8, off: i64, flags: u32) -> i64 {
    let one = uaio_abi::iovec { iov_base: into as u64, iov_len: 1 };
    prwv2_once(false, fd, &one, 1, off, flags)
}

/// Whether a read with `flags` into the `n` iovecs at `iov` that moved
/// `done` bytes from `off` of `fd` (fewer than asked, before the end of the
/// file) stopped at a place of the buffer it could not write, rather than
/// at a page missing from the page cache: a one-byte read of the next byte
/// of the file into the next byte of the buffer fails with `EFAULT` only
/// then (the page cache is looked at before the copy: an `RWF_NOWAIT` read
/// of a missing page answers `EAGAIN`, whatever the buffer). The kernel's
/// answer to such a read is the bytes before the fault.
pub(crate) fn read_stopped_by_fault(
    fd: i32,
    iov: *const uaio_abi::iovec,
    n: usize,
    off: u64,
    done: u64,
    flags: u32,
) -> bool {
    // SAFETY: the caller's array of `n` iovecs (a request's own, validated
    // at submission), alive for the call.
    let v = unsafe { std::slice::from_raw_parts(iov, n) };
    let mut left = done;
    for e in v {
        if left < e.iov_len {
            let into = e.iov_base.wrapping_add(left) as *mut u8;
            return probe_read(fd, into, off.saturating_add(done) as i64, flags) == -(libc::EFAULT as i64);
        }
        left -= e.iov_len;
    }
    false
}

/// `fdatasync(2)` (`data`) or `fsync(2)` of `fd`, blocking: 0 or `-errno`.
pub(crate) fn sync_file(fd: i32, data: bool) -> i32 {
    // SAFETY: plain fsync/fdatasync on a descriptor number.
    let r = unsafe {
        if data {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    };
    if r < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    } else {
        0
    }
}

/// Whether the kernel takes `RWF_NOAPPEND` (Linux 6.9 and later), told
/// once by its release number. Not by trying a write with the flag: that
/// write goes through a descriptor number, which a program that takes over
/// uaio's numbers with raw `dup2` calls may have put one of its files under
/// (the probe's byte then landed at the start of the program's file).
pub(crate) fn noappend_supported() -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KNOWN.get_or_init(|| kernel_release().is_some_and(|v| v >= (6, 9)))
}

/// The running kernel's major and minor version, from `uname(2)`.
fn kernel_release() -> Option<(u32, u32)> {
    // SAFETY: uname fills the zeroed structure it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `u` is a live, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let release: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let mut parts = release.split(|&c| c == b'.').map(|p| {
        let digits: Vec<u8> = p.iter().copied().take_while(u8::is_ascii_digit).collect();
        std::str::from_utf8(&digits).ok()?.parse::<u32>().ok()
    });
    Some((parts.next()??, parts.next()??))
}

/// `preadv2(2)` or `pwritev2(2)`, as [`preadv2`]. Made directly: the C
/// library's wrappers are cancellation points, whose bookkeeping around
/// the call costs as much as a tenth of a cached 4 KiB read. `iov` is an
/// array of uaio's own (it may be read here), whose buffers were checked.
pub(crate) fn prwv2(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> (i64, bool) {
    let call = |off: i64| prwv2_once(write, fd, iov, n, off, flags);
    match call(off) {
        // A socket's read_iter and write_iter refuse a position; a pipe's
        // ignore it.
        r if r == -(libc::ESPIPE as i64) && off != 0 && is_socket(fd) => (r, true),
        r if r == -(libc::ESPIPE as i64) && write && moves_nothing(iov, n) && is_socket(fd) => {
            (empty_send(fd, flags), true)
        }
        r if r == -(libc::ESPIPE as i64) => (call(-1), true),
        r => (r, false),
    }
}

/// Whether the `n` iovecs at `iov` (uaio's own array) hold no byte.
fn moves_nothing(iov: *const uaio_abi::iovec, n: usize) -> bool {
    if n == 0 {
        return true;
    }
    // SAFETY: the caller's array of `n` iovecs, alive for the call.
    unsafe { std::slice::from_raw_parts(iov, n) }.iter().all(|e| e.iov_len == 0)
}

/// An empty write of a socket, as the kernel's AIO hands it to the
/// socket's `write_iter`: a datagram socket sends an empty datagram, which
/// `pwritev2` never does (the vectored calls answer 0 for an empty
/// transfer without asking the file). `RWF_NOWAIT` and `RWF_NOSIGNAL` as
/// their `send` flags. Returns 0 or `-errno`.
fn empty_send(fd: i32, flags: u32) -> i64 {
    let mut msg_flags = 0;
    if flags & uaio_abi::RWF_NOWAIT != 0 {
        msg_flags |= libc::MSG_DONTWAIT;
    }
    if flags & uaio_abi::RWF_NOSIGNAL != 0 {
        msg_flags |= libc::MSG_NOSIGNAL;
    }
    sendto_empty(fd, msg_flags)
}

#[cfg(target_arch = "x86_64")]
fn sendto_empty(fd: i32, msg_flags: i32) -> i64 {
    raw_syscall6(libc::SYS_sendto as usize, fd as usize, 0, 0, msg_flags as usize, 0, 0) as i64
}

#[cfg(not(target_arch = "x86_64"))]
fn sendto_empty(fd: i32, msg_flags: i32) -> i64 {
    // SAFETY: an empty send names no memory.
    let r = unsafe { libc::send(fd, std::ptr::null(), 0, msg_flags) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
    } else {
        r as i64
    }
}

/// Kernel AIO, made directly (the drop-in library interposes `syscall()`
/// and libaio's entry points): the thread pool's direct lane
/// (`backend/threads/lane.rs`) hands `O_DIRECT` requests to one kernel
/// context of its own. Each returns the kernel's value or `-errno`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod kernel_aio {
    use super::{raw_syscall3, raw_syscall5};

    const SETUP: usize = 206;
    const DESTROY: usize = 207;
    const GETEVENTS: usize = 208;
    const SUBMIT: usize = 209;

    /// `io_setup(nr)`: a new context, or `-errno`.
    pub(crate) fn setup(nr: u32) -> Result<u64, i32> {
        let mut ctx = 0u64;
        let r = raw_syscall3(SETUP, nr as usize, &mut ctx as *mut u64 as usize, 0);
        if r < 0 {
            Err(-r as i32)
        } else {
            Ok(ctx)
        }
    }

    /// `io_destroy(ctx)`: waits for the context's requests.
    pub(crate) fn destroy(ctx: u64) {
        let _ = raw_syscall3(DESTROY, ctx as usize, 0, 0);
    }

    /// `io_submit` of the iocbs `iocbs` points to; how many were taken,
    /// or `-errno` when the first was refused. The iocbs (copied by the
    /// kernel during the call) and the buffers they name are the caller's
    /// to hand over.
    pub(crate) fn submit(ctx: u64, iocbs: &[*const uaio_abi::iocb]) -> isize {
        raw_syscall3(SUBMIT, ctx as usize, iocbs.len(), iocbs.as_ptr() as usize)
    }

    /// `io_getevents(ctx, min, events.len(), events, timeout)`.
    pub(crate) fn getevents(
        ctx: u64,
        min: usize,
        events: &mut [uaio_abi::io_event],
        timeout: std::time::Duration,
    ) -> isize {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as i64 };
        raw_syscall5(GETEVENTS, ctx as usize, min, events.len(), events.as_mut_ptr() as usize, &ts as *const _ as usize)
    }
}

/// Kernel AIO is not made directly on this architecture: the lane is off.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod kernel_aio {
    /// Refused.
    pub(crate) fn setup(_nr: u32) -> Result<u64, i32> {
        Err(libc::ENOSYS)
    }

    /// Nothing to destroy.
    pub(crate) fn destroy(_ctx: u64) {}

    /// Refused.
    pub(crate) fn submit(_ctx: u64, _iocbs: &[*const uaio_abi::iocb]) -> isize {
        -(libc::ENOSYS as isize)
    }

    /// Refused.
    pub(crate) fn getevents(
        _ctx: u64,
        _min: usize,
        _events: &mut [uaio_abi::io_event],
        _timeout: std::time::Duration,
    ) -> isize {
        -(libc::ENOSYS as isize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Both ways of telling (`F_DUPFD_QUERY`, and `kcmp` where this
    /// process may use it) agree: a duplicate names the same open file, a
    /// second `open` of the same path does not, a closed number names none.
    #[test]
    fn same_open_file_tells_duplicates_from_other_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let a = std::fs::File::create(&path).expect("create");
        let dup = a.try_clone().expect("dup");
        let other = std::fs::File::open(&path).expect("open again");
        let (a, d, o) = (a.as_raw_fd(), dup.as_raw_fd(), other.as_raw_fd());
        assert!(same_open_file(a, d));
        assert!(same_open_file(d, a));
        assert!(!same_open_file(a, o));
        let kcmp_works = same_open_file_kcmp(a, d);
        if kcmp_works {
            assert!(!same_open_file_kcmp(a, o));
        } else {
            eprintln!("kcmp refused here (seccomp?): only F_DUPFD_QUERY checked");
        }
        let closed = d;
        drop(dup);
        assert!(!same_open_file(a, closed), "a closed number names no file");
        assert!(!same_open_file(closed, a));
    }
}
