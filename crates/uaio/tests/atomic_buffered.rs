//! `RWF_ATOMIC` on a buffered descriptor of a file that can take atomic
//! writes (XFS, whose atomic write unit statx reports): the kernel accepts
//! the request in `io_submit` (the file was opened `FMODE_CAN_ATOMIC_WRITE`)
//! and XFS refuses the buffered write in its event (`-EOPNOTSUPP`); uaio
//! refused it at submission (a black-box attack). Compared with kernel AIO
//! on the same file; needs root, a loop device and `mkfs.xfs` (skipped,
//! saying why, without).
#![deny(clippy::undocumented_unsafe_blocks)]

mod util;
use util::{cb, LoopFs};

use uaio::abi::{io_event, iocb, IOCB_CMD_PWRITE};

/// `RWF_ATOMIC`.
const RWF_ATOMIC: u32 = 0x40;

/// io_submit's answer and the event's result, through `setup`, `submit`
/// and `getevents` (the kernel's system calls or uaio's).
fn one_write(
    fd: i32,
    setup: unsafe fn(u32, *mut u64) -> i64,
    submit: unsafe fn(u64, i64, *mut *mut iocb) -> i64,
    getevents: unsafe fn(u64, i64, i64, *mut io_event) -> i64,
) -> (i64, Option<i64>) {
    let buf = vec![0x5au8; 4096];
    let mut a = cb(IOCB_CMD_PWRITE, fd, buf.as_ptr() as u64, 4096, 0, 1);
    a.aio_rw_flags = RWF_ATOMIC;
    let mut ctx = 0u64;
    let mut ptr: *mut iocb = &mut a;
    // SAFETY: a valid handle place, one valid iocb whose buffer lives for
    // the call, and room for one event.
    unsafe {
        assert_eq!(setup(8, &mut ctx), 0, "io_setup");
        let r = submit(ctx, 1, &mut ptr);
        let mut ev = io_event::default();
        let res = (r == 1).then(|| {
            assert_eq!(getevents(ctx, 1, 1, &mut ev), 1);
            ev.res
        });
        (r, res)
    }
}

unsafe fn k_setup(n: u32, ctx: *mut u64) -> i64 {
    // SAFETY: the caller's pointer.
    unsafe { libc::syscall(libc::SYS_io_setup, n, ctx) }
}
unsafe fn k_submit(ctx: u64, n: i64, cbs: *mut *mut iocb) -> i64 {
    // SAFETY: the caller's pointers.
    let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, n, cbs) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        r
    }
}
unsafe fn k_getevents(ctx: u64, min: i64, nr: i64, ev: *mut io_event) -> i64 {
    // SAFETY: the caller's pointers.
    unsafe { libc::syscall(libc::SYS_io_getevents, ctx, min, nr, ev, std::ptr::null::<libc::timespec>()) }
}
unsafe fn u_setup(n: u32, ctx: *mut u64) -> i64 {
    // SAFETY: the caller's pointer.
    unsafe { uaio::raw::io_setup(n, ctx) }
}
unsafe fn u_submit(ctx: u64, n: i64, cbs: *mut *mut iocb) -> i64 {
    // SAFETY: the caller's pointers.
    unsafe { uaio::raw::io_submit(ctx, n, cbs) }
}
unsafe fn u_getevents(ctx: u64, min: i64, nr: i64, ev: *mut io_event) -> i64 {
    // SAFETY: the caller's pointers.
    unsafe { uaio::raw::io_getevents(ctx, min, nr, ev, std::ptr::null_mut()) }
}

#[test]
fn a_buffered_atomic_write_is_refused_where_the_kernel_refuses_it() {
    let Some(fs) = LoopFs::mount_or_skip("xfs", &["-q", "-f"], "") else { return };
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(fs.path("f")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let kernel = one_write(fd, k_setup, k_submit, k_getevents);
    let ours = one_write(fd, u_setup, u_submit, u_getevents);
    println!("kernel {kernel:?}, uaio {ours:?}");
    assert_eq!(ours, kernel);
}
