//! A program that closes every descriptor above its own (`close_range`,
//! as a daemon does) while a thread sleeps in `io_pgetevents` with a signal
//! mask on a thread-pool context: uaio's eventfd that the sleeper waits on
//! is gone with the rest, and `io_destroy` from another thread cannot tell
//! it through that eventfd. The sleeper must still come back (kernel AIO's
//! `io_destroy` wakes every waiter); it was seen asleep for ever. Only that
//! it returns is checked, with a bound far above the wait the fix allows
//! (a second), so that a slow machine cannot fail it. One test, so nothing
//! else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::mpsc;
use std::time::Duration;

use uaio::abi::{aio_sigset, io_event, iocb, IOCB_CMD_POLL};
use uaio::raw;

mod util;
use util::uaio_floor;

#[test]
fn a_waiter_whose_eventfd_the_program_closed_still_returns_after_destroy() {
    std::env::set_var("UAIO_BACKEND", "threads");
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    assert_eq!(unsafe { raw::io_setup(8, &mut ctx) }, 0);
    let mut p = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // A POLL on the empty pipe: pending until the context goes.
    let cb = Box::leak(Box::new(iocb {
        aio_lio_opcode: IOCB_CMD_POLL,
        aio_fildes: p[0] as u32,
        aio_buf: libc::POLLIN as u64,
        ..iocb::default()
    }));
    let mut ptrs = [cb as *mut iocb];
    // SAFETY: one valid iocb, leaked, so it outlives the request.
    assert_eq!(unsafe { raw::io_submit(ctx, 1, ptrs.as_mut_ptr()) }, 1);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mask: u64 = 0;
        let sig = aio_sigset { sigmask: &mask, sigsetsize: 8 };
        let mut ev = [io_event::default(); 1];
        // SAFETY: valid event array, no timeout, a valid sigset.
        let r = unsafe { raw::io_pgetevents(ctx, 1, 1, ev.as_mut_ptr(), std::ptr::null_mut(), &sig) };
        let _ = tx.send(r);
    });
    // Time for the waiter to fall asleep (it may not have: the test then
    // proves less, and still passes only if it returns).
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: close_range(2) of numbers at and above uaio's floor: only
    // uaio's own descriptors live there in this test's process.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, uaio_floor() as u32, u32::MAX, 0) };
    assert_eq!(closed, 0, "close_range");
    // SAFETY: destroying the context made above.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => eprintln!("the waiter returned {r} after io_destroy"),
        Err(_) => panic!("the waiter in io_pgetevents never returned after io_destroy"),
    }
}
