//! Deterministic differential fuzzer: random single iocbs and small batches
//! (1..=4) are submitted to kernel AIO and to uaio, each side with its own
//! context, files, pipes, eventfds and buffers, and the observable results
//! are compared: `io_submit`'s return value, `aio_key` afterwards, the
//! events (`res`, `res2`, `data`, `obj` as an index), buffer, file, pipe and
//! eventfd contents.
//!
//! Environment: `UAIO_DIFF_SEED` (default 1), `UAIO_DIFF_ITERS` (default
//! 1200, about 15 s), `UAIO_DIFF_ITER` (run only that iteration, to reproduce one),
//! `UAIO_DIFF_VERBOSE` (print every iteration's trace), `UAIO_DIFF_TIMING`
//! (time each side), `UAIO_DIFF_FRESH` (a new context every iteration
//! instead of only after something stayed pending), `UAIO_DIFF_AVOID`
//! (steer away from mismatches already found, to look past them:
//! `efd-read`, `iov1-cap`, `poll-nopoll`, `nseg-trunc`, `nowait-write`,
//! `dir-read0`, or `all`; see `Caps`).
//!
//! Every iteration derives its randomness from `(seed, iteration)` alone, so
//! a mismatch reported as `seed=S iteration=I` is reproduced with
//! `UAIO_DIFF_SEED=S UAIO_DIFF_ITER=I`.
//!
//! The generator steers away from the documented differences (NOOP, cancel
//! of reads, `RWF_NOWAIT` on files without `FMODE_NOWAIT`, `RWF_DONTCACHE`
//! where unsupported, poll masks of sockets) and from what would make the
//! kernel's `io_submit` block (reads of an empty pipe, writes to a full one,
//! reads of an eventfd at 0) or make results depend on the order in which
//! requests of one batch run (two requests on the same pipe or eventfd, a
//! write and any other request on the data file).
//!
//! One test trial (`differential`), so `--list` and nextest see it; the
//! iterations share their contexts and files, so they are not trials of
//! their own.
#![deny(clippy::undocumented_unsafe_blocks)]

use libtest_mimic::{Arguments, Failed, Trial};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uaio_conform::*;

/// Bytes of each request's own data buffer; a no-access guard page follows.
const REGION: usize = 128 * 1024;
/// Region plus guard page.
const SLOT: usize = REGION + 4096;
/// Most requests in a batch.
const NSLOT: usize = 4;
/// iovec entries per request (more than `UIO_MAXIOV`, so counts up to 1024
/// always read initialised entries).
const NIOV: usize = 1100;
/// Bytes kept in pipe A (the one whose read end is in the pool); default
/// pipe capacity is 64 KiB, so refilling an empty pipe never blocks.
const PIPE_A_FILL: usize = 48 * 1024;
/// Capacity of pipe B (write end in the pool): more than any one request can
/// write (6 iovecs of at most one region each).
const PIPE_B_SIZE: i32 = 1 << 20;
/// A kernel address.
const KADDR: u64 = 0xffff_8000_0000_0000;
/// A descriptor number that is never open.
const CLOSED_FD: i32 = 987;
/// Generated iovecs at most (the rest of an array are zero-length).
const MAX_GEN_IOV: usize = 6;

const POLLIN: u64 = 0x1;
const POLLPRI: u64 = 0x2;
const POLLOUT: u64 = 0x4;
const POLLERR: u64 = 0x8;
const POLLHUP: u64 = 0x10;
const POLLRDNORM: u64 = 0x40;
const POLLWRNORM: u64 = 0x100;
const POLLRDHUP: u64 = 0x2000;

// ---------------------------------------------------------------- random

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, iter: u64) -> Rng {
        let mut r = Rng(seed ^ iter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn weighted<T: Copy>(&mut self, v: &[(u32, T)]) -> T {
        let total: u64 = v.iter().map(|e| e.0 as u64).sum();
        let mut x = self.below(total);
        for &(w, t) in v {
            if x < w as u64 {
                return t;
            }
            x -= w as u64;
        }
        unreachable!()
    }
}

// ---------------------------------------------------------------- requests

/// The descriptor pool (same index on both sides, different numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Rdwr,
    Rdonly,
    Wronly,
    Append,
    Direct,
    Dir,
    Path,
    PipeR,
    PipeW,
    Efd,
    Epoll,
    Null,
    Minus1,
    Closed,
    /// The eventfd used only as `aio_resfd`.
    ResEfd,
}

impl F {
    fn is_data_file(self) -> bool {
        matches!(self, F::Rdwr | F::Rdonly | F::Wronly | F::Append | F::Direct)
    }
}

/// `aio_buf`, as a description resolved per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    /// The request's own region, at this offset.
    Valid(u64),
    Null,
    Kernel,
    NoAccess,
    ReadOnly,
    /// A literal value (poll masks, edge addresses).
    Raw(u64),
    /// The request's own iovec array, at this byte offset.
    Iov(u64),
}

#[derive(Debug, Clone, Copy)]
struct Iov {
    base: Buf,
    len: u64,
}

/// Where the iocb pointer in the array points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Normal,
    ReadOnlyPage,
    NullPtr,
    NoAccessPtr,
    KernelPtr,
}

#[derive(Debug, Clone)]
struct Req {
    op: u16,
    fd: F,
    buf: Buf,
    nbytes: u64,
    off: i64,
    reserved2: u64,
    flags: u32,
    resfd: F,
    reqprio: i16,
    rw_flags: u32,
    key: u32,
    data: u64,
    iovs: Vec<Iov>,
    place: Place,
}

