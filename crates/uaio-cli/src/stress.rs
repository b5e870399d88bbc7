//! `uaio stress`: many threads hammering the six AIO calls at once, with
//! every result checked.
//!
//! Threads submit batches (1 to 64 iocbs) to shared contexts and to one
//! private context each: reads and writes of regular files (plain and
//! vectored), fsync and fdatasync, reads and writes of pipes, reads of
//! eventfds, and `IOCB_CMD_POLL`. They reap with `io_getevents`,
//! `io_pgetevents` and straight from the ring in user space (head, tail and
//! the events at `ring + 32 + 32 * i`), cancel random pending requests, and
//! destroy contexts while requests are pending and while other threads still
//! submit to them or wait on them.
//!
//! Every request carries a unique tag (`aio_data`); the run checks:
//! - each accepted request gives exactly one event, or is accounted for by
//!   `io_destroy`: after it returns, no event for it may ever appear, a file
//!   write must be in the file (read back with `pread`), a file read must
//!   have filled its buffer, and only what may wait forever (a POLL, a read
//!   of a pipe or eventfd that had no data) may have been dropped;
//! - each result: byte counts, file data (every block carries its file,
//!   block number and version), pipe bytes in order with none lost or
//!   duplicated (a read cancelled with `-ECANCELED` consumed nothing),
//!   eventfd values (what was read plus what is left is what was written),
//!   POLL masks, `io_cancel` return codes, `EINVAL` on a destroyed context,
//!   no `EAGAIN` from `io_submit` while the ring has plenty of room;
//! - no buffer changes after its request was reported done: a checksum taken
//!   when the event is reaped is checked again later, and buffers of
//!   cancelled requests must still hold their guard pattern;
//! - no leak: descriptors and threads back to their starting counts.
//!
//! A watchdog fails the run if nothing progresses for `--watchdog` seconds,
//! naming what every thread was doing, and reports any request whose event
//! is overdue by as long. `--kernel` runs the same workload on kernel AIO
//! (raw system calls) as the oracle; expectations that differ by design
//! (`io_cancel` of reads and writes) follow the target.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use uaio::abi::{self, io_event, iocb, iovec};
use uaio_conform::{Aio, Kernel, Uaio};

use Ordering::{Acquire, Relaxed, Release, SeqCst};

/// What `uaio stress` was asked to do.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    threads: usize,
    requests: Option<u64>,
    seconds: Option<f64>,
    backend: Option<String>,
    seed: u64,
    dir: Option<PathBuf>,
    kernel: bool,
    watchdog: u64,
    shared: usize,
    verbose: bool,
}

/// The options of `uaio stress` (also what `uaio completions` offers).
pub fn command() -> clap::Command {
    use clap::{value_parser, Arg, ArgAction};
    let number = |name: &'static str, value: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(value).help(help)
    };
    clap::Command::new("stress")
        .bin_name("uaio stress")
        .about("Submit, reap, cancel and destroy from many threads and check every result")
        .disable_version_flag(true)
        .arg(number("threads", "N", "Worker threads, 1 to 256").default_value("8").value_parser(value_parser!(usize)))
        .arg(
            number("requests", "N", "Stop once N requests have been accepted (each thread submits batches of 1 to 64, so the count passes N by the batches in progress) [default: 20000]")
                .value_parser(value_parser!(u64))
                .conflicts_with("seconds"),
        )
        .arg(number("seconds", "S", "Stop after S seconds instead").value_parser(value_parser!(f64)))
        .arg(
            Arg::new("backend")
                .long("backend")
                .value_name("B")
                .value_parser(["uring", "io_uring", "threads"])
                .help("UAIO_BACKEND for this run"),
        )
        .arg(
            number("seed", "N", "Seed of the workload [default: from the clock; printed]")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .help("Scratch directory [default: a new directory under the temp dir]"),
        )
        .arg(
            Arg::new("kernel")
                .long("kernel")
                .action(ArgAction::SetTrue)
                .help("Run the same workload on kernel AIO (the oracle)"),
        )
        .arg(
            number("watchdog", "S", "Fail when nothing progresses for S seconds")
                .default_value("20")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            number("shared", "N", "Shared contexts, at most 64 (odd ones are reaped from the ring only)")
                .default_value("2")
                .value_parser(value_parser!(usize)),
        )
        .arg(
            Arg::new("verbose")
                .long("verbose")
                .short('v')
                .action(ArgAction::SetTrue)
                .help("Print progress every 2 seconds"),
        )
}

/// Parses the arguments after `stress` (clap's error, which prints the
/// help or the problem, for anything refused).
fn parse_args(args: &[String]) -> Result<Options, clap::Error> {
    let cmd = command();
    let m = cmd.clone().try_get_matches_from(std::iter::once("stress".to_string()).chain(args.iter().cloned()))?;
    let bad = |msg: &str| Err(cmd.clone().error(clap::error::ErrorKind::ValueValidation, msg));
    let mut o = Options {
        threads: *m.get_one("threads").expect("default"),
        requests: m.get_one("requests").copied(),
        seconds: m.get_one("seconds").copied(),
        backend: m.get_one::<String>("backend").cloned(),
        seed: m.get_one("seed").copied().unwrap_or_else(clock_seed),
        dir: m.get_one::<PathBuf>("dir").cloned(),
        kernel: m.get_flag("kernel"),
        watchdog: *m.get_one("watchdog").expect("default"),
        shared: *m.get_one("shared").expect("default"),
        verbose: m.get_flag("verbose"),
    };
    if o.threads == 0 || o.threads > 256 {
        return bad("--threads must be 1 to 256");
    }
    if o.requests.is_none() && o.seconds.is_none() {
        o.requests = Some(20_000);
    }
    if o.requests == Some(0) {
        return bad("--requests must be at least 1");
    }
    // A run of a week at most (a larger value would not fit the clock's
    // arithmetic, and NaN never ends).
    if o.seconds.is_some_and(|s| !(s > 0.0 && s <= 604_800.0)) {
        return bad("--seconds must be more than 0 and at most 604800");
    }
    if o.shared > 64 {
        return bad("--shared must be 0 to 64");
    }
    if o.watchdog == 0 {
        return bad("--watchdog must be at least 1 second");
    }
    Ok(o)
}

/// A seed from the clock and the process id, when none is given.
fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_007
}

// ---------------------------------------------------------------------------
// Sizes and patterns.

/// Bytes per file block; every block carries its identity and version.
const BS: usize = 512;
/// Blocks per data file.
const FILE_BLOCKS: u32 = 256;
/// Data files.
const NFILES: usize = 4;
/// Blocks one read or write covers at most.
const MAX_BLOCKS: u32 = 4;
/// `nr_events` of every `io_setup`.
const RING_NR: u32 = 128;
/// Requests a context may have outstanding (submitted, event not consumed).
/// Far below what `io_setup(RING_NR)` guarantees on both targets, so any
/// `EAGAIN` from `io_submit` is spurious.
const CAP: usize = 96;
/// POLLs on the never-ready pipe per context at most.
const MAX_IDLE_POLLS: usize = 6;
/// Largest pipe write (a pipe write up to `PIPE_BUF` is atomic).
const PIPE_WRITE_MAX: u64 = 1024;
/// Largest pipe read.
const PIPE_READ_MAX: u64 = 2048;
/// Bytes a pipe may hold, written or being written: far below its capacity,
/// so no pipe write ever waits for room.
const PIPE_FILL_MAX: u64 = 16 * 1024;
/// Read buffers kept, per thread, to check that nothing writes them late.
const QUARANTINE: usize = 512;
/// Stored buffer content of an eventfd read that did not happen (a counter
/// never reaches `u64::MAX`).
const EFD_GUARD: u64 = u64::MAX;
/// `POLLIN`.
const POLLIN: i64 = 0x1;
/// `POLLRDNORM`.
const POLLRDNORM: i64 = 0x40;
/// Tag of a block header word (top byte).
const HDR: u64 = 0x5a;
/// Mixed into the tag to make the guard pattern of a read buffer.
const GUARD_SALT: u64 = 0x6a09_e667_f3bc_c909;

/// The splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64* generator: small, seedable, enough to pick operations.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    fn new(seed: u64) -> Self {
        Rng(mix(seed) | 1)
    }
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Byte `p` of stream `s` (pipes carry these bytes in order).
fn stream_bytes(salt: u64, s: u32, pos: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    let first = pos / 8;
    let last = (pos + n as u64).div_ceil(8);
    for w in first..last {
        out.extend_from_slice(&mix(salt ^ (u64::from(s) << 48) ^ w).to_le_bytes());
    }
    let skip = (pos % 8) as usize;
    out.drain(..skip);
    out.truncate(n);
    out
}

/// The guard of a pipe read buffer: the complement of the stream bytes the
/// read would receive, so each byte is either data or guard, never both.
fn stream_guard(salt: u64, s: u32, pos: u64, n: usize) -> Vec<u8> {
    stream_bytes(salt, s, pos, n).into_iter().map(|b| !b).collect()
}

/// The guard of other read buffers.
fn guard_bytes(tag: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    for w in 0..n.div_ceil(8) as u64 {
        out.extend_from_slice(&mix(tag ^ GUARD_SALT ^ w).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Content of `block` of `file` at `version`: a header word naming all
/// three, then words derived from them.
fn block_bytes(salt: u64, file: u32, block: u32, version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(BS);
    for j in 0..(BS / 8) as u64 {
        let w = if j == 0 {
            (HDR << 56) | (u64::from(file) << 48) | (u64::from(block) << 32) | u64::from(version)
        } else {
            mix(salt ^ (u64::from(file) << 56) ^ (u64::from(block) << 40) ^ (u64::from(version) << 8) ^ j)
        };
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// What a block's bytes are, for messages.
fn describe_block(salt: u64, bytes: &[u8], guard: Option<&[u8]>) -> String {
    if guard.is_some_and(|g| g == bytes) {
        return "the untouched guard pattern".into();
    }
    if bytes.iter().all(|&b| b == 0) {
        return "zeros".into();
    }
    if bytes.len() >= 8 {
        let w = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        if w >> 56 == HDR {
            let (f, b, v) = ((w >> 48) as u8 as u32, (w >> 32) as u16 as u32, w as u32);
            let intact = bytes.len() == BS && block_bytes(salt, f, b, v) == bytes;
            return format!("file {f} block {b} version {v}{}", if intact { "" } else { " (torn)" });
        }
    }
    "unrecognised bytes".into()
}

/// Index of the first byte where `a` and `b` differ (or where the shorter ends).
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len())))
}

/// A 64-bit checksum of a buffer, to see later whether it changed.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29)
    })
}

/// `-EINVAL` and the like for a negative errno result, the number otherwise.
fn errno_name(r: i64) -> String {
    match uaio_conform::errno_symbol(-r as i32) {
        Some(name) => format!("-{name}"),
        None => r.to_string(),
    }
}

/// `-ECANCELED`.
const ECANCELED: i64 = -(libc::ECANCELED as i64);
/// `-EINVAL`.
const EINVAL: i64 = -(libc::EINVAL as i64);
/// `-EINPROGRESS`.
const EINPROGRESS: i64 = -(libc::EINPROGRESS as i64);
/// `-EAGAIN`.
const EAGAIN: i64 = -(libc::EAGAIN as i64);

// ---------------------------------------------------------------------------
// Small system helpers.

/// `errno` of the last failed call.
fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A pipe (read end, write end), blocking, close-on-exec.
fn new_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An eventfd at 0, close-on-exec, with extra `flags`.
fn new_eventfd(flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointer.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bytes waiting in a pipe.
fn fionread(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int at the pointer we pass.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    (r == 0).then_some(n as u64)
}

/// Reads up to 8 bytes from a non-blocking eventfd: its counter, 0 if none.
fn eventfd_take(fd: RawFd) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reads at most 8 bytes into `v`.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if r == 8 {
        Ok(v)
    } else if r < 0 && last_errno() == libc::EAGAIN {
        Ok(0)
    } else {
        Err(if r < 0 { last_errno() } else { libc::EIO })
    }
}

/// Waits up to `ms` milliseconds for `fd` to be readable.
fn poll_in(fd: RawFd, ms: i32) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd, valid for the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// Descriptors, threads and resident memory of this process.
#[derive(Debug, Clone, Copy)]
struct Figures {
    fds: usize,
    threads: u64,
    rss_kb: u64,
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut v: Vec<String> = dir
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    v.sort();
    v
}

/// This process's figures now, from `/proc/self`.
fn figures() -> Figures {
    // uaio's files kept open for the life of the process (opened on first
    // use, during the run) are not a leak.
    let all = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let fds = all.saturating_sub(uaio::kept_descriptors());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    // io_uring's workers (kernel threads of the process, `iou-wrk-<tid>`)
    // stay idle while the io_uring instances uaio keeps for later contexts
    // live, at least one for each thread that had work run by them: the
    // kernel's, not a leak of uaio's.
    let workers = if uaio::kept_rings() > 0 {
        thread_names().iter().filter(|n| n.starts_with("iou-wrk-")).count() as u64
    } else {
        0
    };
    Figures { fds, threads: field("Threads:").saturating_sub(workers), rss_kb: field("VmRSS:") }
}

// ---------------------------------------------------------------------------
// Shared state.

/// Kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lost,
    Duplicated,
    WrongResult,
    LateWrite,
    Hang,
    BadCall,
    Leak,
}

/// Every kind, in the order of the counters.
const KINDS: [Kind; 7] =
    [Kind::Lost, Kind::Duplicated, Kind::WrongResult, Kind::LateWrite, Kind::Hang, Kind::BadCall, Kind::Leak];

impl Kind {
    /// How the kind is printed.
    fn name(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Duplicated => "duplicated",
            Kind::WrongResult => "wrong result",
            Kind::LateWrite => "late buffer write",
            Kind::Hang => "hang",
            Kind::BadCall => "bad call result",
            Kind::Leak => "leak",
        }
    }
}

/// Counters of the run.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    rejected: AtomicU64,
    events: AtomicU64,
    ring_events: AtomicU64,
    by_destroy: AtomicU64,
    ecanceled: AtomicU64,
    cancel_calls: AtomicU64,
    cancel_inprogress: AtomicU64,
    polls_cancelled: AtomicU64,
    destroys: AtomicU64,
    racing_einval: AtomicU64,
    stale_checks: AtomicU64,
    setups: AtomicU64,
    file_bytes: AtomicU64,
    pipe_bytes: AtomicU64,
}

/// Request states.
const ST_SUBMITTING: u8 = 0;
/// `io_submit` accepted it.
const ST_ACCEPTED: u8 = 1;
/// Its event was reaped.
const ST_EVENT: u8 = 2;
/// `io_destroy` accounted for it (no event).
const ST_DESTROYED: u8 = 3;
/// `io_submit` did not accept it.
const ST_REJECTED: u8 = 4;
/// Reported lost: no event came in time.
const ST_LOST: u8 = 5;

