//! The io_uring backend: one ring per AIO context.
//!
//! Submission queue entries are written under a lock and pushed with one
//! `io_uring_enter` per `io_submit`; completions are consumed straight from
//! the completion queue by whichever thread harvests (the caller of
//! `io_getevents` or `io_submit`, or the progress thread when nobody calls).
//! All system calls go through rustix's raw syscall layer, never through the
//! C library's `syscall()`, which the drop-in library interposes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::io::Errno;
use rustix::io::ReadWriteFlags;
use rustix::io_uring::{
    addr_or_splice_off_in_union, io_uring_cqe, io_uring_enter, io_uring_enter_arg, io_uring_getevents_arg,
    io_uring_params, io_uring_ptr, io_uring_register, io_uring_setup, io_uring_sqe, io_uring_user_data, ioprio_union,
    len_union, off_or_addr2_union, op_flags_union, IoringCqFlags, IoringEnterFlags, IoringFsyncFlags, IoringOp,
    IoringRegisterOp, IoringSetupFlags, IoringSqeFlags, IORING_OFF_SQES,
};

use super::{poll_companions, Backend, BackendOp, OpKind};

mod fixed;
mod order;
mod owners;
mod streams;
use crate::sys::internal_fds::InternalFd;
use crate::sys::mmap::Mapping;
use fixed::Held;
pub(crate) use order::after_fork_in_child;

/// The relative timeout of a wake-up entry: expires at once. The kernel
/// copies it when the entry is submitted.
static WAKE_NOW: rustix::fs::Timespec = rustix::fs::Timespec { tv_sec: 0, tv_nsec: 1 };

/// Entries prepared on the stack and pushed to the ring at a time.
const SUBMIT_BATCH: usize = 32;

/// High half of the user_data of internal entries (never that of a request key).
const INTERNAL_HIGH: u64 = 0xffff_ffff;
/// user_data of internal entries.
const TAG_WAKE: u64 = u64::MAX;
const TAG_CANCEL: u64 = u64::MAX - 1;
/// The NOP a new ring submits before it is used (see `Ring::new`).
const TAG_PROBE: u64 = u64::MAX - 2;

/// The events a POLL asks io_uring for ([`poll_companions`]). io_uring
/// ignores a wake-up that names events when the only ones asked for are
/// `POLLPRI` (it keeps that bit for its own use), so a POLL for `POLLPRI`
/// alone would sleep through a socket's urgent data; `POLLRDBAND`, which a
/// socket's wake-up names together with `POLLPRI`, lets it see them.
fn uring_poll_events(mask: u32) -> u32 {
    let m = poll_companions(mask);
    if m & !(libc::POLLPRI as u32 | libc::EPOLLONESHOT as u32) == 0 && m & libc::POLLPRI as u32 != 0 {
        m | libc::POLLRDBAND as u32
    } else {
        m
    }
}

/// An entry that ends every wait in `io_uring_enter`: a timeout's
/// completion does, whatever number of completions the wait is for (a NOP
/// would count as one).
fn wake_sqe() -> Sqe {
    sqe(IoringOp::Timeout, 0, &WAKE_NOW as *const rustix::fs::Timespec as u64, 1, 0, TAG_WAKE)
}

/// A submission queue entry (rustix's copy of the kernel's ABI).
type Sqe = io_uring_sqe;
/// A completion queue entry.
type Cqe = io_uring_cqe;

/// An entry with the fields every one of uaio's uses sets.
fn sqe(opcode: IoringOp, fd: i32, addr: u64, len: u32, off: u64, user_data: u64) -> Sqe {
    Sqe {
        opcode,
        fd,
        off_or_addr2: off_or_addr2_union { off },
        addr_or_splice_off_in: addr_or_splice_off_in_union { addr: io_uring_ptr::new(addr as *mut core::ffi::c_void) },
        len: len_union { len },
        user_data: io_uring_user_data::from_u64(user_data),
        ..Sqe::default()
    }
}

#[derive(Debug)]
struct Sq {
    head: *const AtomicU32,
    tail: *const AtomicU32,
    mask: u32,
    entries: u32,
    array: *mut u32,
    sqes: *mut Sqe,
    /// Entries written but not yet handed to the kernel.
    pending: u32,
    local_tail: u32,
}

/// The io_uring backend of one context: its ring, shared with whatever
/// must reach the ring after the context's own calls return.
#[derive(Debug)]
pub(crate) struct Uring(Arc<Ring>);

/// One io_uring instance: its descriptor, its mapped queues and the lock
/// of the submission side.
#[derive(Debug)]
pub(crate) struct Ring {
    fd: InternalFd,
    sq: Mutex<Sq>,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_flags: *const AtomicU32,
    cq_mask: u32,
    cqes: *const Cqe,
    _rings: Mapping,
    _sqes: Mapping,
    /// Requests submitted to the kernel and not drained yet (never less
    /// than the truth: a wait for more would not end).
    in_kernel: AtomicI64,
    /// Writes of this ring that are their file's one in the kernel (see
    /// `order`).
    heads: AtomicU32,
    /// Completions made here, not by the kernel: an ordered write cancelled
    /// while it waited, or one its ring refused.
    local: Mutex<Vec<(u64, i32)>>,
    /// `local.len()`, read without the lock.
    nlocal: AtomicU32,
    /// Files held until the request with the key completes (see `fixed`).
    kept: Mutex<Vec<(u64, Held)>>,
    /// `kept.len()`, read without the lock.
    nkept: AtomicU32,
    /// The ring's table of registered files (see `fixed`).
    slots: fixed::Slots,
    /// Every request in the kernel as it was pushed, and by which thread
    /// (see `owners`). Taken before the SQ lock.
    owners: Mutex<owners::Owners>,
    /// Writes to blocking streams, pushed again until written whole (see
    /// `streams`). Taken after the owners' lock.
    streams: streams::Streams,
    /// Wake-up entries pushed, and their completions drained: a wait that
    /// ends early while every wake-up is accounted for was ended by a
    /// signal (see `Uring::wait`).
    wakes_pushed: AtomicU32,
    wakes_seen: AtomicU32,
    /// What io_uring_setup answered, and the sizes asked of it: for a
    /// [`Spare`] made of this ring.
    params: io_uring_params,
    sizes: (u32, u32),
}

// SAFETY: the raw pointers point into mappings owned by this struct; the SQ
// side is guarded by the mutex, the CQ side is serialised by the caller of
// `drain` (the context's completion lock) and otherwise only read atomically.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

fn ptr_of<T>(p: *const T) -> io_uring_ptr {
    io_uring_ptr::new(p as *mut T as *mut core::ffi::c_void)
}

/// The SQ and CQ sizes asked of io_uring for a ring of `capacity`.
fn sizes(capacity: u32) -> (u32, u32) {
    let sq_entries = capacity.clamp(8, 4096).next_power_of_two();
    let cq_entries = (capacity.saturating_mul(2).saturating_add(64)).next_power_of_two().min(65536);
    (sq_entries, cq_entries)
}

