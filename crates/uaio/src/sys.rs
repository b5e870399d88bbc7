//! Small system helpers: file descriptor facts, capabilities, signal masks.
//!
//! Everything here goes through rustix's raw system calls or C library
//! functions that do not route through `syscall()`.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

/// What uaio needs to know about a file descriptor to validate a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdInfo {
    /// The descriptor.
    pub fd: i32,
    /// Open file status flags (`F_GETFL`).
    pub flags: u32,
    /// `st_mode`, fetched on demand.
    mode: Option<u32>,
    /// `st_dev`, fetched with `mode`.
    dev: u64,
    /// `fstatfs`, fetched on demand (`None` inside when it failed).
    fs: Option<Option<rustix::fs::StatFs>>,
    /// Whether the file system takes inline buffered writes (see
    /// `writeback`), found out once per call.
    pub inline_fs: Option<bool>,
    /// Whether it is an eventfd, found out on demand.
    eventfd: Option<bool>,
}

/// Mode bits of an anonymous inode (eventfd, epoll, timerfd, ...): no type.
const S_IFMT: u32 = 0o170000;

impl FdInfo {
    /// Looks the descriptor up: `EBADF` when it is not open (or is `O_PATH`,
    /// which the kernel refuses for I/O).
    pub(crate) fn get(fd: u32) -> Result<FdInfo, Errno> {
        let fd = fd as i32;
        if fd < 0 {
            return Err(Errno::BADF);
        }
        // SAFETY: F_GETFL on an arbitrary number is harmless; EBADF if closed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(Errno::BADF);
        }
        if flags & libc::O_PATH != 0 || internal_fds::is_internal(fd) {
            return Err(Errno::BADF);
        }
        direct_hint::record(fd, flags as u32);
        Ok(FdInfo { fd, flags: flags as u32, mode: None, dev: 0, fs: None, inline_fs: None, eventfd: None })
    }

    /// `st_mode` of the file.
    pub(crate) fn mode(&mut self) -> u32 {
        if let Some(m) = self.mode {
            return m;
        }
        // SAFETY: the descriptor was open a moment ago; if it was closed
        // since, fstat fails and we report a type nothing accepts.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let (m, dev) = rustix::fs::fstat(fd).map(|st| (st.st_mode, st.st_dev)).unwrap_or((0, 0));
        self.mode = Some(m);
        self.dev = dev;
        m
    }

    /// `st_dev` of the file (0 when `fstat` failed).
    pub(crate) fn dev(&mut self) -> u64 {
        self.mode();
        self.dev
    }

    /// The file system's `statfs`, once per call.
    pub(crate) fn fs(&mut self) -> Option<rustix::fs::StatFs> {
        if let Some(s) = self.fs {
            return s;
        }
        // SAFETY: as in `mode`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let s = rustix::fs::fstatfs(fd).ok();
        self.fs = Some(s);
        s
    }

    /// Opened for reading.
    pub(crate) fn readable(&self) -> bool {
        matches!(self.flags as i32 & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
    }

    /// Opened for writing.
    pub(crate) fn writable(&self) -> bool {
        matches!(self.flags as i32 & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
    }

    /// A directory (no `read_iter`: reads get `EINVAL`).
    pub(crate) fn is_dir(&mut self) -> bool {
        self.mode() & S_IFMT == libc::S_IFDIR
    }

    /// The file implements `fsync` (regular files, directories, block devices).
    pub(crate) fn can_fsync(&mut self) -> bool {
        matches!(self.mode() & S_IFMT, libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK)
    }

    /// A regular file or a block device (they ignore `O_NONBLOCK`).
    pub(crate) fn is_regular_or_block(&mut self) -> bool {
        matches!(self.mode() & S_IFMT, libc::S_IFREG | libc::S_IFBLK)
    }

    /// The file has a poll method. Regular files, directories and block
    /// devices have none (on local file systems), nor do the memory devices
    /// `/dev/mem`, `/dev/null`, `/dev/port`, `/dev/zero` and `/dev/full`.
    pub(crate) fn has_poll(&mut self) -> bool {
        match self.mode() & S_IFMT {
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK => false,
            libc::S_IFCHR => {
                // SAFETY: as in `mode`.
                let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
                match rustix::fs::fstat(fd) {
                    Ok(st) => {
                        let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                        !(major == 1 && matches!(minor, 1 | 3 | 4 | 5 | 7))
                    }
                    Err(_) => true,
                }
            }
            _ => true,
        }
    }

    /// A regular file.
    pub(crate) fn is_regular(&mut self) -> bool {
        self.mode() & S_IFMT == libc::S_IFREG
    }

    /// A regular file, not opened `O_DIRECT`, on ext2/3/4, whose buffered
    /// write path refuses `RWF_NOWAIT` (`EOPNOTSUPP`).
    pub(crate) fn refuses_nowait_buffered_write(&mut self) -> bool {
        const EXT4_SUPER_MAGIC: i64 = 0xEF53;
        if self.mode() & S_IFMT != libc::S_IFREG || self.flags & libc::O_DIRECT as u32 != 0 {
            return false;
        }
        matches!(self.fs(), Some(st) if st.f_type == EXT4_SUPER_MAGIC)
    }

    /// An anonymous inode (eventfd, timerfd, epoll, ...): no file type bits.
    pub(crate) fn is_anon_inode(&mut self) -> bool {
        self.mode() & S_IFMT == 0
    }

    /// An anonymous inode whose kind implements `read_iter` (eventfd,
    /// timerfd, signalfd); epoll, inotify, fanotify and the rest do not, and
    /// the kernel refuses AIO reads of them. The kind is the name the
    /// kernel gives the file (`anon_inode:[eventfd]`).
    pub(crate) fn anon_reads_iter(&mut self) -> bool {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.fd)).unwrap_or_default();
        let name = link.to_string_lossy();
        ["[eventfd]", "[timerfd]", "[signalfd]"].iter().any(|k| name.ends_with(k))
    }

    /// The file can take `RWF_ATOMIC` writes: a regular file or block
    /// device opened `O_DIRECT` whose atomic write unit (statx) is non-zero.
    pub(crate) fn can_atomic_write(&mut self) -> bool {
        if !matches!(self.mode() & S_IFMT, libc::S_IFREG | libc::S_IFBLK) || self.flags & libc::O_DIRECT as u32 == 0 {
            return false;
        }
        // SAFETY: statx(2) on the descriptor with an empty path into a zeroed struct.
        unsafe {
            let mut sx: libc::statx = core::mem::zeroed();
            let r = libc::statx(self.fd, c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_WRITE_ATOMIC, &mut sx);
            r == 0 && sx.stx_mask & libc::STATX_WRITE_ATOMIC != 0 && sx.stx_atomic_write_unit_max > 0
        }
    }

    /// The file may take `RWF_DONTCACHE`: only regular files and block
    /// devices have a page cache to drop (the file system may still refuse,
    /// which then shows in the event).
    pub(crate) fn can_dontcache(&mut self) -> bool {
        matches!(self.mode() & S_IFMT, libc::S_IFREG | libc::S_IFBLK)
    }

    /// The inode carries the append-only attribute (`chattr +a`).
    pub(crate) fn append_only_inode(&mut self) -> bool {
        const FS_APPEND_FL: libc::c_long = 0x20;
        let mut attr: libc::c_long = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one long into `attr`.
        let r = unsafe { libc::ioctl(self.fd, libc::FS_IOC_GETFLAGS, &mut attr) };
        r == 0 && attr & FS_APPEND_FL != 0
    }

    /// The file is an eventfd. Anonymous inodes carry no type bits; among
    /// them only an eventfd accepts an 8-byte write, and adding 0 to its
    /// counter changes nothing.
    pub(crate) fn is_eventfd(&mut self) -> bool {
        if let Some(e) = self.eventfd {
            return e;
        }
        let e = self.mode() & S_IFMT == 0 && {
            let zero = 0u64.to_ne_bytes();
            // SAFETY: as in `mode`.
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            matches!(rustix::io::write(fd, &zero), Ok(8))
        };
        self.eventfd = Some(e);
        e
    }
}

