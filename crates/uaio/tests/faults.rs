//! The fault-injection seam (`UAIO_FAULTS`, issue 7): injected `EIO`,
//! `ENOSPC`, short transfers and slow completions reach `res` exactly as
//! planned, the file holds what the results say, slow completions still
//! arrive (to a waiter, to the ring without any caller, through cancel and
//! through destroy), and the context keeps working afterwards.
//!
//! The plan is process-wide and read at the first `io_setup`, so this binary
//! sets it before its first uaio call. Every context numbers its own
//! requests, so the tests may run in parallel. Run it on both backends
//! (`UAIO_BACKEND=uring|threads`).
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::time::{Duration, Instant};

use uaio::abi::{
    aio_context_t, aio_ring, io_event, iocb, iovec, IOCB_CMD_FSYNC, IOCB_CMD_NOOP, IOCB_CMD_POLL, IOCB_CMD_PREAD,
    IOCB_CMD_PREADV, IOCB_CMD_PWRITE, IOCB_CMD_PWRITEV, IOCB_FLAG_RESFD,
};
use uaio::raw;

mod util;
use util::{cb, pipe};

const PLAN: &str = "eio:every=7,enospc:every=11,short:every=5,slow:every=3:ms=20";
const SLOW: Duration = Duration::from_millis(20);
const BLOCK: usize = 4096;

/// What the plan does to request number `n` (from 1, per context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Eio,
    Enospc,
    Short,
    Slow,
    Normal,
}

fn fate(n: u64) -> Fate {
    if n.is_multiple_of(7) {
        Fate::Eio
    } else if n.is_multiple_of(11) {
        Fate::Enospc
    } else if n.is_multiple_of(5) {
        Fate::Short
    } else if n.is_multiple_of(3) {
        Fate::Slow
    } else {
        Fate::Normal
    }
}

/// Sets the plan before this process's first uaio call.
fn init() {
    static ONCE: Once = Once::new();
    // SAFETY (edition 2021: safe call): set before any uaio call, which is
    // where the plan is read.
    ONCE.call_once(|| std::env::set_var("UAIO_FAULTS", PLAN));
}

/// A context, destroyed on drop unless already destroyed.
struct Ctx(aio_context_t);

impl Ctx {
    fn new(nr: u32) -> Ctx {
        init();
        let mut h: aio_context_t = 0;
        // SAFETY: `h` is a writable handle holding 0.
        let r = unsafe { raw::io_setup(nr, &mut h) };
        assert_eq!(r, 0, "io_setup");
        Ctx(h)
    }

    fn submit(&self, cbs: &mut [iocb]) -> i64 {
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
        // SAFETY: the iocbs and their buffers outlive their completions (the
        // callers reap every event, or destroy, before dropping them).
        unsafe { raw::io_submit(self.0, ptrs.len() as i64, ptrs.as_mut_ptr()) }
    }

    fn cancel(&self, cb: &mut iocb) -> i64 {
        // SAFETY: `cb` was submitted on this context.
        unsafe { raw::io_cancel(self.0, cb, std::ptr::null_mut()) }
    }

    /// Reaps exactly `n` events; the 30 s limit is a watchdog, not a
    /// measurement: a lost wake-up shows as missing events.
    fn reap(&self, n: usize) -> Vec<io_event> {
        let mut ev = vec![io_event::default(); n];
        let mut ts = libc::timespec { tv_sec: 30, tv_nsec: 0 };
        // SAFETY: `ev` has room for `n` events.
        let r = unsafe { raw::io_getevents(self.0, n as i64, n as i64, ev.as_mut_ptr(), &mut ts) };
        assert_eq!(r, n as i64, "io_getevents");
        ev
    }

    fn destroy(&mut self) -> i64 {
        // SAFETY: our own handle; a second destroy would only give EINVAL.
        let r = unsafe { raw::io_destroy(self.0) };
        self.0 = 0;
        r
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.0 != 0 {
            self.destroy();
        }
    }
}

