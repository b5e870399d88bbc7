//! Quick head-to-head of kernel AIO and uaio, back to back in one process.
//!
//! Both sides are driven through the system-call interface with the same
//! arguments: the kernel through `syscall(SYS_io_setup / io_submit /
//! io_getevents)`, uaio through [`uaio::raw`]. Workloads:
//!
//! 1. `IOCB_CMD_NOOP`, submitted and reaped in batches of 32: uaio only (the
//!    kernel rejects the opcode), so its cost per op is the engine's own
//!    overhead (validation, ring publication, reaping) with no I/O at all.
//! 2. 4 KiB random reads from a 64 MiB file that sits entirely in the page
//!    cache, at queue depth 1 (submit one, wait for it) and at queue depth
//!    32 (32 requests in flight, reap with `min_nr = 1`, resubmit everything
//!    that completed in one `io_submit`).
//! 3. 4 KiB random buffered writes to the same file, queue depth 32.
//!
//! Each measurement runs for `QUICKBENCH_SECS` seconds (default 1, fractions
//! allowed) after a short warm-up, three times with kernel and uaio runs
//! interleaved; the median rate is reported, with the spread
//! `(max - min) / median` of the three runs. Offsets come from an xorshift
//! generator and are 4096-aligned. `QUICKBENCH_FILTER=text` runs only the
//! workloads whose label contains `text` (handy under `perf` or `strace`);
//! `UAIO_BACKEND` picks uaio's backend as usual.
//!
//! Run with `cargo run --release -p uaio --example quickbench`.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::error::Error;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_NOOP, IOCB_CMD_PREAD, IOCB_CMD_PWRITE};

/// Size of every read and write.
const BLOCK: usize = 4096;
/// Size of the test file.
const FILE_SIZE: u64 = 64 << 20;
/// Number of `BLOCK`-sized blocks in the file.
const NBLOCKS: u64 = FILE_SIZE / BLOCK as u64;
/// Number of measured runs per workload and engine; the median is reported.
const REPS: usize = 3;

type Res<T> = Result<T, Box<dyn Error>>;

/// Which implementation of the AIO calls to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Kernel,
    Uaio,
}

/// Turns a `syscall()` return (`-1` and `errno` on failure) into the
/// negative-errno convention of [`uaio::raw`] (`c_long` is `i64`: the AIO
/// ABI of `uaio::abi` is the 64-bit one).
fn syscall_ret(r: libc::c_long) -> i64 {
    if r < 0 {
        -(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
    } else {
        r
    }
}

/// Describes a negative errno return.
fn errno_str(r: i64) -> String {
    io::Error::from_raw_os_error(-r as i32).to_string()
}

/// Short name of a negative errno return, for table cells.
fn errno_name(r: i64) -> String {
    match -r as i32 {
        libc::EINVAL => "EINVAL".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::EPERM => "EPERM".into(),
        libc::EBADF => "EBADF".into(),
        e => format!("errno {e}"),
    }
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Kernel => "kernel",
            Engine::Uaio => "uaio",
        }
    }

    /// `io_setup(nr, &ctx)`: returns the context or `-errno`.
    fn setup(self, nr: u32) -> Result<aio_context_t, i64> {
        let mut ctx: aio_context_t = 0;
        let ctxp: *mut aio_context_t = &mut ctx;
        let r = match self {
            // SAFETY: ctxp points to a live, zeroed local that the call fills in.
            Engine::Kernel => syscall_ret(unsafe { libc::syscall(libc::SYS_io_setup, nr as libc::c_long, ctxp) }),
            // SAFETY: as above.
            Engine::Uaio => unsafe { uaio::raw::io_setup(nr, ctxp) },
        };
        if r < 0 {
            Err(r)
        } else {
            Ok(ctx)
        }
    }

    /// `io_destroy(ctx)`; waits for whatever is still in flight.
    fn destroy(self, ctx: aio_context_t) {
        match self {
            // SAFETY: io_destroy only looks the handle up.
            Engine::Kernel => unsafe {
                libc::syscall(libc::SYS_io_destroy, ctx);
            },
            // SAFETY: as above.
            Engine::Uaio => unsafe {
                uaio::raw::io_destroy(ctx);
            },
        }
    }

    /// `io_submit(ctx, nr, iocbpp)`.
    ///
    /// # Safety
    /// `iocbpp` must point to `nr` pointers to valid iocbs whose buffers stay
    /// valid and untouched until the requests are reaped.
    unsafe fn submit(self, ctx: aio_context_t, nr: usize, iocbpp: *mut *mut iocb) -> i64 {
        match self {
            Engine::Kernel => {
                // SAFETY: forwarded contract.
                syscall_ret(unsafe { libc::syscall(libc::SYS_io_submit, ctx, nr as libc::c_long, iocbpp) })
            }
            // SAFETY: forwarded contract.
            Engine::Uaio => unsafe { uaio::raw::io_submit(ctx, nr as i64, iocbpp) },
        }
    }

    /// `io_getevents(ctx, min_nr, events.len(), events, NULL)`.
    fn getevents(self, ctx: aio_context_t, min_nr: usize, events: &mut [io_event]) -> i64 {
        let nr = events.len();
        let ev = events.as_mut_ptr();
        let timeout: *mut libc::timespec = std::ptr::null_mut();
        match self {
            // SAFETY: `ev` has room for `nr` events; a null timeout waits.
            Engine::Kernel => syscall_ret(unsafe {
                libc::syscall(libc::SYS_io_getevents, ctx, min_nr as libc::c_long, nr as libc::c_long, ev, timeout)
            }),
            // SAFETY: as above.
            Engine::Uaio => unsafe { uaio::raw::io_getevents(ctx, min_nr as i64, nr as i64, ev, timeout) },
        }
    }
}

