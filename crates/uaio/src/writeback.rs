//! When a buffered write runs inside `io_submit`.
//!
//! Kernel AIO copies a buffered write into the page cache inside
//! `io_submit`, and so does uaio where that cannot wait for the device:
//! the event is in the ring when the call returns, as programs written
//! against the kernel expect, and the write costs one system call instead
//! of a trip through a worker. ext2/3/4 refuse `RWF_NOWAIT` buffered writes
//! (`ext4_buffered_write_iter` answers `EOPNOTSUPP`), and XFS, which takes
//! them, refuses one whenever the file's times must change (every write
//! of a new clock tick, or after a `stat`), so io_uring would send most
//! writes to its workers. uaio decides itself, for ext2/3/4, XFS, tmpfs and ramfs,
//! from what makes a buffered write wait in the kernel:
//!
//! - **Synchronous writes** (`O_SYNC`, `O_DSYNC`) and `RWF_DONTCACHE`
//!   start or wait for writeback: never inline (but on a memory file
//!   system, below). A write with `RWF_SYNC` or
//!   `RWF_DSYNC` is copied inline when the same write without its flag
//!   would be, and its sync (of the bytes written) goes to the backend,
//!   which reports the write once the sync is done.
//! - **Reading a partial page** (`write_begin` reads the block of a page the
//!   write covers only in part unless the page is in the cache): a write
//!   that starts or ends inside a page runs inline only when that page is
//!   cached and up to date, or starts at or past the end of the file, which
//!   a one-byte `RWF_NOWAIT` read of the page proves (on a descriptor open
//!   for writing only, `cachestat` and the file's size tell instead).
//! - **Dirty-page throttling** (`balance_dirty_pages`, which makes writers
//!   sleep once dirty and writeback pages pass the "free-run ceiling",
//!   midway between the background and the foreground thresholds): inline
//!   writes draw on a budget of the room left below seven eighths of that
//!   ceiling, computed from `/proc/meminfo` and the `vm.dirty_*` settings at
//!   most once per coarse clock tick, so the system stays below the point
//!   where the kernel would throttle (an eighth is left for other writers
//!   and for what changes within a tick). A device whose writeback has a
//!   limit of its own (`bdi/strict_limit`: writers are then throttled by
//!   that device's dirty pages, which `/proc/meminfo` does not show), or
//!   one sysfs does not show, never takes an inline write; on a device that
//!   asks for stable writes (`queue/stable_writes`: a write into a page
//!   under writeback waits for it) a write runs inline only when
//!   `cachestat` shows none of its pages under writeback.
//! - **Block allocation**: with delayed allocation (ext4's default, and
//!   always on XFS for buffered writes) a buffered write only reserves
//!   blocks; the allocation, and its reads of bitmaps, happen at writeback.
//!   ext4 mounted `nodelalloc` or `data=journal`, and a file system close
//!   to full (ext4 drops delayed allocation when free space is under twice
//!   the dirty data; XFS flushes to find space), are never inline. Other
//!   file systems go to the backend (btrfs waits for writeback of the range
//!   it overwrites).
//! - **Memory file systems**: tmpfs and ramfs keep a file's pages in
//!   memory and have no writeback, so neither partial pages nor dirty-page
//!   throttling nor allocation involve a device. The one device a tmpfs
//!   write can wait for is swap (a swapped-out page is read back before it
//!   is written), so tmpfs writes run inline only while the system has no
//!   swap (`sysinfo`, looked at every 100 ms at most); ramfs pages are
//!   never swapped. There a synchronous write runs inline too (its sync has
//!   nothing to wait for), and so does one over the size bound of the
//!   others.
//!
//! - **Order**: a write of bytes that an earlier buffered write still in
//!   a backend covers goes to the backend behind it (see [`SPANS`]).
//!
//! What is left is what kernel AIO waits for too: the inode lock held by
//! another writer, the journal (ext4) or log (XFS) reservation that updates
//! the file's times while the journal commits or the log is full, and
//! memory reclaim.
//!
//! A write these rules send to a backend is not yet the kernel's when
//! `io_submit` returns: a program killed at that moment loses it, or
//! leaves it torn, where the kernel's AIO had finished it.
//! `UAIO_DURABLE_SUBMIT=1` ([`durable_submit`]) trades the no-wait rule
//! for the kernel's behaviour there.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use uaio_abi::{RWF_APPEND, RWF_DSYNC, RWF_NOAPPEND, RWF_NOSIGNAL, RWF_SYNC};

use crate::backend::FileKey;
use crate::sys::process::Leaked;
use crate::sys::procfs::ProcFile;
use crate::sys::{self, FdInfo};

/// The share of the free-run ceiling (one part in this many) kept out of
/// the inline writes' budget.
const MARGIN_PARTS: u64 = 8;

/// Largest write run inline: bigger ones go to the backend, where a long
/// copy does not hold up `io_submit`.
const INLINE_WRITE_MAX: u64 = 1 << 20;
/// Page size assumed for partial-page checks (x86-64).
const PAGE: u64 = 4096;
/// Free space ext4 must keep, beyond twice the dirty data, for inline writes.
const FREE_SPACE_MARGIN: u64 = 256 << 20;

/// Buffered writes to regular files in flight in a backend, in the whole
/// process ([`SPANS`] holds their bytes).
static BACKEND_WRITES: AtomicU32 = AtomicU32::new(0);

/// The bytes a buffered write covers in its file: `[start, end)`.
pub(crate) type Span = (u64, u64);

/// A buffered write's file and bytes.
pub(crate) type FileSpan = (FileKey, Span);

/// A buffered write in a backend: its number, file and bytes.
#[derive(Debug)]
struct InFlight {
    id: u64,
    file: FileKey,
    span: Span,
}

/// Every buffered write of the process in a backend, until it completes.
/// A write done inline must not overtake one of them that covers any of
/// its bytes (the kernel's ran one after the other, inside `io_submit`,
/// and the later one's bytes are what the file keeps); one that covers
/// other bytes of the file, or another file, leaves the file as it would
/// be in either order, and runs inline. A `fork` child starts afresh (the
/// parent's requests are not its own, and a parent's thread may have held
/// the lock).
static SPANS: Leaked<Mutex<Vec<InFlight>>> = Leaked::new();