/// The byte every block `i` is written with.
fn pat(i: usize) -> u8 {
    (i % 251) as u8 + 1
}

/// `len` bytes of `data` from `off`, or what there is.
fn range(data: &[u8], off: usize, len: usize) -> &[u8] {
    &data[off.min(data.len())..(off + len).min(data.len())]
}

fn file_bytes(f: &std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = f;
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Result a 4 KiB write numbered `n` must have.
fn write_res(n: u64) -> i64 {
    match fate(n) {
        Fate::Eio => -libc::EIO as i64,
        Fate::Enospc => -libc::ENOSPC as i64,
        Fate::Short => (BLOCK / 2) as i64,
        Fate::Slow | Fate::Normal => BLOCK as i64,
    }
}

/// Submits `cbs` in batches of `batch` (4 or more, so that no read is
/// served during submission and every request is numbered), reaping each
/// batch; returns the events by `aio_data` and, for each, the time from its
/// submission to its reaping.
fn run_batches(ctx: &Ctx, cbs: &mut [iocb], batch: usize) -> Vec<(io_event, Duration)> {
    let mut out = vec![(io_event::default(), Duration::ZERO); cbs.len()];
    for chunk in cbs.chunks_mut(batch) {
        let t = Instant::now();
        assert_eq!(ctx.submit(chunk), chunk.len() as i64);
        for e in ctx.reap(chunk.len()) {
            out[e.data as usize] = (e, t.elapsed());
        }
    }
    out
}

#[test]
fn reads_writes_and_syncs_get_exactly_the_planned_faults() {
    const N: usize = 210;
    let ctx = Ctx::new(64);
    let f = tempfile::tempfile().unwrap();
    let fd = f.as_raw_fd();
    let bufs: Vec<Vec<u8>> = (0..N).map(|i| vec![pat(i); BLOCK]).collect();

    // Writes 1..=N.
    let mut cbs: Vec<iocb> = (0..N)
        .map(|i| cb(IOCB_CMD_PWRITE, fd, bufs[i].as_ptr() as u64, BLOCK as u64, (i * BLOCK) as i64, i as u64))
        .collect();
    let got = run_batches(&ctx, &mut cbs, 10);
    let mut counts = [0usize; 5];
    for (i, (e, waited)) in got.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(e.res, write_res(n), "write number {n} ({:?})", fate(n));
        assert_eq!(e.obj, &cbs[i] as *const iocb as u64);
        if fate(n) == Fate::Slow {
            // Not a timing measurement: a held completion cannot be
            // released before its deadline, however loaded the machine.
            assert!(*waited >= SLOW, "slow write number {n} reaped after {waited:?}");
        }
        counts[fate(n) as usize] += 1;
    }
    println!(
        "writes: eio={} enospc={} short={} slow={} normal={}",
        counts[0], counts[1], counts[2], counts[3], counts[4]
    );

    // The file holds exactly what the results say.
    let data = file_bytes(&f);
    let end = (0..N).filter(|&i| write_res(i as u64 + 1) > 0).map(|i| i * BLOCK + write_res(i as u64 + 1) as usize);
    assert_eq!(data.len(), end.max().unwrap());
    for i in 0..N {
        let n = i as u64 + 1;
        let written = write_res(n).max(0) as usize;
        let blk = &data[(i * BLOCK).min(data.len())..((i + 1) * BLOCK).min(data.len())];
        assert!(blk[..written].iter().all(|&b| b == pat(i)), "block {i} (write {n}) lacks its data");
        assert!(blk[written..].iter().all(|&b| b == 0), "block {i} (write {n}) has more than its result says");
    }

    // Reads N+1..=2N of the same blocks.
    let mut rbufs: Vec<Vec<u8>> = (0..N).map(|_| vec![0xEEu8; BLOCK]).collect();
    let mut cbs: Vec<iocb> = (0..N)
        .map(|i| cb(IOCB_CMD_PREAD, fd, rbufs[i].as_mut_ptr() as u64, BLOCK as u64, (i * BLOCK) as i64, i as u64))
        .collect();
    let got = run_batches(&ctx, &mut cbs, 10);
    for (i, (e, _)) in got.iter().enumerate() {
        let n = (N + i) as u64 + 1;
        let avail = data.len().saturating_sub(i * BLOCK);
        let want = match fate(n) {
            Fate::Eio => -libc::EIO as i64,
            Fate::Enospc => -libc::ENOSPC as i64,
            Fate::Short => (BLOCK / 2).min(avail) as i64,
            _ => BLOCK.min(avail) as i64,
        };
        assert_eq!(e.res, want, "read number {n} ({:?})", fate(n));
        let k = want.max(0) as usize;
        assert_eq!(&rbufs[i][..k], range(&data, i * BLOCK, k), "read number {n} data");
        assert!(rbufs[i][k..].iter().all(|&b| b == 0xEE), "read number {n} wrote past its result");
    }

    // Syncs 2N+1..=2N+14 (7 fit in one batch: numbers 421..=434).
    let mut cbs: Vec<iocb> = (0..14).map(|i| cb(IOCB_CMD_FSYNC, fd, 0, 0, 0, i as u64)).collect();
    let got = run_batches(&ctx, &mut cbs, 7);
    for (i, (e, _)) in got.iter().enumerate() {
        let n = (2 * N + i) as u64 + 1;
        let want = match fate(n) {
            Fate::Eio => -libc::EIO as i64,
            Fate::Enospc => -libc::ENOSPC as i64,
            _ => 0,
        };
        assert_eq!(e.res, want, "fsync number {n} ({:?})", fate(n));
    }
    let next = 2 * N as u64 + 14 + 1;

    // The context keeps working: polls and NOOPs are never faulted, and the
    // numbering goes on where it was.
    let (r, w) = pipe();
    let mut poll = [cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1)];
    assert_eq!(ctx.submit(&mut poll), 1);
    assert_eq!(rustix::io::write(&w, b"x").unwrap(), 1);
    let e = ctx.reap(1);
    assert_eq!(e[0].res & libc::POLLIN as i64, libc::POLLIN as i64);
    let mut noop = [cb(IOCB_CMD_NOOP, fd, 0, 0, 0, 2)];
    assert_eq!(ctx.submit(&mut noop), 1);
    assert_eq!(ctx.reap(1)[0].res, 0);
    let mut cbs: Vec<iocb> = (0..8)
        .map(|i| cb(IOCB_CMD_PWRITE, fd, bufs[i].as_ptr() as u64, BLOCK as u64, ((N + i) * BLOCK) as i64, i as u64))
        .collect();
    let got = run_batches(&ctx, &mut cbs, 8);
    for (i, (e, _)) in got.iter().enumerate() {
        assert_eq!(e.res, write_res(next + i as u64), "write number {} after the faults", next + i as u64);
    }
}

