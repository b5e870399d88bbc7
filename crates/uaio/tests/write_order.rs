//! Buffered writes to one file land in submission order, as on the kernel.
//!
//! Kernel AIO copies a buffered write into the page cache inside
//! `io_submit`, so of several writes to the same bytes the last one
//! submitted is what the file holds. A program that rewrites a block (a log
//! head, a superblock) relies on it. Each case here runs on kernel AIO and on
//! uaio (whichever backend this process runs; CI runs the file on both) and
//! compares the file's contents. Overlapping writes are submitted in one
//! batch and in consecutive `io_submit` calls, with and without a reap in
//! between, on a file opened with `O_APPEND` off, and on the file system
//! under the test's temporary directory.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PWRITEV};
use uaio::raw;

mod util;
use util::cb;

/// Which implementation a run uses.
#[derive(Clone, Copy, Debug)]
enum Aio {
    Kernel,
    Uaio,
}

impl Aio {
    fn setup(self, nr: u32) -> aio_context_t {
        let mut ctx: aio_context_t = 0;
        let r = match self {
            // SAFETY: io_setup(2) writes the handle into `ctx`.
            Aio::Kernel => unsafe { libc::syscall(libc::SYS_io_setup, nr as libc::c_long, &mut ctx) as i64 },
            // SAFETY: as above, uaio's entry point.
            Aio::Uaio => unsafe { raw::io_setup(nr, &mut ctx) },
        };
        assert_eq!(r, 0, "{self:?} io_setup");
        ctx
    }

    fn submit(self, ctx: aio_context_t, cbs: &mut [iocb]) {
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
        let n = ptrs.len() as i64;
        let r = match self {
            // SAFETY: `ptrs` holds `n` iocbs whose buffers outlive the
            // requests (the caller reaps every one before dropping them).
            Aio::Kernel => unsafe { libc::syscall(libc::SYS_io_submit, ctx, n, ptrs.as_mut_ptr()) as i64 },
            // SAFETY: as above.
            Aio::Uaio => unsafe { raw::io_submit(ctx, n, ptrs.as_mut_ptr()) },
        };
        assert_eq!(r, n, "{self:?} io_submit");
    }

    fn reap(self, ctx: aio_context_t, n: usize) -> Vec<io_event> {
        let mut evs = vec![io_event::default(); n];
        let mut got = 0;
        while got < n {
            let want = (n - got) as i64;
            let out = evs[got..].as_mut_ptr();
            let r = match self {
                // SAFETY: room for `want` events at `out`; no timeout.
                Aio::Kernel => unsafe {
                    let r =
                        libc::syscall(libc::SYS_io_getevents, ctx, want, want, out, std::ptr::null::<libc::timespec>());
                    if r < 0 {
                        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
                    } else {
                        r as i64
                    }
                },
                // SAFETY: as above.
                Aio::Uaio => unsafe { raw::io_getevents(ctx, want, want, out, std::ptr::null_mut()) },
            };
            // The kernel's wait ends with EINTR when io_uring queues task
            // work to this thread (the teardown of an earlier round's
            // ring does), with no signal: the wait goes on.
            if r == -(libc::EINTR as i64) {
                continue;
            }
            assert!(r > 0, "{self:?} io_getevents: {r}");
            got += r as usize;
        }
        evs
    }

    /// `io_getevents` for at least `min` events into `out`, for at most
    /// `secs` seconds.
    fn wait(self, ctx: aio_context_t, min: i64, out: &mut [io_event], secs: i64) -> i64 {
        let ts = libc::timespec { tv_sec: secs, tv_nsec: 0 };
        let (nr, ptr) = (out.len() as i64, out.as_mut_ptr());
        match self {
            // SAFETY: room for `nr` events at `ptr`; the timeout lives
            // across the call.
            Aio::Kernel => unsafe { libc::syscall(libc::SYS_io_getevents, ctx, min, nr, ptr, &ts) as i64 },
            // SAFETY: as above.
            Aio::Uaio => unsafe { raw::io_getevents(ctx, min, nr, ptr, &ts as *const libc::timespec as *mut _) },
        }
    }

    fn destroy(self, ctx: aio_context_t) {
        let r = match self {
            // SAFETY: a context of this process.
            Aio::Kernel => unsafe { libc::syscall(libc::SYS_io_destroy, ctx) as i64 },
            // SAFETY: as above.
            Aio::Uaio => unsafe { raw::io_destroy(ctx) },
        };
        assert_eq!(r, 0, "{self:?} io_destroy");
    }
}

/// How the overlapping writes are handed over.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// All in one `io_submit`.
    OneBatch,
    /// One `io_submit` each, reaped only at the end.
    OneByOne,
    /// In batches of 3.
    Threes,
}