/// Cancellation states.
const C_NONE: u8 = 0;
/// `io_cancel` is being called for it.
const C_ASKED: u8 = 1;
/// `io_cancel` returned `-EINPROGRESS`.
const C_INPROGRESS: u8 = 2;
/// `io_cancel` returned `-EINVAL`.
const C_REFUSED: u8 = 3;

/// What a request does.
#[derive(Debug)]
enum Op {
    FileRead {
        file: u32,
        block: u32,
        versions: Vec<u32>,
        expect: usize,
        vectored: bool,
    },
    FileWrite {
        file: u32,
        block: u32,
        old: Vec<u32>,
        new: Vec<u32>,
        vectored: bool,
    },
    Sync {
        file: u32,
        data_only: bool,
    },
    PipeRead {
        s: u32,
        pos: u64,
        avail: u64,
    },
    PipeWrite {
        s: u32,
        pos: u64,
    },
    EfdRead {
        s: u32,
        avail: u64,
    },
    /// `None`: the pipe nobody ever writes.
    Poll {
        s: Option<u32>,
    },
}

/// One submitted request, alive until it is resolved and out of quarantine.
#[derive(Debug)]
struct Req {
    tag: u64,
    ctx: u64,
    op: Op,
    /// The iocb, as eight words so the AIO implementation may write
    /// `aio_key` through a shared reference.
    cb: [AtomicU64; 8],
    /// The data buffer (atomic words: the I/O writes it behind our back).
    buf: Box<[AtomicU64]>,
    len: usize,
    iov: Vec<iovec>,
    /// Initial content of a read buffer.
    guard: Vec<u8>,
    state: AtomicU8,
    cancel: AtomicU8,
    got_ecanceled: AtomicBool,
    /// `io_cancel` returned `-EINPROGRESS` while the request could not
    /// possibly complete: its event must be `-ECANCELED`.
    must_cancel: AtomicBool,
    /// Its event was reaped while its context was being destroyed, and it
    /// is one io_destroy cancels.
    destroy_cancel: AtomicBool,
    /// Its event was reaped while its context was being destroyed.
    during_destroy: AtomicBool,
    /// The request finishes by itself (not a POLL or a read of an empty stream).
    completing: bool,
    /// Milliseconds since the start at which its event became due (0: it
    /// may wait forever until cancelled).
    due_ms: AtomicU64,
    flagged: AtomicBool,
}

impl Req {
    /// Address of the iocb, as submitted (and as the event's `obj`).
    fn cb_ptr(&self) -> *mut iocb {
        self.cb.as_ptr() as *mut iocb
    }
    /// A copy of the data buffer as it is now.
    fn bytes(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.buf.iter().flat_map(|w| w.load(Relaxed).to_le_bytes()).collect();
        v.truncate(self.len);
        v
    }
    /// Whether a cancellation (by `io_cancel` or by `io_destroy`) may have ended it.
    fn cancel_asked(&self) -> bool {
        matches!(self.cancel.load(SeqCst), C_ASKED | C_INPROGRESS) || self.destroy_cancel.load(SeqCst)
    }
    /// The opcode, as printed.
    fn name(&self) -> &'static str {
        match &self.op {
            Op::FileRead { vectored: false, .. } => "PREAD",
            Op::FileRead { vectored: true, .. } => "PREADV",
            Op::FileWrite { vectored: false, .. } => "PWRITE",
            Op::FileWrite { vectored: true, .. } => "PWRITEV",
            Op::Sync { data_only: false, .. } => "FSYNC",
            Op::Sync { data_only: true, .. } => "FDSYNC",
            Op::PipeRead { .. } => "PREAD(pipe)",
            Op::PipeWrite { .. } => "PWRITE(pipe)",
            Op::EfdRead { .. } => "PREAD(eventfd)",
            Op::Poll { .. } => "POLL",
        }
    }
}

/// The iocb as eight little-endian words, in the kernel's layout.
fn pack_iocb(cb: &iocb) -> [AtomicU64; 8] {
    let w = [
        cb.aio_data,
        u64::from(cb.aio_key) | (u64::from(cb.aio_rw_flags) << 32),
        u64::from(cb.aio_lio_opcode) | (u64::from(cb.aio_reqprio as u16) << 16) | (u64::from(cb.aio_fildes) << 32),
        cb.aio_buf,
        cb.aio_nbytes,
        cb.aio_offset as u64,
        cb.aio_reserved2,
        u64::from(cb.aio_flags) | (u64::from(cb.aio_resfd) << 32),
    ];
    w.map(AtomicU64::new)
}

/// Counts for the `IOCB_FLAG_RESFD` ordering check of a ring-reaped context.
#[derive(Debug, Default)]
struct RingCheck {
    signals: u64,
    reaped: u64,
}

/// One AIO context.
#[derive(Debug)]
struct Ctx {
    handle: u64,
    serial: u64,
    label: String,
    /// Reaped only from the ring, by one thread at a time, woken by `resfd`.
    ring_mode: bool,
    private: bool,
    resfd: Option<OwnedFd>,
    /// Read-held around every call on the handle; write-held by the
    /// destroyer once `io_destroy` returned, to wait for racing calls.
    ops: RwLock<()>,
    /// Held while reading the ring, and by the destroyer around
    /// `io_destroy` (which unmaps it).
    ring: Mutex<RingCheck>,
    pending: Mutex<HashMap<u64, Arc<Req>>>,
    outstanding: AtomicUsize,
    completing: AtomicUsize,
    idle_polls: AtomicUsize,
    destroying: AtomicBool,
    destroyed: AtomicBool,
    retired: AtomicBool,
}

/// A regular file split in versioned blocks.
#[derive(Debug)]
struct DataFile {
    file: File,
    /// Per block: `BUSY` while a request owns it, and its version.
    blocks: Vec<AtomicU64>,
}

/// Block word bit: a request owns the block.
const BUSY: u64 = 1 << 63;

/// A pending or unresolved pipe write.
#[derive(Debug, Clone)]
struct WriteSlot {
    tag: u64,
    pos: u64,
    len: u64,
    /// Set once the request is over but what reached the pipe is unknown
    /// (no event, or `-ECANCELED`): the bytes that may be found.
    unresolved: Option<Allowed>,
}

/// What an unresolved pipe write may have written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Allowed {
    Nothing,
    All,
    NothingOrAll,
}

#[derive(Debug)]
enum StreamKind {
    Pipe { r: OwnedFd, w: OwnedFd },
    Efd { fd: OwnedFd },
}

/// A pipe or an eventfd, with what was written to and read from it.
#[derive(Debug)]
struct Stream {
    id: u32,
    kind: StreamKind,
    st: Mutex<StreamState>,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Pipe: bytes certainly written; eventfd: sum of values written.
    wpos: u64,
    /// Pipe: bytes consumed; eventfd: sum of values read.
    rpos: u64,
    write: Option<WriteSlot>,
    /// The pending read, if any (one at a time keeps the order known).
    read: Option<u64>,
    last_cancelled_read: Option<(u64, u64)>,
    /// A request on it was lost: its content is unknown from then on.
    tainted: bool,
}

/// What each thread is doing, for the watchdog.
#[derive(Debug, Default)]
struct Activity {
    what: AtomicU32,
    ctx: AtomicU64,
    detail: AtomicU64,
    since_ms: AtomicU64,
}

/// Activity: between calls.
const A_IDLE: u32 = 0;
/// Activity: in `io_submit`.
const A_SUBMIT: u32 = 1;
/// Activity: in `io_getevents`.
const A_GETEVENTS: u32 = 2;
/// Activity: in `io_pgetevents`.
const A_PGETEVENTS: u32 = 3;
/// Activity: reaping from the ring.
const A_RING: u32 = 4;
/// Activity: in `io_cancel`.
const A_CANCEL: u32 = 5;
/// Activity: in `io_destroy`.
const A_DESTROY: u32 = 6;
/// Activity: waiting for calls racing `io_destroy`.
const A_DESTROY_WAIT: u32 = 7;
/// Activity: in `io_setup`.
const A_SETUP: u32 = 8;
/// Activity: waiting on a RESFD eventfd.
const A_RESFD_WAIT: u32 = 9;
/// Activity: draining a context at the end.
const A_DRAIN: u32 = 10;
/// Activity: waiting for the workers.
const A_JOIN: u32 = 11;
/// Activity: calling on a destroyed handle.
const A_STALE: u32 = 12;
/// Activity: finished.
const A_DONE: u32 = 13;
/// Activity: waiting for the setup lock.
const A_SETUP_WAIT: u32 = 14;

/// Everything the threads share.
struct World {
    o: Options,
    aio: &'static dyn Aio,
    target: String,
    salt: u64,
    tag_hi: u64,
    files: Vec<DataFile>,
    streams: Vec<Stream>,
    npipes: usize,
    idle: (OwnedFd, OwnedFd),
    shared: Vec<Mutex<Arc<Ctx>>>,
    all_ctx: Mutex<HashMap<u64, Arc<Ctx>>>,
    /// Write-held by `io_setup`; read-held by destroyers until racing calls
    /// are over and by stale-handle checks, so no new context can take the
    /// address of one being destroyed while a call may still use it.
    setup_lock: RwLock<()>,
    live: Mutex<HashSet<u64>>,
    stale: Mutex<VecDeque<u64>>,
    /// Every tag ever registered: context serial << 8 | state.
    registry: Vec<Mutex<HashMap<u64, u64>>>,
    next_tag: AtomicU64,
    next_serial: AtomicU64,
    stop: AtomicBool,
    progress: AtomicU64,
    activity: Vec<Activity>,
    stats: Stats,
    counts: [AtomicU64; 7],
    printed: AtomicU64,
    t0: Instant,
    /// The scratch directory, when the run created it (removed at the end,
    /// also when the watchdog ends the run).
    scratch: Option<PathBuf>,
}

/// Per-thread state.
struct Thr {
    id: usize,
    rng: Rng,
    quarantine: VecDeque<(Arc<Req>, u64)>,
    private: Option<Arc<Ctx>>,
    events: Vec<io_event>,
}