/// An io_uring instance that no request uses any more, kept open for a
/// later ring of the same sizes instead of being closed. The kernel tears
/// an io_uring instance down when its last descriptor is closed, and in
/// doing so sends every thread that ever submitted to it a notification
/// that ends whatever blocking system call it is in with `EINTR` where the
/// call does not restart (`epoll_wait`, `sigtimedwait`, `semtimedop`, a
/// `recv` with a timeout): a program's thread that made a request through
/// uaio saw that at each `io_destroy`, and at its first `io_setup` (whose
/// probe ring was closed at once), where kernel AIO interrupts nothing.
struct Spare {
    fd: InternalFd,
    params: io_uring_params,
    /// The sizes it was asked for ([`sizes`]).
    sizes: (u32, u32),
    /// [`crate::table::forks`] when it was kept: a fork child does not
    /// take its parent's.
    forks: u64,
}

// SAFETY: io_uring_params is plain data; the descriptor is a number.
unsafe impl Send for Spare {}

/// Kept spares; at most [`SPARES_KEPT`] (beyond that, rings are closed).
static SPARES: Mutex<Vec<Spare>> = Mutex::new(Vec::new());

/// Spares kept at most: a program that keeps few contexts alive at a time
/// (one per thread, made and destroyed over and over) finds its sizes
/// there, and a burst of destroys closes what is beyond.
const SPARES_KEPT: usize = 8;

/// How many instances are kept now (0 when that cannot be told at once).
pub(crate) fn kept() -> usize {
    SPARES.try_lock().map_or(0, |s| s.len())
}

/// A kept instance of the sizes of a ring of `capacity`, if any. Never
/// waits: in a fork child the lock may have been taken for good by a
/// thread of the parent's.
fn take_spare(capacity: u32) -> Option<(InternalFd, io_uring_params)> {
    let Ok(mut spares) = SPARES.try_lock() else { return None };
    let forks = crate::table::forks();
    // A parent's are of no use here (and closing them in the child leaves
    // the parent's rings alone).
    spares.retain(|s| s.forks == forks);
    let at = spares.iter().position(|s| s.sizes == sizes(capacity))?;
    let s = spares.swap_remove(at);
    Some((s.fd, s.params))
}

