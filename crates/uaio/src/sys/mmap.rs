//! Memory mappings uaio owns: unmapped when dropped.

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::io::Errno;

/// A mapping of `len` bytes at `ptr` that belongs to uaio alone and is
/// unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// A shared, read-write mapping of `len` bytes of `fd` at `offset`, its
    /// pages populated at once (an io_uring's rings).
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize, offset: u64) -> Result<Mapping, Errno> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh mapping, at an address the kernel chooses.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd,
                offset,
            )?
        };
        // SAFETY: just mapped, `len` bytes, owned by nobody else.
        Ok(unsafe { Mapping::own(p, len) })
    }

    /// Three private pages, the first and last inaccessible and the middle
    /// one read-only: a mapping whose middle page shows as a line of its own
    /// (`start-end r--p`) in the `maps` of every process with this memory.
    pub(crate) fn marker(page: usize) -> Result<Mapping, Errno> {
        use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
        // SAFETY: a fresh anonymous mapping, at an address the kernel chooses.
        let p = unsafe {
            rustix::mm::mmap_anonymous(std::ptr::null_mut(), 3 * page, ProtFlags::empty(), MapFlags::PRIVATE)?
        };
        // SAFETY: just mapped, `3 * page` bytes, owned by nobody else.
        let m = unsafe { Mapping::own(p, 3 * page) };
        // SAFETY: the middle page of our own mapping.
        unsafe { rustix::mm::mprotect(m.at::<core::ffi::c_void>(page as u32), page, MprotectFlags::READ)? };
        Ok(m)
    }

    /// Takes ownership of the mapping of `len` bytes at `p`.
    ///
    /// # Safety
    /// `p` must be a live mapping of `len` bytes that nothing else unmaps.
    pub(crate) unsafe fn own(p: *mut core::ffi::c_void, len: usize) -> Mapping {
        Mapping { ptr: NonNull::new(p.cast()).expect("mmap returned null"), len }
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The address `off` bytes in, as a `T`.
    pub(crate) fn at<T>(&self, off: u32) -> *mut T {
        assert!((off as usize) < self.len, "offset outside the mapping");
        // SAFETY: `off` lies inside the mapping.
        unsafe { self.ptr.as_ptr().add(off as usize).cast() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once, when nothing refers to it.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
