//! One AIO context: request validation in the kernel's order, slot
//! accounting, the completion ring, waiting, cancellation and teardown.
//!
//! Locking: `st` (the completion lock) guards the request table, the ring's
//! producer side and the accounting; the backend has its own submission
//! lock. Slots are reserved lock-free (`used`), and reclaimed under `st` from
//! the reader's `head`, as the kernel does.
//!
//! Waiting: one waiter at a time (the leader) sleeps inside the backend and
//! harvests what arrives; the others (followers) sleep on the futex `seq`,
//! which every publication of events bumps. When the leader leaves, followers
//! are woken so one of them takes over.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use slab::Slab;
use uaio_abi::*;

use crate::backend::{Backend, Op, OpKind};
use crate::ring::{Geometry, Ring};
use crate::sys::internal_fds::InternalFd;
use crate::sys::{self, FdInfo};
use crate::uaccess::{self, access_ok, read_user, write_user};
use crate::writeback;

/// What `vfs_poll` reports for a file without a poll method.
const DEFAULT_POLLMASK: u32 = (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM) as u32;

/// Largest byte count of one read or write (`MAX_RW_COUNT`).
const MAX_RW_COUNT: u64 = 0x7fff_f000;
/// Every `RWF_*` flag this kernel generation knows.
const RWF_SUPPORTED: u32 = RWF_HIPRI
    | RWF_DSYNC
    | RWF_SYNC
    | RWF_NOWAIT
    | RWF_APPEND
    | RWF_NOAPPEND
    | RWF_ATOMIC
    | RWF_DONTCACHE
    | RWF_NOSIGNAL;

/// The eventfd of a request's `IOCB_FLAG_RESFD`, held for the request's
/// life as the kernel holds a reference to it: a duplicate of uaio's, so
/// that the program closing its number (and the number going to another
/// file) never sends the completion's 8 bytes elsewhere.
#[derive(Debug, Clone, Default)]
pub(crate) enum Resfd {
    /// No `IOCB_FLAG_RESFD`.
    #[default]
    None,
    /// uaio's duplicate.
    Held(Arc<InternalFd>),
    /// By number only: no descriptor number was left for a duplicate.
    Number(i32),
}

impl Resfd {
    fn raw(&self) -> Option<i32> {
        match self {
            Resfd::None => None,
            Resfd::Held(h) => Some(h.as_raw_fd()),
            Resfd::Number(n) => Some(*n),
        }
    }
}

/// A pending request.
#[derive(Debug)]
struct Req {
    /// The key the backend knows it by (see [`crate::backend::Op::key`]).
    key: u64,
    /// Cancelled by `io_destroy`: a POLL, or a read or write of a stream,
    /// which may wait forever. Reads, writes and syncs of regular files and
    /// block devices always finish, and destroy waits for them as the
    /// kernel does.
    forever: bool,
    data: u64,
    obj: u64,
    poll: bool,
    /// Poll: the events the application asked for, plus ERR and HUP.
    wanted: u32,
    /// Poll: submitted by the `start` call still running (a completion now
    /// comes from the initial readiness check, not from a wake-up).
    fresh: bool,
    resfd: Resfd,
    cancelled: bool,
    /// A buffered write to a regular file, counted in
    /// [`writeback::BACKEND_WRITES`] until it completes.
    buffered_write: bool,
    /// The iovec array the backend reads (vectored requests).
    _iov: Option<Box<[iovec]>>,
}

#[derive(Debug)]
struct State {
    /// uaio's own tail (the page's copy is only ever written).
    tail: u32,
    /// Events written to the ring whose slots are not reclaimed yet.
    unreclaimed: u32,
    /// Requests handed to the backend and not yet harvested.
    in_flight: u32,
    reqs: Slab<Req>,
    /// Generation of the next request key (never all ones).
    gen: u32,
}

/// What a validated iocb becomes. Filled in place in the submitting call's
/// array: moving a freshly built one costs more than everything else a
/// NOOP does (its small fields, stored one by one, are copied back with
/// wide loads that the processor cannot forward from those stores).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// What the backend does; `None` when already complete (`inline`).
    kind: Option<OpKind>,
    /// Result of a request completed during submission (NOOP, or a read
    /// that could be served without blocking).
    inline: i64,
    fd: i32,
    addr: u64,
    len: u32,
    off: u64,
    rw_flags: u32,
    ioprio: u16,
    poll_mask: u32,
    resfd: Resfd,
    data: u64,
    obj: u64,
    iov: Option<Box<[iovec]>>,
    /// See [`Req::forever`].
    forever: bool,
    /// See [`Req::buffered_write`].
    buffered_write: bool,
}

/// When `io_getevents` gives up waiting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Do not wait.
    Now,
    /// Wait until this instant.
    At(Instant),
    /// Wait as long as it takes.
    Never,
}

/// An AIO context.
#[derive(Debug)]
pub(crate) struct Context {
    ring: Ring,
    /// Index in the process table, as written in the ring header.
    id: u32,
    /// `io_setup`'s `nr_events`, counted against `aio-max-nr`.
    pub(crate) max_reqs: u32,
    capacity: u32,
    dead: AtomicBool,
    /// `io_submit` calls between their lookup and the end of `start`: the
    /// kernel's submitters hold a reference to the context, and destroy
    /// cancels only once every one has let go.
    submitters: AtomicU32,
    /// Threads inside `io_getevents` on this context.
    getters: AtomicU32,
    /// uaio's duplicates of the RESFD eventfds seen last, by the program's
    /// number (a few; each also held by the requests that use it).
    resfds: Mutex<Vec<(i32, Arc<InternalFd>)>>,
    used: AtomicU32,
    st: Mutex<State>,
    backend: Box<dyn Backend>,
    seq: AtomicU32,
    /// Completions the waiter sleeping in the backend (the leader) waits
    /// for; 0 when no thread leads.
    leader: AtomicU32,
    followers: AtomicU32,
    active: AtomicU32,
}

