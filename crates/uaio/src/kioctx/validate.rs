//! The checks of an iocb that need no context, in the kernel's order and
//! with its error codes: I/O priority, `RWF_*` flags, and the import of the
//! data buffer or iovec array (`aio_prep_rw`, `import_iovec`,
//! `rw_verify_area`).

use rustix::io::Errno;
use uaio_abi::*;

use crate::sys::{self, FdInfo};
use crate::uaccess::{self, access_ok, read_user};

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

pub(super) fn check_ioprio(prio: i16) -> Result<(), Errno> {
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

pub(super) fn check_rw_flags(flags: u32, write: bool) -> Result<(), Errno> {
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
pub(super) fn check_rw_flags_file(flags: u32, f: &mut FdInfo) -> Result<(), Errno> {
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
pub(super) fn import_iovecs(addr: u64, n: u64) -> Result<(Box<[iovec]>, u64), Errno> {
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
pub(super) type Buffer = (Option<Box<[iovec]>>, u64, u32);

/// The data buffer of a read or write: one range (`EFAULT` outside user
/// space, length capped at `MAX_RW_COUNT`) or an imported iovec array; then
/// the offset rules of `rw_verify_area`. Returns the iovecs (vectored only),
/// the address and length for the backend, and the byte count.
pub(super) fn import_buffer(cb: &iocb, vectored: bool) -> Result<Buffer, Errno> {
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
