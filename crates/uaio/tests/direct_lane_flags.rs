//! A program that turns `O_DIRECT` on and off on a descriptor
//! (`fcntl(F_SETFL)`) while it writes through it on the thread pool: each
//! write is direct or buffered depending on the moment, as on the kernel,
//! and none fails (the direct lane's `RWF_NOWAIT` is uaio's, so a file
//! that refuses it for a buffered write must not make the request fail).
//! One test, so nothing else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::{lane_test_file, numbered_block, StopOnDrop};

const BLOCKS: u64 = 2000;
const BS: usize = 4096;

#[test]
fn writes_succeed_while_another_thread_toggles_o_direct_on_their_descriptor() {
    let Some(f) = lane_test_file("flags") else { return };
    // Allocated beforehand, so that direct writes need no allocation.
    f.set_len(BLOCKS * BS as u64).unwrap();
    let plain =
        std::fs::File::options().read(true).write(true).open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    plain.write_all_at(&vec![0u8; BLOCKS as usize * BS], 0).unwrap();
    plain.sync_all().unwrap();
    let ctx = Context::builder().entries(64).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
    let stop = AtomicBool::new(false);
    let fd = f.as_raw_fd();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            let mut on = false;
            while !stop.load(Ordering::SeqCst) {
                // SAFETY: F_GETFL/F_SETFL on the test's own descriptor.
                unsafe {
                    let fl = libc::fcntl(fd, libc::F_GETFL);
                    let fl = if on { fl | libc::O_DIRECT } else { fl & !libc::O_DIRECT };
                    libc::fcntl(fd, libc::F_SETFL, fl);
                }
                on = !on;
                std::thread::yield_now();
            }
        });
        let (mut next, mut inflight) = (0u64, 0usize);
        let mut out = Vec::new();
        while next < BLOCKS || inflight > 0 {
            while next < BLOCKS && inflight + 8 <= 32 {
                let mut reqs: Vec<_> = (next..next + 8)
                    .map(|i| Request::write(&f, numbered_block(i), i * BS as u64).user_data(i))
                    .collect();
                assert_eq!(ctx.submit_batch(&mut reqs, &mut Vec::new()).unwrap(), 8);
                next += 8;
                inflight += 8;
            }
            ctx.wait(1, Some(Duration::from_secs(20)), &mut out).unwrap();
            assert!(!out.is_empty(), "no completion in 20 s with {inflight} in flight");
            for c in out.drain(..) {
                assert_eq!(c.result().map_err(|e| e.to_string()), Ok(BS), "write {}", c.user_data());
                inflight -= 1;
            }
        }
    });
    for i in 0..BLOCKS {
        let mut got = vec![0u8; BS];
        plain.read_exact_at(&mut got, i * BS as u64).unwrap();
        assert!(got[..] == numbered_block(i)[..], "block {i} is not what was written");
    }
}