fn is_read(op: u16) -> bool {
    matches!(op, IOCB_CMD_PREAD | IOCB_CMD_PREADV)
}
fn is_write(op: u16) -> bool {
    matches!(op, IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV)
}
fn is_rw(op: u16) -> bool {
    is_read(op) || is_write(op)
}
fn is_vec(op: u16) -> bool {
    matches!(op, IOCB_CMD_PREADV | IOCB_CMD_PWRITEV)
}

/// Flags detected on this machine, and the mismatches already found that
/// the generator is told to avoid (`UAIO_DIFF_AVOID`, comma-separated, or
/// `all`), so that a run can look past them.
#[derive(Debug, Clone, Copy)]
struct Caps {
    dontcache: bool,
    /// `efd-read`: no reads of the eventfd (uaio leaves them pending).
    avoid_efd_read: bool,
    /// `iov1-cap`: no single iovec longer than `MAX_RW_COUNT`.
    avoid_iov1_cap: bool,
    /// `poll-nopoll`: no POLL of a file without `->poll` for a mask outside
    /// `DEFAULT_POLLMASK`.
    avoid_poll_nopoll: bool,
    /// `nseg-trunc`: no vectored `aio_nbytes` of 2^32 or more.
    avoid_nseg_trunc: bool,
    /// `nowait-write`: no `RWF_NOWAIT` buffered write to the data file.
    avoid_nowait_write: bool,
    /// `dir-read0`: no reads of the directory (zero-length ones succeed in
    /// uaio).
    avoid_dir_read: bool,
}

impl Caps {
    fn avoid(&mut self, list: &str) {
        for w in list.split(',').map(str::trim) {
            let all = w == "all";
            self.avoid_efd_read |= all || w == "efd-read";
            self.avoid_iov1_cap |= all || w == "iov1-cap";
            self.avoid_poll_nopoll |= all || w == "poll-nopoll";
            self.avoid_nseg_trunc |= all || w == "nseg-trunc";
            self.avoid_nowait_write |= all || w == "nowait-write";
            self.avoid_dir_read |= all || w == "dir-read0";
        }
    }
}

/// Whether a request hits a mismatch the run was told to avoid.
fn avoided(q: &Req, caps: Caps) -> bool {
    if caps.avoid_efd_read && q.fd == F::Efd && is_read(q.op) {
        return true;
    }
    let nseg = q.nbytes as u32 as u64;
    if caps.avoid_iov1_cap && is_vec(q.op) && nseg == 1 && q.iovs.first().is_some_and(|v| v.len > 0x7fff_f000) {
        return true;
    }
    if caps.avoid_nseg_trunc && is_vec(q.op) && q.nbytes >> 32 != 0 {
        return true;
    }
    if caps.avoid_nowait_write
        && is_write(q.op)
        && q.fd.is_data_file()
        && q.fd != F::Direct
        && q.rw_flags & RWF_NOWAIT != 0
    {
        return true;
    }
    if caps.avoid_dir_read && is_read(q.op) && q.fd == F::Dir {
        return true;
    }
    let default_mask = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
    if caps.avoid_poll_nopoll
        && q.op == IOCB_CMD_POLL
        && matches!(q.fd, F::Null | F::Rdwr | F::Rdonly | F::Wronly | F::Append | F::Direct | F::Dir)
        && matches!(q.buf, Buf::Raw(m) if m & default_mask == 0)
    {
        return true;
    }
    false
}

const VALID_OFFS: &[(u32, u64)] =
    &[(60, 0), (8, 4096), (6, 512), (4, 1), (3, 65536), (3, REGION as u64 - 100), (3, REGION as u64 - 4096)];

/// Edge addresses around the top of user space: used only where the kernel
/// reads user memory (writes, iovec arrays), never as a read destination.
const EDGE_ADDRS: &[u64] = &[
    0x7fff_ffff_e000,
    0x7fff_ffff_efff,
    0x7fff_ffff_f000,
    0x7fff_ffff_f001,
    0x7fff_ffff_ffff,
    0x8000_0000_0000,
    0x7fff_ffff_ffff_f000,
    u64::MAX,
    u64::MAX - 4095,
];
/// Unmapped low addresses (below `mmap_min_addr`): safe anywhere.
const LOW_ADDRS: &[u64] = &[1, 0x1000, 0xfff0];

fn gen_addr(r: &mut Rng, kernel_writes: bool) -> Buf {
    let raw = if kernel_writes || r.chance(40) { r.pick(LOW_ADDRS) } else { r.pick(EDGE_ADDRS) };
    let off = r.weighted(VALID_OFFS);
    r.weighted(&[
        (70, Buf::Valid(off)),
        (5, Buf::Null),
        (5, Buf::Kernel),
        (5, Buf::NoAccess),
        (8, Buf::ReadOnly),
        (7, Buf::Raw(raw)),
    ])
}

fn gen_len(r: &mut Rng) -> u64 {
    r.weighted(&[
        (4, 0u64),
        (3, 1),
        (4, 8),
        (8, 100),
        (8, 512),
        (16, 4096),
        (6, 8192),
        (4, 20000),
        (3, 65536),
        (2, REGION as u64),
        (2, 0x7fff_f000),
        (2, 1 << 31),
        (2, 1 << 40),
        (1, i64::MAX as u64),
        (2, u64::MAX),
        (1, 1 << 63),
        (1, 0x7fff_ffff_f000),
    ])
}

