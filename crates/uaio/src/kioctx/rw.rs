//! Reads and writes at submission: the checks of `aio_prep_rw` and of the
//! file, the import of the buffer, and the choice between running the
//! request inside `io_submit` (when it cannot wait, as the kernel would)
//! and handing it to the backend.

use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::io::Errno;
use uaio_abi::*;

use super::submit::{buffer_len, BackendRead, CallSpans, Prepared};
use super::validate::{check_ioprio, check_rw_flags, check_rw_flags_file, import_buffer};
use crate::backend::{OpKind, Order};
use crate::sys::{self, FdInfo};
use crate::uaccess::UserPtr;
use crate::writeback;

/// Reads of streams (pipes, sockets, character devices) in a backend now,
/// in the whole process. While there is one, no read of a stream is tried
/// inside `io_submit` ([`stream_reads_pending`]): it could take the bytes
/// an earlier read waits for (kernel AIO's `io_submit` waited in that one
/// until they came). It goes to its backend, which runs a stream's reads
/// one at a time, in submission order (see [`crate::backend::order_key`]).
static STREAM_READS: AtomicUsize = AtomicUsize::new(0);

/// One read of a stream in a backend, counted in [`STREAM_READS`] for as
/// long as its request holds it.
#[derive(Debug)]
pub(super) struct StreamRead(());

impl StreamRead {
    /// Counts a read of a stream handed to the backend (`order`: the one
    /// [`crate::backend::order_key`] gave it, a turn among its stream's
    /// reads), or returns `None` for any other request.
    pub(super) fn of(kind: OpKind, order: Option<Order>) -> Option<StreamRead> {
        if !matches!((kind, order), (OpKind::Read | OpKind::Readv, Some(Order::Member(_)))) {
            return None;
        }
        STREAM_READS.fetch_add(1, Ordering::SeqCst);
        Some(StreamRead(()))
    }
}