/// Which descriptors are open `O_DIRECT`, as last seen: a hint that keeps
/// `io_submit` from trying a read inline where even a `RWF_NOWAIT` read
/// waits for the device (a direct read through `preadv2` is synchronous:
/// the kernel waits for the bio, `RWF_NOWAIT` only refuses to queue behind
/// a busy device). A "direct" hint costs speed when stale, never
/// correctness, and every full validation refreshes it. A "buffered" hint
/// is trusted only within the coarse clock tick (a few milliseconds) in
/// which it was taken, since a stale one would let a read wait for a device
/// inside `io_submit` (the program closed the descriptor and opened a
/// direct one under the same number); a fork child starts with none.
pub(crate) mod direct_hint {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Descriptor numbers with a hint; others are looked up each time.
    const SPAN: usize = 4096;
    const DIRECT: u64 = 1;
    const BUFFERED: u64 = 2;

    /// Per descriptor: the tick the hint was taken in, shifted left by 2,
    /// and the state in the low 2 bits (0: none).
    static HINT: [AtomicU64; SPAN] = [const { AtomicU64::new(0) }; SPAN];

    /// Records what `F_GETFL` said about `fd`.
    pub(crate) fn record(fd: i32, flags: u32) {
        if let Some(h) = usize::try_from(fd).ok().and_then(|i| HINT.get(i)) {
            let state = if flags & libc::O_DIRECT as u32 != 0 { DIRECT } else { BUFFERED };
            h.store(super::coarse_clock_ns() << 2 | state, Ordering::Relaxed);
        }
    }

