//! `io_submit`: each iocb checked in the kernel's order (`io_submit_one`,
//! `aio_prep_rw`, the RESFD rules), an event slot reserved for it, and what
//! can complete without waiting done here, as the kernel does: NOOPs,
//! `RWF_NOWAIT` requests, reads served from the page cache, the buffered
//! writes `writeback` allows, POLLs of files without a poll method.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;
use uaio_abi::*;

use super::rw::{prepare_rw, read_behind_write};
use super::validate::{check_ioprio, check_rw_flags, import_buffer};
use super::{exec_elsewhere, wait_for_exec, Kioctx, Resfd, EXITING};
use crate::backend::{OpKind, Order};
use crate::sync;
use crate::sys::internal_fds::InternalFd;
use crate::sys::{self, FdInfo};
use crate::uaccess::{user_field, UserPtr};
use crate::writeback::{FileSpan, Span};

/// What `vfs_poll` reports for a file without a poll method.
const DEFAULT_POLLMASK: u32 = (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM) as u32;

/// What a validated iocb becomes. Filled in place in the submitting call's
/// array: moving a freshly built one costs more than everything else a
/// NOOP does (its small fields, stored one by one, are copied back with
/// wide loads that the processor cannot forward from those stores).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// What the backend does; `None` when already complete (`inline`).
    pub(super) kind: Option<OpKind>,
    /// Result of a request completed during submission (NOOP, or a read
    /// that could be served without blocking).
    pub(super) inline: i64,
    pub(super) fd: i32,
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) off: u64,
    pub(super) rw_flags: u32,
    pub(super) ioprio: u16,
    pub(super) poll_mask: u32,
    pub(super) resfd: Resfd,
    pub(super) data: u64,
    pub(super) obj: u64,
    pub(super) iov: Option<Box<[iovec]>>,
    /// The bytes of a buffered write for the backend, copied from the
    /// program's buffer during submission (see `rw::bounce`); `addr`
    /// points into it.
    pub(super) bounce: Option<Box<[u8]>>,
    /// See [`Req::forever`].
    pub(super) forever: bool,
    /// A buffered write to a regular file for the backend: the bytes it
    /// covers (see [`Req::write_id`]).
    pub(super) write_span: Option<Span>,
    /// See [`crate::backend::BackendOp::order`].
    pub(super) order: Option<crate::backend::Order>,
    /// See [`crate::backend::BackendOp::seen`].
    pub(super) seen: Option<crate::backend::Seen>,
    /// A read for the backend that moved part of its bytes during
    /// submission ([`CallSpans::settle_reads`]): it is not cancelled.
    pub(super) started: bool,
    /// A synchronous buffered write copied into the page cache during
    /// submission, whose sync goes to the backend: the bytes it wrote, its
    /// result once the sync succeeds (0 for other requests).
    pub(super) written: i64,
    /// `aio_lio_opcode` (for `stats`).
    pub(super) opcode: u16,
}

/// Per-call state of one `io_submit`: a small cache of file descriptor
/// facts, whether reads may be tried inline, and the buffered reads and
/// writes the call sends to the backend.
#[derive(Debug, Default)]
pub(crate) struct FdCache {
    entries: Vec<FdInfo>,
    /// Small batches try reads inline (one system call per read); large
    /// ones go to the backend together, where one call carries them all.
    pub(crate) inline_reads: bool,
    /// The call's buffered reads and writes on their way to the backend.
    call: CallSpans,
    /// The fast path's attempt at the request being prepared moved part
    /// of its bytes ([`Prepared::started`]).
    started: bool,
}