/// `io_uring_setup` for `capacity` requests in flight (an SQ of at least
/// that many entries, up to 4096, a CQ twice as large): without the SQ
/// array where the kernel allows it (6.6+), else with it.
fn setup(capacity: u32) -> Result<(InternalFd, io_uring_params), Errno> {
    let (sq_entries, cq_entries) = sizes(capacity);
    for extra in [IoringSetupFlags::NO_SQARRAY, IoringSetupFlags::empty()] {
        let mut params = io_uring_params::default();
        params.flags = IoringSetupFlags::CQSIZE | IoringSetupFlags::SUBMIT_ALL | IoringSetupFlags::CLAMP | extra;
        params.cq_entries = cq_entries;
        // SAFETY: params is a valid, zero-initialised io_uring_params.
        match InternalFd::make(|| unsafe { io_uring_setup(sq_entries, &mut params) }) {
            Ok(fd) => return Ok((fd, params)),
            Err(Errno::INVAL) if !extra.is_empty() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::INVAL)
}

impl Uring {
    /// Creates a ring able to hold `capacity` requests in flight; when
    /// `notify` is given, that eventfd is signalled on completions (unless
    /// turned off with `set_notify`).
    pub(crate) fn new(capacity: u32, notify: Option<BorrowedFd<'_>>) -> Result<Uring, Errno> {
        Ring::new(capacity, notify).map(|r| Uring(Arc::new(r)))
    }
}

impl Ring {
    fn new(capacity: u32, notify: Option<BorrowedFd<'_>>) -> Result<Ring, Errno> {
        let (fd, params) = match take_spare(capacity) {
            Some(kept) => kept,
            None => setup(capacity)?,
        };
        // Waiting with a timeout and a signal mask needs IORING_ENTER_EXT_ARG (5.11).
        if !params.features.contains(rustix::io_uring::IoringFeatureFlags::EXT_ARG) {
            return Err(Errno::NOSYS);
        }
        let no_sqarray = params.flags.contains(IoringSetupFlags::NO_SQARRAY);
        let sq_off = params.sq_off;
        let cq_off = params.cq_off;
        let sq_len = sq_off.array as usize + if no_sqarray { 0 } else { params.sq_entries as usize * 4 };
        let cq_len = cq_off.cqes as usize + params.cq_entries as usize * core::mem::size_of::<Cqe>();
        // IORING_FEAT_SINGLE_MMAP (5.4+): one mapping holds both rings.
        let rings = Mapping::shared(fd.as_fd(), sq_len.max(cq_len), 0)?;
        let sqes =
            Mapping::shared(fd.as_fd(), params.sq_entries as usize * core::mem::size_of::<Sqe>(), IORING_OFF_SQES)?;
        let sq = Sq {
            head: rings.at(sq_off.head),
            tail: rings.at(sq_off.tail),
            // SAFETY: ring_mask/ring_entries are u32 fields inside the mapping.
            mask: unsafe { *rings.at::<u32>(sq_off.ring_mask) },
            // SAFETY: as above.
            entries: unsafe { *rings.at::<u32>(sq_off.ring_entries) },
            array: if no_sqarray { std::ptr::null_mut() } else { rings.at(sq_off.array) },
            sqes: sqes.as_ptr().cast(),
            pending: 0,
            // SAFETY: the tail field is a live u32 in the mapping.
            local_tail: unsafe { (*rings.at::<AtomicU32>(sq_off.tail)).load(Ordering::Relaxed) },
        };
        let u = Ring {
            cq_head: rings.at(cq_off.head),
            cq_tail: rings.at(cq_off.tail),
            cq_flags: rings.at(cq_off.flags),
            // SAFETY: as above.
            cq_mask: unsafe { *rings.at::<u32>(cq_off.ring_mask) },
            cqes: rings.at(cq_off.cqes),
            sq: Mutex::new(sq),
            fd,
            _rings: rings,
            _sqes: sqes,
            in_kernel: AtomicI64::new(0),
            heads: AtomicU32::new(0),
            local: Mutex::new(Vec::new()),
            nlocal: AtomicU32::new(0),
            kept: Mutex::new(Vec::new()),
            nkept: AtomicU32::new(0),
            slots: fixed::Slots::default(),
            owners: Mutex::new(owners::Owners::default()),
            streams: streams::Streams::default(),
            wakes_pushed: AtomicU32::new(0),
            wakes_seen: AtomicU32::new(0),
            params,
            sizes: sizes(capacity),
        };
        // A seccomp filter may let io_uring_setup through and refuse
        // io_uring_enter: one NOP goes through the ring first, so that such
        // a ring is never used (the context runs on the thread pool). Its
        // completion is taken off the ring at once (before the eventfd is
        // registered: nobody needs to hear of it).
        u.push(&[sqe(IoringOp::Nop, -1, 0, 0, 0, TAG_PROBE)]).map_err(|(_, e)| e)?;
        // SAFETY: live atomics in the CQ ring; nothing else was submitted,
        // so the one completion there (a NOP completes as it is submitted;
        // else it is waited for) is the probe's.
        unsafe {
            let head = (*u.cq_head).load(Ordering::Acquire);
            if (*u.cq_tail).load(Ordering::Acquire) == head {
                io_uring_enter(u.fd.as_fd(), 0, 1, IoringEnterFlags::GETEVENTS)?;
            }
            (*u.cq_head).store(head.wrapping_add(1), Ordering::Release);
        }
        u.slots.register(&u, capacity);
        if let Some(efd) = notify {
            let raw = efd.as_raw_fd();
            // SAFETY: IORING_REGISTER_EVENTFD takes a pointer to one i32.
            unsafe {
                io_uring_register(u.fd.as_fd(), IoringRegisterOp::RegisterEventfd, (&raw as *const i32).cast(), 1)?;
            }
        }
        Ok(u)
    }

    /// Writes `sqes` into the submission queue and enters them. On error,
    /// how many of them (the first ones) the kernel took before it, and the
    /// error; the others are taken back.
    fn push(&self, sqes: &[Sqe]) -> Result<(), (usize, Errno)> {
        #[cfg(test)]
        if let Some(taken) = tests::push_fails() {
            let taken = taken.min(sqes.len());
            if taken > 0 {
                self.push(&sqes[..taken])?;
            }
            return Err((taken, Errno::NOMEM));
        }
        let mut sq = crate::sync::lock(&self.sq);
        // (The queue holds none of another push: each is entered whole,
        // or what the kernel did not take is taken back.)
        let mut written = 0usize;
        for e in sqes {
            // SAFETY: head is a live atomic in the SQ ring.
            if sq.local_tail.wrapping_sub(unsafe { (*sq.head).load(Ordering::Acquire) }) == sq.entries {
                self.flush(&mut sq).map_err(|(back, e)| (written - back, e))?;
            }
            let idx = sq.local_tail & sq.mask;
            // SAFETY: idx <= mask < entries, inside the SQE array; the slot is
            // free because the kernel consumed it (head has passed it).
            unsafe {
                sq.sqes.add(idx as usize).write(*e);
                if !sq.array.is_null() {
                    sq.array.add(idx as usize).write(idx);
                }
            }
            sq.local_tail = sq.local_tail.wrapping_add(1);
            sq.pending += 1;
            written += 1;
        }
        self.flush(&mut sq).map_err(|(back, e)| (written - back, e))
    }

    /// Enters what the queue holds. On error, how many entries it took
    /// back (the last ones written, which the kernel did not take).
    fn flush(&self, sq: &mut Sq) -> Result<(), (usize, Errno)> {
        // SAFETY: tail is a live atomic in the SQ ring; the release store
        // publishes the SQEs written above.
        unsafe { (*sq.tail).store(sq.local_tail, Ordering::Release) };
        while sq.pending > 0 {
            // SAFETY: plain io_uring_enter on our ring, no argument.
            match unsafe { io_uring_enter(self.fd.as_fd(), sq.pending, 0, IoringEnterFlags::empty()) } {
                Ok(n) => sq.pending -= n.min(sq.pending),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) | Err(Errno::BUSY) => std::thread::yield_now(),
                Err(e) => {
                    // Take the entries back so the queue stays consistent.
                    let back = sq.pending as usize;
                    sq.local_tail = sq.local_tail.wrapping_sub(sq.pending);
                    // SAFETY: as above.
                    unsafe { (*sq.tail).store(sq.local_tail, Ordering::Release) };
                    sq.pending = 0;
                    return Err((back, e));
                }
            }
        }
        Ok(())
    }

    /// Whether the request `key`, which ended with `res`, was ended by the
    /// exit of the thread that pushed it and is now pushed again from this
    /// one (see `owners`): its completion is then not reported.
    /// `o` is this ring's table of owners, locked by the caller.
    fn again(self: &Arc<Self>, o: &mut owners::Owners, key: u64, res: i32) -> bool {
        let Some((sqe, on)) = o.gone(key, self) else { return false };
        // An entry that names a slot is an ordered write or a sync of a file.
        let ended = |on: &owners::On| res < 0 || (!matches!(on, owners::On::Held(_, false)) && short(&sqe, res));
        let Some(on) = on.filter(ended) else {
            o.forget(key);
            return false;
        };
        let (s, held) = match on {
            owners::On::Held(held, _) => {
                let mut s = sqe;
                held.name_in(&mut s);
                (s, Some(held))
            }
            owners::On::Named => (sqe, None),
        };
        let me = owners::me();
        me.pushes_to(self);
        o.again(key, &s, &me);
        if self.push(&[s]).is_err() {
            o.forget(key);
            return false;
        }
        // Drains of this ring are serialised: its completion cannot have
        // been drained yet. (A slot its entry named is kept already.)
        if let Some(held) = held {
            self.keep_until_done(key, held);
        }
        true
    }

    /// Counts `n` requests submitted to the kernel.
    fn entered(&self, n: usize) {
        self.in_kernel.fetch_add(n as i64, Ordering::SeqCst);
    }

    /// Keeps `held` until the request `key` completes.
    fn keep_until_done(&self, key: u64, held: Held) {
        let mut k = crate::sync::lock(&self.kept);
        k.push((key, held));
        self.nkept.store(k.len() as u32, Ordering::SeqCst);
    }

    /// The request `key` completed: what [`Ring::keep_until_done`] kept
    /// for it is let go.
    #[inline]
    fn done_with(&self, key: u64) {
        if self.nkept.load(Ordering::SeqCst) != 0 {
            self.let_go_of(key);
        }
    }

    /// [`Ring::done_with`] when something is kept.
    #[cold]
    fn let_go_of(&self, key: u64) {
        // A request pushed again after its thread's exit may hold more
        // than one; each is let go of outside the lock (and nothing is
        // allocated here: reaping allocates nothing once warm).
        loop {
            let held = {
                let mut k = crate::sync::lock(&self.kept);
                let i = k.iter().position(|(kk, _)| *kk == key);
                let held = i.map(|i| k.swap_remove(i).1);
                self.nkept.store(k.len() as u32, Ordering::SeqCst);
                held
            };
            if held.is_none() {
                break;
            }
            drop(held);
        }
    }

    /// Completes the request `key` with `res` without the kernel.
    fn complete_here(&self, key: u64, res: i32) {
        let mut l = crate::sync::lock(&self.local);
        l.push((key, res));
        self.nlocal.store(l.len() as u32, Ordering::SeqCst);
    }

    /// Hands the completions made here to `sink`; returns how many.
    fn drain_local(&self, sink: &mut dyn FnMut(u64, i32)) -> usize {
        if self.nlocal.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let done = {
            let mut l = crate::sync::lock(&self.local);
            self.nlocal.store(0, Ordering::SeqCst);
            std::mem::take(&mut *l)
        };
        for &(key, res) in &done {
            sink(key, res);
        }
        done.len()
    }

    fn sqe_for(op: &BackendOp) -> Sqe {
        let rw = || op_flags_union { rw_flags: ReadWriteFlags::from_bits_retain(op.rw_flags) };
        let (opcode, op_flags) = match op.kind {
            OpKind::Read => (IoringOp::Read, rw()),
            OpKind::Write => (IoringOp::Write, rw()),
            OpKind::Readv => (IoringOp::Readv, rw()),
            OpKind::Writev => (IoringOp::Writev, rw()),
            OpKind::Fsync => (IoringOp::Fsync, op_flags_union { fsync_flags: IoringFsyncFlags::empty() }),
            OpKind::Fdatasync => (IoringOp::Fsync, op_flags_union { fsync_flags: IoringFsyncFlags::DATASYNC }),
            // A wake-up completes the kernel's AIO poll with the waker's whole
            // mask; asking for the usual companions of IN and OUT as well
            // reproduces that for pipes, eventfds and sockets.
            OpKind::Poll => (IoringOp::PollAdd, op_flags_union { poll32_events: uring_poll_events(op.poll_mask) }),
        };
        let (addr, len, off) = match op.kind {
            // A sync covers `len` bytes from `off` (0: the whole file).
            OpKind::Fsync | OpKind::Fdatasync => (0, op.len, op.off),
            OpKind::Poll => (0, 0, 0),
            _ => (op.addr, op.len, op.off),
        };
        // io_uring refuses a priority on an operation that takes none (a
        // sync: the one a `RWF_DSYNC` write copied inside `io_submit` leaves
        // to the backend keeps its request's priority, which the kernel's
        // write applied to its own sync).
        let ioprio = match op.kind {
            OpKind::Read | OpKind::Write | OpKind::Readv | OpKind::Writev => op.ioprio,
            OpKind::Fsync | OpKind::Fdatasync | OpKind::Poll => 0,
        };
        let mut s = Sqe { ioprio: ioprio_union { ioprio }, op_flags, ..sqe(opcode, op.fd, addr, len, off, op.key) };
        // A write to a terminal (a character device) that io_uring tries
        // inside io_uring_enter, because poll shows room, waits there for
        // all of it to be taken: the tty write takes no notice of the
        // non-blocking flag. A pty master's 64 KiB write, with reads of the
        // slave waiting in the same ring, held io_submit for good (their
        // completions run in the submitting thread). Such writes go
        // straight to io_uring's workers.
        if matches!(op.kind, OpKind::Write | OpKind::Writev)
            && op.seen.is_some_and(|seen| seen.st.kind() == libc::S_IFCHR)
        {
            s.flags |= IoringSqeFlags::ASYNC;
        }
        s
    }
}

