//! Resources (issue 7): a million requests, thousands of setup/destroy
//! cycles and a cancel storm leave descriptors, threads, mappings and RSS
//! where they started; an idle context costs no CPU; low `RLIMIT_MEMLOCK`
//! and `RLIMIT_NOFILE` give the kernel's answers (or the thread pool) and
//! never make the application's own calls fail.
//!
//! The counts are process-wide, so the tests take one lock. Each first runs
//! its workload once on a small scale, so that what exists by design is
//! there before the baseline is taken:
//! - the progress thread (`uaio-progress`) and its eventfd, for the life of
//!   the process once the first context was made;
//! - the thread pool's wake-up eventfd (the pool is never freed);
//! - the C library's cached thread stacks and malloc arenas.
//!
//! Threads that come and go (pool workers and the poller, which leave once
//! the last thread-pool context is gone; io_uring's `iou-wrk` workers, which
//! leave when idle) must be gone again: the checks wait for that (watchdog
//! of 30 s), they do not time anything. Run on both backends
//! (`UAIO_BACKEND=uring|threads`).
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_NOOP, IOCB_CMD_POLL, IOCB_CMD_PREAD, IOCB_CMD_PWRITE};
use uaio::raw;

mod util;
use util::{cb, pipe};

fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    fds: usize,
    threads: usize,
    maps: usize,
    rss_kib: usize,
}

fn status_field(name: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in /proc/self/status"));
    line[name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

fn usage() -> Usage {
    Usage {
        // The directory's own descriptor is counted, the same every time;
        // io_uring instances kept for later contexts (at most 8) are not.
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count() - uaio::kept_rings(),
        // io_uring's idle workers (kernel threads, `iou-wrk-<tid>`) stay
        // while the instances uaio keeps for later contexts live.
        threads: status_field("Threads:")
            - if uaio::kept_rings() > 0 {
                thread_names().iter().filter(|n| n.starts_with("iou-wrk-")).count()
            } else {
                0
            },
        maps: std::fs::read_to_string("/proc/self/maps").unwrap().lines().count(),
        rss_kib: status_field("VmRSS:"),
    }
}

fn thread_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    v.sort();
    v
}

fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some(format!("{}->{}", e.file_name().to_string_lossy(), std::fs::read_link(e.path()).ok()?.display()))
        })
        .collect();
    v.sort();
    v
}

/// RSS may grow this much over a workload (allocator caches, page cache of
/// the test file mapped nowhere, the ring of the kernel's per-task state).
const RSS_SLACK_KIB: usize = 32 * 1024;

/// Mappings may grow by this many lines over a workload: the C library
/// keeps the stacks of threads that ended for reuse (two lines each, stack
/// and guard) and keeps every malloc arena it made (two lines each), and
/// both grow with the largest number of threads that ever ran at once, which
/// the pool's on-demand workers make vary from run to run. A leak per
/// context or per request would show as hundreds or thousands of lines.
const MAPS_SLACK: usize = 8;

