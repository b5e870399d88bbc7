//! Page-cache I/O is complete when `io_submit` returns. Kernel AIO does
//! buffered reads and writes inside `io_submit`, and programs rely on it:
//! they reap with `min_nr = 0` and no timeout right after submitting
//! (libaio's own test harness does, and so do poll-mode reapers). uaio must
//! have every event in the ring by then, whatever the batch size, when the
//! data is in the page cache (reads) or can be copied there without waiting
//! for the device (writes: whole pages, or pages already cached).
//!
//! Also here: the iocb pointer array read in chunks must still stop exactly
//! at the first unreadable pointer, as the kernel's one-by-one reads do.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

/// Size of the test file: every request below falls inside it.
const FILE: usize = 256 << 10;

/// Submits `cbs` in one call, then reaps with `min_nr = 0` and a zero
/// timeout, and records how many events were ready, the events, and the
/// file's content afterwards.
fn submit_then_peek(e: &mut Env, fd: &std::os::fd::OwnedFd, cbs: Vec<iocb>) {
    // Kept for the rest of the case: an iocb is named by its address, and
    // a later batch must not reuse one.
    let cbs = cbs.leak();
    let ctx = e.setup(64);
    let n = cbs.len() as i64;
    let mut refs: Vec<&mut iocb> = cbs.iter_mut().collect();
    e.submit(ctx, &mut refs);
    e.getevents(ctx, 0, n, Some(Duration::ZERO));
    // Whatever was not ready (a failure above), so the case ends cleanly.
    e.getevents(ctx, 0, n, Some(Duration::from_secs(10)));
    e.record_file(fd);
}

/// A file of `FILE` bytes of a pattern, just written (so cached), opened
/// read-write.
fn cached_file(e: &mut Env) -> std::os::fd::OwnedFd {
    let content: Vec<u8> = (0..FILE).map(|i| (i * 7 % 251) as u8).collect();
    e.file(&content, libc::O_RDWR)
}

/// Reads of `len` bytes at `n` spread offsets into leaked buffers.
fn reads(fd: i32, n: usize, len: usize) -> Vec<iocb> {
    (0..n)
        .map(|i| {
            let buf = leak_buf(len);
            cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, len as u64, ((i * 37) % 60 * 4096) as i64, i as u64)
        })
        .collect()
}

/// Writes of `len` bytes at offsets `off(i)`, each buffer filled with `i + 1`.
fn writes(fd: i32, n: usize, len: usize, off: impl Fn(usize) -> i64) -> Vec<iocb> {
    (0..n)
        .map(|i| {
            let buf = leak_buf(len);
            buf.fill(i as u8 + 1);
            cb(IOCB_CMD_PWRITE, fd, buf.as_ptr() as u64, len as u64, off(i), 100 + i as u64)
        })
        .collect()
}

/// A tmpfs of its own holding file `a` (`FILE` bytes of a pattern), opened
/// read-write; `None`, with the reason recorded alike on both sides, where
/// the system swaps (tmpfs I/O may wait for swap, and uaio then leaves it
/// to the backend) or no tmpfs can be mounted.
fn swapless_tmpfs_file(e: &mut Env) -> Option<(Tmpfs, std::os::fd::OwnedFd)> {
    // SAFETY: sysinfo(2) fills the zeroed struct it is given.
    let swap = unsafe {
        let mut si: libc::sysinfo = std::mem::zeroed();
        libc::sysinfo(&mut si);
        si.totalswap
    };
    if swap != 0 {
        e.rec("skipped: the system has swap space, which tmpfs I/O may wait for");
        return None;
    }
    let fs = match Tmpfs::mount(16 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            e.rec(format!("skipped: {why}"));
            return None;
        }
    };
    let content: Vec<u8> = (0..FILE).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(fs.path("a"), &content).expect("write tmpfs file");
    let f = open(&fs.path("a"), libc::O_RDWR);
    Some((fs, f))
}