impl Uring {
    /// [`Backend::submit`] with `buf` for the entries of each push (as
    /// many requests at a time as it holds).
    fn submit_via(&self, ops: &[BackendOp], buf: &mut [Sqe]) -> Result<(), super::Refused> {
        let me = owners::me();
        me.pushes_to(&self.0);
        for (c, chunk) in ops.chunks(buf.len()).enumerate() {
            let mut n = 0;
            for op in chunk {
                let mut s = Ring::sqe_for(op);
                // Watched before its turn comes (see `order`).
                self.0.streams.watch(op);
                // A buffered write, a sync or a direct transfer behind a
                // buffered write of its file waits for it.
                match op
                    .order
                    .map(super::Order::parts)
                    .map(|(k, after)| order::admit(&self.0, k, &s, after, op.file(), op.buffered()))
                {
                    Some(order::Admit::Kept) => continue,
                    Some(order::Admit::Drained) => s.flags |= IoringSqeFlags::IO_DRAIN,
                    _ => {}
                }
                if matches!(op.kind, OpKind::Fsync | OpKind::Fdatasync) {
                    // io_uring runs a sync in its workers without trying it
                    // first, and looks the descriptor number up only then:
                    // a program that closes or reuses the number right after
                    // io_submit would have it sync nothing, or another file.
                    // It syncs the file held now (see `fixed`), as the
                    // kernel's holds the file it found at submission. (Kept
                    // from before the push, so that a completion drained at
                    // once finds it.)
                    if let Some(held) = self.0.hold(&mut s) {
                        self.0.keep_until_done(op.key, held);
                    }
                }
                buf[n] = s;
                n += 1;
            }
            {
                let mut o = crate::sync::lock(&self.0.owners);
                let by = o.place_of(&me);
                let mut pushed = buf[..n].iter();
                for op in chunk {
                    if let Some(s) = pushed.as_slice().first().filter(|s| s.user_data.u64_() == op.key) {
                        o.record_by(by, s, op.file(), op.fd, op.buffered());
                        pushed.next();
                    }
                }
            }
            if let Err((taken, e)) = self.0.push(&buf[..n]) {
                // The kernel took this chunk's first `taken` entries (and
                // the earlier chunks): those run and complete as usual.
                self.0.entered(taken);
                let key_of = |s: &Sqe| s.user_data.u64_();
                let (took, left) = buf[..n].split_at(taken);
                let mut o = crate::sync::lock(&self.0.owners);
                left.iter().for_each(|s| o.forget(key_of(s)));
                drop(o);
                let in_kernel = |key: u64| took.iter().any(|s| key_of(s) == key);
                ops[c * buf.len()..].iter().filter(|op| !in_kernel(op.key)).for_each(|op| {
                    self.0.streams.forget(op.key);
                });
                left.iter().for_each(|s| self.0.done_with(key_of(s)));
                let pushed = |i: usize, key: u64| i < c * buf.len() || in_kernel(key);
                let ordered = ops.iter().enumerate().filter(|(_, o)| o.order.is_some());
                let mut keys = order::abandon(&self.0, ordered.map(|(i, o)| (o.key, pushed(i, o.key))));
                keys.extend(left.iter().map(key_of));
                keys.extend(ops.iter().skip((c + 1) * buf.len()).map(|op| op.key));
                return Err(super::Refused { errno: e, keys });
            }
            self.0.entered(n);
        }
        Ok(())
    }

