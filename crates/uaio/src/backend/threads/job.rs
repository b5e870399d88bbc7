//! One request's work: where a read or write stands ([`Cursor`]), the
//! held duplicate of its descriptor ([`Held`]), the job with its state,
//! and the blocking and non-blocking system calls that run it.

use super::*;

/// Job state: queued for a worker, or waiting in the poller.
pub(super) const WAITING: u8 = 0;

/// Job state: claimed by a worker or the poller.
pub(super) const RUNNING: u8 = 1;

/// Job state: claimed, and a cancellation arrived meanwhile.
pub(super) const RUNNING_CANCEL: u8 = 2;

/// Job state: completed (by its claimer, or cancelled while waiting).
pub(super) const DONE: u8 = 3;

/// Where a read or write stands: what is left to transfer, where, and how
/// much was transferred already.
#[derive(Debug)]
pub(super) struct Cursor {
    pub(super) iov: Iovs,
    pub(super) off: u64,
    pub(super) done: i64,
    /// The file's position moves with the transfer (not a pipe, FIFO or
    /// socket, which have none: their rest goes at the request's own
    /// offset, which a pipe ignores and a socket wants 0).
    pub(super) positioned: bool,
}

// SAFETY: the iovecs point into the application's buffers, which the
// request owns until its completion is reaped; exactly one thread (the
// job's claimer) uses them at a time.

unsafe impl Send for Cursor {}

/// The iovecs a transfer has left: a plain read's or write's one kept in
/// place (no allocation per request), or a vectored request's copy.
#[derive(Debug)]
pub(super) enum Iovs {
    /// The one iovec, and how many of it are used up (0 or 1).
    One([libc::iovec; 1], usize),
    /// Several.
    Many(Vec<libc::iovec>),
}

impl Iovs {
    /// Drops the first `k` iovecs (at most as many as there are).
    pub(super) fn drop_front(&mut self, k: usize) {
        match self {
            Iovs::One(_, used) => *used = (*used + k).min(1),
            Iovs::Many(v) => {
                v.drain(..k);
            }
        }
    }
}

impl std::ops::Deref for Iovs {
    type Target = [libc::iovec];