/// The buffered reads and writes of one `io_submit` that go to the
/// backend, by file and bytes. Kernel AIO does each inside the call, in
/// its order: no later write of the call may overtake an earlier write of
/// some of the same bytes (the process's list of such writes,
/// [`writeback::behind_backend_write`], has them only once the call
/// publishes them), and a read placed before a write of its bytes is done
/// first where it can be without waiting ([`CallSpans::settle_reads`]).
#[derive(Debug, Default)]
pub(super) struct CallSpans {
    /// The index in the call's array of the request being prepared.
    pub(super) at: usize,
    /// Buffered writes to regular files.
    pub(super) writes: Vec<FileSpan>,
    /// Buffered reads of regular files that follow no write still to run.
    pub(super) reads: Vec<BackendRead>,
    /// Reads of `reads` tried inside the call after all: their index in
    /// the call's array, and their result, or `None` for one that moved
    /// part of its bytes and goes on in the backend.
    settled: Vec<(usize, Option<i64>)>,
    /// Direct writes to regular files that go to the backend: their index
    /// in the call's array, file and bytes. Kernel AIO has issued such a
    /// write (and dropped the cached pages it covers) before it looks at a
    /// later request of the call, so a later buffered read of its bytes
    /// returns what it wrote, and a later buffered write of them lands
    /// after it.
    pub(super) direct: Vec<(usize, FileSpan)>,
    /// Indexes of `direct` writes that a later request of the call must
    /// follow: they become members of their file's order
    /// ([`FdCache::apply_settled`]), which that request follows.
    promote: Vec<usize>,
}

impl CallSpans {
    /// Whether a buffered read or write of `span` in `file` must follow a
    /// direct write of the call (see [`CallSpans::direct`]); each such write
    /// is marked to be followed.
    pub(super) fn behind_direct(&mut self, file: crate::backend::FileKey, span: Span) -> bool {
        let mut behind = false;
        for &(at, (k, s)) in &self.direct {
            if k == file && crate::writeback::overlap(s, span) {
                self.promote.push(at);
                behind = true;
            }
        }
        behind
    }
}

/// A buffered read of the call for the backend, and what it takes to do it
/// inside the call after all.
#[derive(Debug)]
pub(super) struct BackendRead {
    /// Its index in the call's array.
    pub(super) at: usize,
    pub(super) file: crate::backend::FileKey,
    pub(super) fd: i32,
    /// Its iovec array (the prepared request's own, or `one`).
    pub(super) iov: *const iovec,
    pub(super) niov: usize,
    /// The buffer of a request that is not vectored.
    pub(super) one: iovec,
    pub(super) off: u64,
    pub(super) count: u64,
    pub(super) rw_flags: u32,
    /// Its file is of a memory file system with no device behind it
    /// ([`crate::writeback::memory_file`]), which refuses `RWF_NOWAIT`.
    pub(super) memory: bool,
}

impl CallSpans {
    /// A buffered write of `span` in `file` is about to run: each read of
    /// the call for the backend that depends on some of those bytes is
    /// done now if it can be without waiting (the page cache holds what it
    /// asks for, or the end of the file comes first), so that it returns
    /// what the file held before the write, as the kernel's read done
    /// inside `io_submit` in the call's order. One that would wait stays
    /// with the backend and may see the write (README, "Known residual
    /// differences"); the write does not wait for it, so that it is in the
    /// file when `io_submit` returns, as the kernel's.
    pub(super) fn settle_reads(&mut self, file: crate::backend::FileKey, span: Span) {
        if self.reads.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.reads.len() {
            let r = &self.reads[i];
            if r.file != file || !r.depends_on(span) {
                i += 1;
                continue;
            }
            let r = self.reads.swap_remove(i);
            match r.try_now() {
                Tried::Done(res) => {
                    self.settled.push((r.at, Some(res)));
                    continue;
                }
                Tried::Started => self.settled.push((r.at, None)),
                Tried::Untouched => {}
            }
            // Still for the backend: it takes its turn among the file's
            // ordered requests there, so that a write of its bytes that goes
            // to the backend too runs after it, as the kernel's ran after
            // the read done inside io_submit (before, the two ran side by
            // side, and the read could return some of the new bytes and
            // some of the old ones).
            self.promote.push(r.at);
        }
    }
}

/// What [`BackendRead::try_now`] did.
enum Tried {
    /// The read is done, with this result.
    Done(i64),
    /// It moved part of its bytes (the page cache held only the start of
    /// them); the backend reads them all again.
    Started,
    /// It moved nothing.
    Untouched,
}