/// Locks `m`, poisoned or not (a panic is reported by the join).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    /// Records a violation and prints it (the first hundred).
    fn viol(&self, kind: Kind, msg: String) {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.counts[i].fetch_add(1, SeqCst);
        let n = self.printed.fetch_add(1, SeqCst);
        if n < 100 {
            eprintln!("VIOLATION [{}] {msg}", kind.name());
        } else if n == 100 {
            eprintln!("(further violations are counted, not printed)");
        }
    }

    /// Violations so far.
    fn violations(&self) -> u64 {
        self.counts.iter().map(|c| c.load(SeqCst)).sum()
    }

    /// Milliseconds since the start, never 0.
    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64 + 1
    }

    /// Publishes what thread `t` is doing, for the watchdog.
    fn act(&self, t: usize, what: u32, ctx: u64, detail: u64) {
        let a = &self.activity[t];
        a.what.store(what, Relaxed);
        a.ctx.store(ctx, Relaxed);
        a.detail.store(detail, Relaxed);
        a.since_ms.store(self.now_ms(), Relaxed);
    }

    /// Notes progress, for the watchdog.
    fn tick(&self) {
        self.progress.fetch_add(1, Relaxed);
    }

    /// Records where `tag` is and in which state.
    fn register(&self, tag: u64, v: u64) {
        lock(&self.registry[(mix(tag) % self.registry.len() as u64) as usize]).insert(tag, v);
    }

    /// Where `tag` is and in which state, if it was ever registered.
    fn registered(&self, tag: u64) -> Option<u64> {
        lock(&self.registry[(mix(tag) % self.registry.len() as u64) as usize]).get(&tag).copied()
    }

    /// The label of the context with `serial`.
    fn ctx_label(&self, serial: u64) -> String {
        match lock(&self.all_ctx).get(&serial) {
            Some(c) => c.label.clone(),
            None => format!("context #{serial}"),
        }
    }

    /// A request in words: tag, opcode, what it works on, context.
    fn describe(&self, req: &Req) -> String {
        let what = match &req.op {
            Op::FileRead { file, block, versions, expect, .. } => format!(
                "file {file} blocks {block}..{} ({} bytes at {}, {expect} expected, versions {versions:?})",
                block + versions.len() as u32,
                req.len,
                u64::from(*block) * BS as u64
            ),
            Op::FileWrite { file, block, new, .. } => format!(
                "file {file} blocks {block}..{} ({} bytes, versions {new:?})",
                block + new.len() as u32,
                req.len
            ),
            Op::Sync { file, .. } => format!("file {file}"),
            Op::PipeRead { s, pos, avail } => {
                format!("pipe {s} ({} bytes at stream position {pos}, {avail} known to be in the pipe)", req.len)
            }
            Op::PipeWrite { s, pos } => format!("pipe {s} ({} bytes at stream position {pos})", req.len),
            Op::EfdRead { s, avail } => format!("eventfd {s} (counter at least {avail})"),
            Op::Poll { s: None } => "POLLIN on a pipe that never has data".to_string(),
            Op::Poll { s: Some(s) } => format!("POLLIN on stream {s}"),
        };
        let iov = if req.iov.is_empty() { String::new() } else { format!(" in {} iovecs", req.iov.len()) };
        format!("tag {:#x} {}{iov} {what} on {}", req.tag, req.name(), self.ctx_label(req.ctx))
    }

    // -----------------------------------------------------------------------
    // Contexts.

    /// `io_setup` of a new context; `None` (reported) if it fails.
    fn new_ctx(&self, t: &Thr, label: String, private: bool, ring_mode: bool) -> Option<Arc<Ctx>> {
        let serial = self.next_serial.fetch_add(1, Relaxed);
        let label = format!("{label}#{serial}");
        let resfd = if ring_mode {
            match new_eventfd(libc::EFD_NONBLOCK) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    self.viol(Kind::BadCall, format!("eventfd for {label}: {e}"));
                    return None;
                }
            }
        } else {
            None
        };
        self.act(t.id, A_SETUP_WAIT, serial, 0);
        let _s = self.setup_lock.write().unwrap_or_else(|e| e.into_inner());
        self.act(t.id, A_SETUP, serial, 0);
        let mut handle = 0u64;
        let start = Instant::now();
        loop {
            // SAFETY: `handle` is a live u64 holding 0, as io_setup requires.
            let r = unsafe { self.aio.setup(RING_NR, &mut handle) };
            if r == 0 {
                break;
            }
            if r == EAGAIN && self.o.kernel && start.elapsed() < Duration::from_secs(10) {
                // Kernel AIO: the host-wide aio-max-nr is shared with every
                // other process on the machine; wait for room.
                handle = 0;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            self.viol(Kind::BadCall, format!("io_setup({RING_NR}) for {label} returned {}", errno_name(r)));
            self.act(t.id, A_IDLE, 0, 0);
            return None;
        }
        // SAFETY: a successful io_setup mapped the ring at `handle`; only a
        // later io_destroy, which needs the context we are creating, unmaps it.
        let hdr = unsafe { std::ptr::read_volatile(handle as *const abi::aio_ring) };
        if hdr.magic != abi::AIO_RING_MAGIC || hdr.header_length != 32 || hdr.nr < RING_NR || hdr.head != hdr.tail {
            self.viol(Kind::BadCall, format!("ring header of new {label}: {hdr:?}"));
        }
        lock(&self.live).insert(handle);
        let ctx = Arc::new(Ctx {
            handle,
            serial,
            label,
            ring_mode,
            private,
            resfd,
            ops: RwLock::new(()),
            ring: Mutex::new(RingCheck::default()),
            pending: Mutex::new(HashMap::new()),
            outstanding: AtomicUsize::new(0),
            completing: AtomicUsize::new(0),
            idle_polls: AtomicUsize::new(0),
            destroying: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        });
        lock(&self.all_ctx).insert(serial, ctx.clone());
        self.stats.setups.fetch_add(1, Relaxed);
        self.act(t.id, A_IDLE, 0, 0);
        Some(ctx)
    }

    /// A random shared context, replacing a destroyed one first.
    fn pick_shared(&self, t: &mut Thr) -> Option<Arc<Ctx>> {
        if self.shared.is_empty() {
            return None;
        }
        let slot = t.rng.below(self.shared.len() as u64) as usize;
        let cur = lock(&self.shared[slot]).clone();
        if !cur.retired.load(Acquire) {
            return Some(cur);
        }
        let mut g = lock(&self.shared[slot]);
        if self.stop.load(SeqCst) {
            return None;
        }
        if Arc::ptr_eq(&g, &cur) {
            let n = self.new_ctx(
                t,
                format!("shared-{slot}{}", if cur.ring_mode { "(ring)" } else { "" }),
                false,
                cur.ring_mode,
            )?;
            *g = n;
        }
        Some(g.clone())
    }

    /// `io_destroy` with requests pending and maybe other threads still
    /// calling on the context; then accounts for every request that got no
    /// event. Returns false if another thread destroys it.
    fn destroy_ctx(&self, t: &mut Thr, ctx: &Arc<Ctx>) -> bool {
        if ctx.destroying.swap(true, SeqCst) {
            return false;
        }
        let setup = self.setup_lock.read().unwrap_or_else(|e| e.into_inner());
        self.act(t.id, A_DESTROY, ctx.serial, lock(&ctx.pending).len() as u64);
        let r = {
            let _ring = lock(&ctx.ring);
            // SAFETY: io_destroy takes no pointer; the handle is only looked up.
            let r = unsafe { self.aio.destroy(ctx.handle) };
            ctx.destroyed.store(true, SeqCst);
            r
        };
        if r != 0 {
            self.viol(Kind::BadCall, format!("io_destroy({}) returned {}", ctx.label, errno_name(r)));
        }
        lock(&self.live).remove(&ctx.handle);
        self.act(t.id, A_DESTROY_WAIT, ctx.serial, 0);
        let ops = ctx.ops.write().unwrap_or_else(|e| e.into_inner());
        self.act(t.id, A_DESTROY, ctx.serial, 0);
        // No context can have been created at this address since: we hold
        // the setup lock.
        if r == 0 {
            self.stale_calls(t, ctx.handle, &ctx.label);
        }
        // Not exact in time: the kernel rule is that every request is over
        // when io_destroy returns, but we look once the calls racing it have
        // returned too (a request they got accepted is only known then). A
        // request still running when io_destroy returned and finished just
        // after would pass; one never finished, or dropped, does not.
        let left: Vec<Arc<Req>> = lock(&ctx.pending).drain().map(|(_, r)| r).collect();
        for req in left {
            if req.state.compare_exchange(ST_ACCEPTED, ST_DESTROYED, SeqCst, SeqCst).is_err() {
                // A request is registered only while its submitter holds the
                // ops lock, and is then accepted or removed.
                self.viol(
                    Kind::BadCall,
                    format!("internal: {} in state {} at destroy", self.describe(&req), req.state.load(SeqCst)),
                );
                continue;
            }
            self.stats.by_destroy.fetch_add(1, Relaxed);
            self.register(req.tag, (ctx.serial << 8) | u64::from(ST_DESTROYED));
            self.settle(t, &req, None);
        }
        ctx.retired.store(true, Release);
        drop(ops);
        {
            let mut st = lock(&self.stale);
            st.push_back(ctx.handle);
            if st.len() > 32 {
                st.pop_front();
            }
        }
        drop(setup);
        lock(&self.all_ctx).remove(&ctx.serial);
        self.stats.destroys.fetch_add(1, Relaxed);
        self.tick();
        self.act(t.id, A_IDLE, 0, 0);
        true
    }

    /// Calls on a destroyed handle (that no new context took over) must all
    /// give `EINVAL`.
    fn stale_check(&self, t: &mut Thr) {
        let _s = self.setup_lock.read().unwrap_or_else(|e| e.into_inner());
        let h = {
            let st = lock(&self.stale);
            if st.is_empty() {
                return;
            }
            st[t.rng.below(st.len() as u64) as usize]
        };
        if lock(&self.live).contains(&h) {
            return;
        }
        self.stale_calls(t, h, &format!("the destroyed context at {h:#x}"));
    }

    /// The four calls on the handle `h` of a destroyed context, which no
    /// new context took over (the caller holds the setup lock).
    fn stale_calls(&self, t: &mut Thr, h: u64, label: &str) {
        self.act(t.id, A_STALE, 0, h);
        let cb = iocb {
            aio_data: 0,
            aio_lio_opcode: abi::IOCB_CMD_POLL,
            aio_fildes: self.idle.0.as_raw_fd() as u32,
            aio_buf: POLLIN as u64,
            ..Default::default()
        };
        let mut cb1 = cb;
        let mut ptrs = [&mut cb1 as *mut iocb];
        let mut ev = [io_event::default(); 1];
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let mut cb2 = cb;
        // SAFETY: every pointer is to a live local; the handle is not a live
        // context, so nothing is retained.
        let rs = unsafe {
            [
                ("io_submit", self.aio.submit(h, 1, ptrs.as_mut_ptr())),
                ("io_getevents", self.aio.getevents(h, 0, 1, ev.as_mut_ptr(), &mut ts)),
                ("io_cancel", self.aio.cancel(h, &mut cb2, ev.as_mut_ptr())),
                ("io_destroy", self.aio.destroy(h)),
            ]
        };
        for (call, r) in rs {
            if r != EINVAL {
                self.viol(
                    Kind::BadCall,
                    format!("{call} on {label} once io_destroy returned gave {}, expected -EINVAL", errno_name(r)),
                );
            }
        }
        self.stats.stale_checks.fetch_add(1, Relaxed);
        self.act(t.id, A_IDLE, 0, 0);
    }

    // -----------------------------------------------------------------------
    // Building requests.

    /// Takes blocks `b..b + k` of file `f` for one request; their versions, or `None` if one is busy.
    fn claim_blocks(&self, f: u32, b: u32, k: u32) -> Option<Vec<u32>> {
        let blocks = &self.files[f as usize].blocks;
        let mut got = Vec::new();
        for i in b..b + k {
            let cur = blocks[i as usize].load(SeqCst);
            if cur & BUSY != 0 || blocks[i as usize].compare_exchange(cur, cur | BUSY, SeqCst, SeqCst).is_err() {
                for (j, v) in got.iter().enumerate() {
                    blocks[(b + j as u32) as usize].store(u64::from(*v), SeqCst);
                }
                return None;
            }
            got.push(cur as u32);
        }
        Some(got)
    }

    /// Gives blocks back, at the given versions.
    fn release_blocks(&self, f: u32, b: u32, versions: &[u32]) {
        for (j, v) in versions.iter().enumerate() {
            self.files[f as usize].blocks[(b + j as u32) as usize].store(u64::from(*v), SeqCst);
        }
    }

    /// Splits `len` bytes at `base` into 1 to 8 iovecs (some maybe empty).
    fn split_iov(rng: &mut Rng, base: u64, len: usize) -> Vec<iovec> {
        let n = rng.range(1, 8) as usize;
        let mut cuts: Vec<usize> = (1..n).map(|_| rng.below(len as u64 + 1) as usize).collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        cuts.windows(2).map(|w| iovec { iov_base: base + w[0] as u64, iov_len: (w[1] - w[0]) as u64 }).collect()
    }

    /// Builds one request for `ctx`, claiming what it works on; `None` when
    /// what was picked is busy.
    fn make_req(&self, t: &mut Thr, ctx: &Ctx) -> Option<Arc<Req>> {
        let tag = self.tag_hi | self.next_tag.fetch_add(1, Relaxed);
        let kernel = self.o.kernel;
        let mut cb = iocb { aio_data: tag, ..Default::default() };
        let mut completing = true;
        let (op, content, guard, len): (Op, Vec<u8>, Vec<u8>, usize);
        let pick = t.rng.below(100);
        match pick {
            0..=39 => {
                let f = t.rng.below(NFILES as u64) as u32;
                let k = t.rng.range(1, u64::from(MAX_BLOCKS)) as u32;
                let write = pick >= 22;
                let vectored = pick.is_multiple_of(3);
                if write {
                    let b = t.rng.below(u64::from(FILE_BLOCKS - k + 1)) as u32;
                    let old = self.claim_blocks(f, b, k)?;
                    let new: Vec<u32> = old.iter().map(|v| v.wrapping_add(1) & 0x7fff_ffff).collect();
                    let mut c = Vec::with_capacity(k as usize * BS);
                    for (j, v) in new.iter().enumerate() {
                        c.extend(block_bytes(self.salt, f, b + j as u32, *v));
                    }
                    len = c.len();
                    cb.aio_lio_opcode = if vectored { abi::IOCB_CMD_PWRITEV } else { abi::IOCB_CMD_PWRITE };
                    cb.aio_fildes = self.files[f as usize].file.as_raw_fd() as u32;
                    cb.aio_offset = i64::from(b) * BS as i64;
                    op = Op::FileWrite { file: f, block: b, old, new, vectored };
                    content = c;
                    guard = Vec::new();
                } else {
                    // Reads may run past the end of the file: a short count.
                    let b = t.rng.below(u64::from(FILE_BLOCKS)) as u32;
                    let inside = k.min(FILE_BLOCKS - b);
                    let versions = self.claim_blocks(f, b, inside)?;
                    len = k as usize * BS;
                    guard = guard_bytes(tag, len);
                    content = guard.clone();
                    cb.aio_lio_opcode = if vectored { abi::IOCB_CMD_PREADV } else { abi::IOCB_CMD_PREAD };
                    cb.aio_fildes = self.files[f as usize].file.as_raw_fd() as u32;
                    cb.aio_offset = i64::from(b) * BS as i64;
                    op = Op::FileRead { file: f, block: b, versions, expect: inside as usize * BS, vectored };
                }
            }
            40..=43 => {
                let f = t.rng.below(NFILES as u64) as u32;
                let data_only = pick >= 42;
                cb.aio_lio_opcode = if data_only { abi::IOCB_CMD_FDSYNC } else { abi::IOCB_CMD_FSYNC };
                cb.aio_fildes = self.files[f as usize].file.as_raw_fd() as u32;
                op = Op::Sync { file: f, data_only };
                (content, guard, len) = (Vec::new(), Vec::new(), 0);
            }
            44..=83 => {
                let s = t.rng.below(self.npipes as u64) as u32;
                let stream = &self.streams[s as usize];
                let StreamKind::Pipe { r, w } = &stream.kind else { return None };
                let mut st = lock(&stream.st);
                if st.tainted || st.write.as_ref().is_some_and(|w| w.unresolved.is_some()) {
                    return None;
                }
                if pick < 62 {
                    if st.write.is_some() {
                        return None;
                    }
                    let n = t.rng.range(1, PIPE_WRITE_MAX);
                    if st.wpos.saturating_sub(st.rpos) + n > PIPE_FILL_MAX {
                        return None;
                    }
                    let pos = st.wpos;
                    st.write = Some(WriteSlot { tag, pos, len: n, unresolved: None });
                    content = stream_bytes(self.salt, s, pos, n as usize);
                    (guard, len) = (Vec::new(), n as usize);
                    cb.aio_lio_opcode = abi::IOCB_CMD_PWRITE;
                    cb.aio_fildes = w.as_raw_fd() as u32;
                    op = Op::PipeWrite { s, pos };
                } else {
                    if st.read.is_some() {
                        return None;
                    }
                    let avail = st.wpos.saturating_sub(st.rpos);
                    // Kernel AIO reads a pipe synchronously inside io_submit:
                    // only when there is data, or it would block there.
                    if kernel && avail == 0 {
                        return None;
                    }
                    let n = t.rng.range(1, PIPE_READ_MAX);
                    let pos = st.rpos;
                    st.read = Some(tag);
                    completing = avail > 0;
                    guard = stream_guard(self.salt, s, pos, n as usize);
                    (content, len) = (guard.clone(), n as usize);
                    cb.aio_lio_opcode = abi::IOCB_CMD_PREAD;
                    cb.aio_fildes = r.as_raw_fd() as u32;
                    op = Op::PipeRead { s, pos, avail };
                }
            }
            84..=89 => {
                let s = (self.npipes as u64 + t.rng.below((self.streams.len() - self.npipes) as u64)) as u32;
                let stream = &self.streams[s as usize];
                let StreamKind::Efd { fd } = &stream.kind else { return None };
                let mut st = lock(&stream.st);
                if st.tainted || st.read.is_some() {
                    return None;
                }
                let avail = st.wpos - st.rpos;
                if kernel && avail == 0 {
                    return None;
                }
                st.read = Some(tag);
                completing = avail > 0;
                guard = EFD_GUARD.to_le_bytes().to_vec();
                (content, len) = (guard.clone(), 8);
                cb.aio_lio_opcode = abi::IOCB_CMD_PREAD;
                cb.aio_fildes = fd.as_raw_fd() as u32;
                op = Op::EfdRead { s, avail };
            }
            _ => {
                completing = false;
                let idle = pick >= 95;
                let fd = if idle {
                    if ctx.idle_polls.fetch_add(1, SeqCst) >= MAX_IDLE_POLLS {
                        ctx.idle_polls.fetch_sub(1, SeqCst);
                        return None;
                    }
                    op = Op::Poll { s: None };
                    self.idle.0.as_raw_fd()
                } else {
                    let s = t.rng.below(self.streams.len() as u64) as u32;
                    op = Op::Poll { s: Some(s) };
                    match &self.streams[s as usize].kind {
                        StreamKind::Pipe { r, .. } => r.as_raw_fd(),
                        StreamKind::Efd { fd } => fd.as_raw_fd(),
                    }
                };
                cb.aio_lio_opcode = abi::IOCB_CMD_POLL;
                cb.aio_fildes = fd as u32;
                cb.aio_buf = POLLIN as u64;
                (content, guard, len) = (Vec::new(), Vec::new(), 0);
            }
        }
        let words: Vec<AtomicU64> = content
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(w))
            })
            .collect();
        let buf = words.into_boxed_slice();
        let base = buf.as_ptr() as u64;
        let vectored = matches!(cb.aio_lio_opcode, abi::IOCB_CMD_PREADV | abi::IOCB_CMD_PWRITEV);
        let iov = if vectored { Self::split_iov(&mut t.rng, base, len) } else { Vec::new() };
        if vectored {
            cb.aio_buf = iov.as_ptr() as u64;
            cb.aio_nbytes = iov.len() as u64;
        } else if len > 0 {
            cb.aio_buf = base;
            cb.aio_nbytes = len as u64;
        }
        if let Some(fd) = &ctx.resfd {
            cb.aio_flags |= abi::IOCB_FLAG_RESFD;
            cb.aio_resfd = fd.as_raw_fd() as u32;
        }
        Some(Arc::new(Req {
            tag,
            ctx: ctx.serial,
            op,
            cb: pack_iocb(&cb),
            buf,
            len,
            iov,
            guard,
            state: AtomicU8::new(ST_SUBMITTING),
            cancel: AtomicU8::new(C_NONE),
            got_ecanceled: AtomicBool::new(false),
            must_cancel: AtomicBool::new(false),
            destroy_cancel: AtomicBool::new(false),
            during_destroy: AtomicBool::new(false),
            completing,
            due_ms: AtomicU64::new(0),
            flagged: AtomicBool::new(false),
        }))
    }

    /// Gives back what a request that never ran had claimed.
    fn unclaim(&self, req: &Req) {
        match &req.op {
            Op::FileRead { file, block, versions, .. } => self.release_blocks(*file, *block, versions),
            Op::FileWrite { file, block, old, .. } => self.release_blocks(*file, *block, old),
            Op::PipeRead { s, .. } | Op::EfdRead { s, .. } => {
                let mut st = lock(&self.streams[*s as usize].st);
                st.read = None;
                self.try_resolve_write(&self.streams[*s as usize], &mut st);
            }
            Op::PipeWrite { s, .. } => lock(&self.streams[*s as usize].st).write = None,
            Op::Sync { .. } | Op::Poll { .. } => {}
        }
    }

    /// Bookkeeping common to every way a request ends.
    fn finish(&self, ctx: &Ctx, req: &Req) {
        ctx.outstanding.fetch_sub(1, SeqCst);
        if req.completing {
            ctx.completing.fetch_sub(1, SeqCst);
        }
        if matches!(req.op, Op::Poll { s: None }) {
            ctx.idle_polls.fetch_sub(1, SeqCst);
        }
    }

    // -----------------------------------------------------------------------
    // Submitting.

    /// Builds and submits a batch of 1 to 64 requests, and checks what `io_submit` says.
    fn submit_batch(&self, t: &mut Thr, ctx: &Arc<Ctx>) {
        let _ops = ctx.ops.read().unwrap_or_else(|e| e.into_inner());
        // Once the destroyer is done (retired), a new context may live at
        // the same address: calls on the old handle would reach it. Before
        // that, a call after io_destroy returned is safe (the destroyer holds
        // the setup lock until it has waited for us) and must give EINVAL.
        let after_destroy = ctx.destroyed.load(SeqCst);
        if ctx.retired.load(Acquire) || (after_destroy && !t.rng.chance(100)) {
            return;
        }
        let want = if t.rng.chance(250) { t.rng.range(1, 64) } else { t.rng.range(1, 8) } as usize;
        let mut n = 0;
        while n < want {
            let cur = ctx.outstanding.load(SeqCst);
            let take = (want - n).min(CAP.saturating_sub(cur));
            if take == 0 {
                break;
            }
            if ctx.outstanding.compare_exchange(cur, cur + take, SeqCst, SeqCst).is_ok() {
                n += take;
            }
        }
        let mut reqs = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(r) = self.make_req(t, ctx) {
                reqs.push(r);
            }
        }
        ctx.outstanding.fetch_sub(n - reqs.len(), SeqCst);
        if reqs.is_empty() {
            return;
        }
        {
            let mut p = lock(&ctx.pending);
            for r in &reqs {
                if r.completing {
                    ctx.completing.fetch_add(1, SeqCst);
                }
                r.due_ms.store(if r.completing { self.now_ms() } else { 0 }, SeqCst);
                p.insert(r.tag, r.clone());
                self.register(r.tag, (ctx.serial << 8) | u64::from(ST_SUBMITTING));
            }
        }
        let mut ptrs: Vec<*mut iocb> = reqs.iter().map(|r| r.cb_ptr()).collect();
        self.act(t.id, A_SUBMIT, ctx.serial, reqs.len() as u64);
        let outstanding = ctx.outstanding.load(SeqCst);
        // SAFETY: the iocbs, buffers and iovec arrays live in `reqs`, which
        // stay alive (in the pending table, then in quarantine) until their
        // requests are over.
        let r = unsafe { self.aio.submit(ctx.handle, ptrs.len() as i64, ptrs.as_mut_ptr()) };
        let mut accepted = r.max(0) as usize;
        let mut err = (r < 0).then_some(r);
        if r >= 0 && accepted < reqs.len() {
            // A short count means the next iocb failed: find out why.
            // SAFETY: as above, for the tail of the same array.
            let r2 =
                unsafe { self.aio.submit(ctx.handle, (ptrs.len() - accepted) as i64, ptrs[accepted..].as_mut_ptr()) };
            if r2 < 0 {
                err = Some(r2);
            } else {
                accepted += r2 as usize;
                if accepted < reqs.len() {
                    self.viol(
                        Kind::BadCall,
                        format!(
                            "io_submit({}, {} iocbs) accepted only {accepted} twice, without an error",
                            ctx.label,
                            reqs.len()
                        ),
                    );
                }
            }
        }
        self.act(t.id, A_IDLE, 0, 0);
        if after_destroy && accepted > 0 {
            self.viol(
                Kind::BadCall,
                format!(
                    "io_submit on {} after io_destroy returned accepted {accepted} iocbs, expected -EINVAL",
                    ctx.label
                ),
            );
        }
        if let Some(e) = err {
            let first = &reqs[accepted];
            if e == EINVAL && ctx.destroying.load(SeqCst) {
                self.stats.racing_einval.fetch_add(1, Relaxed);
            } else if e == EAGAIN {
                self.viol(
                    Kind::BadCall,
                    format!(
                        "spurious EAGAIN: io_submit({}, {} iocbs) failed at {} with {} requests outstanding, \
                         far below what io_setup({RING_NR}) provides",
                        ctx.label,
                        reqs.len(),
                        self.describe(first),
                        outstanding - (reqs.len() - accepted)
                    ),
                );
            } else {
                self.viol(
                    Kind::BadCall,
                    format!(
                        "io_submit failed with {} at {} (iocb {} of {})",
                        errno_name(e),
                        self.describe(first),
                        accepted,
                        reqs.len()
                    ),
                );
            }
        }
        for (i, req) in reqs.iter().enumerate() {
            if i < accepted {
                let _ = req.state.compare_exchange(ST_SUBMITTING, ST_ACCEPTED, SeqCst, SeqCst);
                continue;
            }
            match req.state.compare_exchange(ST_SUBMITTING, ST_REJECTED, SeqCst, SeqCst) {
                Ok(_) => {
                    lock(&ctx.pending).remove(&req.tag);
                    self.register(req.tag, (ctx.serial << 8) | u64::from(ST_REJECTED));
                    self.finish(ctx, req);
                    self.unclaim(req);
                }
                Err(_) => self.viol(
                    Kind::WrongResult,
                    format!("an event arrived for {}, which io_submit did not accept", self.describe(req)),
                ),
            }
        }
        self.stats.accepted.fetch_add(accepted as u64, Relaxed);
        self.stats.rejected.fetch_add((reqs.len() - accepted) as u64, Relaxed);
        if accepted > 0 {
            self.tick();
        }
    }

    // -----------------------------------------------------------------------
    // Reaping.

    /// Reaps from `ctx` the way it is reaped (system call or ring).
    fn reap(&self, t: &mut Thr, ctx: &Arc<Ctx>, may_block: bool) {
        if ctx.ring_mode || (ctx.private && t.rng.chance(400)) {
            self.reap_ring(t, ctx, may_block);
        } else {
            self.reap_getevents(t, ctx, may_block);
        }
    }

    /// Reaps with `io_getevents` or `io_pgetevents`, with a random `min_nr` and timeout.
    fn reap_getevents(&self, t: &mut Thr, ctx: &Arc<Ctx>, may_block: bool) {
        let _ops = ctx.ops.read().unwrap_or_else(|e| e.into_inner());
        // Once the destroyer is done (retired), a new context may live at
        // the same address: calls on the old handle would reach it. Before
        // that, a call after io_destroy returned is safe (the destroyer holds
        // the setup lock until it has waited for us) and must give EINVAL.
        let after_destroy = ctx.destroyed.load(SeqCst);
        if ctx.retired.load(Acquire) || (after_destroy && !t.rng.chance(100)) {
            return;
        }
        let nr = t.rng.range(1, 64) as i64;
        let completing = ctx.completing.load(SeqCst) as i64;
        let min_nr = match t.rng.below(4) {
            0 => 0,
            1 => 1,
            _ => t.rng.range(0, completing.clamp(1, 4) as u64) as i64,
        }
        .min(nr);
        // A wait without a timeout only when enough requests will finish by
        // themselves (other threads may take them from a shared context, but
        // more keep coming, and destroy wakes the waiter).
        // Once the run stops nobody submits any more: only the sole reaper
        // of a private context may then wait without a timeout.
        let forever_ok = ctx.private || !self.stop.load(SeqCst);
        let forever = may_block && forever_ok && min_nr > 0 && completing >= min_nr && t.rng.chance(150);
        let mut ts = match t.rng.below(10) {
            0..=2 => libc::timespec { tv_sec: 0, tv_nsec: 0 },
            3..=8 if may_block => libc::timespec { tv_sec: 0, tv_nsec: t.rng.range(1, 20) as i64 * 1_000_000 },
            9 if may_block => libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 },
            _ => libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let tsp: *mut libc::timespec = if forever { std::ptr::null_mut() } else { &mut ts };
        let timeout_ms = if forever { u64::MAX } else { (ts.tv_nsec / 1_000_000) as u64 };
        t.events.resize(nr as usize, io_event::default());
        let pget = t.rng.chance(300);
        let mask = 0u64;
        let sig = abi::aio_sigset { sigmask: &mask, sigsetsize: 8 };
        self.act(t.id, if pget { A_PGETEVENTS } else { A_GETEVENTS }, ctx.serial, (timeout_ms << 8) | min_nr as u64);
        // SAFETY: `events` has room for `nr` events; the timespec and sigset
        // are live locals.
        let r = unsafe {
            if pget {
                self.aio.pgetevents(ctx.handle, min_nr, nr, t.events.as_mut_ptr(), tsp, &sig)
            } else {
                self.aio.getevents(ctx.handle, min_nr, nr, t.events.as_mut_ptr(), tsp)
            }
        };
        self.act(t.id, A_IDLE, 0, 0);
        let call = if pget { "io_pgetevents" } else { "io_getevents" };
        if after_destroy && r != EINVAL {
            self.viol(
                Kind::BadCall,
                format!("{call} on {} after io_destroy returned gave {}, expected -EINVAL", ctx.label, errno_name(r)),
            );
        }
        if r < 0 {
            if r == EINVAL && ctx.destroying.load(SeqCst) {
                self.stats.racing_einval.fetch_add(1, Relaxed);
            } else if !after_destroy {
                self.viol(
                    Kind::BadCall,
                    format!("{call}({}, min_nr {min_nr}, nr {nr}) returned {}", ctx.label, errno_name(r)),
                );
            }
            return;
        }
        if r > nr {
            self.viol(Kind::BadCall, format!("{call}({}, nr {nr}) returned {r} events", ctx.label));
            return;
        }
        if forever && r < min_nr && !ctx.destroying.load(SeqCst) {
            self.viol(
                Kind::BadCall,
                format!("{call}({}, min_nr {min_nr}, no timeout) returned {r} events on a live context", ctx.label),
            );
        }
        let evs: Vec<io_event> = t.events[..r as usize].to_vec();
        for ev in &evs {
            self.take_event(t, ctx, ev);
        }
    }

    /// Reaps from the ring in user space, as fio's `userspace_reap` and
    /// others do.
    fn reap_ring(&self, t: &mut Thr, ctx: &Arc<Ctx>, may_block: bool) {
        let _ops = ctx.ops.read().unwrap_or_else(|e| e.into_inner());
        if ctx.destroyed.load(SeqCst) {
            return;
        }
        let mut evs = Vec::new();
        {
            let Ok(mut rc) = ctx.ring.try_lock() else { return };
            if ctx.destroyed.load(SeqCst) {
                return;
            }
            self.act(t.id, A_RING, ctx.serial, 0);
            if let Some(fd) = &ctx.resfd {
                match eventfd_take(fd.as_raw_fd()) {
                    Ok(n) => rc.signals += n,
                    Err(e) => {
                        self.viol(Kind::BadCall, format!("read of the RESFD eventfd of {}: errno {e}", ctx.label))
                    }
                }
            }
            // SAFETY: the context is live and cannot be destroyed while we
            // hold `ring` (the destroyer takes it around io_destroy, which
            // unmaps the ring); only the holder of `ring` reaps from it.
            match unsafe { ring_take(ctx.handle, 64, &mut evs) } {
                Ok(visible) => {
                    rc.reaped += evs.len() as u64;
                    if ctx.resfd.is_some() && rc.signals > rc.reaped + visible {
                        self.viol(
                            Kind::BadCall,
                            format!(
                                "{}: the RESFD eventfd was signalled {} times but only {} events were ever visible in \
                                 the ring (signalled before the event was visible)",
                                ctx.label,
                                rc.signals,
                                rc.reaped + visible
                            ),
                        );
                        rc.signals = rc.reaped + visible;
                    }
                }
                Err(e) => self.viol(Kind::BadCall, format!("ring of {}: {e}", ctx.label)),
            }
        }
        self.act(t.id, A_IDLE, 0, 0);
        self.stats.ring_events.fetch_add(evs.len() as u64, Relaxed);
        for ev in &evs {
            self.take_event(t, ctx, ev);
        }
        if evs.is_empty() && may_block {
            if let Some(fd) = &ctx.resfd {
                self.act(t.id, A_RESFD_WAIT, ctx.serial, 0);
                poll_in(fd.as_raw_fd(), t.rng.range(1, 10) as i32);
                self.act(t.id, A_IDLE, 0, 0);
            }
        }
    }

    /// Checks one reaped event and ends its request.
    fn take_event(&self, t: &mut Thr, ctx: &Ctx, ev: &io_event) {
        let req = lock(&ctx.pending).remove(&ev.data);
        let Some(req) = req else {
            let known = self.registered(ev.data);
            if known.is_some_and(|v| v as u8 == ST_LOST) {
                // Already counted as lost; it was only (very) late.
                eprintln!(
                    "note: the event of tag {:#x} (res {}) arrived after all, at {} ms",
                    ev.data,
                    ev.res,
                    self.now_ms()
                );
                return;
            }
            let msg = match known {
                Some(v) => {
                    let (serial, how) = (v >> 8, v as u8);
                    let how = match how {
                        ST_EVENT => "had its event already",
                        ST_DESTROYED => "was accounted for by io_destroy (event after io_destroy returned)",
                        ST_REJECTED => "was not accepted by io_submit",
                        ST_LOST => "was reported lost",
                        _ => "is pending on another context",
                    };
                    format!(
                        "event {{data {:#x}, obj {:#x}, res {}}} on {}: the request (submitted to {}) {how}",
                        ev.data,
                        ev.obj,
                        ev.res,
                        ctx.label,
                        self.ctx_label(serial)
                    )
                }
                None => format!(
                    "event with unknown tag {:#x} (obj {:#x}, res {}) on {}",
                    ev.data, ev.obj, ev.res, ctx.label
                ),
            };
            self.viol(Kind::Duplicated, msg);
            return;
        };
        let prev = req.state.swap(ST_EVENT, SeqCst);
        if prev != ST_SUBMITTING && prev != ST_ACCEPTED {
            self.viol(Kind::Duplicated, format!("event for {} in state {prev}", self.describe(&req)));
        }
        self.finish(ctx, &req);
        req.during_destroy.store(ctx.destroying.load(SeqCst), SeqCst);
        if ctx.destroying.load(SeqCst) && !req.completing {
            // io_destroy cancels what may wait forever, and a call racing it
            // may reap the resulting event (the kernel's too).
            req.destroy_cancel.store(true, SeqCst);
        }
        self.register(req.tag, (ctx.serial << 8) | u64::from(ST_EVENT));
        self.stats.events.fetch_add(1, Relaxed);
        if req.flagged.load(SeqCst) {
            eprintln!("note: the event of {} arrived after all ({} ms late)", self.describe(&req), self.now_ms());
        }
        if ev.obj != req.cb_ptr() as u64 || ev.res2 != 0 {
            self.viol(
                Kind::WrongResult,
                format!(
                    "event of {}: obj {:#x} res2 {}, expected obj {:#x} (its iocb) and res2 0",
                    self.describe(&req),
                    ev.obj,
                    ev.res2,
                    req.cb_ptr() as u64
                ),
            );
        }
        self.settle(t, &req, Some(ev.res));
        self.tick();
    }

    // -----------------------------------------------------------------------
    // Checking results.

    /// Keeps a finished request's buffer (reads and writes alike: the I/O
    /// must not touch either once the request is reported done) and its
    /// checksum, to check again later.
    ///
    /// Not exact: only the last `QUARANTINE` buffers per thread are kept
    /// (and all of them at the end); a write later than that lands in freed
    /// memory and is seen only if it corrupts something checked.
    fn quarantine(&self, t: &mut Thr, req: &Arc<Req>) {
        if req.len == 0 {
            return;
        }
        let sum = checksum(&req.bytes());
        t.quarantine.push_back((req.clone(), sum));
        if t.quarantine.len() > QUARANTINE {
            if let Some((old, sum)) = t.quarantine.pop_front() {
                self.recheck(&old, sum);
            }
        }
    }

    /// The buffer must still have checksum `sum`.
    fn recheck(&self, req: &Req, sum: u64) {
        if checksum(&req.bytes()) != sum {
            self.viol(
                Kind::LateWrite,
                format!("the buffer of {} changed after its request was reported done", self.describe(req)),
            );
        }
    }

    /// Checks a request that ended, with its event's result or (`None`)
    /// without one because io_destroy accounted for it, and updates what it
    /// worked on.
    fn settle(&self, t: &mut Thr, req: &Arc<Req>, res: Option<i64>) {
        if res == Some(ECANCELED) {
            self.stats.ecanceled.fetch_add(1, Relaxed);
            req.got_ecanceled.store(true, SeqCst);
            match req.cancel.load(SeqCst) {
                _ if req.destroy_cancel.load(SeqCst) => {}
                C_ASKED | C_INPROGRESS => {}
                C_REFUSED => self.viol(
                    Kind::WrongResult,
                    format!("{} completed with -ECANCELED although io_cancel refused it (-EINVAL)", self.describe(req)),
                ),
                _ => self.viol(
                    Kind::WrongResult,
                    format!(
                        "{} completed with -ECANCELED but nobody cancelled it{}",
                        self.describe(req),
                        if req.during_destroy.load(SeqCst) {
                            " (reaped while its context was being destroyed: io_destroy cancelled a request it must \
                             wait for)"
                        } else {
                            ""
                        }
                    ),
                ),
            }
            if !req.guard.is_empty() && req.guard != req.bytes() {
                self.viol(
                    Kind::WrongResult,
                    format!("{} was cancelled (-ECANCELED) but wrote into its buffer", self.describe(req)),
                );
            }
        } else if req.must_cancel.load(SeqCst) && res.is_some() {
            self.viol(
                Kind::WrongResult,
                format!(
                    "io_cancel of {} returned -EINPROGRESS while it could not complete (no data), but its event then \
                     carried {} instead of -ECANCELED",
                    self.describe(req),
                    res.unwrap_or_default()
                ),
            );
        }
        match &req.op {
            Op::FileRead { .. } => self.settle_file_read(req, res),
            Op::FileWrite { .. } => self.settle_file_write(req, res),
            Op::Sync { .. } => {
                if let Some(r) = res.filter(|r| *r != 0 && *r != ECANCELED) {
                    self.viol(Kind::WrongResult, format!("{}: res {}, expected 0", self.describe(req), errno_name(r)));
                }
            }
            Op::PipeRead { .. } => self.settle_pipe_read(req, res),
            Op::PipeWrite { .. } => self.settle_pipe_write(req, res),
            Op::EfdRead { .. } => self.settle_efd_read(req, res),
            Op::Poll { s } => match res {
                None => {}
                Some(r) if s.is_none() => {
                    if !req.cancel_asked() {
                        self.viol(
                            Kind::WrongResult,
                            format!("{} completed (res {r}) though nobody cancelled it", self.describe(req)),
                        );
                    } else if r != 0 {
                        self.viol(
                            Kind::WrongResult,
                            format!("{} was cancelled: res {r}, expected 0", self.describe(req)),
                        );
                    } else {
                        self.stats.polls_cancelled.fetch_add(1, Relaxed);
                    }
                }
                Some(r) => {
                    // A cancelled POLL on a stream that may have become
                    // ready meanwhile reports 0 or the ready mask (the
                    // kernel's too): which one depends on timing.
                    let ready = r & POLLIN != 0 && r & !(POLLIN | POLLRDNORM) == 0;
                    if r == 0 && req.cancel_asked() {
                        self.stats.polls_cancelled.fetch_add(1, Relaxed);
                    } else if r == 0 {
                        self.viol(
                            Kind::WrongResult,
                            format!(
                                "{}: res 0 (what a cancelled POLL gives) though neither io_cancel nor io_destroy was \
                                 called for it",
                                self.describe(req)
                            ),
                        );
                    } else if !ready {
                        self.viol(
                            Kind::WrongResult,
                            format!(
                                "{}: res {r:#x}, expected a ready mask with POLLIN (or 0 once cancelled)",
                                self.describe(req)
                            ),
                        );
                    }
                }
            },
        }
        self.quarantine(t, req);
    }

    /// The file blocks at `block..` hold which of the two versions.
    fn inspect_blocks(&self, file: u32, block: u32, old: &[u32], new: &[u32]) -> Vec<Result<bool, String>> {
        let f = &self.files[file as usize].file;
        (0..old.len())
            .map(|j| {
                let b = block + j as u32;
                let mut got = vec![0u8; BS];
                if let Err(e) = f.read_exact_at(&mut got, u64::from(b) * BS as u64) {
                    return Err(format!("pread: {e}"));
                }
                if got == block_bytes(self.salt, file, b, new[j]) {
                    Ok(true)
                } else if got == block_bytes(self.salt, file, b, old[j]) {
                    Ok(false)
                } else {
                    Err(describe_block(self.salt, &got, None))
                }
            })
            .collect()
    }

    /// Writes a block back to a known version after a violation left it
    /// unknown.
    fn repair_block(&self, file: u32, b: u32, version: u32) -> u32 {
        let v = version.wrapping_add(1000) & 0x7fff_ffff;
        let _ =
            self.files[file as usize].file.write_all_at(&block_bytes(self.salt, file, b, v), u64::from(b) * BS as u64);
        v
    }

    /// A file read: byte count, data of each block at its version, guard past the end.
    fn settle_file_read(&self, req: &Req, res: Option<i64>) {
        let Op::FileRead { file, block, versions, expect, .. } = &req.op else { return };
        let got = req.bytes();
        let mut want = Vec::with_capacity(req.len);
        for (j, v) in versions.iter().enumerate() {
            want.extend(block_bytes(self.salt, *file, block + j as u32, *v));
        }
        want.extend_from_slice(&req.guard[want.len()..]);
        let n = match res {
            Some(ECANCELED) => None,
            Some(r) => {
                if r != *expect as i64 {
                    self.viol(
                        Kind::WrongResult,
                        format!("{}: res {}, expected {expect}", self.describe(req), errno_name(r)),
                    );
                }
                Some(r.clamp(0, req.len as i64) as usize)
            }
            None if got == req.guard => {
                if !req.cancel_asked() {
                    self.viol(
                        Kind::Lost,
                        format!(
                            "{}: no event before io_destroy returned and its buffer is untouched (io_destroy must wait \
                             for file reads)",
                            self.describe(req)
                        ),
                    );
                }
                None
            }
            None => Some(*expect),
        };
        if let Some(n) = n {
            let mut expected = want[..n].to_vec();
            expected.extend_from_slice(&req.guard[n..]);
            if let Some(i) = first_diff(&got, &expected) {
                let blk = i / BS;
                let what = if i >= n {
                    format!("byte {i}, past the {n} bytes read, was overwritten")
                } else {
                    let range = blk * BS..((blk + 1) * BS).min(got.len());
                    let seen = describe_block(self.salt, &got[range.clone()], Some(&req.guard[range]));
                    format!(
                        "block {} of the buffer holds {seen}, expected version {}",
                        block + blk as u32,
                        versions.get(blk).map(|v| v.to_string()).unwrap_or_else(|| "(past the end)".into())
                    )
                };
                let on_disk = self.inspect_blocks(*file, *block, versions, versions);
                let disk_ok = on_disk.iter().all(|r| r.is_ok());
                self.viol(
                    Kind::WrongResult,
                    format!(
                        "{}{}: {what}; the file itself {}",
                        self.describe(req),
                        if res.is_none() { " (accounted for by io_destroy)" } else { "" },
                        if disk_ok { "holds the expected data".to_string() } else { format!("holds {on_disk:?}") }
                    ),
                );
                if !disk_ok {
                    let fixed: Vec<u32> = versions
                        .iter()
                        .enumerate()
                        .map(|(j, v)| self.repair_block(*file, block + j as u32, *v))
                        .collect();
                    self.release_blocks(*file, *block, &fixed);
                    return;
                }
            }
            self.stats.file_bytes.fetch_add(n as u64, Relaxed);
        }
        self.release_blocks(*file, *block, versions);
    }

    /// A file write: byte count, and the file read back (all new, or all old if cancelled).
    fn settle_file_write(&self, req: &Req, res: Option<i64>) {
        let Op::FileWrite { file, block, old, new, .. } = &req.op else { return };
        let seen = self.inspect_blocks(*file, *block, old, new);
        let all_new = seen.iter().all(|s| *s == Ok(true));
        let all_old = seen.iter().all(|s| *s == Ok(false));
        let problem = match res {
            Some(r) if r == req.len as i64 => (!all_new).then(|| "the event reported it done".to_string()),
            Some(ECANCELED) => (!all_old).then(|| "it was cancelled (-ECANCELED)".to_string()),
            Some(r) => {
                self.viol(
                    Kind::WrongResult,
                    format!("{}: res {}, expected {}", self.describe(req), errno_name(r), req.len),
                );
                None
            }
            None if all_new => None,
            None if all_old && req.cancel_asked() => None,
            None if all_old => {
                self.viol(
                    Kind::Lost,
                    format!(
                        "{}: no event before io_destroy returned, and the data is not in the file (io_destroy must \
                         wait for file writes)",
                        self.describe(req)
                    ),
                );
                None
            }
            None => Some("io_destroy accounted for it (it must be all written, or nothing if cancelled)".into()),
        };
        if let Some(p) = problem {
            self.viol(
                Kind::WrongResult,
                format!("{}: {p}, but the file holds {seen:?} (true: new, false: old)", self.describe(req)),
            );
        }
        let versions: Vec<u32> = seen
            .iter()
            .enumerate()
            .map(|(j, s)| match s {
                Ok(true) => new[j],
                Ok(false) => old[j],
                Err(_) => self.repair_block(*file, block + j as u32, new[j]),
            })
            .collect();
        if all_new {
            self.stats.file_bytes.fetch_add(req.len as u64, Relaxed);
        }
        self.release_blocks(*file, *block, &versions);
    }

    /// Where in the stream `bytes` come from, near `around`.
    fn find_in_stream(&self, s: u32, bytes: &[u8], lo: u64, hi: u64) -> Option<u64> {
        let m = bytes.len().min(16);
        if m == 0 {
            return None;
        }
        let hay = stream_bytes(self.salt, s, lo, (hi - lo) as usize + m);
        hay.windows(m).position(|w| w == &bytes[..m]).map(|q| lo + q as u64)
    }

    /// A pipe read: the stream's next bytes, in order, none lost or duplicated.
    fn settle_pipe_read(&self, req: &Req, res: Option<i64>) {
        let Op::PipeRead { s, pos, avail } = &req.op else { return };
        let stream = &self.streams[*s as usize];
        let mut st = lock(&stream.st);
        let got = req.bytes();
        let want = stream_bytes(self.salt, *s, *pos, req.len);
        let n: usize = match res {
            Some(ECANCELED) => {
                st.last_cancelled_read = Some((req.tag, *pos));
                0
            }
            Some(r) if r > 0 && r <= req.len as i64 => r as usize,
            Some(r) => {
                self.viol(
                    Kind::WrongResult,
                    format!("{}: res {}, expected 1 to {} bytes", self.describe(req), errno_name(r), req.len),
                );
                0
            }
            // No event: the buffer tells how much was read (each byte is
            // either the stream's or the guard's, never both).
            None => got.iter().zip(&want).take_while(|(a, b)| a == b).count(),
        };
        let cancelled = res == Some(ECANCELED) || (res.is_none() && n == 0);
        if res.is_none() && n == 0 && *avail > 0 && !req.cancel_asked() {
            self.viol(
                Kind::Lost,
                format!(
                    "{}: no event before io_destroy returned and nothing read, though the pipe had data when it was \
                     submitted (only a read of an empty pipe may be dropped)",
                    self.describe(req)
                ),
            );
        }
        let mut consumed = n as u64;
        if let Some(i) = first_diff(&got[..n], &want[..n]) {
            let upper = st.wpos + st.write.as_ref().map_or(0, |w| w.len) + PIPE_FILL_MAX;
            let found = self.find_in_stream(*s, &got[i..n], st.rpos.saturating_sub(PIPE_FILL_MAX * 4), upper);
            let last = st
                .last_cancelled_read
                .map(|(tag, p)| format!("; the last read cancelled on this pipe was tag {tag:#x} at position {p}"))
                .unwrap_or_default();
            let what = match found {
                Some(q) if q > pos + i as u64 => format!(
                    "byte {i} is stream byte {q}: {} bytes of the stream before it were lost (consumed by someone \
                     else){last}",
                    q - (pos + i as u64)
                ),
                Some(q) => format!("byte {i} is stream byte {q}: {} bytes duplicated", pos + i as u64 - q),
                None => format!("byte {i} onwards is not stream data"),
            };
            self.viol(
                Kind::WrongResult,
                format!(
                    "{}{}: read {n} bytes; {what}",
                    self.describe(req),
                    if res.is_none() { " (no event)" } else { "" }
                ),
            );
            // Follow the pipe where it really is, so one loss is reported once.
            if let Some(q) = found {
                consumed = (q + (n - i) as u64).saturating_sub(*pos);
            }
        }
        if res != Some(ECANCELED) && got[n..] != req.guard[n..] {
            self.viol(
                Kind::WrongResult,
                format!("{}: bytes past the {n} read were overwritten in its buffer", self.describe(req)),
            );
        }
        let upper = st.wpos + st.write.as_ref().map_or(0, |w| w.len);
        if !cancelled && pos + n as u64 > upper {
            self.viol(
                Kind::WrongResult,
                format!(
                    "{}: read up to stream position {}, but only {upper} bytes were written",
                    self.describe(req),
                    pos + n as u64
                ),
            );
        }
        // (Not when bytes went missing: that was reported above, and is why.)
        let low = (*avail).min(req.len as u64);
        if !cancelled && (n as u64) < low && consumed == n as u64 {
            self.viol(
                Kind::WrongResult,
                format!(
                    "{}: short read of {n} bytes, at least {low} were in the pipe when it was submitted",
                    self.describe(req)
                ),
            );
        }
        if st.rpos != *pos {
            self.viol(Kind::BadCall, format!("internal: pipe {s} read position {} at {}", st.rpos, self.describe(req)));
        }
        st.rpos = pos + consumed;
        self.stats.pipe_bytes.fetch_add(n as u64, Relaxed);
        if st.read == Some(req.tag) {
            st.read = None;
        }
        self.try_resolve_write(stream, &mut st);
    }

    /// A pipe write: all written, or (cancelled) nothing.
    fn settle_pipe_write(&self, req: &Req, res: Option<i64>) {
        let Op::PipeWrite { s, pos } = &req.op else { return };
        let stream = &self.streams[*s as usize];
        let mut st = lock(&stream.st);
        let allowed = match res {
            Some(r) if r == req.len as i64 => None,
            Some(ECANCELED) => Some(Allowed::Nothing),
            Some(r) => {
                self.viol(
                    Kind::WrongResult,
                    format!("{}: res {}, expected {}", self.describe(req), errno_name(r), req.len),
                );
                // What reached the pipe is unknown: let the pipe tell.
                Some(Allowed::NothingOrAll)
            }
            // A pipe write with room never waits, so io_destroy cannot have
            // dropped it, unless it had been cancelled.
            None if req.cancel_asked() => Some(Allowed::NothingOrAll),
            None => Some(Allowed::All),
        };
        match allowed {
            None => {
                st.wpos = pos + req.len as u64;
                st.write = None;
            }
            Some(a) => {
                if let Some(w) = st.write.as_mut() {
                    w.unresolved = Some(a);
                }
                self.try_resolve_write(stream, &mut st);
            }
        }
    }

    /// Finds out what an unresolved pipe write wrote, from the bytes in the
    /// pipe, once no read is pending on it.
    fn try_resolve_write(&self, stream: &Stream, st: &mut StreamState) {
        let StreamKind::Pipe { r, .. } = &stream.kind else { return };
        let Some(w) = st.write.clone() else { return };
        let Some(allowed) = w.unresolved else { return };
        if st.read.is_some() {
            return;
        }
        let Some(inpipe) = fionread(r.as_raw_fd()) else {
            self.viol(Kind::BadCall, format!("FIONREAD on pipe {}: errno {}", stream.id, last_errno()));
            st.tainted = true;
            return;
        };
        let x = (inpipe + st.rpos) as i64 - w.pos as i64;
        let ok = match allowed {
            Allowed::Nothing => x == 0,
            Allowed::All => x == w.len as i64,
            Allowed::NothingOrAll => x == 0 || x == w.len as i64,
        };
        if !ok {
            self.viol(
                Kind::WrongResult,
                format!(
                    "pipe {} write tag {:#x} ({} bytes at stream position {}): {x} of its bytes reached the pipe, \
                     expected {}",
                    stream.id,
                    w.tag,
                    w.len,
                    w.pos,
                    match allowed {
                        Allowed::Nothing => "none (it was cancelled)",
                        Allowed::All =>
                            "all (no event before io_destroy returned, and a pipe write with room cannot wait)",
                        Allowed::NothingOrAll => "all or none",
                    }
                ),
            );
        }
        st.wpos = st.rpos + inpipe;
        st.write = None;
    }

    /// An eventfd read: the counter, within what was written and not yet read.
    fn settle_efd_read(&self, req: &Req, res: Option<i64>) {
        let Op::EfdRead { s, avail } = &req.op else { return };
        let mut st = lock(&self.streams[*s as usize].st);
        let v = u64::from_le_bytes(req.bytes()[..8].try_into().unwrap_or_default());
        let taken = match res {
            Some(ECANCELED) => 0,
            Some(8) => v,
            Some(r) => {
                self.viol(Kind::WrongResult, format!("{}: res {}, expected 8", self.describe(req), errno_name(r)));
                0
            }
            None if v == EFD_GUARD => {
                if *avail > 0 && !req.cancel_asked() {
                    let last = st
                        .last_cancelled_read
                        .map(|(tag, _)| format!("; the last read cancelled on this eventfd was tag {tag:#x}"))
                        .unwrap_or_default();
                    self.viol(
                        Kind::Lost,
                        format!(
                            "{}: no event before io_destroy returned and nothing read, though the counter was not \
                             zero when it was submitted{last}",
                            self.describe(req)
                        ),
                    );
                }
                0
            }
            None => v,
        };
        if res == Some(ECANCELED) {
            st.last_cancelled_read = Some((req.tag, st.rpos));
        }
        let most = st.wpos - st.rpos;
        if (res.is_some_and(|r| r != ECANCELED) || (res.is_none() && v != EFD_GUARD))
            && (taken == 0 || taken < *avail || taken > most)
        {
            let last = st
                .last_cancelled_read
                .map(|(tag, _)| format!("; the last read cancelled on this eventfd was tag {tag:#x}"))
                .unwrap_or_default();
            self.viol(
                Kind::WrongResult,
                format!(
                    "{}: read the value {taken}, expected {avail} to {most} (written {}, read before {}){last}; this \
                     eventfd is not checked any more",
                    self.describe(req),
                    st.wpos,
                    st.rpos
                ),
            );
            // What the counter holds is unknown from here on.
            st.tainted = true;
        }
        st.rpos += taken.min(most);
        if st.read == Some(req.tag) {
            st.read = None;
        }
    }

    // -----------------------------------------------------------------------
    // Cancelling.

    /// `io_cancel` of a random pending request of `ctx` (only of those that may wait forever if `only_forever`); false when there was none.
    fn cancel_one(&self, t: &mut Thr, ctx: &Arc<Ctx>, only_forever: bool) -> bool {
        let _ops = ctx.ops.read().unwrap_or_else(|e| e.into_inner());
        if ctx.destroyed.load(SeqCst) {
            return false;
        }
        let req = {
            let p = lock(&ctx.pending);
            let cands: Vec<&Arc<Req>> = p
                .values()
                .filter(|r| r.state.load(SeqCst) == ST_ACCEPTED && r.cancel.load(SeqCst) == C_NONE)
                .filter(|r| !only_forever || !r.completing)
                .collect();
            if cands.is_empty() {
                return false;
            }
            cands[t.rng.below(cands.len() as u64) as usize].clone()
        };
        // The state says "asked" before the call, so an event reaped by
        // another thread meanwhile may carry -ECANCELED; if io_cancel then
        // refuses, whichever of the two threads looks last reports it.
        if req.cancel.compare_exchange(C_NONE, C_ASKED, SeqCst, SeqCst).is_err() {
            return false;
        }
        // Strict expectations: a POLL on the pipe nobody writes, or (uaio)
        // a stream read that has no data and no write that could bring some,
        // cannot complete by itself: io_cancel must return -EINPROGRESS and
        // the event must then say cancelled.
        let stream = match &req.op {
            Op::PipeRead { s, .. } | Op::EfdRead { s, .. } if !self.o.kernel => Some(&self.streams[*s as usize]),
            _ => None,
        };
        let st = stream.map(|s| lock(&s.st));
        let stuck_read =
            st.as_ref().is_some_and(|st| st.read == Some(req.tag) && st.write.is_none() && st.wpos == st.rpos);
        let idle_poll = matches!(req.op, Op::Poll { s: None });
        let must = idle_poll || stuck_read;
        self.act(t.id, A_CANCEL, ctx.serial, req.tag);
        let mut res = io_event::default();
        // SAFETY: the iocb lives in `req`, held here; `res` is a live local.
        let r = unsafe { self.aio.cancel(ctx.handle, req.cb_ptr(), &mut res) };
        req.due_ms.store(self.now_ms(), SeqCst);
        drop(st);
        self.act(t.id, A_IDLE, 0, 0);
        self.stats.cancel_calls.fetch_add(1, Relaxed);
        let racing = ctx.destroying.load(SeqCst);
        let is_poll = matches!(req.op, Op::Poll { .. });
        let ok = match r {
            EINPROGRESS => {
                req.cancel.store(C_INPROGRESS, SeqCst);
                self.stats.cancel_inprogress.fetch_add(1, Relaxed);
                if stuck_read {
                    req.must_cancel.store(true, SeqCst);
                }
                // Kernel AIO cancels only POLLs.
                !self.o.kernel || is_poll
            }
            EINVAL => {
                req.cancel.store(C_REFUSED, SeqCst);
                if req.got_ecanceled.load(SeqCst) && !req.destroy_cancel.load(SeqCst) {
                    self.viol(
                        Kind::WrongResult,
                        format!(
                            "{} completed with -ECANCELED although io_cancel returned -EINVAL",
                            self.describe(&req)
                        ),
                    );
                }
                racing || !must
            }
            _ => false,
        };
        if !ok {
            let expected = match (self.o.kernel, is_poll, must) {
                (_, _, true) => "-EINPROGRESS (it could not have completed)",
                (true, false, _) => "-EINVAL (kernel AIO cancels only POLL)",
                _ => "-EINPROGRESS or -EINVAL",
            };
            self.viol(
                Kind::BadCall,
                format!("io_cancel of {} returned {}, expected {expected}", self.describe(&req), errno_name(r)),
            );
        }
        true
    }

    /// Adds to an eventfd's counter with write(2) (kernel AIO cannot write
    /// an eventfd).
    fn efd_write(&self, t: &mut Thr) {
        let ne = self.streams.len() - self.npipes;
        let s = self.npipes + t.rng.below(ne as u64) as usize;
        let stream = &self.streams[s];
        let StreamKind::Efd { fd } = &stream.kind else { return };
        let mut st = lock(&stream.st);
        let v = t.rng.range(1, 1000);
        // SAFETY: writes 8 bytes from a live local.
        let r = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
        if r == 8 {
            st.wpos += v;
        } else {
            self.viol(Kind::BadCall, format!("write to eventfd {s}: {r} (errno {})", last_errno()));
        }
    }

    // -----------------------------------------------------------------------
    // Draining.

    /// Cancels what may wait forever and reaps until nothing is pending on
    /// `ctx` but requests the watchdog reported lost; those are then taken
    /// out (what they worked on stays claimed and is not checked again).
    fn drain(&self, t: &mut Thr, ctx: &Arc<Ctx>) {
        loop {
            let (left, forever) = {
                let p = lock(&ctx.pending);
                let left = p.values().filter(|r| !r.flagged.load(SeqCst)).count();
                let forever = p
                    .values()
                    .any(|r| !r.completing && r.cancel.load(SeqCst) == C_NONE && r.state.load(SeqCst) == ST_ACCEPTED);
                (left, forever)
            };
            if left == 0 || ctx.destroyed.load(SeqCst) {
                break;
            }
            if forever {
                while self.cancel_one(t, ctx, true) {}
            }
            self.act(t.id, A_DRAIN, ctx.serial, left as u64);
            self.reap(t, ctx, true);
        }
        let lost: Vec<Arc<Req>> = {
            let mut p = lock(&ctx.pending);
            let tags: Vec<u64> = p.values().filter(|r| r.flagged.load(SeqCst)).map(|r| r.tag).collect();
            tags.iter().filter_map(|tag| p.remove(tag)).collect()
        };
        for req in lost {
            if req.state.compare_exchange(ST_ACCEPTED, ST_LOST, SeqCst, SeqCst).is_ok() {
                self.register(req.tag, (ctx.serial << 8) | u64::from(ST_LOST));
                self.taint(&req);
            }
        }
    }

    /// What a lost request worked on is no longer checked.
    fn taint(&self, req: &Req) {
        match &req.op {
            Op::PipeRead { s, .. } | Op::PipeWrite { s, .. } | Op::EfdRead { s, .. } => {
                lock(&self.streams[*s as usize].st).tainted = true
            }
            // File blocks stay claimed: not checked again.
            _ => {}
        }
    }
}

