//! The workloads and the loop that drives them in a worker process.
//!
//! A run keeps `qd` requests in flight: it reaps with `min_nr = 1` (NOOP:
//! the whole batch of 32), gives every completed slot a new offset and
//! submits all of them with one `io_submit`. The clock is read once per
//! turn of the loop, right after `io_getevents` returns: that reading is
//! the reap time of the events just reaped and the submit time of the
//! requests submitted next, so a request's latency runs from just before
//! its `io_submit` to just after the `io_getevents` that returned it.
//! Latencies go into a log-linear histogram (1/64 resolution).

use std::cell::UnsafeCell;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_FSYNC, IOCB_CMD_NOOP, IOCB_CMD_PREAD, IOCB_CMD_PWRITE};

use super::aio::{errno_name, Aio};
use super::file::{open_for_worker, AlignedBuf, XorShift};

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `IOCB_CMD_PREAD`.
    Read,
    /// `IOCB_CMD_PWRITE`.
    Write,
    /// `IOCB_CMD_PWRITE`, and an `IOCB_CMD_FSYNC` after every
    /// [`FSYNC_EVERY`] writes (it takes one of the queue's slots).
    WriteFsync,
    /// `IOCB_CMD_NOOP`, submitted and reaped in whole batches.
    Noop,
}

/// Writes between two fsyncs in [`Op::WriteFsync`].
pub const FSYNC_EVERY: u32 = 32;

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Buffered, the whole file in the page cache before the run.
    Cached,
    /// Buffered, the file evicted from the page cache before the run; each
    /// block is read at most once per run, so every read misses.
    Uncached,
    /// `O_DIRECT`.
    Direct,
    /// No data (NOOP).
    NoData,
}

/// Threads of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One thread, one context.
    One,
    /// Two threads sharing one context; either may reap the other's
    /// completions and resubmits what it reaped.
    Shared,
    /// Two threads, one context each.
    PerThread,
}

impl Threads {
    fn count(self) -> usize {
        match self {
            Threads::One => 1,
            Threads::Shared | Threads::PerThread => 2,
        }
    }
}

/// One row of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name shown in the table and matched by `--workloads`.
    pub name: String,
    /// What each request does.
    pub op: Op,
    /// Where the data comes from.
    pub cache: Cache,
    /// Sequential offsets (else uniformly random, block-aligned).
    pub seq: bool,
    /// Bytes per request.
    pub bs: usize,
    /// Requests in flight (per thread).
    pub qd: usize,
    /// Threads and contexts.
    pub threads: Threads,
}

/// Batch of the NOOP workload.
pub const NOOP_BATCH: usize = 32;

/// The fixed set of workloads: `bs` for the random ones, `sweep` the queue
/// depths of the random-read sweeps, `depth` the queue depth of the others.
pub fn all(bs: usize, sweep: &[usize], depth: usize) -> Vec<Workload> {
    let k = |b: usize| {
        if b.is_multiple_of(1 << 20) {
            format!("{}m", b >> 20)
        } else if b.is_multiple_of(1024) {
            format!("{}k", b >> 10)
        } else {
            format!("{b}b")
        }
    };
    let w = |name: String, op, cache, seq, bs, qd, threads| Workload { name, op, cache, seq, bs, qd, threads };
    let b = k(bs);
    let mut v = Vec::new();
    for &qd in sweep {
        v.push(w(format!("cached-read-{b}-qd{qd}"), Op::Read, Cache::Cached, false, bs, qd, Threads::One));
    }
    v.push(w(format!("uncached-read-{b}-qd{depth}"), Op::Read, Cache::Uncached, false, bs, depth, Threads::One));
    for &qd in sweep {
        v.push(w(format!("direct-read-{b}-qd{qd}"), Op::Read, Cache::Direct, false, bs, qd, Threads::One));
    }
    v.push(w(format!("direct-write-{b}-qd{depth}"), Op::Write, Cache::Direct, false, bs, depth, Threads::One));
    v.push(w("direct-seqread-128k-qd16".into(), Op::Read, Cache::Direct, true, 128 << 10, 16, Threads::One));
    v.push(w(format!("buffered-write-{b}-qd{depth}"), Op::Write, Cache::Cached, false, bs, depth, Threads::One));
    v.push(w(
        format!("buffered-write-fsync{FSYNC_EVERY}-{b}-qd{depth}"),
        Op::WriteFsync,
        Cache::Cached,
        false,
        bs,
        depth,
        Threads::One,
    ));
    v.push(w(format!("noop-batch{NOOP_BATCH}"), Op::Noop, Cache::NoData, false, 0, NOOP_BATCH, Threads::One));
    v.push(w(
        format!("2thr-shared-ctx-cached-read-{b}-qd{depth}"),
        Op::Read,
        Cache::Cached,
        false,
        bs,
        depth,
        Threads::Shared,
    ));
    v.push(w(
        format!("2thr-ctx-each-cached-read-{b}-qd{depth}"),
        Op::Read,
        Cache::Cached,
        false,
        bs,
        depth,
        Threads::PerThread,
    ));
    v
}

