//! Faults from a real file system: writes to a full tmpfs of 64 KiB. The
//! kernel's AIO is the oracle for the sequence of results (full writes, then
//! a short count where a write straddles the last free page, then
//! `ENOSPC`). Mounting needs `CAP_SYS_ADMIN`; where it is refused the case
//! records why it was skipped, on both sides alike.

use std::os::fd::AsRawFd;

use super::fixtures::*;
use crate::*;

/// Writes blocks of `len` bytes one after the other (one request in flight
/// at a time, so the order is the kernel's), until one fails and one more
/// has been tried, or `max` were written; records each result and the size
/// the file ends with.
fn fill(e: &mut Env, ctx: u64, fd: &std::os::fd::OwnedFd, len: usize, max: usize) {
    let buf = leak_buf(len);
    buf.fill(0x5a);
    let mut failed = 0;
    for i in 0..max {
        let a = leak(cb(IOCB_CMD_PWRITE, fd.as_raw_fd(), buf.as_ptr() as u64, len as u64, (i * len) as i64, i as u64));
        if e.submit(ctx, &mut [a]) != 1 {
            break;
        }
        let ev = e.reap(ctx, 1);
        if ev.first().is_none_or(|ev| ev.res != len as i64) {
            failed += 1;
            if failed == 2 {
                break;
            }
        }
    }
    e.record_file(fd);
}

pub(crate) fn cases() -> Vec<Case> {
    vec![c("faults/writes_to_a_full_tmpfs_end_short_then_enospc", |e| {
        let fs = match Tmpfs::mount(64 * 1024) {
            Ok(fs) => fs,
            Err(why) => {
                e.rec(format!("skipped: {why}"));
                return;
            }
        };
        let ctx = e.setup(4);
        // 4 KiB writes: sixteen fit, then ENOSPC.
        let f = open(&fs.path("a"), libc::O_RDWR | libc::O_CREAT);
        fill(e, ctx, &f, 4096, 64);
        // Freeing the space (the file is closed and unlinked) lets writes
        // succeed again: 12 KiB writes take three pages each, so the sixth
        // finds one page free (a short count), the seventh none.
        drop(f);
        std::fs::remove_file(fs.path("a")).expect("unlink");
        let f = open(&fs.path("b"), libc::O_RDWR | libc::O_CREAT);
        fill(e, ctx, &f, 12 * 1024, 64);
        // The context still works: a sync of the full file.
        sub1(e, ctx, cb(IOCB_CMD_FSYNC, f.as_raw_fd(), 0, 0, 0, 99));
        e.reap(ctx, 1);
    })]
}
