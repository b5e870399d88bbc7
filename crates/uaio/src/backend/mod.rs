//! Execution backends: what actually performs the I/O of validated requests.
//!
//! The engine (validation, slot accounting, the completion ring, waiting,
//! cancellation) is the same for every backend; a backend only starts
//! operations, hands back their results, and lets a thread sleep until results
//! may be there. Every method is called from the application's own threads
//! (or the progress thread); none may block on I/O except [`Backend::wait`].

use std::fmt::Debug;
use std::time::Duration;

use rustix::io::Errno;

pub(crate) mod faulty;
pub(crate) mod threads;
pub(crate) mod uring;

/// What a validated request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// `pread` into `addr`/`len`.
    Read,
    /// `pwrite` from `addr`/`len`.
    Write,
    /// `preadv` with the iovec array at `addr`, `len` entries.
    Readv,
    /// `pwritev` with the iovec array at `addr`, `len` entries.
    Writev,
    /// `fsync`.
    Fsync,
    /// `fdatasync`.
    Fdatasync,
    /// One-shot poll for the events in `poll_mask`.
    Poll,
}

/// One operation handed to a backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackendOp {
    /// The request's key, returned with its completion and named by
    /// [`Backend::cancel`]. A context never gives two requests the same key
    /// while a cancel could still name the first (a slot index in the low
    /// half, a generation in the high half), and the high half is never all
    /// ones, which leaves those values to a backend's internal entries.
    pub key: u64,
    /// What to do.
    pub kind: OpKind,
    /// File descriptor.
    pub fd: i32,
    /// Buffer or iovec array address.
    pub addr: u64,
    /// Buffer length or iovec count; for a sync, the bytes it covers from
    /// `off` (0: the whole file).
    pub len: u32,
    /// File offset.
    pub off: u64,
    /// `RWF_*` flags (reads and writes).
    pub rw_flags: u32,
    /// I/O priority (0: the thread's own).
    pub ioprio: u16,
    /// Poll event mask.
    pub poll_mask: u32,
    /// How the request is ordered with the buffered writes of its file
    /// ([`order_key`]).
    pub order: Option<Order>,
    /// What the engine saw of `fd` when it validated the request (`None`
    /// for a backend's internal entries).
    pub seen: Option<Seen>,
}

/// What the engine saw of a request's descriptor when it validated it,
/// within the same `io_submit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The file the number named.
    pub st: crate::sys::FileStat,
    /// Its open file status flags (`F_GETFL`).
    pub flags: u32,
    /// The generation of the program's closes and replacements of
    /// descriptors (`sys::remembered`) the look stands under, when the
    /// drop-in library sees them all: while it stays the same, `fd` names
    /// that file still.
    pub generation: Option<u64>,
}

impl BackendOp {
    /// A POLL of `fd` for `mask` under `key` (the backends' own internal
    /// entries).
    pub(crate) fn poll(key: u64, fd: i32, mask: u32) -> BackendOp {
        BackendOp {
            key,
            kind: OpKind::Poll,
            fd,
            addr: 0,
            len: 0,
            off: 0,
            rw_flags: 0,
            ioprio: 0,
            poll_mask: mask,
            order: None,
            seen: None,
        }
    }

    /// The device and inode numbers of the file `fd` named at submission
    /// (zeros when unknown): a backend that must start the request again
    /// later checks that the number still names that file.
    pub(crate) fn file(&self) -> (u64, u64) {
        self.seen.map_or((0, 0), |s| s.st.ident())
    }

    /// A read or write prepared on an open file without `O_DIRECT`: should
    /// the program set `O_DIRECT` before it runs (and the request fail
    /// with `EINVAL`), it runs on a new open file without it
    /// ([`crate::sys::buffered_again`]).
    pub(crate) fn buffered(&self) -> bool {
        matches!(self.kind, OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev)
            && self.seen.is_some_and(|s| s.flags & libc::O_DIRECT as u32 == 0)
    }
}

