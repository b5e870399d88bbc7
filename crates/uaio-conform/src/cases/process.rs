//! Process-level rules: the aio-max-nr budget, ring sizes, capabilities for
//! real-time I/O priority, and contexts across fork.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::util::*;
use crate::*;

fn aio_max_nr() -> u32 {
    std::fs::read_to_string("/proc/sys/fs/aio-max-nr").unwrap().trim().parse().unwrap()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_NICE: u32 = 23;

/// Drops capabilities from the calling thread's effective set; 0 on success.
fn drop_effective(caps: &[u32]) -> i64 {
    let mut h = CapHeader { version: 0x2008_0522, pid: 0 };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return -1;
        }
        for &c in caps {
            d[(c / 32) as usize].effective &= !(1 << (c % 32));
        }
        libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) as i64
    }
}

/// What this process may still ask of io_setup: the host-wide remainder for
/// the kernel (other processes may hold contexts), the whole of aio-max-nr
/// for uaio (its budget is per process, and the case starts with none).
fn budget(e: &Env) -> u32 {
    let max = aio_max_nr();
    if e.is_kernel() {
        let used: u32 = std::fs::read_to_string("/proc/sys/fs/aio-nr").unwrap().trim().parse().unwrap();
        max - used
    } else {
        max
    }
}

