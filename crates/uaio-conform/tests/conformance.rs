//! Runs every conformance case against the kernel and uaio and compares
//! their traces; each case is one test trial, named as in
//! [`uaio_conform::all_cases`], so the usual test arguments select and list
//! them:
//!
//! ```text
//! cargo test -p uaio-conform --test conformance -- submit/        # cases whose name contains it
//! cargo test -p uaio-conform --test conformance -- --exact rw/pipe_epipe
//! cargo test -p uaio-conform --test conformance -- --list
//! cargo nextest run -p uaio-conform --test conformance -E 'test(/^submit\//)'
//! ```
//!
//! Trials run one at a time unless `--test-threads` says otherwise: cases
//! install signal handlers and masks, fork, lower `RLIMIT_NOFILE` and use
//! the host-wide `aio-max-nr`, so two cases of one process must not overlap.
//! A case that cannot run on this machine (no loop device, no tmpfs mount,
//! no `O_DIRECT`) is reported as ignored, with its reason.
//! `UAIO_CONFORM_TRACE=1` prints both traces of each case.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// How many trials ended which way, for the closing summary.
#[derive(Default)]
struct Tally {
    agree: AtomicUsize,
    extensions: AtomicUsize,
    skipped: AtomicUsize,
    disagree: AtomicUsize,
}

fn trial(case: uaio_conform::Case, tally: Arc<Tally>) -> Trial {
    Trial::ignorable_test(case.name, move || {
        let o = uaio_conform::run_case(&case);
        if let Some(why) = o.failure {
            tally.disagree.fetch_add(1, Ordering::Relaxed);
            return Err(Failed::from(why));
        }
        if let Some(why) = o.skipped {
            tally.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(Completion::ignored_with(format!("skipped: {why}")));
        }
        tally.agree.fetch_add(1, Ordering::Relaxed);
        if o.extension {
            tally.extensions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Completion::Completed)
    })
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let tally = Arc::new(Tally::default());
    let trials = uaio_conform::all_cases().into_iter().map(|c| trial(c, tally.clone())).collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        let t = &*tally;
        let load = |n: &AtomicUsize| n.load(Ordering::Relaxed);
        println!(
            "conformance: {} cases run on kernel and on uaio; {} agree ({} as documented extensions), \
             {} skipped here, {} disagree",
            load(&t.agree) + load(&t.skipped) + load(&t.disagree),
            load(&t.agree),
            load(&t.extensions),
            load(&t.skipped),
            load(&t.disagree),
        );
    }
    conclusion.exit();
}
