//! Conformance harness: each case is written once and run against the
//! kernel's AIO (raw system calls) and against uaio; the two traces of
//! return values, errno, events and file contents must agree. uaio's
//! deliberate extensions are cases whose traces must differ exactly as
//! documented.
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub use uaio_abi::*;

mod cases;
pub mod kernel;

/// The six AIO calls, in the raw convention (result or `-errno`).
pub trait Aio: Sync {
    /// "kernel" or "uaio".
    fn name(&self) -> &'static str;
    /// `io_setup`.
    ///
    /// # Safety
    /// Raw pointers as the system call takes them.
    unsafe fn setup(&self, nr: u32, ctxp: *mut u64) -> i64;
    /// `io_destroy`.
    ///
    /// # Safety
    /// As the system call.
    unsafe fn destroy(&self, ctx: u64) -> i64;
    /// `io_submit`.
    ///
    /// # Safety
    /// As the system call.
    unsafe fn submit(&self, ctx: u64, nr: i64, iocbpp: *mut *mut iocb) -> i64;
    /// `io_cancel`.
    ///
    /// # Safety
    /// As the system call.
    unsafe fn cancel(&self, ctx: u64, cb: *mut iocb, res: *mut io_event) -> i64;
    /// `io_getevents`.
    ///
    /// # Safety
    /// As the system call.
    unsafe fn getevents(&self, ctx: u64, min_nr: i64, nr: i64, ev: *mut io_event, ts: *mut libc::timespec) -> i64;
    /// `io_pgetevents`.
    ///
    /// # Safety
    /// As the system call.
    unsafe fn pgetevents(
        &self,
        ctx: u64,
        min_nr: i64,
        nr: i64,
        ev: *mut io_event,
        ts: *mut libc::timespec,
        sig: *const aio_sigset,
    ) -> i64;
}

/// Kernel AIO through `syscall(2)`.
#[derive(Debug, Clone, Copy)]
pub struct Kernel;

/// uaio's raw entry points.
#[derive(Debug, Clone, Copy)]
pub struct Uaio;

/// Implements [`Aio`] for `$ty` by the six functions of module `$calls`,
/// which take the system calls' arguments and return the result or `-errno`
/// ([`kernel`] and `uaio::raw` alike).
macro_rules! aio_by {
    ($ty:ty, $name:literal, $calls:path) => {
        impl Aio for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            unsafe fn setup(&self, nr: u32, ctxp: *mut u64) -> i64 {
                use $calls as calls;
                // SAFETY: the caller upholds the system call's contract (see
                // the trait's # Safety), which is this function's too.
                unsafe { calls::io_setup(nr, ctxp) }
            }
            unsafe fn destroy(&self, ctx: u64) -> i64 {
                use $calls as calls;
                // SAFETY: as above.
                unsafe { calls::io_destroy(ctx) }
            }
            unsafe fn submit(&self, ctx: u64, nr: i64, iocbpp: *mut *mut iocb) -> i64 {
                use $calls as calls;
                // SAFETY: as above.
                unsafe { calls::io_submit(ctx, nr, iocbpp) }
            }
            unsafe fn cancel(&self, ctx: u64, cb: *mut iocb, res: *mut io_event) -> i64 {
                use $calls as calls;
                // SAFETY: as above.
                unsafe { calls::io_cancel(ctx, cb, res) }
            }
            unsafe fn getevents(
                &self,
                ctx: u64,
                min_nr: i64,
                nr: i64,
                ev: *mut io_event,
                ts: *mut libc::timespec,
            ) -> i64 {
                use $calls as calls;
                // SAFETY: as above.
                unsafe { calls::io_getevents(ctx, min_nr, nr, ev, ts) }
            }
            unsafe fn pgetevents(
                &self,
                ctx: u64,
                min_nr: i64,
                nr: i64,
                ev: *mut io_event,
                ts: *mut libc::timespec,
                sig: *const aio_sigset,
            ) -> i64 {
                use $calls as calls;
                // SAFETY: as above.
                unsafe { calls::io_pgetevents(ctx, min_nr, nr, ev, ts, sig) }
            }
        }
    };
}

aio_by!(Kernel, "kernel", kernel);
aio_by!(Uaio, "uaio", uaio::raw);