/// Writes `rounds` × `writers` overlapping blocks to one file (every
/// writer's block covers `span` bytes at offset 0 or 1 block in, with its
/// own byte pattern, half of them vectored), reaps them all, and returns
/// the results and the file's contents.
fn run(aio: Aio, shape: Shape, writers: usize, block: usize, seed: u8) -> (Vec<i64>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("f");
    let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    // Some pages cached, some not: the first block exists, the rest is a hole.
    file.write_all_at(&vec![0xEE; block], 0).expect("prefill");
    let ctx = aio.setup(256);
    let bufs: Vec<Vec<u8>> = (0..writers)
        .map(|i| {
            let byte = seed.wrapping_add(i as u8).max(1);
            // Odd writers cover the first two blocks, even ones the second.
            let len = if i % 2 == 1 { 2 * block } else { block };
            vec![byte; len]
        })
        .collect();
    let iovs: Vec<libc::iovec> =
        bufs.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut cbs: Vec<iocb> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let off = if i % 2 == 1 { 0 } else { block as i64 };
            if i % 4 == 3 {
                cb(IOCB_CMD_PWRITEV, file.as_raw_fd(), &iovs[i] as *const libc::iovec as u64, 1, off, i as u64)
            } else {
                cb(IOCB_CMD_PWRITE, file.as_raw_fd(), b.as_ptr() as u64, b.len() as u64, off, i as u64)
            }
        })
        .collect();
    match shape {
        Shape::OneBatch => aio.submit(ctx, &mut cbs),
        Shape::OneByOne => cbs.chunks_mut(1).for_each(|c| aio.submit(ctx, c)),
        Shape::Threes => cbs.chunks_mut(3).for_each(|c| aio.submit(ctx, c)),
    }
    let mut evs = aio.reap(ctx, writers);
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let mut got = vec![0u8; 2 * block];
    let n = file.read_at(&mut got, 0).expect("read back");
    got.truncate(n);
    (evs.iter().map(|e| e.res).collect(), got)
}

fn compare(shape: Shape, writers: usize, block: usize) {
    for round in 0..20u8 {
        let seed = round.wrapping_mul(37);
        let want = run(Aio::Kernel, shape, writers, block, seed);
        let got = run(Aio::Uaio, shape, writers, block, seed);
        assert_eq!(got.0, want.0, "{shape:?} round {round}: results on uaio ({}) vs kernel", uaio::backend_name());
        if got.1 != want.1 {
            let first = got.1.iter().zip(&want.1).position(|(a, b)| a != b);
            panic!(
                "{shape:?} round {round}: file on uaio ({}) differs from the kernel's: {} vs {} bytes, first \
                 difference at {first:?} (uaio {:?}, kernel {:?})",
                uaio::backend_name(),
                got.1.len(),
                want.1.len(),
                first.map(|i| got.1[i]),
                first.map(|i| want.1[i]),
            );
        }
    }
}

#[test]
fn overlapping_writes_in_one_batch_keep_submission_order() {
    compare(Shape::OneBatch, 16, 4096);
}

#[test]
fn overlapping_writes_one_per_submit_keep_submission_order() {
    compare(Shape::OneByOne, 16, 4096);
}

#[test]
fn overlapping_large_writes_in_batches_keep_submission_order() {
    compare(Shape::Threes, 12, 256 * 1024);
}

#[test]
fn partial_page_writes_keep_submission_order() {
    compare(Shape::OneBatch, 16, 1000);
}

/// A partial write of an uncached page (which needs the page read first,
/// so it cannot be done without waiting), then a whole-page write of the
/// same page (which a file system such as XFS takes at once): the file
/// keeps the second.
fn uncached_then_whole_page(aio: Aio, round: u8) -> (Vec<i64>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file =
        File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("f")).expect("create");
    file.write_all_at(&vec![0xEE; 3 * 4096], 0).expect("prefill");
    file.sync_all().expect("fsync");
    // SAFETY: posix_fadvise on an open descriptor; it only drops clean
    // cached pages of the file.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let ctx = aio.setup(8);
    let small = [round.max(1); 100];
    let whole = vec![round.wrapping_add(100).max(1); 4096];
    let page = 4096 * (round as i64 % 3);
    let mut cbs = vec![
        cb(IOCB_CMD_PWRITE, file.as_raw_fd(), small.as_ptr() as u64, 100, page + 10, 1),
        cb(IOCB_CMD_PWRITE, file.as_raw_fd(), whole.as_ptr() as u64, 4096, page, 2),
    ];
    if round & 1 == 0 {
        aio.submit(ctx, &mut cbs);
    } else {
        cbs.chunks_mut(1).for_each(|c| aio.submit(ctx, c));
    }
    let mut evs = aio.reap(ctx, 2);
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let mut got = vec![0u8; 3 * 4096];
    let n = file.read_at(&mut got, 0).expect("read back");
    got.truncate(n);
    (evs.iter().map(|e| e.res).collect(), got)
}

