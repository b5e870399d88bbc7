//! What uaio knows about an application's file descriptor, fetched once per
//! call and on demand: status flags, type, device, file system.

use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use rustix::io::Errno;

use super::{direct_hint, file_stat, internal_fds, remembered, FileStat, S_IFMT};

/// `statfs` magic of procfs.
const PROC_MAGIC: i64 = 0x9fa0;
/// `NSFS_MAGIC`: the files of `/proc/<pid>/ns`.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// The file system of the pipes `pipe(2)` makes.
const PIPEFS_MAGIC: i64 = 0x5049_5045;
/// `statfs` magic of sysfs.
const SYSFS_MAGIC: i64 = 0x6265_6572;
/// `statfs` magic of cgroup v1.
const CGROUP_MAGIC: i64 = 0x0027_e0eb;
/// `statfs` magic of overlayfs.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;
/// `statfs` magic of squashfs.
const SQUASHFS_MAGIC: i64 = 0x7371_7368;
/// `statfs` magic of erofs.
const EROFS_MAGIC: i64 = 0xe0f5_e1e2;
/// `statfs` magic of cgroup v2.
const CGROUP2_MAGIC: i64 = 0x6367_7270;
/// `statfs` magic of debugfs.
const DEBUGFS_MAGIC: i64 = 0x6462_6720;
/// `statfs` magic of tracefs.
const TRACEFS_MAGIC: i64 = 0x7472_6163;
/// `statfs` magic of securityfs.
const SECURITYFS_MAGIC: i64 = 0x7363_6673;
/// `statfs` magic of hugetlbfs.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// `statfs` magic of FUSE.
const FUSE_MAGIC: i64 = 0x6573_5546;

/// What uaio needs to know about a file descriptor to validate a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdInfo {
    /// The descriptor.
    pub fd: i32,
    /// Open file status flags (`F_GETFL`).
    pub flags: u32,
    /// The file's `stat`, fetched on demand (all zeros when it failed).
    st: Option<FileStat>,
    /// `st` came from an earlier call's look ([`super::remembered`]).
    recalled: bool,
    /// `flags` came from there too, and whether the number is still open
    /// was not asked yet ([`FdInfo::confirm_open`]).
    unconfirmed: bool,
    /// The `remembered` generation `st` stands under, when the memory is
    /// on and no close or replacement ran during the look.
    generation: Option<u64>,
    /// `fstatfs`, fetched on demand (`None` inside when it failed).
    fs: Option<Option<rustix::fs::StatFs>>,
    /// What the file system makes of a buffered write (see `writeback`),
    /// found out once per call.
    pub write_fs: Option<crate::writeback::WriteFs>,
    /// The file system's `statfs` magic (`None` inside when it could not
    /// be told), found out once per call.
    pub fs_magic: Option<Option<i64>>,
    /// Whether it is an eventfd, found out on demand.
    eventfd: Option<bool>,
}

impl FdInfo {
    /// Looks the descriptor up: `EBADF` when it is not open (or is `O_PATH`,
    /// which the kernel refuses for I/O). A look this thread took in an
    /// earlier call may stand for it ([`FdInfo::recalled_whole`]), until
    /// [`FdInfo::confirm_open`].
    pub(crate) fn get(fd: u32) -> Result<FdInfo, Errno> {
        let fd = fd as i32;
        if fd < 0 {
            return Err(Errno::BADF);
        }
        if let Some(info) = FdInfo::recalled_whole(fd) {
            return Ok(info);
        }
        let mut info = FdInfo::asked(fd)?;
        // A descriptor used call after call is looked at once per tick,
        // even by requests that ask nothing of its file (a cached read):
        // the calls that follow then make no system call for it on the
        // way that needs none ([`FdInfo::confirm_open`]).
        if remembered::generation().is_some_and(|g| remembered::worth_a_look(fd, g)) {
            info.fetch_stat();
        }
        Ok(info)
    }

    /// The descriptor's status flags asked of the kernel now.
    fn asked(fd: i32) -> Result<FdInfo, Errno> {
        let flags = super::status_flags(fd);
        if flags < 0 {
            return Err(Errno::BADF);
        }
        if flags & libc::O_PATH != 0 || internal_fds::is_internal(fd) {
            return Err(Errno::BADF);
        }
        direct_hint::record(fd, flags as u32);
        Ok(FdInfo {
            fd,
            flags: flags as u32,
            st: None,
            recalled: false,
            unconfirmed: false,
            generation: None,
            fs: None,
            write_fs: None,
            fs_magic: None,
            eventfd: None,
        })
    }