impl Drop for StreamRead {
    fn drop(&mut self) {
        STREAM_READS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a read of a stream is in a backend now, anywhere in the process
/// (one atomic load).
#[inline]
pub(super) fn stream_reads_pending() -> bool {
    STREAM_READS.load(Ordering::SeqCst) != 0
}

/// A read or write (`aio_prep_rw` and the file's checks): done here when
/// it cannot wait, else made ready for the backend. `call`: the buffered
/// reads and writes of this call that go to the backend already (their
/// files and bytes), to which this one is added if it goes there too;
/// `every_write`: the backend must see every write.
pub(super) fn prepare_rw(
    cb: &iocb,
    f: &mut FdInfo,
    p: &mut Prepared,
    call: &mut CallSpans,
    every_write: bool,
) -> Result<(), Errno> {
    let write = matches!(cb.aio_lio_opcode, IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV);
    let vectored = matches!(cb.aio_lio_opcode, IOCB_CMD_PREADV | IOCB_CMD_PWRITEV);
    // A write's look at its descriptor may be an earlier call's, not yet
    // confirmed (`Kioctx::prepare_checked`): it is confirmed before any
    // answer but that of the write's own system call inside io_submit.
    // Where the flags turn out to have changed, the write is prepared
    // again with the new look.
    match check_rw(cb, f, p, write).and_then(|()| import_buffer(cb, vectored)) {
        Ok(buffer) => (p.iov, p.addr, p.len) = buffer,
        Err(_) if f.confirm_open()? => return prepare_rw(cb, f, p, call, every_write),
        Err(e) => return Err(e),
    }
    if cb.aio_offset != 0 && f.mode() & libc::S_IFMT == libc::S_IFSOCK {
        if f.confirm_open()? {
            return prepare_rw(cb, f, p, call, every_write);
        }
        // A socket's read_iter and write_iter refuse a position
        // (the request's result; pipes ignore it instead).
        return p.complete(-(libc::ESPIPE as i64));
    }
    let empty = match &p.iov {
        Some(v) => v.iter().all(|e| e.iov_len == 0),
        None => p.len == 0,
    };
    if empty && !write && f.is_anon_inode() {
        // The kernel hands even an empty read to read_iter, and
        // eventfd, timerfd and signalfd refuse reads shorter than
        // their record (io_uring would answer 0 without asking).
        return p.complete(-(libc::EINVAL as i64));
    }
    p.off = cb.aio_offset as u64;
    p.rw_flags = cb.aio_rw_flags & !RWF_HIPRI;
    p.forever = !f.is_regular_or_block();
    let kind = match (write, vectored) {
        (false, false) => OpKind::Read,
        (true, false) => OpKind::Write,
        (false, true) => OpKind::Readv,
        (true, true) => OpKind::Writev,
    };
    // A buffered write to a regular file: its file and bytes, and whether
    // an earlier write of some of those bytes is still to run (this call's,
    // or any in a backend), which it must not overtake. Looked up here only
    // for a buffered write (a read run inline needs no order), and once.
    // (Block devices too: their buffered writes go through the page cache,
    // and a later read of the same bytes must see them.)
    let buffered_write = write && !is_direct(f) && f.is_regular_or_block();
    let order = if buffered_write { f.order_key(kind) } else { None };
    let buffered = match order {
        Some(Order::Member(k)) => Some((k, writeback::span_of(f, p.rw_flags, p.off, buffer_len(p)))),
        _ => None,
    };
    if let Some((k, span)) = buffered {
        // The reads of this call placed before it come first.
        call.settle_reads(k, span);
    }
    // (`|`, not `||`: `behind_direct` marks the direct writes followed.)
    let behind_write = buffered
        .is_some_and(|(k, span)| writeback::follows_write(&call.writes, k, span) | call.behind_direct(k, span))
        || (!write && read_behind_write(f, p.off, buffer_len(p), call));
    if runs_inline(f, p, call, write, empty, behind_write, every_write) {
        let r = inline_rw(cb, f, p, write, empty, behind_write);
        if r == -(libc::EBADF as i64) && f.confirm_open()? {
            // Open still, under other flags (closed: EBADF above, nothing
            // done, as the kernel's io_submit answers).
            return prepare_rw(cb, f, p, call, every_write);
        }
        if r == -(libc::EOPNOTSUPP as i64) && p.rw_flags & RWF_NOWAIT != 0 && f.mode() & libc::S_IFMT == libc::S_IFCHR {
            // A character device that does not take RWF_NOWAIT (most but
            // /dev/null, /dev/zero and the random devices): the system call
            // refused the flag before any transfer, and the kernel's AIO
            // refuses the request in io_submit for the same reason.
            return Err(Errno::OPNOTSUPP);
        }
        return p.complete(r);
    }
    if f.confirm_open()? {
        return prepare_rw(cb, f, p, call, every_write);
    }
    if buffered.is_some() && !behind_write && !every_write && !empty && copies_before_sync(f, p) {
        return copy_then_sync(f, p);
    }
    p.write_span = buffered.map(|(_, span)| span);
    p.order = if buffered_write { order } else { f.order_key(kind) };
    if write && is_direct(f) && appends(f, p.rw_flags) {
        // A direct write at the end of the file finds its position when it
        // runs: such writes take their turns in submission order, as the
        // kernel's, which extend the file one at a time inside io_submit.
        if let Some(Order::After(k)) = p.order {
            p.order = Some(Order::Member(k));
        }
    }
    if write && f.mode() & libc::S_IFMT == libc::S_IFREG {
        // Where the write lands is fixed now, as the kernel fixes it when
        // it takes the request: the file's O_APPEND as it is at this
        // moment, not when the backend runs the write (the program may
        // change its status flags with F_SETFL meanwhile).
        if appends(f, p.rw_flags) {
            p.rw_flags |= RWF_APPEND;
        } else if sys::noappend_supported() {
            p.rw_flags |= RWF_NOAPPEND;
        }
    }
    let kind = if buffered.is_some() && !empty { bounce(p, kind) } else { kind };
    p.kind = Some(kind);
    // (Block devices too: a buffered read of the device after a direct
    // write of its bytes must see them.)
    if write && is_direct(f) && f.is_regular_or_block() {
        if let Some(Order::After(k) | Order::Member(k)) = p.order {
            let span = writeback::span_of(f, p.rw_flags, p.off, buffer_len(p));
            // The call's buffered reads of those bytes placed before it come
            // first, as for a buffered write.
            call.settle_reads(k, span);
            call.direct.push((call.at, (k, span)));
        }
    }
    match (buffered, p.order) {
        (Some((k, span)), _) => call.writes.push((k, span)),
        // A buffered read of a regular file that follows no write: a later
        // write of the call does it first, if it can be done at once.
        (None, Some(Order::After(k))) if !write && !behind_write && !is_direct(f) && f.is_regular_or_block() => {
            let (iov, niov) = p.iov.as_ref().map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len()));
            call.reads.push(BackendRead {
                at: call.at,
                file: k,
                fd: f.fd,
                iov,
                niov,
                one: iovec { iov_base: p.addr, iov_len: p.len as u64 },
                off: p.off,
                count: buffer_len(p),
                rw_flags: p.rw_flags,
                memory: writeback::memory_file(f),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Largest buffered write whose bytes [`bounce`] copies.
const BOUNCE_MAX: u64 = 8 << 20;

/// A buffered write to a file that goes to the backend takes its bytes
/// now, into a buffer the request keeps, as kernel AIO copies them into
/// the page cache inside `io_submit`: the program may fill its buffer
/// again as soon as the call returns (sysbench's `fileio` test refills its
/// one buffer for the next write before reaping; the backend then wrote
/// the new bytes in the old place). Returns the request's kind now (a
/// vectored write becomes a plain one). Left as it was, the backend
/// reading the program's buffer as before, when the copy meets an
/// unreadable page (the write then stops there, or fails with `EFAULT`, as
/// the kernel's), for a write over [`BOUNCE_MAX`], or without the memory.
fn bounce(p: &mut Prepared, kind: OpKind) -> OpKind {
    let total = buffer_len(p);
    if total > BOUNCE_MAX {
        return kind;
    }
    let mut bytes: Vec<u8> = Vec::new();
    if bytes.try_reserve_exact(total as usize).is_err() {
        return kind;
    }
    bytes.resize(total as usize, 0);
    let one = [iovec { iov_base: p.addr, iov_len: p.len as u64 }];
    let parts: &[iovec] = p.iov.as_deref().unwrap_or(&one);
    let mut at = 0usize;
    for v in parts {
        let len = v.iov_len as usize;
        if UserPtr::<u8>::new(v.iov_base).read_slice(&mut bytes[at..at + len]).is_err() {
            return kind;
        }
        at += len;
    }
    let bytes = bytes.into_boxed_slice();
    p.addr = bytes.as_ptr() as u64;
    p.len = total as u32;
    p.iov = None;
    p.bounce = Some(bytes);
    match kind {
        OpKind::Writev => OpKind::Write,
        k => k,
    }
}

/// The checks of a read or write before its buffer: I/O priority, `RWF_*`
/// flags, and the file's access mode and kind.
fn check_rw(cb: &iocb, f: &mut FdInfo, p: &mut Prepared, write: bool) -> Result<(), Errno> {
    f.still_open()?;
    if cb.aio_flags & IOCB_FLAG_IOPRIO != 0 {
        check_ioprio(cb.aio_reqprio)?;
        p.ioprio = cb.aio_reqprio as u16;
    }
    check_rw_flags(cb.aio_rw_flags, write)?;
    check_rw_flags_file(cb.aio_rw_flags, f)?;
    // A file without the operation has no non-blocking mode either (but
    // eventfd, timerfd and signalfd, which have one and no write_iter):
    // the kernel's refusal of RWF_NOWAIT (EOPNOTSUPP) comes first.
    let missing = if cb.aio_rw_flags & RWF_NOWAIT != 0 && !f.is_anon_inode() { Errno::OPNOTSUPP } else { Errno::INVAL };
    if write {
        if !f.writable() {
            return Err(Errno::BADF);
        }
        // Anonymous inodes (eventfd, timerfd, signalfd, epoll...) and
        // hugetlbfs files have no `write_iter`.
        if f.is_anon_inode() || f.is_hugetlbfs() || f.lacks_rw_iter() || f.lacks_write_iter() {
            return Err(missing);
        }
    } else {
        if !f.readable() {
            return Err(Errno::BADF);
        }
        if f.is_dir() || (f.is_anon_inode() && !f.anon_reads_iter()) || f.lacks_rw_iter() || f.lacks_read_iter() {
            return Err(missing);
        }
    }
    Ok(())
}

/// Whether a write with `rw_flags` on `f` goes to the end of the file.
fn appends(f: &FdInfo, rw_flags: u32) -> bool {
    writeback::appends(f.flags, rw_flags)
}

fn is_direct(f: &FdInfo) -> bool {
    f.flags & libc::O_DIRECT as u32 != 0
}

/// Whether a read or write is done inside `io_submit`.
fn runs_inline(
    f: &mut FdInfo,
    p: &Prepared,
    call: &CallSpans,
    write: bool,
    empty: bool,
    behind_write: bool,
    every_write: bool,
) -> bool {
    // Requests that cannot block by definition are done here, as
    // the kernel does, with the file's own answer: RWF_NOWAIT
    // ones, and those on pipes, sockets, eventfds and devices
    // opened O_NONBLOCK (which answer EAGAIN themselves; io_uring
    // would wait for readiness instead).
    let nonblock = f.flags & libc::O_NONBLOCK as u32 != 0 && !f.is_regular_or_block();
    // A read that must follow a buffered write still to run goes to the
    // backend, which orders it; such a write gets the answer it would get
    // at once without writing (`inline_rw`).
    let nowait = p.rw_flags & RWF_NOWAIT != 0 && (!behind_write || write);
    // Except a direct transfer: the system call waits for the
    // device even with RWF_NOWAIT (a synchronous call waits for
    // its bio; only AIO and io_uring return once it is queued),
    // so it goes to the backend, which keeps the flag.
    let direct = is_direct(f);
    // A buffered write to ext4 or XFS runs here, as the
    // kernel's does, when the rule of `writeback` shows it
    // cannot wait for the device.
    let inline_write = write
        && !direct
        && !empty
        && p.rw_flags & RWF_NOWAIT == 0
        && !every_write
        && f.is_regular()
        && !behind_write
        && writeback::may_write_inline(f, p.rw_flags, p.off, buffer_len(p));
    // A direct read or write of a memory file (tmpfs without swap, ramfs),
    // or a buffered read of one in a batch too large for the inline
    // attempt, is a copy between memory, which the kernel's AIO does
    // inside io_submit: done here too, unless a write it could overtake is
    // still to run. (Handed to a backend, a write was not yet the kernel's
    // when io_submit returned: killed at once, the program lost it; and
    // io_uring sends such reads to its workers, so their events were not
    // in the ring when io_submit returned.)
    let memory_copy = if direct {
        !behind_write && call.writes.is_empty() && call.direct.is_empty() && !writeback::backend_writes_pending()
    } else {
        !write && !behind_write
    } && writeback::memory_file(f);
    memory_copy
        || (nowait && !direct)
        || nonblock
        || inline_write
        || (write && !empty && !every_write && past_size_limit(f, p))
        // An empty buffered write to a regular file: the kernel's file
        // systems answer 0 before any check that could wait (so does the
        // system call, before asking them).
        || (write && empty && !every_write && !behind_write && p.rw_flags & RWF_NOWAIT == 0 && !direct && f.is_regular())
        || (write && !empty && !every_write && !behind_write && durable_write(f, p))
        // UAIO_READS_IN_SUBMIT=1: a buffered read of a file, as the
        // kernel's AIO does it, waiting for the device if it must.
        || (!write && !empty && !direct && !behind_write && writeback::reads_in_submit() && f.is_regular_or_block())
        || f.is_memory_device()
        || (write && f.is_kernel_log())
}

/// Whether a write to a regular file is one kernel AIO finishes, or hands
/// to the device, inside `io_submit` while uaio would send it to a backend,
/// and `UAIO_DURABLE_SUBMIT=1` asks for the kernel's way
/// ([`writeback::durable_submit`]): a buffered write, or a direct one that
/// extends the file (ext4 waits for it to complete).
fn durable_write(f: &mut FdInfo, p: &Prepared) -> bool {
    if !writeback::durable_submit() || !f.is_regular() {
        return false;
    }
    !is_direct(f) || appends(f, p.rw_flags) || p.off.saturating_add(buffer_len(p)) > f.size()
}

/// Whether a write to a regular file starts at or past the process's
/// `RLIMIT_FSIZE`: the system call then fails before it moves a byte
/// (`EFBIG`), and raises `SIGXFSZ` in the thread that makes it, which must
/// be the submitting thread, as with the kernel's AIO (a worker of the
/// thread pool blocks the signal; io_uring's workers take no signal).
fn past_size_limit(f: &mut FdInfo, p: &Prepared) -> bool {
    if !f.is_regular() || appends(f, p.rw_flags) {
        return false;
    }
    let over_limit = || sys::file_size_limit().is_some_and(|limit| p.off >= limit);
    if f.size_known() && p.off < f.size() {
        // Inside a file longer than the limit (rare): this thread's
        // answer of the tick first, which costs nothing, then the limit
        // itself.
        return sys::recent_file_size_limit().is_some_and(|limit| p.off >= limit) && over_limit();
    }
    // At or past the end of the file (where a limit lowered a moment ago
    // is met), or with the size unknown (the call's look at the file came
    // from an earlier call): the limit itself, a `getrlimit`.
    over_limit()
}

/// Whether a read of `count` bytes at `off` of `f` must follow a write of
/// some of its bytes still to run: for a buffered read, a buffered write
/// (this call's on their way to the backend, or one in a backend) or a
/// direct write of this call; for a direct read, a direct write of this
/// call (ext4 finishes a direct write that extends the file inside
/// `io_submit`, so a direct read placed after it in the call returns its
/// bytes; a direct read follows the file's buffered writes by its order
/// anyway). Costs nothing while there is none.
pub(super) fn read_behind_write(f: &mut FdInfo, off: u64, count: u64, call: &mut CallSpans) -> bool {
    let direct = is_direct(f);
    let buffered_writes = !direct && (!call.writes.is_empty() || writeback::backend_writes_pending());
    if call.direct.is_empty() && !buffered_writes {
        return false;
    }
    let Some(Order::After(k)) = f.order_key(OpKind::Read) else { return false };
    let span = read_span(f, off, count);
    // Both looked at: the direct writes it follows are marked.
    (buffered_writes && writeback::follows_write(&call.writes, k, span)) | call.behind_direct(k, span)
}

/// The bytes of `f` whose writes a buffered read of `count` bytes at `off`
/// depends on: its own, and, when it reaches past the end of the file (as
/// this call first saw it), every byte from `off` on, since a write that
/// extends the file past `off` lengthens what the read returns (kernel
/// AIO's read, done inside `io_submit` in the call's order, returns the
/// file's length at that point).
pub(super) fn read_span(f: &mut FdInfo, off: u64, count: u64) -> writeback::Span {
    let end = off.saturating_add(count.max(1));
    // A block device has no size in its stat (0), and no write lengthens it.
    if !f.is_block() && end > f.size() {
        (off, u64::MAX)
    } else {
        (off, end)
    }
}

/// Whether a buffered write with `RWF_SYNC` or `RWF_DSYNC` (not
/// `RWF_NOWAIT`) to a file not opened for synchronous writes is copied into
/// the page cache inside `io_submit`: when the rule of `writeback` lets the
/// same write without its flag run inline.
fn copies_before_sync(f: &mut FdInfo, p: &Prepared) -> bool {
    let sync = RWF_SYNC | RWF_DSYNC;
    p.rw_flags & sync != 0
        && p.rw_flags & RWF_NOWAIT == 0
        && writeback::may_write_inline(f, p.rw_flags & !sync, p.off, buffer_len(p))
}

/// A synchronous buffered write that [`copies_before_sync`] chose: its
/// bytes go into the page cache now, as the kernel's do inside
/// `io_submit`, so that the program's reads and writes made after the call
/// find them there, and the sync the flag asks for (`fsync` for
/// `RWF_SYNC`, `fdatasync` for `RWF_DSYNC`, of the bytes written, as the
/// kernel's `generic_write_sync`) goes to the backend, which completes the
/// request with the bytes written, or the sync's error. A copy that fails
/// completes the request with its error at once.
fn copy_then_sync(f: &mut FdInfo, p: &mut Prepared) -> Result<(), Errno> {
    let r = transfer(true, f.fd, p, p.off as i64, p.rw_flags & !(RWF_SYNC | RWF_DSYNC));
    if r <= 0 {
        return p.complete(r);
    }
    let kind = if p.rw_flags & RWF_SYNC != 0 { OpKind::Fsync } else { OpKind::Fdatasync };
    // An appending write's bytes are at an end of file not known here:
    // the whole file is synced.
    (p.off, p.len) = if appends(f, p.rw_flags) { (0, 0) } else { (p.off, r as u32) };
    p.written = r;
    p.addr = 0;
    p.iov = None;
    p.rw_flags = 0;
    p.order = f.order_key(kind);
    p.kind = Some(kind);
    Ok(())
}

/// `preadv2` or `pwritev2` of a prepared request's buffer on `fd` at `off`
/// with `flags`; returns the result.
fn transfer(write: bool, fd: i32, p: &Prepared, off: i64, flags: u32) -> i64 {
    let one = iovec { iov_base: p.addr, iov_len: p.len as u64 };
    let (ptr, n) = match &p.iov {
        Some(v) => (v.as_ptr(), v.len()),
        None => (&one as *const iovec, 1),
    };
    sys::prwv2(write, fd, ptr, n, off, flags).0
}

/// Runs a read or write that [`runs_inline`] chose; returns its result.
fn inline_rw(cb: &iocb, f: &mut FdInfo, p: &Prepared, write: bool, empty: bool, behind_write: bool) -> i64 {
    // Only an RWF_NOWAIT write needs to know.
    let refuses = write && p.rw_flags & RWF_NOWAIT != 0 && f.refuses_nowait_buffered_write();
    if write && empty && p.rw_flags & RWF_NOWAIT != 0 && refuses {
        // The C library answers an empty write itself; the
        // kernel's AIO asks the file system, which refuses.
        -(libc::EOPNOTSUPP as i64)
    } else if write && p.rw_flags & RWF_NOWAIT != 0 && !is_direct(f) && f.is_regular() && !refuses && behind_write {
        // A buffered write of the program's that would not
        // wait, while an earlier one of some of its bytes waits
        // in the backend: done now, it would overtake it. The
        // kernel's own answer when a write cannot be done at once.
        -(libc::EAGAIN as i64)
    } else {
        transfer(write, f.fd, p, cb.aio_offset, p.rw_flags)
    }
}
