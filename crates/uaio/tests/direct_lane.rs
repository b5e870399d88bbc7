//! The thread pool's direct lane: `O_DIRECT` reads and writes of
//! thread-pool contexts go to one kernel AIO context of uaio's own, whose
//! ring exists only beside its `uaio-reaper` thread, is not inherited by a
//! fork child, and goes with the last context. One test, so nothing else
//! shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::time::{Duration, Instant};

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::{lane_test_file, thread_names};

const LONG: Option<Duration> = Some(Duration::from_secs(20));

/// Kernel AIO rings mapped in this process.
fn kernel_rings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("[aio]")).count()
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn block(i: usize) -> AlignedBuf {
    let mut b = AlignedBuf::with_alignment(4096, 4096).unwrap();
    for (j, x) in b.iter_mut().enumerate() {
        *x = (i * 7 + j % 251) as u8;
    }
    b
}

/// Reads blocks 0..n of `f` through `ctx` in one io_submit and checks
/// each against `want(i)`.
fn read_back<'a>(ctx: &Context<'a, AlignedBuf>, f: &'a File, n: u64, want: impl Fn(usize) -> AlignedBuf, what: &str) {
    let mut reqs: Vec<_> = (0..n)
        .map(|i| Request::read(f, AlignedBuf::with_alignment(4096, 4096).unwrap(), i * 4096).user_data(i))
        .collect();
    assert_eq!(ctx.submit_batch(&mut reqs, &mut Vec::new()).unwrap(), n as usize);
    for _ in 0..n {
        let c = ctx.wait_one(LONG).unwrap();
        let i = c.user_data() as usize;
        assert_eq!(c.result().unwrap(), 4096, "read {i}{what}");
        assert!(c.into_buf().unwrap().iter().eq(want(i).iter()), "read {i}{what} came back wrong");
    }
}

/// Writes 32 blocks and reads them back through `ctx`, all at once each.
fn write_and_read_back<'a>(ctx: &Context<'a, AlignedBuf>, f: &'a File) {
    // One io_submit for all (a request submitted alone with nothing else
    // in flight stays for a worker).
    let mut reqs: Vec<_> = (0..32).map(|i| Request::write(f, block(i), i as u64 * 4096).user_data(i as u64)).collect();
    assert_eq!(ctx.submit_batch(&mut reqs, &mut Vec::new()).unwrap(), 32);
    for _ in 0..32 {
        let c = ctx.wait_one(LONG).unwrap();
        assert_eq!(c.result().unwrap(), 4096, "write {}", c.user_data());
    }
    read_back(ctx, f, 32, block, "");
    // What the file system refuses is the request's result, as on the
    // kernel (a length that is not a multiple of the block size).
    ctx.submit(Request::read(f, AlignedBuf::with_alignment(100, 4096).unwrap(), 0)).unwrap();
    assert_eq!(ctx.wait_one(LONG).unwrap().result().unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn direct_requests_take_the_lane_which_goes_with_the_last_context() {
    let Some(f) = lane_test_file("lane") else { return };
    assert_eq!(kernel_rings(), 0);
    let ctx = Context::builder().entries(64).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
    write_and_read_back(&ctx, &f);
    assert!(thread_names().iter().any(|n| n == "uaio-reaper"), "no lane: {:?}", thread_names());
    assert_eq!(kernel_rings(), 1, "the lane's ring, and only it");

    // Dirty cached pages over the range: the kernel will not write them
    // back for a RWF_NOWAIT direct read (EAGAIN), so those reads go to
    // workers, which see the new bytes, as a direct read on the kernel
    // does (it writes the range back first).
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let buffered = File::options().read(true).write(true).open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    for i in 0..16 {
        buffered.write_all_at(&block(100 + i), i as u64 * 4096).unwrap();
    }
    read_back(&ctx, &f, 16, |i| block(100 + i), " over dirty pages");

    // A fork child inherits no ring; its own contexts make their own lane.
    // SAFETY: fork(2); the child only uses uaio and exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let inherited = kernel_rings();
        let ok = std::panic::catch_unwind(|| {
            let c = Context::builder().entries(64).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
            write_and_read_back(&c, &f);
            kernel_rings() == 1
        });
        let code = match (inherited, ok) {
            (0, Ok(true)) => 0,
            (0, _) => 2,
            _ => 1,
        };
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    match libc::WEXITSTATUS(status) {
        0 => {}
        1 => panic!("the fork child inherited the lane's ring"),
        s => panic!("the fork child's direct I/O failed ({s})"),
    }

    drop(ctx);
    eventually("the reaper leaves with the last context", || uaio::pool_threads() == 0);
    eventually("the lane's ring goes with it", || kernel_rings() == 0);
    // The reaper counts itself out just before its thread ends, so its
    // name may stay listed a moment longer.
    eventually("the reaper's thread ends", || !thread_names().iter().any(|n| n == "uaio-reaper"));
}