    /// This thread's look at `fd` from an earlier call, status flags
    /// included, where nothing can have changed either since
    /// ([`remembered::recall_with_flags`]): no system call at all.
    #[inline]
    fn recalled_whole(fd: i32) -> Option<FdInfo> {
        let generation = remembered::generation()?;
        let (flags, st) = remembered::recall_with_flags(fd, generation)?;
        if internal_fds::is_internal(fd) {
            return None;
        }
        Some(FdInfo {
            fd,
            flags,
            st: Some(st),
            recalled: true,
            unconfirmed: true,
            generation: Some(generation),
            fs: None,
            write_fs: None,
            fs_magic: None,
            eventfd: None,
        })
    }

    /// Asks the kernel whether a descriptor taken whole from an earlier
    /// call ([`FdInfo::recalled_whole`]) is still open (`EBADF` if not),
    /// and with the same status flags (a new look if not): a close or an
    /// `F_SETFL` the drop-in library did not see (a raw system call, one
    /// the C library makes inside another function) is then caught as
    /// before. Every request but a read served whole inside `io_submit`,
    /// or a write run there, asks, once per call and descriptor; their own
    /// system calls would have failed on a closed number, with nothing
    /// done. Returns whether the look was replaced (the flags had changed).
    pub(crate) fn confirm_open(&mut self) -> Result<bool, Errno> {
        if !self.unconfirmed {
            return Ok(false);
        }
        self.unconfirmed = false;
        let fresh = FdInfo::asked(self.fd)?;
        if fresh.flags != self.flags {
            *self = fresh;
            return Ok(true);
        }
        Ok(false)
    }

    /// The file's `stat`, once per call. If the descriptor was closed
    /// since it was looked up, all zeros: a type nothing accepts.
    #[inline]
    fn stat(&mut self) -> &FileStat {
        if self.st.is_none() {
            self.fetch_stat();
        }
        self.st.get_or_insert_default()
    }

    /// Fills [`FdInfo::st`] (the first question of the call about it):
    /// from this thread's last look at the number when nothing can have
    /// changed it since ([`super::remembered`]), else with a look now.
    fn fetch_stat(&mut self) {
        let generation = remembered::generation();
        if let Some(g) = generation {
            if let Some(st) = remembered::recall(self.fd, self.flags, g) {
                self.st = Some(st);
                self.recalled = true;
                self.generation = generation;
                return;
            }
        }
        let st = file_stat(self.fd);
        if let (Some(g), Some(st)) = (generation, st) {
            remembered::remember(self.fd, self.flags, g, st);
        }
        self.st = Some(st.unwrap_or_default());
        self.recalled = false;
        self.generation = generation.filter(|&g| st.is_some() && remembered::generation() == Some(g));
    }

    /// Whether the look, status flags included, came from an earlier call
    /// and was not confirmed since.
    #[cfg(test)]
    pub(crate) fn taken_whole(&self) -> bool {
        self.unconfirmed
    }

    /// Whether the call's look at the file came from an earlier call.
    #[cfg(test)]
    pub(crate) fn recalled(&self) -> bool {
        self.recalled
    }

    /// What a buffered write to the file meets, as found out by this
    /// thread in this coarse clock tick for the same look
    /// ([`remembered::recall_write_fs`]).
    #[inline]
    pub(crate) fn recalled_write_fs(&self) -> Option<crate::writeback::WriteFs> {
        remembered::recall_write_fs(self.fd, self.flags, self.generation?)
    }

    /// Keeps `k` with this thread's look at the file, for the calls of
    /// this tick.
    pub(crate) fn remember_write_fs(&self, k: crate::writeback::WriteFs) {
        if let Some(g) = self.generation {
            remembered::remember_write_fs(self.fd, self.flags, g, k);
        }
    }

    /// `EBADF` when the descriptor was closed between the call's `F_GETFL`
    /// and its look at the file: for the kernel, which finds the file once
    /// before any check of the request, the number named nothing.
    #[inline]
    pub(crate) fn still_open(&mut self) -> Result<(), Errno> {
        if *self.stat() == FileStat::default() {
            return Err(Errno::BADF);
        }
        Ok(())
    }

    /// `st_mode` of the file.
    #[inline]
    pub(crate) fn mode(&mut self) -> u32 {
        self.stat().mode
    }

