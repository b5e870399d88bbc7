//! io_getevents and io_pgetevents: counts, timeouts, faults, signal masks
//! and interruption by signals.

use std::os::fd::{AsRawFd, IntoRawFd};

use super::fixtures::*;
use crate::*;

/// Submits `n` one-byte reads of a small file (data 1..=n) and waits until
/// their events are in the ring.
fn ready_reads(e: &mut Env, ctx: u64, n: u64) -> std::os::fd::OwnedFd {
    let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
    for i in 1..=n {
        let buf = leak_buf(1).as_mut_ptr() as u64;
        sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, i as i64, i));
    }
    let ok = wait_ready(ctx, n as u32);
    e.rec(format!("{n} events ready = {ok}"));
    f
}

/// Raw io_getevents, recorded as its return value and the sorted data of
/// the events it returned.
fn raw_get(e: &mut Env, what: &str, ctx: u64, min: i64, nr: i64, t: Option<libc::timespec>) -> i64 {
    let mut evs = vec![io_event::default(); 64];
    let mut t = t;
    let tp = t.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut _);
    // SAFETY: room for 64 events; callers never ask for more than are ready.
    let r = unsafe { e.aio.getevents(ctx, min, nr, evs.as_mut_ptr(), tp) };
    let mut data: Vec<u64> = evs.iter().take(r.clamp(0, 64) as usize).map(|e| e.data).collect();
    data.sort();
    e.rec(format!("{what}: getevents = {} data {data:?}", ret(r)));
    r
}

/// Raw io_pgetevents with the given signal argument, recorded.
fn raw_pget(
    e: &mut Env,
    what: &str,
    ctx: u64,
    min: i64,
    nr: i64,
    t: Option<libc::timespec>,
    sig: *const aio_sigset,
) -> i64 {
    let mut evs = vec![io_event::default(); 64];
    let mut t = t;
    let tp = t.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut _);
    // SAFETY: room for 64 events; the signal argument is what the case tests.
    let r = unsafe { e.aio.pgetevents(ctx, min, nr, evs.as_mut_ptr(), tp, sig) };
    let mut data: Vec<u64> = evs.iter().take(r.clamp(0, 64) as usize).map(|e| e.data).collect();
    data.sort();
    e.rec(format!("{what}: pgetevents = {} data {data:?}", ret(r)));
    r
}

fn mask_of(sig: i32) -> &'static u64 {
    Box::leak(Box::new(1u64 << (sig - 1)))
}

fn sigarg(mask: *const u64, size: usize) -> &'static aio_sigset {
    Box::leak(Box::new(aio_sigset { sigmask: mask, sigsetsize: size }))
}

/// A POLL on an empty pipe that never completes unless fed.
fn pending_poll(e: &mut Env, ctx: u64, data: u64) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    let (r, w) = pipe();
    sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, data));
    (r, w)
}

/// What the handler of the re-entry case uses and counts (set in the case's
/// child, before the timer starts).
mod reentry {
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
    use std::sync::OnceLock;

    use crate::cases::fixtures::*;
    use crate::*;

    pub(super) static AIO: OnceLock<&'static dyn Aio> = OnceLock::new();
    pub(super) static CTX: AtomicU64 = AtomicU64::new(0);
    pub(super) static PIPE: AtomicI32 = AtomicI32::new(-1);
    pub(super) static CBS: OnceLock<usize> = OnceLock::new();
    pub(super) const MAX: usize = 20_000;
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// The handler's reap waits (`min_nr` 1, 50 µs) instead of peeking.
    pub(super) static WAIT: AtomicBool = AtomicBool::new(false);
    pub(super) static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    pub(super) static REAPED: AtomicUsize = AtomicUsize::new(0);
    /// The reads of the interrupted thread reaped (by it or, on the same
    /// context, by the handler), and those with a wrong result.
    pub(super) static READS: AtomicUsize = AtomicUsize::new(0);
    pub(super) static WRONG: AtomicUsize = AtomicUsize::new(0);
    /// `data` of the handler's POLLs: this bit and their index.
    pub(super) const POLL_TAG: u64 = 1 << 32;