/// xorshift64: cheap, deterministic offsets.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A random block-aligned offset inside the file.
    fn offset(&mut self) -> i64 {
        ((self.next() % NBLOCKS) * BLOCK as u64) as i64
    }
}

/// What a queue submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Noop,
    Read,
    Write,
}

/// One AIO context with a fixed set of request slots, each with its own
/// iocb and 4 KiB buffer. Slots cycle between `pending` (ready to submit)
/// and in flight.
struct Queue {
    engine: Engine,
    ctx: aio_context_t,
    work: Work,
    /// Never resized, so the addresses handed to the engine stay put.
    iocbs: Box<[iocb]>,
    /// Slot `i` owns `bufs[i * BLOCK..][..BLOCK]`. Only the engine touches it
    /// once the queue is built; Rust code never reads or writes it again.
    bufs: Box<[u8]>,
    events: Vec<io_event>,
    /// Slots ready to be submitted, in order.
    pending: Vec<usize>,
    /// Scratch array of iocb pointers for `io_submit`.
    ptrs: Vec<*mut iocb>,
    in_flight: usize,
    rng: XorShift,
}

impl Queue {
    fn new(engine: Engine, work: Work, depth: usize, fd: i32) -> Result<Queue, i64> {
        let ctx = engine.setup(depth as u32)?;
        let mut q = Queue {
            engine,
            ctx,
            work,
            iocbs: vec![iocb::default(); depth].into_boxed_slice(),
            bufs: vec![0x5a; depth * BLOCK].into_boxed_slice(),
            events: vec![io_event::default(); depth],
            pending: (0..depth).collect(),
            ptrs: Vec::with_capacity(depth),
            in_flight: 0,
            rng: XorShift(0x9e37_79b9_7f4a_7c15 ^ depth as u64 ^ ((engine as u64) << 32)),
        };
        let base = q.bufs.as_mut_ptr() as u64;
        for (i, cb) in q.iocbs.iter_mut().enumerate() {
            cb.aio_data = i as u64;
            cb.aio_fildes = fd as u32;
            match work {
                Work::Noop => cb.aio_lio_opcode = IOCB_CMD_NOOP,
                Work::Read | Work::Write => {
                    cb.aio_lio_opcode = if work == Work::Read { IOCB_CMD_PREAD } else { IOCB_CMD_PWRITE };
                    cb.aio_buf = base + (i * BLOCK) as u64;
                    cb.aio_nbytes = BLOCK as u64;
                    cb.aio_offset = q.rng.offset();
                }
            }
        }
        Ok(q)
    }

    fn depth(&self) -> usize {
        self.iocbs.len()
    }

    /// Submits every pending slot with one `io_submit`. A short count or
    /// `EAGAIN` leaves the rest pending for the next round.
    fn submit(&mut self) -> Res<()> {
        match self.try_submit() {
            r if r == -(libc::EAGAIN as i64) && self.in_flight > 0 => Ok(()),
            r if r < 0 => Err(format!("{} io_submit: {}", self.engine.name(), errno_str(r)).into()),
            _ => Ok(()),
        }
    }