fn gen_fd(r: &mut Rng, op: u16) -> F {
    use F::*;
    let table: &[(u32, F)] = match op {
        IOCB_CMD_PREAD | IOCB_CMD_PREADV => &[
            (10, Rdwr),
            (6, Rdonly),
            (2, Wronly),
            (3, Append),
            (5, Direct),
            (1, Dir),
            (1, Path),
            (5, PipeR),
            (1, PipeW),
            (3, Efd),
            (1, Epoll),
            (2, Null),
            (1, Minus1),
            (1, Closed),
        ],
        IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV => &[
            (10, Rdwr),
            (2, Rdonly),
            (6, Wronly),
            (5, Append),
            (5, Direct),
            (1, Dir),
            (1, Path),
            (1, PipeR),
            (5, PipeW),
            (2, Efd),
            (1, Epoll),
            (3, Null),
            (1, Minus1),
            (1, Closed),
        ],
        IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => &[
            (5, Rdwr),
            (3, Rdonly),
            (2, Wronly),
            (1, Append),
            (2, Direct),
            (3, Dir),
            (1, Path),
            (2, PipeR),
            (2, PipeW),
            (2, Efd),
            (1, Epoll),
            (2, Null),
            (1, Minus1),
            (1, Closed),
        ],
        IOCB_CMD_POLL => &[
            (3, Rdwr),
            (1, Rdonly),
            (1, Direct),
            (1, Dir),
            (1, Path),
            (6, PipeR),
            (6, PipeW),
            (5, Efd),
            (1, Epoll),
            (3, Null),
            (1, Minus1),
            (1, Closed),
        ],
        _ => &[
            (3, Rdwr),
            (1, Rdonly),
            (1, Dir),
            (1, Path),
            (1, PipeR),
            (1, PipeW),
            (1, Efd),
            (1, Null),
            (1, Minus1),
            (1, Closed),
        ],
    };
    r.weighted(table)
}

fn gen_rw_flags(r: &mut Rng, op: u16, fd: F, caps: Caps) -> u32 {
    if !r.chance(30) {
        return 0;
    }
    let mut pool = vec![
        RWF_HIPRI,
        RWF_DSYNC,
        RWF_SYNC,
        RWF_APPEND,
        RWF_NOAPPEND,
        RWF_NOSIGNAL,
        RWF_APPEND | RWF_NOAPPEND,
        1 << 9,
        1 << 31,
    ];
    // RWF_NOWAIT only where the file has FMODE_NOWAIT (documented difference
    // otherwise).
    if fd.is_data_file() || matches!(fd, F::PipeR | F::PipeW) {
        pool.push(RWF_NOWAIT);
    }
    // RWF_ATOMIC on writes: the README lists files that cannot do them as a
    // known residual difference; keep it to reads (EOPNOTSUPP everywhere).
    if !is_write(op) {
        pool.push(RWF_ATOMIC);
    }
    if caps.dontcache && fd.is_data_file() {
        pool.push(RWF_DONTCACHE);
    }
    if r.chance(15) {
        // Random bits (unknown ones win: EOPNOTSUPP), but never a
        // combination that hits a documented difference.
        let mut v = r.next() as u32 & r.next() as u32;
        if v & !0x1ff == 0 {
            v |= 1 << (9 + r.below(23));
        }
        return v;
    }
    let mut v = r.pick(&pool);
    if r.chance(15) {
        v |= r.pick(&pool);
        if v & RWF_ATOMIC != 0 && is_write(op) {
            v &= !RWF_ATOMIC;
        }
    }
    v
}