/// Copies up to `max` events out of the ring at `handle` the way programs
/// reap in user space: check the header, read `tail` with acquire ordering,
/// copy the events at `ring + 32 + 32 * i` for `i` from `head` to `tail`
/// (modulo `nr`), store `head` with release ordering. Returns how many
/// events were visible and left behind.
///
/// # Safety
/// The ring must stay mapped during the call, and nobody else may reap from
/// it meanwhile.
unsafe fn ring_take(handle: u64, max: usize, out: &mut Vec<io_event>) -> Result<u64, String> {
    let hdr = handle as *mut abi::aio_ring;
    // SAFETY: the caller guarantees the ring is mapped; the header fields are
    // read volatile (others write them), head and tail as atomics, as the
    // kernel's ring protocol has them.
    unsafe {
        let magic = std::ptr::read_volatile(&raw const (*hdr).magic);
        let nr = std::ptr::read_volatile(&raw const (*hdr).nr);
        let hlen = std::ptr::read_volatile(&raw const (*hdr).header_length);
        if magic != abi::AIO_RING_MAGIC || hlen != 32 || nr == 0 {
            return Err(format!("bad ring header: magic {magic:#x}, header_length {hlen}, nr {nr}"));
        }
        let head_a = &*((&raw mut (*hdr).head) as *const AtomicU32);
        let tail_a = &*((&raw mut (*hdr).tail) as *const AtomicU32);
        let mut head = head_a.load(Relaxed);
        let tail = tail_a.load(Acquire);
        if head >= nr || tail >= nr {
            return Err(format!("ring head {head} or tail {tail} out of range (nr {nr})"));
        }
        while head != tail && out.len() < max {
            let ev = (handle + 32 + 32 * u64::from(head)) as *const io_event;
            out.push(std::ptr::read_volatile(ev));
            head = (head + 1) % nr;
        }
        head_a.store(head, Release);
        let tail2 = tail_a.load(Acquire);
        Ok(u64::from((tail2 + nr - head) % nr))
    }
}