/// The number of the next write entered in [`SPANS`] (0: none).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The bytes of a buffered write of `count` bytes at `off` with flags
/// `rw_flags` on `f`: the whole file when it appends (its position is the
/// end of the file when it runs).
pub(crate) fn span_of(f: &FdInfo, rw_flags: u32, off: u64, count: u64) -> Span {
    if appends(f.flags, rw_flags) {
        (0, u64::MAX)
    } else {
        (off, off.saturating_add(count.max(1)))
    }
}

/// Whether a write with `rw_flags` on a descriptor with status `flags`
/// goes to the end of the file (`RWF_APPEND`, or `O_APPEND` without
/// `RWF_NOAPPEND`).
pub(crate) fn appends(flags: u32, rw_flags: u32) -> bool {
    rw_flags & RWF_APPEND != 0 || (flags & libc::O_APPEND as u32 != 0 && rw_flags & RWF_NOAPPEND == 0)
}

/// Whether two spans share a byte.
pub(crate) fn overlap(a: Span, b: Span) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A buffered write of `span` in `file` went to a backend; returns its
/// number for [`backend_write_ended`].
pub(crate) fn backend_write_started(file: FileKey, span: Span) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    crate::sync::lock(SPANS.get_or_init(Mutex::default)).push(InFlight { id, file, span });
    BACKEND_WRITES.fetch_add(1, Ordering::SeqCst);
    id
}

/// The backend's write `id` completed (or failed, or was cancelled).
pub(crate) fn backend_write_ended(id: u64) {
    let mut spans = crate::sync::lock(SPANS.get_or_init(Mutex::default));
    if let Some(i) = spans.iter().position(|w| w.id == id) {
        spans.swap_remove(i);
        BACKEND_WRITES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a buffered write of some of `span`'s bytes in `file` is still
/// to run: one of `earlier` (the call's on their way to a backend), or one
/// in a backend.
pub(crate) fn follows_write(earlier: &[FileSpan], file: FileKey, span: Span) -> bool {
    earlier.iter().any(|&(k, s)| k == file && overlap(s, span)) || behind_backend_write(file, span)
}

/// `UAIO_DURABLE_SUBMIT=1`: every buffered write to a regular file, and
/// every `O_DIRECT` write that extends its file, runs inside `io_submit`
/// (unless it must follow a write still in a backend), as kernel AIO does
/// them there, waiting for the device where the kernel's waits (a partial
/// page to read, `O_SYNC`, throttling; ext4 finishes a direct write that
/// extends the file before its `io_submit` returns). A program killed as
/// `io_submit` returns then keeps such writes whole. Read by
/// [`note_submit_modes`] at each `io_setup`.
#[inline]
pub(crate) fn durable_submit() -> bool {
    DURABLE_SUBMIT.load(Ordering::Relaxed)
}

static DURABLE_SUBMIT: AtomicBool = AtomicBool::new(false);

/// `UAIO_READS_IN_SUBMIT=1`: every buffered read of a regular file or
/// block device runs inside `io_submit` (unless it must follow a write
/// still in a backend), as kernel AIO reads them there, waiting for the
/// device when its pages are not cached. Its buffer then holds the bytes
/// when `io_submit` returns, as some programs assume (sysbench's `fileio`
/// test with `--validate=on` in its `async` mode checks a read's buffer
/// right after `io_submit`). Read by [`note_submit_modes`] at each
/// `io_setup`.
#[inline]
pub(crate) fn reads_in_submit() -> bool {
    READS_IN_SUBMIT.load(Ordering::Relaxed)
}

static READS_IN_SUBMIT: AtomicBool = AtomicBool::new(false);

/// Reads `UAIO_DURABLE_SUBMIT` and `UAIO_READS_IN_SUBMIT` (at `io_setup`,
/// which may allocate, unlike `io_submit`, which a signal handler may
/// call).
pub(crate) fn note_submit_modes() {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
    DURABLE_SUBMIT.store(set("UAIO_DURABLE_SUBMIT"), Ordering::Relaxed);
    READS_IN_SUBMIT.store(set("UAIO_READS_IN_SUBMIT"), Ordering::Relaxed);
}

/// Whether some buffered write is in a backend now (one atomic load).
#[inline]
pub(crate) fn backend_writes_pending() -> bool {
    BACKEND_WRITES.load(Ordering::SeqCst) != 0
}

/// Whether a buffered write in a backend covers a byte of `span` in
/// `file` (also when that cannot be known without waiting for the lock).
pub(crate) fn behind_backend_write(file: FileKey, span: Span) -> bool {
    if BACKEND_WRITES.load(Ordering::SeqCst) == 0 {
        return false;
    }
    let Some(spans) = SPANS.get() else { return false };
    let spans = match spans.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return true,
    };
    spans.iter().any(|w| w.file == file && overlap(w.span, span))
}

/// Whether the buffered write of `count` bytes at `off` (not `RWF_NOWAIT`,
/// flags `rw_flags` without `RWF_HIPRI`) on `f` runs inline (see the module
/// documentation). `f` refuses `RWF_NOWAIT` buffered writes. The caller has
/// checked that it follows no earlier write of the same bytes still to run
/// ([`behind_backend_write`]).
pub(crate) fn may_write_inline(f: &mut FdInfo, rw_flags: u32, off: u64, count: u64) -> bool {
    let sync = (libc::O_DSYNC | libc::O_SYNC) as u32;
    if count == 0 {
        return false;
    }
    // RWF_NOSIGNAL only spares a pipe's or socket's writer SIGPIPE: a
    // regular file's write is the same with it (SIGXFSZ included);
    // RWF_APPEND and RWF_NOAPPEND only choose the position.
    let plain = RWF_APPEND | RWF_NOAPPEND | RWF_NOSIGNAL;
    if count > INLINE_WRITE_MAX || rw_flags & !plain != 0 || f.flags & sync != 0 {
        // Only a memory file takes these inline: its syncs have no device
        // to wait for, and a long copy is what the kernel's io_submit does
        // too (in a backend, the write was not the kernel's yet when
        // io_submit returned, and a program killed then lost it).
        return rw_flags & !(plain | RWF_DSYNC | RWF_SYNC) == 0 && write_fs(f) == WriteFs::Memory;
    }
    let stable = match write_fs(f) {
        WriteFs::Memory => return true,
        WriteFs::Delalloc => false,
        WriteFs::StableDelalloc => true,
        WriteFs::Other => return false,
    };
    // O_APPEND and RWF_APPEND write at the end of the file, wherever that
    // is when the write runs: the partial-page check needs the position.
    let append = appends(f.flags, rw_flags);
    let at = if append {
        let Some(size) = crate::sys::file_size(f.fd) else { return false };
        size
    } else {
        off
    };
    if !edges_ready(f.fd, f.readable(), at, count) || (stable && !out_of_writeback(f.fd, at, count)) {
        return false;
    }
    budget::take(count)
}

/// The first and last pages of `[off, off + count)` need no read from the
/// device: each is covered whole, or cached and up to date, or starts at
/// or past the end of the file. `readable`: `fd` was opened for reading
/// (see [`page_ready`]).
fn edges_ready(fd: i32, readable: bool, off: u64, count: u64) -> bool {
    let end = off + count;
    let first = off / PAGE * PAGE;
    let last = (end - 1) / PAGE * PAGE;
    let head_partial = !off.is_multiple_of(PAGE) || (first == last && !end.is_multiple_of(PAGE));
    let tail_partial = !end.is_multiple_of(PAGE) && last != first;
    let ready = |at| if readable { page_ready(fd, at) } else { page_ready_write_only(fd, at) };
    (!head_partial || ready(first)) && (!tail_partial || ready(last))
}

/// No page of `[off, off + count)` is under writeback (`cachestat`), so a
/// write into them on a device with stable writes does not wait for one
/// to end; `false` when that cannot be told.
fn out_of_writeback(fd: i32, off: u64, count: u64) -> bool {
    sys::cachestat(fd, off, count).is_some_and(|c| c[2] == 0)
}

/// A one-byte `RWF_NOWAIT` read of the page at `at`: data means the page is
/// cached and up to date, 0 that it lies at or past the end of the file.
fn page_ready(fd: i32, at: u64) -> bool {
    let mut b = 0u8;
    sys::probe_read(fd, &mut b, at as i64, uaio_abi::RWF_NOWAIT) >= 0
}

/// [`page_ready`] for a descriptor opened write-only (a log file opened
/// `O_WRONLY | O_APPEND`, say), which cannot read: `cachestat` (allowed on
/// a descriptor open for writing) shows the page in the cache, or a fresh
/// look at the file's size shows it at or past the end. `cachestat` cannot
/// tell a cached page that is up to date from one whose read is still on
/// its way or failed (or, where blocks are smaller than pages, from one
/// whose other blocks only are up to date): a write into such a page waits
/// for that read inside `io_submit`, as the kernel's does. Before, every
/// partial-page write of such a descriptor went to the backend, and its
/// event came after `io_submit` returned.
fn page_ready_write_only(fd: i32, at: u64) -> bool {
    sys::cachestat(fd, at, PAGE).is_some_and(|c| c[0] > 0) || sys::file_size(fd).is_some_and(|size| at >= size)
}

/// `statfs` magic of ext2/3/4.
pub(crate) const EXT4_SUPER_MAGIC: i64 = 0xEF53;
/// `statfs` magic of XFS.
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
/// `statfs` magic of tmpfs.
pub(crate) const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `statfs` magic of ramfs.
pub(crate) const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// What a file's file system makes of a buffered write (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFs {
    /// ext2/3/4 with delayed allocation, or XFS, with room to spare: inline
    /// when the edges and the dirty-page budget allow.
    Delalloc,
    /// [`WriteFs::Delalloc`] on a device that asks for stable writes: also
    /// only when no page the write covers is under writeback.
    StableDelalloc,
    /// tmpfs without swap, or ramfs: no device behind the write.
    Memory,
    /// Anything else: the backend. btrfs, for one, waits for writeback of
    /// the range it overwrites.
    Other,
}

