//! Requests outlive the thread that submitted them.
//!
//! Kernel AIO ties a request to its context: the thread that submitted it
//! may exit, and the request runs on. io_uring ties a request to the thread
//! that pushed it: once that thread is gone, what the request still needed
//! from it fails. An armed poll (a POLL, or a read or write of a pipe or
//! socket waiting for readiness) and a read retried when its page arrives
//! end with `-ECANCELED`, a retry run without the process's memory with
//! `-EFAULT`, and work queued in the thread's io-wq is cancelled.
//!
//! So each ring remembers, for every request it has in the kernel, the
//! entry it was pushed with, the file it names and the thread that pushed
//! it ([`Submitter`]); a thread marks itself gone from a thread-local
//! destructor, which runs before the kernel ends its requests, and there
//! takes a duplicate of the file of each request it leaves (checked to be
//! the file recorded), so that the program may close or reuse the numbers
//! afterwards. The drain
//! that finds a failed request of a gone thread (or a short read or write
//! of a regular file or block device, which io_uring ends with the part
//! done) pushes the same entry again, from its own living thread, instead
//! of reporting it, on that duplicate (or one taken then, if the thread
//! left none), provided the duplicate names the same file (device and inode); a request whose
//! number was closed or reused before its thread left reports what it
//! ended with. A
//! request cancelled by the program is never pushed again. A request that
//! failed for a reason of its own while its thread was exiting is run once
//! more, and fails again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::fixed::{in_slot, Held};
use super::{Ring, Sqe};
use crate::sync::lock;
use crate::sys::internal_fds::InternalFd;
use crate::sys::process::Leaked;
use rustix::io_uring::{IoringOp, IoringSqeFlags};

/// A thread that pushes requests to rings.
#[derive(Debug, Default)]
pub(super) struct Submitter {
    /// The thread has exited, or is exiting.
    gone: AtomicBool,
    /// The rings it pushed requests to (those gone since are dropped when
    /// another is added).
    rings: Mutex<Vec<Weak<Ring>>>,
}

impl Submitter {
    /// Notes that this thread pushes requests to `ring`.
    pub(super) fn pushes_to(&self, ring: &Arc<Ring>) {
        let mut v = lock(&self.rings);
        if v.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(ring))) {
            return;
        }
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(ring));
    }
}

/// The calling thread's [`Submitter`], marked gone when the thread's
/// thread-local values are destroyed, and the process it was made in.
struct Mark(Arc<Submitter>, i32);