#[test]
fn whole_page_write_after_uncached_partial_one_wins() {
    for round in 0..12u8 {
        let want = uncached_then_whole_page(Aio::Kernel, round);
        let got = uncached_then_whole_page(Aio::Uaio, round);
        assert_eq!(got.0, want.0, "round {round}: results on uaio ({}) vs kernel", uaio::backend_name());
        assert!(got.1 == want.1, "round {round}: file on uaio ({}) differs from the kernel's", uaio::backend_name());
    }
}

/// Where a file system keeps buffered writes that io_uring cannot do
/// without a worker: tmpfs (`/dev/shm`), when it is mounted there.
fn tmpfs_dir() -> Option<std::path::PathBuf> {
    let st = rustix::fs::statfs("/dev/shm").ok()?;
    (st.f_type as i64 == libc::TMPFS_MAGIC).then(|| std::path::PathBuf::from("/dev/shm"))
}

/// `threads` threads take turns, strictly one after the other, each
/// submitting one buffered write per turn (overlapping, of varied lengths
/// and offsets, each `extra` bytes longer) to one file, through one shared
/// context or one context each; the file's contents once every write is
/// reaped.
fn taking_turns(
    aio: Aio,
    dir: &std::path::Path,
    threads: usize,
    own_contexts: bool,
    seed: u8,
    extra: usize,
) -> Vec<u8> {
    use std::sync::{Condvar, Mutex};
    const ROUNDS: usize = 16;
    let file = tempfile::tempfile_in(dir).expect("create");
    file.write_all_at(&[b'.'; 16384], 0).expect("prefill");
    let bufs: Vec<Vec<u8>> =
        (0..threads * ROUNDS).map(|k| vec![seed.wrapping_add(k as u8).max(1); 4000 + extra]).collect();
    let shared = (!own_contexts).then(|| aio.setup(256));
    let turn = (Mutex::new(0usize), Condvar::new());
    std::thread::scope(|s| {
        for id in 0..threads {
            let (file, bufs, turn) = (&file, &bufs, &turn);
            s.spawn(move || {
                let ctx = shared.unwrap_or_else(|| aio.setup(64));
                for _ in 0..ROUNDS {
                    let mut k = turn.0.lock().unwrap();
                    while *k % threads != id {
                        k = turn.1.wait(k).unwrap();
                    }
                    let (len, off) = (1000 + (*k * 37) % 3000 + extra, (*k * 411) % 6000);
                    let mut one = [cb(
                        IOCB_CMD_PWRITE,
                        file.as_raw_fd(),
                        bufs[*k].as_ptr() as u64,
                        len as u64,
                        off as i64,
                        *k as u64,
                    )];
                    aio.submit(ctx, &mut one);
                    *k += 1;
                    turn.1.notify_all();
                }
                if shared.is_none() {
                    let evs = aio.reap(ctx, ROUNDS);
                    assert!(evs.iter().all(|e| e.res > 0), "{aio:?}: {evs:?}");
                    aio.destroy(ctx);
                }
            });
        }
    });
    if let Some(ctx) = shared {
        let evs = aio.reap(ctx, threads * ROUNDS);
        assert!(evs.iter().all(|e| e.res > 0), "{aio:?}: {evs:?}");
        aio.destroy(ctx);
    }
    let mut got = vec![0u8; 16384 + extra];
    let n = file.read_at(&mut got, 0).expect("read back");
    got.truncate(n);
    got
}

/// Threads taking turns, on tmpfs (with writes over 1 MiB, which uaio
/// leaves to the backend, where io_uring sends each to a worker of the
/// submitting thread) and on the temporary directory's file system: the
/// file keeps the last writer's bytes.
fn compare_turns(own_contexts: bool) {
    let tmp = std::env::temp_dir();
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([tmp]).collect();
    if dirs.len() == 1 {
        println!("tmpfs case skipped: /dev/shm is not a tmpfs here");
    }
    for dir in &dirs {
        let extra = if Some(dir) == tmpfs_dir().as_ref() { 1 << 20 } else { 0 };
        for round in 0..8u8 {
            let seed = round.wrapping_mul(29);
            let want = taking_turns(Aio::Kernel, dir, 4, own_contexts, seed, extra);
            let got = taking_turns(Aio::Uaio, dir, 4, own_contexts, seed, extra);
            assert!(
                got == want,
                "{} round {round}: file on uaio ({}) differs from the kernel's (first difference at {:?})",
                dir.display(),
                uaio::backend_name(),
                got.iter().zip(&want).position(|(a, b)| a != b)
            );
        }
    }
}