#[test]
fn vectored_short_transfers_match_the_file() {
    // Numbers 1..=10: number 5 and 10 are short (half of 4 KiB: the first
    // iovec of 1 KiB whole and 1 KiB of the second).
    let ctx = Ctx::new(32);
    let f = tempfile::tempfile().unwrap();
    let fd = f.as_raw_fd();
    let a: Vec<Vec<u8>> = (0..5).map(|i| vec![pat(2 * i); 1024]).collect();
    let b: Vec<Vec<u8>> = (0..5).map(|i| vec![pat(2 * i + 1); 3072]).collect();
    let iovs: Vec<[iovec; 2]> = (0..5)
        .map(|i| {
            [
                iovec { iov_base: a[i].as_ptr() as u64, iov_len: 1024 },
                iovec { iov_base: b[i].as_ptr() as u64, iov_len: 3072 },
            ]
        })
        .collect();
    let mut cbs: Vec<iocb> =
        (0..5).map(|i| cb(IOCB_CMD_PWRITEV, fd, iovs[i].as_ptr() as u64, 2, (i * BLOCK) as i64, i as u64)).collect();
    let got = run_batches(&ctx, &mut cbs, 5);
    let data = file_bytes(&f);
    for (i, (e, _)) in got.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(e.res, write_res(n), "writev number {n}");
        let k = e.res.max(0) as usize;
        let mut want = a[i].clone();
        want.extend_from_slice(&b[i]);
        let end = (i * BLOCK + k).min(data.len());
        assert_eq!(&data[i * BLOCK..end], &want[..k], "writev number {n} data");
    }
    // Read back through two iovecs: numbers 6..=10.
    let mut ra: Vec<Vec<u8>> = (0..5).map(|_| vec![0xEE; 1024]).collect();
    let mut rb: Vec<Vec<u8>> = (0..5).map(|_| vec![0xEE; 3072]).collect();
    let riovs: Vec<[iovec; 2]> = (0..5)
        .map(|i| {
            [
                iovec { iov_base: ra[i].as_mut_ptr() as u64, iov_len: 1024 },
                iovec { iov_base: rb[i].as_mut_ptr() as u64, iov_len: 3072 },
            ]
        })
        .collect();
    let mut cbs: Vec<iocb> =
        (0..5).map(|i| cb(IOCB_CMD_PREADV, fd, riovs[i].as_ptr() as u64, 2, (i * BLOCK) as i64, i as u64)).collect();
    let got = run_batches(&ctx, &mut cbs, 5);
    for (i, (e, _)) in got.iter().enumerate() {
        let n = i as u64 + 6;
        let avail = data.len().saturating_sub(i * BLOCK);
        let want = match fate(n) {
            Fate::Eio => -libc::EIO as i64,
            Fate::Enospc => -libc::ENOSPC as i64,
            Fate::Short => (BLOCK / 2).min(avail) as i64,
            _ => BLOCK.min(avail) as i64,
        };
        assert_eq!(e.res, want, "readv number {n}");
        let k = want.max(0) as usize;
        let mut back = ra[i].clone();
        back.extend_from_slice(&rb[i]);
        assert_eq!(&back[..k], range(&data, i * BLOCK, k), "readv number {n} data");
        assert!(back[k..].iter().all(|&x| x == 0xEE), "readv number {n} wrote past its result");
    }
}