/// The tags of the events visible in the ring at `handle`, left in place.
///
/// # Safety
/// The ring must stay mapped during the call.
unsafe fn ring_peek(handle: u64) -> HashSet<u64> {
    let hdr = handle as *mut abi::aio_ring;
    let mut tags = HashSet::new();
    // SAFETY: the caller guarantees the ring is mapped; everything is read
    // volatile or atomically, as others write it concurrently; indexes are
    // bounded by `nr`.
    unsafe {
        let nr = std::ptr::read_volatile(&raw const (*hdr).nr);
        let head = (*((&raw mut (*hdr).head) as *const AtomicU32)).load(Relaxed);
        let tail = (*((&raw mut (*hdr).tail) as *const AtomicU32)).load(Acquire);
        if nr == 0 || head >= nr || tail >= nr {
            return tags;
        }
        let mut i = head;
        while i != tail {
            let ev = (handle + 32 + 32 * u64::from(i)) as *const io_event;
            tags.insert(std::ptr::read_volatile(&raw const (*ev).data));
            i = (i + 1) % nr;
        }
    }
    tags
}

// ---------------------------------------------------------------------------
// Threads.

/// A worker thread: random operations until the run stops; returns its quarantine.
fn worker(w: &World, id: usize) -> VecDeque<(Arc<Req>, u64)> {
    let mut t = Thr {
        id,
        rng: Rng::new(w.o.seed ^ ((id as u64 + 1) * 0x1000_0001)),
        quarantine: VecDeque::new(),
        private: None,
        events: Vec::new(),
    };
    t.private = w.new_ctx(&t, format!("private-t{id}"), true, false);
    while !w.stop.load(Relaxed) {
        let ctx = if t.rng.chance(400) { t.private.clone() } else { w.pick_shared(&mut t) };
        let Some(ctx) = ctx else {
            if t.private.is_none() {
                t.private = w.new_ctx(&t, format!("private-t{id}"), true, false);
                if t.private.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            continue;
        };
        match t.rng.below(1000) {
            0..=539 => w.submit_batch(&mut t, &ctx),
            540..=929 => w.reap(&mut t, &ctx, true),
            930..=974 => {
                w.cancel_one(&mut t, &ctx, false);
            }
            975..=986 => w.efd_write(&mut t),
            987..=991 => w.stale_check(&mut t),
            // Destroy with requests pending, others maybe calling on it.
            992..=995 => {
                if ctx.private {
                    w.destroy_ctx(&mut t, &ctx);
                    t.private = w.new_ctx(&t, format!("private-t{id}"), true, false);
                } else if t.rng.chance(250) {
                    w.destroy_ctx(&mut t, &ctx);
                }
            }
            _ => {}
        }
    }
    if let Some(ctx) = t.private.take() {
        w.drain(&mut t, &ctx);
        w.destroy_ctx(&mut t, &ctx);
    }
    w.act(id, A_DONE, 0, 0);
    t.quarantine
}

/// An activity in words.
fn activity_name(what: u32) -> &'static str {
    match what {
        A_IDLE => "working between calls",
        A_SUBMIT => "in io_submit",
        A_GETEVENTS => "in io_getevents",
        A_PGETEVENTS => "in io_pgetevents",
        A_RING => "reading the ring",
        A_CANCEL => "in io_cancel",
        A_DESTROY => "in io_destroy",
        A_DESTROY_WAIT => "waiting for calls racing io_destroy to return",
        A_SETUP => "in io_setup",
        A_RESFD_WAIT => "waiting on a RESFD eventfd",
        A_DRAIN => "draining",
        A_JOIN => "waiting for the workers to finish",
        A_STALE => "calling on a destroyed handle",
        A_SETUP_WAIT => "waiting to call io_setup until every io_destroy under way is over",
        _ => "finished",
    }
}