impl BackendRead {
    /// Whether the read depends on a write of `span` in its file: the
    /// bytes it reads, and, when it reaches past the end of the file, every
    /// byte from its start on ([`super::rw::read_span`]). The file's size
    /// is asked only for a write past the bytes it reads (rare): a read for
    /// the backend paid a `statx` for it before.
    fn depends_on(&self, span: Span) -> bool {
        let end = self.off.saturating_add(self.count.max(1));
        crate::writeback::overlap((self.off, end), span)
            || (crate::writeback::overlap((self.off, u64::MAX), span)
                && sys::file_stat(self.fd).is_none_or(|st| st.kind() != libc::S_IFBLK && end > st.size))
    }

    /// The read, with `RWF_NOWAIT`: done when it was served whole, or
    /// stopped at the end of the file, or failed for another reason than
    /// the wait it would need.
    fn try_now(&self) -> Tried {
        let iov = if self.niov == 0 { &self.one as *const iovec } else { self.iov };
        let n = self.niov.max(1);
        let (mut r, _) = sys::prwv2(false, self.fd, iov, n, self.off as i64, self.rw_flags | RWF_NOWAIT);
        if r == -(libc::EOPNOTSUPP as i64) && self.memory {
            // tmpfs and ramfs take no RWF_NOWAIT and have no device to
            // wait for: read as the kernel's AIO does, inside the call.
            (r, _) = sys::prwv2(false, self.fd, iov, n, self.off as i64, self.rw_flags);
        }
        if r == -(libc::EAGAIN as i64) || r == -(libc::EOPNOTSUPP as i64) {
            return Tried::Untouched;
        }
        if r >= 0 && (r as u64) < self.count {
            // Short: the end of the file, a buffer that cannot be written
            // past that point, or a page not in the cache.
            let flags = if self.memory { self.rw_flags } else { self.rw_flags | RWF_NOWAIT };
            let last = sys::file_stat(self.fd).is_some_and(|st| self.off.saturating_add(r as u64) >= st.size)
                || (r > 0 && sys::read_stopped_by_fault(self.fd, iov, n, self.off, r as u64, flags));
            return match (last, r) {
                (true, _) => Tried::Done(r),
                (false, 0) => Tried::Untouched,
                (false, _) => Tried::Started,
            };
        }
        Tried::Done(r)
    }
}

impl FdCache {
    /// Ready for a new call (the entries' room is kept: no allocation per
    /// `io_submit` once a thread has made one).
    pub(crate) fn reset(&mut self, inline_reads: bool) {
        self.entries.clear();
        self.inline_reads = inline_reads;
        self.call.at = 0;
        self.call.writes.clear();
        self.call.reads.clear();
        self.call.settled.clear();
        self.call.direct.clear();
        self.call.promote.clear();
        self.started = false;
    }

    /// The request at index `at` of the call's array is prepared next.
    #[inline]
    pub(crate) fn preparing(&mut self, at: usize) {
        self.call.at = at;
    }

    /// Once the call's requests are prepared: the direct writes a later
    /// request of the call follows become members of their file's order
    /// ([`CallSpans::behind_direct`]), and the reads done inside the call
    /// after all ([`CallSpans::settle_reads`]) complete with their results
    /// instead of going to the backend.
    pub(crate) fn apply_settled(&mut self, preps: &mut [Prepared]) {
        for &at in &self.call.promote {
            if let Some(p) = preps.get_mut(at) {
                if let Some(Order::After(k)) = p.order {
                    p.order = Some(Order::Member(k));
                }
            }
        }
        for &(at, res) in &self.call.settled {
            let Some(p) = preps.get_mut(at) else { continue };
            match res {
                Some(res) => {
                    p.kind = None;
                    p.order = None;
                    p.seen = None;
                    let _ = p.complete(res);
                }
                // Its buffer holds bytes already: no cancel may report it
                // untouched.
                None => p.started = true,
            }
        }
    }

    /// [`FdCache::get`], with the call's reads and writes for the backend
    /// so far.
    #[inline]
    fn get_with_spans(&mut self, fd: u32) -> Result<(&mut FdInfo, &mut CallSpans), Errno> {
        let i = self.index_of(fd)?;
        Ok((&mut self.entries[i], &mut self.call))
    }

    #[inline]
    pub(super) fn get(&mut self, fd: u32) -> Result<&mut FdInfo, Errno> {
        let i = self.index_of(fd)?;
        Ok(&mut self.entries[i])
    }