/// Contexts made by [`quiet_setup`], destroyed when dropped.
struct Owned(&'static dyn Aio, Vec<u64>);

impl Drop for Owned {
    fn drop(&mut self) {
        for &c in &self.1 {
            // SAFETY: destroying our own contexts (EINVAL if already gone).
            unsafe { self.0.destroy(c) };
        }
    }
}

/// io_setup without recording `nr` (budget numbers depend on the host).
fn quiet_setup(o: &mut Owned, nr: u32) -> (i64, u64) {
    let mut ctx = 0u64;
    // SAFETY: valid pointer to a zeroed handle.
    let r = unsafe { o.0.setup(nr, &mut ctx) };
    if r == 0 {
        o.1.push(ctx);
    }
    (r, ctx)
}

/// In a forked child: io_setup, one read of `fd`, reap, destroy; each step
/// recorded.
fn child_io(a: &dyn Aio, fd: i32, out: &mut Vec<String>) {
    let mut ctx = 0u64;
    // SAFETY: valid pointer to a zeroed handle.
    out.push(format!("child setup = {}", ret(unsafe { a.setup(4, &mut ctx) })));
    let mut buf = [0u8; 3];
    let mut r = cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 3, 0, 7);
    let mut p = [&mut r as *mut iocb];
    // SAFETY: a valid iocb.
    out.push(format!("child submit = {}", ret(unsafe { a.submit(ctx, 1, p.as_mut_ptr()) })));
    let mut ev = [io_event::default(); 1];
    let mut t = ts(5, 0);
    // SAFETY: room for one event.
    let n = unsafe { a.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
    out.push(format!("child getevents = {} data={} res={}", ret(n), ev[0].data, ev[0].res));
    out.push(format!("child buf = {:?}", String::from_utf8_lossy(&buf)));
    // SAFETY: destroying our own context.
    out.push(format!("child destroy = {}", ret(unsafe { a.destroy(ctx) })));
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("setup/aio_max_nr_boundary", |e| {
            let avail = budget(e);
            let o = &mut Owned(aio_of(e), Vec::new());
            let ctx = quiet_setup(o, avail);
            e.rec(format!("nr == whole budget: {}", ret(ctx.0)));
            e.rec(format!("one more: {}", ret(quiet_setup(o, 1).0)));
            destroy(e, "whole budget", ctx.1);
            let h1 = quiet_setup(o, avail / 2);
            let h2 = quiet_setup(o, avail - avail / 2);
            let h3 = quiet_setup(o, 1);
            e.rec(format!("two halves: {} {}, one more: {}", ret(h1.0), ret(h2.0), ret(h3.0)));
            destroy(e, "first half", h1.1);
            e.rec(format!("after freeing a half: {}", ret(quiet_setup(o, 1).0)));
        }),
        c("setup/budget_counts_requested_nr", |e| {
            let avail = budget(e);
            let o = &mut Owned(aio_of(e), Vec::new());
            let a = quiet_setup(o, avail - 10);
            let b = quiet_setup(o, 11);
            let c2 = quiet_setup(o, 10);
            let d = quiet_setup(o, 1);
            e.rec(format!("all-10: {}, 11: {}, 10: {}, 1: {}", ret(a.0), ret(b.0), ret(c2.0), ret(d.0)));
            destroy(e, "10", c2.1);
            e.rec(format!("after freeing 10: 10 again {}", ret(quiet_setup(o, 10).0)));
        }),
        c("setup/size_limit_boundary", |e| {
            for nr in [4_194_304u32, 4_194_305, 0x1000_0000, 0xffff_ffff] {
                e.setup(nr);
            }
        }),
        c("setup/ring_nr_for_sizes", |e| {
            for nr in [2u32, 3, 7, 8, 9, 63, 64, 65, 126, 127, 128, 129, 255, 256, 511, 512, 1023, 1024, 1025, 10000] {
                let mut ctx = 0u64;
                // SAFETY: valid pointer to a zeroed handle.
                let r = unsafe { e.aio.setup(nr, &mut ctx) };
                // SAFETY: reading the header of the context just created.
                let h = if r == 0 { unsafe { *ring(ctx) } } else { aio_ring::default() };
                e.rec(format!("nr {nr}: setup = {} ring nr {}", ret(r), h.nr));
                if r == 0 {
                    // SAFETY: destroying our context.
                    unsafe { e.aio.destroy(ctx) };
                }
            }
        }),
        c("setup/slots_per_size", |e| {
            for nr in [1u32, 8, 32, 100] {
                let ctx = e.setup(nr);
                let (r, _w) = pipe();
                let mut n = 0;
                loop {
                    let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, n));
                    let mut p = [a as *mut iocb];
                    // SAFETY: one valid iocb.
                    let k = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
                    if k != 1 {
                        e.rec(format!("nr {nr}: {n} pending, then {}", ret(k)));
                        break;
                    }
                    n += 1;
                    if n > 5000 {
                        e.rec("never full");
                        break;
                    }
                }
                destroy(e, "", ctx);
            }
        }),
        c("ioprio/rt_with_capabilities_ok", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 3, 0, 1);
            a.aio_flags = IOCB_FLAG_IOPRIO;
            a.aio_reqprio = ioprio_value(IOPRIO_CLASS_RT, 4) as i16;
            if try_key(e, ctx, "RT 4 as root", a) == 1 {
                e.reap(ctx, 1);
            }
        }),
        c("ioprio/rt_without_capabilities_eperm", |e| {
            let f = e.file(b"abc", libc::O_RDWR);
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                let mut ctx = 0u64;
                // SAFETY: valid pointer to a zeroed handle.
                out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
                let try_prio = |out: &mut Vec<String>, what: &str, prio: i16| {
                    let mut buf = [0u8; 3];
                    let mut a = cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 3, 0, 1);
                    a.aio_flags = IOCB_FLAG_IOPRIO;
                    a.aio_reqprio = prio;
                    a.aio_key = 9;
                    let mut p = [&mut a as *mut iocb];
                    // SAFETY: a valid iocb.
                    let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                    let mut n = 0;
                    if r == 1 {
                        let mut ev = [io_event::default(); 1];
                        let mut t = ts(5, 0);
                        // SAFETY: room for one event.
                        n = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                    }
                    out.push(format!("{what}: submit = {} key={} reaped {n}", ret(r), a.aio_key));
                };
                try_prio(out, "RT with caps", ioprio_value(IOPRIO_CLASS_RT, 0) as i16);
                out.push(format!("drop SYS_ADMIN = {}", drop_effective(&[CAP_SYS_ADMIN])));
                try_prio(out, "RT with SYS_NICE only", ioprio_value(IOPRIO_CLASS_RT, 0) as i16);
                out.push(format!("drop SYS_NICE = {}", drop_effective(&[CAP_SYS_NICE])));
                try_prio(out, "RT without caps", ioprio_value(IOPRIO_CLASS_RT, 0) as i16);
                try_prio(out, "RT 7 without caps", ioprio_value(IOPRIO_CLASS_RT, 7) as i16);
                try_prio(out, "BE 0 without caps", ioprio_value(IOPRIO_CLASS_BE, 0) as i16);
                try_prio(out, "IDLE without caps", ioprio_value(IOPRIO_CLASS_IDLE, 0) as i16);
                try_prio(out, "invalid class without caps", -1);
                // SAFETY: destroying our own context.
                out.push(format!("destroy = {}", ret(unsafe { aio.destroy(ctx) })));
            });
            e.rec_all(lines);
        }),
        c("fork/parent_handle_invalid_for_every_call", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let (r, _w) = pipe();
            let pending = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            e.submit(ctx, &mut [&mut *pending]);
            let pp = pending as *mut iocb as usize;
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                let mut buf = [0u8; 3];
                let mut a = cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 3, 0, 1);
                let mut p = [&mut a as *mut iocb];
                // SAFETY: a valid iocb; the handle is the parent's.
                out.push(format!("child submit = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
                out.push(format!(
                    "child cancel = {}",
                    // SAFETY: the parent's pending iocb, inherited memory.
                    ret(unsafe { aio.cancel(ctx, pp as *mut iocb, std::ptr::null_mut()) })
                ));
                let mut ev = [io_event::default(); 1];
                let mut t = ts(0, 0);
                let s = aio_sigset { sigmask: std::ptr::null(), sigsetsize: 8 };
                out.push(format!(
                    "child pgetevents = {}",
                    // SAFETY: room for one event.
                    ret(unsafe { aio.pgetevents(ctx, 0, 1, ev.as_mut_ptr(), &mut t, &s) })
                ));
                out.push(format!(
                    "child getevents = {}",
                    // SAFETY: as above.
                    ret(unsafe { aio.getevents(ctx, 0, 1, ev.as_mut_ptr(), &mut t) })
                ));
                // SAFETY: destroying the parent's handle must fail.
                out.push(format!("child destroy = {}", ret(unsafe { aio.destroy(ctx) })));
            });
            e.rec_all(lines);
            cancel(e, "parent cancels its poll", ctx, pending);
            e.reap(ctx, 1);
        }),
        c("fork/child_does_its_own_io", |e| {
            let _parent = e.setup(4);
            let f = e.file(b"xyz", libc::O_RDWR);
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                child_io(aio, fd, out);
                child_io(aio, fd, out);
            });
            e.rec_all(lines);
        }),
        c("fork/parent_unaffected_by_child", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"xyz", libc::O_RDWR);
            let (r, w) = pipe();
            sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                // SAFETY: the parent's handle.
                out.push(format!("child destroy parent ctx = {}", ret(unsafe { aio.destroy(ctx) })));
                child_io(aio, fd, out);
            });
            e.rec_all(lines);
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            write_fd(w.as_raw_fd(), b"x");
            e.reap(ctx, 1);
            let buf = leak_buf(3).as_mut_ptr() as u64;
            sub1(e, ctx, cb(IOCB_CMD_PREAD, fd, buf, 3, 0, 2));
            e.reap(ctx, 1);
        }),
        c("fork/child_exits_with_pending_request", |e| {
            let ctx = e.setup(4);
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                let (r, _w) = pipe();
                let mut c2 = 0u64;
                // SAFETY: valid pointer to a zeroed handle.
                out.push(format!("child setup = {}", ret(unsafe { aio.setup(4, &mut c2) })));
                let mut a = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1);
                let mut p = [&mut a as *mut iocb];
                // SAFETY: a valid iocb.
                out.push(format!("child submit = {}", ret(unsafe { aio.submit(c2, 1, p.as_mut_ptr()) })));
                // Exit without destroying anything.
            });
            e.rec_all(lines);
            let f = e.file(b"xyz", libc::O_RDWR);
            let buf = leak_buf(3).as_mut_ptr() as u64;
            sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 3, 0, 2));
            e.reap(ctx, 1);
        }),
        Case {
            name: "ext/aio_max_nr_per_process",
            expect: Expect::Differs {
                why: "aio-max-nr is honoured per process: a child has a budget of its own",
                kernel: "child setup(1) = EAGAIN",
                uaio: "child setup(1) = 0",
            },
            run: |e| {
                let avail = budget(e);
                let o = &mut Owned(aio_of(e), Vec::new());
                let whole = quiet_setup(o, avail);
                e.rec(format!("parent takes the whole budget: {}", ret(whole.0)));
                let aio = aio_of(e);
                let lines = in_child(move |out| {
                    // SAFETY: alarm(2); the child is killed if it hangs.
                    unsafe { libc::alarm(20) };
                    let mut c = 0u64;
                    // SAFETY: valid pointer to a zeroed handle.
                    let r = unsafe { aio.setup(1, &mut c) };
                    out.push(format!("child setup(1) = {}", ret(r)));
                    if r == 0 {
                        // SAFETY: destroying our own context.
                        unsafe { aio.destroy(c) };
                    }
                });
                e.rec_all(lines);
            },
        },
    ]
}