/// Waits (watchdog 30 s) until descriptors, threads and mappings are back
/// to `base` and RSS within the slack; panics with the numbers otherwise.
fn back_to(base: Usage, base_threads: &[String], base_fds: &[String], what: &str) -> Usage {
    let start = Instant::now();
    loop {
        let now = usage();
        let ok = now.fds == base.fds
            && now.threads == base.threads
            && now.maps <= base.maps + MAPS_SLACK
            && now.rss_kib <= base.rss_kib + RSS_SLACK_KIB;
        if ok {
            println!("{what}: back to {base:?} (now {now:?})");
            return now;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "{what}: not back where it started after 30 s\n before: {base:?}\n after:  {now:?}\n \
                 threads before {base_threads:?}\n threads after  {:?}\n fds before {base_fds:?}\n fds after  {:?}",
                thread_names(),
                fd_targets()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Baseline after a warm-up: `(usage, thread names, descriptors)`.
fn baseline() -> (Usage, Vec<String>, Vec<String>) {
    // Let threads of the warm-up leave first (same watchdog as the checks).
    let start = Instant::now();
    let mut prev = usage();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = usage();
        // Pool threads and io_uring workers leave once idle (the workers
        // only once no io_uring instance is kept: see `usage`).
        let kept = uaio::kept_rings() > 0;
        let transient =
            thread_names().iter().any(|n| n.starts_with("uaio-worker") || (!kept && n.starts_with("iou-wrk")));
        if now.threads == prev.threads && now.fds == prev.fds && now.maps == prev.maps && !transient {
            return (now, thread_names(), fd_targets());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the process never settled: {prev:?} then {now:?}");
        prev = now;
    }
}

/// A context, destroyed on drop.
struct Ctx(aio_context_t);

impl Ctx {
    fn new(nr: u32) -> Ctx {
        let mut h: aio_context_t = 0;
        // SAFETY: `h` is a writable handle holding 0.
        let r = unsafe { raw::io_setup(nr, &mut h) };
        assert_eq!(r, 0, "io_setup");
        Ctx(h)
    }

    fn submit(&self, ptrs: &mut [*mut iocb]) -> i64 {
        // SAFETY: the iocbs and their buffers outlive their completions (the
        // callers reap every event, or destroy, before dropping them).
        unsafe { raw::io_submit(self.0, ptrs.len() as i64, ptrs.as_mut_ptr()) }
    }

    fn cancel(&self, cb: *mut iocb) -> i64 {
        // SAFETY: `cb` was submitted on this context.
        unsafe { raw::io_cancel(self.0, cb, std::ptr::null_mut()) }
    }

    /// Reaps exactly `evs.len()` events (watchdog 30 s).
    fn reap(&self, evs: &mut [io_event]) {
        let n = evs.len() as i64;
        let mut ts = libc::timespec { tv_sec: 30, tv_nsec: 0 };
        // SAFETY: `evs` has room for `n` events.
        let r = unsafe { raw::io_getevents(self.0, n, n, evs.as_mut_ptr(), &mut ts) };
        assert_eq!(r, n, "io_getevents");
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: our own handle, destroyed once.
        assert_eq!(unsafe { raw::io_destroy(self.0) }, 0);
    }
}

/// `total` requests in batches of 64: NOOPs, and every fourth batch small
/// reads of a cached file; every result checked.
fn noops_and_reads(total: usize, file: &std::fs::File) {
    const B: usize = 64;
    let ctx = Ctx::new(256);
    let fd = file.as_raw_fd();
    let mut bufs = vec![[0u8; 512]; B];
    let mut evs = vec![io_event::default(); B];
    let mut cbs: Vec<iocb> = Vec::with_capacity(B);
    let mut ptrs: Vec<*mut iocb> = Vec::with_capacity(B);
    let mut done = 0;
    let mut batch = 0;
    while done < total {
        let n = B.min(total - done);
        let reads = batch % 4 == 3;
        cbs.clear();
        for (i, b) in bufs.iter_mut().enumerate().take(n) {
            cbs.push(if reads {
                cb(IOCB_CMD_PREAD, fd, b.as_mut_ptr() as u64, 512, (i * 512) as i64, i as u64)
            } else {
                cb(IOCB_CMD_NOOP, fd, 0, 0, 0, i as u64)
            });
        }
        ptrs.clear();
        ptrs.extend(cbs.iter_mut().map(|c| c as *mut iocb));
        assert_eq!(ctx.submit(&mut ptrs), n as i64);
        ctx.reap(&mut evs[..n]);
        for e in &evs[..n] {
            assert_eq!(e.res, if reads { 512 } else { 0 }, "batch {batch}");
        }
        if reads {
            assert!(bufs[..n].iter().all(|b| b.iter().all(|&x| x == 0x33)));
        }
        done += n;
        batch += 1;
    }
}

fn cached_file() -> std::fs::File {
    let f = tempfile::tempfile().unwrap();
    // SAFETY: pwrite from a valid buffer.
    assert_eq!(unsafe { libc::pwrite(f.as_raw_fd(), [0x33u8; 32768].as_ptr().cast(), 32768, 0) }, 32768);
    f
}

#[test]
fn a_million_requests_leave_nothing_behind() {
    let _g = lock();
    let f = cached_file();
    noops_and_reads(10_000, &f);
    let (base, bt, bf) = baseline();
    let start = Instant::now();
    noops_and_reads(1_000_000, &f);
    println!("1,000,000 requests on {} in {:?}", uaio::backend_name(), start.elapsed());
    back_to(base, &bt, &bf, "after 1,000,000 requests");
}

/// `n` setup/destroy cycles; every fourth context is destroyed with two
/// POLLs pending (destroy cancels them) and a write done.
fn cycles(n: usize, rd: &OwnedFd, file: &std::fs::File) {
    let buf = [7u8; 512];
    let mut evs = [io_event::default(); 1];
    for i in 0..n {
        let ctx = Ctx::new(if i % 2 == 0 { 8 } else { 128 });
        if i % 4 == 3 {
            let mut cbs = [
                cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1),
                cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, 2),
                cb(IOCB_CMD_PWRITE, file.as_raw_fd(), buf.as_ptr() as u64, 512, 0, 3),
            ];
            let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
            assert_eq!(ctx.submit(&mut ptrs), 3);
            ctx.reap(&mut evs);
            assert_eq!((evs[0].data, evs[0].res), (3, 512));
        }
        drop(ctx);
    }
}

#[test]
fn setup_destroy_cycles_leave_nothing_behind() {
    let _g = lock();
    let (rd, _wr) = pipe();
    let f = tempfile::tempfile().unwrap();
    cycles(40, &rd, &f);
    let (base, bt, bf) = baseline();
    cycles(2_000, &rd, &f);
    assert_eq!(uaio::live_contexts(), 0);
    back_to(base, &bt, &bf, "after 2,000 setup/destroy cycles");
}

/// `rounds` of 500 POLLs submitted on a pipe that never gets data, each
/// cancelled, every event reaped (`res` 0, as the kernel's cancelled POLL).
fn cancel_storm(rounds: usize, rd: &OwnedFd) {
    const B: usize = 500;
    let ctx = Ctx::new(512);
    let mut cbs: Vec<iocb> =
        (0..B).map(|i| cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, i as u64)).collect();
    let mut evs = vec![io_event::default(); B];
    for _ in 0..rounds {
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
        assert_eq!(ctx.submit(&mut ptrs), B as i64);
        for &p in &ptrs {
            assert_eq!(ctx.cancel(p), -libc::EINPROGRESS as i64);
        }
        ctx.reap(&mut evs);
        assert!(evs.iter().all(|e| e.res == 0), "a cancelled POLL completes with 0");
    }
}