    /// Where the facts of `fd` are, looked up now if they are not there.
    #[inline]
    fn index_of(&mut self, fd: u32) -> Result<usize, Errno> {
        match self.entries.iter().position(|e| e.fd == fd as i32) {
            Some(i) => Ok(i),
            None => self.look_up(fd),
        }
    }

    /// Whether a read of `count` bytes at `off` of `fd` must follow a
    /// buffered write of some of those bytes still to run
    /// ([`read_behind_write`]). Kernel AIO has done such a write (into the
    /// page cache) before it looks at the read, so the read is not tried
    /// here but ordered behind it by the backend.
    pub(super) fn read_behind_write(&mut self, fd: u32, off: u64, count: u64) -> bool {
        // Not even the entry is looked for while no write is pending.
        if self.call.writes.is_empty() && self.call.direct.is_empty() && !crate::writeback::backend_writes_pending() {
            return false;
        }
        let Ok((f, call)) = self.get_with_spans(fd) else { return false };
        read_behind_write(f, off, count, call)
    }

    /// [`FdCache::index_of`] for a descriptor not looked up yet in this call.
    #[cold]
    fn look_up(&mut self, fd: u32) -> Result<usize, Errno> {
        let info = FdInfo::get(fd)?;
        if self.entries.len() >= FD_CACHE_SIZE {
            self.entries.remove(0);
        }
        self.entries.push(info);
        Ok(self.entries.len() - 1)
    }
}

/// Descriptors whose facts one `io_submit` keeps (a batch names few).
const FD_CACHE_SIZE: usize = 8;

/// RESFD eventfds a context keeps a duplicate of, by the program's number.
const RESFD_CACHE_SIZE: usize = 4;

/// The `aio_key` of the application's iocb at `obj`.
fn aio_key(obj: u64) -> UserPtr<u32> {
    user_field!(UserPtr::<iocb>::new(obj), iocb, aio_key)
}

/// Bytes a prepared read or write moves.
pub(super) fn buffer_len(p: &Prepared) -> u64 {
    match &p.iov {
        Some(v) => v.iter().map(|e| e.iov_len).sum(),
        None => p.len as u64,
    }
}

impl Prepared {
    /// Completes the request during submission with `res` (its iovec
    /// array is not needed any more).
    pub(super) fn complete(&mut self, res: i64) -> Result<(), Errno> {
        self.inline = res;
        self.iov = None;
        Ok(())
    }

    /// Makes this the start of the request of `cb` at `obj`.
    #[inline]
    pub(super) fn reset(&mut self, cb: &iocb, obj: u64, resfd: Resfd) {
        self.kind = None;
        self.inline = 0;
        self.fd = cb.aio_fildes as i32;
        self.addr = 0;
        self.len = 0;
        self.off = 0;
        self.rw_flags = 0;
        self.ioprio = 0;
        self.poll_mask = 0;
        self.resfd = resfd;
        self.data = cb.aio_data;
        self.obj = obj;
        self.iov = None;
        self.bounce = None;
        self.forever = false;
        self.write_span = None;
        self.order = None;
        self.seen = None;
        self.written = 0;
        self.started = false;
        self.opcode = cb.aio_lio_opcode;
    }
}

impl Kioctx {
    /// Reclaims the slots of events the reader has consumed; returns how many.
    pub(super) fn reclaim(&self) -> u32 {
        let mut st = self.lock();
        let nr = self.ring.nr();
        let head = self.ring.head();
        let in_ring = (st.tail + nr - head) % nr;
        let r = st.unreclaimed - in_ring.min(st.unreclaimed);
        st.unreclaimed -= r;
        if r > 0 {
            self.used.fetch_sub(r, Ordering::SeqCst);
        }
        r
    }

    pub(super) fn reserve_slot(&self) -> bool {
        loop {
            let u = self.used.load(Ordering::SeqCst);
            if u < self.capacity {
                if self.used.compare_exchange(u, u + 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return true;
                }
                continue;
            }
            // Another thread may have reclaimed everything just before us:
            // only a count still at capacity after our own reclaim (under
            // the lock, so after theirs) means the ring is really full.
            if self.reclaim() == 0 && self.used.load(Ordering::SeqCst) >= self.capacity {
                return false;
            }
        }
    }

