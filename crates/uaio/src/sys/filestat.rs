//! What uaio reads of a file's inode: its type, device, inode number,
//! the device it stands for, and its size. Every look uaio takes at a
//! descriptor's file goes through [`file_stat`].
//!
//! It asks `statx` for those fields only, never for the file's times.
//! Since Linux 6.13, ext4, XFS, btrfs and tmpfs keep multigrain
//! timestamps: a file whose change time someone read (any `fstat` does)
//! gets a fine-grained time at its next write, so that the reader can see
//! that write happened, where otherwise writes within one clock tick share
//! the tick's time and leave the inode alone. An `fstat` per `io_submit`
//! would make every write that follows update the inode's times: a
//! journal update per 4 KiB write on ext4 (at half the speed of a plain
//! write, measured here), and `EAGAIN` for `RWF_NOWAIT` writes on XFS,
//! whose `RWF_NOWAIT` refuses to update times. Kernel AIO reads no
//! times, and neither does uaio.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// The parts of a file's `stat` uaio uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// `st_mode`: the file type and permission bits.
    pub mode: u32,
    /// `st_dev`: the device of the file system holding the file.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_rdev`: the device a device file stands for.
    pub rdev: u64,
    /// `st_size`.
    pub size: u64,
}

impl FileStat {
    /// The file type bits of the mode.
    pub(crate) fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// A regular file or a block device.
    pub(crate) fn is_regular_or_block(&self) -> bool {
        matches!(self.kind(), libc::S_IFREG | libc::S_IFBLK)
    }

    /// Device and inode: which file it is.
    pub(crate) fn ident(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// The file the descriptor number `fd` names now; `None` when it names
/// none.
pub(crate) fn file_stat(fd: i32) -> Option<FileStat> {
    if fd < 0 {
        return None;
    }
    if !NO_STATX.load(Ordering::Relaxed) {
        match statx(fd) {
            Ok(Some(st)) => return Some(st),
            // The file system left out a field asked for: fstat has them all.
            Ok(None) => {}
            Err(libc::EBADF) => return None,
            // No statx (before Linux 4.11, or refused by a seccomp filter).
            Err(libc::ENOSYS | libc::EPERM) => NO_STATX.store(true, Ordering::Relaxed),
            // Anything else (ENOMEM, say): fstat gives its own answer.
            Err(_) => {}
        }
    }
    fstat(fd)
}

/// Set once `statx` turned out missing or forbidden: [`file_stat`] then
/// uses `fstat`, which reads the times.
static NO_STATX: AtomicBool = AtomicBool::new(false);

/// The fields asked of `statx`: no times.
const MASK: u32 = libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_INO | libc::STATX_SIZE;

/// `statx(fd, "", AT_EMPTY_PATH, MASK)` (a NULL path, taken from Linux
/// 6.11, costs the same here and trips older valgrind): `Ok(None)` when
/// the file system did not give the type and inode number asked for.
fn statx(fd: i32) -> Result<Option<FileStat>, i32> {
    // SAFETY: statx(2) into a zeroed struct the call may fill, with an
    // empty NUL-terminated path and AT_EMPTY_PATH.
    let (r, sx) = unsafe {
        let mut sx: libc::statx = core::mem::zeroed();
        (libc::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, MASK, &mut sx), sx)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
    }
    let need = libc::STATX_TYPE | libc::STATX_INO;
    Ok((sx.stx_mask & need == need).then(|| FileStat {
        mode: sx.stx_mode as u32,
        dev: libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
        ino: sx.stx_ino,
        rdev: libc::makedev(sx.stx_rdev_major, sx.stx_rdev_minor),
        size: sx.stx_size,
    }))
}

/// `fstat`, where `statx` cannot be used.
fn fstat(fd: i32) -> Option<FileStat> {
    // SAFETY: fstat of a descriptor number; a closed one just fails.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(fd).ok().map(|st| FileStat {
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
        rdev: st.st_rdev,
        size: st.st_size as u64,
    })
}
