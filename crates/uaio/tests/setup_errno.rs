//! `io_setup` fails only with the kernel's errors: a seccomp filter that
//! refuses `eventfd2` (which uaio needs for a context, and the kernel's
//! call does not) makes it answer `EAGAIN`, as the kernel answers when it
//! has no room, not the filter's `EPERM`, which the kernel's `io_setup`
//! never returns (a black-box attack found `EPERM`).
//!
//! The case runs in a `fork` child, where the filter stays.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::time::Duration;

mod util;
use util::exit_code_of_child;
use util::seccomp::Refusal;

/// A hang detector: the child's work takes milliseconds.
const LIMIT: Duration = Duration::from_secs(60);

/// Exit codes of the child besides the errno it got (as a positive number).
const MADE: i32 = 200;
const NO_FILTER: i32 = 201;

fn child() -> i32 {
    if Refusal::of(&[libc::SYS_eventfd2]).install().is_err() {
        return NO_FILTER;
    }
    let mut ctx: uaio::abi::aio_context_t = 0;
    // SAFETY: `ctx` is a valid place for the handle, holding 0.
    let r = unsafe { uaio::raw::io_setup(8, &mut ctx) };
    if r == 0 {
        return MADE;
    }
    (-r) as i32
}

#[test]
fn io_setup_without_a_descriptor_of_its_own_answers_eagain() {
    match exit_code_of_child(child, LIMIT) {
        NO_FILTER => println!("skipped: a seccomp filter cannot be installed here"),
        MADE => panic!("io_setup made a context though uaio could make no eventfd"),
        e => assert_eq!(e, libc::EAGAIN, "io_setup failed with errno {e}"),
    }
}
