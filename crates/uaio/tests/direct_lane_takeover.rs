//! A program that takes over uaio's own descriptor numbers (here: `dup2`
//! of a file of its own onto each of them, then `close`, in a loop, as a
//! careless daemon or shell might) while it writes and reads an `O_DIRECT`
//! file on the thread pool. Kernel AIO has no descriptor to take over.
//! What must hold: no byte of the program's requests reaches the other
//! file, every successful write is in the file it was meant for, and every
//! successful read returns that file's bytes. (A request a worker runs
//! after the program took over the number of uaio's duplicate fails with
//! `EBADF`, a documented difference; the lane's requests do not.) One
//! test, so nothing else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::{lane_test_file, numbered_block, uaio_floor, StopOnDrop};

/// Blocks written and read.
const BLOCKS: u64 = 2000;
const BS: usize = 4096;

/// Submits every block in batches of 8 with 32 in flight (`write` or
/// read), and gives each block's result.
fn run<'a>(ctx: &Context<'a, AlignedBuf>, f: &'a File, write: bool) -> Vec<(i64, Option<AlignedBuf>)> {
    let mut results: Vec<(i64, Option<AlignedBuf>)> = (0..BLOCKS).map(|_| (i64::MIN, None)).collect();
    let (mut next, mut inflight) = (0u64, 0usize);
    let mut out = Vec::new();
    while next < BLOCKS || inflight > 0 {
        while next < BLOCKS && inflight + 8 <= 32 {
            let n = 8.min(BLOCKS - next);
            let mut reqs: Vec<_> = (next..next + n)
                .map(|i| {
                    let off = i * BS as u64;
                    let r = if write {
                        Request::write(f, numbered_block(i), off)
                    } else {
                        Request::read(f, AlignedBuf::with_alignment(BS, BS).unwrap(), off)
                    };
                    r.user_data(i)
                })
                .collect();
            let took = ctx.submit_batch(&mut reqs, &mut Vec::new()).unwrap();
            assert_eq!(took, n as usize, "io_submit took {took} of {n}");
            next += n;
            inflight += took;
        }
        ctx.wait(1, Some(Duration::from_secs(20)), &mut out).unwrap();
        assert!(!out.is_empty(), "no completion in 20 s with {inflight} in flight");
        for c in out.drain(..) {
            let i = c.user_data() as usize;
            assert_eq!(results[i].0, i64::MIN, "block {i} completed twice");
            results[i].0 = match c.result() {
                Ok(n) => n as i64,
                Err(e) => -(e.raw_os_error().unwrap() as i64),
            };
            results[i].1 = c.into_buf();
            inflight -= 1;
        }
    }
    results
}

#[test]
fn a_program_taking_over_uaios_descriptor_numbers_never_gets_its_requests_in_another_file() {
    let Some(direct) = lane_test_file("takeover") else { return };
    // The file is allocated and written back first: direct writes over
    // allocated blocks are what the lane takes (a hole to fill waits for
    // an allocation, which sends the request to a worker, where what this
    // test checks does not hold yet: see the README's residuals).
    let plain = File::options().read(true).write(true).open(format!("/proc/self/fd/{}", direct.as_raw_fd())).unwrap();
    plain.write_all_at(&vec![0u8; BLOCKS as usize * BS], 0).unwrap();
    plain.sync_all().unwrap();
    // And out of the page cache: a direct write with RWF_NOWAIT over
    // cached pages gets EAGAIN, which also sends it to a worker.
    // SAFETY: advice on the test's own descriptor.
    assert_eq!(unsafe { libc::posix_fadvise(plain.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
    let victim = tempfile_in_var_tmp();
    let original = vec![b'V'; 65536];
    victim.write_all_at(&original, 0).unwrap();

    let ctx = Context::builder().entries(64).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
    let stop = AtomicBool::new(false);
    let floor = uaio_floor();
    let (writes, reads) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            let (v, d) = (victim.as_raw_fd(), direct.as_raw_fd());
            while !stop.load(Ordering::SeqCst) {
                for k in floor..floor + 16 {
                    if k != v && k != d {
                        // SAFETY: the attack itself: numbers this test never
                        // opened, which are uaio's (the test's own files
                        // are below the floor and skipped).
                        unsafe { libc::dup2(v, k) };
                    }
                }
                for k in floor..floor + 16 {
                    if k != v && k != d {
                        // SAFETY: as above.
                        unsafe { libc::close(k) };
                    }
                }
            }
        });
        let writes = run(&ctx, &direct, true);
        let reads = run(&ctx, &direct, false);
        (writes, reads)
    });

    let mut now = vec![0u8; 65536];
    let len = victim.metadata().unwrap().len();
    victim.read_exact_at(&mut now, 0).unwrap();
    assert!(len == 65536 && now == original, "the other file changed: {len} bytes now");
    let mut failed = 0;
    for (i, (res, _)) in writes.iter().enumerate() {
        let mut got = vec![0u8; BS];
        plain.read_exact_at(&mut got, i as u64 * BS as u64).unwrap();
        match *res {
            4096 => {
                assert!(got[..] == numbered_block(i as u64)[..], "write {i} succeeded but its block is not in the file")
            }
            r if r == -(libc::EBADF as i64) => failed += 1,
            r => panic!("write {i}: {r}"),
        }
    }
    for (i, (res, buf)) in reads.iter().enumerate() {
        match *res {
            4096 => assert!(
                buf.as_ref().unwrap()[..] == plain_block(&plain, i)[..],
                "read {i} succeeded with bytes that are not the file's"
            ),
            r if r == -(libc::EBADF as i64) => failed += 1,
            r => panic!("read {i}: {r}"),
        }
    }
    println!("{failed} of {} requests failed with EBADF (ran on a worker)", 2 * BLOCKS);
}

/// Block `i` of the file as it is now.
fn plain_block(plain: &File, i: usize) -> Vec<u8> {
    let mut got = vec![0u8; BS];
    plain.read_exact_at(&mut got, (i * BS) as u64).unwrap();
    got
}

/// A new file under /var/tmp (or the temporary directory), unlinked.
fn tempfile_in_var_tmp() -> File {
    for dir in [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir()] {
        let path = dir.join(format!("uaio-takeover-victim-{}", std::process::id()));
        if let Ok(f) = File::options().read(true).write(true).create(true).truncate(true).open(&path) {
            let _ = std::fs::remove_file(&path);
            return f;
        }
    }
    panic!("no directory for the victim file");
}