#[test]
fn threads_taking_turns_on_one_context_keep_submission_order() {
    compare_turns(false);
}

#[test]
fn threads_taking_turns_with_a_context_each_keep_submission_order() {
    compare_turns(true);
}

/// Many overlapping partial-page writes in one `io_submit` to a file just
/// dropped from the page cache (on XFS, io_uring did later ones at once,
/// past earlier ones that had to read their page first).
fn batch_after_cache_drop(aio: Aio, dir: &std::path::Path, n: usize, seed: u8) -> Vec<u8> {
    let file = tempfile::tempfile_in(dir).expect("create");
    file.write_all_at(&[b'.'; 65536], 0).expect("prefill");
    file.sync_all().expect("fsync");
    // SAFETY: posix_fadvise on an open descriptor; it only drops clean
    // cached pages of the file.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let bufs: Vec<Vec<u8>> = (0..n).map(|i| vec![seed.wrapping_add(i as u8).max(1); 3000]).collect();
    let mut cbs: Vec<iocb> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| cb(IOCB_CMD_PWRITE, file.as_raw_fd(), b.as_ptr() as u64, 3000, 1000 * i as i64, i as u64))
        .collect();
    let ctx = aio.setup(256);
    aio.submit(ctx, &mut cbs);
    let evs = aio.reap(ctx, n);
    assert!(evs.iter().all(|e| e.res == 3000), "{aio:?}: {evs:?}");
    aio.destroy(ctx);
    let mut got = vec![0u8; 65536];
    let len = file.read_at(&mut got, 0).expect("read back");
    got.truncate(len);
    got
}

#[test]
fn a_large_batch_after_a_cache_drop_keeps_submission_order() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        for round in 0..6u8 {
            let n = 32 + 8 * round as usize;
            let want = batch_after_cache_drop(Aio::Kernel, dir, n, round);
            let got = batch_after_cache_drop(Aio::Uaio, dir, n, round);
            assert!(
                got == want,
                "{} round {round}: file on uaio ({}) differs from the kernel's",
                dir.display(),
                uaio::backend_name()
            );
        }
    }
}

/// A buffered write waiting for its file's earlier ones can be cancelled
/// (uaio only: the kernel's are done inside `io_submit`). Whether the
/// cancel finds it waiting or done, every event arrives, and the file
/// holds the last write that was not cancelled.
#[test]
fn a_cancelled_waiting_write_completes_and_the_others_keep_order() {
    let dir = tmpfs_dir().unwrap_or_else(std::env::temp_dir);
    let mut cancelled = 0;
    for round in 0..20u8 {
        let file = tempfile::tempfile_in(&dir).expect("create");
        // Over 1 MiB: uaio leaves the writes to the backend, where the
        // later ones wait for their turn.
        const LEN: usize = (2 << 20) + 8192;
        let bufs: Vec<Vec<u8>> = (1..=4u8).map(|i| vec![i + round * 4; LEN]).collect();
        let mut cbs: Vec<iocb> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| cb(IOCB_CMD_PWRITE, file.as_raw_fd(), b.as_ptr() as u64, LEN as u64, 0, i as u64))
            .collect();
        let ctx = Aio::Uaio.setup(8);
        Aio::Uaio.submit(ctx, &mut cbs);
        let mut ev = io_event::default();
        // SAFETY: the last iocb was submitted on `ctx` and is alive.
        let r = unsafe { raw::io_cancel(ctx, &mut cbs[3], &mut ev) };
        // As the kernel's: the cancel has begun, or the request is no longer pending.
        assert!(r == -(libc::EINPROGRESS as i64) || r == -(libc::EINVAL as i64), "io_cancel: {r}");
        let mut evs = Aio::Uaio.reap(ctx, 4);
        evs.sort_by_key(|e| e.data);
        Aio::Uaio.destroy(ctx);
        cancelled += (evs[3].res < 0) as u32;
        let res: Vec<i64> = evs.iter().map(|e| e.res).collect();
        assert_eq!(res[..3], [LEN as i64; 3], "round {round}");
        let mut got = vec![0u8; LEN];
        assert_eq!(file.read_at(&mut got, 0).expect("read back"), LEN);
        match res[3] {
            r if r == LEN as i64 => assert!(got == bufs[3], "round {round}: the last write did not land last"),
            r if r == -(libc::ECANCELED as i64) => {
                assert!(got == bufs[2], "round {round}: the cancelled write landed, or an earlier one last")
            }
            r => panic!("round {round}: the cancelled write ended with {r}"),
        }
    }
    println!("{cancelled} of 20 writes cancelled while they waited ({})", uaio::backend_name());
}

