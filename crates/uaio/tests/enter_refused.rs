//! A seccomp filter that lets `io_uring_setup` through and refuses only
//! `io_uring_enter` (installed before the first context): a context must
//! run on the thread pool and work, as kernel AIO does under the same
//! filter. Before, the ring was made and used, and every request completed
//! with `-EPERM` (a black-box attack: every run, both forms of the filter).
//!
//! The case runs in a `fork` child, where the filter stays; a child that
//! has not finished after [`LIMIT`] is a failure.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::time::Duration;

use uaio::{Backend, Context, Request};

mod util;
use util::exit_code_of_child;
use util::seccomp::Refusal;

/// A hang detector: the child's work takes milliseconds.
const LIMIT: Duration = Duration::from_secs(60);

/// Exit codes of the child.
const OK: i32 = 0;
const NO_FILTER: i32 = 3;
const ON_URING: i32 = 4;
const NO_CONTEXT: i32 = 5;
const WRONG: i32 = 6;
const URING_GRANTED: i32 = 7;

/// The child's part: the filter, then a context that writes and reads back.
fn child() -> i32 {
    let file = tempfile::tempfile().expect("tempfile");
    if Refusal::of(&[libc::SYS_io_uring_enter]).install().is_err() {
        return NO_FILTER;
    }
    if Context::<Vec<u8>>::builder().entries(8).backend(Backend::IoUring).build().is_ok() {
        return URING_GRANTED;
    }
    let Ok(ctx) = Context::<Vec<u8>>::builder().entries(8).build() else { return NO_CONTEXT };
    if ctx.backend() != Backend::Threads {
        return ON_URING;
    }
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let wrote = ctx.submit(Request::write(&file, data.clone(), 0)).is_ok()
        && ctx.wait_one(Some(LIMIT)).is_ok_and(|c| c.result().ok() == Some(4096));
    let read = wrote
        && ctx.submit(Request::read(&file, vec![0u8; 4096], 0)).is_ok()
        && ctx.wait_one(Some(LIMIT)).is_ok_and(|c| {
            let (r, buf) = c.into_result_and_buf();
            r.ok() == Some(4096) && buf.as_ref() == Some(&data)
        });
    if read {
        OK
    } else {
        WRONG
    }
}

#[test]
fn a_filter_refusing_io_uring_enter_alone_sends_contexts_to_the_thread_pool() {
    match exit_code_of_child(child, LIMIT) {
        OK => {}
        NO_FILTER => println!("skipped: a seccomp filter cannot be installed here"),
        code => panic!(
            "child exit code {code} ({})",
            match code {
                ON_URING => "the context was made on io_uring",
                URING_GRANTED => "an explicit io_uring context was granted",
                NO_CONTEXT => "no context at all",
                WRONG => "the write or the read back failed",
                _ => "panic",
            }
        ),
    }
}