#[test]
fn cancel_of_slow_requests_gives_the_real_result_or_ecanceled() {
    // Numbers 1 and 2 are plain writes, 3 a slow read of an empty pipe (it
    // can only end by cancellation), then 4 and 5... see below.
    let ctx = Ctx::new(16);
    let f = tempfile::tempfile().unwrap();
    let fd = f.as_raw_fd();
    let (r, _w) = pipe();
    let buf = vec![7u8; BLOCK];
    let mut rbuf = vec![0u8; 64];
    let mut cbs = vec![
        cb(IOCB_CMD_PWRITE, fd, buf.as_ptr() as u64, BLOCK as u64, 0, 0),
        cb(IOCB_CMD_PWRITE, fd, buf.as_ptr() as u64, BLOCK as u64, BLOCK as i64, 1),
        cb(IOCB_CMD_PREAD, r.as_raw_fd(), rbuf.as_mut_ptr() as u64, 64, 0, 2),
    ];
    assert_eq!(ctx.submit(&mut cbs), 3);
    assert_eq!(ctx.cancel(&mut cbs[2]), -libc::EINPROGRESS as i64);
    let mut ev = ctx.reap(3);
    ev.sort_by_key(|e| e.data);
    assert_eq!(ev.iter().map(|e| e.res).collect::<Vec<_>>(), vec![4096, 4096, -libc::ECANCELED as i64]);
    assert!(rbuf.iter().all(|&b| b == 0));

    // Number 6 is slow, a file write: cancelled while held (or still
    // running, or already delivered when the machine is slow), it gets its
    // real result or -ECANCELED, and the file agrees. 4 and 5 go first.
    let mut cbs: Vec<iocb> = (0..3)
        .map(|i| cb(IOCB_CMD_PWRITE, fd, buf.as_ptr() as u64, BLOCK as u64, ((2 + i) * BLOCK) as i64, i as u64))
        .collect();
    assert_eq!(ctx.submit(&mut cbs), 3);
    let c = ctx.cancel(&mut cbs[2]);
    assert!(c == -libc::EINPROGRESS as i64 || c == -libc::EINVAL as i64, "cancel = {c}");
    let mut ev = ctx.reap(3);
    ev.sort_by_key(|e| e.data);
    assert_eq!(ev[0].res, 4096, "number 4");
    assert_eq!(ev[1].res, 2048, "number 5 (short)");
    let res = ev[2].res;
    assert!(res == 4096 || res == -libc::ECANCELED as i64, "number 6: {res}");
    if c == -libc::EINVAL as i64 {
        assert_eq!(res, 4096, "a request not pending any more was not cancelled");
    }
    let data = file_bytes(&f);
    let end = if res == 4096 { 5 * BLOCK } else { 3 * BLOCK + 2048 };
    assert_eq!(data.len(), end, "the file agrees with number 6's result {res}");
}

