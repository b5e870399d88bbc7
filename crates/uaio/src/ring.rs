//! The completion ring: a mapping in the kernel's `struct aio_ring` layout
//! whose address is the context handle.
//!
//! uaio is the only producer: it writes events at `ring + 32 + 32 * tail` and
//! publishes `tail` with release ordering. Readers are uaio's own
//! `io_getevents` and any application that reaps from the ring itself. The
//! `head` field belongs to the reader and may hold anything; uaio only ever
//! uses it reduced modulo `nr`, so a corrupted header cannot make uaio write
//! outside the mapping. uaio keeps its own copy of `tail` and never trusts the
//! one in the page.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use uaio_abi::{aio_ring, io_event, AIO_RING_COMPAT_FEATURES, AIO_RING_INCOMPAT_FEATURES, AIO_RING_MAGIC};

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
pub(crate) fn possible_cpus() -> u32 {
    use std::sync::OnceLock;
    static N: OnceLock<u32> = OnceLock::new();
    *N.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| parse_cpu_list(s.trim()))
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1))
    })
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

/// System page size.
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
#[derive(Debug)]
pub(crate) struct Ring {
    base: NonNull<u8>,
    bytes: usize,
    nr: u32,
}

// SAFETY: the mapping is plain memory; all shared accesses go through atomics
// (header) or are serialised by the context's completion lock (events).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps a ring of the given geometry and fills in the header.
    pub(crate) fn new(geo: Geometry, id: u32) -> io::Result<Ring> {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                geo.bytes,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )?
        };
        let ring = Ring { base: NonNull::new(p.cast()).expect("mmap returned null"), bytes: geo.bytes, nr: geo.nr };
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

    /// The context handle: the ring's address.
    pub(crate) fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Event slots.
    pub(crate) fn nr(&self) -> u32 {
        self.nr
    }

    fn field(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is one of the header's u32 fields, 4-byte aligned
        // inside the live mapping; AtomicU32 has the layout of u32.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The reader's `head`, reduced modulo `nr` (the page is user-writable).
    pub(crate) fn head(&self) -> u32 {
        self.field(8).load(Ordering::Acquire) % self.nr
    }

    /// Stores a new `head` (uaio's own `io_getevents`).
    pub(crate) fn set_head(&self, head: u32) {
        self.field(8).store(head, Ordering::Release);
    }

    /// Publishes `tail`: every event before it is visible to readers.
    pub(crate) fn publish_tail(&self, tail: u32) {
        self.field(12).store(tail, Ordering::Release);
    }

    fn slot(&self, idx: u32) -> *mut io_event {
        debug_assert!(idx < self.nr);
        // SAFETY: idx < nr, and HEADER + EVENT * nr <= bytes by construction.
        unsafe { self.base.as_ptr().add(HEADER + EVENT * (idx % self.nr) as usize).cast() }
    }

    /// Writes one event at slot `idx` (caller holds the completion lock).
    pub(crate) fn write_event(&self, idx: u32, ev: &io_event) {
        // SAFETY: the slot lies in the mapping; volatile because the
        // application may read the page concurrently.
        unsafe { self.slot(idx).write_volatile(*ev) }
    }

    /// Address of slot `idx`, for copying events out in bulk.
    pub(crate) fn slot_ptr(&self, idx: u32) -> *const u8 {
        self.slot(idx).cast()
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
        // SAFETY: unmapping our own mapping once; nothing refers to it any more.
        unsafe {
            let _ = rustix::mm::munmap(self.base.as_ptr().cast(), self.bytes);
        }
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
}
