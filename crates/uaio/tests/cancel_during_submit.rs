//! `io_cancel` of a request whose `io_submit` another thread is still
//! running. One thread submits POLLs on an empty pipe one at a time while
//! another cancels the one being submitted and the one before it, over and
//! over. On the kernel a cancel either finds nothing (`EINVAL`) or answers
//! `EINPROGRESS`, and the cancelled POLL's event (result 0) comes at once.
//! Checked: every POLL whose cancel answered `EINPROGRESS` completes with
//! result 0 without the pipe ever being written, and `io_destroy` returns
//! (on io_uring such a POLL stayed armed for ever: its cancel reached the
//! ring before the POLL did, and `io_destroy` then waited for it). Runs on
//! the backend the environment picks.
//!
//! A POLL whose file is ready when it is submitted is the other side: the
//! kernel completes it inside `io_submit` with the ready events, and it is
//! never cancellable (`EINVAL`). uaio answered `EINPROGRESS` to a cancel
//! made while the submission ran, and the POLL completed with 0.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_POLL};
use uaio::raw;

mod util;
use util::{cb, pipe};

/// POLLs per round.
const K: usize = 200;

/// The iocbs of a round, shared by the two threads through raw pointers:
/// the submitter fills iocb `i` before it publishes `i`, and the canceller
/// touches only published ones (uaio and the kernel read and write them as
/// user memory, as a C program's threads share them).
struct Cbs(Box<[iocb]>);

impl Cbs {
    fn at(&self, i: usize) -> *mut iocb {
        self.0.as_ptr().wrapping_add(i).cast_mut()
    }
}

// SAFETY: see the type's comment: the iocbs are only reached through raw
// pointers handed to io_submit and io_cancel.
unsafe impl Sync for Cbs {}

#[test]
fn a_poll_cancelled_while_its_submission_runs_completes_at_once() {
    let mut cancelled_total = 0;
    for round in 0..10 {
        let (r, _w) = pipe();
        let mut ctx: aio_context_t = 0;
        // SAFETY: a writable handle holding 0.
        assert_eq!(unsafe { raw::io_setup(K as u32 + 8, &mut ctx) }, 0);
        let cbs = Cbs(vec![iocb::default(); K].into_boxed_slice());
        let cur = AtomicI64::new(-1);
        let stop = AtomicBool::new(false);
        let cancelled: Vec<AtomicBool> = (0..K).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut ev = io_event::default();
                while !stop.load(Ordering::Acquire) {
                    let i = cur.load(Ordering::Acquire);
                    for j in [i, i - 1].into_iter().filter(|&j| j >= 0) {
                        // SAFETY: iocb j was filled before j was published;
                        // room for one event.
                        let r = unsafe { raw::io_cancel(ctx, cbs.at(j as usize), &mut ev) };
                        if r == -(libc::EINPROGRESS as i64) {
                            assert!(!cancelled[j as usize].swap(true, Ordering::SeqCst), "POLL {j} cancelled twice");
                        } else {
                            assert_eq!(r, -(libc::EINVAL as i64), "io_cancel of POLL {j}");
                        }
                    }
                }
            });
            for i in 0..K {
                // SAFETY: iocb i is not published yet: nobody else touches it.
                unsafe { *cbs.at(i) = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i as u64) };
                cur.store(i as i64, Ordering::Release);
                let mut p = [cbs.at(i)];
                // SAFETY: the iocb outlives its request (reaped below).
                let n = unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) };
                assert_eq!(n, 1, "io_submit of POLL {i}");
            }
            stop.store(true, Ordering::Release);
        });
        // Every cancelled POLL's event, without writing to the pipe. The
        // kernel's come at once; five seconds bound a wait that would
        // otherwise never end.
        let want = cancelled.iter().filter(|c| c.load(Ordering::SeqCst)).count();
        cancelled_total += want;
        let mut got = [false; K];
        let mut n_got = 0;
        let mut evs = vec![io_event::default(); K];
        while n_got < want {
            let mut ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
            // SAFETY: room for K events; a valid timeout.
            let n = unsafe {
                raw::io_getevents(ctx, 1, K as i64, evs.as_mut_ptr(), (&mut ts as *mut libc::timespec).cast())
            };
            assert!(n >= 0, "io_getevents: {n}");
            if n == 0 {
                break;
            }
            for e in &evs[..n as usize] {
                let i = e.data as usize;
                assert!(
                    cancelled[i].load(Ordering::SeqCst),
                    "round {round}: POLL {i} completed ({}) uncancelled",
                    e.res
                );
                assert_eq!(e.res, 0, "round {round}: cancelled POLL {i}");
                assert!(!got[i], "round {round}: two events for POLL {i}");
                got[i] = true;
                n_got += 1;
            }
        }
        let missing: Vec<usize> = (0..K).filter(|&i| cancelled[i].load(Ordering::SeqCst) && !got[i]).collect();
        assert!(missing.is_empty(), "round {round}: cancelled POLLs with no event after 5 s: {missing:?}");
        // SAFETY: destroying the test's own context (the POLLs left are
        // cancelled by it, as the kernel's are).
        assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    }
    println!("{cancelled_total} POLLs cancelled during their io_submit or just after, all completed");
}

#[test]
fn a_poll_ready_at_submission_is_never_cancelled() {
    const N: usize = 2000;
    let (r, w) = pipe();
    // SAFETY: a one-byte write from a local to the test's own pipe.
    assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
    let mut ctx: aio_context_t = 0;
    // SAFETY: a writable handle holding 0.
    assert_eq!(unsafe { raw::io_setup(8, &mut ctx) }, 0);
    let cbs = Cbs(vec![iocb::default(); N].into_boxed_slice());
    let cur = AtomicI64::new(-1);
    let stop = AtomicBool::new(false);
    let mut cancels = 0u64;
    std::thread::scope(|s| {
        let canceller = s.spawn(|| {
            let mut ev = io_event::default();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let i = cur.load(Ordering::Acquire);
                if i < 0 {
                    continue;
                }
                // SAFETY: iocb i was filled before i was published; room
                // for one event.
                let r = unsafe { raw::io_cancel(ctx, cbs.at(i as usize), &mut ev) };
                assert_eq!(r, -(libc::EINVAL as i64), "io_cancel of ready POLL {i}");
                n += 1;
            }
            n
        });
        for i in 0..N {
            // SAFETY: iocb i is not published yet: nobody else touches it.
            unsafe { *cbs.at(i) = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i as u64) };
            cur.store(i as i64, Ordering::Release);
            let mut p = [cbs.at(i)];
            // SAFETY: the iocb outlives its request (reaped right below).
            assert_eq!(unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) }, 1, "io_submit of POLL {i}");
            let mut ev = io_event::default();
            // SAFETY: room for one event; no timeout (the file is ready).
            let n = unsafe { raw::io_getevents(ctx, 1, 1, &mut ev, std::ptr::null_mut()) };
            assert_eq!(n, 1);
            assert_eq!((ev.data, ev.res), (i as u64, libc::POLLIN as i64), "ready POLL {i}");
        }
        stop.store(true, Ordering::Release);
        cancels = canceller.join().unwrap();
    });
    // SAFETY: destroying the test's own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    println!("{N} ready POLLs, {cancels} cancels tried, all EINVAL");
}