/// Per-call state of one `io_submit`: a small cache of file descriptor
/// facts, and whether reads may be tried inline.
#[derive(Debug, Default)]
pub(crate) struct FdCache {
    entries: Vec<FdInfo>,
    /// Small batches try reads inline (one system call per read); large
    /// ones go to the backend together, where one call carries them all.
    pub(crate) inline_reads: bool,
    /// A buffered write of this call goes to the backend: no later write
    /// of the call may overtake it (see [`writeback::BACKEND_WRITES`],
    /// which counts it only once the call publishes it).
    backend_write: bool,
}

impl FdCache {
    fn get(&mut self, fd: u32) -> Result<&mut FdInfo, Errno> {
        if let Some(i) = self.entries.iter().position(|e| e.fd == fd as i32) {
            return Ok(&mut self.entries[i]);
        }
        let info = FdInfo::get(fd)?;
        if self.entries.len() >= 8 {
            self.entries.remove(0);
        }
        self.entries.push(info);
        Ok(self.entries.last_mut().expect("just pushed"))
    }
}

fn check_ioprio(prio: i16) -> Result<(), Errno> {
    let p = prio as i32;
    let class = ((p >> IOPRIO_CLASS_SHIFT) & 0x7) as u32;
    match class {
        IOPRIO_CLASS_RT => {
            if !sys::can_use_rt_ioprio() {
                return Err(Errno::PERM);
            }
            Ok(())
        }
        IOPRIO_CLASS_BE | IOPRIO_CLASS_IDLE => Ok(()),
        // "No class" carries no level either.
        IOPRIO_CLASS_NONE if p & 0x7 != 0 => Err(Errno::INVAL),
        IOPRIO_CLASS_NONE => Ok(()),
        _ => Err(Errno::INVAL),
    }
}

fn check_rw_flags(flags: u32, write: bool) -> Result<(), Errno> {
    if flags == 0 {
        return Ok(());
    }
    if flags & !RWF_SUPPORTED != 0 {
        return Err(Errno::OPNOTSUPP);
    }
    if flags & RWF_APPEND != 0 && flags & RWF_NOAPPEND != 0 {
        return Err(Errno::INVAL);
    }
    if flags & RWF_ATOMIC != 0 && !write {
        return Err(Errno::OPNOTSUPP);
    }
    Ok(())
}

/// The checks of `RWF_*` flags that depend on the file, in the kernel's
/// order (after [`check_rw_flags`]): atomic writes need a file that can do
/// them, `RWF_DONTCACHE` a file system that supports it, and `RWF_NOAPPEND`
/// is refused on an append-only inode opened `O_APPEND`.
fn check_rw_flags_file(flags: u32, f: &mut FdInfo) -> Result<(), Errno> {
    if flags & RWF_ATOMIC != 0 && !f.can_atomic_write() {
        return Err(Errno::OPNOTSUPP);
    }
    if flags & RWF_DONTCACHE != 0 && !f.can_dontcache() {
        return Err(Errno::OPNOTSUPP);
    }
    if flags & RWF_NOAPPEND != 0 && f.flags & libc::O_APPEND as u32 != 0 && f.append_only_inode() {
        return Err(Errno::PERM);
    }
    Ok(())
}

/// Copies and checks an iovec array the way `__import_iovec` does.
fn import_iovecs(addr: u64, n: u64) -> Result<(Box<[iovec]>, u64), Errno> {
    // The kernel takes the count as an `unsigned int`.
    let n = n as u32 as u64;
    if n > UIO_MAXIOV {
        return Err(Errno::INVAL);
    }
    if n == 1 {
        // One segment is imported like a plain buffer: a negative length is
        // refused, then the length is capped at MAX_RW_COUNT before the
        // range check.
        let mut one = read_user::<iovec>(addr).map_err(|_| Errno::FAULT)?;
        if (one.iov_len as i64) < 0 {
            return Err(Errno::INVAL);
        }
        one.iov_len = one.iov_len.min(MAX_RW_COUNT);
        if !access_ok(one.iov_base, one.iov_len) {
            return Err(Errno::FAULT);
        }
        let total = one.iov_len;
        return Ok((vec![one].into_boxed_slice(), total));
    }
    let mut v = vec![iovec::default(); n as usize].into_boxed_slice();
    // SAFETY: `v` has room for n iovecs.
    let whole = unsafe { uaccess::copy_from_user(v.as_mut_ptr().cast(), addr, n as usize * 16) };
    if whole.is_err() {
        // Find which comes first, a negative length or the fault.
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = read_user::<iovec>(addr + 16 * i as u64).map_err(|_| Errno::FAULT)?;
            if (slot.iov_len as i64) < 0 {
                return Err(Errno::INVAL);
            }
        }
    }
    if v.iter().any(|e| (e.iov_len as i64) < 0) {
        return Err(Errno::INVAL);
    }
    let mut total = 0u64;
    for e in v.iter_mut() {
        if !access_ok(e.iov_base, e.iov_len) {
            return Err(Errno::FAULT);
        }
        if e.iov_len > MAX_RW_COUNT - total {
            e.iov_len = MAX_RW_COUNT - total;
        }
        total += e.iov_len;
    }
    Ok((v, total))
}

/// Iovecs (vectored requests), address and length for the backend.
type Buffer = (Option<Box<[iovec]>>, u64, u32);

/// The data buffer of a read or write: one range (`EFAULT` outside user
/// space, length capped at `MAX_RW_COUNT`) or an imported iovec array; then
/// the offset rules of `rw_verify_area`. Returns the iovecs (vectored only),
/// the address and length for the backend, and the byte count.
fn import_buffer(cb: &iocb, vectored: bool) -> Result<Buffer, Errno> {
    let (iov, addr, len, count) = if vectored {
        let (iov, total) = import_iovecs(cb.aio_buf, cb.aio_nbytes)?;
        let (addr, n) = (iov.as_ptr() as u64, iov.len() as u32);
        (Some(iov), addr, n, total)
    } else {
        let len = cb.aio_nbytes.min(MAX_RW_COUNT);
        if !access_ok(cb.aio_buf, len) {
            return Err(Errno::FAULT);
        }
        (None, cb.aio_buf, len as u32, len)
    };
    if cb.aio_offset < 0 || cb.aio_offset.checked_add(count as i64).is_none() {
        return Err(Errno::INVAL);
    }
    Ok((iov, addr, len))
}

