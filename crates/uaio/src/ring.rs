//! The completion ring: a mapping in the kernel's `struct aio_ring` layout
//! whose address is the context handle.
//!
//! The pages are mapped twice (see [`Ring`]): the application's view is the
//! handle, and uaio works only through a view of its own, so whatever the
//! application does to its mapping cannot make uaio fault or write into
//! memory that is no longer the ring.
//!
//! uaio is the only producer: it writes events at `ring + 32 + 32 * tail` and
//! publishes `tail` with release ordering. Readers are uaio's own
//! `io_getevents` and any application that reaps from the ring itself. The
//! `head` field belongs to the reader and may hold anything; uaio only ever
//! uses it reduced modulo `nr`, so a corrupted header cannot make uaio write
//! outside the mapping. uaio keeps its own copy of `tail` and never trusts the
//! one in the page.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rustix::io::Errno;
use uaio_abi::{aio_ring, io_event, AIO_RING_COMPAT_FEATURES, AIO_RING_INCOMPAT_FEATURES, AIO_RING_MAGIC};

use crate::sys::mmap::Mapping;
use crate::uaccess::{copy_to_user, read_user, Fault, UserPtr};

const HEADER: usize = core::mem::size_of::<aio_ring>();
const EVENT: usize = core::mem::size_of::<io_event>();

/// Geometry of a ring, computed by the kernel's rule from `nr_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes mapped (whole pages).
    pub bytes: usize,
    /// Event slots (`ring->nr`).
    pub nr: u32,
    /// Requests that may be pending (submitted and not yet reaped) at once.
    pub capacity: u32,
}

/// Number of possible CPUs, as the kernel counts them for AIO sizing.
/// Kept in an atomic, not a `OnceLock`: a `fork` while another thread is
/// inside the first look would leave the child waiting for ever on the
/// lock that thread held (a black-box attack: the child's `io_setup` hung
/// in 30 of 30 runs of a program forking while its first `io_setup` ran).
/// Two threads that look at once both read the file; the answer is the
/// same.
pub(crate) fn possible_cpus() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    match N.load(Ordering::Relaxed) {
        0 => {
            let n = crate::sys::procfs::read(crate::sys::procfs::ProcFile::CpuPossible)
                .and_then(|s| parse_cpu_list(s.trim()))
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1))
                .max(1);
            N.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

fn parse_cpu_list(s: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => n += b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1,
            None => {
                part.parse::<u32>().ok()?;
                n += 1
            }
        }
    }
    (n > 0).then_some(n)
}

/// System page size. With rustix's `use-libc-auxv` feature (workspace
/// Cargo.toml) this is the C library's `sysconf(_SC_PAGESIZE)`: rustix's own
/// aux-vector reader gets valgrind's aux vector under valgrind and crashed.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

impl Geometry {
    /// The kernel's sizing: `max(nr, 4 * cpus)`, doubled in 32-bit
    /// arithmetic (too large → `EINVAL`, zero → `EAGAIN`), plus 2, rounded up
    /// to whole pages. The request capacity follows the kernel's per-CPU
    /// batching as seen from one CPU: `(nr - 1)` rounded down to a multiple of
    /// `(nr - 1) / (4 * cpus)`.
    pub(crate) fn for_events(nr_events: u32, cpus: u32, page: usize) -> Result<Geometry, rustix::io::Errno> {
        let n = nr_events.max(cpus.saturating_mul(4)).wrapping_mul(2);
        if n > 0x1000_0000 / EVENT as u32 {
            return Err(rustix::io::Errno::INVAL);
        }
        if n == 0 {
            return Err(rustix::io::Errno::AGAIN);
        }
        let n = n + 2;
        let bytes = (HEADER + EVENT * n as usize).div_ceil(page) * page;
        let nr = ((bytes - HEADER) / EVENT) as u32;
        let batch = ((nr - 1) / (cpus.max(1) * 4)).max(1);
        let capacity = (nr - 1) / batch * batch;
        Ok(Geometry { bytes, nr, capacity })
    }
}

