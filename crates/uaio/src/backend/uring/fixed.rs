//! The file of a request that io_uring looks up late, held from `io_submit`.
//!
//! io_uring looks a request's descriptor number up when it issues the
//! request, and some are issued long after `io_submit` returns: a buffered
//! write waiting for its turn behind the file's earlier writes (`order`), a
//! sync (which io_uring hands to a worker at once). By then the program may
//! have closed the number, or put another file on it, and the request would
//! run on that file; kernel AIO's holds the file the number named in
//! `io_submit`.
//!
//! So such a request holds that file in a slot of the ring's table of
//! registered files, and its entry names the slot (`IOSQE_FIXED_FILE`):
//! registering holds the open file the number names now without taking a
//! descriptor number, and emptying the slot when the request completes
//! closes nothing. A duplicate of the descriptor would take a number of the
//! program's table (none may be left), and its close would release the
//! process's record locks on the file, or, kept open past the request for
//! that reason, hold the file (a `flock`, an unlinked file's space) after
//! the program closed its own descriptor. The table has a slot for each
//! request the ring may have in flight; it is registered, empty, with the
//! ring, while nothing is in flight (kernels before 5.13 or so wait for the
//! ring's requests to end before they register files). Where io_uring
//! refused it (or a lowered `RLIMIT_NOFILE` made it short), a duplicate
//! holds the file.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, Weak};

use rustix::io::Errno;
use rustix::io_uring::{
    io_uring_files_update, io_uring_register, io_uring_rsrc_register, IoringRegisterOp, IoringRsrcFlags, IoringSqeFlags,
};

use super::{Ring, Sqe};
use crate::sys::internal_fds::InternalFd;

/// Slots in a ring's table at least (a ring of fewer requests in flight
/// has this many).
const MIN_SLOTS: u32 = 16;

/// What holds a request's file until it completes (dropped: let go of).
#[derive(Debug)]
pub(super) enum Held {
    /// uaio's duplicate of the program's descriptor.
    Dup(InternalFd),
    /// A slot of the ring's table of registered files.
    Slot(Slot),
}

impl Held {
    /// Makes the entry `sqe` name the file held.
    pub(super) fn name_in(&self, sqe: &mut Sqe) {
        match self {
            Held::Dup(dup) => {
                sqe.fd = dup.as_raw_fd();
                sqe.flags &= !IoringSqeFlags::FIXED_FILE;
            }
            Held::Slot(slot) => {
                sqe.fd = slot.index as i32;
                sqe.flags |= IoringSqeFlags::FIXED_FILE;
            }
        }
    }

    /// The duplicate, if that is what holds the file.
    pub(super) fn into_dup(self) -> Option<InternalFd> {
        match self {
            Held::Dup(dup) => Some(dup),
            Held::Slot(_) => None,
        }
    }
}

/// A slot of a ring's table of registered files, emptied and freed when
/// dropped (with the ring gone, the table went with it).
#[derive(Debug)]
pub(super) struct Slot {
    ring: Weak<Ring>,
    index: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.upgrade() {
            ring.slots.put_back(&ring, self.index);
        }
    }
}

/// A ring's table of registered files: its free slots.
#[derive(Debug, Default)]
pub(super) struct Slots(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    free: Vec<u32>,
}

/// Whether the entry names a slot of registered files, not a number.
pub(super) fn in_slot(sqe: &Sqe) -> bool {
    sqe.flags.contains(IoringSqeFlags::FIXED_FILE)
}

impl Ring {
    /// Holds the file that the entry's descriptor number names now, until
    /// the request completes (the caller keeps what this returns with
    /// [`Ring::keep_until_done`], or in the request's place in line), and
    /// makes the entry name what holds it. `None` when neither a slot nor a
    /// duplicate could be had (the entry is left as it was).
    pub(super) fn hold(self: &Arc<Self>, sqe: &mut Sqe) -> Option<Held> {
        let held = match self.hold_in_slot(sqe.fd) {
            Some(slot) => slot,
            None => Held::Dup(InternalFd::dup_of_program(sqe.fd, None).ok()?),
        };
        held.name_in(sqe);
        Some(held)
    }

