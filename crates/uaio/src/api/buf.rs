//! Buffers that requests own while the I/O runs, and the aligned buffer
//! that `O_DIRECT` needs.

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsFd;
use std::ptr::NonNull;

/// A buffer that a request may own while the I/O reads or writes it.
///
/// Implemented for `Vec<u8>`, `Box<[u8]>` and [`AlignedBuf`]. The request
/// reads or writes the whole slice (`&buf[..]`): a read of a `Vec<u8>`
/// fills its current length, it does not grow it.
///
/// # Safety
///
/// An implementation promises that, while nobody calls a `&mut self`
/// method other than `deref_mut`, the slice that `deref` and `deref_mut`
/// return is the same memory every time (same address, same length), that
/// moving the value does not move that memory, and that only dropping the
/// value frees it. A request keeps the value, unused, until its completion,
/// and the I/O uses that memory meanwhile. (`[u8; N]` breaks the second
/// promise: its bytes move with it.)
///
/// # Examples
///
/// ```
/// fn capacity_of<B: uaio::IoBuffer>(b: &B) -> usize {
///     b.len()
/// }
/// assert_eq!(capacity_of(&vec![0u8; 512]), 512);
/// assert_eq!(capacity_of(&uaio::AlignedBuf::new(4096)), 4096);
/// ```
pub unsafe trait IoBuffer: DerefMut<Target = [u8]> + Send + 'static {}

// SAFETY: a Vec's elements live in its heap allocation, which moves only
// when it is resized (a `&mut self` method other than deref_mut).
unsafe impl IoBuffer for Vec<u8> {}
// SAFETY: a boxed slice never reallocates; moving the box moves the pointer.
unsafe impl IoBuffer for Box<[u8]> {}
// SAFETY: an AlignedBuf never reallocates; moving it moves the pointer.
unsafe impl IoBuffer for AlignedBuf {}

/// A zeroed byte buffer on the heap whose address is a multiple of its
/// alignment (at least 4096 by default): what `O_DIRECT` reads and writes
/// need, and what `Vec<u8>` (aligned to 1) cannot promise.
///
/// For `O_DIRECT`, the offset and length of each request must also be
/// multiples of the file's direct-I/O alignment (often 512 or 4096 bytes);
/// [`AlignedBuf::for_direct_io`] asks the file system for it.
///
/// # Examples
///
/// ```
/// let mut buf = uaio::AlignedBuf::new(8192);
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// assert!(buf.iter().all(|&b| b == 0));
/// buf[..5].copy_from_slice(b"hello");
/// assert_eq!(&buf[..5], b"hello");
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
}

// SAFETY: an AlignedBuf owns its allocation exclusively, like Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads, like &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// The alignment of [`AlignedBuf::new`]: the page size of most Linux
    /// systems, and a multiple of the common logical block sizes (512 and
    /// 4096 bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::AlignedBuf::new(1).alignment(), uaio::AlignedBuf::DEFAULT_ALIGN);
    /// ```
    pub const DEFAULT_ALIGN: usize = 4096;

    /// A zeroed buffer of `len` bytes aligned to [`Self::DEFAULT_ALIGN`].
    ///
    /// # Panics
    ///
    /// If `len` rounded up to the alignment overflows `isize`; aborts if
    /// memory runs out, as `Vec` does.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = uaio::AlignedBuf::new(4096);
    /// assert_eq!((buf.len(), buf.alignment()), (4096, 4096));
    /// ```
    pub fn new(len: usize) -> AlignedBuf {
        match AlignedBuf::with_alignment(len, Self::DEFAULT_ALIGN) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                let layout = Layout::from_size_align(len.max(1), Self::DEFAULT_ALIGN).expect("a valid layout");
                alloc::handle_alloc_error(layout)
            }
            Err(_) => panic!("AlignedBuf too large"),
        }
    }

    /// A zeroed buffer of `len` bytes whose address is a multiple of
    /// `align`, which must be a power of two. Fails with
    /// [`io::ErrorKind::InvalidInput`] otherwise, or when the size overflows,
    /// and with [`io::ErrorKind::OutOfMemory`] when the memory cannot be had
    /// (where [`AlignedBuf::new`] aborts, as `Vec` does).
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = uaio::AlignedBuf::with_alignment(512, 65536)?;
    /// assert_eq!(buf.as_ptr() as usize % 65536, 0);
    /// assert!(uaio::AlignedBuf::with_alignment(512, 3000).is_err());
    /// let huge = uaio::AlignedBuf::with_alignment(1, 1 << 40).map(|_| ()).unwrap_err();
    /// assert_eq!(huge.kind(), std::io::ErrorKind::OutOfMemory);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_alignment(len: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(len.max(1), align)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("AlignedBuf: {e}")))?;
        // SAFETY: the layout's size is at least 1.
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(p) else {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("AlignedBuf: {len} bytes aligned to {align}"),
            ));
        };
        Ok(AlignedBuf { ptr, len, align })
    }

    /// A zeroed buffer of `len` bytes aligned for direct I/O on `file`: to
    /// the larger of [`Self::DEFAULT_ALIGN`] and the memory and offset
    /// alignments the file system reports (`statx(2)` with
    /// `STATX_DIOALIGN`, Linux 6.1 and later; where it says nothing, 4096
    /// is used).
    ///
    /// # Examples
    ///
    /// ```
    /// let file = tempfile::tempfile()?;
    /// let buf = uaio::AlignedBuf::for_direct_io(&file, 4096)?;
    /// assert_eq!(buf.as_ptr() as usize % 4096, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn for_direct_io(file: impl AsFd, len: usize) -> io::Result<AlignedBuf> {
        use rustix::fs::{statx, AtFlags, StatxFlags};
        let st = statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN)?;
        let (mem, off) = if st.stx_mask & StatxFlags::DIOALIGN.bits() != 0 {
            (st.stx_dio_mem_align as usize, st.stx_dio_offset_align as usize)
        } else {
            (0, 0)
        };
        let align = Self::DEFAULT_ALIGN.max(mem).max(off).next_power_of_two();
        AlignedBuf::with_alignment(len, align)
    }

    /// The alignment this buffer was made with.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(uaio::AlignedBuf::with_alignment(0, 8192)?.alignment(), 8192);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn alignment(&self) -> usize {
        self.align
    }

    fn layout(&self) -> Layout {
        // SAFETY: the same values made a valid layout in `with_alignment`.
        unsafe { Layout::from_size_align_unchecked(self.len.max(1), self.align) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` owns `len` initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_alignment` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout()) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        let mut c = AlignedBuf::with_alignment(self.len, self.align).expect("same layout as self");
        c.copy_from_slice(self);
        c
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("alignment", &self.align).finish()
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &AlignedBuf) -> bool {
        self[..] == other[..]
    }
}

impl Eq for AlignedBuf {}