    /// Whether `fd` is (probably) open `O_DIRECT`; asks the kernel when
    /// there is no trustworthy hint.
    pub(crate) fn is_direct(fd: i32) -> bool {
        let Some(h) = usize::try_from(fd).ok().and_then(|i| HINT.get(i)) else { return lookup(fd) };
        let v = h.load(Ordering::Relaxed);
        match v & 3 {
            DIRECT => true,
            BUFFERED if v >> 2 == super::coarse_clock_ns() => false,
            _ => lookup(fd),
        }
    }

    fn lookup(fd: i32) -> bool {
        // SAFETY: F_GETFL on a descriptor number; a closed one just fails.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return false;
        }
        record(fd, flags as u32);
        flags & libc::O_DIRECT != 0
    }

    /// In a fork child: no hint survives (async-signal-safe stores only).
    pub(crate) fn after_fork_in_child() {
        for h in HINT.iter() {
            h.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether `fd` is a socket.
fn is_socket(fd: i32) -> bool {
    // SAFETY: fstat of a descriptor number; a closed one just fails.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(fd).is_ok_and(|st| st.st_mode & S_IFMT == libc::S_IFSOCK)
}

/// Whether `fd` is an eventfd: an anonymous inode (no file type bits) that
/// takes an 8-byte write (adding 0 changes nothing).
pub(crate) fn is_eventfd(fd: i32) -> bool {
    // SAFETY: fstat of a descriptor number into a zeroed struct.
    let anon = unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && st.st_mode & S_IFMT == 0
    };
    // SAFETY: an 8-byte write from a local buffer, to an anonymous inode.
    anon && unsafe { libc::write(fd, 0u64.to_ne_bytes().as_ptr().cast(), 8) == 8 }
}

/// The coarse monotonic clock in nanoseconds: a vDSO read that moves once
/// per clock tick (a few milliseconds), for checks done at most once a tick.
pub(crate) fn coarse_clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec (a vDSO call).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Signals an eventfd `n` times (adds `n` to its counter).
pub(crate) fn eventfd_add(fd: i32, n: u64) {
    // SAFETY: the descriptor was validated at submission; if the application
    // closed it since, the write fails harmlessly (or hits whatever took the
    // number, exactly as with a stale eventfd in the kernel's case it cannot).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::write(fd, &n.to_ne_bytes());
}

/// The calling thread holds `CAP_SYS_ADMIN` or `CAP_SYS_NICE` (effective).
pub(crate) fn can_use_rt_ioprio() -> bool {
    use rustix::thread::CapabilitySet;
    match rustix::thread::capabilities(None) {
        Ok(c) => c.effective.intersects(CapabilitySet::SYS_ADMIN | CapabilitySet::SYS_NICE),
        Err(_) => false,
    }
}

/// Signals a fault raises synchronously: never blocked by uaio, since a
/// blocked one kills the process instead of reaching a handler (uaio's own
/// fault recovery included).
const SYNCHRONOUS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Blocks every signal but the synchronous ones (`SIGSEGV`, `SIGBUS`,
/// `SIGILL`, `SIGFPE`) in the calling thread; returns the previous mask.
pub(crate) fn block_async_signals() -> u64 {
    let all = SYNCHRONOUS.iter().fold(!0u64, |m, &s| m & !(1u64 << (s - 1)));
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask through the C library (not via syscall()), with
    // 8-byte kernel sigsets, which is what pthread_sigmask passes on x86-64.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        let mut prev: libc::sigset_t = core::mem::zeroed();
        core::ptr::copy_nonoverlapping(
            (&all as *const u64).cast::<u8>(),
            (&mut set as *mut libc::sigset_t).cast::<u8>(),
            8,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, &mut prev);
        core::ptr::copy_nonoverlapping(
            (&prev as *const libc::sigset_t).cast::<u8>(),
            (&mut old as *mut u64).cast::<u8>(),
            8,
        );
    }
    old
}

/// The calling thread's id (never 0).
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Signals pending for the calling thread or its process, as an 8-byte
/// kernel sigset.
pub(crate) fn pending_signals() -> u64 {
    let mut out = 0u64;
    // SAFETY: sigpending into a zeroed set; its first 8 bytes are the
    // kernel's sigset on x86-64.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigpending(&mut set);
        core::ptr::copy_nonoverlapping(
            (&set as *const libc::sigset_t).cast::<u8>(),
            (&mut out as *mut u64).cast::<u8>(),
            8,
        );
    }
    out
}