/// A file as buffered writes are ordered on it: a regular file's device and
/// inode, or a block device's device number (whatever node names it).
pub(crate) type FileKey = (u64, u64);

/// Set in the device half of the key of a stream's reads
/// ([`order_key`]), which take turns apart from its writes (no device
/// number has it; a block device's key is `(u64::MAX, rdev)`, never a
/// stream's).
const STREAM_READS: u64 = 1 << 62;

/// How a request is ordered with the buffered writes of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// A buffered write: it runs after the file's earlier ones, and the
    /// file's later ones run after it.
    Member(FileKey),
    /// A sync, or a direct read or write: it runs after the file's
    /// buffered writes submitted before it (with none, at once).
    After(FileKey),
}

impl Order {
    /// The file's key, and whether the request only follows the file's
    /// earlier buffered writes ([`Order::After`]).
    pub(crate) fn parts(self) -> (FileKey, bool) {
        match self {
            Order::Member(k) => (k, false),
            Order::After(k) => (k, true),
        }
    }
}

/// How `kind` on a file of type `mode` (`st_mode`), device `dev`, inode
/// `ino` and device number `rdev` is ordered (`direct`: the file is open
/// `O_DIRECT`). Kernel AIO copies a buffered write into the page cache
/// inside `io_submit`, so such writes to one file land in submission order;
/// a sync submitted after them covers them, and a direct read or write
/// submitted after them sees them or replaces them (the kernel writes the
/// cached range back first). A backend keeps that order for requests with
/// the same key. The reads and writes of a stream take turns (below).
pub(crate) fn order_key(kind: OpKind, direct: bool, mode: u32, dev: u64, ino: u64, rdev: u64) -> Option<Order> {
    let key = match mode & libc::S_IFMT {
        libc::S_IFREG => (dev, ino),
        libc::S_IFBLK => (u64::MAX, rdev),
        // A write to a pipe, socket or character device that reaches a
        // backend blocks (the others are done inside `io_submit`), and
        // kernel AIO's runs to its end inside `io_submit`: the writes of
        // one stream take turns, in submission order, each written whole
        // before the next starts (two in flight at once would interleave
        // their parts).
        // So do its reads (kernel AIO's blocks inside `io_submit` until
        // bytes arrive, so they are taken in submission order), in a turn
        // of their own: a read waiting for bytes never holds a write back
        // (a pipe's two ends are one inode).
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR => {
            return match kind {
                OpKind::Write | OpKind::Writev => Some(Order::Member((dev, ino))),
                OpKind::Read | OpKind::Readv => Some(Order::Member((dev | STREAM_READS, ino))),
                _ => None,
            };
        }
        _ => return None,
    };
    match kind {
        OpKind::Write | OpKind::Writev if !direct => Some(Order::Member(key)),
        OpKind::Fsync | OpKind::Fdatasync => Some(Order::After(key)),
        // A read follows the buffered writes of its file queued before it,
        // which kernel AIO has done by then (in the page cache, inside
        // io_submit); a direct write follows them too.
        OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => Some(Order::After(key)),
        OpKind::Poll => None,
    }
}

/// The events a POLL for `mask` waits for: the kernel's AIO poll completes
/// with the waker's whole mask, so the usual companions of IN and OUT
/// (RDNORM, WRNORM) are asked for as well, which reproduces that for
/// pipes, eventfds and sockets.
pub(crate) fn poll_companions(mask: u32) -> u32 {
    let mut m = mask;
    if m & libc::POLLIN as u32 != 0 {
        m |= libc::POLLRDNORM as u32;
    }
    if m & libc::POLLOUT as u32 != 0 {
        m |= libc::POLLWRNORM as u32;
    }
    m
}

