//! `io_cancel`: argument order, what can be cancelled (a pending POLL) and
//! what cannot (`EINVAL`).

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("cancel/rules", |e| {
            let ctx = e.setup(4);
            // SAFETY: the iocb pointer is deliberately null; both
            // implementations must report EFAULT without dereferencing it in
            // this process (the kernel checks it, uaio probes it with a
            // fault-recovering copy).
            let r = unsafe { e.aio.cancel(ctx, std::ptr::null_mut(), std::ptr::null_mut()) };
            e.rec(format!("null iocb = {}", ret(r)));
            let mut a = cb(IOCB_CMD_PREAD, 0, 0, 0, 0, 1);
            a.aio_key = 1;
            // SAFETY: a is a live local iocb, only read by io_cancel; the
            // result pointer is null and unused by both implementations.
            let r = unsafe { e.aio.cancel(ctx, &mut a, std::ptr::null_mut()) };
            e.rec(format!("key 1 = {}", ret(r)));
            a.aio_key = 0;
            // SAFETY: as above; the handle is only looked up.
            let r = unsafe { e.aio.cancel(0, &mut a, std::ptr::null_mut()) };
            e.rec(format!("bad ctx = {}", ret(r)));
            // SAFETY: as above.
            let r = unsafe { e.aio.cancel(ctx, &mut a, std::ptr::null_mut()) };
            e.rec(format!("never submitted = {}", ret(r)));
        }),
        c("cancel/iocb_unreadable_efault", |e| {
            let ctx = e.setup(4);
            let bad = no_access_page() as *mut iocb;
            cancel(e, "unreadable", ctx, bad);
            cancel(e, "unreadable, bad ctx", 0, bad);
            cancel(e, "kernel address", ctx, 0xffff_8000_0000_0000u64 as *mut iocb);
            // aio_key sits at offset 8: an iocb whose first 12 bytes are the
            // end of a readable page is enough.
            let p = page_then_hole() + 4096 - 12;
            cancel(e, "only key readable", ctx, p as *mut iocb);
            cancel(e, "key itself past the end", ctx, (p + 8) as *mut iocb);
        }),
        c("cancel/key_and_context_order", |e| {
            let ctx = e.setup(4);
            let (r, _w) = pipe();
            let a = poll_cb(&r, 1);
            e.submit(ctx, &mut [&mut *a]);
            a.aio_key = 5;
            cancel(e, "key changed to 5, bad ctx", 0, a);
            cancel(e, "key changed to 5", ctx, a);
            a.aio_key = 0;
            cancel(e, "key restored, bad ctx", 0xdead_0000, a);
            cancel(e, "key restored", ctx, a);
            e.reap(ctx, 1);
        }),
        c("cancel/completed_requests_einval", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let a = leak(cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 3, 0, 1));
            e.submit(ctx, &mut [&mut *a]);
            e.rec(format!("ready = {}", wait_ready(ctx, 1)));
            cancel(e, "read done, not reaped", ctx, a);
            e.reap(ctx, 1);
            cancel(e, "read reaped", ctx, a);
            let (_pr, pw) = pipe();
            let p = leak(cb(IOCB_CMD_POLL, pw.as_raw_fd(), libc::POLLOUT as u64, 0, 0, 2));
            e.submit(ctx, &mut [&mut *p]);
            e.rec(format!("ready = {}", wait_ready(ctx, 1)));
            cancel(e, "poll done, not reaped", ctx, p);
            e.reap(ctx, 1);
            let s = leak(cb(IOCB_CMD_FSYNC, f.as_raw_fd(), 0, 0, 0, 3));
            e.submit(ctx, &mut [&mut *s]);
            e.reap(ctx, 1);
            cancel(e, "fsync reaped", ctx, s);
        }),
        c("cancel/poll_twice_before_reaping", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            let a = poll_cb(&r, 1);
            e.submit(ctx, &mut [&mut *a]);
            cancel(e, "first", ctx, a);
            cancel(e, "second", ctx, a);
            e.reap(ctx, 1);
            write_fd(w.as_raw_fd(), b"x");
            e.getevents(ctx, 0, 1, Some(Duration::from_millis(20)));
            cancel(e, "after reaping", ctx, a);
        }),
        c("cancel/poll_among_several", |e| {
            let ctx = e.setup(8);
            let (r, w) = pipe();
            let cbs: Vec<&'static mut iocb> = (1..=4).map(|i| poll_cb(&r, i)).collect();
            let ptrs: Vec<*mut iocb> = cbs.into_iter().map(|c| c as *mut iocb).collect();
            for &p in &ptrs {
                // SAFETY: leaked, valid iocbs.
                e.submit(ctx, &mut [unsafe { &mut *p }]);
            }
            cancel(e, "second", ctx, ptrs[1]);
            cancel(e, "fourth", ctx, ptrs[3]);
            e.reap(ctx, 2);
            write_fd(w.as_raw_fd(), b"x");
            e.reap(ctx, 2);
        }),
        c("cancel/wrong_context_or_copy", |e| {
            let ctx = e.setup(4);
            let other = e.setup(4);
            let (r, _w) = pipe();
            let a = poll_cb(&r, 1);
            e.submit(ctx, &mut [&mut *a]);
            cancel(e, "other context", other, a);
            let mut copy = *a;
            cancel(e, "copy of the iocb", ctx, &mut copy);
            let res = no_access_page() as *mut io_event;
            // SAFETY: the result argument is ignored by the kernel.
            let rr = unsafe { e.aio.cancel(ctx, a, res) };
            e.rec(format!("right context, unwritable result: cancel = {}", ret(rr)));
            e.reap(ctx, 1);
            e.getevents(other, 0, 1, Some(Duration::ZERO));
        }),
        c("cancel/poll_with_resfd", |e| {
            let ctx = e.setup(4);
            let (r, _w) = pipe();
            let efd = eventfd();
            let a = poll_cb(&r, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = efd.as_raw_fd() as u32;
            e.submit(ctx, &mut [&mut *a]);
            e.rec(format!("count before = {}", eventfd_count(&efd)));
            cancel(e, "poll", ctx, a);
            e.reap(ctx, 1);
            e.rec(format!("count after = {}", eventfd_count(&efd)));
        }),
    ]
}