    /// One `io_submit` of the pending slots; returns its result.
    fn try_submit(&mut self) -> i64 {
        if self.pending.is_empty() {
            return 0;
        }
        let base = self.iocbs.as_mut_ptr();
        self.ptrs.clear();
        self.ptrs.extend(self.pending.iter().map(|&i| base.wrapping_add(i)));
        // SAFETY: every pointer is to an iocb of `self.iocbs`, whose buffer
        // (if any) lies in `self.bufs`; both live until `Drop`, which destroys
        // the context (waiting for in-flight requests) before they are freed,
        // and neither is touched by Rust while a request is in flight.
        let r = unsafe { self.engine.submit(self.ctx, self.ptrs.len(), self.ptrs.as_mut_ptr()) };
        if r > 0 {
            self.pending.drain(..r as usize);
            self.in_flight += r as usize;
        }
        r
    }

    /// Reaps at least `min_nr` completions (capped at what is in flight),
    /// checks their results and queues the slots again with fresh offsets.
    fn reap(&mut self, min_nr: usize) -> Res<usize> {
        let min_nr = min_nr.min(self.in_flight);
        let r = self.engine.getevents(self.ctx, min_nr, &mut self.events);
        if r < 0 {
            return Err(format!("{} io_getevents: {}", self.engine.name(), errno_str(r)).into());
        }
        let want = if self.work == Work::Noop { 0 } else { BLOCK as i64 };
        for ev in &self.events[..r as usize] {
            let slot = ev.data as usize;
            if slot >= self.depth() || ev.obj != self.iocbs.as_ptr().wrapping_add(slot) as u64 {
                return Err(format!("{}: event for an unknown iocb: {ev:?}", self.engine.name()).into());
            }
            if ev.res != want {
                return Err(format!(
                    "{}: {:?} request returned {} (wanted {want})",
                    self.engine.name(),
                    self.work,
                    ev.res
                )
                .into());
            }
            if self.work != Work::Noop {
                self.iocbs[slot].aio_offset = self.rng.offset();
            }
            self.pending.push(slot);
        }
        self.in_flight -= r as usize;
        Ok(r as usize)
    }

    /// Reaps everything in flight; afterwards every slot is pending again.
    fn drain(&mut self) -> Res<()> {
        while self.in_flight > 0 {
            self.reap(self.in_flight)?;
        }
        Ok(())
    }

    /// Runs the closed loop (submit what is pending, reap at least `min_nr`)
    /// for `dur` and returns completed requests per second.
    fn run(&mut self, dur: Duration, min_nr: usize) -> Res<f64> {
        let start = Instant::now();
        let mut done = 0u64;
        let mut iter = 0u32;
        let rate = loop {
            self.submit()?;
            done += self.reap(min_nr)? as u64;
            iter = iter.wrapping_add(1);
            // Look at the clock every few rounds only: QD1 rounds are short.
            if iter & 15 == 0 {
                let el = start.elapsed();
                if el >= dur {
                    break done as f64 / el.as_secs_f64();
                }
            }
        };
        self.drain()?;
        Ok(rate)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.drain();
        // Waits for anything still in flight before `iocbs`/`bufs` are freed.
        self.engine.destroy(self.ctx);
    }
}

/// One workload row of the table.
struct Spec {
    label: &'static str,
    work: Work,
    depth: usize,
    /// `min_nr` of each `io_getevents`.
    min_nr: usize,
}

/// Median and relative spread of the measured runs.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    spread: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    Stat { median, spread: (v[v.len() - 1] - v[0]) / median }
}

/// Result of one engine on one workload.
enum Outcome {
    Measured(Stat),
    Unavailable(String),
}

/// Measures `spec` on every engine, interleaving the engines' runs.
fn measure(spec: &Spec, engines: &[Engine], fd: i32, dur: Duration, warmup: Duration) -> Res<Vec<Outcome>> {
    let mut queues = Vec::new();
    let mut out = Vec::new();
    for &e in engines {
        match Queue::new(e, spec.work, spec.depth, fd) {
            Ok(mut q) => {
                if spec.work == Work::Noop && e == Engine::Kernel {
                    // The kernel rejects NOOP: probe once to show the errno instead of a rate.
                    let r = q.try_submit();
                    if r < 0 {
                        queues.push(None);
                        out.push(Some(Outcome::Unavailable(errno_name(r))));
                        continue;
                    }
                    q.drain()?;
                }
                q.run(warmup, spec.min_nr)?;
                queues.push(Some(q));
                out.push(None);
            }
            Err(r) => {
                queues.push(None);
                out.push(Some(Outcome::Unavailable(format!("io_setup {}", errno_name(r)))));
            }
        }
    }
    let mut rates = vec![Vec::with_capacity(REPS); engines.len()];
    for _ in 0..REPS {
        for (q, r) in queues.iter_mut().zip(rates.iter_mut()) {
            if let Some(q) = q {
                r.push(q.run(dur, spec.min_nr)?);
            }
        }
    }
    Ok(out.into_iter().zip(rates).map(|(o, r)| o.unwrap_or_else(|| Outcome::Measured(stat(r)))).collect())
}

