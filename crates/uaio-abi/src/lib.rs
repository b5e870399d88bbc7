//! The Linux asynchronous I/O ABI, exactly as the kernel lays it out.
//!
//! This crate holds only data definitions: the `struct iocb` an application
//! fills in, the `struct io_event` it reaps, the header of the completion ring
//! whose address is the context handle, and the opcode and flag constants of
//! `<linux/aio_abi.h>`, `<linux/fs.h>` (`RWF_*`) and `<linux/ioprio.h>`.
//! Every layout is checked at compile time against the kernel's sizes and
//! offsets (x86-64 and other little-endian 64-bit targets).
#![no_std]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::mem::{offset_of, size_of};

/// The context handle: the user-space address of the completion ring.
#[allow(non_camel_case_types)]
pub type aio_context_t = u64;

/// Positioned read into `aio_buf`.
pub const IOCB_CMD_PREAD: u16 = 0;
/// Positioned write from `aio_buf`.
pub const IOCB_CMD_PWRITE: u16 = 1;
/// `fsync(2)` of the file.
pub const IOCB_CMD_FSYNC: u16 = 2;
/// `fdatasync(2)` of the file.
pub const IOCB_CMD_FDSYNC: u16 = 3;
/// Reserved (historical "PREADX"); rejected with `EINVAL`.
pub const IOCB_CMD_PREADX: u16 = 4;
/// One-shot poll; the event mask is in `aio_buf`, the result is the ready mask.
pub const IOCB_CMD_POLL: u16 = 5;
/// No operation. The kernel rejects it; uaio completes it with `res = 0`.
pub const IOCB_CMD_NOOP: u16 = 6;
/// Positioned scatter read; `aio_buf` is an iovec array, `aio_nbytes` its length.
pub const IOCB_CMD_PREADV: u16 = 7;
/// Positioned gather write; `aio_buf` is an iovec array, `aio_nbytes` its length.
pub const IOCB_CMD_PWRITEV: u16 = 8;

/// `aio_flags`: signal the eventfd in `aio_resfd` when the request completes.
pub const IOCB_FLAG_RESFD: u32 = 1 << 0;
/// `aio_flags`: `aio_reqprio` is an I/O priority value (`IOPRIO_PRIO_VALUE`).
pub const IOCB_FLAG_IOPRIO: u32 = 1 << 1;

/// The value the kernel writes into `aio_key` of every submitted iocb.
pub const KIOCB_KEY: u32 = 0;

/// `RWF_HIPRI`: high-priority request (polled completion where supported).
pub const RWF_HIPRI: u32 = 0x0000_0001;
/// `RWF_DSYNC`: per-write `O_DSYNC`.
pub const RWF_DSYNC: u32 = 0x0000_0002;
/// `RWF_SYNC`: per-write `O_SYNC`.
pub const RWF_SYNC: u32 = 0x0000_0004;
/// `RWF_NOWAIT`: fail with `EAGAIN` instead of blocking.
pub const RWF_NOWAIT: u32 = 0x0000_0008;
/// `RWF_APPEND`: per-write `O_APPEND`.
pub const RWF_APPEND: u32 = 0x0000_0010;
/// `RWF_NOAPPEND`: ignore `O_APPEND` for this write.
pub const RWF_NOAPPEND: u32 = 0x0000_0020;
/// `RWF_ATOMIC`: untorn write.
pub const RWF_ATOMIC: u32 = 0x0000_0040;
/// `RWF_DONTCACHE`: drop the pages from the page cache once the I/O is done.
pub const RWF_DONTCACHE: u32 = 0x0000_0080;
/// `RWF_NOSIGNAL`: no `SIGPIPE` on a broken pipe.
pub const RWF_NOSIGNAL: u32 = 0x0000_0100;

/// Shift of the class field in an I/O priority value.
pub const IOPRIO_CLASS_SHIFT: u32 = 13;
/// No class set.
pub const IOPRIO_CLASS_NONE: u32 = 0;
/// Real-time class (needs `CAP_SYS_ADMIN` or `CAP_SYS_NICE`).
pub const IOPRIO_CLASS_RT: u32 = 1;
/// Best-effort class.
pub const IOPRIO_CLASS_BE: u32 = 2;
/// Idle class.
pub const IOPRIO_CLASS_IDLE: u32 = 3;

/// Compose an I/O priority value from a class and a level.
pub const fn ioprio_value(class: u32, level: u32) -> u16 {
    ((class << IOPRIO_CLASS_SHIFT) | (level & 0x7)) as u16
}

/// Largest number of iovecs one vectored request may carry (`UIO_MAXIOV`).
pub const UIO_MAXIOV: u64 = 1024;

/// Value of [`aio_ring::magic`].
pub const AIO_RING_MAGIC: u32 = 0xa10a_10a1;
/// Value of [`aio_ring::compat_features`].
pub const AIO_RING_COMPAT_FEATURES: u32 = 1;
/// Value of [`aio_ring::incompat_features`].
pub const AIO_RING_INCOMPAT_FEATURES: u32 = 0;