impl World {
    /// What thread `i` is doing, and since when.
    fn describe_activity(&self, i: usize) -> String {
        let a = &self.activity[i];
        let what = a.what.load(Relaxed);
        let ctx = a.ctx.load(Relaxed);
        let detail = a.detail.load(Relaxed);
        let secs = self.now_ms().saturating_sub(a.since_ms.load(Relaxed)) as f64 / 1000.0;
        let who = if i == self.o.threads { "main thread".to_string() } else { format!("thread {i}") };
        let mut s = format!("{who}: {} for {secs:.1} s", activity_name(what));
        if ctx != 0 {
            let state = match lock(&self.all_ctx).get(&ctx) {
                Some(c) if c.destroyed.load(SeqCst) => " [destroyed]",
                Some(c) if c.destroying.load(SeqCst) => " [being destroyed]",
                _ => "",
            };
            s += &format!(" on {}{state}", self.ctx_label(ctx));
        }
        match what {
            A_GETEVENTS | A_PGETEVENTS => {
                let ms = detail >> 8;
                let timeout = if ms == u64::MAX >> 8 { "none".into() } else { format!("{ms} ms") };
                s += &format!(" (min_nr {}, timeout {timeout})", detail & 0xff);
            }
            A_SUBMIT => s += &format!(" ({detail} iocbs)"),
            A_CANCEL => s += &format!(" (tag {detail:#x})"),
            A_DESTROY => s += &format!(" ({detail} requests pending)"),
            A_STALE => s += &format!(" (handle {detail:#x})"),
            _ => {}
        }
        s
    }