fn gen_req(r: &mut Rng, caps: Caps) -> Req {
    let op = r.weighted(&[
        (20, IOCB_CMD_PREAD),
        (20, IOCB_CMD_PWRITE),
        (5, IOCB_CMD_FSYNC),
        (5, IOCB_CMD_FDSYNC),
        (12, IOCB_CMD_POLL),
        (12, IOCB_CMD_PREADV),
        (12, IOCB_CMD_PWRITEV),
        (1, IOCB_CMD_PREADX),
        (1, 9),
        (1, 100),
        (1, 0xffff),
    ]);
    let fd = gen_fd(r, op);
    let mut q = Req {
        op,
        fd,
        buf: Buf::Null,
        nbytes: 0,
        off: 0,
        reserved2: 0,
        flags: 0,
        resfd: F::ResEfd,
        reqprio: 0,
        rw_flags: 0,
        key: r.next() as u32,
        data: r.next(),
        iovs: Vec::new(),
        place: r.weighted(&[
            (95, Place::Normal),
            (2, Place::ReadOnlyPage),
            (1, Place::NullPtr),
            (1, Place::NoAccessPtr),
            (1, Place::KernelPtr),
        ]),
    };
    if r.chance(25) {
        q.key = 0;
    }
    let offs: &[(u32, i64)] = &[
        (40, 0),
        (5, 512),
        (10, 4096),
        (3, 1),
        (5, 100),
        (5, 8192),
        (4, 16384),
        (3, 20000),
        (2, 1 << 20),
        (2, -1),
        (1, -4096),
        (1, i64::MIN),
        (1, i64::MAX),
        (1, i64::MAX - 100),
        (1, 1 << 44),
        (1, i64::MAX - 0x7fff_f000),
    ];
    match op {
        IOCB_CMD_PREAD | IOCB_CMD_PWRITE => {
            q.buf = gen_addr(r, is_read(op));
            q.nbytes = gen_len(r);
            q.off = r.weighted(offs);
        }
        IOCB_CMD_PREADV | IOCB_CMD_PWRITEV => {
            let (low, edge) = (r.pick(LOW_ADDRS), r.pick(EDGE_ADDRS));
            q.buf = r.weighted(&[
                (75, Buf::Iov(0)),
                (3, Buf::Iov(8)),
                (3, Buf::Valid(0)),
                (4, Buf::Null),
                (4, Buf::Kernel),
                (4, Buf::NoAccess),
                (4, Buf::ReadOnly),
                (3, Buf::Raw(low)),
                (2, Buf::Raw(edge)),
            ]);
            q.nbytes = r.weighted(&[
                (4, 0u64),
                (20, 1),
                (15, 2),
                (10, 3),
                (8, 4),
                (6, 6),
                (2, 1024),
                (2, 1025),
                (1, 4096),
                (1, u64::MAX),
                (1, 1 << 63),
                (1, 1 << 32),
            ]);
            let n = (q.nbytes.min(MAX_GEN_IOV as u64)) as usize;
            for _ in 0..n {
                let base = if r.chance(85) { Buf::Valid(r.weighted(VALID_OFFS)) } else { gen_addr(r, is_read(op)) };
                q.iovs.push(Iov { base, len: gen_len(r) });
            }
            q.off = r.weighted(offs);
        }
        IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => {
            if r.chance(15) {
                match r.below(4) {
                    0 => q.buf = Buf::Valid(0),
                    1 => q.nbytes = r.pick(&[1, 4096]),
                    2 => q.off = r.pick(&[1, -1, 4096]),
                    _ => q.rw_flags = r.pick(&[RWF_DSYNC, RWF_HIPRI, 1 << 20]),
                }
            }
        }
        IOCB_CMD_POLL => {
            q.buf = Buf::Raw(r.weighted(&[
                (15, POLLIN),
                (15, POLLOUT),
                (10, POLLIN | POLLOUT),
                (4, POLLPRI),
                (4, POLLERR),
                (3, POLLHUP),
                (5, POLLRDNORM),
                (4, POLLWRNORM),
                (3, POLLRDHUP),
                (3, 0),
                (3, 0xffff),
                (3, 0x10000),
                (2, 1 << 32),
                (2, POLLIN | 0x10000),
            ]));
            if r.chance(10) {
                match r.below(3) {
                    0 => q.nbytes = r.pick(&[1, 4096]),
                    1 => q.off = r.pick(&[1, -1]),
                    _ => q.rw_flags = r.pick(&[RWF_NOWAIT, RWF_HIPRI, 1 << 20]),
                }
            }
        }
        _ => {
            q.buf = gen_addr(r, false);
            q.nbytes = gen_len(r);
            q.off = r.weighted(offs);
        }
    }
    if is_rw(op) {
        q.rw_flags = gen_rw_flags(r, op, fd, caps);
    }
    if r.chance(4) {
        q.reserved2 = r.pick(&[1, 1 << 40, u64::MAX]);
    }
    if r.chance(15) {
        q.flags |= IOCB_FLAG_RESFD;
        q.resfd = r.weighted(&[
            (10, F::ResEfd),
            (1, F::Rdwr),
            (1, F::PipeR),
            (1, F::Epoll),
            (1, F::Path),
            (1, F::Minus1),
            (1, F::Closed),
            (1, F::Null),
        ]);
    }
    if r.chance(12) {
        q.flags |= IOCB_FLAG_IOPRIO;
        let (lvl, hi, rnd) = (r.below(8) as u32, r.below(4) as u32, r.next() as i16);
        q.reqprio = r.weighted(&[
            (4, 0i16),
            (6, ioprio_value(IOPRIO_CLASS_BE, lvl) as i16),
            (3, ioprio_value(IOPRIO_CLASS_IDLE, lvl) as i16),
            (3, ioprio_value(IOPRIO_CLASS_RT, lvl) as i16),
            (2, ioprio_value(IOPRIO_CLASS_NONE, 1 + lvl % 7) as i16),
            (2, ((4 + hi) << IOPRIO_CLASS_SHIFT) as u16 as i16),
            (2, (((IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | (1 << 3)) as u16) as i16),
            (2, -1),
            (1, i16::MIN),
            (2, rnd),
        ]);
    } else if r.chance(5) {
        q.reqprio = r.next() as i16;
    }
    if r.chance(5) {
        q.flags |= r.pick(&[1 << 2, 1 << 3, 1 << 31, 0xffff_fffc]);
    }
    q
}

/// What a request may touch, for keeping batches order-independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Res {
    DataFile,
    PipeA,
    PipeB,
    Efd,
}

fn resource(f: F) -> Option<Res> {
    match f {
        _ if f.is_data_file() => Some(Res::DataFile),
        F::PipeR => Some(Res::PipeA),
        F::PipeW => Some(Res::PipeB),
        F::Efd => Some(Res::Efd),
        _ => None,
    }
}

/// Whether `q` may join `batch` without its result depending on the order
/// in which the requests run.
fn compatible(batch: &[Req], q: &Req) -> bool {
    let Some(res) = resource(q.fd) else { return true };
    for o in batch {
        if resource(o.fd) != Some(res) {
            continue;
        }
        if res != Res::DataFile {
            return false; // pipes and the eventfd: one request each
        }
        // The data file: reads, syncs and polls together, a write alone.
        if is_write(q.op) || is_write(o.op) || !is_known_op(q.op) || !is_known_op(o.op) {
            return false;
        }
    }
    true
}

fn is_known_op(op: u16) -> bool {
    matches!(op, 0..=3 | 5 | 7 | 8)
}

struct Iteration {
    reqs: Vec<Req>,
    file_init: usize,
    efd_init: u64,
    /// Initial content of the data file, pipe A, and each slot's region.
    file: Vec<u8>,
    pipe_a: Vec<u8>,
    regions: Vec<u8>,
}

fn gen_iteration(r: &mut Rng, caps: Caps) -> Iteration {
    let n = r.weighted(&[(45, 1usize), (25, 2), (15, 3), (15, 4)]);
    let mut reqs: Vec<Req> = Vec::new();
    while reqs.len() < n {
        let ok = |q: &Req, reqs: &[Req]| compatible(reqs, q) && !avoided(q, caps);
        let mut q = gen_req(r, caps);
        let mut tries = 0;
        while !ok(&q, &reqs) && tries < 30 {
            q = gen_req(r, caps);
            tries += 1;
        }
        if !ok(&q, &reqs) {
            break;
        }
        reqs.push(q);
    }
    let file_init = r.pick(&[0, 100, 4096, 10000, 16384, 16384, 20000]);
    let efd_init = r.pick(&[0, 1, 5, 5, 0xffff_ffff_ffff_fffe]);
    let fill = r.next();
    let mut file = vec![0u8; file_init];
    pattern(fill ^ 0xf11e, &mut file);
    let mut pipe_a = vec![0u8; PIPE_A_FILL];
    pattern(fill ^ 0x919e, &mut pipe_a);
    let mut regions = vec![0u8; REGION * reqs.len()];
    pattern(fill, &mut regions);
    Iteration { reqs, file_init, efd_init, file, pipe_a, regions }
}