/// The same on a tmpfs of its own: writes of whole pages, of parts of
/// cached pages, into a hole and past the end, in batches of 1, 4 and 32,
/// each reaped with `min_nr = 0` at once. tmpfs has no device to wait for
/// unless the system swaps; with swap space the case is skipped, alike on
/// both sides (uaio then leaves tmpfs writes to the backend).
fn tmpfs_writes(e: &mut Env) {
    let Some((_fs, f)) = swapless_tmpfs_file(e) else { return };
    let fd = f.as_raw_fd();
    for n in [1, 4, 32] {
        submit_then_peek(e, &f, writes(fd, n, 4096, |i| (i * 4096) as i64));
    }
    submit_then_peek(e, &f, writes(fd, 8, 100, |i| (i * 5000 + 3) as i64));
    // Partial pages of a hole, then past the end.
    submit_then_peek(e, &f, writes(fd, 4, 700, |i| (FILE + (1 << 20) + i * 9000) as i64));
    submit_then_peek(e, &f, writes(fd, 4, 3000, |i| (4 * FILE + i * 3000) as i64));
}

/// Reads of a tmpfs file in batches of 1, 4 and 32, then `O_DIRECT`
/// writes and reads of it (tmpfs takes the flag since Linux 6.6), alone
/// and mixed with buffered reads, each batch reaped with `min_nr = 0` at
/// once: the kernel copies them all inside `io_submit`. Before, reads in
/// batches of 4 or more and every direct request went to uaio's backend
/// (io_uring hands tmpfs reads to its workers), so some events came later,
/// and a program killed as `io_submit` returned lost the direct writes.
fn tmpfs_reads_and_direct(e: &mut Env) {
    let Some((fs, f)) = swapless_tmpfs_file(e) else { return };
    for n in [1, 4, 32] {
        submit_then_peek(e, &f, reads(f.as_raw_fd(), n, 4096));
    }
    let path = std::ffi::CString::new(fs.path("a")).expect("path");
    // SAFETY: open(2) of a NUL-terminated path.
    let d = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_DIRECT | libc::O_CLOEXEC) };
    if d < 0 {
        e.rec("this tmpfs refuses O_DIRECT (before Linux 6.6): the direct part not tried");
        return;
    }
    let d = own(d);
    let direct = |op: u16, n: usize, first: usize| -> Vec<iocb> {
        (0..n)
            .map(|i| {
                let buf = anon_pages(1);
                // SAFETY: a fresh page-sized mapping of this process.
                unsafe { std::ptr::write_bytes(buf, (first + i) as u8, 4096) };
                let off = ((first + i) * 3 % 60 * 4096) as i64;
                cb(op, d.as_raw_fd(), buf as u64, 4096, off, (first + i) as u64)
            })
            .collect()
    };
    submit_then_peek(e, &f, direct(IOCB_CMD_PWRITE, 8, 0));
    submit_then_peek(e, &f, direct(IOCB_CMD_PREAD, 8, 8));
    let mut mixed = direct(IOCB_CMD_PWRITE, 4, 16);
    mixed.extend(reads(f.as_raw_fd(), 4, 4096));
    mixed.extend(direct(IOCB_CMD_PREAD, 4, 20));
    submit_then_peek(e, &f, mixed);
}

/// `RWF_NOWAIT` on a tmpfs file: tmpfs opens files without
/// `FMODE_NOWAIT`, so the kernel refuses the flag at submission
/// (`EOPNOTSUPP` from `io_submit`, the requests before it submitted, the
/// ones after it not), for reads and writes, alone and inside a batch.
fn tmpfs_nowait(e: &mut Env) {
    let fs = match Tmpfs::mount(16 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            e.rec(format!("skipped: {why}"));
            return;
        }
    };
    std::fs::write(fs.path("a"), vec![9u8; FILE]).expect("write tmpfs file");
    let f = open(&fs.path("a"), libc::O_RDWR);
    let fd = f.as_raw_fd();
    for batch in [1usize, 3] {
        for write in [false, true] {
            let mut cbs = if write { writes(fd, batch, 100, |i| (i * 5000) as i64) } else { reads(fd, batch, 100) };
            let mid = batch / 2;
            cbs[mid].aio_rw_flags = uaio::abi::RWF_NOWAIT;
            submit_then_peek(e, &f, cbs);
        }
    }
}