/// A sync submitted after buffered writes covers them, as kernel AIO's
/// does (they are in the page cache before it starts): the writes'
/// events come before the sync's, as on the kernel.
fn writes_then_sync(aio: Aio, dir: &std::path::Path, round: u8) -> Vec<u64> {
    let file = tempfile::tempfile_in(dir).expect("create");
    let bufs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + round; 64 * 1024]).collect();
    let mut cbs: Vec<iocb> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| cb(IOCB_CMD_PWRITE, file.as_raw_fd(), b.as_ptr() as u64, b.len() as u64, 0, i as u64))
        .collect();
    let op = if round & 1 == 0 { uaio::abi::IOCB_CMD_FSYNC } else { uaio::abi::IOCB_CMD_FDSYNC };
    cbs.push(cb(op, file.as_raw_fd(), 0, 0, 0, 9));
    let ctx = aio.setup(8);
    if round % 4 < 2 {
        aio.submit(ctx, &mut cbs);
    } else {
        cbs.chunks_mut(1).for_each(|c| aio.submit(ctx, c));
    }
    let evs = aio.reap(ctx, 5);
    aio.destroy(ctx);
    assert!(evs.iter().all(|e| e.res >= 0), "{aio:?}: {evs:?}");
    let mut got = vec![0u8; 64 * 1024];
    file.read_at(&mut got, 0).expect("read back");
    assert!(got == bufs[3], "{aio:?} round {round}: the last write did not land last");
    evs.iter().map(|e| e.data).collect()
}

#[test]
fn a_sync_comes_after_the_writes_submitted_before_it() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        for round in 0..12u8 {
            let want = writes_then_sync(Aio::Kernel, dir, round);
            let got = writes_then_sync(Aio::Uaio, dir, round);
            let last = |v: &[u64]| v.iter().position(|&d| d == 9);
            assert_eq!(last(&want), Some(4), "kernel, round {round}: {want:?}");
            assert_eq!(
                last(&got),
                Some(4),
                "{} round {round}: events on uaio ({}): {got:?}",
                dir.display(),
                uaio::backend_name()
            );
        }
    }
}

/// Two contexts write one file in turn while the first context's waiter
/// sleeps for more events than will come soon (its other request is a
/// POLL of an empty pipe): the second context's write must still
/// complete, as on the kernel, where both writes are done inside
/// `io_submit`. Returns the second write's result and the file's first
/// bytes.
fn second_context_write_while_first_waits(aio: Aio, dir: &std::path::Path) -> (i64, Vec<u8>) {
    const BIG: usize = 32 << 20;
    let file = tempfile::tempfile_in(dir).expect("create");
    let (pipe_r, pipe_w) = util::pipe();
    let big = vec![1u8; BIG];
    let small = vec![2u8; 4096];
    let a = aio.setup(8);
    let b = aio.setup(8);
    let mut first = [
        cb(IOCB_CMD_PWRITE, file.as_raw_fd(), big.as_ptr() as u64, BIG as u64, 0, 1),
        cb(uaio::abi::IOCB_CMD_POLL, pipe_r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 2),
    ];
    aio.submit(a, &mut first);
    let waiter = std::thread::spawn(move || aio.wait(a, 2, &mut [io_event::default(); 2], 30));
    // The first context's waiter is asleep before its big write completes.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let mut second = [cb(IOCB_CMD_PWRITE, file.as_raw_fd(), small.as_ptr() as u64, 4096, 0, 3)];
    aio.submit(b, &mut second);
    let mut ev = [io_event::default(); 1];
    let n = aio.wait(b, 1, &mut ev, 20);
    assert_eq!(n, 1, "{aio:?}: the second context's write gave no event in 20 s");
    // The POLL completes; the waiter leaves with both events.
    rustix::io::write(&pipe_w, b"x").expect("pipe write");
    assert_eq!(waiter.join().expect("waiter"), 2, "{aio:?}: first context's events");
    aio.destroy(a);
    aio.destroy(b);
    let mut got = vec![0u8; 8192];
    file.read_at(&mut got, 0).expect("read back");
    (ev[0].res, got)
}

