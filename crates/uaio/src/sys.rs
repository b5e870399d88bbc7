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
        if flags & libc::O_PATH != 0 {
            return Err(Errno::BADF);
        }
        Ok(FdInfo { fd, flags: flags as u32, mode: None, eventfd: None })
    }

    /// `st_mode` of the file.
    pub(crate) fn mode(&mut self) -> u32 {
        if let Some(m) = self.mode {
            return m;
        }
        // SAFETY: the descriptor was open a moment ago; if it was closed
        // since, fstat fails and we report a type nothing accepts.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let m = rustix::fs::fstat(fd).map(|st| st.st_mode).unwrap_or(0);
        self.mode = Some(m);
        m
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

    /// A regular file, not opened `O_DIRECT`, on ext2/3/4, whose buffered
    /// write path refuses `RWF_NOWAIT` (`EOPNOTSUPP`).
    pub(crate) fn refuses_nowait_buffered_write(&mut self) -> bool {
        const EXT4_SUPER_MAGIC: i64 = 0xEF53;
        if self.mode() & S_IFMT != libc::S_IFREG || self.flags & libc::O_DIRECT as u32 != 0 {
            return false;
        }
        // SAFETY: as in `mode`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        matches!(rustix::fs::fstatfs(fd), Ok(st) if st.f_type == EXT4_SUPER_MAGIC)
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
    let ret: isize;
    // SAFETY: the `syscall` instruction with the x86-64 Linux convention; the
    // callers pass only scalar arguments (no memory is read or written). This
    // avoids the C library's `syscall()`, which the drop-in library wraps.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
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

/// `preadv2(2)` or `pwritev2(2)`, as [`preadv2`].
pub(crate) fn prwv2(write: bool, fd: i32, iov: *const uaio_abi::iovec, n: usize, off: i64, flags: u32) -> (i64, bool) {
    let call = |off: i64| {
        // SAFETY: the iovecs were validated against the user address range;
        // the kernel reports unmapped buffers as EFAULT. glibc's preadv2 and
        // pwritev2 are direct system calls.
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
    };
    match call(off) {
        r if r == -(libc::ESPIPE as i64) => (call(-1), true),
        r => (r, false),
    }
}
