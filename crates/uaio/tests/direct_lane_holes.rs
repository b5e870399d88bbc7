//! Thread pool: direct writes the file system cannot take without waiting
//! (into a hole, or into a range `fallocate` reserved, which need a block
//! allocated or an extent split). The direct lane's `RWF_NOWAIT` attempt
//! answers `-EAGAIN` for them, and a worker gives each to the lane again
//! without the flag. Every write must land once, with its own bytes, and
//! report its size; a write cancelled while it waited for the worker must
//! report `-ECANCELED` and leave its block untouched. One test, so nothing
//! else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::lane_test_file;

const LONG: Option<Duration> = Some(Duration::from_secs(30));
const BLOCK: usize = 4096;
/// Writes per round: the first half into holes, the second into a
/// fallocated range.
const N: u64 = 64;

fn block(round: u64, i: u64) -> AlignedBuf {
    let mut b = AlignedBuf::with_alignment(BLOCK, BLOCK).unwrap();
    for (j, x) in b.iter_mut().enumerate() {
        *x = (round * 31 + i * 7 + j as u64 % 251) as u8;
    }
    b
}

/// Block `i` of the file as a buffered descriptor reads it.
fn read_block(plain: &File, i: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    plain.read_exact_at(&mut b, i * BLOCK as u64).unwrap();
    b
}

/// A fresh file of `2 * N` blocks: holes, then a fallocated range.
fn fresh(f: &File) {
    f.set_len(0).unwrap();
    f.set_len(2 * N * BLOCK as u64).unwrap();
    rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), N * BLOCK as u64, N * BLOCK as u64)
        .expect("fallocate");
}

/// The offsets of a round, in a scattered order: every other block of the
/// holes and of the fallocated range.
fn offsets() -> Vec<u64> {
    let mut v: Vec<u64> = (0..N).map(|k| (k * 2) % (2 * N)).collect();
    v.sort_by_key(|&b| (b * 37) % (2 * N));
    v
}

#[test]
fn direct_writes_into_holes_and_reserved_ranges_land_once() {
    let Some(f) = lane_test_file("holes") else { return };
    let plain = File::open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f))).unwrap();
    let ctx = Context::builder().entries(128).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();

    // Two rounds on a fresh file: every write needs its block allocated
    // (or its extent converted), and all land.
    for round in 0..2 {
        fresh(&f);
        let mut reqs: Vec<_> =
            offsets().into_iter().map(|b| Request::write(&f, block(round, b), b * BLOCK as u64).user_data(b)).collect();
        assert_eq!(ctx.submit_batch(&mut reqs, &mut Vec::new()).unwrap(), N as usize);
        for _ in 0..N {
            let c = ctx.wait_one(LONG).unwrap();
            assert_eq!(c.result().unwrap(), BLOCK, "write of block {}", c.user_data());
        }
        for b in 0..2 * N {
            let want = if b % 2 == 0 { block(round, b).to_vec() } else { vec![0u8; BLOCK] };
            assert!(read_block(&plain, b) == want, "round {round}: block {b} holds the wrong bytes");
        }
    }

    // Cancelled at once: each write reports once, and its block holds its
    // bytes exactly when it reports them written.
    let mut written = 0;
    let mut cancelled = 0;
    for round in 2..6 {
        fresh(&f);
        let mut reqs: Vec<_> =
            offsets().into_iter().map(|b| Request::write(&f, block(round, b), b * BLOCK as u64).user_data(b)).collect();
        let mut tickets = Vec::new();
        assert_eq!(ctx.submit_batch(&mut reqs, &mut tickets).unwrap(), N as usize);
        for t in tickets {
            let _ = ctx.cancel(t);
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..N {
            let c = ctx.wait_one(LONG).unwrap();
            let b = c.user_data();
            assert!(seen.insert(b), "block {b} reported twice");
            let got = read_block(&plain, b);
            match c.result() {
                Ok(n) => {
                    assert_eq!(n, BLOCK);
                    assert!(got == block(round, b).to_vec(), "block {b} reported written but holds other bytes");
                    written += 1;
                }
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                    assert!(got.iter().all(|&x| x == 0), "block {b} reported cancelled but was written");
                    cancelled += 1;
                }
                Err(e) => panic!("block {b}: {e}"),
            }
        }
        assert_eq!(ctx.wait(0, Some(Duration::ZERO), &mut Vec::with_capacity(1)).unwrap(), 0, "an extra event");
    }
    println!("cancelled at once: {written} written, {cancelled} cancelled");
}