#[test]
fn a_waiter_asleep_for_more_events_does_not_hold_up_another_context_s_write() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        let want = second_context_write_while_first_waits(Aio::Kernel, dir);
        let got = second_context_write_while_first_waits(Aio::Uaio, dir);
        assert_eq!(got.0, want.0, "{}: result on uaio ({})", dir.display(), uaio::backend_name());
        assert!(
            got.1 == want.1,
            "{}: file on uaio ({}) differs from the kernel's",
            dir.display(),
            uaio::backend_name()
        );
    }
}

/// Buffered writes submitted, then another file put on their descriptor's
/// number (closing it) before they are reaped: the writes go
/// to the file the descriptor named at `io_submit`, as the kernel's (done
/// inside `io_submit`) do, and nothing goes to the other file.
fn close_and_reuse_the_number(aio: Aio, dir: &std::path::Path, n: usize, size: usize) -> (Vec<i64>, Vec<u8>, u64) {
    let d = tempfile::tempdir_in(dir).expect("temporary directory");
    let (p1, p2) = (d.path().join("first"), d.path().join("second"));
    let first = File::options().read(true).write(true).create(true).truncate(true).open(&p1).expect("create");
    File::create(&p2).expect("create");
    let fd = first.as_raw_fd();
    let bufs: Vec<Vec<u8>> = (0..n).map(|i| vec![b'A' + i as u8; size]).collect();
    let mut cbs: Vec<iocb> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| cb(IOCB_CMD_PWRITE, fd, b.as_ptr() as u64, size as u64, (i * size) as i64, i as u64))
        .collect();
    let ctx = aio.setup(64);
    aio.submit(ctx, &mut cbs);
    // The number names the second file from now on: `dup2` closes the
    // first file's descriptor and puts the second there in one step (other
    // tests of this process open files meanwhile, so a close then an open
    // might not land on the same number).
    let second = File::options().read(true).write(true).open(&p2).expect("open");
    // SAFETY: dup2 onto the first file's descriptor, which `first` gives
    // up ownership of just below; the number then belongs to `_on_number`.
    let r = unsafe { libc::dup2(second.as_raw_fd(), fd) };
    assert_eq!(r, fd, "dup2");
    let _on_number = {
        use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
        // SAFETY: the number is open (the second file) and owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(first.into_raw_fd()) }
    };
    let mut evs = aio.reap(ctx, n);
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let second_len = second.metadata().expect("stat").len();
    (evs.iter().map(|e| e.res).collect(), std::fs::read(&p1).expect("read back"), second_len)
}

#[test]
fn writes_go_to_the_file_their_descriptor_named_at_submission() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        // The larger writes (over 1 MiB) go to the backend on every file system.
        for (n, size) in [(8, 4096), (4, (1 << 20) + 4096)] {
            let want = close_and_reuse_the_number(Aio::Kernel, dir, n, size);
            let got = close_and_reuse_the_number(Aio::Uaio, dir, n, size);
            let what = format!("{} {n} x {size}: uaio ({})", dir.display(), uaio::backend_name());
            assert_eq!(got.0, want.0, "{what}: results");
            assert_eq!(got.2, want.2, "{what}: bytes written into the file opened on the number");
            assert!(got.1 == want.1, "{what}: the first file differs from the kernel's");
        }
    }
}

/// Buffered writes, then a direct write over the same bytes, in one
/// `io_submit` or two: the direct write comes last, as on the kernel (the
/// buffered ones are in the page cache before it starts, and it writes
/// them back and replaces them). Then a direct read sees the file as the
/// kernel's does. `None` when the file system refuses `O_DIRECT`.
fn buffered_then_direct(aio: Aio, dir: &std::path::Path, round: u8) -> Option<(Vec<i64>, Vec<u8>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = tempfile::tempdir_in(dir).expect("temporary directory");
    let path = d.path().join("f");
    let buffered = File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    let direct = File::options().read(true).write(true).custom_flags(libc::O_DIRECT).open(&path).ok()?;
    let mut z = uaio::AlignedBuf::new(4096);
    z.fill(b'Z');
    direct.write_all_at(&z, 0).ok()?;
    let mut x = uaio::AlignedBuf::new(4096);
    x.fill(b'X' + round % 3);
    let (k, o) = (vec![b'k'; 100], vec![b'o'; 100]);
    let mut back = uaio::AlignedBuf::new(4096);
    let mut cbs = vec![
        cb(IOCB_CMD_PWRITE, buffered.as_raw_fd(), k.as_ptr() as u64, 100, 100, 1),
        cb(IOCB_CMD_PWRITE, buffered.as_raw_fd(), o.as_ptr() as u64, 100, 200, 2),
        cb(IOCB_CMD_PWRITE, direct.as_raw_fd(), x.as_ptr() as u64, 4096, 0, 3),
    ];
    let mut read = [cb(uaio::abi::IOCB_CMD_PREAD, direct.as_raw_fd(), back.as_mut_ptr() as u64, 4096, 0, 4)];
    let ctx = aio.setup(8);
    if round & 1 == 0 {
        aio.submit(ctx, &mut cbs);
    } else {
        cbs.chunks_mut(2).for_each(|c| aio.submit(ctx, c));
    }
    let mut evs = aio.reap(ctx, 3);
    aio.submit(ctx, &mut read);
    evs.extend(aio.reap(ctx, 1));
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let mut got = back.to_vec();
    let mut file = vec![0u8; 4096];
    buffered.read_at(&mut file, 0).expect("read back");
    got.extend(file);
    Some((evs.iter().map(|e| e.res).collect(), got))
}