/// Submits `n` reads whose pointer array ends at an unreadable
/// page after `readable` pointers; records what was submitted and reaped.
fn pointers_into_unmapped_page(e: &mut Env, n: usize, readable: usize) {
    let f = cached_file(e);
    let ctx = e.setup(64);
    let cbs: Vec<&'static mut iocb> = reads(f.as_raw_fd(), n, 512).into_iter().map(leak).collect();
    let page = anon_pages(2);
    // SAFETY: the second page of a fresh two-page mapping of ours.
    unsafe { libc::mprotect(page.add(4096).cast(), 4096, libc::PROT_NONE) };
    // SAFETY: the array's readable part ends where the first page does.
    let arr = unsafe { page.add(4096 - 8 * readable) }.cast::<*mut iocb>();
    for (i, c) in cbs.into_iter().enumerate().take(readable) {
        e.name_iocb(&*c);
        // SAFETY: slot i lies in the readable page.
        unsafe { arr.add(i).write(c) };
    }
    // SAFETY: the first `readable` pointers are valid iocbs; the rest of the
    // array lies on a PROT_NONE page, which must give EFAULT for the first
    // pointer there, after the ones before it were submitted.
    let r = unsafe { e.aio.submit(ctx, n as i64, arr) };
    e.rec(format!("submit(n={n}) with {readable} readable pointers = {}", ret(r)));
    e.getevents(ctx, r.max(0), n as i64, Some(Duration::from_secs(10)));
}

/// `CLOCK_REALTIME_COARSE`: the time the kernel gives a file written
/// within the current clock tick, unless someone read the file's change
/// time since its last update (multigrain timestamps, Linux 6.13).
fn coarse_now() -> (i64, i64) {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) };
    (t.tv_sec, t.tv_nsec)
}

/// The file's change time, read with `statx` (which marks it read).
fn ctime_of(fd: i32) -> (i64, i64) {
    // SAFETY: statx of an open descriptor (empty path) into a zeroed struct.
    let sx = unsafe {
        let mut sx: libc::statx = std::mem::zeroed();
        libc::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_CTIME, &mut sx);
        sx
    };
    (sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec as i64)
}

/// One byte written at `off` with pwrite(2); the result.
fn pwrite_byte(fd: i32, off: i64) -> isize {
    // SAFETY: a one-byte write from a local.
    unsafe { libc::pwrite(fd, [7u8].as_ptr().cast(), 1, off) }
}

/// Rounds, each inside one clock tick: a write, then `between`, then a
/// second write, then a look at the change time. Returns whether some
/// round's file kept the tick's coarse time (the second write left the
/// inode alone), and how many calls failed. `None` when no round fitted
/// in one tick.
fn second_writes_keep_tick(fd: i32, mut between: impl FnMut() -> bool) -> (Option<bool>, usize) {
    let (mut valid, mut kept, mut failed) = (0, 0, 0);
    for _ in 0..400 {
        if valid == 40 {
            break;
        }
        let t0 = coarse_now();
        let tick = loop {
            let t = coarse_now();
            if t != t0 {
                break t;
            }
        };
        failed += usize::from(pwrite_byte(fd, 0) != 1);
        failed += usize::from(!between());
        failed += usize::from(pwrite_byte(fd, 0) != 1);
        let c = ctime_of(fd);
        if coarse_now() != tick {
            continue;
        }
        valid += 1;
        kept += usize::from(c == tick);
    }
    ((valid > 0).then_some(kept > 0), failed)
}

