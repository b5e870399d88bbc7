//! Writes to blocking pipes, sockets and character devices are written
//! whole.
//!
//! Kernel AIO hands such a write to the file's `write_iter` as a blocking
//! call, which sleeps until every byte is taken (a pipe's reader makes
//! room, a socket's peer reads), as `write(2)` does. io_uring tries the
//! write without blocking, waits for the file to be writable, tries again,
//! and completes with what that attempt moved: a 1 MiB write to a pipe
//! ends after 64 KiB. (It goes on after a short transfer only on regular
//! files and block devices.)
//!
//! So the ring watches each write to a stream opened without `O_NONBLOCK`
//! and without `RWF_NOWAIT` (those may be short, on both), and pushes the
//! rest when one completes short, on a duplicate of its file checked to be
//! the file the request named (the program may close or reuse its number
//! meanwhile; a request whose file is gone ends with what it wrote). The
//! request's completion is the sum of its parts, or the bytes written so
//! far when a later part fails or is cancelled, so that no byte is lost
//! silently. A cancelled request is never pushed again.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use rustix::io_uring::{addr_or_splice_off_in_union, io_uring_ptr, len_union, off_or_addr2_union, IoringOp};
use uaio_abi::iovec;

use super::fixed::in_slot;
use super::owners::{hold_file, Owners};
use super::Sqe;
use crate::backend::{BackendOp, OpKind};
use crate::sync::lock;
use crate::sys::internal_fds::InternalFd;

/// A watched write.
#[derive(Debug)]
struct Stream {
    key: u64,
    /// The request's buffer, or (vectored) the context's array of its
    /// iovecs, alive until the request is harvested.
    addr: u64,
    /// The buffer's length, or the number of iovecs.
    len: u32,
    vectored: bool,
    /// The request's offset: a pipe ignores it, a socket wants 0, and a
    /// character device's position moves with the bytes written.
    off: u64,
    positioned: bool,
    total: u64,
    /// Bytes written by the parts completed so far.
    done: u64,
    /// The duplicate the rest is written on (taken at the first short part).
    dup: Option<InternalFd>,
    /// The iovecs of the rest, read by the part in the kernel (vectored).
    rest: Option<Box<[iovec]>>,
}

/// The watched writes of one ring.
#[derive(Debug, Default)]
pub(super) struct Streams {
    list: Mutex<Vec<Stream>>,
    /// `list.len()`, read without the lock.
    n: AtomicU32,
}

/// Whether `op` is a write that must be written whole (see the module's
/// documentation).
fn whole(op: &BackendOp) -> bool {
    let Some(seen) = op.seen else { return false };
    matches!(op.kind, OpKind::Write | OpKind::Writev)
        && !seen.st.is_regular_or_block()
        && seen.flags & libc::O_NONBLOCK as u32 == 0
        && op.rw_flags & uaio_abi::RWF_NOWAIT == 0
}

/// The iovecs of `v` past its first `skip` bytes.
fn after(v: &[iovec], skip: u64) -> Box<[iovec]> {
    let mut skip = skip;
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        if skip >= e.iov_len {
            skip -= e.iov_len;
            continue;
        }
        out.push(iovec { iov_base: e.iov_base + skip, iov_len: e.iov_len - skip });
        skip = 0;
    }
    out.into_boxed_slice()
}

impl Streams {
    /// Watches `op` if it must be written whole; before it is pushed.
    pub(super) fn watch(&self, op: &BackendOp) {
        if !whole(op) {
            return;
        }
        let vectored = op.kind == OpKind::Writev;
        let total = if vectored {
            // SAFETY: for a vectored request `addr` is the context's own
            // array of `len` iovecs, alive until the request is harvested.
            let v = unsafe { std::slice::from_raw_parts(op.addr as *const iovec, op.len as usize) };
            v.iter().map(|e| e.iov_len).sum()
        } else {
            op.len as u64
        };
        let positioned = op.seen.is_some_and(|s| s.st.kind() == libc::S_IFCHR);
        let mut l = lock(&self.list);
        l.push(Stream {
            key: op.key,
            addr: op.addr,
            len: op.len,
            vectored,
            off: op.off,
            positioned,
            total,
            done: 0,
            dup: None,
            rest: None,
        });
        self.n.store(l.len() as u32, Ordering::SeqCst);
    }