#[test]
fn a_direct_write_after_buffered_ones_comes_last() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        for round in 0..10u8 {
            let Some(want) = buffered_then_direct(Aio::Kernel, dir, round) else {
                println!("{}: skipped, O_DIRECT refused there", dir.display());
                break;
            };
            let got = buffered_then_direct(Aio::Uaio, dir, round).expect("O_DIRECT on uaio's turn");
            let what = format!("{} round {round}: uaio ({})", dir.display(), uaio::backend_name());
            assert_eq!(got.0, want.0, "{what}: results");
            assert!(
                got.1 == want.1,
                "{what}: direct read then file differ from the kernel's at {:?}",
                got.1.iter().zip(&want.1).position(|(a, b)| a != b)
            );
        }
    }
}

/// 48 buffered writes of 1 to 3 blocks (some shifted by 100 bytes) at
/// random places in a 16-block file: a third synchronous (`RWF_DSYNC`
/// through a descriptor opened `O_DSYNC`, which never runs inside
/// `io_submit`), a few appending (`RWF_APPEND`),
/// the others plain, submitted one per call or in fours, reaped only at the
/// end. Plain writes run inline while synchronous ones to other bytes are
/// still in the backend; returns the results and the file.
fn mixed_sync_and_plain(aio: Aio, dir: &std::path::Path, seed: u64) -> (Vec<i64>, Vec<u8>) {
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 4096;
    let path = dir.join(format!("mixed-{seed}"));
    let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    let sync_file =
        File::options().read(true).write(true).custom_flags(libc::O_DSYNC).open(&path).expect("open O_DSYNC");
    std::fs::remove_file(&path).expect("unlink");
    file.write_all_at(&vec![0xEE; 16 * BLOCK], 0).expect("prefill");
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = |n: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let bufs: Vec<Vec<u8>> = (0..48)
        .map(|i| vec![(seed as u8).wrapping_mul(7).wrapping_add(i as u8) | 1; (1 + next(3) as usize) * BLOCK])
        .collect();
    let ctx = aio.setup(64);
    let mut cbs: Vec<iocb> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let off = next(16) as i64 * BLOCK as i64 + if next(4) == 0 { 100 } else { 0 };
            let (fd, flags) = match next(12) {
                0..=3 => (sync_file.as_raw_fd(), libc::RWF_DSYNC as u32),
                4 => (file.as_raw_fd(), libc::RWF_APPEND as u32),
                _ => (file.as_raw_fd(), 0),
            };
            let mut c = cb(IOCB_CMD_PWRITE, fd, b.as_ptr() as u64, b.len() as u64, off, i as u64);
            c.aio_rw_flags = flags;
            c
        })
        .collect();
    let per_call = if seed.is_multiple_of(2) { 1 } else { 4 };
    cbs.chunks_mut(per_call).for_each(|c| aio.submit(ctx, c));
    let mut evs = aio.reap(ctx, cbs.len());
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let len = file.metadata().expect("stat").len() as usize;
    let mut got = vec![0u8; len];
    file.read_exact_at(&mut got, 0).expect("read back");
    (evs.iter().map(|e| e.res).collect(), got)
}

#[test]
fn plain_writes_beside_synchronous_ones_in_the_backend_keep_submission_order() {
    let dirs: Vec<std::path::PathBuf> = tmpfs_dir().into_iter().chain([std::env::temp_dir()]).collect();
    for dir in &dirs {
        for seed in 0..12u64 {
            let want = mixed_sync_and_plain(Aio::Kernel, dir, seed);
            let got = mixed_sync_and_plain(Aio::Uaio, dir, seed);
            let what = format!("{} seed {seed}: uaio ({})", dir.display(), uaio::backend_name());
            assert_eq!(got.0, want.0, "{what}: results");
            assert!(
                got.1 == want.1,
                "{what}: file differs from the kernel's ({} vs {} bytes) at {:?}",
                got.1.len(),
                want.1.len(),
                got.1.iter().zip(&want.1).position(|(a, b)| a != b)
            );
        }
    }
}