impl Workload {
    /// What the row measures, in words (for `--list`).
    pub fn describe(&self) -> String {
        let what = match (self.op, self.cache) {
            (Op::Noop, _) => format!("IOCB_CMD_NOOP submitted and reaped in batches of {NOOP_BATCH} (no I/O)"),
            (Op::Read, Cache::Cached) => "buffered reads, file in the page cache".into(),
            (Op::Read, Cache::Uncached) => "buffered reads, file evicted before each run, no block read twice".into(),
            (Op::Read, _) => "O_DIRECT reads".into(),
            (Op::Write, Cache::Direct) => "O_DIRECT writes".into(),
            (Op::Write, _) => "buffered writes".into(),
            (Op::WriteFsync, _) => format!("buffered writes, an fsync after every {FSYNC_EVERY} (IOPS counts writes)"),
        };
        let pattern = if self.seq { "sequential" } else { "random" };
        let threads = match self.threads {
            Threads::One => String::new(),
            Threads::Shared => ", 2 threads on one shared context".into(),
            Threads::PerThread => ", 2 threads with a context each".into(),
        };
        if self.op == Op::Noop {
            what
        } else {
            format!(
                "{} B {pattern} {what}, QD {}{}{threads}",
                self.bs,
                self.qd,
                if threads.is_empty() { "" } else { " per thread" }
            )
        }
    }

    /// Whether the kernel can run it at all (it has no NOOP).
    pub fn kernel_reason(&self) -> Option<&'static str> {
        (self.op == Op::Noop).then_some("the kernel rejects IOCB_CMD_NOOP with EINVAL")
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "op": match self.op { Op::Read => "read", Op::Write => "write", Op::WriteFsync => "write-fsync", Op::Noop => "noop" },
            "cache": match self.cache {
                Cache::Cached => "cached", Cache::Uncached => "uncached", Cache::Direct => "direct", Cache::NoData => "none",
            },
            "seq": self.seq,
            "bs": self.bs,
            "qd": self.qd,
            "threads": match self.threads { Threads::One => "one", Threads::Shared => "shared", Threads::PerThread => "per-thread" },
        })
    }

    fn from_json(v: &Value) -> Option<Workload> {
        Some(Workload {
            name: v["name"].as_str()?.to_string(),
            op: match v["op"].as_str()? {
                "read" => Op::Read,
                "write" => Op::Write,
                "write-fsync" => Op::WriteFsync,
                "noop" => Op::Noop,
                _ => return None,
            },
            cache: match v["cache"].as_str()? {
                "cached" => Cache::Cached,
                "uncached" => Cache::Uncached,
                "direct" => Cache::Direct,
                "none" => Cache::NoData,
                _ => return None,
            },
            seq: v["seq"].as_bool()?,
            bs: v["bs"].as_u64()? as usize,
            qd: v["qd"].as_u64()? as usize,
            threads: match v["threads"].as_str()? {
                "one" => Threads::One,
                "shared" => Threads::Shared,
                "per-thread" => Threads::PerThread,
                _ => return None,
            },
        })
    }
}

/// What a worker is asked to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The workload.
    pub w: Workload,
    /// Kernel AIO or uaio.
    pub aio: Aio,
    /// The test file.
    pub path: PathBuf,
    /// Bytes of the file that requests may touch.
    pub size: u64,
    /// Warm-up before the measured part.
    pub warmup: Duration,
    /// Length of the measured part.
    pub duration: Duration,
    /// Seed of the offsets.
    pub seed: u64,
}