#[test]
fn a_cancel_storm_leaves_nothing_behind() {
    let _g = lock();
    let (rd, _wr) = pipe();
    cancel_storm(1, &rd);
    let (base, bt, bf) = baseline();
    cancel_storm(20, &rd);
    back_to(base, &bt, &bf, "after 10,000 POLLs submitted and cancelled");
}

/// CPU time (user + system, clock ticks) of the process's threads whose
/// name starts with `uaio`.
fn uaio_thread_ticks() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|s| s.contains("(uaio"))
        .map(|s| {
            // Fields after the ")" of the name: state is field 3, utime 14, stime 15.
            let rest = &s[s.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        })
        .sum()
}

#[test]
fn an_idle_context_costs_no_cpu() {
    let _g = lock();
    let (rd, _wr) = pipe();
    let f = tempfile::tempfile().unwrap();
    let ctx = Ctx::new(64);
    // Pending: a POLL that never completes; done: a write nobody reaps.
    let buf = [1u8; 64];
    let mut cbs = [
        cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1),
        cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_ptr() as u64, 64, 0, 2),
    ];
    let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
    assert_eq!(ctx.submit(&mut ptrs), 2);
    std::thread::sleep(Duration::from_millis(100));
    let before = uaio_thread_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let spent = uaio_thread_ticks() - before;
    // Not a timing: a thread that polls or spins would spend about 100
    // ticks in this second; an idle one spends none.
    println!("uaio threads spent {spent} clock ticks in 1 s with an idle context");
    assert!(spent <= 5, "an idle context costs CPU: {spent} ticks in 1 s");
    assert_eq!(ctx.cancel(&mut cbs[0]), -libc::EINPROGRESS as i64);
    let mut evs = [io_event::default(); 2];
    ctx.reap(&mut evs);
}