/// A submission a backend could not finish: the error, and the operations
/// (their keys) it did not start. The others started, and complete as
/// usual.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Why.
    pub errno: Errno,
    /// The keys of the operations not started.
    pub keys: Vec<u64>,
}

/// The seam between the engine and an executor.
pub(crate) trait Backend: Send + Sync + Debug {
    /// Starts `ops`. Never blocks on I/O, with the thread pool's two
    /// documented exceptions (see its module doc): a process that shares
    /// memory but not descriptors with the pool's owner (`CLONE_VM` without
    /// `CLONE_FILES`), and no descriptor number left for uaio's held
    /// duplicate; the request then runs in the submitting thread. On error,
    /// the operations [`Refused`] names did not start; the others did.
    fn submit(&self, ops: &[BackendOp]) -> Result<(), Refused>;
    /// Hands every available completion to `sink` as `(key, result)`. Calls are
    /// serialised by the caller. Returns how many entries were consumed,
    /// including internal ones that were not passed to `sink`.
    fn drain(&self, sink: &mut dyn FnMut(u64, i32)) -> usize;
    /// As [`Backend::drain`], of the completions that had arrived when
    /// [`Backend::completion_mark`] read `mark` (a backend without marks
    /// drains all).
    fn drain_before(&self, mark: u32, sink: &mut dyn FnMut(u64, i32)) -> usize {
        let _ = mark;
        self.drain(sink)
    }
    /// For a backend whose completions wait in a queue of its own until
    /// drained (io_uring's), a reading of how far that queue has come,
    /// safe to call in a signal handler (see [`Backend::drain_before`]).
    fn completion_mark(&self) -> Option<Box<dyn Fn() -> u32 + Send + Sync>> {
        None
    }
    /// Whether [`Backend::drain`] would find something.
    fn has_completions(&self) -> bool;
    /// Sleeps until at least `min` completions were produced after the call
    /// started, [`Backend::wake`] was called, `timeout` passed (`ETIME`) or a
    /// signal arrived (`EINTR`). `sigmask`, when given, is the signal mask in
    /// force during the sleep, installed atomically.
    fn wait(&self, min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno>;
    /// Makes a current or imminent [`Backend::wait`] return.
    fn wake(&self);
    /// Whether completions this backend holds when [`Backend::wait`] ends
    /// with `EINTR` may have come before the signal (io_uring's wait
    /// leaves them in its queue), so that the interrupted call returns
    /// them, as the kernel's does with the events it finds. A backend
    /// whose waiter runs a request itself with signals held back (the
    /// thread pool) answers `false`: a completion found then came after
    /// the signal, and is left for the next call, as on the kernel.
    fn holds_completions_across_signals(&self) -> bool {
        false
    }
    /// Asks for the request with `key` to be cancelled; its completion still
    /// arrives. A key that names no pending request is ignored.
    fn cancel(&self, key: u64);
    /// For `io_cancel` of the POLL `key`, before [`Backend::cancel`]:
    /// completes it with its events if its file is ready now, and answers
    /// whether it did. The kernel's POLL completes in the wake-up of the
    /// file operation that made it ready, so a cancel that comes after
    /// that operation finds it done; a backend whose wake-ups reach it
    /// later (a thread's `poll(2)`) looks again here.
    fn complete_if_ready(&self, key: u64) -> bool {
        let _ = key;
        false
    }
    /// Turns the progress thread's notification for this backend on or off.
    fn set_notify(&self, on: bool);
    /// The context was destroyed and nothing of it is in flight: what the
    /// backend shares with other contexts no longer counts it, even if
    /// this object outlives the destroy (a call a handler jumped out of
    /// keeps its context for ever).
    fn destroyed(&self) {}
    /// `"io_uring"` or `"threads"`.
    fn name(&self) -> &'static str;
    /// Whether buffered writes must reach the backend rather than run
    /// during submission (the fault-injection seam, whose plan counts them).
    fn wants_every_write(&self) -> bool {
        false
    }
}
