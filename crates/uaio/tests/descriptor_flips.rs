//! A thread of the program puts two files on one descriptor number in
//! turn and closes it, over and over, while another thread submits single
//! requests on that number: `O_DIRECT` writes, `fsync`, `fdatasync` and
//! `POLLIN` polls in turn. The kernel finds the file once: each
//! `io_submit` fails with `EBADF` or its request runs on the file it found.
//! Checked: `io_submit` answers 1 or `EBADF` and nothing else (it answered
//! `EINVAL` when the file went between uaio's looks), each event is the
//! request's result (the whole write, 0 for a sync, `POLLIN` for a poll of
//! a regular file) or `-EBADF` (a request accepted just before its number
//! was closed, see the README's "Differences"), and once all is over no
//! descriptor of uaio's names either file (the thread pool left duplicates
//! open for ever when the number named another file at each of its looks).
//! Runs on the backend the environment picks.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uaio::abi::{aio_context_t, io_event, IOCB_CMD_FDSYNC, IOCB_CMD_FSYNC, IOCB_CMD_POLL, IOCB_CMD_PWRITE};
use uaio::raw;

mod util;
use util::{cb, direct_file, numbered_block, StopOnDrop};

/// The number the program flips: below uaio's floor (half the soft
/// `RLIMIT_NOFILE`, at least 512 here) and above the numbers the process
/// holds, so that uaio's own descriptors, made at the lowest free number
/// before they move up, never land on it.
const N: i32 = 200;

fn naming(ident: (u64, u64)) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(m) = std::fs::metadata(e.path()) {
            if (m.dev(), m.ino()) == ident {
                v.push(n);
            }
        }
    }
    v
}

#[test]
fn a_number_flipping_between_files_gets_ebadf_or_its_request_and_keeps_no_duplicate() {
    if util::uaio_floor() <= N {
        println!("skipped: RLIMIT_NOFILE too low for number {N}");
        return;
    }
    let dirs = [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir(), std::env::current_dir().unwrap()];
    let (x, y) = match (direct_file(&dirs, "flip-x"), direct_file(&dirs, "flip-y")) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            println!("skipped: {e}");
            return;
        }
    };
    let id = |f: &std::fs::File| {
        let m = f.metadata().unwrap();
        (m.dev(), m.ino())
    };
    let (ix, iy) = (id(&x), id(&y));
    let (fx, fy) = (x.as_raw_fd(), y.as_raw_fd());
    let mut ctx: aio_context_t = 0;
    // SAFETY: a writable handle holding 0.
    assert_eq!(unsafe { raw::io_setup(8, &mut ctx) }, 0);

    let stop = AtomicBool::new(false);
    let block = numbered_block(1);
    let mut done = 0;
    let mut refused = 0;
    let mut failed_events = 0;
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: dup2 and close of the test's own number N.
                unsafe {
                    libc::dup2(fx, N);
                    libc::dup2(fy, N);
                    libc::close(N);
                }
            }
        });
        let start = Instant::now();
        for i in 0..4000u64 {
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
            // Writes, syncs and polls in turn; what each completes with.
            let (mut c, want) = match i % 4 {
                0 => (cb(IOCB_CMD_PWRITE, N, block.as_ptr() as u64, 4096, (i / 4 % 4 * 4096) as i64, i), 4096),
                1 => (cb(IOCB_CMD_FSYNC, N, 0, 0, 0, i), 0),
                2 => (cb(IOCB_CMD_FDSYNC, N, 0, 0, 0, i), 0),
                _ => (cb(IOCB_CMD_POLL, N, libc::POLLIN as u64, 0, 0, i), libc::POLLIN as i64),
            };
            let mut p = [&mut c as *mut _];
            // SAFETY: the iocb and its buffer outlive the request (reaped below).
            let r = unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) };
            match r {
                1 => {
                    let mut ev = [io_event::default(); 1];
                    // SAFETY: room for one event; no timeout.
                    let n = unsafe { raw::io_getevents(ctx, 1, 1, ev.as_mut_ptr(), std::ptr::null_mut()) };
                    assert_eq!(n, 1, "io_getevents");
                    match ev[0].res {
                        r if r == want => done += 1,
                        r if r == -(libc::EBADF as i64) => failed_events += 1,
                        r => panic!("request {i}: event {r}, where the kernel answers {want} or io_submit refuses"),
                    }
                }
                r if r == -(libc::EBADF as i64) => refused += 1,
                r => panic!("request {i}: io_submit = {r}, where the kernel answers 1 or -EBADF"),
            }
        }
    });
    println!("done {done}, io_submit EBADF {refused}, events EBADF {failed_events}");
    // SAFETY: N may be open (the flipper's last dup2); closing it is ours.
    unsafe { libc::close(N) };
    // SAFETY: destroying the test's own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    let start = Instant::now();
    loop {
        let mut left: Vec<i32> = naming(ix).into_iter().chain(naming(iy)).filter(|&n| n != fx && n != fy).collect();
        left.sort();
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "descriptors of uaio's still name the files: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