    /// Counts one reaped event: a request of the interrupted thread (`data`
    /// 1: a read of 512 bytes, or with [`WAIT`] a POLL that finds its pipe
    /// readable) or one of the handler's POLLs.
    pub(super) fn count(ev: &io_event) {
        if ev.data & POLL_TAG != 0 {
            REAPED.fetch_add(1, Ordering::SeqCst);
        } else {
            READS.fetch_add(1, Ordering::SeqCst);
            let want = if WAIT.load(Ordering::SeqCst) { libc::POLLIN as i64 } else { 512 };
            if ev.data != 1 || ev.res != want {
                WRONG.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// On each timer signal: one POLL of a ready pipe submitted to the
    /// handler's context, and that context's events reaped, without
    /// waiting or (with [`WAIT`]) waiting up to 50 µs for one.
    pub(super) extern "C" fn on_alarm(_: libc::c_int) {
        // SAFETY: errno is per thread; saved and restored around the calls.
        let saved = unsafe { *libc::__errno_location() };
        let (Some(aio), Some(&base)) = (AIO.get(), CBS.get()) else { return };
        let i = CALLS.fetch_add(1, Ordering::SeqCst);
        if i < MAX {
            let cb = (base as *mut iocb).wrapping_add(i);
            // SAFETY: slot `i` of the leaked array, used once.
            unsafe { *cb = cb_poll(PIPE.load(Ordering::SeqCst), POLL_TAG | i as u64) };
            let mut p = [cb];
            // SAFETY: one valid iocb that lives for the process.
            if unsafe { aio.submit(CTX.load(Ordering::SeqCst), 1, p.as_mut_ptr()) } == 1 {
                ACCEPTED.fetch_add(1, Ordering::SeqCst);
            }
        }
        let mut ev = [io_event::default(); 8];
        let wait = WAIT.load(Ordering::SeqCst);
        let mut z = ts(0, if wait { 50_000 } else { 0 });
        // SAFETY: room for eight events.
        let n = unsafe { aio.getevents(CTX.load(Ordering::SeqCst), i64::from(wait), 8, ev.as_mut_ptr(), &mut z) };
        ev.iter().take(n.max(0) as usize).for_each(count);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }

    fn cb_poll(fd: i32, data: u64) -> iocb {
        cb(IOCB_CMD_POLL, fd, libc::POLLIN as u64, 0, 0, data)
    }
}

/// The body of the re-entry cases: the handler works on the second
/// context (`same` false) or on the one the interrupted thread uses, and
/// reaps waiting (`wait`) or not.
fn handler_reentry(e: &mut Env, same: bool, wait: bool) {
    use reentry::*;
    use std::sync::atomic::Ordering::SeqCst;
    let aio = aio_of(e);
    let f = e.file(&[7u8; 4096], libc::O_RDWR).into_raw_fd();
    let (r, w) = pipe();
    write_fd(w.as_raw_fd(), b"x");
    let rfd = r.as_raw_fd();
    let lines = in_child(move |out| {
        // A watchdog ends the child if it hangs (not alarm(2): SIGALRM is
        // the timer's); it blocks SIGALRM, so the timer's signals go to the
        // case's thread.
        set_blocked(libc::SIGALRM, true);
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: leaving the hung child at once.
            unsafe { libc::_exit(3) };
        });
        set_blocked(libc::SIGALRM, false);
        let (mut c1, mut c2) = (0u64, 0u64);
        // SAFETY: valid pointers to zeroed handles.
        let ok = unsafe { aio.setup(64, &mut c1) == 0 && aio.setup(8192, &mut c2) == 0 };
        out.push(format!("two contexts = {ok}"));
        let _ = AIO.set(aio);
        CTX.store(if same { c1 } else { c2 }, SeqCst);
        WAIT.store(wait, SeqCst);
        PIPE.store(rfd, SeqCst);
        let cbs: &'static mut [iocb] = Vec::leak(vec![iocb::default(); MAX]);
        let _ = CBS.set(cbs.as_mut_ptr() as usize);
        // SAFETY: sigaction for SIGALRM with a handler that only
        // makes AIO calls; then a 200 µs interval timer.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
            let t = libc::itimerval {
                it_interval: libc::timeval { tv_sec: 0, tv_usec: 200 },
                it_value: libc::timeval { tv_sec: 0, tv_usec: 200 },
            };
            libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
        }
        let buf = leak_buf(512);
        let mut sent = 0usize;
        let start = std::time::Instant::now();
        // With `wait`, the interrupted thread's requests are POLLs of a pipe
        // that is empty when they are submitted, so that they go to the
        // backend (which allocates), and made readable after.
        let (pr, pw) = pipe();
        while start.elapsed() < Duration::from_millis(800) {
            let mut a = if wait {
                cb(IOCB_CMD_POLL, pr.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1)
            } else {
                cb(IOCB_CMD_PREAD, f, buf.as_mut_ptr() as u64, 512, 0, 1)
            };
            let mut p = [&mut a as *mut iocb];
            // SAFETY: one valid iocb; reaped below before it goes.
            if unsafe { aio.submit(c1, 1, p.as_mut_ptr()) } != 1 {
                continue;
            }
            sent += 1;
            if wait {
                write_fd(pw.as_raw_fd(), b"p");
            }
            // (On the same context the handler may reap it.)
            while READS.load(SeqCst) < sent {
                let mut ev = [io_event::default(); 8];
                let mut t = ts(0, 1_000_000);
                // SAFETY: room for eight events.
                let n = unsafe { aio.getevents(c1, 1, 8, ev.as_mut_ptr(), &mut t) };
                ev.iter().take(n.max(0) as usize).for_each(count);
            }
            if wait {
                let mut byte = [0u8; 1];
                // SAFETY: a one-byte read of the pipe's byte, into a local.
                unsafe { libc::read(pr.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            }
        }
        // SAFETY: the timer off, then the handler's SIG_DFL back
        // (no signal is pending: SIGALRM's default would end us).
        unsafe {
            let t: libc::itimerval = std::mem::zeroed();
            libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
        }
        out.push(format!(
            "reads came back, each once and right = {}",
            READS.load(SeqCst) == sent && WRONG.load(SeqCst) == 0
        ));
        let calls = CALLS.load(SeqCst).min(MAX);
        out.push(format!("the handler ran = {}", calls > 0));
        // (uaio may refuse a submit of the handler that interrupted it
        // holding a lock, with EAGAIN: not recorded.)
        // The rest of the handler's events.
        let mut spins = 0;
        while REAPED.load(SeqCst) < ACCEPTED.load(SeqCst) && spins < 1000 {
            let mut ev = [io_event::default(); 64];
            let mut t = ts(0, 10_000_000);
            // SAFETY: room for 64 events.
            let n = unsafe { aio.getevents(if same { c1 } else { c2 }, 1, 64, ev.as_mut_ptr(), &mut t) };
            ev.iter().take(n.max(0) as usize).for_each(count);
            spins += 1;
        }
        out.push(format!(
            "every POLL the handler submitted reaped once = {}",
            REAPED.load(SeqCst) == ACCEPTED.load(SeqCst)
        ));
        // SAFETY: destroying the contexts made above.
        unsafe {
            aio.destroy(c1);
            aio.destroy(c2);
        }
    });
    drop((r, w));
    // SAFETY: closing the file made above.
    unsafe { libc::close(f) };
    e.rec_all(lines);
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("getevents/arg_rules", |e| {
            let ctx = e.setup(4);
            e.getevents(0, 0, 1, Some(Duration::ZERO));
            e.getevents(ctx, -1, 1, Some(Duration::ZERO));
            e.getevents(ctx, 0, -1, Some(Duration::ZERO));
            e.getevents(ctx, 2, 1, Some(Duration::ZERO));
            e.getevents(ctx, 0, 0, None);
            // SAFETY: the timeout pointer is deliberately a PROT_NONE page;
            // both implementations check it first and must report EFAULT
            // without dereferencing it in this process (the kernel checks it,
            // uaio probes it with a fault-recovering copy), so the null events
            // array is never used.
            let r =
                unsafe { e.aio.getevents(ctx, 0, 1, std::ptr::null_mut(), no_access_page() as *mut libc::timespec) };
            e.rec(format!("bad timeout = {}", ret(r)));
            // SAFETY: as above, with a bad handle as well: the timeout is still
            // checked first, and the handle is only looked up.
            let r = unsafe { e.aio.getevents(0, 0, 1, std::ptr::null_mut(), no_access_page() as *mut libc::timespec) };
            e.rec(format!("bad timeout bad ctx = {}", ret(r)));
        }),
        c("getevents/timeout_expires", |e| {
            let ctx = e.setup(4);
            e.getevents(ctx, 1, 1, Some(Duration::from_millis(30)));
        }),
        c("getevents/efault_with_events_ready", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut buf = [0u8; 3];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            std::thread::sleep(Duration::from_millis(20));
            let mut ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
            // SAFETY: ts is a live local; the events pointer is deliberately a
            // PROT_NONE page, and writing the ready event there must give
            // EFAULT (the kernel checks it, uaio uses a fault-recovering copy)
            // without faulting here.
            let r = unsafe { e.aio.getevents(ctx, 1, 1, no_access_page() as *mut io_event, &mut ts) };
            e.rec(format!("bad events = {}", ret(r)));
            e.reap(ctx, 1);
        }),
        c("getevents/user_reaps_ring", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcd", libc::O_RDWR);
            let mut buf = [0u8; 4];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 0, 42);
            e.submit(ctx, &mut [&mut a]);
            let ring = ctx as *mut aio_ring;
            let mut spins = 0;
            loop {
                // SAFETY: ctx is the address of the live context's ring (struct
                // aio_ring layout, mapped read/write by both implementations
                // until the case ends).
                let tail = unsafe { std::ptr::read_volatile(&(*ring).tail) };
                // SAFETY: as above.
                let head = unsafe { std::ptr::read_volatile(&(*ring).head) };
                if tail != head {
                    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                    // SAFETY: head < nr as the implementation keeps it (nothing
                    // in this case corrupts it), so the slot lies inside the
                    // ring mapping, and tail != head means it holds a published
                    // event.
                    let ev = unsafe { *((ctx + 32 + 32 * head as u64) as *const io_event) };
                    let l = e.ev(&ev);
                    e.rec(format!("from ring: {l}"));
                    // SAFETY: the ring header is the program's to write:
                    // advancing head is how a user-space reaper consumes the
                    // event it has read.
                    unsafe { std::ptr::write_volatile(&mut (*ring).head, (head + 1) % (*ring).nr) };
                    break;
                }
                spins += 1;
                if spins > 1000 {
                    e.rec("nothing in ring after 1 s");
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
        }),
        c("getevents/zero_timeout_does_not_wait", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            raw_get(e, "min 1 {0,0}", ctx, 1, 1, Some(ts(0, 0)));
            raw_get(e, "min 4 {0,0}", ctx, 4, 4, Some(ts(0, 0)));
            let _f = ready_reads(e, ctx, 2);
            raw_get(e, "min 4 {0,0} with 2 ready", ctx, 4, 4, Some(ts(0, 0)));
        }),
        c("getevents/null_timeout_min_zero_returns", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            raw_get(e, "nothing ready", ctx, 0, 4, None);
            let _f = ready_reads(e, ctx, 2);
            raw_get(e, "two ready", ctx, 0, 4, None);
            raw_get(e, "min 0 nr 0", ctx, 0, 0, None);
        }),
        c("getevents/min_zero_returns_what_is_ready", |e| {
            let ctx = e.setup(8);
            let _f = ready_reads(e, ctx, 3);
            raw_get(e, "min 0 nr 10", ctx, 0, 10, Some(ts(0, 0)));
            raw_get(e, "again", ctx, 0, 10, Some(ts(0, 0)));
        }),
        c("getevents/nr_smaller_than_ready", |e| {
            let ctx = e.setup(8);
            let _f = ready_reads(e, ctx, 3);
            let mut all = Vec::new();
            for nr in [2i64, 10] {
                let mut evs = vec![io_event::default(); 10];
                let mut t = ts(0, 0);
                // SAFETY: room for 10 events.
                let r = unsafe { e.aio.getevents(ctx, 0, nr, evs.as_mut_ptr(), &mut t) };
                e.rec(format!("nr {nr}: getevents = {}", ret(r)));
                all.extend(evs.iter().take(r.max(0) as usize).map(|e| e.data));
            }
            all.sort();
            e.rec(format!("all data {all:?}"));
        }),
        c("getevents/min_nr_more_than_available", |e| {
            let ctx = e.setup(8);
            let _f = ready_reads(e, ctx, 2);
            raw_get(e, "min 3 30ms", ctx, 3, 10, Some(ts(0, 30_000_000)));
            let _f2 = ready_reads(e, ctx, 1);
            raw_get(e, "min 1000 nr 1000 20ms", ctx, 1000, 1000, Some(ts(0, 20_000_000)));
        }),
        c("getevents/null_events_buffer", |e| {
            let ctx = e.setup(4);
            for (min, t) in [(0, ts(0, 0)), (1, ts(0, 20_000_000))] {
                let mut t = t;
                // SAFETY: the events pointer is null; nothing is ready.
                let r = unsafe { e.aio.getevents(ctx, min, 1, std::ptr::null_mut(), &mut t) };
                e.rec(format!("nothing ready, min {min}: getevents = {}", ret(r)));
            }
            let _f = ready_reads(e, ctx, 1);
            let mut t = ts(0, 0);
            // SAFETY: as above, with one event ready.
            let r = unsafe { e.aio.getevents(ctx, 0, 1, std::ptr::null_mut(), &mut t) };
            e.rec(format!("one ready: getevents = {}", ret(r)));
            raw_get(e, "then", ctx, 0, 4, Some(ts(0, 0)));
        }),
        c("getevents/nr_zero_leaves_events", |e| {
            let ctx = e.setup(4);
            let _f = ready_reads(e, ctx, 2);
            raw_get(e, "nr 0", ctx, 0, 0, Some(ts(0, 0)));
            raw_get(e, "nr 0 null timeout", ctx, 0, 0, None);
            raw_get(e, "then", ctx, 0, 4, Some(ts(0, 0)));
        }),
        c("getevents/efault_partway_keeps_all_events", |e| {
            let ctx = e.setup(4);
            let _f = ready_reads(e, ctx, 2);
            // Room for exactly one event before the hole.
            let p = page_then_hole() + 4096 - 32;
            let mut t = ts(0, 0);
            // SAFETY: the first event slot is writable, the second faults.
            let r = unsafe { e.aio.getevents(ctx, 0, 2, p as *mut io_event, &mut t) };
            e.rec(format!("buffer for one, two ready: getevents = {}", ret(r)));
            let mut t = ts(0, 0);
            // SAFETY: as above, asking for one only.
            let r = unsafe { e.aio.getevents(ctx, 0, 1, p as *mut io_event, &mut t) };
            // SAFETY: reading back the slot we own.
            let d = unsafe { (*(p as *const io_event)).data };
            e.rec(format!("buffer for one, nr 1: getevents = {} (data in 1..=2: {})", ret(r), (1..=2).contains(&d)));
            let mut evs = [io_event::default(); 4];
            let mut t = ts(0, 0);
            // SAFETY: room for four events.
            let r = unsafe { e.aio.getevents(ctx, 0, 4, evs.as_mut_ptr(), &mut t) };
            e.rec(format!("then: getevents = {}", ret(r)));
        }),
        c("getevents/huge_nr_small_buffer", |e| {
            let ctx = e.setup(4);
            let _f = ready_reads(e, ctx, 2);
            raw_get(e, "nr 2^40", ctx, 0, 1 << 40, Some(ts(0, 0)));
            let _f2 = ready_reads(e, ctx, 1);
            raw_get(e, "min 1 nr i64::MAX", ctx, 1, i64::MAX, Some(ts(1, 0)));
        }),
        c("getevents/negative_timeout_waits_like_none", |e| {
            // On 6.18 a negative relative timeout overflows the hrtimer's
            // expiry check and is treated as "no timeout": the call waits
            // for min_nr events. Each call here is fed after 100 ms.
            let ctx = e.setup(4);
            for (i, (what, t)) in
                [("{-1,0}", ts(-1, 0)), ("{0,-1}", ts(0, -1)), ("{-1000,0}", ts(-1000, 0))].into_iter().enumerate()
            {
                let (_r, w) = pending_poll(e, ctx, i as u64 + 1);
                let wfd = w.as_raw_fd();
                let feeder = later(100, move || {
                    write_fd(wfd, b"x");
                });
                raw_get(e, what, ctx, 1, 1, Some(t));
                feeder.join().unwrap();
                raw_get(e, "left over", ctx, 0, 4, Some(ts(0, 0)));
            }
        }),
        c("getevents/unnormalised_timeouts_accepted", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 100);
            raw_get(e, "{-5, 5.01e9} = 10ms", ctx, 1, 1, Some(ts(-5, 5_010_000_000)));
            raw_get(e, "{0, 1e9} min 0", ctx, 0, 1, Some(ts(0, 1_000_000_000)));
            raw_get(e, "{0, 999999999999} min 0", ctx, 0, 1, Some(ts(0, 999_999_999_999)));
            let _f = ready_reads(e, ctx, 1);
            raw_get(e, "{0, 2e9} event ready", ctx, 1, 1, Some(ts(0, 2_000_000_000)));
        }),
        c("getevents/huge_timeout_waits_for_event", |e| {
            let ctx = e.setup(4);
            let (_r, w) = pending_poll(e, ctx, 1);
            let wfd = w.as_raw_fd();
            let t = later(30, move || {
                write_fd(wfd, b"x");
            });
            raw_get(e, "{i64::MAX, 999999999}", ctx, 1, 1, Some(ts(i64::MAX, 999_999_999)));
            t.join().unwrap();
            let (_r2, w2) = pending_poll(e, ctx, 2);
            let wfd = w2.as_raw_fd();
            let t = later(30, move || {
                write_fd(wfd, b"x");
            });
            raw_get(e, "{2^40, 0}", ctx, 1, 1, Some(ts(1 << 40, 0)));
            t.join().unwrap();
        }),
        c("getevents/faults_checked_before_context_and_counts", |e| {
            let ctx = e.setup(4);
            let bad_ts = no_access_page() as *mut libc::timespec;
            let mut evs = [io_event::default(); 2];
            let mut one = |e: &mut Env, what: &str, ctx: u64, min: i64, nr: i64| {
                // SAFETY: the timeout pointer is unreadable on purpose.
                let r = unsafe { e.aio.getevents(ctx, min, nr, evs.as_mut_ptr(), bad_ts) };
                e.rec(format!("{what}: getevents = {}", ret(r)));
            };
            one(e, "bad ts, min>nr", ctx, 2, 1);
            one(e, "bad ts, min<0", ctx, -1, 1);
            one(e, "bad ts, destroyed-looking ctx", 0xdead_0000, 0, 1);
            let bad_sig = no_access_page() as *const aio_sigset;
            raw_pget(e, "bad sig, bad ctx", 0, 0, 1, Some(ts(0, 0)), bad_sig);
            raw_pget(e, "bad sig, min>nr", ctx, 2, 1, Some(ts(0, 0)), bad_sig);
            let bad_mask = sigarg(no_access_page() as *const u64, 8);
            raw_pget(e, "bad mask, bad ctx", 0, 0, 1, Some(ts(0, 0)), bad_mask);
            let size7 = sigarg(mask_of(SIG), 7);
            raw_pget(e, "size 7, bad ctx", 0, 0, 1, Some(ts(0, 0)), size7);
            raw_pget(e, "size 7, min>nr", ctx, 2, 1, Some(ts(0, 0)), size7);
            let mut evs = [io_event::default(); 2];
            // SAFETY: both the timeout and the signal argument are unreadable.
            let r = unsafe { e.aio.pgetevents(ctx, 0, 1, evs.as_mut_ptr(), bad_ts, bad_sig) };
            e.rec(format!("bad ts and bad sig: pgetevents = {}", ret(r)));
        }),
        c("getevents/pgetevents/sigset_rules", |e| {
            let ctx = e.setup(4);
            let m = mask_of(SIG);
            for (what, s) in [
                ("null sig", std::ptr::null::<aio_sigset>()),
                ("mask, size 8", sigarg(m, 8) as *const _),
                ("mask, size 0", sigarg(m, 0) as *const _),
                ("mask, size 4", sigarg(m, 4) as *const _),
                ("mask, size 16", sigarg(m, 16) as *const _),
                ("mask, size 128", sigarg(m, 128) as *const _),
                ("null mask, size 0", sigarg(std::ptr::null(), 0) as *const _),
                ("null mask, size 7", sigarg(std::ptr::null(), 7) as *const _),
                ("null mask, size usize::MAX", sigarg(std::ptr::null(), usize::MAX) as *const _),
                ("unreadable mask, size 8", sigarg(no_access_page() as *const u64, 8) as *const _),
                ("unreadable mask, size 7", sigarg(no_access_page() as *const u64, 7) as *const _),
                ("unreadable sig", no_access_page() as *const aio_sigset),
                ("kernel-address sig", 0xffff_8000_0000_0000u64 as *const aio_sigset),
            ] {
                raw_pget(e, what, ctx, 0, 1, Some(ts(0, 0)), s);
            }
        }),
        c("getevents/pgetevents/returns_events_with_mask", |e| {
            let ctx = e.setup(4);
            let _f = ready_reads(e, ctx, 2);
            let s = sigarg(mask_of(SIG), 8);
            raw_pget(e, "with mask", ctx, 1, 1, Some(ts(1, 0)), s);
            raw_pget(e, "null sig", ctx, 1, 1, Some(ts(1, 0)), std::ptr::null());
            raw_pget(e, "empty", ctx, 1, 1, Some(ts(0, 10_000_000)), s);
        }),
        c("getevents/pgetevents/pending_signal_delivered_under_mask_with_events_ready", |e| {
            let ctx = e.setup(4);
            let _f = ready_reads(e, ctx, 2);
            install_handler(false);
            SIG_COUNT.store(0, std::sync::atomic::Ordering::SeqCst);
            set_blocked(SIG, true);
            // SAFETY: raising a signal that is blocked: it stays pending.
            unsafe { libc::raise(SIG) };
            let none = Box::leak(Box::new(0u64));
            raw_pget(e, "empty mask, events ready", ctx, 1, 2, Some(ts(1, 0)), sigarg(none, 8));
            let ran = SIG_COUNT.load(std::sync::atomic::Ordering::SeqCst);
            e.rec(format!("handler ran {ran} time(s), still pending {}", pending(SIG)));
            // Whatever is left pending goes before the mask comes back.
            take_pending(SIG, 0);
            set_blocked(SIG, false);
        }),
        c("getevents/timeout_seconds_wrapping_to_a_short_wait", |e| {
            // -18446744073 s: the kernel's 64-bit nanosecond product wraps
            // to about 0.71 s, a finite wait that ends with no event.
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            raw_get(e, "tv_sec -18446744073", ctx, 1, 1, Some(ts(-18_446_744_073, 0)));
        }),
        c("getevents/pgetevents/mask_restored_after_call", |e| {
            let ctx = e.setup(4);
            install_handler(false);
            set_blocked(libc::SIGUSR1, true);
            let all = Box::leak(Box::new(!0u64));
            let s = sigarg(all, 8);
            raw_pget(e, "block everything for 10ms", ctx, 1, 1, Some(ts(0, 10_000_000)), s);
            let m = thread_mask();
            e.rec(format!("after: SIGUSR1 blocked = {}, SIG blocked = {}", has(&m, libc::SIGUSR1), has(&m, SIG)));
            let none = Box::leak(Box::new(0u64));
            let s = sigarg(none, 8);
            raw_pget(e, "unblock everything for 10ms", ctx, 1, 1, Some(ts(0, 10_000_000)), s);
            let m = thread_mask();
            e.rec(format!("after: SIGUSR1 blocked = {}, SIG blocked = {}", has(&m, libc::SIGUSR1), has(&m, SIG)));
            set_blocked(libc::SIGUSR1, false);
        }),
        c("getevents/signal/interrupts_getevents", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            install_handler(false);
            SIG_COUNT.store(0, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_get(e, "no SA_RESTART", ctx, 1, 1, Some(ts(5, 0)));
            sp.stop();
            e.rec(format!("handler ran = {}", SIG_COUNT.load(std::sync::atomic::Ordering::SeqCst) > 0));
        }),
        c("getevents/signal/interrupts_getevents_despite_sa_restart", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            install_handler(true);
            SIG_COUNT.store(0, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_get(e, "SA_RESTART", ctx, 1, 1, Some(ts(5, 0)));
            sp.stop();
            e.rec(format!("handler ran = {}", SIG_COUNT.load(std::sync::atomic::Ordering::SeqCst) > 0));
            install_handler(false);
        }),
        c("getevents/signal/interrupts_getevents_without_timeout", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            install_handler(false);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_get(e, "null timeout", ctx, 1, 1, None);
            sp.stop();
        }),
        c("getevents/signal/interrupted_with_some_events_returns_them", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            let _f = ready_reads(e, ctx, 1);
            install_handler(false);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_get(e, "min 2, one ready", ctx, 2, 2, Some(ts(5, 0)));
            sp.stop();
        }),
        c("getevents/signal/interrupted_after_an_event_arrived_returns_it", |e| {
            // The event comes while the call waits for two (not before it
            // started), then a signal, then the second event: the call
            // returns the first at the signal.
            let ctx = e.setup(4);
            let (_r1, w1) = pending_poll(e, ctx, 1);
            let (_r2, w2) = pending_poll(e, ctx, 2);
            install_handler(false);
            // SAFETY: pthread_self of the case thread.
            let me = unsafe { libc::pthread_self() } as usize;
            let (a, b) = (w1.as_raw_fd(), w2.as_raw_fd());
            let t = later(150, move || {
                write_fd(a, b"x");
                std::thread::sleep(Duration::from_millis(250));
                // SAFETY: the case thread waits in io_getevents until the
                // second event, which comes after this signal.
                unsafe { libc::pthread_kill(me as libc::pthread_t, SIG) };
                std::thread::sleep(Duration::from_millis(1500));
                write_fd(b, b"y");
            });
            raw_get(e, "min 2, one arrives, then a signal", ctx, 2, 2, Some(ts(10, 0)));
            t.join().expect("helper thread");
            raw_get(e, "the rest", ctx, 1, 2, Some(ts(10, 0)));
        }),
        c("getevents/signal/a_process_signal_is_left_to_the_programs_threads", |e| {
            // A program whose only thread blocks a signal and takes it
            // with sigtimedwait: a signal sent to the process stays pending
            // for it. The kernel's AIO has no threads; uaio's own (workers,
            // poller, progress) must not take it either.
            let aio = aio_of(e);
            let data = vec![b's'; 1 << 16];
            let files: Vec<i32> = (0..4).map(|_| e.file(&data, libc::O_RDWR).into_raw_fd()).collect();
            let (r, w) = pipe();
            let fds = files.clone();
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                install_handler(false);
                SIG_COUNT.store(0, std::sync::atomic::Ordering::SeqCst);
                let mut ctx = 0u64;
                // SAFETY: a valid pointer to a zeroed handle.
                out.push(format!("setup = {}", ret(unsafe { aio.setup(16, &mut ctx) })));
                let mut cbs: Vec<*mut iocb> = fds
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| leak(cb(IOCB_CMD_FSYNC, f, 0, 0, 0, i as u64)) as *mut iocb)
                    .collect();
                let poll = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 9));
                cbs.push(poll);
                // SAFETY: valid iocbs; the POLL stays pending until destroy.
                out.push(format!("submit = {}", ret(unsafe { aio.submit(ctx, cbs.len() as i64, cbs.as_mut_ptr()) })));
                let mut ev = [io_event::default(); 4];
                let mut t = ts(10, 0);
                // SAFETY: room for four events.
                let n = unsafe { aio.getevents(ctx, 4, 4, ev.as_mut_ptr(), &mut t) };
                out.push(format!("syncs reaped = {}", ret(n)));
                set_blocked(SIG, true);
                // SAFETY: kill(2) to this process; a set of one signal for
                // sigtimedwait(2), which the thread blocks.
                let got = unsafe {
                    libc::kill(libc::getpid(), SIG);
                    // Any thread that can take it has time to.
                    std::thread::sleep(Duration::from_millis(100));
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, SIG);
                    let t = libc::timespec { tv_sec: 5, tv_nsec: 0 };
                    libc::sigtimedwait(&set, std::ptr::null_mut(), &t)
                };
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                out.push(format!(
                    "sigtimedwait = {}",
                    if got == SIG { "the signal".to_string() } else { errno_name(-(errno as i64)) }
                ));
                out.push(format!("handler ran = {}", SIG_COUNT.load(std::sync::atomic::Ordering::SeqCst)));
                // SAFETY: destroying the context made above.
                out.push(format!("destroy = {}", ret(unsafe { aio.destroy(ctx) })));
            });
            drop(w);
            for f in files {
                // SAFETY: closing the descriptors made above.
                unsafe { libc::close(f) };
            }
            e.rec_all(lines);
        }),
        c("getevents/signal/a_handler_submits_and_reaps_on_another_context_meanwhile", |e| {
            // A timer signal every 200 µs, whose handler submits a POLL of a
            // ready pipe to a second context and reaps that context without
            // waiting, while the thread it interrupts submits and reaps reads
            // on the first: nothing may hang, crash or be lost, and what the
            // handler submitted completes once (uaio may refuse the
            // handler's calls that interrupted it holding a lock: EAGAIN).
            handler_reentry(e, false, false);
        }),
        c("getevents/signal/a_handler_submits_and_reaps_on_the_same_context_meanwhile", |e| {
            // The same on the context the interrupted thread uses.
            handler_reentry(e, true, false);
        }),
        c("getevents/signal/a_handler_submits_and_waits_on_the_same_context_meanwhile", |e| {
            // The same, the handler's reap waiting up to 50 µs for an
            // event: it may interrupt uaio's own allocations, and must not
            // wait for the allocator's lock nor corrupt its heap.
            handler_reentry(e, true, true);
        }),
        c("getevents/signal/interrupts_pgetevents", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            install_handler(true);
            let s = sigarg(mask_of(libc::SIGUSR1), 8);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_pget(e, "mask without SIG", ctx, 1, 1, Some(ts(5, 0)), s);
            raw_pget(e, "null sig", ctx, 1, 1, Some(ts(5, 0)), std::ptr::null());
            sp.stop();
            install_handler(false);
        }),
        c("getevents/signal/pgetevents_mask_unblocks_blocked_signal", |e| {
            let ctx = e.setup(4);
            let _p = pending_poll(e, ctx, 1);
            install_handler(false);
            set_blocked(SIG, true);
            let none = Box::leak(Box::new(0u64));
            let s = sigarg(none, 8);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_get(e, "getevents with SIG blocked, 150ms", ctx, 1, 1, Some(ts(0, 150_000_000)));
            raw_pget(e, "pgetevents with empty mask", ctx, 1, 1, Some(ts(5, 0)), s);
            sp.stop();
            e.rec(format!("SIG still blocked = {}", has(&thread_mask(), SIG)));
            while take_pending(SIG, 0) {}
            set_blocked(SIG, false);
        }),
        c("getevents/signal/pgetevents_mask_blocks_signal", |e| {
            let ctx = e.setup(4);
            let (_r, w) = pending_poll(e, ctx, 1);
            install_handler(false);
            SIG_COUNT.store(0, std::sync::atomic::Ordering::SeqCst);
            let s = sigarg(mask_of(SIG), 8);
            // SAFETY: pthread_self of the case thread.
            let sp = Spammer::start(unsafe { libc::pthread_self() });
            raw_pget(e, "SIG blocked, 200ms, nothing comes", ctx, 1, 1, Some(ts(0, 200_000_000)), s);
            let wfd = w.as_raw_fd();
            let t = later(150, move || {
                write_fd(wfd, b"x");
            });
            raw_pget(e, "SIG blocked, event after 150ms", ctx, 1, 1, Some(ts(5, 0)), s);
            t.join().unwrap();
            sp.stop();
            e.rec(format!("handler ran after = {}", SIG_COUNT.load(std::sync::atomic::Ordering::SeqCst) > 0));
        }),
    ]
}