/// In the child: `RLIMIT_MEMLOCK = 0` and `RLIMIT_NOFILE = 32`, then
/// `io_setup` on the kernel and on uaio (both must work, or uaio must give
/// the kernel's error), a request, and the application's own `open`. Prints
/// what it saw; returns the verdict.
fn limits_child(out: &mut Vec<String>) -> bool {
    let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let nofile = libc::rlimit { rlim_cur: 32, rlim_max: 32 };
    // SAFETY: setrlimit with valid structs.
    let r = unsafe { (libc::setrlimit(libc::RLIMIT_MEMLOCK, &zero), libc::setrlimit(libc::RLIMIT_NOFILE, &nofile)) };
    if r != (0, 0) {
        out.push(format!("setrlimit failed: {r:?}"));
        return false;
    }
    let mut ok = true;
    let errno = || -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64);
    let mut k: aio_context_t = 0;
    // SAFETY: io_setup(2) with a writable handle holding 0.
    let kr = match unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut k) } {
        0 => 0,
        _ => errno(),
    };
    let mut u: aio_context_t = 0;
    // SAFETY: `u` is a writable handle holding 0.
    let ur = unsafe { raw::io_setup(8, &mut u) };
    out.push(format!("io_setup(8): kernel {kr}, uaio {ur} (backend {})", uaio::backend_name()));
    if ur != 0 && ur != kr {
        ok = false;
    }
    if ur == 0 {
        let f = match tempfile::tempfile() {
            Ok(f) => f,
            Err(e) => {
                out.push(format!("tempfile after io_setup: {e}"));
                return false;
            }
        };
        let buf = [9u8; 100];
        let mut c = cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_ptr() as u64, 100, 0, 5);
        let mut p = [&mut c as *mut iocb];
        // SAFETY: one valid iocb whose buffer outlives the request.
        let s = unsafe { raw::io_submit(u, 1, p.as_mut_ptr()) };
        let mut ev = [io_event::default(); 1];
        let mut ts = libc::timespec { tv_sec: 30, tv_nsec: 0 };
        // SAFETY: room for one event.
        let g = unsafe { raw::io_getevents(u, 1, 1, ev.as_mut_ptr(), &mut ts) };
        out.push(format!("uaio write: submit {s}, getevents {g}, res {}", ev[0].res));
        ok &= s == 1 && g == 1 && ev[0].res == 100;
    }
    // SAFETY: open(2) and close(2) of the application's own descriptor.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    out.push(format!(
        "open() with the context alive: {}",
        if fd >= 0 { "ok".to_string() } else { errno().to_string() }
    ));
    ok &= fd >= 0;
    // SAFETY: closing what was just opened (or -1: EBADF, harmless).
    unsafe { libc::close(fd) };
    if u != 0 {
        // SAFETY: destroying our own context.
        unsafe { raw::io_destroy(u) };
    }
    if k != 0 {
        // SAFETY: destroying the kernel's context.
        unsafe { libc::syscall(libc::SYS_io_destroy, k) };
    }
    ok
}

/// In the child: `RLIMIT_NOFILE = 32`, then 40 contexts on each side (the
/// kernel's use no descriptor), the application's own `open` with all of
/// them alive, and after they are destroyed.
fn many_contexts_child(out: &mut Vec<String>) -> bool {
    let nofile = libc::rlimit { rlim_cur: 32, rlim_max: 32 };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) } != 0 {
        out.push("setrlimit failed".into());
        return false;
    }
    let mut ok = true;
    let errno = || -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64);
    // Contexts on each side, until 40 or the first failure.
    let mut kn = Vec::new();
    let mut klast = 0;
    while kn.len() < 40 {
        let mut h: aio_context_t = 0;
        // SAFETY: as above.
        if unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut h) } != 0 {
            klast = errno();
            break;
        }
        kn.push(h);
    }
    let mut un = Vec::new();
    let mut ulast = 0;
    while un.len() < 40 {
        let mut h: aio_context_t = 0;
        // SAFETY: as above.
        let r = unsafe { raw::io_setup(8, &mut h) };
        if r != 0 {
            ulast = r;
            break;
        }
        un.push(h);
    }
    out.push(format!("more contexts: kernel {} (then {klast}), uaio {} (then {ulast})", kn.len(), un.len()));
    if un.len() < kn.len() && ulast != klast {
        ok = false;
    }
    // SAFETY: open(2) and close(2) of the application's own descriptor.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    out.push(format!(
        "open() with every context alive: {}",
        if fd >= 0 { "ok".to_string() } else { errno().to_string() }
    ));
    ok &= fd >= 0;
    // SAFETY: closing what was just opened (or -1: EBADF, harmless).
    unsafe { libc::close(fd) };
    for h in kn {
        // SAFETY: destroying the kernel's context.
        unsafe { libc::syscall(libc::SYS_io_destroy, h) };
    }
    for h in un {
        // SAFETY: destroying our own context.
        unsafe { raw::io_destroy(h) };
    }
    // SAFETY: as above.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    out.push(format!("open() after destroying them: {}", if fd >= 0 { "ok".to_string() } else { errno().to_string() }));
    ok && fd >= 0
}