/// A mapped completion ring.
///
/// The ring's pages are shared memory mapped twice: once for uaio, once for
/// the application (the handle). uaio reads `head` and writes events and
/// `tail` only through its own view, which the application never sees and
/// which a `fork` child does not inherit (`MADV_DONTFORK`); the application
/// may unmap, move, replace or protect its view at any time without any
/// effect on uaio. The application's view is an ordinary shared mapping:
/// like the kernel's ring, a `fork` child inherits it and sees what completes
/// in the parent afterwards. uaio touches the application's view only
/// through the fault-safe [`read_user`] (the `id` read of a lookup, and the
/// proof in [`Ring::adopt`]), and unmaps it in [`Ring::unmap_user`]
/// (`io_destroy`), as the kernel does.
#[derive(Debug)]
pub(crate) struct Ring {
    /// uaio's own view of the pages.
    base: Mapping,
    /// The application's view: the handle. It changes when the application
    /// moves the ring and uses the new address ([`Ring::adopt`]).
    user: AtomicU64,
    /// The application's view has not been unmapped by uaio yet.
    user_mapped: AtomicBool,
    bytes: usize,
    nr: u32,
}

// SAFETY: uaio's view is plain memory that only this value refers to; all
// shared accesses go through atomics (header) or are serialised by the
// context's completion lock (events).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

/// Two views of the same fresh, zeroed shared pages: uaio's own and the
/// application's. Normally with no descriptor at all (a shared anonymous
/// mapping, then `mremap` with old size 0, which maps the same pages a
/// second time). Where that is refused (valgrind answers `EINVAL`), through
/// a memfd that is closed as soon as both views exist.
fn two_views(bytes: usize) -> Result<(Mapping, *mut core::ffi::c_void), Errno> {
    use rustix::mm::{MapFlags, MremapFlags, ProtFlags};
    let rw = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a fresh anonymous mapping; nothing else refers to it.
    let own = unsafe { rustix::mm::mmap_anonymous(std::ptr::null_mut(), bytes, rw, MapFlags::SHARED)? };
    // SAFETY: a second mapping of the pages just mapped; the first stays
    // where it is (old size 0 moves nothing).
    match unsafe { rustix::mm::mremap(own, 0, bytes, MremapFlags::MAYMOVE) } {
        // SAFETY: the first view is ours alone from now on.
        Ok(user) => return Ok((unsafe { Mapping::own(own, bytes) }, user)),
        Err(e) => {
            // SAFETY: unmapping the mapping made above, which nothing uses.
            let _ = unsafe { rustix::mm::munmap(own, bytes) };
            if e != Errno::INVAL {
                return Err(e);
            }
        }
    }
    // The memfd's number is mapped and closed before the program may close
    // or reuse it (see `making`).
    crate::sys::internal_fds::making(|| {
        let fd = rustix::fs::memfd_create("uaio-ring", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, bytes as u64)?;
        // SAFETY: a fresh shared mapping of the memfd made above.
        let own = unsafe { rustix::mm::mmap(std::ptr::null_mut(), bytes, rw, MapFlags::SHARED, &fd, 0)? };
        // SAFETY: as above, the same pages a second time.
        match unsafe { rustix::mm::mmap(std::ptr::null_mut(), bytes, rw, MapFlags::SHARED, &fd, 0) } {
            // SAFETY: as above.
            Ok(user) => Ok((unsafe { Mapping::own(own, bytes) }, user)),
            Err(e) => {
                // SAFETY: unmapping the first view, which nothing uses yet.
                let _ = unsafe { rustix::mm::munmap(own, bytes) };
                Err(e)
            }
        }
    })
}