    /// `st_size` of the file, as this call first saw it (looked at now if
    /// the call's look came from an earlier call: sizes change without a
    /// close).
    pub(crate) fn size(&mut self) -> u64 {
        if self.recalled {
            self.recalled = false;
            self.st = Some(file_stat(self.fd).unwrap_or_default());
        }
        self.stat().size
    }

    /// Whether [`FdInfo::size`] costs no system call.
    pub(crate) fn size_known(&self) -> bool {
        self.st.is_some() && !self.recalled
    }

    /// `st_dev` of the file (0 when `fstat` failed).
    pub(crate) fn dev(&mut self) -> u64 {
        self.stat().dev
    }

    /// What a backend is told of the descriptor.
    #[inline]
    pub(crate) fn seen(&mut self) -> crate::backend::Seen {
        let st = *self.stat();
        // A look kept from an earlier call stands for the number only as
        // far as the drop-in library sees the program's changes of it: one
        // made by a raw system call within the tick is not seen, and a
        // backend that trusted the generation took a duplicate made of the
        // number now for the file the number named before (the request then
        // failed with EBADF, its write lost).
        let generation = self.generation.filter(|_| !self.recalled);
        crate::backend::Seen { st, flags: self.flags, generation }
    }

    /// How a request of `kind` on this file is ordered with its buffered
    /// writes by the backend ([`crate::backend::order_key`]).
    #[inline]
    pub(crate) fn order_key(&mut self, kind: crate::backend::OpKind) -> Option<crate::backend::Order> {
        let st = *self.stat();
        let direct = self.flags & libc::O_DIRECT as u32 != 0;
        crate::backend::order_key(kind, direct, st.mode, st.dev, st.ino, st.rdev)
    }