// ---------------------------------------------------------------- one side

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path")
}

fn open(p: &Path, flags: i32) -> OwnedFd {
    let c = cpath(p);
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    assert!(fd >= 0, "open {}: {}", p.display(), std::io::Error::last_os_error());
    // SAFETY: freshly opened, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn map(len: usize, prot: i32) -> u64 {
    // SAFETY: anonymous private mapping; kept for the process lifetime.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED);
    p as u64
}

fn protect(addr: u64, len: usize, prot: i32) {
    // SAFETY: changes the protection of pages of our own mappings.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    assert_eq!(r, 0);
}

/// A checksum of `bytes` (with their length).
fn sum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Bytes of the fill pattern: each in 0x40..=0x7f, so any 8 of them read as
/// an address lie far outside user space and as a length are positive.
fn pattern(seed: u64, out: &mut [u8]) {
    let mut x = seed | 1;
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&((x & 0x3f3f_3f3f_3f3f_3f3f) | 0x4040_4040_4040_4040).to_ne_bytes());
    }
    for b in chunks.into_remainder() {
        *b = 0x40 | (x as u8 & 0x3f);
    }
}

fn nread(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD into an int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(r, 0);
    n as usize
}

/// Reads exactly what a pipe holds (never blocks); returns it.
fn drain_pipe(fd: i32) -> Vec<u8> {
    let n = nread(fd);
    let mut v = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: read into the unfilled part of v.
        let r = unsafe { libc::read(fd, v[got..].as_mut_ptr().cast(), n - got) };
        assert!(r > 0);
        got += r as usize;
    }
    v
}

fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: write from a live slice.
        let r = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        assert!(r > 0, "write: {}", std::io::Error::last_os_error());
        b = &b[r as usize..];
    }
}

/// Non-blocking read of an eventfd's counter (0 when it is 0).
fn efd_take(fd: i32) -> u64 {
    let mut v = 0u64;
    // SAFETY: 8-byte read into v; the eventfd is non-blocking.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if r == 8 {
        v
    } else {
        0
    }
}

/// One implementation with its own copies of every resource.
struct Side {
    aio: &'static dyn Aio,
    dir: PathBuf,
    _owned: Vec<OwnedFd>,
    fds: [i32; 15],
    pipe_a_w: i32,
    pipe_b_r: i32,
    regions: u64,
    iov_area: u64,
    iocb_area: u64,
    ro_iocb_pages: u64,
    noacc: u64,
    ro: u64,
    /// The context, kept across iterations while nothing stays pending
    /// (the kernel's io_destroy waits for an RCU grace period).
    ctx: std::sync::atomic::AtomicU64,
    /// A fresh context every iteration (`UAIO_DIFF_FRESH`).
    fresh: bool,
}