/// Whether `f` is a regular file of a memory file system with no device
/// behind it (tmpfs without swap, or ramfs; see the module documentation).
pub(crate) fn memory_file(f: &mut FdInfo) -> bool {
    // (tmpfs and ramfs have anonymous device numbers, major 0.)
    if !f.is_regular() || libc::major(f.dev()) != 0 {
        return false;
    }
    if let Some(k) = f.write_fs {
        return k == WriteFs::Memory;
    }
    // Without the rest of `write_fs`'s look (free space, dirty pages, the
    // device), which a read needs not.
    fs_magic(f).is_some_and(memory_fs)
}

/// Whether the file system of `statfs` magic `kind` keeps its files in
/// memory with no device behind them: ramfs, or tmpfs without swap.
fn memory_fs(kind: i64) -> bool {
    kind == RAMFS_MAGIC || (kind == TMPFS_MAGIC && no_swap())
}

/// The kind of `f`'s file system, found out once per call.
fn write_fs(f: &mut FdInfo) -> WriteFs {
    if let Some(k) = f.write_fs {
        return k;
    }
    // Found out again at most once per tick by each thread for a file it
    // writes call after call: the facts below are kept for longer, but
    // their look-ups (a lock and a clock read each) cost a few percent of a
    // cached 4 KiB write.
    let k = f.recalled_write_fs().unwrap_or_else(|| {
        let k = write_fs_uncached(f);
        f.remember_write_fs(k);
        k
    });
    f.write_fs = Some(k);
    k
}