    /// The file system's `statfs`, once per call.
    pub(crate) fn fs(&mut self) -> Option<rustix::fs::StatFs> {
        if let Some(s) = self.fs {
            return s;
        }
        // SAFETY: the descriptor was open a moment ago; if it was closed
        // since, the call fails.
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
    #[inline]
    pub(crate) fn is_dir(&mut self) -> bool {
        self.mode() & S_IFMT == libc::S_IFDIR
    }

    /// The file implements `fsync` (regular files, directories, block
    /// devices, but those of the file systems of [`FdInfo::lacks_fsync`]).
    #[inline]
    pub(crate) fn can_fsync(&mut self) -> bool {
        matches!(self.mode() & S_IFMT, libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK) && !self.lacks_fsync()
    }

    /// A regular file or directory whose file operations have no `fsync`,
    /// which the kernel's AIO refuses to sync at submission (`EINVAL`; seen
    /// on Linux 6.18): those of procfs, squashfs and erofs (read-only file
    /// systems whose files take the generic read-only operations), the
    /// directories of sysfs and cgroup v1 and v2 (their files sync, doing
    /// nothing), and the files of debugfs, tracefs and securityfs.
    fn lacks_fsync(&mut self) -> bool {
        let kind = self.mode() & S_IFMT;
        if !matches!(kind, libc::S_IFREG | libc::S_IFDIR) {
            return false;
        }
        let Some(magic) = crate::writeback::fs_magic(self) else { return false };
        match magic {
            PROC_MAGIC | SQUASHFS_MAGIC | EROFS_MAGIC => true,
            SYSFS_MAGIC | CGROUP_MAGIC | CGROUP2_MAGIC => kind == libc::S_IFDIR,
            DEBUGFS_MAGIC | TRACEFS_MAGIC | SECURITYFS_MAGIC => kind == libc::S_IFREG,
            _ => false,
        }
    }

    /// A block device.
    #[inline]
    pub(crate) fn is_block(&mut self) -> bool {
        self.mode() & S_IFMT == libc::S_IFBLK
    }

    /// A regular file or a block device (they ignore `O_NONBLOCK`).
    #[inline]
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
                let rdev = self.stat().rdev;
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                !(major == 1 && matches!(minor, 1 | 3 | 4 | 5 | 7))
            }
            _ => true,
        }
    }

    /// One of the memory devices whose reads and writes never wait:
    /// `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random` and
    /// `/dev/urandom` (character major 1). With `RWF_NOWAIT` they stop a
    /// long transfer early whenever the thread should yield, which the
    /// kernel's AIO, without the flag, does not.
    pub(crate) fn is_memory_device(&mut self) -> bool {
        let st = *self.stat();
        st.kind() == libc::S_IFCHR && libc::major(st.rdev) == 1 && matches!(libc::minor(st.rdev), 3 | 5 | 7 | 8 | 9)
    }

    /// `/dev/kmsg` (character 1:11), whose writes never wait (they log a
    /// record) but are taken only blocking (no `RWF_NOWAIT`), and whose
    /// poll never says it is writable: a backend that waits for
    /// writability (io_uring, the thread pool's poller) waits until some
    /// other record is logged.
    pub(crate) fn is_kernel_log(&mut self) -> bool {
        let st = *self.stat();
        st.kind() == libc::S_IFCHR && libc::major(st.rdev) == 1 && libc::minor(st.rdev) == 11
    }

    /// A regular file.
    #[inline]
    pub(crate) fn is_regular(&mut self) -> bool {
        self.mode() & S_IFMT == libc::S_IFREG
    }

    /// A regular file, not opened `O_DIRECT`, on ext2/3/4, whose buffered
    /// write path refuses `RWF_NOWAIT` (`EOPNOTSUPP`). The file system is
    /// known by device number, without a `statfs` per call.
    pub(crate) fn refuses_nowait_buffered_write(&mut self) -> bool {
        if self.mode() & S_IFMT != libc::S_IFREG || self.flags & libc::O_DIRECT as u32 != 0 {
            return false;
        }
        crate::writeback::fs_magic(self) == Some(crate::writeback::EXT4_SUPER_MAGIC)
    }

    /// A regular file whose file system does not open files for
    /// non-blocking I/O (no `FMODE_NOWAIT`): the kernel refuses `RWF_NOWAIT`
    /// on it at submission (`EOPNOTSUPP`). Those known to: tmpfs, ramfs,
    /// procfs, sysfs, overlayfs, squashfs, erofs, cgroup v1 and v2,
    /// debugfs, tracefs, securityfs, hugetlbfs and FUSE (seen on Linux
    /// 6.18: the kernel's `io_submit` refuses such a request; before, uaio
    /// accepted it from all but the first four and its event carried the
    /// error).
    /// Nor does a named FIFO (opened through a file system's node: only
    /// the pipes of pipefs, made by `pipe(2)`, take `RWF_NOWAIT`).
    pub(crate) fn lacks_nowait(&mut self) -> bool {
        match self.mode() & S_IFMT {
            // No file system opens a directory for non-blocking I/O.
            libc::S_IFDIR => return true,
            libc::S_IFIFO => return crate::writeback::fs_magic(self) != Some(PIPEFS_MAGIC),
            libc::S_IFREG => {}
            // Anonymous inodes: eventfd, timerfd and signalfd open with a
            // non-blocking mode, epoll, inotify, pidfd and the rest do not.
            0 => return !self.anon_reads_iter(),
            libc::S_IFBLK => {
                let (rdev, fd) = (self.stat().rdev, self.fd);
                return self.readable() && block_lacks_nowait(rdev, fd);
            }
            // A character device without read_iter (or write_iter, asked
            // in the direction the descriptor is open for) has no
            // non-blocking mode either (/dev/kmsg, /dev/kvm, ...).
            libc::S_IFCHR => {
                let (rdev, fd) = (self.stat().rdev, self.fd);
                let read = !device_has_iter(rdev, false) && self.readable() && device_lacks_iter(rdev, fd, false);
                return read || (!device_has_iter(rdev, true) && self.writable() && device_lacks_iter(rdev, fd, true));
            }
            _ => return false,
        }
        matches!(
            crate::writeback::fs_magic(self),
            Some(
                crate::writeback::TMPFS_MAGIC
                    | crate::writeback::RAMFS_MAGIC
                    | PROC_MAGIC
                    | NSFS_MAGIC
                    | SYSFS_MAGIC
                    | OVERLAYFS_MAGIC
                    | SQUASHFS_MAGIC
                    | EROFS_MAGIC
                    | CGROUP_MAGIC
                    | CGROUP2_MAGIC
                    | DEBUGFS_MAGIC
                    | TRACEFS_MAGIC
                    | SECURITYFS_MAGIC
                    | HUGETLBFS_MAGIC
                    | FUSE_MAGIC
            )
        )
    }

    /// A file whose poll waits on two queues: a FIFO or pipe open for
    /// reading and writing (one for each), or a terminal (its input and
    /// its output). The kernel's AIO poll takes one queue only, and refuses
    /// a request on such a file (`EINVAL` from `io_submit`) unless it is
    /// ready at once. (`isatty` asks only of character devices.)
    pub(crate) fn polls_two_queues(&mut self) -> bool {
        match self.mode() & S_IFMT {
            libc::S_IFIFO => self.readable() && self.writable(),
            // SAFETY: isatty(3) (an ioctl) on a descriptor number.
            libc::S_IFCHR => unsafe { libc::isatty(self.fd) == 1 },
            _ => false,
        }
    }

    /// A regular file of debugfs, tracefs or securityfs, whose file
    /// operations have neither `read_iter` nor `write_iter` (seen on Linux
    /// 6.18): the kernel's AIO refuses reads and writes of them at
    /// submission (`EINVAL`), where uaio's system calls would read them.
    /// (Files of an anonymous device only: the others pay nothing.)
    pub(crate) fn lacks_rw_iter(&mut self) -> bool {
        self.is_regular()
            && libc::major(self.dev()) == 0
            && matches!(crate::writeback::fs_magic(self), Some(DEBUGFS_MAGIC | TRACEFS_MAGIC | SECURITYFS_MAGIC))
    }

    /// A file whose operations have `write` but no `write_iter`, which the
    /// kernel's AIO refuses to write at submission (`EINVAL`), where
    /// uaio's system calls would write it (with the file's side effects:
    /// `/proc/self/comm` renames the thread): the regular files of /proc
    /// but those of /proc/sys (whose handler takes an iterator), and the
    /// character devices that the kernel's AIO says have none
    /// ([`probe_lacks_iter`]: `/dev/full`, `/dev/kvm`, `/dev/vsock`,
    /// `/dev/btrfs-control`, ...; the memory devices and terminals have
    /// one). Seen on Linux 6.18.
    pub(crate) fn lacks_write_iter(&mut self) -> bool {
        let st = *self.stat();
        if st.kind() == libc::S_IFCHR {
            return !device_has_iter(st.rdev, true) && device_lacks_iter(st.rdev, self.fd, true);
        }
        if st.kind() != libc::S_IFREG
            || libc::major(st.dev) != 0
            || crate::writeback::fs_magic(self) != Some(PROC_MAGIC)
        {
            return false;
        }
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.fd)).unwrap_or_default();
        !link.to_string_lossy().contains("/sys/")
    }

    /// A file whose operations have `read` but no `read_iter`, which the
    /// kernel's AIO refuses to read at submission (`EINVAL`), where uaio's
    /// system calls would read it: most files of `/proc/<pid>`,
    /// `/proc/kmsg`, `/dev/kmsg`, `/dev/hwrng`, `/dev/vcs`, ... (seen on
    /// Linux 6.18), the files of `/proc/<pid>/ns` (nsfs). Only regular
    /// files of /proc and nsfs and character devices other than the memory
    /// devices and terminals are asked about, by [`probe_lacks_iter`]; a
    /// device's answer is kept.
    pub(crate) fn lacks_read_iter(&mut self) -> bool {
        let st = *self.stat();
        match st.kind() {
            libc::S_IFCHR => !device_has_iter(st.rdev, false) && device_lacks_iter(st.rdev, self.fd, false),
            libc::S_IFREG => {
                libc::major(st.dev) == 0
                    && matches!(crate::writeback::fs_magic(self), Some(PROC_MAGIC | NSFS_MAGIC))
                    && probe_lacks_iter(self.fd, false)
            }
            _ => false,
        }
    }

    /// A regular file of hugetlbfs (a `MFD_HUGETLB` memfd too), whose file
    /// operations have `read_iter` but no `write_iter`: the kernel's AIO
    /// refuses writes of it at submission (`EINVAL`).
    pub(crate) fn is_hugetlbfs(&mut self) -> bool {
        self.is_regular() && libc::major(self.dev()) == 0 && crate::writeback::fs_magic(self) == Some(HUGETLBFS_MAGIC)
    }

    /// An anonymous inode (eventfd, timerfd, epoll, ...): no file type bits.
    #[inline]
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

    /// The file can take `RWF_ATOMIC` writes at submission (the kernel's
    /// `FMODE_CAN_ATOMIC_WRITE`): a regular file whose atomic write unit
    /// (statx) is non-zero, or such a block device opened `O_DIRECT`. A
    /// file system sets the mode for every open of such a file, and then
    /// refuses a buffered atomic write itself, in its event (XFS answers
    /// `-EOPNOTSUPP`; uaio refused it at submission, a black-box attack).
    pub(crate) fn can_atomic_write(&mut self) -> bool {
        let direct = self.flags & libc::O_DIRECT as u32 != 0;
        match self.mode() & S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFBLK if direct => {}
            _ => return false,
        }
        // SAFETY: statx(2) on the descriptor with an empty path into a zeroed struct.
        unsafe {
            let mut sx: libc::statx = core::mem::zeroed();
            let r = libc::statx(self.fd, c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_WRITE_ATOMIC, &mut sx);
            r == 0 && sx.stx_mask & libc::STATX_WRITE_ATOMIC != 0 && sx.stx_atomic_write_unit_max > 0
        }
    }

    /// The file may take `RWF_DONTCACHE`: a regular file or block device
    /// whose file operations support it (tmpfs, for one, does not, and the
    /// kernel's `io_submit` refuses the flag there). The answer comes from
    /// a one-byte `RWF_DONTCACHE` read far past any end of file, which the
    /// kernel refuses with `EOPNOTSUPP` before it looks at the position, or
    /// reads nothing; it is kept per file system (block devices share
    /// theirs). A descriptor that cannot be read learns it from another of
    /// its file system, or is let through (the event then carries the
    /// refusal). An answer is trusted for a second: a device number freed
    /// by an unmount may come back with another file system.
    pub(crate) fn can_dontcache(&mut self) -> bool {
        let mode = self.mode() & S_IFMT;
        if !matches!(mode, libc::S_IFREG | libc::S_IFBLK) {
            return false;
        }
        const AGE: u64 = 1_000_000_000;
        static SEEN: Mutex<Vec<(u64, u64, bool)>> = Mutex::new(Vec::new());
        let key = if mode == libc::S_IFBLK { u64::MAX } else { self.dev() };
        let now = super::coarse_clock_ns();
        let known = SEEN
            .try_lock()
            .ok()
            .and_then(|seen| seen.iter().find(|e| e.0 == key && now.saturating_sub(e.1) < AGE).map(|e| e.2));
        if let Some(ok) = known {
            return ok;
        }
        let mut b = 0u8;
        let r = super::probe_read(self.fd, &mut b, i64::MAX - 1, uaio_abi::RWF_DONTCACHE);
        let ok = match r {
            r if r == -(libc::EOPNOTSUPP as i64) => false,
            r if r >= 0 => true,
            // Not readable, or closed meanwhile: no answer to keep.
            _ => return true,
        };
        if let Ok(mut seen) = SEEN.try_lock() {
            seen.retain(|e| e.0 != key);
            if seen.len() >= 16 {
                seen.remove(0);
            }
            seen.push((key, now, ok));
        }
        ok
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
            // SAFETY: the descriptor was open a moment ago; if it was closed
            // since, the call fails.
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            matches!(rustix::io::write(fd, &zero), Ok(8))
        };
        self.eventfd = Some(e);
        e
    }
}