    /// [`Backend::drain`], of the completions up to `upto` in the CQ (its
    /// tail as [`Backend::completion_mark`] read it; all when `None`, and
    /// then also those completed here).
    fn drain_to(&self, upto: Option<u32>, sink: &mut dyn FnMut(u64, i32)) -> usize {
        let ring = &*self.0;
        let local = if upto.is_none() { ring.drain_local(sink) } else { 0 };
        // SAFETY: cq_head/cq_tail are live atomics; we are the only consumer
        // (the caller serialises drains) so reading entries up to tail and
        // then releasing them by storing head is the io_uring protocol.
        let from_kernel = unsafe {
            let head = (*self.0.cq_head).load(Ordering::Relaxed);
            let tail = (*self.0.cq_tail).load(Ordering::Acquire);
            // Not past the mark (the entries before it arrived before it;
            // it never passes the tail, and a drain may have passed it).
            let tail = match upto {
                Some(m) if (m.wrapping_sub(head) as i32) <= 0 => head,
                Some(m) => m,
                None => tail,
            };
            let mut h = head;
            // The owners' table, locked once for the whole drain (let go
            // only to send a file's next write, which records its owner).
            let mut owners = None;
            while h != tail {
                let cqe = self.0.cqes.add((h & self.0.cq_mask) as usize).read();
                h = h.wrapping_add(1);
                let key = cqe.user_data.u64_();
                if key == TAG_WAKE {
                    ring.wakes_seen.fetch_add(1, Ordering::SeqCst);
                } else if key >> 32 != INTERNAL_HIGH {
                    let o = owners.get_or_insert_with(|| crate::sync::lock(&ring.owners));
                    let mut res = cqe.res;
                    if res == -libc::ECANCELED {
                        if let Some((sqe, dup)) = o.refused_by_io_wq(key) {
                            res = dup.map_or(-libc::EBADF, |d| run_blocking(&sqe, d.as_raw_fd()));
                        }
                    }
                    if res == -libc::EINVAL {
                        // O_DIRECT set by the program since the request was
                        // prepared: run as prepared, on a new open file
                        // without it (rare; blocking, as above).
                        if let Some((sqe, again)) = o.direct_since(key) {
                            res = run_blocking(&sqe, again.as_raw_fd());
                        }
                    }
                    if ring.streams.any() {
                        if let Some(s) = ring.streams.rest(o, key, res) {
                            // A blocking stream's write that moved part of
                            // its bytes: the rest is in the kernel now.
                            let me = owners::me();
                            me.pushes_to(&self.0);
                            o.again(key, &s, &me);
                            if ring.push(&[s]).is_ok() {
                                continue;
                            }
                            res = ring.streams.result(key, res);
                        }
                    }
                    if self.0.again(o, key, res) {
                        // Ended by its thread's exit, and in the kernel again.
                        continue;
                    }
                    if ring.streams.any() {
                        res = ring.streams.result(key, res);
                    }
                    ring.in_kernel.fetch_sub(1, Ordering::SeqCst);
                    ring.done_with(key);
                    // The file's next buffered write, if this was one.
                    let next = order::finished(ring, key);
                    if next.is_some() {
                        owners = None;
                        order::send(next, Some(ring));
                    }
                    sink(key, res);
                }
            }
            drop(owners);
            (*self.0.cq_head).store(tail, Ordering::Release);
            tail.wrapping_sub(head) as usize
        };
        local + from_kernel
    }
}

impl Backend for Uring {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn submit(&self, ops: &[BackendOp]) -> Result<(), super::Refused> {
        // One request (the common `io_submit`) fills one entry: zeroing a
        // whole batch's 2 KiB for it cost a tenth of the backend's share
        // of the call.
        if let [_] = ops {
            return self.submit_via(ops, &mut [Sqe::default()]);
        }
        self.submit_via(ops, &mut [Sqe::default(); SUBMIT_BATCH])
    }

    fn drain(&self, sink: &mut dyn FnMut(u64, i32)) -> usize {
        self.drain_to(None, sink)
    }

    fn drain_before(&self, mark: u32, sink: &mut dyn FnMut(u64, i32)) -> usize {
        self.drain_to(Some(mark), sink)
    }

    fn completion_mark(&self) -> Option<Box<dyn Fn() -> u32 + Send + Sync>> {
        let ring = self.0.clone();
        // SAFETY: cq_tail is a live atomic in the CQ ring, mapped as long
        // as `ring`, which the closure holds.
        Some(Box::new(move || unsafe { (*ring.cq_tail).load(Ordering::Acquire) }))
    }

    fn has_completions(&self) -> bool {
        self.0.nlocal.load(Ordering::SeqCst) != 0
            // SAFETY: live atomics in the CQ ring.
            || unsafe { (*self.0.cq_head).load(Ordering::Relaxed) != (*self.0.cq_tail).load(Ordering::Acquire) }
    }

