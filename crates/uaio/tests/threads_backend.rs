//! The thread-pool backend's life cycle: threads named and started on
//! demand, gone after the last context, and a fork child able to work while
//! the parent's workers run. One test, so nothing else shares the pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::time::{Duration, Instant};

use uaio::{Context, Request};

mod util;
use util::thread_names;

fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pool_lifecycle_and_fork() {
    // SAFETY (edition 2021: safe call): set before the first uaio call of
    // this process, which is where the backend is chosen.
    std::env::set_var("UAIO_BACKEND", "threads");
    assert_eq!(uaio::pool_threads(), 0, "no thread before the first context");
    assert!(!thread_names().iter().any(|n| n.starts_with("uaio")));

    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(16).unwrap();
    assert_eq!(uaio::backend_name(), "threads");
    for i in 0..8 {
        ctx.submit(Request::write(&f, vec![i as u8; 65536], i * 65536).user_data(i)).unwrap();
    }
    ctx.submit(Request::fsync(&f).user_data(100)).unwrap();
    let mut got = 0;
    while got < 9 {
        got += ctx.wait(1, Some(Duration::from_secs(10)), &mut Vec::with_capacity(16)).unwrap();
    }
    assert!(uaio::pool_threads() >= 1, "the fsync ran on a worker");
    assert!(thread_names().iter().any(|n| n == "uaio-worker"));

    // fork while a worker exists: the child creates its own context and works.
    ctx.submit(Request::fsync(&f).user_data(101)).unwrap();
    // SAFETY: fork(2); the child only uses uaio and exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = (|| -> std::io::Result<bool> {
            let c = Context::new(4)?;
            c.submit(Request::read(&f, vec![0; 4], 65536).user_data(7))?;
            c.submit(Request::fsync(&f).user_data(8))?;
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let mut out = Vec::with_capacity(2);
                c.wait(1, Some(Duration::from_secs(10)), &mut out)?;
                seen.extend(out.into_iter().map(|x| (x.user_data(), x.result().ok())));
            }
            seen.sort();
            Ok(seen == vec![(7, Some(4)), (8, Some(0))])
        })();
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: {status}");
    assert_eq!(ctx.wait_one(Some(Duration::from_secs(10))).unwrap().user_data(), 101);

    drop(ctx);
    eventually("pool threads gone after the last context", || uaio::pool_threads() == 0);
    eventually("no uaio-worker thread left", || {
        !thread_names().iter().any(|n| n == "uaio-worker" || n == "uaio-poller")
    });
}