impl Ring {
    /// Maps a ring of the given geometry twice (uaio's view and the
    /// application's) and fills in the header. No file descriptor is used:
    /// the second view is made by `mremap` with an old size of 0, which maps
    /// the same pages of a shared anonymous mapping again.
    pub(crate) fn new(geo: Geometry, id: u32) -> Result<Ring, Errno> {
        let (own, user) = two_views(geo.bytes)?;
        // Only after the second view exists: mremap would copy the flag.
        // SAFETY: advice on uaio's own mapping; failure only costs the
        // child an inherited copy it never touches.
        let _ = unsafe { rustix::mm::madvise(own.as_ptr().cast(), geo.bytes, rustix::mm::Advice::LinuxDontFork) };
        let ring = Ring {
            base: own,
            user: AtomicU64::new(user as u64),
            user_mapped: AtomicBool::new(true),
            bytes: geo.bytes,
            nr: geo.nr,
        };
        let h = aio_ring {
            id,
            nr: geo.nr,
            head: 0,
            tail: 0,
            magic: AIO_RING_MAGIC,
            compat_features: AIO_RING_COMPAT_FEATURES,
            incompat_features: AIO_RING_INCOMPAT_FEATURES,
            header_length: HEADER as u32,
        };
        // SAFETY: the mapping is at least one page, larger than the header,
        // and page-aligned.
        unsafe { ring.base.as_ptr().cast::<aio_ring>().write(h) };
        Ok(ring)
    }

    /// The context handle: the address of the application's view.
    pub(crate) fn addr(&self) -> u64 {
        self.user.load(Ordering::Acquire)
    }

    /// Whether `addr` lies in uaio's own view of the pages (never a
    /// handle: the application's view is another mapping).
    pub(crate) fn in_own_view(&self, addr: u64) -> bool {
        let base = self.base.as_ptr() as u64;
        addr >= base && addr < base + self.bytes as u64
    }