impl Side {
    fn new(aio: &'static dyn Aio) -> Side {
        let dir = std::env::temp_dir().join(format!("uaio-diff-{}-{}", std::process::id(), aio.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).expect("temp dir");
        let data = dir.join("data");
        std::fs::write(&data, b"").expect("data file");
        let mut owned = Vec::new();
        let mut fds = [-1i32; 15];
        let mut keep = |f: F, fd: OwnedFd, owned: &mut Vec<OwnedFd>| {
            fds[f as usize] = fd.as_raw_fd();
            owned.push(fd);
        };
        keep(F::Rdwr, open(&data, libc::O_RDWR), &mut owned);
        keep(F::Rdonly, open(&data, libc::O_RDONLY), &mut owned);
        keep(F::Wronly, open(&data, libc::O_WRONLY), &mut owned);
        keep(F::Append, open(&data, libc::O_RDWR | libc::O_APPEND), &mut owned);
        keep(F::Direct, open(&data, libc::O_RDWR | libc::O_DIRECT), &mut owned);
        keep(F::Dir, open(&dir.join("d"), libc::O_RDONLY | libc::O_DIRECTORY), &mut owned);
        keep(F::Path, open(&data, libc::O_PATH), &mut owned);
        let (ar, aw) = pipe();
        let (br, bw) = pipe();
        // SAFETY: fcntl on our pipe.
        let sz = unsafe { libc::fcntl(bw.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_B_SIZE) };
        assert!(sz >= PIPE_B_SIZE, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
        let (pipe_a_w, pipe_b_r) = (aw.as_raw_fd(), br.as_raw_fd());
        keep(F::PipeR, ar, &mut owned);
        keep(F::PipeW, bw, &mut owned);
        owned.push(aw);
        owned.push(br);
        // SAFETY: eventfd(2).
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(efd >= 0);
        // SAFETY: freshly created.
        keep(F::Efd, unsafe { OwnedFd::from_raw_fd(efd) }, &mut owned);
        // SAFETY: eventfd(2).
        let refd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(refd >= 0);
        // SAFETY: freshly created.
        keep(F::ResEfd, unsafe { OwnedFd::from_raw_fd(refd) }, &mut owned);
        // SAFETY: epoll_create1(2).
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        // SAFETY: freshly created.
        keep(F::Epoll, unsafe { OwnedFd::from_raw_fd(ep) }, &mut owned);
        keep(F::Null, open(Path::new("/dev/null"), libc::O_RDWR), &mut owned);
        fds[F::Minus1 as usize] = -1;
        fds[F::Closed as usize] = CLOSED_FD;

        let regions = map(NSLOT * SLOT, libc::PROT_READ | libc::PROT_WRITE);
        for s in 0..NSLOT {
            protect(regions + (s * SLOT + REGION) as u64, 4096, libc::PROT_NONE);
        }
        let iov_len = (NSLOT * NIOV * 16).div_ceil(4096) * 4096;
        let iov_area = map(iov_len, libc::PROT_READ | libc::PROT_WRITE);
        let iocb_area = map(4096, libc::PROT_READ | libc::PROT_WRITE);
        let ro_iocb_pages = map(NSLOT * 4096, libc::PROT_READ);
        // The read-only page, followed by a guard page: whatever the kernel
        // reads past its end must fault the same way on both sides.
        let ro = map(2 * 4096, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the first page of the mapping just created, read-write.
        pattern(0x0123_4567, unsafe { std::slice::from_raw_parts_mut(ro as *mut u8, 4096) });
        protect(ro, 4096, libc::PROT_READ);
        protect(ro + 4096, 4096, libc::PROT_NONE);
        // The same for the no-access page.
        let noacc = map(2 * 4096, libc::PROT_NONE);
        Side {
            aio,
            dir,
            _owned: owned,
            fds,
            pipe_a_w,
            pipe_b_r,
            regions,
            iov_area,
            iocb_area,
            ro_iocb_pages,
            noacc,
            ro,
            ctx: std::sync::atomic::AtomicU64::new(0),
            fresh: std::env::var_os("UAIO_DIFF_FRESH").is_some(),
        }
    }

    /// Slot `s`'s region (no request may be in flight).
    fn region_bytes(&self, s: usize) -> &[u8] {
        // SAFETY: the region is ours, mapped, REGION bytes; nothing writes
        // it while no request is in flight.
        unsafe { std::slice::from_raw_parts(self.region(s) as *const u8, REGION) }
    }

    fn fd(&self, f: F) -> i32 {
        self.fds[f as usize]
    }

    fn region(&self, slot: usize) -> u64 {
        self.regions + (slot * SLOT) as u64
    }

    fn iov_array(&self, slot: usize) -> u64 {
        self.iov_area + (slot * NIOV * 16) as u64
    }

    fn addr(&self, slot: usize, b: Buf) -> u64 {
        match b {
            Buf::Valid(o) => self.region(slot) + o,
            Buf::Null => 0,
            Buf::Kernel => KADDR,
            Buf::NoAccess => self.noacc,
            Buf::ReadOnly => self.ro,
            Buf::Raw(v) => v,
            Buf::Iov(o) => self.iov_array(slot) + o,
        }
    }

    /// Puts every resource in the iteration's initial state.
    fn reset(&self, it: &Iteration) {
        let content = &it.file;
        let fd = self.fd(F::Rdwr);
        // SAFETY: ftruncate and pwrite on our data file, from a live buffer.
        unsafe {
            assert_eq!(libc::ftruncate(fd, 0), 0);
            assert_eq!(libc::pwrite(fd, content.as_ptr().cast(), content.len(), 0), content.len() as isize);
        }
        drain_pipe(self.fd(F::PipeR));
        write_all(self.pipe_a_w, &it.pipe_a);
        drain_pipe(self.pipe_b_r);
        efd_take(self.fd(F::Efd));
        if it.efd_init != 0 {
            write_all(self.fd(F::Efd), &it.efd_init.to_ne_bytes());
        }
        efd_take(self.fd(F::ResEfd));
        for s in 0..it.reqs.len() {
            // SAFETY: the region is ours, mapped read-write, REGION bytes.
            let reg = unsafe { std::slice::from_raw_parts_mut(self.region(s) as *mut u8, REGION) };
            reg.copy_from_slice(&it.regions[s * REGION..(s + 1) * REGION]);
        }
    }

    /// Lays out the batch's iocbs and iovec arrays; returns the iocb
    /// pointers to submit and the address of each slot's iocb.
    fn build(&self, reqs: &[Req]) -> (Vec<u64>, Vec<u64>) {
        let mut ptrs = Vec::new();
        let mut addrs = Vec::new();
        for (s, q) in reqs.iter().enumerate() {
            let cb = iocb {
                aio_data: q.data,
                aio_key: q.key,
                aio_rw_flags: q.rw_flags,
                aio_lio_opcode: q.op,
                aio_reqprio: q.reqprio,
                aio_fildes: self.fd(q.fd) as u32,
                aio_buf: self.addr(s, q.buf),
                aio_nbytes: q.nbytes,
                aio_offset: q.off,
                aio_reserved2: q.reserved2,
                aio_flags: q.flags,
                aio_resfd: self.fd(q.resfd) as u32,
            };
            // iovec array: generated entries, then zero-length ones.
            let arr = self.iov_array(s) as *mut iovec;
            for i in 0..NIOV {
                let e = match q.iovs.get(i) {
                    Some(v) => iovec { iov_base: self.addr(s, v.base), iov_len: v.len },
                    None => iovec { iov_base: self.region(s), iov_len: 0 },
                };
                // SAFETY: i < NIOV entries of this slot's array, mapped read-write.
                unsafe { arr.add(i).write(e) };
            }
            let normal = self.iocb_area + 64 * s as u64;
            // SAFETY: 64-byte slot s of our iocb page, mapped read-write.
            unsafe { (normal as *mut iocb).write(cb) };
            let ro = self.ro_iocb_pages + 4096 * s as u64;
            protect(ro, 4096, libc::PROT_READ | libc::PROT_WRITE);
            // SAFETY: the page was just made writable; it is ours.
            unsafe { (ro as *mut iocb).write(cb) };
            protect(ro, 4096, libc::PROT_READ);
            let (p, a) = match q.place {
                Place::Normal => (normal, normal),
                Place::ReadOnlyPage => (ro, ro),
                Place::NullPtr => (0, 0),
                Place::NoAccessPtr => (self.noacc, 0),
                Place::KernelPtr => (KADDR, 0),
            };
            ptrs.push(p);
            addrs.push(a);
        }
        (ptrs, addrs)
    }

    /// Runs one iteration; returns the trace and the number of POLL events
    /// reaped.
    fn run(&self, it: &Iteration, kernel_polls: Option<usize>) -> (Vec<String>, usize) {
        let mut t = Vec::new();
        self.reset(it);
        let mut ctx = self.ctx.load(std::sync::atomic::Ordering::Relaxed);
        if ctx == 0 {
            // SAFETY: valid pointer to a zeroed handle.
            let r = unsafe { self.aio.setup(64, &mut ctx) };
            assert_eq!(r, 0, "{} io_setup", self.aio.name());
            self.ctx.store(ctx, std::sync::atomic::Ordering::Relaxed);
        }
        let (mut ptrs, addrs) = self.build(&it.reqs);
        // SAFETY: every pointer is either one of our mapped iocbs, or a
        // deliberately bad pointer (null, no-access page, kernel address)
        // which both implementations must reject with EFAULT; the iocbs,
        // their buffers and iovec arrays stay alive until the context is
        // destroyed below.
        let n = unsafe { self.aio.submit(ctx, ptrs.len() as i64, ptrs.as_mut_ptr().cast()) };
        t.push(format!("submit(n={}) = {}", ptrs.len(), ret(n)));
        for (s, &a) in addrs.iter().enumerate() {
            if a != 0 {
                // SAFETY: reading back our own iocb.
                let key = unsafe { (a as *const iocb).read().aio_key };
                t.push(format!("key[{s}] = {key:#x}"));
            }
        }
        let submitted = n.max(0) as usize;
        let sub = &it.reqs[..submitted];
        let nonpoll = sub.iter().filter(|q| q.op != IOCB_CMD_POLL).count();
        let mut evs: Vec<io_event> = Vec::new();
        let idx = |e: &io_event| addrs.iter().position(|&a| a != 0 && a == e.obj);
        let count_nonpoll =
            |evs: &[io_event]| evs.iter().filter(|e| idx(e).is_none_or(|i| it.reqs[i].op != IOCB_CMD_POLL)).count();
        let count_poll = |evs: &[io_event]| evs.len() - count_nonpoll(evs);
        // Phase 1: every non-POLL request completes (nothing here blocks).
        let deadline = Instant::now() + Duration::from_secs(1);
        while count_nonpoll(&evs) < nonpoll && Instant::now() < deadline {
            self.get(ctx, 1, Duration::from_millis(100), &mut evs);
        }
        // Phase 2: POLLs get a short while (some are never ready).
        if evs.len() < submitted {
            self.get(ctx, (submitted - evs.len()) as i64, Duration::from_millis(30), &mut evs);
        }
        // Phase 3 (uaio): as many POLL completions as the kernel had.
        if let Some(k) = kernel_polls {
            let deadline = Instant::now() + Duration::from_secs(2);
            while count_poll(&evs) < k && evs.len() < submitted && Instant::now() < deadline {
                self.get(ctx, 1, Duration::from_millis(100), &mut evs);
            }
        }
        // A last look for anything extra (a request completing twice).
        self.get(ctx, 0, Duration::ZERO, &mut evs);
        let polls = count_poll(&evs);
        let mut lines: Vec<(Option<usize>, String)> = evs
            .iter()
            .map(|e| {
                let i = idx(e);
                let obj = i.map_or(format!("obj={:#x}", e.obj), |i| format!("iocb#{i}"));
                let res = if e.res < 0 { errno_name(e.res) } else { e.res.to_string() };
                (i, format!("event {obj} data={:#x} res={res} res2={}", e.data, e.res2))
            })
            .collect();
        lines.sort();
        t.extend(lines.into_iter().map(|l| l.1));
        let pending = submitted as i64 - evs.len() as i64;
        t.push(format!("pending = {pending}"));
        if pending != 0 || self.fresh {
            // SAFETY: destroying our context; it waits for (or cancels)
            // whatever is still in flight, so the buffers are free again.
            let d = unsafe { self.aio.destroy(ctx) };
            t.push(format!("destroy = {}", ret(d)));
            self.ctx.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        t.push(format!("resfd count = {}", efd_take(self.fd(F::ResEfd))));
        t.push(format!("eventfd count = {}", efd_take(self.fd(F::Efd))));
        let a = drain_pipe(self.fd(F::PipeR));
        t.push(format!("pipe A left len={} sum={:#x}", a.len(), sum(&a)));
        let b = drain_pipe(self.pipe_b_r);
        t.push(format!("pipe B got len={} sum={:#x}", b.len(), sum(&b)));
        let f = std::fs::read(self.dir.join("data")).expect("read data file");
        t.push(format!("file len={} sum={:#x}", f.len(), sum(&f)));
        (t, polls)
    }

    /// `io_getevents(min, 64 - have, timeout)`, appending the events.
    fn get(&self, ctx: u64, min: i64, timeout: Duration, evs: &mut Vec<io_event>) {
        let mut buf = [io_event::default(); 64];
        let nr = 64 - evs.len() as i64;
        let mut ts = libc::timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
        let min = min.min(nr);
        // SAFETY: buf has room for nr <= 64 events.
        let r = unsafe { self.aio.getevents(ctx, min, nr, buf.as_mut_ptr(), &mut ts) };
        if r > 0 {
            evs.extend_from_slice(&buf[..r as usize]);
        } else if r < 0 && r != -(libc::EINTR as i64) {
            panic!("{} io_getevents = {}", self.aio.name(), ret(r));
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn describe(reqs: &[Req], k: &Side) -> String {
    let mut s = String::new();
    for (i, q) in reqs.iter().enumerate() {
        s += &format!(
            "  iocb#{i}: op={} fd={:?} buf={:?} nbytes={:#x} off={} reserved2={:#x} flags={:#x} resfd={:?} reqprio={:#x} \
             rw_flags={:#x} key={:#x} data={:#x} place={:?}\n",
            q.op,
            q.fd,
            q.buf,
            q.nbytes,
            q.off,
            q.reserved2,
            q.flags,
            q.resfd,
            q.reqprio as u16,
            q.rw_flags,
            q.key,
            q.data,
            q.place
        );
        for (j, v) in q.iovs.iter().enumerate() {
            s += &format!(
                "      iov[{j}] base={:?} ({:#x} on kernel side) len={:#x}\n",
                v.base,
                k.addr(i, v.base),
                v.len
            );
        }
        if is_vec(q.op) && q.nbytes > q.iovs.len() as u64 {
            s += "      (remaining iovecs: valid base, len 0)\n";
        }
    }
    s
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn detect_caps(k: &Side) -> Caps {
    let b = [0u8; 16];
    let v = libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() };
    // SAFETY: pwritev2 of a live 16-byte buffer to our data file.
    let r = unsafe { libc::pwritev2(k.fd(F::Rdwr), &v, 1, 0, RWF_DONTCACHE as i32) };
    let mut caps = Caps {
        dontcache: r >= 0,
        avoid_efd_read: false,
        avoid_iov1_cap: false,
        avoid_poll_nopoll: false,
        avoid_nseg_trunc: false,
        avoid_nowait_write: false,
        avoid_dir_read: false,
    };
    caps.avoid(&std::env::var("UAIO_DIFF_AVOID").unwrap_or_default());
    caps
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, vec![Trial::test("differential", run)]).exit();
}

/// Runs the iterations; fails on the first ten mismatches at most, each
/// printed with how to reproduce it.
fn run() -> Result<(), Failed> {
    let seed = env_u64("UAIO_DIFF_SEED").unwrap_or(1);
    let iters = env_u64("UAIO_DIFF_ITERS").unwrap_or(1200);
    let only = env_u64("UAIO_DIFF_ITER");
    let verbose = std::env::var_os("UAIO_DIFF_VERBOSE").is_some();
    let timing = std::env::var_os("UAIO_DIFF_TIMING").is_some();
    // SAFETY: fcntl on a number we require to be unused.
    assert!(unsafe { libc::fcntl(CLOSED_FD, libc::F_GETFD) } < 0, "fd {CLOSED_FD} must not be open");
    // SAFETY: ignoring SIGPIPE (writes to pipes with no reader report EPIPE).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let k = Side::new(&Kernel);
    let u = Side::new(&Uaio);
    let caps = detect_caps(&k);
    println!(
        "differential: seed={seed} iterations={} backend={} caps={caps:?}",
        if only.is_some() { 1 } else { iters },
        std::env::var("UAIO_BACKEND").unwrap_or_else(|_| "default".into()),
    );
    let start = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let range = match only {
        Some(i) => i..i + 1,
        None => 0..iters,
    };
    for i in range {
        let mut rng = Rng::new(seed, i);
        let it = gen_iteration(&mut rng, caps);
        // Each side on a thread of its own: io_uring's task work must not
        // interrupt the kernel side's waits (see uaio_conform::trace_of).
        let t0 = Instant::now();
        let (mut kt, kpolls) = std::thread::scope(|s| s.spawn(|| k.run(&it, None)).join().expect("kernel side"));
        let t1 = Instant::now();
        let (mut ut, _) = std::thread::scope(|s| s.spawn(|| u.run(&it, Some(kpolls))).join().expect("uaio side"));
        // Each request's buffer, compared directly.
        for s in 0..it.reqs.len() {
            let (a, b) = (k.region_bytes(s), u.region_bytes(s));
            let changed = a != &it.regions[s * REGION..(s + 1) * REGION];
            kt.push(format!("buf[{s}] changed={changed}"));
            match a.iter().zip(b).position(|(x, y)| x != y) {
                None => ut.push(format!("buf[{s}] changed={changed}")),
                Some(o) => ut.push(format!("buf[{s}] differs from the kernel's from offset {o}")),
            }
        }
        if timing {
            println!(
                "iteration {i}: kernel {:?} uaio {:?} ops {:?}",
                t1 - t0,
                t1.elapsed(),
                it.reqs.iter().map(|q| (q.op, q.fd)).collect::<Vec<_>>()
            );
        }
        if verbose {
            println!("iteration {i}:\n{}{}", describe(&it.reqs, &k), side_by_side(&kt, &ut));
        }
        if kt == ut {
            passed += 1;
        } else {
            failed += 1;
            println!(
                "MISMATCH seed={seed} iteration={i} (reproduce: UAIO_DIFF_SEED={seed} UAIO_DIFF_ITER={i})\n\
                 file_init={} eventfd_init={:#x}\n{}{}",
                it.file_init,
                it.efd_init,
                describe(&it.reqs, &k),
                side_by_side(&kt, &ut)
            );
            if failed >= 10 {
                println!("stopping after 10 mismatches");
                break;
            }
        }
    }
    println!("differential: {:.1} s", start.elapsed().as_secs_f64());
    println!("differential: {passed} iterations agree, {failed} disagree");
    if failed > 0 {
        return Err(Failed::from(format!("{failed} iterations disagree (printed above)")));
    }
    Ok(())
}
