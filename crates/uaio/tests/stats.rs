//! `UAIO_STATS`: a destroyed context appends one JSON record of what it
//! did (counts, bytes, inline share, cancels, errors by errno, latency and
//! queue-depth histograms) to the file the variable names.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::sync::Once;

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_NOOP, IOCB_CMD_POLL, IOCB_CMD_PREAD, IOCB_CMD_PWRITE};
use uaio::raw;

mod util;
use util::{cb, pipe};

/// The record file, set before this process's first context.
fn record_file() -> std::path::PathBuf {
    static ONCE: Once = Once::new();
    let path = std::env::temp_dir().join(format!("uaio-stats-test-{}.jsonl", std::process::id()));
    // SAFETY (edition 2021: safe call): set before any uaio call, the one
    // test of this binary.
    ONCE.call_once(|| std::env::set_var("UAIO_STATS", &path));
    path
}

fn submit(ctx: aio_context_t, c: &mut iocb) -> i64 {
    let mut p = [c as *mut iocb];
    // SAFETY: one valid iocb whose buffer outlives the request.
    unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) }
}

fn reap(ctx: aio_context_t, n: usize) -> Vec<io_event> {
    let mut evs = vec![io_event::default(); n];
    let mut got = 0;
    while got < n {
        // SAFETY: room for the remaining events; no timeout.
        let r = unsafe { raw::io_getevents(ctx, 1, (n - got) as i64, evs[got..].as_mut_ptr(), std::ptr::null_mut()) };
        assert!(r > 0);
        got += r as usize;
    }
    evs
}

#[test]
fn a_destroyed_context_writes_its_record() {
    let path = record_file();
    let _ = std::fs::remove_file(&path);
    let file = tempfile::tempfile().expect("temp file");
    let (r, _w) = pipe();
    let mut ctx: aio_context_t = 0;
    // SAFETY: io_setup writes the handle.
    assert_eq!(unsafe { raw::io_setup(32, &mut ctx) }, 0);
    let data = [7u8; 4096];
    let mut back = [0u8; 4096];
    let mut short = [0u8; 4];
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
    // 3 NOOPs, a 4 KiB write and its read back, an eventfd read too short
    // for its record (EINVAL), and a POLL of an empty pipe, cancelled.
    for i in 0..3 {
        assert_eq!(submit(ctx, &mut cb(IOCB_CMD_NOOP, 0, 0, 0, 0, i)), 1);
    }
    assert_eq!(submit(ctx, &mut cb(IOCB_CMD_PWRITE, file.as_raw_fd(), data.as_ptr() as u64, 4096, 0, 3)), 1);
    reap(ctx, 4);
    assert_eq!(submit(ctx, &mut cb(IOCB_CMD_PREAD, file.as_raw_fd(), back.as_mut_ptr() as u64, 4096, 0, 4)), 1);
    assert_eq!(submit(ctx, &mut cb(IOCB_CMD_PREAD, efd.as_raw_fd(), short.as_mut_ptr() as u64, 4, 0, 5)), 1);
    let mut poll = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 6);
    assert_eq!(submit(ctx, &mut poll), 1);
    let mut ev = io_event::default();
    // SAFETY: the POLL's own iocb.
    assert_eq!(unsafe { raw::io_cancel(ctx, &mut poll, &mut ev) }, -(libc::EINPROGRESS as i64));
    let evs = reap(ctx, 3);
    assert!(evs.iter().any(|e| e.data == 5 && e.res == -(libc::EINVAL as i64)), "{evs:?}");
    assert_eq!(std::fs::read(&path).ok(), None, "a record before the context is destroyed");
    // SAFETY: destroying our own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    let text = std::fs::read_to_string(&path).expect("the record file");
    let _ = std::fs::remove_file(&path);
    println!("{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    let has = |s: &str| assert!(text.contains(s), "{s:?} not in {text}");
    has(&format!("\"pid\":{},", std::process::id()));
    has("\"nr_events\":32,");
    has(&format!("\"backend\":\"{}\"", uaio::backend_name()));
    has("\"cancel_calls\":1,");
    has("\"noop\":{\"count\":3,\"bytes\":0,\"inline\":3,\"cancelled\":0,\"errors\":{},");
    has("\"pwrite\":{\"count\":1,\"bytes\":4096,");
    has("\"pread\":{\"count\":2,\"bytes\":4096,\"inline\":");
    has(&format!("\"errors\":{{\"{}\":1}}", libc::EINVAL));
    has("\"poll\":{\"count\":1,\"bytes\":0,\"inline\":0,\"cancelled\":1,");
}
