//! Writes to `/dev/kmsg`, on kernel AIO and on both backends: each
//! completes with its byte count. The device takes writes only blocking
//! and its poll never says it is writable, so a backend that waited for
//! writability waited until some other record was logged (on an idle
//! machine, for ever). Skipped, saying why, where `/dev/kmsg` cannot be
//! opened for writing.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::time::Duration;

use uaio::abi::{aio_context_t, io_event, IOCB_CMD_PWRITE};
use uaio::{Backend, Context, Request};

mod util;
use util::cb;

/// A hang detector, not a time assertion: the write takes microseconds.
const HANG: Duration = Duration::from_secs(10);

/// One write of `msg` through kernel AIO: its event's result.
fn kernel_write(fd: i32, msg: &[u8]) -> i64 {
    let mut ctx: aio_context_t = 0;
    let mut c = cb(IOCB_CMD_PWRITE, fd, msg.as_ptr() as u64, msg.len() as u64, 0, 1);
    let mut ptrs = [&mut c as *mut _];
    let mut ev = io_event::default();
    let ts = libc::timespec { tv_sec: HANG.as_secs() as i64, tv_nsec: 0 };
    // SAFETY: raw AIO system calls on our own context, iocb, buffer and
    // event, all alive until the event is reaped or the context destroyed.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_io_setup, 4, &mut ctx), 0, "io_setup");
        assert_eq!(libc::syscall(libc::SYS_io_submit, ctx, 1, ptrs.as_mut_ptr()), 1, "io_submit");
        let n = libc::syscall(libc::SYS_io_getevents, ctx, 1, 1, &mut ev, &ts);
        libc::syscall(libc::SYS_io_destroy, ctx);
        assert_eq!(n, 1, "kernel AIO: no event within {HANG:?}");
    }
    ev.res
}

#[test]
fn kernel_log_writes_complete_with_their_length() {
    let f = match std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(f) => f,
        Err(e) => {
            println!("skipped: /dev/kmsg cannot be opened for writing here ({e})");
            return;
        }
    };
    let msg = b"<7>uaio test: kernel log write\n";
    assert_eq!(kernel_write(f.as_raw_fd(), msg), msg.len() as i64, "kernel AIO");
    for backend in [Backend::IoUring, Backend::Threads] {
        let Ok(ctx) = Context::<Vec<u8>>::builder().entries(4).backend(backend).build() else {
            println!("skipped on {backend:?}: no such context here");
            continue;
        };
        for i in 0..10 {
            let line = format!("<7>uaio test: kernel log write {i} on {backend:?}\n").into_bytes();
            let len = line.len();
            ctx.submit(Request::write(&f, line, 0)).map_err(|e| e.error().raw_os_error()).unwrap();
            let done = ctx.wait_one(Some(HANG)).unwrap_or_else(|e| panic!("{backend:?}, write {i}: no event ({e})"));
            assert_eq!(done.result().unwrap(), len, "{backend:?}, write {i}");
        }
    }
}
