//! A program thread under a real-time policy (`SCHED_FIFO`) that polls for
//! completions without sleeping (a wait with no minimum and no timeout, in
//! a loop) on one processor gets them: uaio's threads, which a backend
//! needs to complete a POLL (the thread pool's poller) or a sync (its
//! workers), do not inherit the policy, so real-time throttling leaves them
//! their share of the processor, as it does the kernel's own workers.
//! Before, they inherited it and never ran there: the loop spun for ever
//! (a black-box attack: 4 of 4 kinds of request hung on the thread pool).
//!
//! The case runs in a `fork` child (its policy and any hang stay there); a
//! child that has not finished after [`LIMIT`] is a failure. Skipped, with
//! the reason printed, where the policy cannot be set or real-time
//! throttling is off (a spinning real-time thread would then starve its
//! processor for good, the kernel's workers included).
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use uaio::{Backend, Context, PollFlags, Request};

mod util;
use util::wait_child_for;

/// How long the child may take: each completion may wait for a throttling
/// period (one second by default) before uaio's thread runs.
const LIMIT: Duration = Duration::from_secs(90);

/// Exit codes of the child.
const OK: i32 = 0;
const NO_POLICY: i32 = 4;
const WRONG: i32 = 5;
const HUNG: i32 = 6;

/// Spins on `ctx` without sleeping until one completion comes, at most
/// [`LIMIT`] minus a margin; its result, or `None` if none came.
fn spin_for_one(ctx: &Context<'_, Vec<u8>>) -> Option<std::io::Result<usize>> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(1);
    while start.elapsed() < LIMIT - Duration::from_secs(10) {
        match ctx.wait(0, Some(Duration::ZERO), &mut out) {
            Ok(0) => {}
            Ok(_) => return out.pop().map(|c| c.result()),
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// The child: real-time, on one processor, a POLL of an eventfd made
/// ready after submission, and on the thread pool a sync, each polled for.
fn child() -> i32 {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size given is that of `allowed`.
    unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) };
    // SAFETY: CPU_ISSET reads the set.
    let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &allowed) }) else {
        return NO_POLICY;
    };
    // SAFETY: as above, a zeroed set filled with one processor.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes the set.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: the size given is that of `one`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) };
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler of the calling thread with a valid param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return NO_POLICY;
    }
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
    let file = tempfile::tempfile_in("/var/tmp").expect("temp file");
    let ctx: Context<'_, Vec<u8>> = match Context::new(8) {
        Ok(c) => c,
        Err(_) => return WRONG,
    };
    if ctx.submit(Request::poll(&efd, PollFlags::IN)).is_err() {
        return WRONG;
    }
    rustix::io::write(&efd, &1u64.to_ne_bytes()).expect("eventfd write");
    match spin_for_one(&ctx) {
        Some(Ok(mask)) if mask & PollFlags::IN.bits() as usize != 0 => {}
        Some(_) => return WRONG,
        None => return HUNG,
    }
    if ctx.backend() == Backend::Threads {
        rustix::io::write(file.as_fd(), b"data").expect("write");
        if ctx.submit(Request::fsync(&file)).is_err() {
            return WRONG;
        }
        match spin_for_one(&ctx) {
            Some(Ok(0)) => {}
            Some(_) => return WRONG,
            None => return HUNG,
        }
    }
    OK
}

#[test]
fn a_real_time_thread_polling_without_sleep_gets_its_completions() {
    let throttle = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us").unwrap_or_default();
    if throttle.trim() == "-1" {
        println!("skipped: real-time throttling is off (kernel.sched_rt_runtime_us = -1)");
        return;
    }
    // SAFETY: fork(2); the child runs `child` and leaves with _exit,
    // running no destructor of the parent's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    let Some(status) = wait_child_for(pid, LIMIT) else {
        panic!("the real-time child did not finish in {LIMIT:?}");
    };
    assert!(libc::WIFEXITED(status), "child ended by a signal: status {status:#x}");
    match libc::WEXITSTATUS(status) {
        OK => println!("completed in {:?}", start.elapsed()),
        NO_POLICY => println!("skipped: SCHED_FIFO cannot be set here (not permitted)"),
        HUNG => panic!("a completion polled for by a SCHED_FIFO thread never came"),
        code => panic!("wrong result in the child (exit {code})"),
    }
}
