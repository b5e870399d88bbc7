//! What uaio reads of a file's inode: its type, device, inode number,
//! the device it stands for, and its size. Every look uaio takes at a
//! descriptor's file goes through [`file_stat`].

use std::os::fd::BorrowedFd;

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
/// none (closed, or closed and reused is not told apart here).
pub(crate) fn file_stat(fd: i32) -> Option<FileStat> {
    if fd < 0 {
        return None;
    }
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