    fn deref(&self) -> &[libc::iovec] {
        match self {
            Iovs::One(one, used) => &one[*used..],
            Iovs::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Iovs {
    fn deref_mut(&mut self) -> &mut [libc::iovec] {
        match self {
            Iovs::One(one, used) => &mut one[*used..],
            Iovs::Many(v) => v,
        }
    }
}

impl Cursor {
    /// The buffers of `op` (a read or write): uaio's own iovec array for
    /// vectored requests is copied, since the remainder may be adjusted.
    pub(super) fn new(op: &BackendOp) -> Cursor {
        let iov = match op.kind {
            OpKind::Read | OpKind::Write => {
                Iovs::One([libc::iovec { iov_base: op.addr as *mut libc::c_void, iov_len: op.len as usize }], 0)
            }
            OpKind::Readv | OpKind::Writev => {
                // SAFETY: for vectored requests `addr` is the context's own
                // array of `len` iovecs (C layout), alive until the request
                // is harvested, which is after this job completes.
                let v = unsafe { std::slice::from_raw_parts(op.addr as *const uaio_abi::iovec, op.len as usize) };
                Iovs::Many(
                    v.iter()
                        .map(|e| libc::iovec { iov_base: e.iov_base as *mut libc::c_void, iov_len: e.iov_len as usize })
                        .collect(),
                )
            }
            _ => Iovs::Many(Vec::new()),
        };
        let positioned = op.seen.is_none_or(|s| !matches!(s.st.kind(), libc::S_IFIFO | libc::S_IFSOCK));
        Cursor { iov, off: op.off, done: 0, positioned }
    }

    /// Bytes left to transfer.
    pub(super) fn remaining(&self) -> u64 {
        self.iov.iter().map(|e| e.iov_len as u64).sum()
    }

    /// Records `n` more bytes transferred and moves past them.
    pub(super) fn advance(&mut self, n: usize) {
        self.done += n as i64;
        if self.positioned {
            self.off += n as u64;
        }
        let mut n = n;
        let full = self.iov.iter().take_while(|e| {
            if n >= e.iov_len {
                n -= e.iov_len;
                true
            } else {
                false
            }
        });
        let k = full.count();
        self.iov.drop_front(k);
        if n > 0 {
            let e = &mut self.iov[0];
            // SAFETY: `n` is less than this iovec's length, so the new base
            // stays inside the same buffer.
            e.iov_base = unsafe { e.iov_base.cast::<u8>().add(n) }.cast();
            e.iov_len -= n;
        }
    }

    /// The request's result after a last call that returned `r`: bytes
    /// moved earlier count even if that call failed.
    pub(super) fn result(&self, r: i32) -> i32 {
        match (self.done, r) {
            (0, r) => r,
            (d, r) if r < 0 => d as i32,
            (d, r) => (d + r as i64) as i32,
        }
    }

    /// Result of a cancelled request: the bytes moved so far, if any.
    pub(super) fn cancelled(&self) -> i32 {
        if self.done > 0 {
            self.done as i32
        } else {
            -libc::ECANCELED
        }
    }

    /// One `preadv2`/`pwritev2` of the remainder on `fd`.
    pub(super) fn io(&self, kind: OpKind, fd: i32, flags: i32) -> i32 {
        prw(kind, fd, self.iov.as_ptr(), self.iov.len(), self.off, flags)
    }
}

/// One `preadv2`/`pwritev2` of `cnt` iovecs at `iov` on `fd`. A stream has
/// no position: AIO ignores the offset there, and -1 is how preadv2 says
/// "no position".
pub(super) fn prw(kind: OpKind, fd: i32, iov: *const libc::iovec, cnt: usize, off: u64, flags: i32) -> i32 {
    let write = !matches!(kind, OpKind::Read | OpKind::Readv);
    // The iovecs and the buffers they name were validated at submission
    // and belong to the request until its completion is reaped.
    sys::prwv2(write, fd, iov.cast(), cnt, off as i64, flags as u32).0 as i32
}

/// One attempt of a read or write with `flags` (the first one, with
/// RWF_NOWAIT, or an empty transfer's only one), on the request's own
/// buffers (no copy); returns the result and the request's byte count.
pub(super) fn first_try(op: &BackendOp, flags: i32) -> (i32, u64) {
    match op.kind {
        OpKind::Read | OpKind::Write => {
            let one = libc::iovec { iov_base: op.addr as *mut libc::c_void, iov_len: op.len as usize };
            (prw(op.kind, op.fd, &one, 1, op.off, flags), op.len as u64)
        }
        _ => {
            let iov = op.addr as *const libc::iovec;
            let r = prw(op.kind, op.fd, iov, op.len as usize, op.off, flags);
            let total = if r >= 0 {
                // SAFETY: as in `Cursor::new`: the context's own array of
                // `len` iovecs, alive until the request is harvested.
                let v = unsafe { std::slice::from_raw_parts(iov, op.len as usize) };
                v.iter().map(|e| e.iov_len as u64).sum()
            } else {
                0
            };
            (r, total)
        }
    }
}

/// A duplicate of an application's open file, shared by the jobs on it and
/// closed with the last of them.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) fd: InternalFd,
    /// The pool whose registry lists it.
    pub(super) pool: &'static Pool,
    /// The application's descriptor number it was taken from.
    pub(super) app_fd: i32,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) flags: i32,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut reg = lock(&self.pool.held);
        if reg.get(&self.app_fd).is_some_and(|w| std::ptr::eq(w.as_ptr(), self)) {
            reg.remove(&self.app_fd);
        }
    }
}

/// One queued or polling request.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) shared: Arc<Shared>,
    pub(super) key: u64,
    pub(super) kind: OpKind,
    /// The held duplicate's number.
    pub(super) fd: i32,
    pub(super) rw_flags: i32,
    pub(super) ioprio: u16,
    pub(super) poll_mask: u32,
    /// `WAITING`, `RUNNING`, `RUNNING_CANCEL` or `DONE`.
    pub(super) state: AtomicU8,
    /// Waits in the poller (not in the workers' queue).
    pub(super) polled: bool,
    /// The duplicate, released as soon as the job is done.
    pub(super) hold: Mutex<Option<Arc<Held>>>,
    pub(super) cur: Mutex<Cursor>,
    /// The file whose buffered writes run one after the other, in
    /// submission order (see the module's "Write order").
    pub(super) order: Option<FileKey>,
    /// Prepared without `O_DIRECT` ([`BackendOp::buffered`]).
    pub(super) buffered: bool,
    /// A read or write in the poller of this stream (a pipe, socket or
    /// character device; its reads and its writes have keys of their own),
    /// whose reads, and writes, the poller runs one at a time, in
    /// submission order.
    pub(super) stream: Option<FileKey>,
    /// Counted by [`Job::io_begins`], not yet by [`Job::io_over`].
    pub(super) io_pending: AtomicBool,
    /// The direct lane's part ([`LANE_UNTRIED`], [`LANE_REFUSED`] or
    /// [`LANE_WAITS`]).
    pub(super) lane: AtomicU8,
}