    /// The RESFD rules, and the hold: the descriptor must be open (`EBADF`)
    /// and an eventfd (`EINVAL`). It is held for the request's life as a
    /// duplicate shared with the other requests naming the same open file
    /// (told apart from a new file under the same number with
    /// `fcntl(F_DUPFD_QUERY)`, or `kcmp` before Linux 6.10), and
    /// it is the duplicate that is checked, so that a number closed and
    /// reused while `io_submit` runs cannot turn a completion into 8 bytes
    /// written to the new file. `Resfd::None` without `IOCB_FLAG_RESFD`.
    #[inline]
    pub(super) fn hold_resfd(&self, cb: &iocb, fds: &mut FdCache) -> Result<Resfd, Errno> {
        if cb.aio_flags & IOCB_FLAG_RESFD == 0 {
            return Ok(Resfd::None);
        }
        self.hold_named_resfd(cb, fds)
    }

    /// [`Kioctx::hold_resfd`] for an iocb with `IOCB_FLAG_RESFD`.
    fn hold_named_resfd(&self, cb: &iocb, fds: &mut FdCache) -> Result<Resfd, Errno> {
        // A held duplicate of the open file the number names answers for
        // it (open, an eventfd, not uaio's): no look of its own.
        let n = cb.aio_resfd as i32;
        if n >= 0 && !sys::internal_fds::is_internal(n) {
            let cache = sync::lock(&self.resfds);
            if let Some((_, h)) = cache.iter().find(|(m, h)| *m == n && sys::same_open_file(n, h.as_raw_fd())) {
                return Ok(Resfd::Held(h.clone()));
            }
        }
        let fd = fds.get(cb.aio_resfd)?.fd;
        let mut cache = sync::lock(&self.resfds);
        // The number was open a moment ago; if it was closed since, the
        // duplication fails.
        match InternalFd::dup_of_number(fd) {
            Ok(d) => {
                if !sys::is_eventfd(d.as_raw_fd()) {
                    return Err(Errno::INVAL);
                }
                let h = Arc::new(d);
                cache.retain(|(n, _)| *n != fd);
                if cache.len() >= RESFD_CACHE_SIZE {
                    cache.remove(0);
                }
                cache.push((fd, h.clone()));
                Ok(Resfd::Held(h))
            }
            Err(Errno::BADF) => Err(Errno::BADF),
            // No number left for a duplicate: checked afresh (not from the
            // cache of this call) and held by number.
            Err(_) if FdInfo::get(cb.aio_resfd)?.is_eventfd() => Ok(Resfd::Number(fd)),
            Err(_) => Err(Errno::INVAL),
        }
    }