/// Bytes a prepared read or write moves.
fn buffer_len(p: &Prepared) -> u64 {
    match &p.iov {
        Some(v) => v.iter().map(|e| e.iov_len).sum(),
        None => p.len as u64,
    }
}

impl Prepared {
    /// Makes this the start of the request of `cb` at `obj`.
    fn reset(&mut self, cb: &iocb, obj: u64, resfd: Resfd) {
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
        self.forever = false;
        self.buffered_write = false;
    }
}

impl Context {
    /// Creates a context for `nr_events` with a ring of geometry `geo`.
    pub(crate) fn new(nr_events: u32, geo: Geometry, id: u32, backend: Box<dyn Backend>) -> std::io::Result<Context> {
        Ok(Context {
            ring: Ring::new(geo, id)?,
            id,
            max_reqs: nr_events,
            capacity: geo.capacity,
            dead: AtomicBool::new(false),
            submitters: AtomicU32::new(0),
            getters: AtomicU32::new(0),
            resfds: Mutex::new(Vec::new()),
            used: AtomicU32::new(0),
            st: Mutex::new(State {
                tail: 0,
                unreclaimed: 0,
                in_flight: 0,
                reqs: Slab::with_capacity(geo.capacity.min(4096) as usize),
                gen: 0,
            }),
            backend,
            seq: AtomicU32::new(0),
            leader: AtomicU32::new(0),
            followers: AtomicU32::new(0),
            active: AtomicU32::new(0),
        })
    }

    /// Index in the process table (the ring header's `id`).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The handle (ring address).
    pub(crate) fn handle(&self) -> u64 {
        self.ring.addr()
    }

    /// Makes `addr` the handle if the ring was moved there (see
    /// [`Ring::adopt`], which needs the completion lock).
    pub(crate) fn adopt_handle(&self, addr: u64) -> bool {
        let st = self.lock();
        self.ring.adopt(addr, st.tail)
    }

    /// Unmaps the application's view of the ring (`io_destroy`).
    pub(crate) fn unmap_ring(&self) {
        self.ring.unmap_user()
    }

    /// Event slots in the ring.
    pub(crate) fn ring_nr(&self) -> u32 {
        self.ring.nr()
    }