/// How the two traces of a case must relate.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Identical traces.
    Same,
    /// A documented extension: the kernel's trace and uaio's must each
    /// contain the given line.
    Differs {
        /// Why they differ (the README's wording).
        why: &'static str,
        /// A line the kernel's trace contains.
        kernel: &'static str,
        /// A line uaio's trace contains.
        uaio: &'static str,
    },
}

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Unique name, `area/what`.
    pub name: &'static str,
    /// How the traces relate.
    pub expect: Expect,
    /// Runs the case against one implementation.
    pub run: fn(&mut Env),
}

/// Every case.
pub fn all_cases() -> Vec<Case> {
    cases::all()
}

/// Result of comparing one case.
#[derive(Debug)]
pub struct Outcome {
    /// The case.
    pub name: &'static str,
    /// `None` when the traces relate as expected, else an explanation.
    pub failure: Option<String>,
    /// Whether the case is a documented extension.
    pub extension: bool,
    /// Why the case could not run on this machine, when it could not (a
    /// side's trace has a line `skipped: <why>`; the case then checks
    /// nothing beyond that both sides said so).
    pub skipped: Option<String>,
}

/// Runs one case on both sides and compares.
pub fn run_case(c: &Case) -> Outcome {
    let k = trace_of(c, &Kernel);
    let u = trace_of(c, &Uaio);
    if std::env::var_os("UAIO_CONFORM_TRACE").is_some() {
        eprintln!("-- {} (kernel | uaio)\n{}", c.name, side_by_side(&k, &u));
    }
    let failure = match c.expect {
        Expect::Same => (k != u).then(|| side_by_side(&k, &u)),
        Expect::Differs { kernel, uaio, .. } => {
            let kk = k.iter().any(|l| l == kernel);
            let uu = u.iter().any(|l| l == uaio);
            (!kk || !uu).then(|| {
                format!(
                    "expected kernel line {kernel:?} ({kk}) and uaio line {uaio:?} ({uu})\n{}",
                    side_by_side(&k, &u)
                )
            })
        }
    };
    let skipped = k.iter().chain(&u).find_map(|l| l.strip_prefix("skipped: ")).map(str::to_string);
    Outcome { name: c.name, failure, extension: matches!(c.expect, Expect::Differs { .. }), skipped }
}

/// Runs the case on a thread of its own: io_uring queues task work on the
/// thread that submitted, which would otherwise interrupt the kernel side's
/// next `io_getevents` with a spurious `EINTR`.
fn trace_of(c: &Case, aio: &'static dyn Aio) -> Vec<String> {
    let run = c.run;
    std::thread::spawn(move || {
        let mut env = Env::new(aio);
        run(&mut env);
        env.finish();
        env.trace
    })
    .join()
    .unwrap_or_else(|_| vec!["case panicked".to_string()])
}

/// Two traces side by side, one line each, the lines that differ marked
/// `!!`.
pub fn side_by_side(k: &[String], u: &[String]) -> String {
    let mut s = String::new();
    let n = k.len().max(u.len());
    for i in 0..n {
        let a = k.get(i).map(String::as_str).unwrap_or("<none>");
        let b = u.get(i).map(String::as_str).unwrap_or("<none>");
        let mark = if a == b { "  " } else { "!!" };
        let _ = writeln!(s, "{mark} kernel: {a:<50} | uaio: {b}");
    }
    s
}

/// The symbolic name of an errno value (`libc::EINVAL` -> `"EINVAL"`), for
/// the errors the AIO calls and their events report; `None` for others.
pub fn errno_symbol(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EINVAL => "EINVAL",
        libc::EFAULT => "EFAULT",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::EPERM => "EPERM",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EINTR => "EINTR",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::EISDIR => "EISDIR",
        libc::ESPIPE => "ESPIPE",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOMEM => "ENOMEM",
        libc::EIO => "EIO",
        libc::ENOSPC => "ENOSPC",
        _ => return None,
    })
}

/// Name of a negative errno value, for readable traces: `EINVAL`, or `-N`
/// for one [`errno_symbol`] does not name.
pub fn errno_name(e: i64) -> String {
    match errno_symbol(-e as i32) {
        Some(n) => n.to_string(),
        None => format!("-{}", -e),
    }
}