/// A page-aligned copy of `fill` repeated over 4096 bytes, kept in `store`
/// (which must outlive the requests); returns its address.
fn aligned_page(store: &mut Vec<u8>, fill: u8) -> u64 {
    store.clear();
    store.resize(2 * 4096, fill);
    let addr = store.as_ptr() as u64;
    (addr + 4095) & !4095
}

/// One `io_submit` of a direct write of page 1 ('N'), then a buffered read
/// of that page through another descriptor of the file (whose old bytes,
/// 'o', are cached), then (when `then_write`) a buffered write of 100 bytes
/// into it, padded with `pad` buffered reads of page 3 so that the batch
/// takes each path of a call (small batches try reads inline). Returns the
/// results, what the read got and the file's contents.
fn direct_write_then_buffered(
    aio: Aio,
    dir: &std::path::Path,
    then_write: bool,
    pad: usize,
) -> (Vec<i64>, Vec<u8>, Vec<u8>) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("direct-then-buffered-{}", std::process::id()));
    let buffered = File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    buffered.write_all_at(&vec![b'o'; 4 * 4096], 0).expect("prefill");
    buffered.sync_all().expect("fsync");
    let mut warm = vec![0u8; 4 * 4096];
    buffered.read_exact_at(&mut warm, 0).expect("cache the old bytes");
    let direct = File::options().read(true).write(true).custom_flags(libc::O_DIRECT).open(&path);
    let _ = std::fs::remove_file(&path);
    let direct = direct.expect("O_DIRECT open");
    let mut store = Vec::new();
    let new = aligned_page(&mut store, b'N');
    let mut got = vec![0u8; 4096];
    let small = [b'B'; 100];
    let mut pads = vec![vec![0u8; 4096]; pad];
    let ctx = aio.setup(16);
    let mut cbs = vec![
        cb(IOCB_CMD_PWRITE, direct.as_raw_fd(), new, 4096, 4096, 1),
        cb(IOCB_CMD_PREAD, buffered.as_raw_fd(), got.as_mut_ptr() as u64, 4096, 4096, 2),
    ];
    if then_write {
        cbs.push(cb(IOCB_CMD_PWRITE, buffered.as_raw_fd(), small.as_ptr() as u64, 100, 4096 + 10, 3));
    }
    for (i, p) in pads.iter_mut().enumerate() {
        cbs.push(cb(IOCB_CMD_PREAD, buffered.as_raw_fd(), p.as_mut_ptr() as u64, 4096, 3 * 4096, 10 + i as u64));
    }
    aio.submit(ctx, &mut cbs);
    let mut evs = aio.reap(ctx, cbs.len());
    evs.sort_by_key(|e| e.data);
    aio.destroy(ctx);
    let mut file = vec![0u8; 4 * 4096];
    buffered.read_exact_at(&mut file, 0).expect("read back");
    drop(store);
    (evs.iter().map(|e| e.res).collect(), got, file)
}

#[test]
fn a_buffered_read_or_write_after_a_direct_write_of_its_bytes_in_one_batch_follows_it() {
    let dirs = [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir()];
    let Ok(probe) = util::direct_file(&dirs, "dio-order-probe") else {
        println!("skipped: no directory here takes O_DIRECT");
        return;
    };
    drop(probe);
    let dir = dirs.iter().find(|d| util::direct_file(&[d.to_path_buf()], "dio-order-probe2").is_ok()).expect("a dir");
    for then_write in [false, true] {
        for pad in [0, 4] {
            let got = direct_write_then_buffered(Aio::Uaio, dir, then_write, pad);
            // The kernel's buffered read, done inside io_submit while its
            // direct write is in flight, reads the block from the disk and
            // races that write there: it mostly sees the new bytes, and
            // sometimes (a loaded machine) the old. uaio's answer must be
            // one the kernel gives: up to 5 kernel runs are looked at.
            let mut want = direct_write_then_buffered(Aio::Kernel, dir, then_write, pad);
            for _ in 1..5 {
                if want == got {
                    break;
                }
                want = direct_write_then_buffered(Aio::Kernel, dir, then_write, pad);
            }
            let case = format!("write after: {then_write}, padding reads: {pad}, on uaio ({})", uaio::backend_name());
            assert_eq!(got.0, want.0, "{case}: results");
            assert!(
                got.1 == want.1,
                "{case}: the read got {:?}.. where the kernel's got {:?}..",
                &got.1[..4],
                &want.1[..4]
            );
            assert!(got.2 == want.2, "{case}: the file differs from the kernel's");
        }
    }
}