impl Job {
    /// The job as the argument of `uaio bench --worker`.
    pub fn to_arg(&self) -> String {
        json!({
            "workload": self.w.to_json(),
            "aio": if self.aio == Aio::Kernel { "kernel" } else { "uaio" },
            "path": self.path.to_str(),
            "size": self.size,
            "warmup": self.warmup.as_secs_f64(),
            "duration": self.duration.as_secs_f64(),
            "seed": self.seed,
        })
        .to_string()
    }

    /// Parses [`Job::to_arg`]'s output.
    pub fn from_arg(s: &str) -> Result<Job, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| format!("bad worker job: {e}"))?;
        let bad = || format!("bad worker job: {s}");
        Ok(Job {
            w: Workload::from_json(&v["workload"]).ok_or_else(bad)?,
            aio: if v["aio"] == "kernel" { Aio::Kernel } else { Aio::Uaio },
            path: PathBuf::from(v["path"].as_str().ok_or_else(bad)?),
            size: v["size"].as_u64().ok_or_else(bad)?,
            warmup: Duration::try_from_secs_f64(v["warmup"].as_f64().ok_or_else(bad)?).map_err(|_| bad())?,
            duration: Duration::try_from_secs_f64(v["duration"].as_f64().ok_or_else(bad)?).map_err(|_| bad())?,
            seed: v["seed"].as_u64().ok_or_else(bad)?,
        })
    }
}

/// Log-linear latency histogram in nanoseconds: exact below 128 ns, then
/// 64 buckets per power of two (under 1.6 % error).
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    n: u64,
    sum: u128,
    max: u64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        Hist { counts: vec![0; (2 * SUB + (64 - SUB_BITS as u64 - 1) * SUB) as usize], n: 0, sum: 0, max: 0 }
    }

    fn index(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64; // >= SUB_BITS + 1
        let sub = (v >> (e - SUB_BITS as u64)) - SUB;
        (2 * SUB + (e - SUB_BITS as u64 - 1) * SUB + sub) as usize
    }

    /// Middle of the values of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < 2 * SUB {
            return i;
        }
        let e = (i - 2 * SUB) / SUB + SUB_BITS as u64 + 1;
        let sub = (i - 2 * SUB) % SUB;
        let lo = (SUB + sub) << (e - SUB_BITS as u64);
        lo + (1u64 << (e - SUB_BITS as u64)) / 2
    }

    /// Counts one latency.
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.n += 1;
        self.sum += ns as u128;
        self.max = self.max.max(ns);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    /// Mean latency (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    /// The `q` quantile (0..=1), within the bucket resolution.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

/// Where the next request goes.
#[derive(Debug)]
enum Offsets {
    /// Uniformly random block.
    Random { rng: XorShift, blocks: u64, bs: u64 },
    /// Block after block, wrapping at the end.
    Seq { next: u64, blocks: u64, bs: u64 },
    /// A random order of all blocks, each used once; `None` when used up.
    Once { order: Vec<u32>, at: usize, bs: u64 },
}

/// Why a workload of `bs`-byte blocks cannot run on a file of `size` bytes.
pub fn smaller_than_block(size: u64, bs: u64) -> String {
    format!("the file ({size} B) is smaller than one block ({bs} B)")
}

impl Offsets {
    fn new(w: &Workload, size: u64, seed: u64) -> Result<Offsets, String> {
        let bs = w.bs.max(1) as u64;
        let blocks = size / bs;
        if w.op != Op::Noop && blocks == 0 {
            return Err(smaller_than_block(size, bs));
        }
        let mut rng = XorShift(seed | 1);
        Ok(if w.seq {
            Offsets::Seq { next: (rng.next_u64() % blocks.max(1)), blocks, bs }
        } else if w.cache == Cache::Uncached {
            let n = blocks.min(u32::MAX as u64) as usize;
            let mut order: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            Offsets::Once { order, at: 0, bs }
        } else {
            Offsets::Random { rng, blocks, bs }
        })
    }

    fn next(&mut self) -> Option<i64> {
        match self {
            Offsets::Random { rng, blocks, bs } => Some(((rng.next_u64() % *blocks) * *bs) as i64),
            Offsets::Seq { next, blocks, bs } => {
                let o = *next * *bs;
                *next = (*next + 1) % *blocks;
                Some(o as i64)
            }
            Offsets::Once { order, at, bs } => {
                let b = *order.get(*at)?;
                *at += 1;
                Some(b as i64 * *bs as i64)
            }
        }
    }