fn write_fs_uncached(f: &mut FdInfo) -> WriteFs {
    let dev = f.dev();
    let Some((kind, free)) = fs_facts(f, dev) else { return WriteFs::Other };
    if matches!(kind, RAMFS_MAGIC | TMPFS_MAGIC) {
        return if memory_fs(kind) { WriteFs::Memory } else { WriteFs::Other };
    }
    if free < FREE_SPACE_MARGIN.saturating_add(budget::dirty_bytes().saturating_mul(2)) {
        return WriteFs::Other;
    }
    match kind {
        EXT4_SUPER_MAGIC if !mount_allows(dev) => WriteFs::Other,
        EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC => match device_holds_writers(dev) {
            DeviceHold::Nothing => WriteFs::Delalloc,
            DeviceHold::StableWrites => WriteFs::StableDelalloc,
            DeviceHold::Throttles => WriteFs::Other,
        },
        _ => WriteFs::Other,
    }
}

/// What a block device does to a buffered write by itself, whatever the
/// system's dirty pages ([`device_holds_writers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceHold {
    /// Nothing.
    Nothing,
    /// It asks for stable writes (`queue/stable_writes`): a write into a
    /// page under writeback waits for that writeback to end.
    StableWrites,
    /// Its writeback has a limit of its own (`bdi/strict_limit`): the
    /// kernel throttles writers by that device's dirty pages against its
    /// share of the threshold, which the budget does not see; or sysfs does
    /// not tell.
    Throttles,
}

/// How long [`device_holds_writers`] trusts what it saw, in nanoseconds
/// (both settings can be changed at any time through sysfs).
const DEVICE_FACTS_AGE: u64 = 1_000_000_000;

/// What the block device `dev` (or the disk it is a partition of) does to
/// a buffered write by itself, whatever the system's dirty pages (see
/// [`DeviceHold`]). Looked at once a second per device.
fn device_holds_writers(dev: u64) -> DeviceHold {
    static SEEN: PerDevice<DeviceHold> = PerDevice::new();
    let now = sys::coarse_clock_ns();
    match SEEN.fresh(dev, now, DEVICE_FACTS_AGE) {
        Some(Some(hold)) => return hold,
        Some(None) => {}
        // Another thread is looking: not inline this time.
        None => return DeviceHold::Throttles,
    }
    let hold = device_settings(dev);
    SEEN.record(dev, now, hold);
    hold
}

/// [`device_holds_writers`] read from sysfs now: a partition's settings are
/// its disk's. A device sysfs does not show (no `/sys` in a sandbox) counts
/// as throttling: nothing tells it does not. A stable-writes setting that
/// cannot be read counts as set (which costs a `cachestat` per write).
fn device_settings(dev: u64) -> DeviceHold {
    let base = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let set = |path: String| sys::procfs::read_path(&path).map(|v| v.trim() != "0");
    for dir in [base.clone(), format!("{base}/..")] {
        match set(format!("{dir}/bdi/strict_limit")) {
            Some(true) => return DeviceHold::Throttles,
            Some(false) if set(format!("{dir}/queue/stable_writes")) == Some(false) => return DeviceHold::Nothing,
            Some(false) => return DeviceHold::StableWrites,
            None => {}
        }
    }
    DeviceHold::Throttles
}

/// The system has no swap space, as seen at most [`FS_FACTS_AGE`] ago.
fn no_swap() -> bool {
    /// Coarse clock of the last look (0: never), and its answer.
    static AT: AtomicU64 = AtomicU64::new(0);
    static NONE: AtomicBool = AtomicBool::new(false);
    let now = sys::coarse_clock_ns().max(1);
    let at = AT.load(Ordering::Acquire);
    if at != 0 && now.saturating_sub(at) < FS_FACTS_AGE {
        return NONE.load(Ordering::Relaxed);
    }
    let none = sys::total_swap() == Some(0);
    NONE.store(none, Ordering::Relaxed);
    AT.store(now, Ordering::Release);
    none
}

/// The `statfs` magic of `f`'s file system, from what [`fs_facts`] saw of
/// its device, once per call.
pub(crate) fn fs_magic(f: &mut FdInfo) -> Option<i64> {
    if let Some(m) = f.fs_magic {
        return m;
    }
    let dev = f.dev();
    let m = fs_facts(f, dev).map(|(kind, _)| kind);
    f.fs_magic = Some(m);
    m
}

/// The file system's magic and free bytes, by device number: a `statfs`
/// at most every [`FS_FACTS_AGE`] per device (free space moves slowly next
/// to the margin it is checked against).
fn fs_facts(f: &mut FdInfo, dev: u64) -> Option<(i64, u64)> {
    static SEEN: PerDevice<(i64, u64)> = PerDevice::new();
    let now = sys::coarse_clock_ns();
    if let Some(Some(facts)) = SEEN.fresh(dev, now, FS_FACTS_AGE) {
        return Some(facts);
    }
    let st = f.fs()?;
    let facts = (st.f_type, st.f_bfree.saturating_mul(st.f_bsize as u64));
    SEEN.record(dev, now, facts);
    Some(facts)
}

/// What was found out about a device number, and when (16 devices at
/// most, the oldest going first); never waited for.
struct PerDevice<T>(Mutex<Vec<(u64, u64, T)>>);

impl<T: Copy> PerDevice<T> {
    const fn new() -> Self {
        PerDevice(Mutex::new(Vec::new()))
    }

    /// What was found about `dev` less than `age` nanoseconds before `now`
    /// (`Some(None)`: nothing), or `None` when another thread holds the
    /// record ([`try_locked`]).
    fn fresh(&self, dev: u64, now: u64, age: u64) -> Option<Option<T>> {
        let seen = try_locked(&self.0)?;
        Some(seen.iter().find(|e| e.0 == dev && now.saturating_sub(e.1) < age).map(|e| e.2))
    }

    /// Records `value` for `dev` at `now` (not when another thread holds
    /// the record).
    fn record(&self, dev: u64, now: u64, value: T) {
        if let Some(mut seen) = try_locked(&self.0) {
            seen.retain(|e| e.0 != dev);
            if seen.len() >= 16 {
                seen.remove(0);
            }
            seen.push((dev, now, value));
        }
    }
}

/// How long [`fs_facts`] trusts what it saw, in nanoseconds.
const FS_FACTS_AGE: u64 = 100_000_000;