impl Drop for Mark {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Mark {
    /// Marks the thread gone and holds the files of its requests (once:
    /// a thread told to leave early, see [`thread_leaving`], is marked
    /// again by its destructor, if it runs).
    fn leave(&self) {
        if rustix::process::getpid().as_raw_nonzero().get() != self.1 {
            // A fork child's copy of its parent's thread (the child's own
            // thread ends, calling `exit`): the rings and their locks are
            // the parent's, and may have been held by a thread of the
            // parent at the fork, which the child does not have (waiting
            // for one hung the child's exit). And a child sharing the
            // parent's memory (CLONE_VM) must not mark the parent's
            // thread gone.
            return;
        }
        if self.0.gone.swap(true, Ordering::SeqCst) {
            return;
        }
        if crate::sync::held_here() {
            // Destroyed by `exit` (or `pthread_exit`) called from a signal
            // handler that interrupted a uaio call of this thread, which
            // may hold the locks below: nothing is held then.
            return;
        }
        // The files of the requests the thread leaves in the kernel are
        // held now, while their descriptor numbers most likely still name
        // them: the program may close or reuse a number before io_uring
        // ends the request.
        let rings = std::mem::take(&mut *lock(&self.0.rings));
        for r in rings.iter().filter_map(Weak::upgrade) {
            lock(&r.owners).hold_files_of(&self.0, &r);
        }
    }
}

thread_local! {
    static ME: Mark = Mark(Arc::new(Submitter::default()), rustix::process::getpid().as_raw_nonzero().get());
}

/// The calling thread is about to end without its thread-local
/// destructors (the main thread's `pthread_exit`, a `SYS_exit` system
/// call): it is marked gone now, as its destructor would have marked it,
/// so that what io_uring ends of its requests when it exits runs again
/// from a living thread.
pub(crate) fn thread_leaving() {
    let _ = ME.try_with(Mark::leave);
}

/// The submitter of threads whose thread-local values are gone already.
static GONE: Leaked<Arc<Submitter>> = Leaked::new();

/// The calling thread's [`Submitter`].
pub(super) fn me() -> Arc<Submitter> {
    ME.try_with(|m| m.0.clone()).unwrap_or_else(|_| {
        GONE.get_or_init(|| Arc::new(Submitter { gone: AtomicBool::new(true), rings: Mutex::new(Vec::new()) })).clone()
    })
}

/// A request in the kernel, as it was pushed.
struct Owner {
    key: u64,
    /// Who pushed it: its place in [`Owners::subs`].
    by: u32,
    sqe: Sqe,
    /// Device and inode of the file `sqe.fd` named when pushed.
    file: (u64, u64),
    /// The program's descriptor number it was submitted on (`sqe.fd` but
    /// for an entry that names a slot of registered files, see `fixed`).
    number: i32,
    /// The program asked for its cancellation.
    cancelled: bool,
    /// A read or write prepared without `O_DIRECT`.
    buffered: bool,
    /// The file, held when `by` left (see [`hold_file_in`]).
    held: Option<(Held, bool)>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("key", &self.key)
            .field("by", &self.by)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

/// Slots recorded at most: a context's slots are numbered from 0 up to
/// the most requests it has had in flight at once.
const MAX_SLOTS: usize = 1 << 20;

/// Threads a ring keeps in its list at most before it drops those gone
/// whose requests have all completed.
pub(super) const SUBS_BEFORE_PRUNE: usize = 64;

/// The requests of one ring, by slot (the low half of the key).
#[derive(Debug, Default)]
pub(super) struct Owners {
    slots: Vec<Option<Owner>>,
    /// The threads that pushed the requests, each once: a record names
    /// its thread by place here, so that recording and forgetting a
    /// request count no reference.
    subs: Vec<Arc<Submitter>>,
}

impl Owners {
    fn slot(&mut self, key: u64) -> Option<&mut Option<Owner>> {
        let s = self.slots.get_mut(key as u32 as usize)?;
        s.as_ref().is_some_and(|o| o.key == key).then_some(s)
    }

    /// Records the request entry `sqe`, pushed now by `by`, on the file
    /// `file`, submitted on the program's descriptor number `number`. An
    /// entry whose file is not known (a backend's internal entries) could
    /// not be pushed again and is not recorded, nor is one whose slot is
    /// beyond [`MAX_SLOTS`].
    pub(super) fn record(&mut self, by: &Arc<Submitter>, sqe: &Sqe, file: (u64, u64), number: i32, buffered: bool) {
        let by = self.place_of(by);
        self.record_by(by, sqe, file, number, buffered);
    }

    /// [`Owners::record`], the thread given by its place (from
    /// [`Owners::place_of`], under the same hold of the lock).
    #[inline]
    pub(super) fn record_by(&mut self, by: u32, sqe: &Sqe, file: (u64, u64), number: i32, buffered: bool) {
        let key = sqe.user_data.u64_();
        let i = key as u32 as usize;
        if file == (0, 0) || i >= MAX_SLOTS {
            return;
        }
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Owner { key, by, sqe: *sqe, file, number, cancelled: false, buffered, held: None });
    }

    /// The place of `by` in [`Owners::subs`], added if it is not there.
    pub(super) fn place_of(&mut self, by: &Arc<Submitter>) -> u32 {
        // The most recent is the likeliest (one thread submits in turn).
        if let Some(i) = self.subs.iter().rposition(|s| Arc::ptr_eq(s, by)) {
            return i as u32;
        }
        if self.subs.len() >= SUBS_BEFORE_PRUNE {
            self.prune();
        }
        self.subs.push(by.clone());
        (self.subs.len() - 1) as u32
    }

