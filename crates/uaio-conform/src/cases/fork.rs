//! Contexts across `fork`: the child sees none of the parent's (`EINVAL` for
//! every call), can make its own, and leaves the parent unaffected.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

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
        c("fork/child_sees_no_context", |e| {
            let ctx = e.setup(4);
            let is_kernel = e.is_kernel();
            let lines = in_child(move |out| {
                let a: &dyn Aio = if is_kernel { &Kernel } else { &Uaio };
                let mut evs = [io_event::default(); 1];
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                out.push(format!(
                    "child getevents = {}",
                    // SAFETY: evs and ts are live locals of the child; the
                    // parent's handle is only looked up.
                    ret(unsafe { a.getevents(ctx, 0, 1, evs.as_mut_ptr(), &mut ts) })
                ));
                // SAFETY: io_destroy takes no pointer; the parent's handle is
                // only looked up.
                out.push(format!("child destroy = {}", ret(unsafe { a.destroy(ctx) })));
                let mut c2 = 0u64;
                // SAFETY: valid pointer to a live local holding 0.
                out.push(format!("child setup = {}", ret(unsafe { a.setup(4, &mut c2) })));
                // SAFETY: destroying the child's own context; no pointer
                // involved.
                out.push(format!("child destroy own = {}", ret(unsafe { a.destroy(c2) })));
            });
            e.rec_all(lines);
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
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
    ]
}