/// Per device number: whether its mount keeps delayed allocation (neither
/// `nodelalloc` nor `data=journal`), from `/proc/self/mountinfo`.
fn mount_allows(dev: u64) -> bool {
    static SEEN: PerDevice<bool> = PerDevice::new();
    // Kept for good: a mount's options stay.
    match SEEN.fresh(dev, 0, u64::MAX) {
        Some(Some(ok)) => return ok,
        Some(None) => {}
        None => return false,
    }
    let ok = sys::procfs::read(ProcFile::Mountinfo).is_some_and(|text| {
        let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
        let mut found = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.get(2) != Some(&want.as_str()) {
                continue;
            }
            found = true;
            // The super block's options are the last field.
            let opts = fields.last().copied().unwrap_or("");
            if opts.split(',').any(|o| o == "nodelalloc" || o == "data=journal") {
                return false;
            }
        }
        found
    });
    SEEN.record(dev, 0, ok);
    ok
}

/// The lock, unless another thread holds it (or held it when this process
/// was forked from its parent, or the caller is a signal handler that
/// interrupted its holder): the callers then answer "not inline", so that
/// nothing here ever waits.
fn try_locked<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// In a fork child: the parent's requests are not the child's.
pub(crate) fn after_fork_in_child() {
    SPANS.replace(Mutex::default());
    BACKEND_WRITES.store(0, Ordering::SeqCst);
}

/// The dirty-page budget of inline writes.
mod budget {
    use super::*;

    /// Bytes inline writes may still dirty before the next look.
    static LEFT: AtomicI64 = AtomicI64::new(0);
    /// Coarse tick of the last look.
    static TICK: AtomicU64 = AtomicU64::new(0);
    /// Dirty and writeback bytes at the last look.
    static DIRTY: AtomicU64 = AtomicU64::new(0);
    static LOOKING: Mutex<()> = Mutex::new(());

    /// Dirty and writeback bytes in the system, as last seen.
    pub(super) fn dirty_bytes() -> u64 {
        refresh();
        DIRTY.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes from the budget; `false` when there is not enough.
    pub(super) fn take(n: u64) -> bool {
        refresh();
        let n = n as i64;
        if LEFT.fetch_sub(n, Ordering::Relaxed) >= n {
            true
        } else {
            LEFT.fetch_add(n, Ordering::Relaxed);
            false
        }
    }

    /// Looks at the system's dirty memory again once per coarse tick.
    fn refresh() {
        let tick = sys::coarse_clock_ns();
        if TICK.load(Ordering::Relaxed) == tick {
            return;
        }
        // One thread looks; the others use the budget as it is.
        let Ok(_g) = LOOKING.try_lock() else { return };
        if TICK.load(Ordering::Relaxed) == tick {
            return;
        }
        let (dirty, ceiling) = look().unwrap_or((u64::MAX / 4, 0));
        DIRTY.store(dirty, Ordering::Relaxed);
        let room = (ceiling - ceiling / MARGIN_PARTS).saturating_sub(dirty);
        LEFT.store(room.min(i64::MAX as u64) as i64, Ordering::Relaxed);
        TICK.store(tick, Ordering::Relaxed);
    }

    /// [`look`], for the unit tests.
    #[cfg(test)]
    pub(super) fn look_for_test() -> Option<(u64, u64)> {
        look()
    }

    /// Dirty plus writeback bytes, and the free-run ceiling, in bytes.
    ///
    /// The kernel's thresholds (`domain_dirty_limits`) are shares of its
    /// "dirtyable" memory: free pages plus the file LRU lists (less a
    /// small reserve, which the margin covers), taken here from
    /// `/proc/meminfo`. Not from `/proc/vmstat`: on Linux 6.18 its
    /// `nr_free_pages` can be a quarter of `MemFree` (seen on this
    /// project's test machines, whose kernel's `DirtyThresh` matched
    /// `MemFree`), which put the ceiling at a fifth of the kernel's.
    fn look() -> Option<(u64, u64)> {
        let info = sys::procfs::read(ProcFile::Meminfo)?;
        let kib = |k: &str| {
            info.lines().find_map(|l| {
                let v = l.strip_prefix(k)?.strip_prefix(':')?.trim_start();
                v.strip_suffix(" kB").unwrap_or(v).trim().parse::<u64>().ok().map(|v| v * 1024)
            })
        };
        let dirty = kib("Dirty")? + kib("Writeback")?;
        let dirtyable = kib("MemFree")? + kib("Active(file)")? + kib("Inactive(file)")?;
        Some((dirty, free_run_ceiling(dirtyable, settings()?)))
    }

    /// `vm.dirty_bytes`, `vm.dirty_ratio`, `vm.dirty_background_bytes` and
    /// `vm.dirty_background_ratio`, read again once a second.
    fn settings() -> Option<[u64; 4]> {
        static SEEN: Mutex<Option<(u64, [u64; 4])>> = Mutex::new(None);
        let now = sys::coarse_clock_ns();
        if let Some((at, v)) = *try_locked(&SEEN)? {
            if now.saturating_sub(at) < 1_000_000_000 {
                return Some(v);
            }
        }
        let read = |f: ProcFile| -> Option<u64> { sys::procfs::read(f)?.trim().parse().ok() };
        let v = [
            read(ProcFile::DirtyBytes)?,
            read(ProcFile::DirtyRatio)?,
            read(ProcFile::DirtyBackgroundBytes)?,
            read(ProcFile::DirtyBackgroundRatio)?,
        ];
        if let Some(mut seen) = try_locked(&SEEN) {
            *seen = Some((now, v));
        }
        Some(v)
    }

    /// The free-run ceiling for `dirtyable` bytes and the settings
    /// `[dirty_bytes, dirty_ratio, dirty_background_bytes,
    /// dirty_background_ratio]`: midway between the background and the
    /// foreground thresholds, where a byte setting, when not 0, replaces
    /// its ratio, and a background threshold not below the foreground one
    /// counts as half of it (`domain_dirty_limits`).
    pub(super) fn free_run_ceiling(dirtyable: u64, [fg_bytes, fg_ratio, bg_bytes, bg_ratio]: [u64; 4]) -> u64 {
        let threshold = |bytes: u64, ratio: u64| if bytes > 0 { bytes } else { dirtyable / 100 * ratio };
        let fg = threshold(fg_bytes, fg_ratio);
        let mut bg = threshold(bg_bytes, bg_ratio);
        if bg >= fg {
            bg = fg / 2;
        }
        (fg + bg) / 2
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    /// A file of two pages, written and flushed, read at random (no
    /// readahead: a probe of one page starts a read of that page only).
    fn two_page_file() -> std::fs::File {
        let mut f = tempfile::tempfile_in("/var/tmp").expect("temp file");
        f.write_all(&[7u8; 8192]).expect("write");
        f.sync_all().expect("fsync");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).expect("fadvise");
        f
    }

    /// Drops the (clean) file from the page cache; whether it went. A page
    /// still being read (a probe starts the read of the page it looks at)
    /// is locked, and `POSIX_FADV_DONTNEED` passes over it: a blocking
    /// read of the whole file first waits for such reads to end. A page
    /// another processor still holds in its batch of pages on their way to
    /// the LRU lists is passed over too, so the eviction is tried again
    /// until `cachestat` (which reads nothing) shows the file gone.
    fn evict(f: &std::fs::File) -> bool {
        let drop_all = || {
            let mut b = [0u8; 8192];
            std::os::unix::fs::FileExt::read_exact_at(f, &mut b, 0).expect("read");
            rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        };
        for _ in 0..50 {
            drop_all();
            match sys::cached_pages(f.as_raw_fd(), 0, 8192) {
                Some(0) => return true,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                None => {
                    // No cachestat: the probes tell, and the file is
                    // dropped again after them.
                    let gone = !page_ready(f.as_raw_fd(), 0) && !page_ready(f.as_raw_fd(), 4096);
                    drop_all();
                    return gone;
                }
            }
        }
        false
    }

    #[test]
    fn whole_pages_need_no_look_and_partial_ones_need_the_cache() {
        let f = two_page_file();
        let fd = f.as_raw_fd();
        assert!(edges_ready(fd, true, 0, 4096));
        assert!(edges_ready(fd, true, 4096, 4096));
        assert!(edges_ready(fd, true, 8192 + 10, 100), "past the end: nothing to read");
        // Each look below starts the read of the page it probes, so the
        // file is evicted again before the next. That read can end before
        // the look does: the disk's interrupt comes on the looking
        // processor and completes the read first (seen in 4 of 12 runs
        // pinned to the processor that takes the disk's interrupts here,
        // in none of 12 on the other). So each span is looked at up to 6
        // times, from each processor in turn; a look that finds the edge
        // ready must have read it in (it looked), and one must find it not
        // ready unless every look was answered at once.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (off, count) in [(10, 100), (4096, 4000), (0, 4097)] {
            let edge = if off % 4096 != 0 { off / 4096 * 4096 } else { (off + count - 1) / 4096 * 4096 };
            let mut not_ready = false;
            for attempt in 0..6 {
                let mut set = rustix::thread::CpuSet::new();
                set.set(attempt % cpus);
                let _ = rustix::thread::sched_setaffinity(None, &set);
                if !evict(&f) {
                    println!("skipped the uncached half: the page cache kept the file after POSIX_FADV_DONTNEED");
                    return;
                }
                if !edges_ready(fd, true, off, count) {
                    not_ready = true;
                    break;
                }
                if let Some(n) = sys::cached_pages(fd, edge, 4096) {
                    assert!(n > 0, "{off} {count}: found ready, but nothing read the page at {edge}");
                }
            }
            if !not_ready {
                println!("{off} {count}: the disk answered all 6 looks at once; the not-ready answer was not seen");
            }
        }
        // Reading the pages brings them in.
        let mut b = [0u8; 8192];
        assert_eq!(std::os::unix::fs::FileExt::read_at(&f, &mut b, 0).expect("read"), 8192);
        assert!(edges_ready(fd, true, 10, 100));
        assert!(edges_ready(fd, true, 4000, 200));
    }