    /// Drops the threads that are gone and named by no record, and
    /// renumbers the records.
    fn prune(&mut self) {
        let mut named = vec![false; self.subs.len()];
        for o in self.slots.iter().flatten() {
            named[o.by as usize] = true;
        }
        let mut place = vec![0u32; self.subs.len()];
        let mut kept = Vec::with_capacity(self.subs.len());
        for (i, s) in self.subs.drain(..).enumerate() {
            if named[i] || !s.gone.load(Ordering::SeqCst) {
                place[i] = kept.len() as u32;
                kept.push(s);
            }
        }
        self.subs = kept;
        for o in self.slots.iter_mut().flatten() {
            o.by = place[o.by as usize];
        }
    }

    /// Forgets the request `key` (its push failed).
    pub(super) fn forget(&mut self, key: u64) {
        if let Some(s) = self.slot(key) {
            *s = None;
        }
    }

    /// Holds the file of each request `by` left in `ring` (see
    /// [`hold_file_in`]), for [`Owners::gone`] to hand over.
    fn hold_files_of(&mut self, by: &Arc<Submitter>, ring: &Arc<Ring>) {
        let Some(by) = self.subs.iter().position(|s| Arc::ptr_eq(s, by)) else { return };
        for o in self.slots.iter_mut().flatten() {
            if o.by == by as u32 && !o.cancelled && o.held.is_none() {
                o.held = hold_file_in(ring, &o.sqe, o.file);
            }
        }
    }

    /// The entry the request `key` was last pushed with, the file it
    /// named, and whether the program cancelled it.
    pub(super) fn entry(&mut self, key: u64) -> Option<(Sqe, (u64, u64), bool)> {
        let o = self.slot(key)?.as_ref()?;
        Some((o.sqe, o.file, o.cancelled))
    }

    /// The program cancels the request `key`: whatever it ends with is
    /// its result.
    pub(super) fn cancel(&mut self, key: u64) {
        if let Some(Some(o)) = self.slot(key) {
            o.cancelled = true;
        }
    }

    /// The request `key` completed: `Some((entry, on))` when the thread
    /// that pushed it is gone and the program did not cancel it, so that
    /// its end may have come from that thread's exit, with what it would
    /// run on again (its file, held when the thread left, else now, in
    /// `ring`; `None` when the number no longer names the file). The caller
    /// decides, then calls [`Owners::again`] or [`Owners::forget`];
    /// otherwise the record goes.
    pub(super) fn gone(&mut self, key: u64, ring: &Arc<Ring>) -> Option<(Sqe, Option<On>)> {
        let by = self.slot(key)?.as_ref()?.by as usize;
        let by_gone = self.subs[by].gone.load(Ordering::SeqCst);
        let s = self.slot(key)?;
        let o = s.as_mut()?;
        if o.cancelled || !by_gone {
            *s = None;
            return None;
        }
        if in_slot(&o.sqe) {
            return Some((o.sqe, Some(On::Named)));
        }
        let held = o.held.take().or_else(|| hold_file_in(ring, &o.sqe, o.file));
        Some((o.sqe, held.map(|(h, seekable)| On::Held(h, seekable))))
    }

    /// The request `key` ended with `-ECANCELED` though neither the program
    /// cancelled it nor its thread is gone: io_uring could not start a
    /// worker for it (the process may make no more threads: a pids cgroup
    /// or `RLIMIT_NPROC` at its limit), which kernel AIO never needs. A
    /// read, write or sync of a regular file or block device is then
    /// `Some((entry, duplicate))`, for the caller to run itself, on a
    /// duplicate of its file (`None` when the number no longer names the
    /// file: for an entry that names a slot of registered files, see
    /// `fixed`, a duplicate of the number it was submitted on, if that
    /// still names the file); the record goes.
    pub(super) fn refused_by_io_wq(&mut self, key: u64) -> Option<(Sqe, Option<InternalFd>)> {
        let by = self.slot(key)?.as_ref()?.by as usize;
        if self.subs[by].gone.load(Ordering::SeqCst) {
            return None;
        }
        let s = self.slot(key)?;
        let o = s.as_ref()?;
        let rw = matches!(
            o.sqe.opcode,
            IoringOp::Read | IoringOp::Write | IoringOp::Readv | IoringOp::Writev | IoringOp::Fsync
        );
        if o.cancelled || !rw {
            return None;
        }
        let o = s.take()?;
        // (It needs a descriptor: a slot will not do.)
        let dup = o.held.and_then(|(h, seekable)| h.into_dup().map(|d| (d, seekable)));
        let mut on_number = o.sqe;
        if in_slot(&on_number) {
            on_number.fd = o.number;
            on_number.flags &= !IoringSqeFlags::FIXED_FILE;
        }
        let held = dup.or_else(|| hold_file(&on_number, o.file));
        // A pipe's or socket's transfer waits for readiness, not for a
        // worker, and could block the draining thread for ever: it keeps
        // its result.
        if held.as_ref().is_some_and(|(_, seekable)| !seekable) {
            return None;
        }
        Some((o.sqe, held.map(|(fd, _)| fd)))
    }