/// Runs `f` in a forked child (killed after 60 s) and returns its verdict
/// and the lines it reported.
fn in_child(f: fn(&mut Vec<String>) -> bool) -> (bool, Vec<String>) {
    let (r, w) = pipe();
    // SAFETY: fork(2); the child runs `f`, writes its report and leaves
    // with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(r);
        // SAFETY: alarm(2): a hung child is killed.
        unsafe { libc::alarm(60) };
        let mut lines = Vec::new();
        let ok = f(&mut lines);
        let s = lines.join("\n");
        // SAFETY: writing to our pipe end, then leaving without unwinding.
        unsafe {
            libc::write(w.as_raw_fd(), s.as_ptr().cast(), s.len());
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    drop(w);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text).unwrap();
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, text.lines().map(str::to_string).collect())
}

#[test]
fn low_memlock_and_descriptor_limits_never_fail_the_application() {
    let _g = lock();
    let (ok, lines) = in_child(limits_child);
    for l in &lines {
        println!("{l}");
    }
    assert!(ok, "under RLIMIT_MEMLOCK=0, RLIMIT_NOFILE=32: {lines:#?}");
}

#[test]
fn many_contexts_under_a_low_descriptor_limit() {
    let _g = lock();
    let (ok, lines) = in_child(many_contexts_child);
    for l in &lines {
        println!("{l}");
    }
    assert!(ok, "under RLIMIT_NOFILE=32: {lines:#?}");
}

#[test]
fn the_poller_leaves_after_the_last_context() {
    let _g = lock();
    let (rd, _wr) = pipe();
    for round in 0..300 {
        let ctx = Ctx::new(8);
        let mut cbs = [
            cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1),
            cb(IOCB_CMD_POLL, rd.as_raw_fd(), libc::POLLIN as u64, 0, 0, 2),
        ];
        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
        assert_eq!(ctx.submit(&mut ptrs), 2);
        // Let the poller block in poll(2) on the two requests first.
        std::thread::sleep(Duration::from_millis(1));
        drop(ctx);
        // Watchdog, not a timing: an idle poller leaves at once.
        let start = Instant::now();
        while uaio::pool_threads() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "round {round}: {} pool thread(s) alive 10 s after the last context was destroyed: {:?}",
                uaio::pool_threads(),
                thread_names()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A daemon closing every descriptor it does not know (here: every
/// anonymous-inode one, which is what uaio's io_uring and eventfds are):
/// the documented limit is that the context stops working, not that any
/// call hangs, crashes or fails to return. Every call must come back within
/// its timeout, and destroy must succeed.
fn closed_internals_child(out: &mut Vec<String>) -> bool {
    let ctx = Ctx::new(8);
    let (r, w) = pipe();
    let mut poll = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1);
    let mut p = [&mut poll as *mut iocb];
    out.push(format!("submit POLL = {}", ctx.submit(&mut p)));
    let mut closed = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let link = std::fs::read_link(e.path()).unwrap_or_default();
        if link.to_string_lossy().starts_with("anon_inode:") {
            // SAFETY: closing a descriptor behind uaio's back, on purpose.
            unsafe { libc::close(n) };
            closed += 1;
        }
    }
    out.push(format!("closed {closed} anonymous-inode descriptors"));
    let mut ev = [io_event::default(); 1];
    let mut t = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: room for one event; a one-second timeout.
    let g = unsafe { raw::io_getevents(ctx.0, 1, 1, ev.as_mut_ptr(), &mut t) };
    out.push(format!("io_getevents(1 s) returned {g}"));
    // SAFETY: one byte from a valid buffer.
    unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    let mut t = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: as above.
    let g = unsafe { raw::io_getevents(ctx.0, 1, 1, ev.as_mut_ptr(), &mut t) };
    out.push(format!("io_getevents(1 s) after the pipe became readable returned {g}"));
    let f = tempfile::tempfile().unwrap();
    let buf = *b"abcd";
    let mut wr = cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_ptr() as u64, 4, 0, 2);
    let mut p = [&mut wr as *mut iocb];
    out.push(format!("submit write = {}", ctx.submit(&mut p)));
    let mut t = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    // SAFETY: as above.
    let g = unsafe { raw::io_getevents(ctx.0, 1, 1, ev.as_mut_ptr(), &mut t) };
    out.push(format!("io_getevents(1 s) for the write returned {g} (res {})", ev[0].res));
    drop(ctx);
    out.push("destroy returned 0".into());
    true
}

#[test]
fn closed_internal_descriptors_break_no_call() {
    let _g = lock();
    let (ok, lines) = in_child(closed_internals_child);
    for l in &lines {
        println!("{l}");
    }
    assert!(ok, "with uaio's descriptors closed behind its back: {lines:#?}");
}
