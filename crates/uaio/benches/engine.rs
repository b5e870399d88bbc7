//! Micro-benchmarks of the engine's hot paths, through the public API only
//! ([`uaio::raw`] with the kernel's arguments, and [`uaio::Context`]).
//!
//! - `noop_submit_reap/BACKEND/{1,32}`: `io_submit` of a batch of
//!   `IOCB_CMD_NOOP` requests, then `io_getevents` of the whole batch. NOOPs
//!   complete during submission, so this is the engine's own cost per
//!   request (context lookup, validation, slot accounting, ring publication,
//!   reaping) with no I/O at all.
//! - `noop_submit/BACKEND/32`: the submit path alone: batches of 32 NOOPs
//!   submitted back to back into a context large enough for several of
//!   them; the reaping between runs of batches is not timed.
//! - `reap/BACKEND/32`: the harvest path alone: `io_getevents` of 32 events
//!   that are already in the ring (submitted untimed beforehand).
//! - `ring_publish_consume/BACKEND/32`: 32 NOOPs submitted (their events
//!   published in the ring by `io_submit`) and consumed straight from the
//!   ring in user space, as programs that reap by themselves do (fio's
//!   `userspace_reap`, QEMU, SPDK): acquire-load `tail`, copy the events,
//!   release-store `head`. The ring's own publication routine is internal;
//!   this is its cost as seen through the public API.
//! - `cached_read_4k/BACKEND/1`: one 4 KiB read at a random offset of a file
//!   that is entirely in the page cache, submitted and reaped (batch 1).
//! - `safe_noop/BACKEND/1`: [`uaio::Context::submit`] of a NOOP request and
//!   [`uaio::Context::wait`] for it: the safe API's overhead on top of the
//!   raw calls.
//!
//! Throughput is reported per request. The backend is the process's choice
//! (`UAIO_BACKEND=uring|threads` forces one) and is part of every benchmark
//! name. Measurements are short by default so that the whole run takes well
//! under a minute; criterion's own options lengthen them, for example
//! `cargo bench -p uaio -- --measurement-time 5 --warm-up-time 1`.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use uaio::abi::{aio_context_t, aio_ring, io_event, iocb, IOCB_CMD_NOOP, IOCB_CMD_PREAD};

/// Requests per batch in the batched benchmarks.
const BATCH: usize = 32;
/// Batches submitted before the untimed reaping in `noop_submit` and
/// `reap`: the context holds `BATCH * CHUNK` requests.
const CHUNK: usize = 32;
/// Size of the reads of `cached_read_4k`.
const BLOCK: usize = 4096;
/// Size of the cached file of `cached_read_4k`.
const FILE_SIZE: usize = 16 << 20;

/// An AIO context made by [`uaio::raw::io_setup`], destroyed on drop.
struct Ctx(aio_context_t);

impl Ctx {
    fn new(nr_events: u32) -> Ctx {
        let mut ctx: aio_context_t = 0;
        // SAFETY: `ctx` is a live local holding 0, which the call fills in.
        let r = unsafe { uaio::raw::io_setup(nr_events, &mut ctx) };
        assert_eq!(r, 0, "io_setup({nr_events})");
        Ctx(ctx)
    }

    /// `io_submit` of every iocb of `ptrs`; all of them must be accepted.
    ///
    /// # Safety
    /// Each pointer must point to a valid iocb whose buffer (if any) stays
    /// valid and untouched until its event is reaped.
    unsafe fn submit(&self, ptrs: &mut [*mut iocb]) {
        // SAFETY: forwarded contract.
        let r = unsafe { uaio::raw::io_submit(self.0, ptrs.len() as i64, ptrs.as_mut_ptr()) };
        assert_eq!(r, ptrs.len() as i64, "io_submit");
    }

