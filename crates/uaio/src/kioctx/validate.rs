//! The checks of an iocb that need no context, in the kernel's order and
//! with its error codes: I/O priority, `RWF_*` flags, and the import of the
//! data buffer or iovec array (`aio_prep_rw`, `import_iovec`,
//! `rw_verify_area`).

use rustix::io::Errno;
use uaio_abi::*;

use crate::sys::{self, FdInfo};
use crate::uaccess::{access_ok, UserPtr};

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
    if flags & RWF_NOWAIT != 0 && f.lacks_nowait() {
        return Err(Errno::OPNOTSUPP);
    }
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
        let mut one = UserPtr::<iovec>::new(addr).read().map_err(|_| Errno::FAULT)?;
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
    let array = UserPtr::<iovec>::new(addr);
    let whole = array.read_slice(&mut v);
    if whole.is_err() {
        // Find which comes first, a negative length or the fault.
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = array.add(i).read().map_err(|_| Errno::FAULT)?;
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

#[cfg(test)]
mod tests {
    //! The checks alone, without a context or kernel AIO: each rule with
    //! the value on either side of its boundary.
    use super::*;

    fn iov(base: *const u8, len: u64) -> iovec {
        iovec { iov_base: base as u64, iov_len: len }
    }

    fn rw_cb(buf: u64, nbytes: u64, off: i64) -> iocb {
        iocb { aio_buf: buf, aio_nbytes: nbytes, aio_offset: off, ..Default::default() }
    }

    #[test]
    fn rw_flags_known_unknown_and_contradictory() {
        assert_eq!(check_rw_flags(0, false), Ok(()));
        assert_eq!(check_rw_flags(RWF_SUPPORTED & !RWF_ATOMIC & !RWF_NOAPPEND, true), Ok(()));
        assert_eq!(check_rw_flags(1 << 30, false), Err(Errno::OPNOTSUPP));
        assert_eq!(check_rw_flags(RWF_APPEND | RWF_NOAPPEND, true), Err(Errno::INVAL));
        assert_eq!(check_rw_flags(RWF_ATOMIC, false), Err(Errno::OPNOTSUPP));
        assert_eq!(check_rw_flags(RWF_ATOMIC, true), Ok(()));
        // An unknown bit is refused before the append pair is looked at.
        assert_eq!(check_rw_flags(1 << 30 | RWF_APPEND | RWF_NOAPPEND, true), Err(Errno::OPNOTSUPP));
    }

    #[test]
    fn ioprio_classes_and_levels() {
        let prio = |class: u32, level: u32| ((class << IOPRIO_CLASS_SHIFT) | level) as i16;
        assert_eq!(check_ioprio(0), Ok(()));
        assert_eq!(check_ioprio(prio(IOPRIO_CLASS_NONE, 1)), Err(Errno::INVAL));
        assert_eq!(check_ioprio(prio(IOPRIO_CLASS_BE, 7)), Ok(()));
        assert_eq!(check_ioprio(prio(IOPRIO_CLASS_IDLE, 0)), Ok(()));
        assert_eq!(check_ioprio(prio(4, 0)), Err(Errno::INVAL));
        assert_eq!(check_ioprio(prio(7, 0)), Err(Errno::INVAL));
    }

    #[test]
    fn iovec_count_limits() {
        let data = [0u8; 8];
        let v = vec![iov(data.as_ptr(), 1); UIO_MAXIOV as usize + 1];
        let addr = v.as_ptr() as u64;
        assert_eq!(import_iovecs(addr, UIO_MAXIOV + 1).err(), Some(Errno::INVAL));
        let (got, total) = import_iovecs(addr, UIO_MAXIOV).expect("UIO_MAXIOV iovecs");
        assert_eq!((got.len() as u64, total), (UIO_MAXIOV, UIO_MAXIOV));
        // The count is an unsigned int: the high half is ignored.
        let (got, total) = import_iovecs(addr, 1 << 32 | 3).expect("3 iovecs");
        assert_eq!((got.len(), total), (3, 3));
        let (got, total) = import_iovecs(addr, 0).expect("no iovec");
        assert_eq!((got.len(), total), (0, 0));
    }

    #[test]
    fn iovec_lengths_negative_capped_and_out_of_range() {
        let data = [0u8; 8];
        let p = data.as_ptr();
        // A negative length is refused, in one segment and in several.
        let neg = [iov(p, 1u64 << 63)];
        assert_eq!(import_iovecs(neg.as_ptr() as u64, 1).err(), Some(Errno::INVAL));
        let neg2 = [iov(p, 4), iov(p, 1u64 << 63)];
        assert_eq!(import_iovecs(neg2.as_ptr() as u64, 2).err(), Some(Errno::INVAL));
        // Lengths are capped so that the total stays at MAX_RW_COUNT.
        let big = [iov(p, MAX_RW_COUNT - 10), iov(p, 100), iov(p, 5)];
        let (got, total) = import_iovecs(big.as_ptr() as u64, 3).expect("capped");
        assert_eq!(total, MAX_RW_COUNT);
        assert_eq!(got.iter().map(|e| e.iov_len).collect::<Vec<_>>(), [MAX_RW_COUNT - 10, 10, 0]);
        // One segment is capped before its range is checked.
        let one = [iov(p, (1u64 << 62) + 1)];
        let (got, total) = import_iovecs(one.as_ptr() as u64, 1).expect("one capped");
        assert_eq!((got[0].iov_len, total), (MAX_RW_COUNT, MAX_RW_COUNT));
        // A segment that ends past user space is a fault.
        let high = [iov(p, 4), iovec { iov_base: u64::MAX - 2, iov_len: 8 }];
        assert_eq!(import_iovecs(high.as_ptr() as u64, 2).err(), Some(Errno::FAULT));
        // So is an array that is not readable.
        assert_eq!(import_iovecs(8, 2).err(), Some(Errno::FAULT));
    }

    #[test]
    fn buffer_range_and_offset_rules() {
        let data = [0u8; 16];
        let addr = data.as_ptr() as u64;
        let (vecs, a, len) = import_buffer(&rw_cb(addr, 16, 0), false).expect("plain buffer");
        assert_eq!((vecs.is_none(), a, len), (true, addr, 16));
        // Longer than MAX_RW_COUNT: capped, not refused.
        let (_, _, len) = import_buffer(&rw_cb(addr, MAX_RW_COUNT + 1, 0), false).expect("capped");
        assert_eq!(len as u64, MAX_RW_COUNT);
        assert_eq!(import_buffer(&rw_cb(u64::MAX - 4, 16, 0), false).err(), Some(Errno::FAULT));
        assert_eq!(import_buffer(&rw_cb(addr, 16, -1), false).err(), Some(Errno::INVAL));
        assert_eq!(import_buffer(&rw_cb(addr, 16, i64::MAX - 8), false).err(), Some(Errno::INVAL));
        assert!(import_buffer(&rw_cb(addr, 16, i64::MAX - 16), false).is_ok());
        // Vectored: the iovec count and addresses, then the offset.
        let v = [iov(data.as_ptr(), 8), iov(data.as_ptr(), 8)];
        let (vecs, a, n) = import_buffer(&rw_cb(v.as_ptr() as u64, 2, 4), true).expect("vectored");
        assert_eq!((vecs.as_deref().map(<[iovec]>::len), n), (Some(2), 2));
        assert_eq!(a, vecs.as_deref().map_or(0, |v| v.as_ptr() as u64));
        assert_eq!(import_buffer(&rw_cb(v.as_ptr() as u64, 2, i64::MAX - 8), true).err(), Some(Errno::INVAL));
    }
}