    /// Whether the warm-up has used what it may: a quarter of a [`Offsets::Once`] order.
    fn warm_spent(&self) -> bool {
        match self {
            Offsets::Once { order, at, .. } => *at >= order.len() / 4,
            _ => false,
        }
    }
}

/// The request slots of one context: an iocb, a buffer range and a submit
/// time each. A slot belongs to one thread at a time: first to the thread it
/// was given to, then, after each completion, to the thread that reaped it;
/// while in flight no thread touches its iocb or buffer.
struct Slots {
    iocbs: Box<[UnsafeCell<iocb>]>,
    stamps: Box<[AtomicU64]>,
    buf: AlignedBuf,
}

// SAFETY: see the type's doc: each iocb is accessed by the one thread that
// owns its slot, and ownership passes through io_submit / io_getevents,
// which order the accesses.
unsafe impl Sync for Slots {}

impl Slots {
    fn new(n: usize, w: &Workload, fd: i32) -> Slots {
        let buf = AlignedBuf::new(n * w.bs.max(1), 0x5a);
        let iocbs: Box<[UnsafeCell<iocb>]> = (0..n)
            .map(|i| {
                UnsafeCell::new(iocb {
                    aio_data: i as u64,
                    aio_fildes: fd as u32,
                    aio_buf: if w.bs > 0 { buf.addr(i * w.bs) } else { 0 },
                    ..iocb::default()
                })
            })
            .collect();
        Slots { iocbs, stamps: (0..n).map(|_| AtomicU64::new(0)).collect(), buf }
    }

    fn ptr(&self, i: usize) -> *mut iocb {
        self.iocbs[i].get()
    }
}

/// What one thread measured.
#[derive(Debug)]
struct Tally {
    /// Data requests (reads, writes) completed in the measured part.
    ops: u64,
    bytes: u64,
    fsyncs: u64,
    hist: Hist,
    start: Instant,
    end: Instant,
    exhausted: bool,
}

impl Tally {
    fn new(start: Instant) -> Tally {
        Tally { ops: 0, bytes: 0, fsyncs: 0, hist: Hist::new(), start, end: start, exhausted: false }
    }
}

/// How a thread's loop ends and shares its context.
struct Shared<'a> {
    in_flight: &'a AtomicUsize,
    /// The other threads' requests may complete here, so waits time out
    /// to look at the clock.
    timed: bool,
}

/// One thread's loop over one context.
struct Driver<'a> {
    aio: Aio,
    ctx: aio_context_t,
    slots: &'a Slots,
    w: &'a Workload,
    offsets: Offsets,
    pending: Vec<usize>,
    ptrs: Vec<*mut iocb>,
    events: Vec<io_event>,
    shared: Shared<'a>,
    since_sync: u32,
    base: Instant,
}