/// Installs `mask` (8-byte kernel sigset) as the thread's signal mask.
/// uaio installs masks only around its own sleeps, where nothing faults.
pub(crate) fn set_signal_mask(mask: u64) {
    // SAFETY: as in block_async_signals. The C library silently keeps its own
    // internal signals unblocked, as it does for every caller.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        core::ptr::copy_nonoverlapping(
            (&mask as *const u64).cast::<u8>(),
            (&mut set as *mut libc::sigset_t).cast::<u8>(),
            8,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, core::ptr::null_mut());
    }
}

/// `ppoll` on one descriptor for `POLLIN`, with `sigmask` (8-byte kernel
/// sigset) installed atomically while waiting. Returns the count of ready
/// descriptors (0 on timeout).
pub(crate) fn ppoll_one(fd: i32, timeout: Option<std::time::Duration>, sigmask: Option<&u64>) -> Result<usize, Errno> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
    // SAFETY: ppoll(2) through the C library with a valid pollfd, timespec
    // and sigset; glibc copies only the 8 bytes the kernel uses.
    let r = unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        if let Some(m) = sigmask {
            core::ptr::copy_nonoverlapping(
                (m as *const u64).cast::<u8>(),
                (&mut set as *mut libc::sigset_t).cast::<u8>(),
                8,
            );
        }
        libc::ppoll(
            &mut pfd,
            1,
            ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec),
            if sigmask.is_some() { &set } else { core::ptr::null() },
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINTR)))
    } else {
        Ok(r as usize)
    }
}

#[cfg(target_arch = "x86_64")]
fn raw_syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    raw_syscall5(nr, a, b, c, 0, 0)
}

/// One `preadv2`/`pwritev2` system call; `-errno` on failure.
#[cfg(target_arch = "x86_64")]
fn prwv2_once(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> i64 {
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

/// Whether descriptors `a` and `b` of this process name the same open file
/// (`kcmp(KCMP_FILE)`); false when that cannot be told (no kcmp here, or a
/// seccomp filter refuses it).
#[cfg(target_arch = "x86_64")]
pub(crate) fn same_open_file(a: i32, b: i32) -> bool {
    const SYS_KCMP: usize = 312;
    const KCMP_FILE: usize = 0;
    let pid = rustix::process::getpid().as_raw_nonzero().get() as usize;
    raw_syscall5(SYS_KCMP, pid, pid, KCMP_FILE, a as usize, b as usize) == 0
}

/// Whether two descriptors name the same open file (not known on this
/// architecture: never).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn same_open_file(_a: i32, _b: i32) -> bool {
    false
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

/// `preadv2(2)` or `pwritev2(2)`, as [`preadv2`]. Made directly: the C
/// library's wrappers are cancellation points, whose bookkeeping around
/// the call costs as much as a tenth of a cached 4 KiB read.
pub(crate) fn prwv2(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> (i64, bool) {
    let call = |off: i64| prwv2_once(write, fd, iov, n, off, flags);
    match call(off) {
        // A socket's read_iter and write_iter refuse a position; a pipe's
        // ignore it.
        r if r == -(libc::ESPIPE as i64) && off != 0 && is_socket(fd) => (r, true),
        r if r == -(libc::ESPIPE as i64) => (call(-1), true),
        r => (r, false),
    }
}

/// uaio's own descriptors (io_uring instances, eventfds) and the rule that
/// keeps them out of the application's way:
/// - they live at high numbers, at or above a floor (half the soft
///   `RLIMIT_NOFILE`, at most 4096), so the low numbers the application
///   gets from `open` stay free, and a number it closed is never reused by
///   uaio behind its back;
/// - a request naming one of them is refused with `EBADF`, as the kernel
///   refuses a descriptor the application does not have;
/// - they use at most a quarter of the soft limit: past that, new contexts
///   run on the thread pool instead of opening another io_uring
///   (see [`internal_fds::room_for_one_more`]).
pub(crate) mod internal_fds {
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
        // SAFETY: fstat of a descriptor number into a zeroed struct; a
        // closed number just fails.
        unsafe {
            let mut st: libc::stat = core::mem::zeroed();
            (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
        }
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
            let min = floor();
            // SAFETY: F_DUPFD_CLOEXEC on an open descriptor; the result, if
            // any, is a new descriptor that only this function holds.
            let d = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
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
            if self.id.is_some() && file_id(self.fd) == self.id {
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
}