/// Formats a call result: a count, or an errno name.
pub fn ret(r: i64) -> String {
    if r < 0 {
        errno_name(r)
    } else {
        r.to_string()
    }
}

/// The environment a case runs in: one implementation, and the trace.
pub struct Env<'a> {
    /// The implementation under test.
    pub aio: &'a dyn Aio,
    /// Observations, compared between the two runs.
    pub trace: Vec<String>,
    ctxs: Vec<u64>,
    iocbs: Vec<u64>,
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("aio", &self.aio.name()).field("trace", &self.trace).finish()
    }
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl<'a> Env<'a> {
    fn new(aio: &'a dyn Aio) -> Env<'a> {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("uaio-conform-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Env { aio, trace: Vec::new(), ctxs: Vec::new(), iocbs: Vec::new(), dir }
    }

    fn finish(&mut self) {
        for c in std::mem::take(&mut self.ctxs) {
            // SAFETY: destroying a context this case created (or already destroyed: EINVAL).
            unsafe { self.aio.destroy(c) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// True when running against the kernel.
    pub fn is_kernel(&self) -> bool {
        self.aio.name() == "kernel"
    }

    /// Adds a line to the trace.
    pub fn rec(&mut self, line: impl Into<String>) {
        self.trace.push(line.into());
    }

    /// Adds lines to the trace (those a forked child reported, say).
    pub fn rec_all(&mut self, lines: impl IntoIterator<Item = String>) {
        self.trace.extend(lines);
    }

    /// `io_setup(nr)`, recorded; returns the handle (0 on failure). The
    /// context is destroyed when the case ends.
    pub fn setup(&mut self, nr: u32) -> u64 {
        let mut ctx = 0u64;
        // SAFETY: valid pointer to a zeroed handle.
        let r = unsafe { self.aio.setup(nr, &mut ctx) };
        self.rec(format!("setup({nr}) = {}", ret(r)));
        if r == 0 {
            self.ctxs.push(ctx);
        }
        ctx
    }

    /// Remembers an iocb's address so events name it by index.
    pub fn name_iocb(&mut self, cb: *const iocb) -> usize {
        self.iocbs.push(cb as u64);
        self.iocbs.len() - 1
    }

    /// `io_submit` of the given iocbs (each named), recorded.
    pub fn submit(&mut self, ctx: u64, cbs: &mut [&mut iocb]) -> i64 {
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| &mut **c as *mut iocb).collect();
        for p in &ptrs {
            if !self.iocbs.contains(&(*p as u64)) {
                self.iocbs.push(*p as u64);
            }
        }
        // SAFETY: the iocbs are alive for the duration of the case (the
        // caller keeps them until their events are reaped or the context is
        // destroyed).
        let r = unsafe { self.aio.submit(ctx, ptrs.len() as i64, ptrs.as_mut_ptr()) };
        self.rec(format!("submit(n={}) = {}", ptrs.len(), ret(r)));
        r
    }

    /// Describes an event, naming the iocb by index.
    pub fn ev(&self, e: &io_event) -> String {
        let obj = match self.iocbs.iter().position(|&a| a == e.obj) {
            Some(i) => format!("iocb#{i}"),
            None => format!("obj={:#x}", e.obj),
        };
        let res = if e.res < 0 { errno_name(e.res) } else { e.res.to_string() };
        format!("event data={} {obj} res={res} res2={}", e.data, e.res2)
    }

    /// `io_getevents(min, nr, timeout)`, recorded with the events sorted by
    /// `data` (completion order is not part of the contract).
    pub fn getevents(&mut self, ctx: u64, min: i64, nr: i64, timeout: Option<Duration>) -> Vec<io_event> {
        let mut evs = vec![io_event::default(); nr.max(0) as usize];
        let mut ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ });
        let tsp = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut _);
        // SAFETY: evs has room for nr events.
        let r = unsafe { self.aio.getevents(ctx, min, nr, evs.as_mut_ptr(), tsp) };
        self.rec(format!("getevents(min={min},nr={nr}) = {}", ret(r)));
        evs.truncate(r.max(0) as usize);
        evs.sort_by_key(|e| (e.data, e.res));
        for e in &evs {
            let l = self.ev(e);
            self.rec(l);
        }
        evs
    }

    /// Reaps exactly `n` events (waiting up to 10 s), recorded.
    pub fn reap(&mut self, ctx: u64, n: i64) -> Vec<io_event> {
        self.getevents(ctx, n, n, Some(Duration::from_secs(10)))
    }

    /// A new file in the case's directory holding `content`, opened with `flags`.
    pub fn file(&mut self, content: &[u8], flags: i32) -> OwnedFd {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.dir.join(format!("f{n}"));
        std::fs::write(&p, content).expect("write temp file");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: open(2) with a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open temp file");
        // SAFETY: fd was just opened and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// The case's scratch directory, opened `O_RDONLY | O_DIRECTORY`.
    pub fn dir_fd(&self) -> OwnedFd {
        let c = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: open(2) with a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: freshly opened.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Whole content of a file, recorded as length and checksum.
    pub fn record_file(&mut self, fd: &OwnedFd) {
        // SAFETY: libc::stat is plain integer fields, for which all-zero bytes
        // are a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on an open descriptor into a valid struct.
        unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
        let mut buf = vec![0u8; st.st_size as usize];
        // SAFETY: pread into a buffer of the file's size.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        buf.truncate(n.max(0) as usize);
        let sum = buf.iter().fold(0u64, |h, &b| h.wrapping_mul(1_099_511_628_211).wrapping_add(b as u64));
        self.rec(format!("file len={} sum={sum:#x}", buf.len()));
    }
}

/// An iocb for `op` on `fd`, with `aio_data = data`.
pub fn cb(op: u16, fd: i32, buf: u64, nbytes: u64, off: i64, data: u64) -> iocb {
    iocb {
        aio_data: data,
        aio_lio_opcode: op,
        aio_fildes: fd as u32,
        aio_buf: buf,
        aio_nbytes: nbytes,
        aio_offset: off,
        ..iocb::default()
    }
}

/// A pipe, as (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a valid array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: freshly created descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A connected pair of TCP sockets on the loopback interface.
pub fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let a = std::net::TcpStream::connect(l.local_addr().expect("address")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    (a.into(), b.into())
}

/// An eventfd.
pub fn eventfd() -> OwnedFd {
    // SAFETY: eventfd(2).
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: freshly created.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Reads an eventfd's counter without blocking (0 when not signalled).
pub fn eventfd_count(fd: &OwnedFd) -> u64 {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
        return 0;
    }
    let mut v = 0u64;
    // SAFETY: 8-byte read into v.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    v
}

/// `pages` fresh anonymous read-write pages, leaked for the process lifetime.
pub fn anon_pages(pages: usize) -> *mut u8 {
    // SAFETY: a new private anonymous mapping that nothing else refers to.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096 * pages,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// An anonymous mapping with no access rights (any touch faults).
pub fn no_access_page() -> u64 {
    let p = anon_pages(1);
    // SAFETY: taking all rights from a page this function just mapped.
    unsafe { libc::mprotect(p.cast(), 4096, libc::PROT_NONE) };
    p as u64
}

/// A read-only page holding `bytes` at its start.
pub fn read_only_page(bytes: &[u8]) -> u64 {
    let p = anon_pages(1);
    // SAFETY: filling then write-protecting a page this function just mapped.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len().min(4096));
        libc::mprotect(p.cast(), 4096, libc::PROT_READ);
    }
    p as u64
}

/// Runs `f` in a forked child and returns the lines it printed to the pipe
/// (one per line), so cases that need a separate process (fork rules,
/// dropped capabilities) still produce a comparable trace.
pub fn in_child(f: impl FnOnce(&mut Vec<String>)) -> Vec<String> {
    let (r, w) = pipe();
    // SAFETY: fork(2); the child only runs `f`, writes, and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(r);
        let mut lines = Vec::new();
        f(&mut lines);
        let s = lines.join("\n");
        // SAFETY: writing to our pipe end, then leaving without unwinding.
        unsafe {
            libc::write(w.as_raw_fd(), s.as_ptr().cast(), s.len());
            libc::_exit(0);
        }
    }
    drop(w);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: read into a local buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut lines: Vec<String> = String::from_utf8_lossy(&out).lines().map(str::to_string).collect();
    lines.push(format!("child exit={}", if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 }));
    lines
}