    fn wait(&self, min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        let ts = timeout.map(|d| rustix::fs::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ });
        let mut arg = io_uring_getevents_arg::default();
        if let Some(m) = sigmask {
            arg.sigmask = ptr_of(m as *const u64);
            arg.sigmask_sz = 8;
        }
        if let Some(ts) = ts.as_ref() {
            arg.ts = ptr_of(ts as *const rustix::fs::Timespec);
        }
        let flags = IoringEnterFlags::GETEVENTS | IoringEnterFlags::EXT_ARG;
        // Ordered writes waiting outside the kernel produce nothing until
        // their turn comes: a wait for them would not end. And the
        // completion of a file's write in the kernel must be drained at
        // once, since the file's next write (perhaps another ring's) waits
        // for it.
        let min = if self.0.heads.load(Ordering::SeqCst) > 0 {
            1
        } else {
            min.min(self.0.in_kernel.load(Ordering::SeqCst).clamp(1, u32::MAX as i64) as u32)
        };
        let ring = &*self.0;
        let start = timeout.map(|_| std::time::Instant::now());
        let (pushed, seen) = (ring.wakes_pushed.load(Ordering::SeqCst), ring.wakes_seen.load(Ordering::SeqCst));
        // SAFETY: a live atomic in the CQ ring.
        let head = unsafe { (*ring.cq_head).load(Ordering::Acquire) };
        // SAFETY: arg and what it points to live across the call.
        crate::sync::asleep(|| unsafe { io_uring_enter_arg(ring.fd.as_fd(), 0, min.max(1), flags, Some(&arg)) })?;
        // io_uring answers a wait interrupted by a signal with success when
        // completions are there, even fewer than asked for, where
        // io_getevents returns what it has. The wait ends early for three
        // reasons only: a signal, the timeout, or a wake-up entry's
        // completion (of those pushed before it started, or during it).
        // SAFETY: as above.
        let arrived = unsafe { (*ring.cq_tail).load(Ordering::Acquire) }.wrapping_sub(head);
        let expired = start.zip(timeout).is_some_and(|(s, d)| s.elapsed() >= d);
        let woken = ring.wakes_pushed.load(Ordering::SeqCst) != pushed
            || ring.wakes_seen.load(Ordering::SeqCst) != seen
            || pushed != seen;
        if arrived < min.max(1) && !expired && !woken {
            return Err(Errno::INTR);
        }
        Ok(())
    }

    fn holds_completions_across_signals(&self) -> bool {
        true
    }

    fn wake(&self) {
        self.0.wakes_pushed.fetch_add(1, Ordering::SeqCst);
        if self.0.push(&[wake_sqe()]).is_err() {
            self.0.wakes_pushed.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn cancel(&self, key: u64) {
        if order::withdraw(&self.0, key) {
            // A write that waited for its turn never reached the kernel.
            self.0.complete_here(key, -libc::ECANCELED);
            return;
        }
        // Under the owners' lock: a request pushed again after its thread's
        // exit reaches the kernel before this cancel, or is not pushed again.
        let mut o = crate::sync::lock(&self.0.owners);
        o.cancel(key);
        let _ = self.0.push(&[sqe(IoringOp::AsyncCancel, -1, key, 0, 0, TAG_CANCEL)]);
    }

    fn complete_if_ready(&self, key: u64) -> bool {
        // io_uring completes a POLL woken by a file operation in the task
        // work of the thread that pushed it, soon but not always before
        // that operation returns: ready now, its completion is on its way.
        let Some((sqe, file, cancelled)) = crate::sync::lock(&self.0.owners).entry(key) else { return false };
        if cancelled || sqe.opcode != IoringOp::PollAdd {
            return false;
        }
        let Some((dup, _)) = owners::hold_file(&sqe, file) else { return false };
        // SAFETY: a PollAdd entry's flags are its poll events (`sqe_for`).
        let events = unsafe { sqe.op_flags.poll32_events } as i16;
        let mut p = libc::pollfd { fd: dup.as_raw_fd(), events, revents: 0 };
        // SAFETY: poll(2) of one pollfd on uaio's own duplicate; no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents != 0
    }

    fn set_notify(&self, on: bool) {
        // SAFETY: the CQ flags word is a live atomic; only the
        // EVENTFD_DISABLED bit is ours to change.
        unsafe {
            if on {
                (*self.0.cq_flags).fetch_and(!IoringCqFlags::EVENTFD_DISABLED.bits(), Ordering::SeqCst);
            } else {
                (*self.0.cq_flags).fetch_or(IoringCqFlags::EVENTFD_DISABLED.bits(), Ordering::SeqCst);
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.heads.load(Ordering::SeqCst) > 0 {
            order::forget(self);
        }
        self.keep_as_spare();
    }
}

impl Ring {
    /// Keeps this ring's io_uring instance as a [`Spare`] when nothing is
    /// left in it (no request in the kernel, no completion or entry not
    /// taken, no file held), emptied of the context's registrations: its
    /// descriptor is duplicated, so that closing this ring's leaves it
    /// open.
    fn keep_as_spare(&self) {
        if self.in_kernel.load(Ordering::SeqCst) != 0 || self.nkept.load(Ordering::SeqCst) != 0 {
            return;
        }
        // SAFETY: live atomics in the CQ ring.
        let cq_empty = unsafe { (*self.cq_head).load(Ordering::Acquire) == (*self.cq_tail).load(Ordering::Acquire) };
        let sq_empty = {
            let sq = crate::sync::lock(&self.sq);
            // SAFETY: the SQ head is a live atomic in the mapping.
            sq.pending == 0 && unsafe { (*sq.head).load(Ordering::Acquire) } == sq.local_tail
        };
        if !cq_empty || !sq_empty {
            return;
        }
        let Ok(mut spares) = SPARES.try_lock() else { return };
        if spares.len() >= SPARES_KEPT {
            return;
        }
        // The context's eventfd and files go (ENXIO: none registered).
        let fd = self.fd.as_fd();
        for op in [IoringRegisterOp::UnregisterEventfd, IoringRegisterOp::UnregisterFiles] {
            // SAFETY: both take no argument.
            match unsafe { io_uring_register(fd, op, std::ptr::null(), 0) } {
                Ok(_) | Err(Errno::NXIO) => {}
                Err(_) => return,
            }
        }
        // SAFETY: the CQ flags word is a live atomic: notifications on for
        // the next user.
        unsafe { (*self.cq_flags).fetch_and(!IoringCqFlags::EVENTFD_DISABLED.bits(), Ordering::SeqCst) };
        let Ok(kept) = InternalFd::dup_of(fd) else { return };
        let params = self.params;
        spares.push(Spare { fd: kept, params, sizes: self.sizes, forks: crate::table::forks() });
    }
}

/// Runs the read, write or sync `sqe` on `fd` in the calling thread,
/// blocking, as kernel AIO would have in `io_submit` (see
/// [`owners::Owners::refused_by_io_wq`]); returns its result.
fn run_blocking(sqe: &Sqe, fd: i32) -> i32 {
    // SAFETY: the entry was made by `sqe_for` or `sqe` for these opcodes:
    // `addr`, `len`, `off` and the flags hold what those wrote there.
    let (addr, len, off, flags) = unsafe {
        (sqe.addr_or_splice_off_in.addr.ptr as u64, sqe.len.len, sqe.off_or_addr2.off, sqe.op_flags.rw_flags.bits())
    };
    let one = uaio_abi::iovec { iov_base: addr, iov_len: len as u64 };
    let (iov, n) = match sqe.opcode {
        IoringOp::Read | IoringOp::Write => (&one as *const uaio_abi::iovec, 1),
        _ => (addr as *const uaio_abi::iovec, len as usize),
    };
    match sqe.opcode {
        IoringOp::Fsync => {
            // SAFETY: the same field, written by `sqe_for` for a sync.
            let data = unsafe { sqe.op_flags.fsync_flags }.contains(IoringFsyncFlags::DATASYNC);
            crate::sys::sync_file(fd, data)
        }
        op => {
            let write = matches!(op, IoringOp::Write | IoringOp::Writev);
            // The buffers were checked at submission and belong to the
            // request until its event is reaped.
            crate::sys::prwv2(write, fd, iov, n, off as i64, flags).0 as i32
        }
    }
}

/// Whether `res` is less than the whole of the read or write `sqe`
/// (vectored ones are not looked at).
fn short(sqe: &Sqe, res: i32) -> bool {
    // SAFETY: `len` is the byte count of a plain read or write entry.
    let want = unsafe { sqe.len.len };
    matches!(sqe.opcode, IoringOp::Read | IoringOp::Write) && (res as u32) < want
}

/// Whether io_uring can be set up in this process (used for the backend
/// choice and reported by [`crate::backend_name`]).
/// See [`owners::thread_leaving`].
pub(crate) fn thread_leaving() {
    owners::thread_leaving();
}

pub(crate) fn available() -> bool {
    Uring::new(8, None).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Duration;

    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe")
    }

    thread_local! {
        /// Pushes of this thread that succeed before the next one fails,
        /// and how many entries that one has the kernel take before it
        /// fails (`None`: none fails).
        static PUSHES_BEFORE_FAILURE: std::cell::Cell<Option<(u32, usize)>> = const { std::cell::Cell::new(None) };
    }

    /// Whether this push of the calling thread is to fail, and then after
    /// how many entries (see `PUSHES_BEFORE_FAILURE`).
    pub(super) fn push_fails() -> Option<usize> {
        PUSHES_BEFORE_FAILURE.with(|c| match c.get() {
            Some((0, taken)) => {
                c.set(None);
                Some(taken)
            }
            Some((n, taken)) => {
                c.set(Some((n - 1, taken)));
                None
            }
            None => None,
        })
    }

    fn poll_op(key: u64, fd: &OwnedFd) -> BackendOp {
        BackendOp::poll(key, fd.as_raw_fd(), libc::POLLIN as u32)
    }

    /// Waits for the completion of `key` and returns its result.
    fn result_of(u: &Uring, key: u64) -> i32 {
        loop {
            let mut found = None;
            u.drain(&mut |k, r| {
                if k == key {
                    found = Some(r);
                }
            });
            if let Some(r) = found {
                return r;
            }
            u.wait(1, Some(Duration::from_secs(10)), None).expect("a completion within 10 s");
        }
    }

    /// A ring for a test, or `None` (and a line saying the test is
    /// skipped) where io_uring is not available.
    fn ring_or_skip() -> Option<Uring> {
        let u = Uring::new(8, None).ok();
        if u.is_none() {
            println!("skipped: io_uring is not available here");
        }
        u
    }

    /// A POLL of `fd` under `key` carrying the file's identity, as the
    /// engine makes it.
    fn poll_op_of_file(key: u64, fd: &OwnedFd) -> BackendOp {
        let st = crate::sys::file_stat(fd.as_raw_fd()).expect("fstat");
        BackendOp { seen: Some(crate::backend::Seen { st, flags: 0, generation: None }), ..poll_op(key, fd) }
    }

    /// A ring with a POLL of a new pipe's read end under `key`, submitted
    /// from a thread that exited at once; the pipe's ends come with it.
    fn poll_of_a_gone_thread(key: u64) -> Option<(Uring, OwnedFd, OwnedFd)> {
        poll_of_a_thread_that_then(key, |_| {})
    }

    /// As [`poll_of_a_gone_thread`], the thread doing `last` with the
    /// pipe's read end before it exits.
    fn poll_of_a_thread_that_then(
        key: u64,
        last: impl FnOnce(&mut OwnedFd) + Send + 'static,
    ) -> Option<(Uring, OwnedFd, OwnedFd)> {
        let u = ring_or_skip()?;
        let (r, w) = pipe();
        let op = poll_op_of_file(key, &r);
        let ring = Uring(u.0.clone());
        let r = std::thread::spawn(move || {
            let mut r = r;
            ring.submit(&[op]).expect("submit");
            last(&mut r);
            r
        })
        .join()
        .expect("thread");
        Some((u, r, w))
    }

    #[test]
    fn a_poll_outlives_the_thread_that_pushed_it() {
        let key = 1 << 32 | 3;
        let Some((u, _r, w)) = poll_of_a_gone_thread(key) else { return };
        // io_uring ends the armed poll when the pipe wakes it, since its
        // thread is gone; uaio pushes it again and it completes.
        rustix::io::write(&w, b"x").expect("write");
        let res = result_of(&u, key);
        assert!(res > 0 && res & libc::POLLIN as i32 != 0, "{res}");
    }

    #[test]
    fn polls_of_more_gone_threads_than_a_ring_lists_at_once_all_complete() {
        let Some(u) = ring_or_skip() else { return };
        // Four times as many threads as the ring keeps before it drops gone
        // ones. Every other thread's request completes at once (so the
        // thread may be dropped); the others' stay in the kernel, and their
        // threads must stay known, under their new places.
        let n = 4 * owners::SUBS_BEFORE_PRUNE as u64 + 3;
        let mut results = std::collections::HashMap::new();
        let mut collect = |u: &Uring, until: &dyn Fn(&std::collections::HashMap<u64, i32>) -> bool| {
            while !until(&results) {
                u.drain(&mut |k, r| assert!(results.insert(k, r).is_none(), "{k:#x} completed twice"));
                if !until(&results) {
                    u.wait(1, Some(Duration::from_secs(10)), None).expect("completions within 10 s");
                }
            }
        };
        let mut pipes = Vec::new();
        for i in 0..n {
            let (r, w) = pipe();
            let key = 1 << 32 | i;
            let op = poll_op_of_file(key, &r);
            let ring = Uring(u.0.clone());
            std::thread::spawn(move || ring.submit(&[op]).expect("submit")).join().expect("thread");
            if i % 2 == 0 {
                rustix::io::write(&w, b"x").expect("write");
                collect(&u, &|m| m.contains_key(&key));
            }
            pipes.push((r, w));
        }
        for (_, w) in pipes.iter().skip(1).step_by(2) {
            rustix::io::write(w, b"x").expect("write");
        }
        collect(&u, &|m| m.len() as u64 == n);
        for i in 0..n {
            let res = results[&(1 << 32 | i)];
            assert!(res > 0 && res & libc::POLLIN as i32 != 0, "request {i}: {res}");
        }
    }

    #[test]
    fn a_cancelled_request_of_a_gone_thread_is_not_pushed_again() {
        let key = 1 << 32 | 4;
        let Some((u, _r, w)) = poll_of_a_gone_thread(key) else { return };
        u.cancel(key);
        assert_eq!(result_of(&u, key), -libc::ECANCELED);
        // Nothing of it is left in the kernel: a wake-up of the pipe
        // produces no completion.
        rustix::io::write(&w, b"x").expect("write");
        let _ = u.wait(1, Some(Duration::from_millis(200)), None);
        assert_eq!(u.drain(&mut |k, _| assert_ne!(k, key, "pushed again after its cancel")), 0);
    }

    #[test]
    fn a_request_of_a_gone_thread_keeps_its_file_when_the_number_is_reused() {
        let key = 1 << 32 | 5;
        let Some((u, mut r, w)) = poll_of_a_gone_thread(key) else { return };
        // The number names another pipe once the thread is gone: the
        // request still polls the pipe it was submitted on.
        let (r2, w2) = pipe();
        rustix::io::dup2(&r2, &mut r).expect("dup2");
        rustix::io::write(&w2, b"y").expect("write");
        rustix::io::write(&w, b"x").expect("write");
        let res = result_of(&u, key);
        assert!(res > 0 && res & libc::POLLIN as i32 != 0, "{res}");
    }

    #[test]
    fn a_request_whose_thread_reused_its_number_before_leaving_reports_its_end() {
        let key = 1 << 32 | 6;
        // The thread itself puts another pipe on the number before it
        // exits: the request must not be pushed again onto that one.
        let (r2, w2) = pipe();
        let Some((u, _r, w)) = poll_of_a_thread_that_then(key, move |r| {
            rustix::io::dup2(&r2, r).expect("dup2");
        }) else {
            return;
        };
        rustix::io::write(&w2, b"y").expect("write");
        rustix::io::write(&w, b"x").expect("write");
        assert_eq!(result_of(&u, key), -libc::ECANCELED);
    }

    /// The CQ head of `u` (how many completions it ever took).
    fn cq_head(u: &Uring) -> u32 {
        // SAFETY: a live atomic in the CQ ring.
        unsafe { (*u.0.cq_head).load(Ordering::Acquire) }
    }

    #[test]
    fn an_idle_ring_is_kept_and_serves_the_next_of_its_sizes() {
        // Sizes no other test asks for, so that no other test takes the
        // spare meanwhile.
        const CAPACITY: u32 = 3000;
        let Some(first) = Uring::new(CAPACITY, None).ok() else {
            println!("skipped: io_uring is not available here");
            return;
        };
        let (r, w) = pipe();
        rustix::io::write(&w, b"x").expect("write");
        first.submit(&[poll_op(1 << 32 | 1, &r)]).expect("submit");
        assert!(result_of(&first, 1 << 32 | 1) > 0);
        let taken = cq_head(&first);
        drop(first);
        // The same io_uring instance (its completions go on counting), and
        // it works.
        let second = Uring::new(CAPACITY, None).expect("a ring");
        assert!(cq_head(&second) > taken, "the kept instance");
        second.submit(&[poll_op(2 << 32 | 1, &r)]).expect("submit");
        assert!(result_of(&second, 2 << 32 | 1) > 0);
        // One with a request in the kernel is closed, not kept.
        let (r2, _w2) = pipe();
        second.submit(&[poll_op(3 << 32 | 1, &r2)]).expect("submit");
        drop(second);
        let third = Uring::new(CAPACITY, None).expect("a ring");
        assert_eq!(cq_head(&third), 1, "a new instance (its probe's completion only)");
    }

    #[test]
    fn a_cancel_names_only_the_request_with_its_key() {
        let Some(u) = ring_or_skip() else { return };
        // Two requests in the same slot (low half 5), one after the other:
        // a cancel that names the first, arriving after it completed, must
        // not touch the second.
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        rustix::io::write(&w1, b"x").expect("write");
        let first = 1 << 32 | 5;
        let second = 2 << 32 | 5;
        u.submit(&[poll_op(first, &r1)]).expect("submit");
        assert!(result_of(&u, first) > 0);
        u.submit(&[poll_op(second, &r2)]).expect("submit");
        u.cancel(first);
        rustix::io::write(&w2, b"x").expect("write");
        assert_eq!(result_of(&u, second) & libc::POLLIN as i32, libc::POLLIN as i32);
    }

    #[test]
    fn a_push_failing_part_way_refuses_only_what_the_kernel_did_not_take() {
        let Some(u) = ring_or_skip() else { return };
        let (r, w) = pipe();
        rustix::io::write(&w, b"x").expect("write");
        // A first chunk goes in whole; the second fails after the kernel
        // took 5 of its entries. POLLs of a readable pipe complete at once.
        let n = SUBMIT_BATCH as u64 + 8;
        let ops: Vec<BackendOp> = (0..n).map(|i| poll_op(1 << 32 | i, &r)).collect();
        PUSHES_BEFORE_FAILURE.with(|c| c.set(Some((1, 5))));
        let refused = u.submit(&ops).expect_err("the second push fails");
        assert_eq!(refused.errno, Errno::NOMEM);
        let mut keys = refused.keys;
        keys.sort_unstable();
        let taken = SUBMIT_BATCH + 5;
        assert_eq!(keys, ops[taken..].iter().map(|o| o.key).collect::<Vec<u64>>());
        // Every request taken completes as usual.
        let mut done = std::collections::HashMap::new();
        while done.len() < taken {
            u.drain(&mut |k, r| {
                done.insert(k, r);
            });
            if done.len() < taken {
                u.wait(1, Some(Duration::from_secs(10)), None).expect("a completion within 10 s");
            }
        }
        for op in &ops[..taken] {
            assert!(done.get(&op.key).is_some_and(|&r| r & libc::POLLIN as i32 != 0), "{:x}", op.key);
        }
        assert_eq!(done.len(), taken, "only the requests taken complete");
    }

    #[test]
    fn writes_withdrawn_by_a_failed_push_are_not_watched_any_more() {
        let Some(u) = ring_or_skip() else { return };
        let (r, w) = pipe();
        let st = crate::sys::file_stat(w.as_raw_fd()).expect("fstat");
        let data = *b"abcd";
        // A first chunk of writes to one blocking pipe: the first is pushed,
        // the others wait for it in the pipe's chain (and are watched, to be
        // written whole). The push of the second chunk fails.
        let write = |key: u64| BackendOp {
            key,
            kind: OpKind::Write,
            fd: w.as_raw_fd(),
            addr: data.as_ptr() as u64,
            len: data.len() as u32,
            off: 0,
            rw_flags: 0,
            ioprio: 0,
            poll_mask: 0,
            order: crate::backend::order_key(OpKind::Write, false, st.mode, st.dev, st.ino, 0),
            seen: Some(crate::backend::Seen { st, flags: 0, generation: None }),
        };
        let ops: Vec<BackendOp> = (0..SUBMIT_BATCH as u64 + 1).map(|i| write(1 << 32 | i)).collect();
        PUSHES_BEFORE_FAILURE.with(|c| c.set(Some((1, 0))));
        let refused = u.submit(&ops).expect_err("the second push fails");
        // The first write was in the kernel and completes; the withdrawn
        // ones never run (refused, as the last one), and nothing of them
        // is left behind.
        let mut keys = refused.keys;
        keys.sort_unstable();
        assert_eq!(keys, ops[1..].iter().map(|o| o.key).collect::<Vec<u64>>());
        assert_eq!(result_of(&u, 1 << 32), 4);
        let mut got = [0u8; 8];
        assert_eq!(rustix::io::read(&r, &mut got).expect("read"), 4);
        assert!(!u.0.streams.any(), "watched writes left: {:?}", u.0.streams);
    }

    #[test]
    fn a_drain_before_a_mark_leaves_what_came_after_it() {
        let Some(u) = ring_or_skip() else { return };
        let ((r1, w1), (r2, w2)) = (pipe(), pipe());
        let (a, b) = (1 << 32 | 1, 1 << 32 | 2);
        let ten = Some(Duration::from_secs(10));
        u.submit(&[poll_op(a, &r1)]).expect("submit");
        rustix::io::write(&w1, b"x").expect("write");
        u.wait(1, ten, None).expect("the first completion");
        let mark = (u.completion_mark().expect("io_uring has a mark"))();
        u.submit(&[poll_op(b, &r2)]).expect("submit");
        rustix::io::write(&w2, b"x").expect("write");
        u.wait(2, ten, None).expect("both completions");
        let mut got = Vec::new();
        u.drain_before(mark, &mut |k, _| got.push(k));
        assert_eq!(got, [a]);
        got.clear();
        u.drain(&mut |k, _| got.push(k));
        assert_eq!(got, [b]);
        // A mark the queue's head has passed takes nothing more.
        u.submit(&[poll_op(a, &r1)]).expect("submit");
        u.wait(1, ten, None).expect("a completion");
        got.clear();
        u.drain_before(mark, &mut |k, _| got.push(k));
        assert!(got.is_empty(), "{got:?}");
    }
}
