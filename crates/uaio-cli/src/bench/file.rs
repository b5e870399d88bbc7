//! The test file and the memory the requests use: creating and filling the
//! file, page-cache residency (`mincore`), warming and dropping the cache,
//! the file system's name and whether it takes `O_DIRECT`, and page-aligned
//! buffers.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Alignment of every request buffer (enough for `O_DIRECT` on any device
/// with blocks up to 4 KiB).
pub const ALIGN: usize = 4096;

/// A zeroed, [`ALIGN`]-aligned heap buffer that never moves.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is plain memory owned by this value; which thread
// touches which part is decided by its users (each request slot owns its
// own range while the request is in flight).
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only hands out the address.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` bytes (at least one page) filled with `fill`.
    pub fn new(len: usize, fill: u8) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(ALIGN).next_multiple_of(ALIGN), ALIGN).expect("buffer layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, layout.size()) };
        AlignedBuf { ptr, layout }
    }

    /// Address of byte `off`, as an iocb's `aio_buf`.
    pub fn addr(&self, off: usize) -> u64 {
        debug_assert!(off < self.layout.size());
        self.ptr as u64 + off as u64
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Name of the file system holding `file` (from `statfs`'s magic number).
pub fn fs_name(file: &File) -> String {
    // SAFETY: an all-zero statfs is a valid value for the call to fill in.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open and `st` is a live local.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as u32 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x8584_58f6 => "ramfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x6573_5546 => "fuse".into(),
        0x0102_1997 => "9p".into(),
        0x9fa0 => "proc".into(),
        0x6265_6572 => "sysfs".into(),
        m => format!("fs magic {m:#x}"),
    }
}

/// Bytes an unprivileged writer may still put on the file system of
/// `file` (`statvfs`: available blocks times their size).
fn free_bytes(file: &File) -> io::Result<u64> {
    // SAFETY: an all-zero statvfs is a valid value for the call to fill in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open and `st` is a live local.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Whether the file system keeps file data in memory only, so that neither
/// `O_DIRECT` nor dropping the cache reaches a device.
pub fn memory_fs(name: &str) -> bool {
    matches!(name, "tmpfs" | "ramfs")
}

/// The test file: either one the user named or a new one, unlinked at once
/// so that nothing is left behind however the run ends.
#[derive(Debug)]
pub struct TestFile {
    /// Read-write, buffered descriptor held by the parent.
    pub file: File,
    /// Path the worker processes open (for an unlinked file,
    /// `/proc/PID/fd/N`, which reaches the same inode).
    pub path: PathBuf,
    /// What to show the user.
    pub shown: String,
    /// Size in bytes.
    pub size: u64,
    /// The user's file could be opened for reading only (no permission to
    /// write, a read-only mount), and holds the size asked for: the
    /// workloads that write do not run.
    pub read_only: bool,
}

/// xorshift64: cheap, deterministic numbers for offsets and file data.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

impl TestFile {
    /// Opens `path` (created if missing) or makes a new unlinked file in
    /// `dir`, and fills it with `size` bytes of pseudo-random data unless it
    /// already holds that many. The data is synced to the device.
    pub fn prepare(path: Option<&Path>, dir: &Path, size: u64) -> io::Result<TestFile> {
        let mut created = None;
        let r = Self::prepare_in(path, dir, size, &mut created);
        if let (Err(_), Some(p)) = (&r, created) {
            let _ = std::fs::remove_file(p);
        }
        r
    }

    /// [`TestFile::prepare`]; `created` names the `--file` it created, if
    /// it did.
    fn prepare_in(path: Option<&Path>, dir: &Path, size: u64, created: &mut Option<PathBuf>) -> io::Result<TestFile> {
        let (file, path, shown, fresh) = match path {
            Some(p) => {
                if p.exists() && !std::fs::metadata(p)?.is_file() {
                    // Never write over a device or anything else that is not a plain file.
                    return Err(io::Error::other(format!("{} is not a regular file", p.display())));
                }
                if p.exists() && pseudo_fs(p) {
                    // procfs and sysfs files say they are regular, of size 0.
                    return Err(io::Error::other(format!("{} is a file of /proc or /sys, not of a disk", p.display())));
                }
                let existed = p.exists();
                let f = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p) {
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS)) => {
                        // Enough for the reads, if it is long enough.
                        let f = File::open(p).map_err(|_| io::Error::from(e.kind()))?;
                        if f.metadata()?.len() < size {
                            return Err(io::Error::other(format!(
                                "{} is read-only here ({e}) and shorter than --size",
                                p.display()
                            )));
                        }
                        let shown = format!("{} (read-only)", p.display());
                        return Ok(TestFile { file: f, path: p.to_path_buf(), shown, size, read_only: true });
                    }
                    r => r?,
                };
                let fresh = f.metadata()?.len() < size;
                if !existed {
                    // Made here: a refusal below takes it away again.
                    *created = Some(p.to_path_buf());
                }
                (f, p.to_path_buf(), p.display().to_string(), fresh)
            }
            None => {
                let p = dir.join(format!("uaio-bench-{}.dat", std::process::id()));
                let f = OpenOptions::new().read(true).write(true).create_new(true).open(&p).map_err(|e| {
                    if dir.is_dir() {
                        // ENOENT from /proc, which exists but takes no new file.
                        io::Error::other(format!("no new file can be made in {} ({e})", dir.display()))
                    } else {
                        e
                    }
                })?;
                std::fs::remove_file(&p)?;
                let proc = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()));
                (f, proc, format!("{} (unlinked)", p.display()), true)
            }
        };
        if fresh {
            let need = size.saturating_sub(file.metadata()?.len());
            let free = free_bytes(&file)?;
            if need > free {
                // Refused before any byte is written: filling the file
                // system would fail the run only at its end, and other
                // programs' writes meanwhile.
                return Err(io::Error::other(format!(
                    "{shown} needs {need} more bytes and its file system has {free} free (--size)"
                )));
            }
            let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
            let chunk_len = 1usize << 20;
            let mut chunk = vec![0u8; chunk_len];
            let mut off = 0u64;
            while off < size {
                for w in chunk.chunks_exact_mut(8) {
                    w.copy_from_slice(&rng.next_u64().to_ne_bytes());
                }
                let n = (size - off).min(chunk_len as u64) as usize;
                file.write_all_at(&chunk[..n], off)?;
                off += n as u64;
            }
            file.sync_all()?;
        }
        Ok(TestFile { file, path, shown, size, read_only: false })
    }

    /// Fraction of the file's first `size` bytes in the page cache.
    pub fn resident(&self) -> io::Result<f64> {
        let len = self.size as usize;
        if len == 0 {
            return Ok(1.0);
        }
        // SAFETY: a fresh shared read-only mapping of the open file; nothing
        // else is placed at the address the kernel picks.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, self.file.as_raw_fd(), 0)
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = page_size();
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `p` maps `len` bytes and `vec` has one byte per page of it.
        let r = unsafe { libc::mincore(p, len, vec.as_mut_ptr()) };
        let err = io::Error::last_os_error();
        // SAFETY: unmaps exactly what was mapped above; nothing refers to it.
        unsafe { libc::munmap(p, len) };
        if r != 0 {
            return Err(err);
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as f64 / vec.len() as f64)
    }

    /// Writes dirty pages back, so that one run's writes are not flushed
    /// during the next run.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Brings the whole file into the page cache (reads it through unless
    /// every page is already there) and returns the fraction resident after.
    pub fn warm(&self) -> io::Result<f64> {
        if self.resident()? >= 1.0 {
            return Ok(1.0);
        }
        // SAFETY: advice only; the descriptor is open.
        unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, self.size as i64, libc::POSIX_FADV_WILLNEED) };
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < self.size {
            let n = (self.size - off).min(buf.len() as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], off)?;
            off += n as u64;
        }
        self.resident()
    }

    /// Evicts the file from the page cache: `posix_fadvise(DONTNEED)` of the
    /// file after writing it back, or, with `global`, `echo 1 >
    /// /proc/sys/vm/drop_caches` (root only, and it empties every file's
    /// cache). Returns the fraction still resident afterwards.
    pub fn drop_cache(&self, global: bool) -> Result<f64, String> {
        self.sync().map_err(|e| format!("fdatasync: {e}"))?;
        if global {
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            std::fs::write("/proc/sys/vm/drop_caches", "1\n")
                .map_err(|e| format!("cannot drop caches with /proc/sys/vm/drop_caches: {e} (use --drop fadvise)"))?;
        } else {
            // SAFETY: advice only; the descriptor is open.
            let r = unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if r != 0 {
                return Err(format!("posix_fadvise(DONTNEED): {}", io::Error::from_raw_os_error(r)));
            }
        }
        self.resident().map_err(|e| format!("mincore: {e}"))
    }
}

/// Opens `path` for a worker: for reading, and writing when `write`, with
/// `O_DIRECT` when asked.
pub fn open_for_worker(path: &Path, write: bool, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(write);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Checks that `O_DIRECT` works on the test file: opening it and reading
/// one aligned block. Returns why not.
pub fn probe_direct(tf: &TestFile, bs: usize) -> Result<(), String> {
    let f = open_for_worker(&tf.path, false, true).map_err(|e| format!("open with O_DIRECT: {e}"))?;
    let buf = AlignedBuf::new(bs, 0);
    // SAFETY: `buf` owns at least `bs` bytes and outlives the call.
    let r = unsafe { libc::pread(f.as_raw_fd(), buf.addr(0) as *mut libc::c_void, bs, 0) };
    if r < 0 {
        return Err(format!("O_DIRECT read: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// The page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Whether `p` lies on procfs or sysfs.
fn pseudo_fs(p: &Path) -> bool {
    File::open(p).is_ok_and(|f| matches!(fs_name(&f).as_str(), "proc" | "sysfs"))
}
