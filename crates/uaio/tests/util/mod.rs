//! Helpers shared by the engine's integration tests (each test file is its
//! own crate and uses what it needs).
#![allow(dead_code)]

use std::os::fd::{FromRawFd, OwnedFd};

use uaio::abi::iocb;

/// An iocb with the fields every request sets.
pub fn cb(op: u16, fd: i32, buf: u64, len: u64, off: i64, data: u64) -> iocb {
    iocb {
        aio_data: data,
        aio_lio_opcode: op,
        aio_fildes: fd as u32,
        aio_buf: buf,
        aio_nbytes: len,
        aio_offset: off,
        ..Default::default()
    }
}

/// A pipe, as (read end, write end), close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
}