/// Character devices known to read (`write` false) or write through
/// `read_iter`/`write_iter`: `/dev/null`, `/dev/zero`, `/dev/random`,
/// `/dev/urandom` (1:3, 5, 8, 9), `/dev/full` for reads (1:7, whose write
/// has none), and the terminals (majors 4, 5 and 136-143). Others are
/// asked.
fn device_has_iter(rdev: u64, write: bool) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    matches!((major, minor), (1, 3 | 5 | 8 | 9))
        || (!write && (major, minor) == (1, 7))
        || matches!(major, 4 | 5 | 136..=143)
}

/// Answers about devices, asked once per key and kept (a driver's
/// operations do not change): at most 64 keys, later ones are asked each
/// time.
struct DeviceAnswers<K>(Mutex<Vec<(K, bool)>>);

impl<K: Copy + PartialEq> DeviceAnswers<K> {
    /// No answer kept yet.
    const fn new() -> Self {
        DeviceAnswers(Mutex::new(Vec::new()))
    }

    /// The answer kept for `key`, or `ask`'s, kept from then on.
    fn get_or_ask(&self, key: K, ask: impl FnOnce() -> bool) -> bool {
        if let Some(&(_, answer)) = crate::sync::lock(&self.0).iter().find(|(k, _)| *k == key) {
            return answer;
        }
        let answer = ask();
        let mut known = crate::sync::lock(&self.0);
        if known.len() < 64 && !known.iter().any(|(k, _)| *k == key) {
            known.push((key, answer));
        }
        answer
    }
}