    #[test]
    fn a_write_only_descriptor_finds_cached_pages_and_the_end_of_the_file() {
        let f = two_page_file();
        let path = format!("/proc/self/fd/{}", f.as_raw_fd());
        let w = std::fs::OpenOptions::new().write(true).open(path).expect("reopen write-only");
        let fd = w.as_raw_fd();
        // A write-only descriptor cannot read: the one-byte probe fails.
        assert!(!page_ready(fd, 0));
        let mut b = [0u8; 8192];
        assert_eq!(std::os::unix::fs::FileExt::read_at(&f, &mut b, 0).expect("read"), 8192);
        assert!(page_ready_write_only(fd, 0) && page_ready_write_only(fd, 4096));
        assert!(edges_ready(fd, false, 10, 100) && edges_ready(fd, false, 4000, 200));
        assert!(page_ready_write_only(fd, 8192), "at the end: nothing to read");
        assert!(edges_ready(fd, false, 8192 + 10, 100));
        if sys::cached_pages(fd, 0, 8192).is_none() {
            println!("skipped the uncached half: no cachestat here");
            return;
        }
        if !evict(&f) {
            println!("skipped the uncached half: the page cache kept the file after POSIX_FADV_DONTNEED");
            return;
        }
        // Unlike the probe, cachestat reads nothing in: the answer stays.
        assert!(!page_ready_write_only(fd, 0) && !page_ready_write_only(fd, 4096));
        assert!(!edges_ready(fd, false, 10, 100) && !edges_ready(fd, false, 4000, 200));
        assert!(edges_ready(fd, false, 0, 8192), "whole pages need no look");
    }

    #[test]
    fn synchronous_and_dontcache_writes_never_run_inline() {
        let f = tempfile::tempfile_in("/var/tmp").expect("temp file");
        let mut info = FdInfo::get(f.as_raw_fd() as u32).expect("open");
        for flags in [uaio_abi::RWF_DSYNC, uaio_abi::RWF_SYNC, uaio_abi::RWF_DONTCACHE] {
            assert!(!may_write_inline(&mut info, flags, 0, 4096));
        }
        assert!(!may_write_inline(&mut info, 0, 0, 0));
        assert!(!may_write_inline(&mut info, 0, 0, INLINE_WRITE_MAX + 1));
        info.flags |= libc::O_DSYNC as u32;
        assert!(!may_write_inline(&mut info, 0, 0, 4096));
    }