    /// `io_getevents(min_nr = nr = events.len())` without a timeout;
    /// returns the count.
    fn reap(&self, events: &mut [io_event]) -> usize {
        let n = events.len() as i64;
        // SAFETY: `events` has room for `n` events; a null timeout waits for
        // `n` of them, which the callers have submitted.
        let r = unsafe { uaio::raw::io_getevents(self.0, n, n, events.as_mut_ptr(), ptr::null_mut()) };
        assert_eq!(r, n, "io_getevents");
        r as usize
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the handle came from io_setup and is destroyed once; every
        // request submitted through it has been reaped.
        unsafe { uaio::raw::io_destroy(self.0) };
    }
}

/// `n` NOOP iocbs (boxed, so their addresses stay put) and pointers to them.
fn noops(n: usize) -> (Box<[iocb]>, Vec<*mut iocb>) {
    let mut cbs: Box<[iocb]> =
        (0..n).map(|i| iocb { aio_data: i as u64, aio_lio_opcode: IOCB_CMD_NOOP, ..iocb::default() }).collect();
    let ptrs = cbs.iter_mut().map(|cb| cb as *mut iocb).collect();
    (cbs, ptrs)
}

fn noop_submit_reap(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("noop_submit_reap");
    for batch in [1, BATCH] {
        let (_cbs, mut ptrs) = noops(batch);
        let ctx = Ctx::new(batch as u32);
        let mut events = vec![io_event::default(); batch];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new(backend, batch), |b| {
            b.iter(|| {
                // SAFETY: NOOP iocbs have no buffer; `_cbs` outlives the
                // context (made after it), and every batch is reaped before
                // the next one.
                unsafe { ctx.submit(&mut ptrs) };
                black_box(ctx.reap(&mut events))
            })
        });
    }
    g.finish();
}

fn noop_submit(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("noop_submit");
    let (_cbs, mut ptrs) = noops(BATCH);
    let ctx = Ctx::new((BATCH * CHUNK) as u32);
    let mut events = vec![io_event::default(); BATCH * CHUNK];
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new(backend, BATCH), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(CHUNK);
                let start = Instant::now();
                for _ in 0..n {
                    // SAFETY: NOOP iocbs have no buffer; the same iocbs may
                    // be pending several times (NOOPs complete at once), and
                    // all of them are reaped below before `_cbs` is dropped.
                    unsafe { ctx.submit(&mut ptrs) };
                }
                timed += start.elapsed();
                ctx.reap(&mut events[..n * BATCH]);
                left -= n;
            }
            timed
        })
    });
    g.finish();
}

fn reap(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("reap");
    let (_cbs, mut ptrs) = noops(BATCH);
    let ctx = Ctx::new((BATCH * CHUNK) as u32);
    let mut events = vec![io_event::default(); BATCH];
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new(backend, BATCH), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(CHUNK);
                for _ in 0..n {
                    // SAFETY: as in `noop_submit`: no buffers, all reaped below.
                    unsafe { ctx.submit(&mut ptrs) };
                }
                let start = Instant::now();
                for _ in 0..n {
                    black_box(ctx.reap(&mut events));
                }
                timed += start.elapsed();
                left -= n;
            }
            timed
        })
    });
    g.finish();
}

/// Consumes every event published in the ring at `ctx` from user space, as
/// a program that reaps by itself does; returns how many there were.
///
/// # Safety
/// `ctx` must be a live context made by [`uaio::raw::io_setup`] (its handle
/// is the address of its ring), with no other reader.
unsafe fn consume_ring(ctx: aio_context_t, events: &mut [io_event]) -> usize {
    let ring = ctx as *mut aio_ring;
    // SAFETY: the ring header is mapped, 4-byte aligned, and lives as long
    // as the context; `head` and `tail` are only ever accessed atomically
    // (the producer publishes `tail` with release ordering).
    let (nr, head, tail) = unsafe {
        (
            ptr::addr_of!((*ring).nr).read_volatile(),
            AtomicU32::from_ptr(ptr::addr_of_mut!((*ring).head)),
            AtomicU32::from_ptr(ptr::addr_of_mut!((*ring).tail)),
        )
    };
    let t = tail.load(Ordering::Acquire);
    let mut h = head.load(Ordering::Relaxed);
    let mut n = 0;
    while h != t && n < events.len() {
        // SAFETY: `h < nr`, so the event lies inside the mapped ring, right
        // after the 32-byte header; the acquire load of `tail` made it visible.
        events[n] = unsafe {
            (ring as *const u8).add(size_of::<aio_ring>()).cast::<io_event>().add(h as usize).read_volatile()
        };
        n += 1;
        h = (h + 1) % nr;
    }
    head.store(h, Ordering::Release);
    n
}