impl Driver<'_> {
    /// Points slot `i` at its next request; false when no offset is left.
    fn prepare(&mut self, i: usize) -> bool {
        // SAFETY: this thread owns slot `i` (it is pending, not in flight).
        let cb = unsafe { &mut *self.slots.ptr(i) };
        match self.w.op {
            Op::Noop => cb.aio_lio_opcode = IOCB_CMD_NOOP,
            Op::WriteFsync if self.since_sync >= FSYNC_EVERY => {
                self.since_sync = 0;
                cb.aio_lio_opcode = IOCB_CMD_FSYNC;
                cb.aio_buf = 0;
                cb.aio_nbytes = 0;
                cb.aio_offset = 0;
            }
            op => {
                let Some(off) = self.offsets.next() else { return false };
                cb.aio_lio_opcode = if op == Op::Read { IOCB_CMD_PREAD } else { IOCB_CMD_PWRITE };
                cb.aio_buf = self.slots.buf.addr(i * self.w.bs);
                cb.aio_nbytes = self.w.bs as u64;
                cb.aio_offset = off;
                if op == Op::WriteFsync {
                    self.since_sync += 1;
                }
            }
        }
        true
    }

    /// Submits every pending slot that still has work, with one `io_submit`.
    fn submit(&mut self, now: u64) -> Result<(), String> {
        let mut k = 0;
        while k < self.pending.len() {
            let i = self.pending[k];
            if self.prepare(i) {
                k += 1;
            } else {
                self.pending.swap_remove(k);
            }
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        self.ptrs.clear();
        for &i in &self.pending {
            self.slots.stamps[i].store(now, Ordering::Relaxed);
            self.ptrs.push(self.slots.ptr(i));
        }
        let n = self.ptrs.len();
        // Counted before the call: another thread sharing the context may
        // reap these requests before io_submit returns here.
        self.shared.in_flight.fetch_add(n, Ordering::Relaxed);
        // SAFETY: every pointer is to an iocb of `self.slots` that this thread
        // owns, with its buffer in `self.slots.buf`; the slots outlive the
        // context (it is destroyed, waiting for everything in flight, before
        // they are dropped) and nothing touches them while in flight.
        let r = unsafe { self.aio.submit(self.ctx, n, self.ptrs.as_mut_ptr()) };
        let accepted = r.max(0) as usize;
        if accepted < n {
            self.shared.in_flight.fetch_sub(n - accepted, Ordering::Relaxed);
        }
        if r > 0 {
            self.pending.drain(..accepted);
            Ok(())
        } else if r == -(libc::EAGAIN as i64) && self.shared.in_flight.load(Ordering::Relaxed) > 0 {
            Ok(())
        } else {
            Err(format!("io_submit: {}", errno_name(r)))
        }
    }

    /// Reaps at least `min_nr` events (or whatever arrives within 10 ms when
    /// the context is shared) and returns the clock reading taken after.
    fn reap(&mut self, min_nr: usize, tally: Option<&mut Tally>) -> Result<(Instant, usize), String> {
        let timeout = self.shared.timed.then_some(libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 });
        let r = self.aio.getevents(self.ctx, min_nr, &mut self.events, timeout);
        let now = Instant::now();
        if r < 0 {
            if r == -(libc::EINTR as i64) {
                return Ok((now, 0));
            }
            return Err(format!("io_getevents: {}", errno_name(r)));
        }
        let n = r as usize;
        self.shared.in_flight.fetch_sub(n, Ordering::Relaxed);
        let t = now.duration_since(self.base).as_nanos() as u64;
        let mut tally = tally;
        for ev in &self.events[..n] {
            let i = ev.data as usize;
            if i >= self.slots.iocbs.len() || ev.obj != self.slots.ptr(i) as u64 {
                return Err(format!("event for an unknown iocb: {ev:?}"));
            }
            // SAFETY: the slot completed, so the reaping thread owns it now.
            let opcode = unsafe { (*self.slots.ptr(i)).aio_lio_opcode };
            let want = match opcode {
                IOCB_CMD_NOOP | IOCB_CMD_FSYNC => 0,
                _ => self.w.bs as i64,
            };
            if ev.res != want {
                let what = if ev.res < 0 { errno_name(ev.res) } else { ev.res.to_string() };
                return Err(format!("request (opcode {opcode}) completed with {what}, wanted {want}"));
            }
            if let Some(tl) = tally.as_deref_mut() {
                if opcode == IOCB_CMD_FSYNC {
                    tl.fsyncs += 1;
                } else {
                    tl.ops += 1;
                    tl.bytes += want as u64;
                    tl.hist.record(t.saturating_sub(self.slots.stamps[i].load(Ordering::Relaxed)));
                }
            }
            self.pending.push(i);
        }
        Ok((now, n))
    }

    /// The loop: warm-up until `warm_end`, measured part until `end`, then
    /// reaps what is still in flight.
    fn run(&mut self, warm_end: Instant, end: Instant, stop: &AtomicBool) -> Result<Tally, String> {
        let min_nr = if self.w.op == Op::Noop { self.w.qd } else { 1 };
        let mut now = Instant::now();
        let mut measuring: Option<Tally> = None;
        let mut exhausted = false;
        loop {
            if measuring.is_none() && (now >= warm_end || self.offsets.warm_spent()) {
                measuring = Some(Tally::new(now));
            }
            // The measured part lasts until `end`, and longer if no data
            // request has completed yet (a single blocking io_submit may take
            // longer than a short run).
            let counted = measuring.as_ref().is_some_and(|t| t.ops > 0);
            if (now >= end && counted) || stop.load(Ordering::Relaxed) {
                break;
            }
            self.submit(now.duration_since(self.base).as_nanos() as u64)?;
            let in_flight = self.shared.in_flight.load(Ordering::Relaxed);
            // Alone on its context, a thread with nothing in flight after
            // submitting has no offsets left. On a shared context the other
            // thread may just have reaped everything: wait (timed) instead.
            if in_flight == 0 && !self.shared.timed {
                exhausted = true;
                break;
            }
            let want = if self.shared.timed { 1 } else { min_nr.min(in_flight) };
            now = self.reap(want, measuring.as_mut())?.0;
        }
        let mut tally = measuring.unwrap_or_else(|| Tally::new(now));
        tally.end = now;
        tally.exhausted = exhausted;
        stop.store(true, Ordering::Relaxed);
        while self.shared.in_flight.load(Ordering::Relaxed) > 0 {
            let want = if self.shared.timed { 1 } else { self.shared.in_flight.load(Ordering::Relaxed) };
            self.reap(want, None)?;
        }
        Ok(tally)
    }
}