    /// Registers an `io_submit` on this context, or returns `false` once the
    /// context is dead (the call then fails with `EINVAL`).
    pub(crate) fn begin_submit(&self) -> bool {
        loop {
            self.submitters.fetch_add(1, Ordering::SeqCst);
            let Some(e) = exec_elsewhere() else { break };
            // Another thread is about to `exec` (see `EXECING`): this call
            // waits, not counted, and accepts nothing until that `exec`
            // fails (or the process is replaced).
            self.end_submit();
            wait_for_exec(e);
        }
        if EXITING.load(Ordering::SeqCst) != 0 && EXITING.load(Ordering::SeqCst) != sys::gettid() {
            // The process is leaving (another thread called exit): this
            // submission never returns, so nothing it would accept can be
            // lost, and the exit does not wait for it. The thread ends with
            // the process, as it would on the kernel.
            self.end_submit();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if self.dead.load(Ordering::SeqCst) {
            self.end_submit();
            return false;
        }
        true
    }

    /// Whether another thread is inside `io_submit` on this context (the
    /// caller being one, between `begin_submit` and `end_submit`).
    pub(crate) fn others_submitting(&self) -> bool {
        self.submitters.load(Ordering::Relaxed) > 1
    }

    /// Ends what [`Kioctx::begin_submit`] began.
    pub(crate) fn end_submit(&self) {
        self.submitters.fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn release_slot(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes up to `n` event slots at once for one `io_submit` (one atomic
    /// operation instead of one per request); returns how many it got.
    /// Those not used go back through [`Kioctx::release_slots`].
    pub(crate) fn reserve_slots(&self, n: u32) -> u32 {
        let mut u = self.used.load(Ordering::SeqCst);
        loop {
            let k = n.min(self.capacity.saturating_sub(u));
            if k == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(u, u + k, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return k,
                Err(now) => u = now,
            }
        }
    }

    /// Gives back `n` slots taken by [`Kioctx::reserve_slots`].
    pub(crate) fn release_slots(&self, n: u32) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Validates the iocb at user address `obj`, in the kernel's order, into
    /// `p`. `reserved` counts the event slots the call holds already; one is
    /// taken from it, or reserved afresh when none is left.
    pub(crate) fn prepare(
        &self,
        obj: u64,
        fds: &mut FdCache,
        p: &mut Prepared,
        reserved: &mut u32,
    ) -> Result<(), Errno> {
        let cb: iocb = UserPtr::<iocb>::new(obj).read().map_err(|_| Errno::FAULT)?;
        if cb.aio_reserved2 != 0 {
            return Err(Errno::INVAL);
        }
        if (cb.aio_nbytes as i64) < 0 {
            return Err(Errno::INVAL);
        }
        if *reserved > 0 {
            *reserved -= 1;
        } else if !self.reserve_slot() {
            return Err(Errno::AGAIN);
        }
        let r = self.prepare_reserved(&cb, obj, fds, p);
        if r.is_err() {
            self.release_slot();
        }
        r
    }

    pub(super) fn prepare_reserved(
        &self,
        cb: &iocb,
        obj: u64,
        fds: &mut FdCache,
        p: &mut Prepared,
    ) -> Result<(), Errno> {
        // The RESFD eventfd an inline attempt held, for the full path.
        let mut resfd = None;
        if fds.inline_reads && self.try_inline_read(cb, obj, fds, p, &mut resfd) {
            return Ok(());
        }
        let r = self.prepare_checked(cb, obj, fds, p, resfd);
        if fds.started {
            fds.started = false;
            p.started = p.kind.is_some();
        }
        r
    }

    /// The fast path for reads: every check that does not need the data
    /// descriptor passes, and a `RWF_NOWAIT` read serves the whole request
    /// without blocking. Success proves what the descriptor checks would
    /// (open, readable, not a directory), so it saves their system calls and
    /// the trip through the backend. Anything else returns `None` and the
    /// full path decides, in the kernel's order, with no trace left; the
    /// RESFD eventfd held on the way is left in `resfd` for it.
    pub(super) fn try_inline_read(
        &self,
        cb: &iocb,
        obj: u64,
        fds: &mut FdCache,
        p: &mut Prepared,
        resfd: &mut Option<Resfd>,
    ) -> bool {
        self.try_inline_read_inner(cb, obj, fds, p, resfd).is_some()
    }

    pub(super) fn try_inline_read_inner(
        &self,
        cb: &iocb,
        obj: u64,
        fds: &mut FdCache,
        p: &mut Prepared,
        held: &mut Option<Resfd>,
    ) -> Option<()> {
        let vectored = match cb.aio_lio_opcode {
            IOCB_CMD_PREAD => false,
            IOCB_CMD_PREADV => true,
            _ => return None,
        };
        // uaio's own descriptors (and closed ones) are refused by the full
        // path, and a direct read through preadv2 waits for the device even
        // with RWF_NOWAIT: neither is tried, and nothing else is looked at
        // for them. The open flags are asked afresh (once per call and
        // descriptor): a number may have been reopened, or set O_DIRECT, a
        // moment ago.
        if sys::internal_fds::is_internal(cb.aio_fildes as i32) {
            return None;
        }
        let f = fds.get(cb.aio_fildes).ok()?;
        if f.flags & libc::O_DIRECT as u32 != 0 {
            return None;
        }
        // A stream's read waits for its turn behind the process's reads of
        // it in a backend (`rw::StreamRead`): the full path sends it there.
        if super::rw::stream_reads_pending() && !f.is_regular_or_block() {
            return None;
        }
        let resfd = self.hold_resfd(cb, fds).ok()?;
        *held = Some(resfd.clone());
        if cb.aio_flags & IOCB_FLAG_IOPRIO != 0 {
            check_ioprio(cb.aio_reqprio).ok()?;
        }
        check_rw_flags(cb.aio_rw_flags, false).ok()?;
        let (iov, addr, len) = import_buffer(cb, vectored).ok()?;
        let count = iov.as_ref().map_or(len as u64, |v| v.iter().map(|e| e.iov_len).sum());
        // A zero-length read succeeds before the file is looked at, so it
        // would prove nothing about the descriptor.
        if count == 0 || fds.read_behind_write(cb.aio_fildes, cb.aio_offset as u64, count) {
            return None;
        }
        let one = iovec { iov_base: addr, iov_len: len as u64 };
        // KIOCB_KEY goes into the application's iocb, as the kernel writes it.
        aio_key(obj).write(&KIOCB_KEY).ok()?;
        let (ptr, n) = match &iov {
            Some(v) => (v.as_ptr(), v.len()),
            None => (&one as *const iovec, 1),
        };
        let mut flags = (cb.aio_rw_flags & !RWF_HIPRI) | RWF_NOWAIT;
        let (mut r, mut stream) = sys::preadv2(cb.aio_fildes as i32, ptr, n, cb.aio_offset, flags);
        if r == -(libc::EOPNOTSUPP as i64)
            && cb.aio_rw_flags & RWF_NOWAIT == 0
            && fds.get(cb.aio_fildes).ok().is_some_and(crate::writeback::memory_file)
        {
            // tmpfs and ramfs take no RWF_NOWAIT, and have no device to
            // wait for (tmpfs counts only without swap): read as the
            // kernel's AIO does, inside the call.
            flags &= !RWF_NOWAIT;
            (r, stream) = sys::preadv2(cb.aio_fildes as i32, ptr, n, cb.aio_offset, flags);
        }
        // Errors raised before any data moves (would block, no such
        // descriptor or mode, no read_iter, NOWAIT unsupported) leave no
        // trace: the full path decides. Any other error may follow a side
        // effect (an eventfd's counter is taken before the copy faults), so
        // it is the request's result, as the kernel would report it.
        let untouched = [libc::EAGAIN, libc::EOPNOTSUPP, libc::EBADF, libc::EINVAL, libc::EISDIR, libc::ESPIPE]
            .iter()
            .any(|&e| r == -(e as i64));
        if r > 0
            && (r as u64) < count
            && !stream
            && !untouched
            && (at_end_of_file(cb, r)
                || sys::read_stopped_by_fault(cb.aio_fildes as i32, ptr, n, cb.aio_offset as u64, r as u64, flags))
        {
            // Short because the file ends there, or because the buffer
            // cannot be written past that point: that is the read's result
            // (in the backend it could wait behind writes that lengthen the
            // file, or read again bytes a later write of the call changes,
            // with part of its buffer filled already).
            p.reset(cb, obj, resfd);
            p.inline = r;
            return Some(());
        }
        if r > 0 && !untouched && (r as u64) < count && !stream {
            // Part of the buffer is filled: the full path's request may not
            // be cancelled.
            fds.started = true;
        }
        if untouched || (r > 0 && (r as u64) < count && !stream) {
            // Would block, failed, or served only in part: undo the key
            // write if it changed anything and let the full path decide.
            if cb.aio_key != KIOCB_KEY {
                // The value the application had there comes back.
                let _ = aio_key(obj).write(&cb.aio_key);
            }
            return None;
        }
        p.reset(cb, obj, resfd);
        p.inline = r;
        Some(())
    }

    pub(super) fn prepare_checked(
        &self,
        cb: &iocb,
        obj: u64,
        fds: &mut FdCache,
        p: &mut Prepared,
        resfd: Option<Resfd>,
    ) -> Result<(), Errno> {
        // The kernel looks the file up first. A look at the descriptor
        // taken whole from an earlier call is confirmed here (one
        // `F_GETFL`), except a write's: `prepare_rw` confirms it unless the
        // write runs inside io_submit, whose own system call fails on a
        // closed number with nothing done (about a tenth of a cached 4 KiB
        // buffered write); or below, before an error of the resfd or the key.
        let f = fds.get(cb.aio_fildes)?;
        if !matches!(cb.aio_lio_opcode, IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV) {
            f.confirm_open()?;
        }
        let closed_first = |fds: &mut FdCache, e: Errno| match fds.get(cb.aio_fildes).and_then(|f| f.confirm_open()) {
            Err(closed) => closed,
            Ok(_) => e,
        };
        let resfd = match resfd {
            Some(r) => r,
            None => self.hold_resfd(cb, fds).map_err(|e| closed_first(fds, e))?,
        };
        // KIOCB_KEY goes into the application's iocb, as the kernel writes it.
        if aio_key(obj).write(&KIOCB_KEY).is_err() {
            return Err(closed_first(fds, Errno::FAULT));
        }
        let (f, call) = fds.get_with_spans(cb.aio_fildes)?;
        p.reset(cb, obj, resfd);
        match cb.aio_lio_opcode {
            IOCB_CMD_PREAD | IOCB_CMD_PWRITE | IOCB_CMD_PREADV | IOCB_CMD_PWRITEV => {
                prepare_rw(cb, f, p, call, self.backend.wants_every_write())?;
            }
            IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => prepare_sync(cb, f, p)?,
            IOCB_CMD_POLL => prepare_poll(cb, f, p)?,
            IOCB_CMD_NOOP => {}
            _ => return Err(Errno::INVAL),
        }
        if p.kind.is_some() {
            // Known already: every request that reaches a backend needed
            // the file's type.
            p.seen = Some(f.seen());
        }
        Ok(())
    }
}

/// `IOCB_CMD_FSYNC` and `IOCB_CMD_FDSYNC` (`aio_fsync`).
fn prepare_sync(cb: &iocb, f: &mut FdInfo, p: &mut Prepared) -> Result<(), Errno> {
    f.still_open()?;
    if cb.aio_buf != 0 || cb.aio_offset != 0 || cb.aio_nbytes != 0 || cb.aio_rw_flags != 0 {
        return Err(Errno::INVAL);
    }
    if !f.can_fsync() {
        return Err(Errno::INVAL);
    }
    let kind = if cb.aio_lio_opcode == IOCB_CMD_FSYNC { OpKind::Fsync } else { OpKind::Fdatasync };
    p.order = f.order_key(kind);
    p.kind = Some(kind);
    Ok(())
}

/// `IOCB_CMD_POLL` (`aio_poll`).
fn prepare_poll(cb: &iocb, f: &mut FdInfo, p: &mut Prepared) -> Result<(), Errno> {
    f.still_open()?;
    if cb.aio_buf as u16 as u64 != cb.aio_buf {
        return Err(Errno::INVAL);
    }
    if cb.aio_offset != 0 || cb.aio_nbytes != 0 || cb.aio_rw_flags != 0 {
        return Err(Errno::INVAL);
    }
    p.poll_mask = cb.aio_buf as u32;
    if !f.has_poll() {
        // vfs_poll answers the default mask without queueing a
        // waiter: ready at once, or EINVAL when nothing matches.
        let wanted = p.poll_mask | (libc::POLLERR | libc::POLLHUP) as u32;
        let mask = DEFAULT_POLLMASK & wanted;
        if mask == 0 {
            return Err(Errno::INVAL);
        }
        p.inline = mask as i64;
        return Ok(());
    }
    if f.polls_two_queues() && !sys::ready_now(f.fd, p.poll_mask) {
        return Err(Errno::INVAL);
    }
    p.kind = Some(OpKind::Poll);
    p.forever = true;
    Ok(())
}

/// Whether a read of `cb` that returned `n` bytes, fewer than it asked
/// for, stopped at the end of its regular file (its size looked at now).
#[cold]
fn at_end_of_file(cb: &iocb, n: i64) -> bool {
    sys::file_stat(cb.aio_fildes as i32)
        .is_some_and(|st| st.kind() == libc::S_IFREG && (cb.aio_offset as u64).saturating_add(n as u64) >= st.size)
}
