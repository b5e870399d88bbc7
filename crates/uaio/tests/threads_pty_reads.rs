//! Reads of a pty on the thread pool. A tty refuses `RWF_NOWAIT`, so the
//! pool waits for it to be readable and then reads it without the flag.
//! A read that gets input later completes with the line; one that never
//! gets any must not keep `io_destroy` waiting (a worker blocked in such a
//! read once did, for ever). Only that `io_destroy` returns is checked, with
//! a bound far above what it takes, so that a slow machine cannot fail it.
//! One test, so nothing else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::mpsc;
use std::time::Duration;

use uaio::abi::{io_event, iocb, IOCB_CMD_PREAD};
use uaio::raw;

/// A pty's two ends, as (master, slave); `None` where none can be had.
fn pty() -> Option<(i32, i32)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty(3) into two locals, with no name, termios or size.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    (r == 0).then_some((m, s))
}

/// A leaked read of `buf` on `fd`.
fn read_cb(fd: i32, buf: &'static mut [u8]) -> *mut iocb {
    Box::leak(Box::new(iocb {
        aio_lio_opcode: IOCB_CMD_PREAD,
        aio_fildes: fd as u32,
        aio_buf: buf.as_mut_ptr() as u64,
        aio_nbytes: buf.len() as u64,
        ..iocb::default()
    }))
}

#[test]
fn pty_reads_complete_with_their_line_and_never_hold_up_destroy() {
    std::env::set_var("UAIO_BACKEND", "threads");
    let Some((master, slave)) = pty() else {
        eprintln!("skipped: no pty can be opened here ({})", std::io::Error::last_os_error());
        return;
    };
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    assert_eq!(unsafe { raw::io_setup(8, &mut ctx) }, 0);

    // Input that comes after the read was submitted.
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    let bufp = buf.as_ptr();
    let mut ptrs = [read_cb(slave, buf)];
    // SAFETY: one valid iocb, leaked with its buffer.
    assert_eq!(unsafe { raw::io_submit(ctx, 1, ptrs.as_mut_ptr()) }, 1);
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: a write of a static line to the pty's master.
    assert_eq!(unsafe { libc::write(master, b"hello\n".as_ptr().cast(), 6) }, 6);
    let mut ev = [io_event::default(); 1];
    let mut ts = libc::timespec { tv_sec: 30, tv_nsec: 0 };
    // SAFETY: room for one event and a valid timeout.
    assert_eq!(unsafe { raw::io_getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut ts) }, 1);
    assert_eq!(ev[0].res, 6, "the line");
    // SAFETY: the buffer is leaked and its read is over.
    assert_eq!(unsafe { std::slice::from_raw_parts(bufp, 6) }, b"hello\n");

    // A read that never gets input, then io_destroy.
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    let mut ptrs = [read_cb(slave, buf)];
    // SAFETY: as above.
    assert_eq!(unsafe { raw::io_submit(ctx, 1, ptrs.as_mut_ptr()) }, 1);
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: destroying the context made above.
        let _ = tx.send(unsafe { raw::io_destroy(ctx) });
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => assert_eq!(r, 0),
        Err(_) => panic!("io_destroy never returned while a pty read waited for input"),
    }
}