    /// The file the descriptor number `fd` names now, held in a free slot
    /// of the ring's table.
    pub(super) fn hold_in_slot(self: &Arc<Self>, fd: i32) -> Option<Held> {
        let index = self.slots.take(self, fd)?;
        Some(Held::Slot(Slot { ring: Arc::downgrade(self), index }))
    }

    /// Puts the file `fd` names (or nothing, with -1) in the slot `slot`.
    fn set_slot(&self, slot: u32, fd: i32) -> Result<(), Errno> {
        let mut update = io_uring_files_update::default();
        update.offset = slot;
        update.fds = super::ptr_of(&fd as *const i32);
        // SAFETY: IORING_REGISTER_FILES_UPDATE reads one io_uring_files_update
        // and the one descriptor number its `fds` points to; both live on
        // this stack across the call.
        match unsafe {
            io_uring_register(
                self.fd.as_fd(),
                IoringRegisterOp::RegisterFilesUpdate,
                (&update as *const io_uring_files_update).cast(),
                1,
            )
        } {
            Ok(1) => Ok(()),
            Ok(_) => Err(Errno::BADF),
            Err(e) => Err(e),
        }
    }
}

impl Slots {
    /// Registers an empty table of files for `ring`, which has nothing in
    /// flight, a slot for each of the `capacity` requests it may have in
    /// flight (fewer when io_uring refuses that many; when it refuses even
    /// a few, no slot is ever free).
    pub(super) fn register(&self, ring: &Ring, capacity: u32) {
        let size = register(ring, capacity);
        crate::sync::lock(&self.0).free = (0..size).rev().collect();
    }

    /// A free slot holding the file `fd` names now.
    fn take(&self, ring: &Ring, fd: i32) -> Option<u32> {
        let mut t = crate::sync::lock(&self.0);
        let slot = t.free.pop()?;
        if ring.set_slot(slot, fd).is_err() {
            t.free.push(slot);
            return None;
        }
        Some(slot)
    }

    /// Empties `slot` and makes it free again.
    fn put_back(&self, ring: &Ring, slot: u32) {
        let mut t = crate::sync::lock(&self.0);
        // Should the removal fail, the slot is not used again (its file
        // is let go of with the ring).
        if ring.set_slot(slot, -1).is_ok() {
            t.free.push(slot);
        }
    }
}

/// Registers an empty table of files for `ring`, of `capacity` slots or
/// fewer (io_uring refuses a table longer than the soft `RLIMIT_NOFILE`,
/// and older kernels one of more than 32,768); its size (0 when io_uring
/// refused every size down to [`MIN_SLOTS`]).
fn register(ring: &Ring, capacity: u32) -> u32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let mut size = (capacity.max(MIN_SLOTS) as u64).min(limit).min(1 << 20) as u32;
    while size >= MIN_SLOTS {
        match register_empty(ring, size) {
            Ok(()) => return size,
            Err(Errno::MFILE | Errno::NOMEM | Errno::INVAL) => size /= 2,
            Err(_) => return 0,
        }
    }
    0
}

/// Registers a table of `size` empty slots: sparse (5.19+), else from an
/// array of -1.
fn register_empty(ring: &Ring, size: u32) -> Result<(), Errno> {
    let mut sparse = io_uring_rsrc_register::default();
    sparse.nr = size;
    sparse.flags = IoringRsrcFlags::REGISTER_SPARSE;
    // SAFETY: IORING_REGISTER_FILES2 reads one io_uring_rsrc_register of
    // the size given, which lives across the call; a sparse table reads
    // no array.
    let r = unsafe {
        io_uring_register(
            ring.fd.as_fd(),
            IoringRegisterOp::RegisterFiles2,
            (&sparse as *const io_uring_rsrc_register).cast(),
            std::mem::size_of::<io_uring_rsrc_register>() as u32,
        )
    };
    if r.is_ok() {
        return Ok(());
    }
    let empty = vec![-1i32; size as usize];
    // SAFETY: IORING_REGISTER_FILES reads `size` descriptor numbers from
    // the array (-1: an empty slot), which lives across the call.
    unsafe { io_uring_register(ring.fd.as_fd(), IoringRegisterOp::RegisterFiles, empty.as_ptr().cast(), size) }
        .map(|_| ())
}
