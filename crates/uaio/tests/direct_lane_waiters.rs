//! Thread-pool contexts whose requests are in the direct lane (the pool's
//! own kernel AIO context, shared by every thread-pool context of the
//! process) are waited for by threads that may take the lane's events
//! themselves, for their own context and for others, while the reaper
//! takes them too. Whoever takes an event, each request must complete in
//! its own context exactly once, with its bytes, whatever the depth, the
//! kind of wait (one event, several, a short time limit) and the requests
//! of the same context that go to workers meanwhile. One test, so nothing
//! else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::lane_test_file;

/// Blocks in the file.
const BLOCKS: u64 = 64;
/// Requests of a buffered descriptor (which the workers run) are marked
/// with this bit in their user data.
const BUFFERED: u64 = 1 << 32;

/// The bytes of block `i`.
fn block(i: u64) -> Vec<u8> {
    (0..4096u64).map(|j| (i * 13 + j % 241) as u8).collect()
}

/// One thread's rounds on a context of its own: batches of direct reads
/// (and, every third request, a buffered one), waited for in the way the
/// round picks, each completion checked and counted once.
fn rounds(t: usize, direct: &File, buffered: &File) {
    let ctx = Context::builder().entries(128).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
    // Only a hang stops this: the requests are reads of a local file.
    let give_up = Instant::now() + Duration::from_secs(120);
    for round in 0..150usize {
        let depth = [1usize, 4, 16, 33][(round + t) % 4];
        let mut reqs = Vec::with_capacity(depth);
        let mut waiting = HashSet::new();
        for k in 0..depth {
            let i = ((round * 7 + k * 5 + t) as u64) % BLOCKS;
            let buf = AlignedBuf::with_alignment(4096, 4096).unwrap();
            let data = if k % 3 == 2 { i | BUFFERED } else { i };
            let file = if data & BUFFERED != 0 { buffered } else { direct };
            reqs.push(Request::read(file, buf, i * 4096).user_data(data | (k as u64) << 40));
            waiting.insert(data | (k as u64) << 40);
        }
        let mut tickets = Vec::new();
        assert_eq!(ctx.submit_batch(&mut reqs, &mut tickets).unwrap(), depth);
        // Now and then the last request is cancelled: it then ends either
        // cancelled or read, once.
        let cancelled = round % 5 == 4;
        if cancelled {
            let _ = ctx.cancel(*tickets.last().unwrap());
        }
        let mut out = Vec::new();
        while !waiting.is_empty() {
            assert!(Instant::now() < give_up, "thread {t} round {round}: {} completions never came", waiting.len());
            match round % 3 {
                0 => out.push(ctx.wait_one(Some(Duration::from_secs(20))).unwrap()),
                1 => {
                    ctx.wait(1, Some(Duration::from_micros(50)), &mut out).unwrap();
                }
                _ => {
                    ctx.wait(waiting.len(), Some(Duration::from_secs(20)), &mut out).unwrap();
                }
            }
            for c in out.drain(..) {
                let tag = c.user_data();
                assert!(
                    waiting.remove(&tag),
                    "thread {t} round {round}: {tag:#x} completed twice or was never submitted"
                );
                let i = tag & (BUFFERED - 1);
                match c.result() {
                    Ok(n) => {
                        assert_eq!(n, 4096, "thread {t} round {round}: {tag:#x}");
                        assert!(
                            c.into_buf().unwrap()[..] == block(i)[..],
                            "thread {t} round {round}: {tag:#x} wrong bytes"
                        );
                    }
                    Err(e) => {
                        let last = tag >> 40 == depth as u64 - 1;
                        assert!(
                            cancelled && last && e.raw_os_error() == Some(libc::ECANCELED),
                            "thread {t} round {round}: {tag:#x}: {e}"
                        );
                    }
                }
            }
        }
        assert_eq!(ctx.pending(), 0, "thread {t} round {round}");
    }
}

#[test]
fn lane_completions_reach_their_context_once_whoever_takes_them() {
    let Some(direct) = lane_test_file("lane-waiters") else { return };
    let buffered =
        File::options().read(true).write(true).open(format!("/proc/self/fd/{}", direct.as_raw_fd())).unwrap();
    for i in 0..BLOCKS {
        buffered.write_all_at(&block(i), i * 4096).unwrap();
    }
    // Written back, so that direct reads take the lane (not the workers,
    // as over dirty pages).
    buffered.sync_all().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (d, b) = (&direct, &buffered);
            s.spawn(move || rounds(t, d, b));
        }
    });
}