// SAFETY: the raw iocb pointers in `ptrs` are scratch space refilled before
// each use, pointing into `Slots`, which is `Sync`; a driver is moved into
// its thread and used there only.
unsafe impl Send for Driver<'_> {}

/// What a worker reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Data requests completed in the measured part.
    pub ops: u64,
    /// Bytes they moved.
    pub bytes: u64,
    /// Fsyncs completed in the measured part.
    pub fsyncs: u64,
    /// Length of the measured part.
    pub secs: f64,
    /// Mean latency in nanoseconds.
    pub mean_ns: f64,
    /// Median latency.
    pub p50_ns: u64,
    /// 99th percentile latency.
    pub p99_ns: u64,
    /// Largest latency.
    pub max_ns: u64,
    /// The run ended early: every block had been read once.
    pub exhausted: bool,
}

impl Outcome {
    /// Requests per second.
    pub fn iops(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Megabytes (10^6 B) per second.
    pub fn mbps(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }

    /// As the worker prints it.
    pub fn to_json(&self) -> Value {
        json!({
            "ops": self.ops, "bytes": self.bytes, "fsyncs": self.fsyncs, "secs": self.secs,
            "mean_ns": self.mean_ns, "p50_ns": self.p50_ns, "p99_ns": self.p99_ns, "max_ns": self.max_ns,
            "exhausted": self.exhausted,
        })
    }

    /// Parses [`Outcome::to_json`]'s output.
    pub fn from_json(v: &Value) -> Option<Outcome> {
        Some(Outcome {
            ops: v["ops"].as_u64()?,
            bytes: v["bytes"].as_u64()?,
            fsyncs: v["fsyncs"].as_u64()?,
            secs: v["secs"].as_f64()?,
            mean_ns: v["mean_ns"].as_f64()?,
            p50_ns: v["p50_ns"].as_u64()?,
            p99_ns: v["p99_ns"].as_u64()?,
            max_ns: v["max_ns"].as_u64()?,
            exhausted: v["exhausted"].as_bool()?,
        })
    }
}

/// A context and its slots, destroyed (waiting for what is in flight)
/// before the slots are freed.
struct Ctx {
    aio: Aio,
    ctx: aio_context_t,
    slots: Slots,
}

impl Ctx {
    fn new(aio: Aio, n: usize, w: &Workload, fd: i32) -> Result<Ctx, String> {
        let ctx = aio.setup(n as u32).map_err(|r| format!("io_setup({n}): {}", errno_name(r)))?;
        Ok(Ctx { aio, ctx, slots: Slots::new(n, w, fd) })
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.aio.destroy(self.ctx);
    }
}

/// Runs `job` in this process and returns what it measured.
pub fn run(job: &Job) -> Result<Outcome, String> {
    let w = &job.w;
    let write = matches!(w.op, Op::Write | Op::WriteFsync);
    let file = open_for_worker(&job.path, write, w.cache == Cache::Direct)
        .map_err(|e| format!("open {}: {e}", job.path.display()))?;
    let fd = file.as_raw_fd();
    if w.cache == Cache::Uncached {
        // No readahead: a miss must not bring its neighbours in.
        // SAFETY: advice only; the descriptor is open.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) };
    }
    let nthreads = w.threads.count();
    let ctxs: Vec<Ctx> = match w.threads {
        Threads::Shared => vec![Ctx::new(job.aio, w.qd * nthreads, w, fd)?],
        _ => (0..nthreads).map(|_| Ctx::new(job.aio, w.qd, w, fd)).collect::<Result<_, _>>()?,
    };
    let counters: Vec<AtomicUsize> = ctxs.iter().map(|_| AtomicUsize::new(0)).collect();
    let stop = AtomicBool::new(false);
    let base = Instant::now();
    let mut drivers = Vec::new();
    for t in 0..nthreads {
        let (c, first) = if w.threads == Threads::Shared { (0, t * w.qd) } else { (t, 0) };
        let cx = &ctxs[c];
        drivers.push(Driver {
            aio: job.aio,
            ctx: cx.ctx,
            slots: &cx.slots,
            w,
            offsets: Offsets::new(w, job.size, job.seed.wrapping_add(t as u64 * 0x9e37_79b9_7f4a_7c15))?,
            pending: (first..first + w.qd).collect(),
            ptrs: Vec::with_capacity(cx.slots.iocbs.len()),
            events: vec![io_event::default(); cx.slots.iocbs.len()],
            shared: Shared { in_flight: &counters[c], timed: w.threads == Threads::Shared },
            since_sync: 0,
            base,
        });
    }
    let warm_end = base + job.warmup;
    let end = warm_end + job.duration;
    let tallies: Vec<Result<Tally, String>> = if nthreads == 1 {
        vec![drivers[0].run(warm_end, end, &stop)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = drivers
                .iter_mut()
                .map(|d| {
                    let stop = &stop;
                    s.spawn(move || {
                        let r = d.run(warm_end, end, stop);
                        // A failing thread stops the other one.
                        stop.store(true, Ordering::Relaxed);
                        r
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("worker thread panicked".into()))).collect()
        })
    };
    drop(drivers);
    drop(ctxs);
    let tallies: Vec<Tally> = tallies.into_iter().collect::<Result<_, _>>()?;
    let mut hist = Hist::new();
    let (mut ops, mut bytes, mut fsyncs, mut exhausted) = (0, 0, 0, false);
    for t in &tallies {
        hist.merge(&t.hist);
        ops += t.ops;
        bytes += t.bytes;
        fsyncs += t.fsyncs;
        exhausted |= t.exhausted;
    }
    let start = tallies.iter().map(|t| t.start).min().unwrap_or(base);
    let stop_at = tallies.iter().map(|t| t.end).max().unwrap_or(base);
    let secs = stop_at.duration_since(start).as_secs_f64();
    if ops == 0 {
        return Err(if exhausted {
            "every block was read during the warm-up: use a larger --size".into()
        } else {
            "no request completed in the measured part".into()
        });
    }
    Ok(Outcome {
        ops,
        bytes,
        fsyncs,
        secs,
        mean_ns: hist.mean(),
        p50_ns: hist.quantile(0.5),
        p99_ns: hist.quantile(0.99),
        max_ns: hist.max,
        exhausted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip() {
        for v in [0u64, 1, 127, 128, 129, 1000, 4095, 4096, 1 << 20, 123_456_789, u64::MAX / 3] {
            let i = Hist::index(v);
            let mid = Hist::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} -> bucket {i} -> {mid}");
        }
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert!((h.quantile(0.99) as f64 - 990_000.0).abs() < 990_000.0 * 0.02);
        assert!((h.mean() - 500_500.0).abs() < 1.0);
    }

    #[test]
    fn workloads_round_trip_through_json() {
        for w in all(4096, &[1, 32, 128], 32) {
            assert_eq!(Workload::from_json(&w.to_json()), Some(w));
        }
    }

    #[test]
    fn once_order_uses_each_block_once() {
        let w = all(4096, &[32], 32).into_iter().find(|w| w.cache == Cache::Uncached).unwrap();
        let mut o = Offsets::new(&w, 64 * 4096, 7).unwrap();
        let mut seen = std::collections::HashSet::new();
        while let Some(off) = o.next() {
            assert!(seen.insert(off));
        }
        assert_eq!(seen.len(), 64);
    }
}