    /// The request `key`, a read or write prepared without `O_DIRECT` that
    /// failed with `EINVAL`, if the program has set `O_DIRECT` on its open
    /// file since: its entry and a new open file of the same file without
    /// `O_DIRECT` ([`crate::sys::buffered_again`], opened through the
    /// program's number, which must still name the file), for the caller
    /// to run it on. The record stays.
    pub(super) fn direct_since(&mut self, key: u64) -> Option<(Sqe, InternalFd)> {
        let o = self.slot(key)?.as_ref()?;
        if !o.buffered || o.cancelled {
            return None;
        }
        let write = matches!(o.sqe.opcode, IoringOp::Write | IoringOp::Writev);
        let again = crate::sys::buffered_again(o.number, write, o.file)?;
        Some((o.sqe, again))
    }

    /// The request `key` is pushed again as `sqe` by `by` (the caller,
    /// holding this table's lock, so that a cancel comes after it).
    pub(super) fn again(&mut self, key: u64, sqe: &Sqe, by: &Arc<Submitter>) {
        let by = self.place_of(by);
        if let Some(Some(o)) = self.slot(key) {
            o.sqe = *sqe;
            o.by = by;
        }
    }
}

/// What a request of a thread that is gone runs on when pushed again.
#[derive(Debug)]
pub(super) enum On {
    /// Its file, held now (see `fixed`), and whether that is a regular
    /// file or a block device.
    Held(Held, bool),
    /// The slot of registered files its entry names (see `fixed`), held
    /// until the request completes.
    Named,
}

/// A duplicate of the descriptor number of the entry `sqe` (uaio's own,
/// above the floor) if it names the file `file` (device and inode; zeros
/// when not known), and whether that is a regular file or a block device.
/// The number itself may be closed or reused by the program at any moment;
/// the duplicate keeps the file it names. (`None` for an entry that names
/// a slot of registered files, see `fixed`: the slot holds its file.)
pub(super) fn hold_file(sqe: &Sqe, file: (u64, u64)) -> Option<(InternalFd, bool)> {
    if file == (0, 0) || sqe.fd < 0 || in_slot(sqe) {
        return None;
    }
    let dup = InternalFd::dup_of_program(sqe.fd, None).ok()?;
    let st = crate::sys::file_stat(std::os::fd::AsRawFd::as_raw_fd(&dup))?;
    (st.ident() == file).then_some((dup, st.is_regular_or_block()))
}

/// The file the entry's number names, held in a slot of `ring`'s
/// registered files (see `fixed`) if the number names `file` just before
/// and just after it was put there, else by [`hold_file`]'s duplicate;
/// and whether that is a regular file or a block device.
pub(super) fn hold_file_in(ring: &Arc<Ring>, sqe: &Sqe, file: (u64, u64)) -> Option<(Held, bool)> {
    if file == (0, 0) || sqe.fd < 0 || in_slot(sqe) {
        return None;
    }
    let names_file = || crate::sys::file_stat(sqe.fd).filter(|st| st.ident() == file);
    let seekable = names_file()?.is_regular_or_block();
    match ring.hold_in_slot(sqe.fd) {
        Some(held) => names_file().map(|_| (held, seekable)),
        None => hold_file(sqe, file).map(|(dup, seekable)| (Held::Dup(dup), seekable)),
    }
}
