//! `IOCB_FLAG_RESFD` with an eventfd (without `O_NONBLOCK`) whose counter is
//! at its maximum: the kernel's signal saturates the counter and never
//! waits, so neither `io_submit` nor the completion may wait for the
//! program to read the eventfd. Requests completed inside `io_submit` (a
//! cached read) and in the backend (a pipe read completed later) are both
//! tried; a hang is a failure after 30 s, not a stuck test run.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_PREAD, IOCB_FLAG_RESFD};
use uaio::raw;

mod util;
use util::{cb, pipe};

/// The largest value an eventfd's counter reaches through `write`.
const FULL: u64 = u64::MAX - 1;

fn eventfd_at(value: u64) -> OwnedFd {
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
    if value > 0 {
        rustix::io::write(&efd, &value.to_ne_bytes()).expect("eventfd write");
    }
    efd
}

fn count(efd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    rustix::io::read(efd, &mut b).expect("eventfd read");
    u64::from_ne_bytes(b)
}

fn with_resfd(mut c: iocb, efd: &OwnedFd) -> iocb {
    c.aio_flags |= IOCB_FLAG_RESFD;
    c.aio_resfd = efd.as_raw_fd() as u32;
    c
}

fn submit(ctx: aio_context_t, c: &mut iocb) -> i64 {
    let mut p = [c as *mut iocb];
    // SAFETY: one valid iocb whose buffer outlives the request.
    unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) }
}

fn reap_one(ctx: aio_context_t) -> io_event {
    let mut ev = io_event::default();
    let mut ts = libc::timespec { tv_sec: 20, tv_nsec: 0 };
    // SAFETY: room for one event; a valid timeout.
    let n = unsafe { raw::io_getevents(ctx, 1, 1, &mut ev, (&mut ts as *mut libc::timespec).cast()) };
    assert_eq!(n, 1, "no event in 20 s");
    ev
}

/// What the scenario saw: the eventfds' counters after each request.
fn scenario() -> (u64, u64, u64) {
    let mut file = tempfile::tempfile().expect("temp file");
    std::io::Write::write_all(&mut file, &[5u8; 4096]).expect("write");
    let mut ctx: aio_context_t = 0;
    // SAFETY: io_setup writes the handle.
    assert_eq!(unsafe { raw::io_setup(8, &mut ctx) }, 0);
    let mut buf = [0u8; 4096];

    // A cached read, done inside io_submit, signalling a full eventfd.
    let full = eventfd_at(FULL);
    let mut c = with_resfd(cb(IOCB_CMD_PREAD, file.as_raw_fd(), buf.as_mut_ptr() as u64, 4096, 0, 1), &full);
    assert_eq!(submit(ctx, &mut c), 1);
    assert_eq!(reap_one(ctx).res, 4096);
    let after_inline = count(&full);

    // A pipe read completed later, by the backend, signalling a full eventfd.
    let full2 = eventfd_at(FULL);
    let (r, w) = pipe();
    let mut small = [0u8; 4];
    let mut c = with_resfd(cb(IOCB_CMD_PREAD, r.as_raw_fd(), small.as_mut_ptr() as u64, 4, 0, 2), &full2);
    assert_eq!(submit(ctx, &mut c), 1);
    rustix::io::write(&w, b"ping").expect("pipe write");
    assert_eq!(reap_one(ctx).res, 4);
    let after_backend = count(&full2);

    // The control: an eventfd with room counts the completion.
    let room = eventfd_at(0);
    let mut c = with_resfd(cb(IOCB_CMD_PREAD, file.as_raw_fd(), buf.as_mut_ptr() as u64, 4096, 0, 3), &room);
    assert_eq!(submit(ctx, &mut c), 1);
    assert_eq!(reap_one(ctx).res, 4096);
    let control = count(&room);
    // SAFETY: destroying our own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    (after_inline, after_backend, control)
}

#[test]
fn a_full_eventfd_holds_up_neither_io_submit_nor_the_completion() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(scenario());
    });
    let (after_inline, after_backend, control) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("io_submit or the completion waited for the full eventfd to be read (30 s)");
    // The kernel saturates the counter at 2^64-1, which no write can reach:
    // uaio leaves it where it was (README, residual differences).
    assert_eq!(after_inline, FULL);
    assert_eq!(after_backend, FULL);
    assert_eq!(control, 1, "an eventfd with room did not count the completion");
}