    #[test]
    fn rwf_nosignal_leaves_a_file_write_inline() {
        let f = tempfile::tempfile_in("/var/tmp").expect("temp file");
        let mut info = FdInfo::get(f.as_raw_fd() as u32).expect("open");
        // A whole page at the end of an empty file: the rule lets it run
        // inline wherever the budget allows; with the flag, the same.
        let plain = may_write_inline(&mut info, 0, 0, 4096);
        assert_eq!(may_write_inline(&mut info, uaio_abi::RWF_NOSIGNAL, 0, 4096), plain);
    }

    #[test]
    fn the_budget_is_the_room_below_seven_eighths_of_the_free_run_ceiling() {
        let (dirty, ceiling) = budget::look_for_test().expect("/proc/meminfo and vm.dirty_* readable");
        assert!(ceiling > 0);
        println!("dirty {dirty} bytes, free-run ceiling {ceiling} bytes");
        // More than the whole ceiling is never granted, and a refusal takes nothing.
        assert!(!budget::take(ceiling));
        assert!(!budget::take(ceiling));
        if dirty < ceiling / 2 {
            assert!(budget::take(4096));
        }
    }

    /// The kernel's own thresholds, from debugfs (`DirtyThresh` and
    /// `BackgroundThresh` of any device's `bdi/*/stats`, in KiB), mounted
    /// for the test at a private directory when it is not mounted already.
    fn kernel_thresholds() -> Result<(u64, u64), String> {
        let from = |dir: &std::path::Path| -> Option<(u64, u64)> {
            let stats = std::fs::read_dir(dir.join("bdi")).ok()?.flatten().next()?.path().join("stats");
            let text = std::fs::read_to_string(stats).ok()?;
            let kib = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
            };
            Some((kib("DirtyThresh")? * 1024, kib("BackgroundThresh")? * 1024))
        };
        if let Some(t) = from(std::path::Path::new("/sys/kernel/debug")) {
            return Ok(t);
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let run = |args: &[&std::ffi::OsStr]| {
            std::process::Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success())
        };
        if !run(&["mount".as_ref(), "-t".as_ref(), "debugfs".as_ref(), "debugfs".as_ref(), dir.path().as_os_str()]) {
            return Err("debugfs is not mounted and `mount -t debugfs` failed".to_string());
        }
        let t = from(dir.path());
        run(&["umount".as_ref(), "-l".as_ref(), dir.path().as_os_str()]);
        t.ok_or_else(|| "debugfs shows no bdi/*/stats".to_string())
    }

    #[test]
    fn the_free_run_ceiling_is_the_kernels() {
        let (fg, bg) = match kernel_thresholds() {
            Ok(t) => t,
            Err(why) => {
                println!("skipped: the kernel's thresholds cannot be read ({why})");
                return;
            }
        };
        let kernel = (fg + bg) / 2;
        let (_, ours) = budget::look_for_test().expect("/proc/meminfo and vm.dirty_* readable");
        println!("free-run ceiling: kernel {kernel} bytes, uaio {ours} bytes");
        // The kernel leaves its page reserve out of the dirtyable memory
        // (well under 2% of it); the rest moves with the page cache between
        // the two looks.
        assert!(ours.abs_diff(kernel) <= kernel / 20, "kernel {kernel}, uaio {ours}");
    }

    #[test]
    fn a_background_threshold_not_below_the_foreground_one_counts_as_half() {
        let gib = 1u64 << 30;
        assert_eq!(budget::free_run_ceiling(100 * gib, [0, 20, 0, 10]), 15 * gib);
        assert_eq!(budget::free_run_ceiling(100 * gib, [0, 20, 0, 30]), 15 * gib);
        assert_eq!(budget::free_run_ceiling(100 * gib, [8 * gib, 20, 0, 10]), 6 * gib);
        assert_eq!(budget::free_run_ceiling(100 * gib, [0, 20, 30 * gib, 10]), 15 * gib);
    }

    /// A loop device over a sparse image, with ext4 mounted on it; its
    /// sysfs settings put back and everything undone on drop.
    struct LoopExt4 {
        dir: std::path::PathBuf,
        dev: Option<String>,
        mnt: Option<std::path::PathBuf>,
        sysfs: Vec<std::path::PathBuf>,
    }

    impl LoopExt4 {
        fn new() -> Result<LoopExt4, String> {
            use std::process::Command;
            let dir = std::env::temp_dir().join(format!("uaio-wb-loop-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("scratch dir: {e}"))?;
            let mut me = LoopExt4 { dir, dev: None, mnt: None, sysfs: Vec::new() };
            let img = me.dir.join("ext4.img");
            std::fs::File::create(&img).and_then(|f| f.set_len(2 << 30)).map_err(|e| format!("image: {e}"))?;
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&img)
                .output()
                .map_err(|e| format!("losetup: {e}"))?;
            if !out.status.success() {
                return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
            me.dev = Some(dev.clone());
            let out =
                Command::new("mkfs.ext4").args(["-q", "-F", &dev]).output().map_err(|e| format!("mkfs.ext4: {e}"))?;
            if !out.status.success() {
                return Err(format!("mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            let mnt = me.dir.join("mnt");
            std::fs::create_dir_all(&mnt).map_err(|e| format!("mount point: {e}"))?;
            let out = Command::new("mount").arg(&dev).arg(&mnt).output().map_err(|e| format!("mount: {e}"))?;
            if !out.status.success() {
                return Err(format!("mount: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
            me.mnt = Some(mnt);
            Ok(me)
        }

        /// Writes `value` to the device's sysfs file `rel` (`bdi/strict_limit`,
        /// `queue/stable_writes`); 0 goes back there on drop.
        fn set(&mut self, rel: &str, value: u32) {
            let name = std::path::Path::new(self.dev.as_deref().expect("device")).file_name().expect("name").to_owned();
            let path = std::path::Path::new("/sys/block").join(name).join(rel);
            std::fs::write(&path, value.to_string()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !self.sysfs.contains(&path) {
                self.sysfs.push(path);
            }
        }
    }

    impl Drop for LoopExt4 {
        fn drop(&mut self) {
            for p in &self.sysfs {
                let _ = std::fs::write(p, "0");
            }
            if let Some(m) = self.mnt.take() {
                let _ = std::process::Command::new("umount").arg(&m).status();
            }
            if let Some(d) = self.dev.take() {
                let _ = std::process::Command::new("losetup").arg("-d").arg(&d).status();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The calling thread in a blkio cgroup whose writes to `majmin` are
    /// throttled to 4 KiB/s (writeback it starts stays in flight for
    /// seconds); back in the root cgroup, the limit lifted, on drop.
    struct SlowWrites {
        cgroup: std::path::PathBuf,
        majmin: String,
    }

    impl SlowWrites {
        fn new(majmin: &str) -> Result<SlowWrites, String> {
            let base = std::path::Path::new("/sys/fs/cgroup/blkio");
            if !base.join("blkio.throttle.write_bps_device").exists() {
                return Err("no cgroup v1 blkio throttle here".into());
            }
            let cgroup = base.join(format!("uaio-wb-test-{}", std::process::id()));
            std::fs::create_dir_all(&cgroup).map_err(|e| format!("cgroup: {e}"))?;
            let me = SlowWrites { cgroup, majmin: majmin.to_string() };
            std::fs::write(me.cgroup.join("blkio.throttle.write_bps_device"), format!("{majmin} 4096"))
                .map_err(|e| format!("throttle: {e}"))?;
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            std::fs::write(me.cgroup.join("tasks"), tid.to_string()).map_err(|e| format!("join: {e}"))?;
            Ok(me)
        }
    }

    impl Drop for SlowWrites {
        fn drop(&mut self) {
            let _ = std::fs::write(self.cgroup.join("blkio.throttle.write_bps_device"), format!("{} 0", self.majmin));
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            let _ = std::fs::write("/sys/fs/cgroup/blkio/tasks", tid.to_string());
            let _ = std::fs::remove_dir(&self.cgroup);
        }
    }

    #[test]
    fn a_device_sysfs_does_not_show_takes_no_inline_write() {
        // No block device has this number: nothing tells its writeback is free.
        assert_eq!(device_settings(libc::makedev(0xfff, 0xf_ffff)), DeviceHold::Throttles);
    }

    #[test]
    fn devices_with_a_writeback_limit_of_their_own_or_stable_writes_hold_inline_writes_back() {
        let mut lo = match LoopExt4::new() {
            Ok(l) => l,
            Err(why) => {
                println!("skipped: no ext4 on a loop device here ({why})");
                return;
            }
        };
        let path = lo.mnt.as_ref().expect("mounted").join("data");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let file = file.expect("file on the loop device");
        let fd = file.as_raw_fd();
        let info = || FdInfo::get(fd as u32).expect("descriptor");
        let mut f = info();
        let dev = f.dev();
        let age = std::time::Duration::from_nanos(DEVICE_FACTS_AGE + 100_000_000);
        assert_eq!(device_settings(dev), DeviceHold::Nothing, "a fresh loop device holds writers back");
        let free = fs_facts(&mut f, dev).expect("statfs").1;
        let room = free > FREE_SPACE_MARGIN + 2 * budget::dirty_bytes();
        if room {
            // The control: a page past the end of the file runs inline where
            // the device holds nothing back.
            assert_eq!(write_fs_uncached(&mut f), WriteFs::Delalloc);
            assert!(may_write_inline(&mut info(), 0, 0, PAGE));
        } else {
            println!("the inline checks are skipped: the system's dirty data leaves too little room on the device");
        }

        // A writeback limit of its own: never inline (seen within a second).
        lo.set("bdi/strict_limit", 1);
        assert_eq!(device_settings(dev), DeviceHold::Throttles, "strict_limit not seen");
        std::thread::sleep(age);
        assert_eq!(write_fs_uncached(&mut f), WriteFs::Other);
        assert!(!may_write_inline(&mut info(), 0, 0, PAGE));
        lo.set("bdi/strict_limit", 0);

        // Stable writes: inline unless a page of the write is under writeback.
        lo.set("queue/stable_writes", 1);
        assert_eq!(device_settings(dev), DeviceHold::StableWrites, "stable_writes not seen");
        std::thread::sleep(age);
        if !room {
            return;
        }
        assert_eq!(write_fs_uncached(&mut f), WriteFs::StableDelalloc);
        assert!(may_write_inline(&mut info(), 0, 0, PAGE), "a page under no writeback");
        let majmin = format!("{}:{}", libc::major(dev), libc::minor(dev));
        let _slow = match SlowWrites::new(&majmin) {
            Ok(s) => s,
            Err(why) => {
                println!("the writeback part is skipped: {why}");
                return;
            }
        };
        let page = [7u8; PAGE as usize];
        use std::os::unix::fs::FileExt;
        file.write_all_at(&page, 0).expect("pwrite");
        file.sync_all().expect("fsync");
        file.write_all_at(&page, 0).expect("pwrite");
        // Starts writeback of the dirty page without waiting for it (the
        // throttle keeps it in flight); the page stays cached meanwhile.
        rustix::fs::fadvise(&file, 0, std::num::NonZeroU64::new(PAGE), rustix::fs::Advice::DontNeed).expect("fadvise");
        let under = sys::cachestat(fd, 0, PAGE).expect("cachestat")[2];
        assert_eq!(under, 1, "the page is not under writeback: the throttle did not hold it");
        assert!(!may_write_inline(&mut info(), 0, 0, PAGE), "a write into a page under writeback ran inline");
        assert!(may_write_inline(&mut info(), 0, PAGE, PAGE), "the next page, under no writeback");
        lo.set("queue/stable_writes", 0);
        drop(file);
    }
}