    /// Requests whose event is overdue by the watchdog period, and not
    /// waiting in the ring either: reported lost, once each. This is a
    /// judgement on time by design (a request that takes longer than the
    /// watchdog period is treated as lost; if its event comes after all, a
    /// note says so).
    fn overdue(&self, limit_ms: u64) -> usize {
        let mut flagged = 0;
        let now = self.now_ms();
        let ctxs: Vec<Arc<Ctx>> = lock(&self.all_ctx).values().cloned().collect();
        for c in ctxs {
            let Ok(p) = c.pending.try_lock() else { continue };
            let late: Vec<Arc<Req>> = p
                .values()
                .filter(|r| {
                    let due = r.due_ms.load(SeqCst);
                    due != 0 && now.saturating_sub(due) > limit_ms && !r.flagged.load(SeqCst)
                })
                .cloned()
                .collect();
            drop(p);
            if late.is_empty() {
                continue;
            }
            // An event waiting in the ring is not lost, only not reaped yet
            // (its reaper may be busy elsewhere): look without consuming.
            let visible = {
                let Ok(_ring) = c.ring.try_lock() else { continue };
                if c.destroyed.load(SeqCst) {
                    continue;
                }
                // SAFETY: holding `ring` keeps the context from being
                // destroyed, so its ring stays mapped; we only read it.
                unsafe { ring_peek(c.handle) }
            };
            for r in late {
                if visible.contains(&r.tag) {
                    continue;
                }
                if !r.flagged.swap(true, SeqCst) {
                    flagged += 1;
                    let why = match r.cancel.load(SeqCst) {
                        C_NONE => "since it was submitted",
                        C_INPROGRESS => "since io_cancel returned -EINPROGRESS",
                        _ => "since io_cancel was called",
                    };
                    self.viol(
                        Kind::Lost,
                        format!(
                            "no event for {} in {} s {why}",
                            self.describe(&r),
                            (now - r.due_ms.load(SeqCst)) / 1000
                        ),
                    );
                }
            }
        }
        flagged
    }
}

/// Fails the run when nothing progresses for `--watchdog` seconds, and reports overdue events.
fn watchdog(w: &World, done: &AtomicBool, summary: &dyn Fn(&World)) {
    let limit = Duration::from_secs(w.o.watchdog);
    let mut last = w.progress.load(Relaxed);
    let mut since = Instant::now();
    while !done.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let p = w.progress.load(Relaxed);
        if p != last {
            last = p;
            since = Instant::now();
        }
        // Requests reported lost are given up on, which lets the run go on.
        if w.overdue(limit.as_millis() as u64) > 0 {
            since = Instant::now();
        }
        if since.elapsed() >= limit {
            let mut msg = format!("no progress for {} s:", w.o.watchdog);
            for i in 0..=w.o.threads {
                let what = w.activity[i].what.load(Relaxed);
                if what != A_DONE {
                    msg += &format!("\n    {}", w.describe_activity(i));
                }
            }
            let ctxs: Vec<Arc<Ctx>> = lock(&w.all_ctx).values().cloned().collect();
            for c in ctxs {
                if let Ok(p) = c.pending.try_lock() {
                    if !p.is_empty() {
                        let mut tags: Vec<&Arc<Req>> = p.values().collect();
                        tags.sort_by_key(|r| r.tag);
                        let list: Vec<String> = tags.iter().take(4).map(|r| w.describe(r)).collect();
                        msg += &format!("\n    {} has {} requests pending, e.g. {}", c.label, p.len(), list.join("; "));
                    }
                }
            }
            w.viol(Kind::Hang, msg);
            summary(w);
            if let Some(d) = &w.scratch {
                let _ = std::fs::remove_dir_all(d);
            }
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// The command.

/// Runs `uaio stress` with the arguments after `stress`.
pub fn main(args: &[String]) -> ExitCode {
    let mut o = match parse_args(args) {
        Ok(o) => o,
        // Help goes to stdout with status 0, errors to stderr with status 2.
        Err(e) => e.exit(),
    };
    if let Some(b) = &o.backend {
        // Before the first use of the engine, and before any thread exists.
        std::env::set_var("UAIO_BACKEND", b);
    }
    let aio: &'static dyn Aio = if o.kernel { &Kernel } else { &Uaio };
    // A first context sets up what lives as long as the process (uaio's
    // progress thread, its signal handler), so the starting figures include it.
    let mut h = 0u64;
    // SAFETY: `h` is a live u64 holding 0.
    let r = unsafe { aio.setup(1, &mut h) };
    if r != 0 {
        eprintln!("uaio stress: io_setup failed: {}", errno_name(r));
        return ExitCode::FAILURE;
    }
    // SAFETY: io_destroy takes no pointer.
    unsafe { aio.destroy(h) };
    let target = if o.kernel { "kernel AIO".to_string() } else { format!("uaio ({})", uaio::backend_name()) };
    if !o.kernel {
        // What was in force (maybe from UAIO_BACKEND), for the reproduction line.
        o.backend = Some(if uaio::backend_name() == "io_uring" { "uring" } else { "threads" }.to_string());
    }
    let start_fig = figures();
    let start_threads = thread_names();

    let (dir, own_dir) = match &o.dir {
        Some(d) if !d.is_dir() => {
            let what = if d.exists() { "not a directory" } else { "no such directory" };
            eprintln!("uaio stress: --dir {}: {what}", d.display());
            return ExitCode::from(2);
        }
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("uaio-stress-{}-{}", std::process::id(), o.seed)), true),
    };
    crate::interrupt::catch();
    let world = match build_world(&o, aio, target, &dir) {
        Ok(mut w) => {
            w.scratch = own_dir.then(|| dir.clone());
            Arc::new(w)
        }
        Err(e) => {
            eprintln!("uaio stress: setting up in {}: {e}", dir.display());
            if own_dir {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return ExitCode::FAILURE;
        }
    };
    let limit = match (o.requests, o.seconds) {
        (Some(n), _) => format!("{n} requests"),
        (_, Some(s)) => format!("{s} s"),
        _ => String::new(),
    };
    println!(
        "uaio stress: {} | {} threads, {} shared + {} private contexts | {limit} | seed {} | {}",
        world.target,
        o.threads,
        o.shared,
        o.threads,
        o.seed,
        dir.display()
    );

    let done = Arc::new(AtomicBool::new(false));
    let wd = {
        let (w, d) = (world.clone(), done.clone());
        std::thread::Builder::new()
            .name("stress-watchdog".into())
            .spawn(move || watchdog(&w, &d, &|w| print_summary(w, start_fig)))
            .expect("spawn watchdog")
    };
    let workers: Vec<_> = (0..o.threads)
        .map(|i| {
            let w = world.clone();
            std::thread::Builder::new().name(format!("stress-{i}")).spawn(move || worker(&w, i)).expect("spawn worker")
        })
        .collect();

    let main_id = o.threads;
    let mut t = Thr {
        id: main_id,
        rng: Rng::new(o.seed ^ 0xabcd),
        quarantine: VecDeque::new(),
        private: None,
        events: Vec::new(),
    };
    let mut last_print = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let acc = world.stats.accepted.load(Relaxed);
        let end = crate::interrupt::signal().is_some()
            || match (o.requests, o.seconds) {
                (Some(n), _) => acc >= n,
                (_, Some(s)) => world.t0.elapsed().as_secs_f64() >= s,
                _ => true,
            };
        if o.verbose && last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "  {:.1} s: {acc} accepted, {} events, {} destroys, {} violations",
                world.t0.elapsed().as_secs_f64(),
                world.stats.events.load(Relaxed),
                world.stats.destroys.load(Relaxed),
                world.violations()
            );
        }
        if end {
            break;
        }
    }
    world.stop.store(true, SeqCst);
    // Shared contexts: reap what will come, cancel what would wait forever,
    // then destroy them (which also wakes threads still waiting on them).
    for slot in &world.shared {
        let ctx = lock(slot).clone();
        world.drain(&mut t, &ctx);
        world.destroy_ctx(&mut t, &ctx);
    }
    world.act(main_id, A_JOIN, 0, 0);
    let mut quarantines = vec![std::mem::take(&mut t.quarantine)];
    for h in workers {
        match h.join() {
            Ok(q) => quarantines.push(q),
            Err(_) => world.viol(Kind::BadCall, "a worker thread panicked".into()),
        }
    }
    world.act(main_id, A_IDLE, 0, 0);
    final_checks(&world, quarantines);
    done.store(true, SeqCst);
    let _ = wd.join();

    let Ok(world) = Arc::try_unwrap(world) else {
        eprintln!("uaio stress: internal: world still shared");
        return ExitCode::FAILURE;
    };
    let counts: Vec<u64> = world.counts.iter().map(|c| c.load(SeqCst)).collect();
    let snapshot = Snapshot::of(&world);
    drop(world);
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for i in 0..NFILES {
            let _ = std::fs::remove_file(dir.join(format!("uaio-stress-data-{i}")));
        }
    }
    // uaio's pool threads leave once the last context is gone: give them a
    // moment.
    let mut end_fig = figures();
    let settle = Instant::now();
    while (end_fig.threads > start_fig.threads || end_fig.fds > start_fig.fds)
        && settle.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(50));
        end_fig = figures();
    }
    let mut leaks = Vec::new();
    if end_fig.fds > start_fig.fds {
        leaks.push(format!("{} descriptors more than at the start", end_fig.fds - start_fig.fds));
    }
    if end_fig.threads > start_fig.threads {
        let mut extra = thread_names();
        if uaio::kept_rings() > 0 {
            extra.retain(|n| !n.starts_with("iou-wrk-"));
        }
        for n in &start_threads {
            if let Some(i) = extra.iter().position(|x| x == n) {
                extra.remove(i);
            }
        }
        leaks.push(format!(
            "{} threads more than at the start ({})",
            end_fig.threads - start_fig.threads,
            extra.join(", ")
        ));
    }
    for l in &leaks {
        eprintln!("VIOLATION [leak] {l} (all contexts destroyed, all descriptors of the run closed)");
    }
    let total = counts.iter().sum::<u64>() + leaks.len() as u64;
    snapshot.print(&counts, leaks.len() as u64, start_fig, Some(end_fig));
    // An interrupted run checked less than it was asked to: no PASS for it.
    let interrupted = crate::interrupt::signal().is_some();
    println!(
        "result: {}",
        if total > 0 {
            "FAIL"
        } else if interrupted {
            "INTERRUPTED (no violation so far)"
        } else {
            "PASS"
        }
    );
    if total > 0 {
        println!("reproduce: {}", reproduce(&o));
    }
    if let Some(sig) = crate::interrupt::signal() {
        eprintln!(
            "uaio stress: interrupted (signal {sig}) after {:.1} s; its scratch files are removed",
            snapshot.secs
        );
        crate::interrupt::die_of(sig);
    }
    if total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The command line that runs the same workload again.