/// `io_submit` of a read and a write of the file between two plain
/// writes in one clock tick must not change the time the second write
/// gives the file: kernel AIO reads no file times, so the second write
/// finds the change time current and leaves the inode alone. A look at the
/// change time in between (the control, `statx`) makes it take a
/// fine-grained time on file systems with multigrain timestamps, which
/// costs an inode update per write (and `EAGAIN` for `RWF_NOWAIT` writes
/// on XFS).
fn submit_reads_no_file_times(e: &mut Env) {
    let f = e.file(&[0u8; 8192], libc::O_RDWR);
    let fd = f.as_raw_fd();
    let ctx = e.setup(8);
    let aio = e.aio;
    let rd = leak_buf(1);
    let wr = leak_buf(1);
    let (control, cfail) = second_writes_keep_tick(fd, || ctime_of(fd).0 > 0);
    let (after_submit, sfail) = second_writes_keep_tick(fd, || {
        let mut cbs = [
            cb(IOCB_CMD_PREAD, fd, rd.as_mut_ptr() as u64, 1, 4096, 1),
            cb(IOCB_CMD_PWRITE, fd, wr.as_ptr() as u64, 1, 4097, 2),
        ];
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
        let mut evs = [io_event::default(); 2];
        let mut ts = libc::timespec { tv_sec: 10, tv_nsec: 0 };
        // SAFETY: two iocbs alive until their events are reaped just below.
        let n = unsafe { aio.submit(ctx, 2, ptrs.as_mut_ptr()) };
        // SAFETY: room for two events.
        let got = unsafe { aio.getevents(ctx, n.max(0), 2, evs.as_mut_ptr(), &mut ts) };
        n == 2 && got == 2 && evs.iter().all(|ev| ev.res == 1)
    });
    let say = |k: Option<bool>| match k {
        None => "no round fitted in one clock tick",
        Some(true) => "yes",
        Some(false) => "no",
    };
    e.rec(format!("second write kept the tick's time after a statx of the change time (control): {}", say(control)));
    e.rec(format!("second write kept the tick's time after io_submit of a read and a write: {}", say(after_submit)));
    e.rec(format!("failed calls: {}", cfail + sfail));
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("inline/pointer_array_unreadable_after_17_of_20", |e| pointers_into_unmapped_page(e, 20, 17)),
        c("inline/pointer_array_unreadable_after_5_of_40", |e| pointers_into_unmapped_page(e, 40, 5)),
        c("inline/pointer_array_unreadable_after_32_of_33", |e| pointers_into_unmapped_page(e, 33, 32)),
        c("inline/cached_reads_ready_at_submit_batches_of_1_4_32", |e| {
            let f = cached_file(e);
            for n in [1, 4, 32] {
                submit_then_peek(e, &f, reads(f.as_raw_fd(), n, 4096));
            }
        }),
        c("inline/cached_unaligned_reads_ready_at_submit", |e| {
            let f = cached_file(e);
            let mut cbs = reads(f.as_raw_fd(), 6, 1000);
            for (i, c) in cbs.iter_mut().enumerate() {
                c.aio_offset += 13 * i as i64;
            }
            submit_then_peek(e, &f, cbs);
        }),
        c("inline/page_writes_ready_at_submit_batches_of_1_4_32", |e| {
            let f = cached_file(e);
            for n in [1, 4, 32] {
                submit_then_peek(e, &f, writes(f.as_raw_fd(), n, 4096, |i| (i * 4096) as i64));
            }
        }),
        c("inline/partial_page_writes_of_cached_pages_ready_at_submit", |e| {
            let f = cached_file(e);
            submit_then_peek(e, &f, writes(f.as_raw_fd(), 8, 100, |i| (i * 5000 + 3) as i64));
        }),
        c("inline/writes_past_the_end_ready_at_submit", |e| {
            let f = cached_file(e);
            submit_then_peek(e, &f, writes(f.as_raw_fd(), 4, 700, |i| (FILE + i * 9000) as i64));
        }),
        c("inline/tmpfs_writes_ready_at_submit", tmpfs_writes),
        c("inline/rwf_nowait_on_tmpfs_is_refused_at_submit", tmpfs_nowait),
        c("inline/tmpfs_reads_and_direct_io_ready_at_submit", tmpfs_reads_and_direct),
        c("inline/empty_writes_ready_at_submit", |e| {
            // A write of no bytes, alone, then first in a batch with a
            // write and a read of the bytes at its position: the kernel
            // answers it (0) inside io_submit. Before, it went to the
            // backend (and, on the thread pool, the requests after it
            // followed it there).
            let f = cached_file(e);
            submit_then_peek(e, &f, writes(f.as_raw_fd(), 1, 0, |_| 100));
            let mut cbs = writes(f.as_raw_fd(), 1, 0, |_| 100);
            cbs.extend(writes(f.as_raw_fd(), 1, 100, |_| 0));
            cbs.extend(reads(f.as_raw_fd(), 1, 100));
            submit_then_peek(e, &f, cbs);
        }),
        c("inline/rwf_noappend_writes_ready_at_submit", |e| {
            // RWF_NOAPPEND only chooses the position (over O_APPEND): such
            // writes of cached pages are copied inside io_submit like any
            // other (before, the flag sent them to the backend, and a reap
            // with min_nr = 0 at once found none of the batch's events).
            let f = cached_file(e);
            let a = reopen(&f, libc::O_RDWR | libc::O_APPEND);
            let mut cbs = writes(f.as_raw_fd(), 2, 4096, |i| (i * 8192) as i64);
            cbs.extend(writes(a.as_raw_fd(), 2, 100, |i| (i * 5000 + 3) as i64));
            cbs.extend(reads(f.as_raw_fd(), 1, 4096));
            for c in cbs.iter_mut().take(4) {
                c.aio_rw_flags = uaio::abi::RWF_NOAPPEND;
            }
            submit_then_peek(e, &f, cbs);
        }),
        c("inline/write_only_partial_page_writes_ready_at_submit", |e| {
            // A descriptor opened write-only (log files are, often with
            // O_APPEND) cannot read the page a partial write covers, which
            // uaio's look at the page cache did: every such write went to
            // the backend, and a reap with min_nr = 0 at once found few of
            // the events (the thread pool none) where the kernel's were all
            // there. Parts of cached pages, alone and in a batch, pages past
            // the end, and appends, alone and in a batch.
            let f = cached_file(e);
            let w = reopen(&f, libc::O_WRONLY);
            let a = reopen(&f, libc::O_WRONLY | libc::O_APPEND);
            submit_then_peek(e, &f, writes(w.as_raw_fd(), 1, 100, |_| 5003));
            submit_then_peek(e, &f, writes(w.as_raw_fd(), 4, 100, |i| (i * 5000 + 7) as i64));
            submit_then_peek(e, &f, writes(w.as_raw_fd(), 2, 700, |i| (FILE + 4096 + i * 9000) as i64));
            for _ in 0..3 {
                submit_then_peek(e, &f, writes(a.as_raw_fd(), 1, 100, |_| 0));
            }
            submit_then_peek(e, &f, writes(a.as_raw_fd(), 4, 100, |_| 0));
        }),
        c("inline/submit_reads_no_file_times_so_writes_in_one_tick_keep_its_time", submit_reads_no_file_times),
        c("inline/mixed_vectored_reads_and_writes_ready_at_submit", |e| {
            let f = cached_file(e);
            let fd = f.as_raw_fd();
            let mut cbs = Vec::new();
            for i in 0..8usize {
                let iov: &'static mut [iovec] = Box::leak(
                    (0..3)
                        .map(|k| {
                            let b = leak_buf(512);
                            b.fill((i * 3 + k) as u8);
                            iovec { iov_base: b.as_mut_ptr() as u64, iov_len: 512 }
                        })
                        .collect::<Vec<_>>()
                        .into_boxed_slice(),
                );
                let op = if i % 2 == 0 { IOCB_CMD_PREADV } else { IOCB_CMD_PWRITEV };
                cbs.push(cb(op, fd, iov.as_ptr() as u64, 3, (i * 8192 + 512) as i64, i as u64));
            }
            submit_then_peek(e, &f, cbs);
        }),
    ]
}