/// `struct iocb`: one I/O request as the application describes it (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct iocb {
    /// Copied into [`io_event::data`] on completion.
    pub aio_data: u64,
    /// Written 0 by `io_submit`; `io_cancel` insists on 0.
    pub aio_key: u32,
    /// `RWF_*` flags for reads and writes.
    pub aio_rw_flags: u32,
    /// One of the `IOCB_CMD_*` opcodes.
    pub aio_lio_opcode: u16,
    /// I/O priority, used when [`IOCB_FLAG_IOPRIO`] is set.
    pub aio_reqprio: i16,
    /// The file descriptor the request operates on.
    pub aio_fildes: u32,
    /// Data buffer, iovec array (vectored opcodes) or poll mask (POLL).
    pub aio_buf: u64,
    /// Buffer length in bytes, or number of iovecs (vectored opcodes).
    pub aio_nbytes: u64,
    /// File offset.
    pub aio_offset: i64,
    /// Must be 0.
    pub aio_reserved2: u64,
    /// `IOCB_FLAG_*` bits.
    pub aio_flags: u32,
    /// eventfd signalled on completion when [`IOCB_FLAG_RESFD`] is set.
    pub aio_resfd: u32,
}

/// `struct io_event`: one completion (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct io_event {
    /// The request's `aio_data`.
    pub data: u64,
    /// The user-space address of the request's iocb.
    pub obj: u64,
    /// Result: bytes transferred, the ready mask (POLL), or `-errno`.
    pub res: i64,
    /// Secondary result, always 0.
    pub res2: i64,
}

/// `struct aio_ring`: the header of the completion ring (32 bytes), followed
/// by `nr` [`io_event`]s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct aio_ring {
    /// Index of the context in the process's context table.
    pub id: u32,
    /// Number of event slots in the ring.
    pub nr: u32,
    /// Next event to read; written by the reader.
    pub head: u32,
    /// Next event to write; written by the producer.
    pub tail: u32,
    /// [`AIO_RING_MAGIC`].
    pub magic: u32,
    /// [`AIO_RING_COMPAT_FEATURES`].
    pub compat_features: u32,
    /// [`AIO_RING_INCOMPAT_FEATURES`].
    pub incompat_features: u32,
    /// Size of this header, 32.
    pub header_length: u32,
}

/// `struct __aio_sigset`: the signal argument of `io_pgetevents`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct aio_sigset {
    /// Signal mask to install while waiting, or null.
    pub sigmask: *const u64,
    /// Size of the mask in bytes; must be 8.
    pub sigsetsize: usize,
}

/// `struct iovec`, as read from user memory for vectored requests.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct iovec {
    /// Start of the buffer.
    pub iov_base: u64,
    /// Length of the buffer.
    pub iov_len: u64,
}

const _: () = {
    assert!(size_of::<iocb>() == 64);
    assert!(offset_of!(iocb, aio_data) == 0);
    assert!(offset_of!(iocb, aio_key) == 8);
    assert!(offset_of!(iocb, aio_rw_flags) == 12);
    assert!(offset_of!(iocb, aio_lio_opcode) == 16);
    assert!(offset_of!(iocb, aio_reqprio) == 18);
    assert!(offset_of!(iocb, aio_fildes) == 20);
    assert!(offset_of!(iocb, aio_buf) == 24);
    assert!(offset_of!(iocb, aio_nbytes) == 32);
    assert!(offset_of!(iocb, aio_offset) == 40);
    assert!(offset_of!(iocb, aio_reserved2) == 48);
    assert!(offset_of!(iocb, aio_flags) == 56);
    assert!(offset_of!(iocb, aio_resfd) == 60);

    assert!(size_of::<io_event>() == 32);
    assert!(offset_of!(io_event, data) == 0);
    assert!(offset_of!(io_event, obj) == 8);
    assert!(offset_of!(io_event, res) == 16);
    assert!(offset_of!(io_event, res2) == 24);

    assert!(size_of::<aio_ring>() == 32);
    assert!(offset_of!(aio_ring, id) == 0);
    assert!(offset_of!(aio_ring, nr) == 4);
    assert!(offset_of!(aio_ring, head) == 8);
    assert!(offset_of!(aio_ring, tail) == 12);
    assert!(offset_of!(aio_ring, magic) == 16);
    assert!(offset_of!(aio_ring, compat_features) == 20);
    assert!(offset_of!(aio_ring, incompat_features) == 24);
    assert!(offset_of!(aio_ring, header_length) == 28);

    assert!(size_of::<aio_sigset>() == 16);
    assert!(size_of::<iovec>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioprio_value_composes_class_and_level() {
        assert_eq!(ioprio_value(IOPRIO_CLASS_BE, 4), (2 << 13) | 4);
        assert_eq!(ioprio_value(IOPRIO_CLASS_RT, 9), (1 << 13) | 1);
    }
}
