//! The submission hot path allocates nothing once a thread has made a call:
//! NOOPs and page-cache reads (done inside `io_submit`) and their reaping.
//! A counting allocator sees every allocation of the calling thread.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_NOOP, IOCB_CMD_PREAD};
use uaio::raw;

mod util;
use util::cb;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters are const
// thread-locals, which never allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ON.with(|o| o.set(true));
    f();
    ON.with(|o| o.set(false));
    COUNT.with(Cell::get)
}

fn submit(ctx: aio_context_t, cbs: &mut [iocb]) {
    let mut ptrs: [*mut iocb; 8] = [std::ptr::null_mut(); 8];
    for (p, c) in ptrs.iter_mut().zip(cbs.iter_mut()) {
        *p = c;
    }
    // SAFETY: `cbs.len()` (at most 8) valid iocbs whose buffers outlive
    // the requests (reaped before the caller returns).
    let n = unsafe { raw::io_submit(ctx, cbs.len() as i64, ptrs.as_mut_ptr()) };
    assert_eq!(n, cbs.len() as i64);
}

fn reap(ctx: aio_context_t, n: usize) {
    let mut evs = [io_event::default(); 8];
    let mut got = 0;
    while got < n {
        // SAFETY: room for 8 events; no timeout.
        let r = unsafe { raw::io_getevents(ctx, 1, 8, evs.as_mut_ptr(), std::ptr::null_mut()) };
        assert!(r > 0, "io_getevents: {r}");
        assert!(evs[..r as usize].iter().all(|e| e.res >= 0), "{:?}", &evs[..r as usize]);
        got += r as usize;
    }
}

#[test]
fn noops_and_cached_reads_allocate_nothing_once_warm() {
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(&[5u8; 8192]).expect("fill");
    let file: File = file;
    let mut ctx: aio_context_t = 0;
    // SAFETY: io_setup writes the handle.
    assert_eq!(unsafe { raw::io_setup(64, &mut ctx) }, 0);
    let mut buf = [0u8; 4096];
    let fd = file.as_raw_fd();
    let mut round = |k: usize| {
        let mut cbs = [iocb::default(); 8];
        for (i, c) in cbs.iter_mut().enumerate().take(k) {
            *c = if i % 2 == 0 {
                cb(IOCB_CMD_NOOP, fd, 0, 0, 0, i as u64)
            } else {
                cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 4096, 4096 * (i as i64 % 2), i as u64)
            };
        }
        submit(ctx, &mut cbs[..k]);
        reap(ctx, k);
    };
    // Warm-up: the thread's first calls make its reusable state.
    for k in [1, 2, 3, 8] {
        round(k);
    }
    let n = allocations(|| {
        for _ in 0..100 {
            for k in [1, 2, 3] {
                round(k);
            }
        }
    });
    // SAFETY: destroying our own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    println!("backend {}: {n} allocations in 300 submit + reap rounds", uaio::backend_name());
    assert_eq!(n, 0, "io_submit/io_getevents allocated on the hot path");
}
