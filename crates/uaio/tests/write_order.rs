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

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_PWRITE, IOCB_CMD_PWRITEV};
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
                    libc::syscall(libc::SYS_io_getevents, ctx, want, want, out, std::ptr::null::<libc::timespec>())
                        as i64
                },
                // SAFETY: as above.
                Aio::Uaio => unsafe { raw::io_getevents(ctx, want, want, out, std::ptr::null_mut()) },
            };
            assert!(r > 0, "{self:?} io_getevents: {r}");
            got += r as usize;
        }
        evs
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