#[test]
fn destroy_waits_for_held_completions() {
    const N: usize = 30;
    let mut ctx = Ctx::new(64);
    let f = tempfile::tempfile().unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: eventfd(2); the new descriptor is owned below.
    let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) };
    let bufs: Vec<Vec<u8>> = (0..N).map(|i| vec![pat(i); BLOCK]).collect();
    let mut cbs: Vec<iocb> = (0..N)
        .map(|i| {
            let mut c = cb(IOCB_CMD_PWRITE, fd, bufs[i].as_ptr() as u64, BLOCK as u64, (i * BLOCK) as i64, i as u64);
            c.aio_flags = IOCB_FLAG_RESFD;
            c.aio_resfd = efd.as_raw_fd() as u32;
            c
        })
        .collect();
    assert_eq!(ctx.submit(&mut cbs), N as i64);
    assert_eq!(ctx.destroy(), 0);
    // Every request completed before destroy returned (each completion
    // signals the eventfd), slow ones included, and the file is complete.
    let mut v = 0u64;
    // SAFETY: an 8-byte read into `v`.
    let k = unsafe { libc::read(efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    assert_eq!((k, v), (8, N as u64), "completions signalled before destroy returned");
    let data = file_bytes(&f);
    for i in 0..N {
        let written = write_res(i as u64 + 1).max(0) as usize;
        let blk = &data[(i * BLOCK).min(data.len())..((i + 1) * BLOCK).min(data.len())];
        assert!(blk[..written].iter().all(|&b| b == pat(i)), "block {i}");
        assert!(blk[written..].iter().all(|&b| b == 0), "block {i}");
    }
}

#[test]
fn held_completions_reach_the_ring_without_any_caller() {
    // Numbers 1..=3: the third is slow. Nobody calls into uaio after the
    // submission: the completions must still reach the ring, where a
    // program reaping in user space finds them.
    let ctx = Ctx::new(8);
    let f = tempfile::tempfile().unwrap();
    let buf = vec![1u8; BLOCK];
    let mut cbs: Vec<iocb> = (0..3)
        .map(|i| cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_ptr() as u64, BLOCK as u64, (i * BLOCK) as i64, i as u64))
        .collect();
    assert_eq!(ctx.submit(&mut cbs), 3);
    let ring = ctx.0 as *const aio_ring;
    let start = Instant::now();
    loop {
        // SAFETY: the ring header of a live context is mapped and readable.
        let (head, tail) = unsafe { (std::ptr::read_volatile(&(*ring).head), std::ptr::read_volatile(&(*ring).tail)) };
        if tail.wrapping_sub(head) == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "watchdog: {} of 3 events in the ring", tail - head);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut ev = ctx.reap(3);
    ev.sort_by_key(|e| e.data);
    assert!(ev.iter().all(|e| e.res == 4096));
}