    /// Whether the progress thread may harvest now (no caller inside).
    pub(crate) fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }

    /// Whether completions wait in the backend.
    pub(crate) fn has_completions(&self) -> bool {
        self.backend.has_completions()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.backend.set_notify(false);
        }
    }

    fn leave(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.backend.set_notify(true);
            // Completions that arrived while notification was off.
            if self.backend.has_completions() {
                self.harvest();
            }
        }
    }

    /// Reclaims the slots of events the reader has consumed; returns how many.
    fn reclaim(&self) -> u32 {
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

    fn reserve_slot(&self) -> bool {
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
    /// (told apart from a new file under the same number with `kcmp`), and
    /// it is the duplicate that is checked, so that a number closed and
    /// reused while `io_submit` runs cannot turn a completion into 8 bytes
    /// written to the new file. `Resfd::None` without `IOCB_FLAG_RESFD`.
    fn hold_resfd(&self, cb: &iocb, fds: &mut FdCache) -> Result<Resfd, Errno> {
        if cb.aio_flags & IOCB_FLAG_RESFD == 0 {
            return Ok(Resfd::None);
        }
        let fd = fds.get(cb.aio_resfd)?.fd;
        let mut cache = self.resfds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, h)) = cache.iter().find(|(n, h)| *n == fd && sys::same_open_file(fd, h.as_raw_fd())) {
            return Ok(Resfd::Held(h.clone()));
        }
        // SAFETY: the number was open a moment ago; if it was closed since,
        // the duplication fails. The borrow lasts for the duplication only.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match InternalFd::dup_of(borrowed) {
            Ok(d) => {
                if !sys::is_eventfd(d.as_raw_fd()) {
                    return Err(Errno::INVAL);
                }
                let h = Arc::new(d);
                cache.retain(|(n, _)| *n != fd);
                if cache.len() >= 4 {
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
        self.submitters.fetch_add(1, Ordering::SeqCst);
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

    /// Ends what [`Context::begin_submit`] began.
    pub(crate) fn end_submit(&self) {
        self.submitters.fetch_sub(1, Ordering::SeqCst);
    }

    fn release_slot(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes up to `n` event slots at once for one `io_submit` (one atomic
    /// operation instead of one per request); returns how many it got.
    /// Those not used go back through [`Context::release_slots`].
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

    /// Gives back `n` slots taken by [`Context::reserve_slots`].
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
        let cb: iocb = read_user(obj).map_err(|_| Errno::FAULT)?;
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

    fn prepare_reserved(&self, cb: &iocb, obj: u64, fds: &mut FdCache, p: &mut Prepared) -> Result<(), Errno> {
        if fds.inline_reads && self.try_inline_read(cb, obj, fds, p) {
            return Ok(());
        }
        self.prepare_checked(cb, obj, fds, p)
    }

    /// The fast path for reads: every check that does not need the data
    /// descriptor passes, and a `RWF_NOWAIT` read serves the whole request
    /// without blocking. Success proves what the descriptor checks would
    /// (open, readable, not a directory), so it saves their system calls and
    /// the trip through the backend. Anything else returns `None` and the
    /// full path decides, in the kernel's order, with no trace left.
    fn try_inline_read(&self, cb: &iocb, obj: u64, fds: &mut FdCache, p: &mut Prepared) -> bool {
        self.try_inline_read_inner(cb, obj, fds, p).is_some()
    }

    fn try_inline_read_inner(&self, cb: &iocb, obj: u64, fds: &mut FdCache, p: &mut Prepared) -> Option<()> {
        let vectored = match cb.aio_lio_opcode {
            IOCB_CMD_PREAD => false,
            IOCB_CMD_PREADV => true,
            _ => return None,
        };
        let resfd = self.hold_resfd(cb, fds).ok()?;
        if cb.aio_flags & IOCB_FLAG_IOPRIO != 0 {
            check_ioprio(cb.aio_reqprio).ok()?;
        }
        check_rw_flags(cb.aio_rw_flags, false).ok()?;
        let (iov, addr, len) = import_buffer(cb, vectored).ok()?;
        let count = iov.as_ref().map_or(len as u64, |v| v.iter().map(|e| e.iov_len).sum());
        // A zero-length read succeeds before the file is looked at, so it
        // would prove nothing about the descriptor; uaio's own descriptors
        // (and closed ones) are refused by the full path; and a direct read
        // through preadv2 waits for the device even with RWF_NOWAIT. The
        // open flags are asked afresh (once per call and descriptor): a
        // number may have been reopened, or set O_DIRECT, a moment ago.
        if count == 0 || sys::internal_fds::is_internal(cb.aio_fildes as i32) {
            return None;
        }
        if fds.get(cb.aio_fildes).ok()?.flags & libc::O_DIRECT as u32 != 0 {
            return None;
        }
        let one = iovec { iov_base: addr, iov_len: len as u64 };
        // SAFETY: writing KIOCB_KEY into the application's iocb, as the kernel does.
        unsafe { write_user(obj + 8, &KIOCB_KEY) }.ok()?;
        let (ptr, n) = match &iov {
            Some(v) => (v.as_ptr(), v.len()),
            None => (&one as *const iovec, 1),
        };
        let flags = (cb.aio_rw_flags & !RWF_HIPRI) | RWF_NOWAIT;
        let (r, stream) = sys::preadv2(cb.aio_fildes as i32, ptr, n, cb.aio_offset, flags);
        // Errors raised before any data moves (would block, no such
        // descriptor or mode, no read_iter, NOWAIT unsupported) leave no
        // trace: the full path decides. Any other error may follow a side
        // effect (an eventfd's counter is taken before the copy faults), so
        // it is the request's result, as the kernel would report it.
        let untouched = [libc::EAGAIN, libc::EOPNOTSUPP, libc::EBADF, libc::EINVAL, libc::EISDIR, libc::ESPIPE]
            .iter()
            .any(|&e| r == -(e as i64));
        if untouched || (r > 0 && (r as u64) < count && !stream) {
            // Would block, failed, or served only in part: undo the key
            // write if it changed anything and let the full path decide.
            if cb.aio_key != KIOCB_KEY {
                // SAFETY: restoring the value the application had there.
                let _ = unsafe { write_user(obj + 8, &cb.aio_key) };
            }
            return None;
        }
        p.reset(cb, obj, resfd);
        p.inline = r;
        Some(())
    }

    fn prepare_checked(&self, cb: &iocb, obj: u64, fds: &mut FdCache, p: &mut Prepared) -> Result<(), Errno> {
        fds.get(cb.aio_fildes)?;
        let resfd = self.hold_resfd(cb, fds)?;
        // SAFETY: writing KIOCB_KEY into the application's iocb, as the kernel does.
        unsafe { write_user(obj + 8, &KIOCB_KEY) }.map_err(|_| Errno::FAULT)?;
        let behind_write = fds.backend_write;
        let f = fds.get(cb.aio_fildes)?;
        p.reset(cb, obj, resfd);
        match cb.aio_lio_opcode {
            IOCB_CMD_PREAD | IOCB_CMD_PWRITE | IOCB_CMD_PREADV | IOCB_CMD_PWRITEV => {
                let write = matches!(cb.aio_lio_opcode, IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV);
                let vectored = matches!(cb.aio_lio_opcode, IOCB_CMD_PREADV | IOCB_CMD_PWRITEV);
                if cb.aio_flags & IOCB_FLAG_IOPRIO != 0 {
                    check_ioprio(cb.aio_reqprio)?;
                    p.ioprio = cb.aio_reqprio as u16;
                }
                check_rw_flags(cb.aio_rw_flags, write)?;
                check_rw_flags_file(cb.aio_rw_flags, f)?;
                if write {
                    if !f.writable() {
                        return Err(Errno::BADF);
                    }
                    // Anonymous inodes (eventfd, timerfd, signalfd, epoll...)
                    // have no `write_iter`.
                    if f.is_anon_inode() {
                        return Err(Errno::INVAL);
                    }
                } else {
                    if !f.readable() {
                        return Err(Errno::BADF);
                    }
                    if f.is_dir() || (f.is_anon_inode() && !f.anon_reads_iter()) {
                        return Err(Errno::INVAL);
                    }
                }
                (p.iov, p.addr, p.len) = import_buffer(cb, vectored)?;
                if cb.aio_offset != 0 && f.mode() & libc::S_IFMT == libc::S_IFSOCK {
                    // A socket's read_iter and write_iter refuse a position
                    // (the request's result; pipes ignore it instead).
                    p.inline = -(libc::ESPIPE as i64);
                    p.iov = None;
                    return Ok(());
                }
                let empty = match &p.iov {
                    Some(v) => v.iter().all(|e| e.iov_len == 0),
                    None => p.len == 0,
                };
                if empty && !write && f.is_anon_inode() {
                    // The kernel hands even an empty read to read_iter, and
                    // eventfd, timerfd and signalfd refuse reads shorter than
                    // their record (io_uring would answer 0 without asking).
                    p.inline = -(libc::EINVAL as i64);
                    p.iov = None;
                    return Ok(());
                }
                p.off = cb.aio_offset as u64;
                p.rw_flags = cb.aio_rw_flags & !RWF_HIPRI;
                p.forever = !f.is_regular_or_block();
                // Requests that cannot block by definition are done here, as
                // the kernel does, with the file's own answer: RWF_NOWAIT
                // ones, and those on pipes, sockets, eventfds and devices
                // opened O_NONBLOCK (which answer EAGAIN themselves; io_uring
                // would wait for readiness instead).
                let nonblock = f.flags & libc::O_NONBLOCK as u32 != 0 && !f.is_regular_or_block();
                // Except a direct transfer: the system call waits for the
                // device even with RWF_NOWAIT (a synchronous call waits for
                // its bio; only AIO and io_uring return once it is queued),
                // so it goes to the backend, which keeps the flag.
                let direct = f.flags & libc::O_DIRECT as u32 != 0;
                // A buffered write to ext4 or XFS runs here, as the
                // kernel's does, when the rule of `writeback` shows it
                // cannot wait for the device.
                let inline_write = write
                    && !direct
                    && !empty
                    && p.rw_flags & RWF_NOWAIT == 0
                    && !self.backend.wants_every_write()
                    && f.is_regular()
                    && !behind_write
                    && writeback::may_write_inline(f, p.rw_flags, p.off, buffer_len(p));
                if (p.rw_flags & RWF_NOWAIT != 0 && !direct) || nonblock || inline_write {
                    let one = iovec { iov_base: p.addr, iov_len: p.len as u64 };
                    let (ptr, n) = match &p.iov {
                        Some(v) => (v.as_ptr(), v.len()),
                        None => (&one as *const iovec, 1),
                    };
                    let refuses = write && f.refuses_nowait_buffered_write();
                    let queued_writes = behind_write || writeback::BACKEND_WRITES.load(Ordering::SeqCst) != 0;
                    p.inline = if write && empty && p.rw_flags & RWF_NOWAIT != 0 && refuses {
                        // The C library answers an empty write itself; the
                        // kernel's AIO asks the file system, which refuses.
                        -(libc::EOPNOTSUPP as i64)
                    } else if write && !direct && f.is_regular() && !refuses && queued_writes {
                        // A buffered write of the program's that would not
                        // wait, while an earlier one waits in the backend:
                        // done now, it could overtake it. The kernel's own
                        // answer when a write cannot be done at once.
                        -(libc::EAGAIN as i64)
                    } else {
                        sys::prwv2(write, f.fd, ptr, n, cb.aio_offset, p.rw_flags).0
                    };
                    p.iov = None;
                    return Ok(());
                }
                p.buffered_write = write && !direct && f.is_regular();
                fds.backend_write |= p.buffered_write;
                p.kind = Some(match (write, vectored) {
                    (false, false) => OpKind::Read,
                    (true, false) => OpKind::Write,
                    (false, true) => OpKind::Readv,
                    (true, true) => OpKind::Writev,
                });
            }
            IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => {
                if cb.aio_buf != 0 || cb.aio_offset != 0 || cb.aio_nbytes != 0 || cb.aio_rw_flags != 0 {
                    return Err(Errno::INVAL);
                }
                if !f.can_fsync() {
                    return Err(Errno::INVAL);
                }
                p.kind = Some(if cb.aio_lio_opcode == IOCB_CMD_FSYNC { OpKind::Fsync } else { OpKind::Fdatasync });
            }
            IOCB_CMD_POLL => {
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
                p.kind = Some(OpKind::Poll);
                p.forever = true;
            }
            IOCB_CMD_NOOP => {}
            _ => return Err(Errno::INVAL),
        }
        Ok(())
    }

    /// Starts validated requests; NOOPs complete at once. The entries are
    /// left emptied (their descriptors and vectors moved out), for reuse.
    pub(crate) fn start(&self, preps: &mut [Prepared]) {
        if preps.is_empty() {
            return;
        }
        // Requests completed during submission never meet the backend: no
        // need to hold its notifications off (see `enter`).
        let to_backend = preps.iter().any(|p| p.kind.is_some());
        if to_backend {
            self.enter();
        }
        // Allocated only when something goes to the backend (inline
        // completions, the cached-read fast path, need none).
        let mut ops: Vec<Op> = Vec::new();
        let mut published = 0u32;
        let mut signals: Vec<(Resfd, u64)> = Vec::new();
        let mut polls = false;
        {
            let mut guard = self.lock();
            let st = &mut *guard;
            for p in preps.iter_mut() {
                match p.kind {
                    None => {
                        self.ring.write_event(st.tail, &io_event { data: p.data, obj: p.obj, res: p.inline, res2: 0 });
                        st.tail = (st.tail + 1) % self.ring.nr();
                        published += 1;
                        add_signal(&mut signals, &p.resfd);
                        p.resfd = Resfd::None;
                    }
                    Some(kind) => {
                        let entry = st.reqs.vacant_entry();
                        let key = (st.gen as u64) << 32 | entry.key() as u64;
                        entry.insert(Req {
                            key,
                            forever: p.forever,
                            data: p.data,
                            obj: p.obj,
                            poll: kind == OpKind::Poll,
                            wanted: p.poll_mask | (libc::POLLERR | libc::POLLHUP) as u32,
                            fresh: true,
                            resfd: std::mem::take(&mut p.resfd),
                            cancelled: false,
                            buffered_write: p.buffered_write,
                            _iov: p.iov.take(),
                        });
                        st.gen = st.gen.wrapping_add(1) % u32::MAX;
                        if p.buffered_write {
                            writeback::BACKEND_WRITES.fetch_add(1, Ordering::SeqCst);
                        }
                        st.in_flight += 1;
                        if kind == OpKind::Poll {
                            polls = true;
                        }
                        ops.push(Op {
                            key,
                            kind,
                            fd: p.fd,
                            addr: p.addr,
                            len: p.len,
                            off: p.off,
                            rw_flags: p.rw_flags,
                            ioprio: p.ioprio,
                            poll_mask: p.poll_mask,
                        });
                    }
                }
            }
            if published > 0 {
                self.ring.publish_tail(st.tail);
                st.unreclaimed += published;
            }
        }
        signal_all(signals);
        if published > 0 {
            self.notify_waiters(true);
        }
        if !ops.is_empty() {
            if let Err(e) = self.backend.submit(&ops) {
                self.fail(&ops, e);
            }
            if self.backend.has_completions() {
                self.harvest();
            }
            if polls {
                let mut st = self.lock();
                for op in ops.iter().filter(|o| o.kind == OpKind::Poll) {
                    if let Some(r) = st.reqs.get_mut(op.key as u32 as usize).filter(|r| r.key == op.key) {
                        r.fresh = false;
                    }
                }
            }
        }
        if to_backend {
            self.leave();
        } else if self.backend.has_completions() {
            // Earlier requests finished meanwhile (a sync behind inline
            // writes): their events join the ring now, not at the progress
            // thread's next turn.
            self.harvest();
        }
    }

    /// Completes operations the backend refused with `-e`.
    fn fail(&self, ops: &[Op], e: Errno) {
        let mut signals = Vec::new();
        {
            let mut st = self.lock();
            for op in ops {
                let req = st.reqs.remove(op.key as u32 as usize);
                if req.buffered_write {
                    writeback::BACKEND_WRITES.fetch_sub(1, Ordering::SeqCst);
                }
                let tail = st.tail;
                self.ring.write_event(
                    tail,
                    &io_event { data: req.data, obj: req.obj, res: -(e.raw_os_error() as i64), res2: 0 },
                );
                st.tail = (tail + 1) % self.ring.nr();
                st.in_flight -= 1;
                st.unreclaimed += 1;
                add_signal(&mut signals, &req.resfd);
            }
            self.ring.publish_tail(st.tail);
        }
        signal_all(signals);
        self.notify_waiters(true);
    }

    /// Moves completions from the backend into the ring. Returns the number
    /// of backend entries consumed.
    pub(crate) fn harvest(&self) -> usize {
        self.harvest_by(false)
    }

    /// [`Context::harvest`], by the leading waiter when `leader` (which need
    /// not be woken by its own publication).
    fn harvest_by(&self, leader: bool) -> usize {
        let mut published = 0u32;
        let consumed;
        let mut signals = Vec::new();
        {
            let mut guard = self.lock();
            let st = &mut *guard;
            let nr = self.ring.nr();
            let ring = &self.ring;
            let mut tail = st.tail;
            let reqs = &mut st.reqs;
            consumed = self.backend.drain(&mut |key, res| {
                let idx = key as u32 as usize;
                if reqs.get(idx).is_none_or(|r| r.key != key) {
                    return;
                }
                let req = reqs.remove(idx);
                if req.buffered_write {
                    writeback::BACKEND_WRITES.fetch_sub(1, Ordering::SeqCst);
                }
                let res = res as i64;
                let res = if req.poll && (res == -(libc::ECANCELED as i64) || req.cancelled) {
                    // A cancelled POLL completes with 0, as the kernel's does
                    // (readiness that raced the cancel is not reported).
                    0
                } else if req.poll && req.fresh && res > 0 {
                    // The kernel's initial check reports only what was asked.
                    res & req.wanted as i64
                } else if req.cancelled && (res == -(libc::ECANCELED as i64) || res == -(libc::EINTR as i64)) {
                    -(libc::ECANCELED as i64)
                } else {
                    res
                };
                ring.write_event(tail, &io_event { data: req.data, obj: req.obj, res, res2: 0 });
                tail = (tail + 1) % nr;
                published += 1;
                add_signal(&mut signals, &req.resfd);
            });
            if published > 0 {
                st.tail = tail;
                ring.publish_tail(tail);
                st.in_flight -= published;
                st.unreclaimed += published;
            }
        }
        signal_all(signals);
        if published > 0 {
            self.notify_waiters(!leader);
        }
        consumed
    }

    /// Tells waiters that events were published: followers through the
    /// futex, and the leader, unless `wake_leader` is false (the leader
    /// published them itself), through the backend.
    fn notify_waiters(&self, wake_leader: bool) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.followers.load(Ordering::SeqCst) > 0 {
            wake_all(&self.seq);
        }
        if wake_leader && self.leader.load(Ordering::SeqCst) != 0 {
            self.backend.wake();
        }
    }

    /// Copies up to `max` events from the ring to the user array at `out`.
    fn consume(&self, out: u64, max: usize) -> Result<usize, Errno> {
        if max == 0 {
            return Ok(0);
        }
        let st = self.lock();
        let nr = self.ring.nr();
        let mut head = self.ring.head();
        let tail = st.tail;
        let mut done = 0usize;
        while done < max && head != tail {
            let end = if head < tail { tail } else { nr };
            let n = ((end - head) as usize).min(max - done);
            // SAFETY: the slots [head, head + n) lie in the ring; `out` is the
            // application's events array, which it gave us to fill.
            unsafe { uaccess::copy_to_user(out + 32 * done as u64, self.ring.slot_ptr(head), 32 * n) }
                .map_err(|_| Errno::FAULT)?;
            done += n;
            head = (head + n as u32) % nr;
        }
        if done > 0 {
            self.ring.set_head(head);
        }
        Ok(done)
    }

    /// Events in the ring not yet read.
    fn ring_available(&self) -> usize {
        let tail = self.lock().tail;
        let nr = self.ring.nr();
        ((tail + nr - self.ring.head() % nr) % nr) as usize
    }

    /// Waits until no request that always finishes (file and block device
    /// I/O, syncs) is in flight; the events go to the ring as usual.
    /// Only requests accepted before the call are waited for (see
    /// [`begin_exit`], which holds new submissions back first).
    pub(crate) fn finish_file_io(&self) {
        wait_until_zero(&self.submitters, u32::MAX);
        self.enter();
        let keys: Vec<u64> = self.lock().reqs.iter().filter(|(_, r)| !r.forever).map(|(_, r)| r.key).collect();
        loop {
            self.harvest();
            let pending = {
                let st = self.lock();
                keys.iter().any(|&k| st.reqs.get(k as u32 as usize).is_some_and(|r| r.key == k))
            };
            if !pending {
                break;
            }
            let _ = self.backend.wait(1, Some(Duration::from_millis(10)), None);
        }
        self.leave();
    }

    /// Whether requests are in flight in the backend.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0
    }

    fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// `io_getevents`: at least `min_nr`, at most `nr` events into `out`.
    pub(crate) fn getevents(
        &self,
        min_nr: usize,
        nr: usize,
        out: u64,
        deadline: Deadline,
        sigmask: Option<u64>,
    ) -> Result<usize, Errno> {
        // Events already in the ring are enough: taken without the waiting
        // machinery (no sleep can follow, so no one needs to know we are here).
        let mut got = 0;
        if sigmask.is_none() && nr > 0 {
            // Completions waiting in the backend join the ring first, so
            // that a caller finding enough events there sees them too.
            if self.backend.has_completions() {
                self.harvest();
            }
            got = self.consume(out, nr)?;
            if got >= min_nr.max(1) {
                return Ok(got);
            }
        }
        self.getters.fetch_add(1, Ordering::SeqCst);
        self.enter();
        let r = self.getevents_inner(got, min_nr, nr, out, deadline, sigmask);
        self.leave();
        self.getters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    fn getevents_inner(
        &self,
        mut got: usize,
        min_nr: usize,
        nr: usize,
        out: u64,
        deadline: Deadline,
        sigmask: Option<u64>,
    ) -> Result<usize, Errno> {
        let mut leading = false;
        // With a mask given (io_pgetevents), signals are held back for the
        // whole call except while sleeping, where the mask is in force.
        let saved_mask: Option<u64> = sigmask.map(|_| sys::block_async_signals());
        let mut first = true;
        let result = loop {
            // As the kernel's waiters (since 6.9), a waiter takes events
            // when it starts and then only once there are enough for it, or
            // when it leaves: fewer stay in the ring for other readers.
            let take = first
                || self.ring_available() >= min_nr - got
                || self.dead.load(Ordering::SeqCst)
                || matches!(deadline, Deadline::At(t) if t <= Instant::now());
            first = false;
            if take {
                match self.consume(out + 32 * got as u64, nr - got) {
                    Ok(n) => got += n,
                    Err(e) => break if got > 0 { Ok(got) } else { Err(e) },
                }
            }
            if got >= min_nr {
                break Ok(got);
            }
            if self.dead.load(Ordering::SeqCst) {
                break if got > 0 { Ok(got) } else { Err(Errno::INVAL) };
            }
            if self.backend.has_completions() && self.harvest_by(leading) > 0 {
                continue;
            }
            let timeout = match deadline {
                Deadline::Now => break Ok(got),
                Deadline::Never => None,
                Deadline::At(t) => {
                    let now = Instant::now();
                    if t <= now {
                        break Ok(got);
                    }
                    Some(t - now)
                }
            };
            if self.await_submitter() {
                continue;
            }
            let want = ((min_nr - got) as u32).min(self.in_flight()).max(1);
            let r = if leading || self.leader.compare_exchange(0, want, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                leading = true;
                self.lead(want, min_nr - got, timeout, sigmask.as_ref())
            } else {
                self.follow(min_nr - got, timeout, sigmask)
            };
            match r {
                Ok(()) | Err(Errno::TIME) => continue,
                Err(Errno::INTR) => {
                    // What is there goes with the interruption, as the
                    // kernel reads once more before it leaves.
                    if let Ok(n) = self.consume(out + 32 * got as u64, nr - got) {
                        got += n;
                    }
                    break if got > 0 { Ok(got) } else { Err(Errno::INTR) };
                }
                Err(_) => continue,
            }
        };
        if leading {
            self.leader.store(0, Ordering::SeqCst);
            // A follower takes over.
            if self.followers.load(Ordering::SeqCst) > 0 {
                self.seq.fetch_add(1, Ordering::SeqCst);
                wake_all(&self.seq);
            }
        }
        let mut result = result;
        if let (Ok(n), Some(m)) = (result, sigmask) {
            // A signal pending that the caller's mask lets through is
            // delivered under that mask, as the kernel delivers it before
            // putting the old mask back (installing the mask delivers it);
            // with nothing to return it also interrupts the call, as the
            // kernel's check after its wait does (even without a wait).
            if sys::pending_signals() & !m & !SYNCHRONOUS_MASK != 0 {
                sys::set_signal_mask(m);
                if n == 0 {
                    result = Err(Errno::INTR);
                }
            }
        }
        if let Some(m) = saved_mask {
            sys::set_signal_mask(m);
        }
        result
    }

    /// While another thread is inside `io_submit` on this context, whose
    /// page-cache requests complete there, spins a little for its events
    /// instead of going to sleep at once: a sleep and a wake-up cost more
    /// than the submission takes. Returns whether events were published.
    fn await_submitter(&self) -> bool {
        let seq = self.seq.load(Ordering::SeqCst);
        for _ in 0..SUBMITTER_SPINS {
            if self.submitters.load(Ordering::Relaxed) == 0 {
                break;
            }
            if self.seq.load(Ordering::Relaxed) != seq {
                return true;
            }
            core::hint::spin_loop();
        }
        self.seq.load(Ordering::SeqCst) != seq
    }

    /// One sleep of the leader inside the backend, for `want` completions
    /// (one when followers wait too, so that they hear of every event),
    /// unless `need` events are in the ring already.
    /// Leadership is kept across sleeps: it passes on only when the leader
    /// leaves `io_getevents`.
    fn lead(&self, want: u32, need: usize, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        let want = if self.followers.load(Ordering::SeqCst) > 0 { 1 } else { want };
        // Announce what we wait for before looking: a publisher that misses
        // our look sees the announcement and wakes the backend (see
        // `notify_waiters`).
        self.leader.store(want, Ordering::SeqCst);
        if self.ring_available() >= need || self.backend.has_completions() || self.dead.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.backend.wait(want, timeout, sigmask)
    }

    /// One sleep of a follower on the futex `seq`, which moves whenever
    /// events are published or the leader leaves, unless `need` events are
    /// in the ring already.
    fn follow(&self, need: usize, timeout: Option<Duration>, sigmask: Option<u64>) -> Result<(), Errno> {
        let seq = self.seq.load(Ordering::SeqCst);
        if self.followers.fetch_add(1, Ordering::SeqCst) == 0 && self.leader.load(Ordering::SeqCst) > 1 {
            // The leader waits for several completions; make it come back
            // and wait for one at a time while followers are there.
            self.backend.wake();
        }
        let r = if self.seq.load(Ordering::SeqCst) != seq
            || self.dead.load(Ordering::SeqCst)
            || self.leader.load(Ordering::SeqCst) == 0
            || self.ring_available() >= need
        {
            Ok(())
        } else {
            // Always with a time limit: an interrupted timed futex wait
            // returns EINTR whatever the handler's SA_RESTART, as
            // io_getevents does; an untimed one would be restarted and the
            // signal would go unnoticed.
            let d = timeout.unwrap_or(Duration::from_secs(3600));
            let ts = rustix::thread::futex::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ };
            if let Some(m) = sigmask {
                sys::set_signal_mask(m);
            }
            let r = rustix::thread::futex::wait(&self.seq, rustix::thread::futex::Flags::PRIVATE, seq, Some(&ts));
            if sigmask.is_some() {
                sys::block_async_signals();
            }
            match r {
                Err(Errno::AGAIN) => Ok(()),
                Err(Errno::TIMEDOUT) => Err(Errno::TIME),
                other => other,
            }
        };
        self.followers.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// `io_cancel` of the request whose iocb is at `obj`.
    pub(crate) fn cancel(&self, obj: u64) -> Result<(), Errno> {
        // What has completed already is no longer pending (the kernel knows
        // at once; uaio learns it from the backend).
        if self.backend.has_completions() {
            self.enter();
            self.harvest();
            self.leave();
        }
        let key = {
            let mut st = self.lock();
            let Some((_, req)) = st.reqs.iter_mut().find(|(_, r)| r.obj == obj && !r.cancelled) else {
                return Err(Errno::INVAL);
            };
            req.cancelled = true;
            req.key
        };
        self.enter();
        self.backend.cancel(key);
        if self.backend.has_completions() {
            self.harvest();
        }
        self.leave();
        Ok(())
    }

    /// `io_destroy`: marks the context dead, waits until no `io_submit`
    /// still works on it, cancels what could wait forever (POLLs, reads and
    /// writes of streams), wakes every waiter, and returns once no request
    /// is in flight. Reads, writes and syncs of files are waited for, never
    /// cancelled, as the kernel does.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        wait_until_zero(&self.submitters, u32::MAX);
        // Waiters learn of the death before anything is cancelled, so that
        // they answer EINVAL rather than reap the cancellations' events (the
        // kernel's cancellations run only after its waiters were woken). A
        // waiter always leaves once woken; the bound only guards against a
        // thread stuck elsewhere (in a signal handler, say).
        self.seq.fetch_add(1, Ordering::SeqCst);
        wake_all(&self.seq);
        self.backend.wake();
        wait_until_zero(&self.getters, 10_000);
        self.enter();
        let keys: Vec<u64> = {
            let mut st = self.lock();
            st.reqs
                .iter_mut()
                .filter(|(_, r)| r.forever && !r.cancelled)
                .map(|(_, r)| {
                    r.cancelled = true;
                    r.key
                })
                .collect()
        };
        for key in keys {
            self.backend.cancel(key);
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
        wake_all(&self.seq);
        self.backend.wake();
        loop {
            self.harvest();
            if self.in_flight() == 0 {
                break;
            }
            let _ = self.backend.wait(1, Some(Duration::from_millis(10)), None);
        }
        self.leave();
    }
}

/// Rounds of [`Context::await_submitter`]'s spin (a few microseconds).
const SUBMITTER_SPINS: u32 = 2000;

/// Signals uaio never blocks (see [`sys::block_async_signals`]): a pending
/// one of them is not the caller's business.
const SYNCHRONOUS_MASK: u64 =
    1 << (libc::SIGSEGV - 1) | 1 << (libc::SIGBUS - 1) | 1 << (libc::SIGILL - 1) | 1 << (libc::SIGFPE - 1);

/// The thread id of the thread running the process's exit (0: none yet).
static EXITING: AtomicI32 = AtomicI32::new(0);

/// The calling thread is running the process's `exit`: from now on other
/// threads' `io_submit` calls never return (they end with the process), so
/// that the requests to wait for are exactly those accepted so far. The
/// exiting thread itself may still submit (an exit handler may).
pub(crate) fn begin_exit() {
    EXITING.store(sys::gettid(), Ordering::SeqCst);
}

/// Waits (yielding, then napping) until `count` is zero, for at most
/// `rounds` naps.
fn wait_until_zero(count: &AtomicU32, rounds: u32) {
    let mut spins = 0u32;
    while count.load(Ordering::SeqCst) > 0 {
        spins += 1;
        if spins < 100 {
            std::thread::yield_now();
        } else if spins - 100 >= rounds {
            return;
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Wakes every thread sleeping on the futex `seq`.
fn wake_all(seq: &AtomicU32) {
    let _ = rustix::thread::futex::wake(seq, rustix::thread::futex::Flags::PRIVATE, i32::MAX as u32);
}

/// Counts one completion for `r`'s eventfd (nothing without RESFD).
fn add_signal(v: &mut Vec<(Resfd, u64)>, r: &Resfd) {
    let Some(fd) = r.raw() else { return };
    match v.iter_mut().find(|(f, _)| f.raw() == Some(fd)) {
        Some((_, n)) => *n += 1,
        None => v.push((r.clone(), 1)),
    }
}

/// Signals the counted eventfds (after the events are in the ring); each
/// held duplicate stays open until its signal is written.
fn signal_all(v: Vec<(Resfd, u64)>) {
    for (r, n) in v {
        if let Some(fd) = r.raw() {
            sys::eventfd_add(fd, n);
        }
    }
}