/// [`probe_lacks_iter`] of a character device, its answer kept by device
/// number and direction.
fn device_lacks_iter(rdev: u64, fd: i32, write: bool) -> bool {
    static KNOWN: DeviceAnswers<(u64, bool)> = DeviceAnswers::new();
    KNOWN.get_or_ask((rdev, write), || probe_lacks_iter(fd, write))
}

/// Whether the block device `rdev` (open readable on `fd`) has no
/// non-blocking mode: a queue without it (a bio-based driver such as
/// zram) makes the kernel refuse `RWF_NOWAIT` when it takes the request
/// (`EOPNOTSUPP`, in `io_submit` for AIO). Asked once per device with a
/// one-byte `RWF_NOWAIT` read: refused with `EOPNOTSUPP` before anything
/// else where the mode is
/// missing, and read (or `EAGAIN`, nothing cached; or `EINVAL`, misaligned
/// for `O_DIRECT`) where it is there: a byte into uaio's own buffer, at
/// most (the system call checks its buffer before the flags, so it must
/// be a real one).
fn block_lacks_nowait(rdev: u64, fd: i32) -> bool {
    static KNOWN: DeviceAnswers<u64> = DeviceAnswers::new();
    KNOWN.get_or_ask(rdev, || {
        let mut byte = 0u8;
        super::probe_read(fd, &mut byte, 0, uaio_abi::RWF_NOWAIT) == -(libc::EOPNOTSUPP as i64)
    })
}