    /// Whether any write is watched.
    #[inline]
    pub(super) fn any(&self) -> bool {
        self.n.load(Ordering::Relaxed) != 0
    }

    /// Stops watching `key` (its push failed); returns the bytes its parts
    /// wrote (0 when not watched).
    pub(super) fn forget(&self, key: u64) -> u64 {
        let mut l = lock(&self.list);
        let Some(i) = l.iter().position(|s| s.key == key) else { return 0 };
        let s = l.swap_remove(i);
        self.n.store(l.len() as u32, Ordering::SeqCst);
        s.done
    }

    /// The part of the request `key` in the kernel completed with `res`:
    /// the entry of the rest when the request is watched, wrote only part,
    /// is not cancelled and its file is still there. `o` (locked by the
    /// caller) holds the request's record. The caller pushes the entry,
    /// and calls [`Streams::forget`] if that fails.
    pub(super) fn rest(&self, o: &mut Owners, key: u64, res: i32) -> Option<Sqe> {
        if res <= 0 {
            return None;
        }
        let (sqe, file, cancelled) = o.entry(key)?;
        if cancelled {
            return None;
        }
        let mut l = lock(&self.list);
        let s = l.iter_mut().find(|s| s.key == key)?;
        let done = s.done + res as u64;
        if done >= s.total {
            return None;
        }
        // An entry that names a slot of registered files (pushed again after
        // its thread ended) goes on naming it: the slot holds the file
        // until the request completes.
        if s.dup.is_none() && !in_slot(&sqe) {
            s.dup = Some(hold_file(&sqe, file)?.0);
        }
        s.done = done;
        let fd = if in_slot(&sqe) { sqe.fd } else { s.dup.as_ref().map(AsRawFd::as_raw_fd)? };
        let (addr, len) = if s.vectored {
            // SAFETY: as in `watch`: the context's array of `len` iovecs,
            // alive until the request is harvested.
            let v = unsafe { std::slice::from_raw_parts(s.addr as *const iovec, s.len as usize) };
            let rest = after(v, done);
            let at = (rest.as_ptr() as u64, rest.len() as u32);
            s.rest = Some(rest);
            at
        } else {
            (s.addr + done, (s.total - done) as u32)
        };
        let off = if s.positioned { s.off + done } else { s.off };
        debug_assert!(matches!(sqe.opcode, IoringOp::Write | IoringOp::Writev));
        Some(Sqe {
            fd,
            addr_or_splice_off_in: addr_or_splice_off_in_union {
                addr: io_uring_ptr::new(addr as *mut core::ffi::c_void),
            },
            len: len_union { len },
            off_or_addr2: off_or_addr2_union { off },
            ..sqe
        })
    }

    /// The result of the request `key`, whose last part ended with `res`:
    /// with the bytes of the parts before it, which count even if it
    /// failed. The request is no longer watched.
    pub(super) fn result(&self, key: u64, res: i32) -> i32 {
        match self.forget(key) {
            0 => res,
            done if res < 0 => done as i32,
            done => (done + res as u64) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_iovecs_skips_what_was_written() {
        let v = [
            iovec { iov_base: 100, iov_len: 4 },
            iovec { iov_base: 200, iov_len: 0 },
            iovec { iov_base: 300, iov_len: 8 },
        ];
        let r = after(&v, 6);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].iov_base, r[0].iov_len), (302, 6));
        let r = after(&v, 4);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].iov_base, r[0].iov_len), (300, 8));
        let r = after(&v, 3);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].iov_base, r[0].iov_len), (103, 1));
    }
}