fn ring_publish_consume(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("ring_publish_consume");
    let (_cbs, mut ptrs) = noops(BATCH);
    let ctx = Ctx::new(BATCH as u32);
    let mut events = vec![io_event::default(); BATCH];
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new(backend, BATCH), |b| {
        b.iter(|| {
            // SAFETY: NOOP iocbs have no buffer; each batch is consumed
            // before the next one is submitted.
            unsafe { ctx.submit(&mut ptrs) };
            // SAFETY: `ctx` is live and this is its only reader.
            let n = unsafe { consume_ring(ctx.0, &mut events) };
            assert_eq!(n, BATCH);
            black_box(n)
        })
    });
    g.finish();
}

/// A file of `FILE_SIZE` bytes in the temporary directory, read back once
/// so that all of it is in the page cache.
fn cached_file() -> File {
    let mut f = tempfile::tempfile().expect("temporary file");
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for _ in 0..FILE_SIZE / chunk.len() {
        f.write_all(&chunk).expect("write");
    }
    f.sync_data().expect("fsync");
    let mut back = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("reopen");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match back.read(&mut buf).expect("read") {
            0 => break,
            n => total += n,
        }
    }
    assert_eq!(total, FILE_SIZE);
    f
}

fn cached_read_4k(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("cached_read_4k");
    let file = cached_file();
    let mut buf = vec![0u8; BLOCK].into_boxed_slice();
    let mut cb = iocb {
        aio_lio_opcode: IOCB_CMD_PREAD,
        aio_fildes: file.as_raw_fd() as u32,
        aio_buf: buf.as_mut_ptr() as u64,
        aio_nbytes: BLOCK as u64,
        ..iocb::default()
    };
    let mut ptrs = [&mut cb as *mut iocb];
    // Made after the file, the buffer and the iocb, so dropped before them.
    let ctx = Ctx::new(1);
    let mut events = [io_event::default()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let blocks = (FILE_SIZE / BLOCK) as u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new(backend, 1), |b| {
        b.iter(|| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let off = ((rng % blocks) as usize * BLOCK) as i64;
            // SAFETY: the iocb is only written while no request is in flight
            // (the previous one was reaped).
            unsafe { (*ptrs[0]).aio_offset = off };
            // SAFETY: `buf`, the iocb and the file outlive the context (see
            // above) and the read is reaped before the next iteration.
            unsafe { ctx.submit(&mut ptrs) };
            ctx.reap(&mut events);
            assert_eq!(events[0].res, BLOCK as i64);
            black_box(events[0].res)
        })
    });
    g.finish();
}

fn safe_noop(c: &mut Criterion) {
    let backend = uaio::backend_name();
    let mut g = c.benchmark_group("safe_noop");
    let ctx = uaio::Context::new(1).expect("Context::new");
    g.throughput(Throughput::Elements(1));
    let mut done = Vec::with_capacity(1);
    g.bench_function(BenchmarkId::new(backend, 1), |b| {
        b.iter(|| {
            ctx.submit(uaio::Request::noop()).expect("submit");
            done.clear();
            black_box(ctx.wait(1, None, &mut done).expect("wait"))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = engine;
    config = config();
    targets = noop_submit_reap, noop_submit, reap, ring_publish_consume, cached_read_4k, safe_noop
}
criterion_main!(engine);