/// Creates the 64 MiB test file in /tmp, fills it, and reads it back once so
/// that every page is in the page cache.
fn make_file() -> Res<File> {
    let mut f = tempfile::tempfile_in("/tmp")?;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let chunk: Vec<u8> = (0..1 << 20).map(|_| rng.next() as u8).collect();
    for _ in 0..FILE_SIZE / chunk.len() as u64 {
        f.write_all(&chunk)?;
    }
    // Write back now so that writeback does not run during the read tests.
    f.sync_data()?;
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    if total != FILE_SIZE {
        return Err(format!("read back {total} bytes, wanted {FILE_SIZE}").into());
    }
    Ok(f)
}

/// `1234567.8` -> `"1,234,568"`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

fn cell(o: &Outcome) -> (String, String) {
    match o {
        Outcome::Measured(s) => (thousands(s.median), format!("{:.1}%", s.spread * 100.0)),
        Outcome::Unavailable(why) => (format!("n/a ({why})"), "-".into()),
    }
}

fn main() -> Res<()> {
    let secs: f64 = match std::env::var("QUICKBENCH_SECS") {
        Ok(v) => v.parse().map_err(|e| format!("QUICKBENCH_SECS={v:?}: {e}"))?,
        Err(_) => 1.0,
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("QUICKBENCH_SECS must be positive, got {secs}").into());
    }
    let dur = Duration::from_secs_f64(secs);
    let warmup = (dur / 5).min(Duration::from_millis(500));
    let filter = std::env::var("QUICKBENCH_FILTER").unwrap_or_default();

    let file = make_file()?;
    let fd = file.as_raw_fd();
    let specs = [
        Spec { label: "noop, batches of 32", work: Work::Noop, depth: 32, min_nr: 32 },
        Spec { label: "4k randread QD1", work: Work::Read, depth: 1, min_nr: 1 },
        Spec { label: "4k randread QD32", work: Work::Read, depth: 32, min_nr: 1 },
        Spec { label: "4k randwrite QD32 (buffered)", work: Work::Write, depth: 32, min_nr: 1 },
    ];
    let engines = [Engine::Kernel, Engine::Uaio];

    println!(
        "quickbench: uaio backend {}, 64 MiB file in /tmp (page cache), {:.2} s per run, median of {REPS} runs, \
         {:.2} s warm-up",
        uaio::backend_name(),
        dur.as_secs_f64(),
        warmup.as_secs_f64()
    );
    let mut table = String::new();
    writeln!(
        table,
        "{:<30} {:>16} {:>7} {:>14} {:>7} {:>11} {:>10} {:>10}",
        "workload", "kernel ops/s", "spread", "uaio ops/s", "spread", "uaio/kernel", "kernel ns", "uaio ns"
    )?;
    print!("{table}");
    for spec in specs.iter().filter(|s| s.label.contains(filter.as_str())) {
        let res = measure(spec, &engines, fd, dur, warmup)?;
        let (k, ks) = cell(&res[0]);
        let (u, us) = cell(&res[1]);
        let ns = |o: &Outcome| match o {
            Outcome::Measured(s) => format!("{:.0}", 1e9 / s.median),
            Outcome::Unavailable(_) => "-".into(),
        };
        let ratio = match (&res[0], &res[1]) {
            (Outcome::Measured(k), Outcome::Measured(u)) => format!("{:.2}x", u.median / k.median),
            _ => "n/a".into(),
        };
        println!(
            "{:<30} {:>16} {:>7} {:>14} {:>7} {:>11} {:>10} {:>10}",
            spec.label,
            k,
            ks,
            u,
            us,
            ratio,
            ns(&res[0]),
            ns(&res[1])
        );
    }
    println!("(spread = (max - min) / median of the {REPS} runs; ns = nanoseconds per op at the median rate)");
    Ok(())
}