/// [`Job::lane`]: the lane has not answered `-EAGAIN` to the job.
pub(super) const LANE_UNTRIED: u8 = 0;

/// [`Job::lane`]: the lane answered `-EAGAIN` to the job's `RWF_NOWAIT`
/// (the file system would have waited: for a block allocation, a lock, a
/// journal); the worker that takes it gives it to the lane again without
/// the flag (see `Pool::run_refused`).
pub(super) const LANE_REFUSED: u8 = 1;

/// [`Job::lane`]: in the lane without `RWF_NOWAIT`; its event is its
/// result, whatever it is.
pub(super) const LANE_WAITS: u8 = 2;

impl Drop for Job {
    fn drop(&mut self) {
        self.io_over();
    }
}

impl Job {
    /// Claims a waiting job for its runner.
    pub(super) fn claim(&self) -> bool {
        self.state.compare_exchange(WAITING, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Puts a claimed job that did nothing back to waiting; if a
    /// cancellation came meanwhile, completes it as cancelled instead and
    /// answers `false`.
    pub(super) fn unclaim_or_cancel(&self, here: &Here) -> bool {
        if self.state.compare_exchange(RUNNING, WAITING, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return true;
        }
        let res = lock(&self.cur).cancelled();
        self.shared.finish(self, res, here);
        false
    }

    /// The job is handed over (to the workers' queue or the direct lane):
    /// counted by [`file_io_pending`] until [`Job::io_over`]. Counted at the
    /// hand-over rather than when made, so that the jobs of an `io_submit`
    /// interrupted before it handed them over (they are lost with the
    /// process, and that call accepted none of them) are not waited for.
    pub(super) fn io_begins(&self) {
        if !self.io_pending.swap(true, Ordering::SeqCst) {
            file_io_begins();
        }
    }

    /// The job's read, write or sync has run (or never will): no longer
    /// counted by [`file_io_pending`].
    pub(super) fn io_over(&self) {
        if self.io_pending.swap(false, Ordering::SeqCst) {
            file_io_ends();
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DONE
    }

    /// Runs a claimed job to the end, blocking (workers).
    pub(super) fn run(&self) -> i32 {
        let cur = lock(&self.cur);
        if !self.file_unchanged() {
            // What an earlier part moved still counts.
            return cur.result(-libc::EBADF);
        }
        let r = run_blocking(self.kind, self.fd, &cur, self.rw_flags, self.ioprio);
        if r == -libc::EINVAL && self.buffered {
            // O_DIRECT set by the program since the request was prepared.
            let write = matches!(self.kind, OpKind::Write | OpKind::Writev);
            let ident = lock(&self.hold).as_ref().map(|h| (h.dev, h.ino));
            if let Some(again) = ident.and_then(|i| sys::buffered_again(self.fd, write, i)) {
                return run_blocking(self.kind, again.as_raw_fd(), &cur, self.rw_flags, self.ioprio);
            }
        }
        r
    }

    /// Whether the held duplicate still names the file it was taken from
    /// (device and inode). A program that put one of its own files on
    /// uaio's number (`dup2`) must not have the request read or write that
    /// file: the request fails with `EBADF` instead, as when the program
    /// closes the number.
    pub(super) fn file_unchanged(&self) -> bool {
        let hold = lock(&self.hold);
        let Some(h) = hold.as_ref() else { return true };
        sys::file_stat(self.fd).is_some_and(|st| st.ident() == (h.dev, h.ino))
    }
}

/// Runs a read, write or sync to the end on `fd`, blocking.
pub(super) fn run_blocking(kind: OpKind, fd: i32, cur: &Cursor, rw_flags: i32, ioprio: u16) -> i32 {
    match kind {
        OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => {
            let r = if ioprio != 0 {
                let old = sys::ioprio_get_thread();
                sys::ioprio_set_thread(ioprio as i32);
                let r = cur.io(kind, fd, rw_flags);
                sys::ioprio_set_thread(old);
                r
            } else {
                cur.io(kind, fd, rw_flags)
            };
            cur.result(r)
        }
        OpKind::Fsync | OpKind::Fdatasync => sys::sync_file(fd, kind == OpKind::Fdatasync),
        OpKind::Poll => 0,
    }
}

/// Runs a request that no thread can take in the calling thread, on `fd`:
/// blocking for a file a worker would have run (its wait is the device's,
/// and ends); without waiting for one the poller would have watched (a
/// pipe, socket or terminal may never become ready): what it moves now,
/// or `-EAGAIN` (a POLL not ready too).
pub(super) fn run_in_caller(kind: OpKind, fd: i32, cur: &Cursor, route: Route, rw_flags: i32, ioprio: u16) -> i32 {
    if route == Route::Worker {
        return run_blocking(kind, fd, cur, rw_flags, ioprio);
    }
    if kind == OpKind::Poll {
        return -libc::EAGAIN;
    }
    let r = run_blocking(kind, fd, cur, rw_flags | uaio_abi::RWF_NOWAIT as i32, ioprio);
    if r != -libc::EOPNOTSUPP {
        return r;
    }
    // A file that takes no RWF_NOWAIT (a terminal): only once it is ready.
    let events = if matches!(kind, OpKind::Read | OpKind::Readv) { libc::POLLIN } else { libc::POLLOUT };
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: poll(2) on one pollfd, no waiting.
    if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
        run_blocking(kind, fd, cur, rw_flags, ioprio)
    } else {
        -libc::EAGAIN
    }
}

/// Runs a registered job that no thread could take in the calling thread
/// ([`run_in_caller`]), unless it was cancelled meanwhile.
pub(super) fn run_unhanded(job: &Job, route: Route, here: &Here) {
    if job.claim() {
        let cur = lock(&job.cur);
        let res = run_in_caller(job.kind, job.fd, &cur, route, job.rw_flags, job.ioprio);
        drop(cur);
        job.shared.finish(job, res, here);
    }
}

/// Where a request that cannot complete at once goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Worker,
    Poller,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(lens: &[usize]) -> (Vec<u8>, Cursor) {
        let total: usize = lens.iter().sum();
        let mut buf = vec![0u8; total];
        let mut iov = Vec::new();
        let mut at = 0;
        for &l in lens {
            // SAFETY: `at` stays within `buf`.
            let base = unsafe { buf.as_mut_ptr().add(at) };
            iov.push(libc::iovec { iov_base: base.cast(), iov_len: l });
            at += l;
        }
        // One iovec is kept in place, as a plain read's or write's.
        let iov = if iov.len() == 1 { Iovs::One([iov[0]], 0) } else { Iovs::Many(iov) };
        (buf, Cursor { iov, off: 100, done: 0, positioned: true })
    }

    #[test]
    fn a_stream_keeps_its_offset() {
        let (_buf, mut c) = cursor(&[4, 8]);
        c.positioned = false;
        c.advance(6);
        assert_eq!((c.done, c.off, c.remaining()), (6, 100, 6));
    }

    #[test]
    fn advance_moves_through_iovecs() {
        let (buf, mut c) = cursor(&[4, 0, 8, 4]);
        let base = buf.as_ptr() as usize;
        c.advance(2);
        assert_eq!((c.done, c.off, c.remaining()), (2, 102, 14));
        assert_eq!(c.iov[0].iov_base as usize, base + 2);
        c.advance(2);
        // The exhausted first iovec and the empty one are gone.
        assert_eq!(c.iov.len(), 2);
        assert_eq!((c.iov[0].iov_base as usize, c.iov[0].iov_len), (base + 4, 8));
        c.advance(9);
        assert_eq!(c.iov.len(), 1);
        assert_eq!((c.iov[0].iov_base as usize, c.iov[0].iov_len), (base + 13, 3));
        c.advance(3);
        assert!(c.iov.is_empty());
        assert_eq!((c.done, c.off, c.remaining()), (16, 116, 0));
    }

    #[test]
    fn advance_moves_through_one_iovec_kept_in_place() {
        let (buf, mut c) = cursor(&[16]);
        let base = buf.as_ptr() as usize;
        c.advance(5);
        assert_eq!((c.done, c.off, c.remaining()), (5, 105, 11));
        assert_eq!((c.iov.len(), c.iov[0].iov_base as usize, c.iov[0].iov_len), (1, base + 5, 11));
        c.advance(11);
        assert!(c.iov.is_empty());
        assert_eq!((c.done, c.off, c.remaining()), (16, 116, 0));
    }

    #[test]
    fn results_count_earlier_bytes() {
        let (_buf, mut c) = cursor(&[16]);
        assert_eq!(c.result(-libc::EIO), -libc::EIO);
        assert_eq!(c.cancelled(), -libc::ECANCELED);
        c.advance(4);
        assert_eq!(c.result(12), 16);
        assert_eq!(c.result(0), 4);
        assert_eq!(c.result(-libc::EIO), 4);
        assert_eq!(c.cancelled(), 4);
    }
}