/// The first address of the kernel's half on x86-64: never the program's.
const NOT_USER: u64 = 0xffff_8000_0000_0000;

/// The kernel AIO context of [`probe_lacks_iter`] (0: not made yet,
/// `u64::MAX`: refused), kept for the process once made (`io_destroy`
/// waits for an RCU grace period, about 30 ms here). A fork child, which
/// does not inherit kernel AIO contexts, makes its own.
static READ_ITER_PROBE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Asks the kernel's AIO whether the file of `fd` has `read_iter` (or
/// `write_iter` when `write`): a one-byte read (write) from or into an
/// address that is not the program's is refused with `EINVAL` when the
/// file has none, and with `EFAULT` before any transfer when it has (the
/// buffer is checked after the file's operations): nothing is read or
/// written, nothing is queued. False when kernel AIO is not available
/// here (uaio then reads or writes the file).
fn probe_lacks_iter(fd: i32, write: bool) -> bool {
    probe_lacks_iter_once(fd, write, false)
}

/// [`probe_lacks_iter`]; `retried`: with a context made again.
fn probe_lacks_iter_once(fd: i32, write: bool, retried: bool) -> bool {
    use std::sync::atomic::Ordering;
    let mut ctx = READ_ITER_PROBE.load(Ordering::Acquire);
    if ctx == 0 {
        let made = super::kernel_aio::setup(1).unwrap_or(u64::MAX);
        ctx = match READ_ITER_PROBE.compare_exchange(0, made, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => made,
            Err(other) => {
                if made != u64::MAX {
                    super::kernel_aio::destroy(made);
                }
                other
            }
        };
    }
    if ctx == u64::MAX {
        return false;
    }
    let cb = uaio_abi::iocb {
        aio_lio_opcode: if write { uaio_abi::IOCB_CMD_PWRITE } else { uaio_abi::IOCB_CMD_PREAD },
        aio_fildes: fd as u32,
        aio_buf: NOT_USER,
        aio_nbytes: 1,
        ..Default::default()
    };
    if super::kernel_aio::submit(ctx, &[&cb as *const uaio_abi::iocb]) != -(libc::EINVAL as isize) {
        return false;
    }
    // The context's own EINVAL (a child forked by a raw system call, which
    // ran no fork handler, has none of its parent's kernel contexts): a new
    // one is made, and asked once more.
    if super::kernel_aio::submit(ctx, &[]) == 0 {
        return true;
    }
    if READ_ITER_PROBE.compare_exchange(ctx, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() && !retried {
        return probe_lacks_iter_once(fd, write, true);
    }
    false
}

/// In a fork child: the parent's probe context is not the child's.
pub(crate) fn after_fork_in_child() {
    READ_ITER_PROBE.store(0, std::sync::atomic::Ordering::Release);
}