fn reproduce(o: &Options) -> String {
    let mut s = format!("uaio stress --threads {} --seed {}", o.threads, o.seed);
    match (o.requests, o.seconds) {
        (Some(n), _) => s += &format!(" --requests {n}"),
        (_, Some(x)) => s += &format!(" --seconds {x}"),
        _ => {}
    }
    if o.kernel {
        s += " --kernel";
    } else if let Some(b) = &o.backend {
        s += &format!(" --backend {b}");
    }
    if o.shared != 2 {
        s += &format!(" --shared {}", o.shared);
    }
    s + "  (threads interleave differently on each run: the seed fixes the mix, not the timing)"
}

/// Creates the files, pipes, eventfds and shared contexts.
fn build_world(o: &Options, aio: &'static dyn Aio, target: String, dir: &std::path::Path) -> std::io::Result<World> {
    std::fs::create_dir_all(dir)?;
    let salt = mix(o.seed ^ 0x5eed);
    let mut files = Vec::new();
    for i in 0..NFILES {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(format!("uaio-stress-data-{i}")))?;
        let mut content = Vec::with_capacity(FILE_BLOCKS as usize * BS);
        for b in 0..FILE_BLOCKS {
            content.extend(block_bytes(salt, i as u32, b, 0));
        }
        file.write_all_at(&content, 0)?;
        files.push(DataFile { file, blocks: (0..FILE_BLOCKS).map(|_| AtomicU64::new(0)).collect() });
    }
    let npipes = (o.threads * 2).max(4);
    let nefds = o.threads.max(2);
    let mut streams = Vec::new();
    for i in 0..npipes + nefds {
        let kind = if i < npipes {
            let (r, w) = new_pipe()?;
            StreamKind::Pipe { r, w }
        } else {
            StreamKind::Efd { fd: new_eventfd(0)? }
        };
        streams.push(Stream { id: i as u32, kind, st: Mutex::new(StreamState::default()) });
    }
    let mut w = World {
        o: o.clone(),
        aio,
        target,
        salt,
        tag_hi: (mix(o.seed) & 0x7fff | 1) << 48,
        files,
        streams,
        npipes,
        idle: new_pipe()?,
        shared: Vec::new(),
        all_ctx: Mutex::new(HashMap::new()),
        setup_lock: RwLock::new(()),
        live: Mutex::new(HashSet::new()),
        stale: Mutex::new(VecDeque::new()),
        registry: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
        next_tag: AtomicU64::new(1),
        next_serial: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        activity: (0..=o.threads).map(|_| Activity::default()).collect(),
        stats: Stats::default(),
        counts: Default::default(),
        printed: AtomicU64::new(0),
        t0: Instant::now(),
        scratch: None,
    };
    let t = Thr { id: o.threads, rng: Rng::new(0), quarantine: VecDeque::new(), private: None, events: Vec::new() };
    for slot in 0..o.shared {
        let ring = slot % 2 == 1;
        let label = format!("shared-{slot}{}", if ring { "(ring)" } else { "" });
        let ctx = w.new_ctx(&t, label, false, ring).ok_or_else(|| std::io::Error::other("io_setup failed"))?;
        w.shared.push(Mutex::new(ctx));
    }
    Ok(w)
}

/// End of run: every request must be over; streams, files and quarantined
/// buffers must hold what the run says they hold.
fn final_checks(w: &World, quarantines: Vec<VecDeque<(Arc<Req>, u64)>>) {
    for shard in &w.registry {
        for (tag, v) in lock(shard).iter() {
            if matches!(*v as u8, ST_SUBMITTING | ST_ACCEPTED) {
                w.viol(Kind::Lost, format!("tag {tag:#x} on {} never ended", w.ctx_label(v >> 8)));
            }
        }
    }
    for s in &w.streams {
        let mut st = lock(&s.st);
        w.try_resolve_write(s, &mut st);
        if st.tainted {
            continue;
        }
        if st.read.is_some() || st.write.is_some() {
            w.viol(
                Kind::Lost,
                format!("stream {} still has a request pending after every context was destroyed", s.id),
            );
            continue;
        }
        let last = st
            .last_cancelled_read
            .map(|(tag, _)| format!("; the last read cancelled on it was tag {tag:#x}"))
            .unwrap_or_default();
        // Nothing may block now, whatever the counts say.
        let fd = match &s.kind {
            StreamKind::Pipe { r, .. } => r.as_raw_fd(),
            StreamKind::Efd { fd } => fd.as_raw_fd(),
        };
        // SAFETY: fcntl on a descriptor we own; no pointer.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        let left = st.wpos.saturating_sub(st.rpos);
        match &s.kind {
            StreamKind::Pipe { .. } => {
                let mut got = vec![0u8; left as usize + 1];
                // SAFETY: reads at most got.len() bytes into `got`.
                let n = unsafe { libc::read(fd, got.as_mut_ptr().cast(), got.len()) };
                got.truncate(n.max(0) as usize);
                let want = stream_bytes(w.salt, s.id, st.rpos, left as usize);
                if got != want {
                    w.viol(
                        Kind::WrongResult,
                        format!(
                            "pipe {}: {} bytes left in the pipe at the end, expected {left} (written {}, read {}), \
                             first difference at byte {}{last}",
                            s.id,
                            got.len(),
                            st.wpos,
                            st.rpos,
                            first_diff(&got, &want).unwrap_or(0)
                        ),
                    );
                }
            }
            StreamKind::Efd { .. } => {
                let v = eventfd_take(fd).unwrap_or(u64::MAX);
                if v != left {
                    w.viol(
                        Kind::WrongResult,
                        format!(
                            "eventfd {}: counter {v} at the end, expected {left} (written {}, read {}){last}",
                            s.id, st.wpos, st.rpos
                        ),
                    );
                }
            }
        }
    }
    for (i, f) in w.files.iter().enumerate() {
        for (b, a) in f.blocks.iter().enumerate() {
            let v = a.load(SeqCst);
            if v & BUSY != 0 {
                continue;
            }
            let mut got = vec![0u8; BS];
            let _ = f.file.read_exact_at(&mut got, (b * BS) as u64);
            if got != block_bytes(w.salt, i as u32, b as u32, v as u32) {
                w.viol(
                    Kind::WrongResult,
                    format!(
                        "file {i} block {b}: holds {} at the end, expected version {v}",
                        describe_block(w.salt, &got, None)
                    ),
                );
            }
        }
    }
    for q in quarantines {
        for (req, sum) in q {
            w.recheck(&req, sum);
        }
    }
}

/// Counters copied out of the world before it is dropped.
struct Snapshot {
    target: String,
    seed: u64,
    secs: f64,
    s: [u64; 15],
}

impl Snapshot {
    /// The counters of `w` now.
    fn of(w: &World) -> Self {
        let st = &w.stats;
        let s = [
            &st.accepted,
            &st.rejected,
            &st.events,
            &st.ring_events,
            &st.by_destroy,
            &st.ecanceled,
            &st.cancel_calls,
            &st.cancel_inprogress,
            &st.polls_cancelled,
            &st.destroys,
            &st.racing_einval,
            &st.stale_checks,
            &st.setups,
            &st.file_bytes,
            &st.pipe_bytes,
        ]
        .map(|a| a.load(SeqCst));
        Snapshot { target: w.target.clone(), seed: w.o.seed, secs: w.t0.elapsed().as_secs_f64(), s }
    }

    /// Prints the summary.
    fn print(&self, counts: &[u64], leaks: u64, start: Figures, end: Option<Figures>) {
        let s = &self.s;
        println!("summary ({}, seed {}, {:.1} s):", self.target, self.seed, self.secs);
        println!("  requests   {} accepted, {} not accepted by io_submit", s[0], s[1]);
        println!(
            "  events     {} ({} reaped from the ring in user space), {} accounted for by io_destroy",
            s[2], s[3], s[4]
        );
        println!(
            "  cancelled  {} io_cancel calls, {} returned -EINPROGRESS; {} events -ECANCELED, {} POLLs ended by cancel",
            s[6], s[7], s[5], s[8]
        );
        println!(
            "  contexts   {} io_setup, {} io_destroy, {} calls racing io_destroy got -EINVAL, {} stale-handle checks",
            s[12], s[9], s[10], s[11]
        );
        println!("  data       {} file bytes, {} pipe bytes checked", s[13], s[14]);
        let c = |k: Kind| counts[KINDS.iter().position(|x| *x == k).unwrap_or(0)];
        println!(
            "  violations lost {}, duplicated {}, wrong results {}, late buffer writes {}, hangs {}, bad call results {}, \
             leaks {}",
            c(Kind::Lost),
            c(Kind::Duplicated),
            c(Kind::WrongResult),
            c(Kind::LateWrite),
            c(Kind::Hang),
            c(Kind::BadCall),
            c(Kind::Leak) + leaks
        );
        let e = |f: Option<Figures>, g: fn(&Figures) -> String| f.as_ref().map(g).unwrap_or_else(|| "?".into());
        println!(
            "  process    descriptors {} -> {}, threads {} -> {}, VmRSS {} kB -> {} kB",
            start.fds,
            e(end, |f| f.fds.to_string()),
            start.threads,
            e(end, |f| f.threads.to_string()),
            start.rss_kb,
            e(end, |f| f.rss_kb.to_string())
        );
    }
}

/// The summary when the watchdog ends the run (figures of the moment).
fn print_summary(w: &World, start: Figures) {
    let counts: Vec<u64> = w.counts.iter().map(|c| c.load(SeqCst)).collect();
    Snapshot::of(w).print(&counts, 0, start, Some(figures()));
    println!("result: FAIL");
    println!("reproduce: {}", reproduce(&w.o));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a command line.
    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o =
            parse_args(&args("--threads 3 --seconds 2.5 --backend threads --seed 7 --kernel --watchdog 5")).unwrap();
        assert_eq!((o.threads, o.seconds, o.requests, o.seed, o.kernel, o.watchdog), (3, Some(2.5), None, 7, true, 5));
        assert_eq!(o.backend.as_deref(), Some("threads"));
        assert_eq!(parse_args(&args("")).unwrap().requests, Some(20_000));
        assert!(parse_args(&args("--requests 1 --seconds 1")).is_err());
        assert!(parse_args(&args("--backend foo")).is_err());
        assert!(parse_args(&args("--threads")).is_err());
        for bad in
            ["--seconds nan", "--seconds 0", "--seconds -1", "--seconds 1e300", "--requests 0", "--shared 100000"]
        {
            assert!(parse_args(&args(bad)).is_err(), "{bad} accepted");
        }
        assert!(parse_args(&args("--bogus")).is_err());
    }

    #[test]
    fn stream_bytes_are_position_based() {
        let all = stream_bytes(9, 3, 0, 100);
        assert_eq!(stream_bytes(9, 3, 13, 40), all[13..53].to_vec());
        assert!(stream_guard(9, 3, 13, 40).iter().zip(&all[13..53]).all(|(g, d)| g != d));
    }

    #[test]
    fn blocks_describe_themselves() {
        let b = block_bytes(1, 2, 3, 4);
        assert_eq!(describe_block(1, &b, None), "file 2 block 3 version 4");
    }
}