    /// The address of uaio's own view (tests).
    #[cfg(test)]
    pub(crate) fn own_view(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Event slots.
    pub(crate) fn nr(&self) -> u32 {
        self.nr
    }

    /// Makes `addr` the handle if the application's memory there shows this
    /// ring's pages (the application moved its view with `mremap`, which the
    /// kernel follows). `tail` is the producer's tail and the caller holds
    /// the completion lock: the slot at `tail` is then written by nobody
    /// else, and no reader looks at it (readers stop before `tail`), so
    /// uaio may write marks there through its own view and look for them
    /// through `addr`. A copy of the ring, or anything else with the right
    /// `id`, does not show the marks. Returns whether `addr` is now the
    /// handle.
    pub(crate) fn adopt(&self, addr: u64, tail: u32) -> bool {
        let own = self.base.as_ptr() as u64;
        let overlaps_own = addr < own + self.bytes as u64 && own < addr.saturating_add(self.bytes as u64);
        if !addr.is_multiple_of(page_size() as u64) || overlaps_own || !self.user_mapped.load(Ordering::Acquire) {
            return false;
        }
        if addr == self.addr() {
            return true;
        }
        let off = HEADER as u64 + EVENT as u64 * (tail % self.nr) as u64;
        // SAFETY: the slot at `tail` lies in uaio's view and is ours while
        // the caller holds the completion lock (see above); u64-aligned.
        let word = unsafe { self.base.as_ptr().add(off as usize).cast::<u64>() };
        // SAFETY: as above.
        let saved = unsafe { word.read_volatile() };
        let mut shown = read_user::<u64>(addr + off) == Ok(saved);
        for mark in [!saved, saved ^ 0x5a5a_a5a5_0ff0_f00f] {
            if !shown {
                break;
            }
            // SAFETY: as above.
            unsafe { word.write_volatile(mark) };
            shown = read_user::<u64>(addr + off) == Ok(mark);
        }
        // SAFETY: as above: the slot's previous bytes back.
        unsafe { word.write_volatile(saved) };
        if shown {
            self.user.store(addr, Ordering::Release);
        }
        shown
    }

    /// Unmaps the application's view at the handle, for the ring's length,
    /// whatever lies there now (the kernel's `io_destroy` does the same).
    /// Only the first call has an effect.
    pub(crate) fn unmap_user(&self) {
        if self.user_mapped.swap(false, Ordering::AcqRel) {
            // SAFETY: the application's view is not Rust memory; uaio never
            // dereferences it. Unmapping it is what io_destroy promises.
            let _ = unsafe { rustix::mm::munmap(self.addr() as *mut core::ffi::c_void, self.bytes) };
        }
    }

    fn field(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is one of the header's u32 fields, 4-byte aligned
        // inside the live mapping; AtomicU32 has the layout of u32.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The reader's `head`, reduced modulo `nr` (the page is user-writable).
    pub(crate) fn head(&self) -> u32 {
        self.field(offset_of!(aio_ring, head)).load(Ordering::Acquire) % self.nr
    }

    /// Stores a new `head` (uaio's own `io_getevents`).
    pub(crate) fn set_head(&self, head: u32) {
        self.field(offset_of!(aio_ring, head)).store(head, Ordering::Release);
    }

    /// Publishes `tail`: every event before it is visible to readers.
    pub(crate) fn publish_tail(&self, tail: u32) {
        self.field(offset_of!(aio_ring, tail)).store(tail, Ordering::Release);
    }

    fn slot(&self, idx: u32) -> *mut io_event {
        debug_assert!(idx < self.nr);
        // SAFETY: idx < nr, and HEADER + EVENT * nr <= bytes by construction.
        unsafe { self.base.as_ptr().add(HEADER + EVENT * (idx % self.nr) as usize).cast() }
    }

    /// Writes one event at slot `idx` (caller holds the completion lock).
    pub(crate) fn write_event(&self, idx: u32, ev: &io_event) {
        // SAFETY: the slot lies in uaio's view; volatile because the
        // application may read the pages concurrently.
        unsafe { self.slot(idx).write_volatile(*ev) }
    }

    /// Writes `ev` at slot `*tail` and moves `*tail` to the next slot
    /// (caller holds the completion lock; nothing is published yet).
    pub(crate) fn push_event(&self, tail: &mut u32, ev: &io_event) {
        self.write_event(*tail, ev);
        *tail = (*tail + 1) % self.nr;
    }

    /// Copies the `n` events of slots `idx..idx + n` (which must not pass
    /// the ring's end) to the application's array at `dst`.
    pub(crate) fn copy_events(&self, idx: u32, n: usize, dst: UserPtr<io_event>) -> Result<(), Fault> {
        assert!(idx as usize + n <= self.nr as usize, "events copied past the ring's end");
        // SAFETY: slots [idx, idx + n) lie in uaio's view of the ring,
        // mapped while `self` lives; `dst` is the application's memory (see
        // `UserPtr`), and faults there are recovered.
        unsafe { copy_to_user(dst.addr(), self.slot(idx).cast(), n * size_of::<io_event>()) }
    }

    /// Reads the event at slot `idx`.
    #[cfg(test)]
    pub(crate) fn read_event(&self, idx: u32) -> io_event {
        // SAFETY: as in write_event.
        unsafe { self.slot(idx).read_volatile() }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // A ring never handed out through the table still has the
        // application's view; a destroyed one had it unmapped at io_destroy.
        // uaio's own view goes with `base`.
        self.unmap_user();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_kernel_rule() {
        // io_setup(1) on 2 CPUs: nr = 127, 120 requests fit.
        let g = Geometry::for_events(1, 2, 4096).unwrap();
        assert_eq!((g.bytes, g.nr, g.capacity), (4096, 127, 120));
        let g = Geometry::for_events(128, 2, 4096).unwrap();
        assert_eq!((g.bytes, g.nr), (12288, 383));
        assert_eq!(Geometry::for_events(0x7fff_ffff, 2, 4096), Err(rustix::io::Errno::INVAL));
        assert_eq!(Geometry::for_events(0x8000_0000, 2, 4096), Err(rustix::io::Errno::AGAIN));
    }

    #[test]
    fn cpu_list_parsing() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(8));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn header_is_the_kernels() {
        let ring = Ring::new(Geometry::for_events(4, 2, 4096).unwrap(), 3).unwrap();
        // SAFETY: reading the header of a live ring in a test.
        let h = unsafe { *(ring.addr() as *const aio_ring) };
        assert_eq!(h.id, 3);
        assert_eq!(h.magic, AIO_RING_MAGIC);
        assert_eq!(h.header_length, 32);
        assert_eq!(h.compat_features, 1);
        assert_eq!((h.head, h.tail), (0, 0));
        ring.write_event(5, &io_event { data: 1, obj: 2, res: 3, res2: 0 });
        assert_eq!(ring.read_event(5).res, 3);
        // SAFETY: corrupting head in the test, as a hostile application could.
        unsafe { (*(ring.addr() as *mut aio_ring)).head = u32::MAX };
        assert!(ring.head() < ring.nr());
    }

    #[test]
    fn the_application_view_shows_uaio_writes() {
        let ring = Ring::new(Geometry::for_events(4, 2, 4096).unwrap(), 1).unwrap();
        assert_ne!(ring.addr(), ring.slot(0) as u64 - HEADER as u64);
        ring.write_event(2, &io_event { data: 7, obj: 8, res: 9, res2: 0 });
        ring.publish_tail(3);
        let user = ring.addr();
        assert_eq!(read_user::<u64>(user + HEADER as u64 + 2 * EVENT as u64), Ok(7));
        assert_eq!(read_user::<u32>(user + 12), Ok(3));
    }

    #[test]
    fn adopt_follows_a_move_but_not_a_copy() {
        let bytes = 4096;
        let ring = Ring::new(Geometry::for_events(4, 2, 4096).unwrap(), 1).unwrap();
        let old = ring.addr();
        // A copy of the ring's page elsewhere: same id, same contents.
        let mut copy = vec![0u8; 2 * bytes];
        let copy_at = (copy.as_mut_ptr() as u64).next_multiple_of(bytes as u64);
        // SAFETY: reading the application's view of a live ring into the
        // buffer, which has room for one page after alignment.
        unsafe { std::ptr::copy_nonoverlapping(old as *const u8, copy_at as *mut u8, bytes) };
        assert!(!ring.adopt(copy_at, 0));
        // uaio's own view and unaligned addresses are never a handle.
        assert!(!ring.adopt(ring.slot(0) as u64 - HEADER as u64, 0));
        assert!(!ring.adopt(old + 8, 0));
        // Move the application's view, as mremap(MAYMOVE) would.
        // SAFETY: a fresh reservation to move onto.
        let dst = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                bytes,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .unwrap();
        // SAFETY: moving the application's view (not Rust memory) over the
        // reservation.
        let moved =
            unsafe { rustix::mm::mremap_fixed(old as *mut _, bytes, bytes, rustix::mm::MremapFlags::MAYMOVE, dst) }
                .unwrap();
        assert_eq!(moved, dst);
        assert_eq!(ring.addr(), old);
        // The last slot: the marks go at the very end of the mapping.
        let tail = ring.nr() - 1;
        ring.write_event(tail, &io_event { data: 11, obj: 12, res: 13, res2: 14 });
        assert!(ring.adopt(dst as u64, tail));
        // The probe slot is left as it was.
        assert_eq!(ring.read_event(tail), io_event { data: 11, obj: 12, res: 13, res2: 14 });
        assert_eq!(ring.addr(), dst as u64);
        // The old address (now a hole or anything else) is no longer the handle.
        assert!(!ring.adopt(old, 0));
        assert_eq!(read_user::<u32>(dst as u64), Ok(1));
        ring.unmap_user();
        assert!(!ring.adopt(copy_at, 0));
    }
}
