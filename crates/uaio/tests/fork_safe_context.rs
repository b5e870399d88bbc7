//! The safe `Context` in a `fork` child: every call on the parent's
//! context fails with `EINVAL` (`pending` answers 0), even when another
//! thread of the parent held the context's lock at the moment of the fork
//! (that thread does not exist in the child). Forks are made while a
//! thread submits and reaps on the context without pause, so that many of
//! them catch it inside a call; a child that does not finish within 10 s
//! is a failure.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod util;
use util::wait_child_for;

const FORKS: usize = 40;

/// Exit codes of the child.
const OK: i32 = 0;
const WRONG: i32 = 3;

#[test]
fn a_fork_child_gets_einval_from_the_parents_context_whatever_its_threads_held() {
    let ctx = Arc::new(uaio::Context::new(64).expect("context"));
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if ctx.submit(uaio::Request::noop()).is_ok() {
                    let _ = ctx.wait_one(Some(Duration::from_secs(5)));
                }
            }
        })
    };
    let mut hung = 0;
    let mut wrong = 0;
    for _ in 0..FORKS {
        std::thread::sleep(Duration::from_millis(2));
        // SAFETY: fork(2); the child makes uaio calls only and leaves with
        // _exit, running no destructor of the parent's.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let einval = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
            let submit = ctx.submit(uaio::Request::noop());
            let ok = matches!(&submit, Err(e) if einval(e.error())) && ctx.pending() == 0;
            std::mem::forget(submit);
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(if ok { OK } else { WRONG }) };
        }
        match wait_child_for(pid, Duration::from_secs(10)) {
            Some(status) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == OK => {}
            Some(_) => wrong += 1,
            None => hung += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    busy.join().expect("busy thread");
    assert_eq!((hung, wrong), (0, 0), "of {FORKS} children: {hung} hung in a call, {wrong} got another answer");
}
