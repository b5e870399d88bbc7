//! io_cancel and io_destroy beyond the core set.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::util::*;
use crate::*;

fn poll_cb(fd: &std::os::fd::OwnedFd, data: u64) -> &'static mut iocb {
    leak(cb(IOCB_CMD_POLL, fd.as_raw_fd(), libc::POLLIN as u64, 0, 0, data))
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
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
        c("destroy/with_pending_polls", |e| {
            let ctx = e.setup(8);
            let (r, w) = pipe();
            let cbs: Vec<*mut iocb> = (1..=5).map(|i| poll_cb(&r, i) as *mut iocb).collect();
            for &p in &cbs {
                // SAFETY: leaked, valid iocbs.
                e.submit(ctx, &mut [unsafe { &mut *p }]);
            }
            destroy(e, "5 polls pending", ctx);
            destroy(e, "again", ctx);
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            cancel(e, "after destroy", ctx, cbs[0]);
            let first = cbs[0];
            // SAFETY: as above.
            e.submit(ctx, &mut [unsafe { &mut *first }]);
            e.rec(format!("pipe still usable: write = {}", write_fd(w.as_raw_fd(), b"x")));
        }),
        c("destroy/with_unreaped_events", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            for i in 0..4 {
                let buf = leak_buf(2).as_mut_ptr() as u64;
                sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 2, i, i as u64));
            }
            e.rec(format!("ready = {}", wait_ready(ctx, 4)));
            destroy(e, "4 unreaped", ctx);
            e.getevents(ctx, 0, 4, Some(Duration::ZERO));
        }),
        c("destroy/unmaps_ring", |e| {
            let ctx = e.setup(8);
            let mapped = |a: u64| {
                let mut v = [0u8; 1];
                // SAFETY: mincore only inspects the mapping.
                unsafe { libc::mincore(a as *mut libc::c_void, 4096, v.as_mut_ptr()) == 0 }
            };
            e.rec(format!("mapped before = {}", mapped(ctx)));
            destroy(e, "", ctx);
            e.rec(format!("mapped after = {}", mapped(ctx)));
        }),
        c("destroy/wakes_all_waiters", |e| {
            let ctx = e.setup(4);
            let aio = aio_of(e);
            let ts_: Vec<_> = (0..3)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut evs = [io_event::default(); 1];
                        let mut t = ts(5, 0);
                        let s = aio_sigset { sigmask: std::ptr::null(), sigsetsize: 8 };
                        // SAFETY: valid buffers; the context is destroyed under us.
                        unsafe {
                            if i == 2 {
                                aio.pgetevents(ctx, 1, 1, evs.as_mut_ptr(), &mut t, &s)
                            } else {
                                aio.getevents(ctx, 1, 1, evs.as_mut_ptr(), &mut t)
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            destroy(e, "", ctx);
            for (i, t) in ts_.into_iter().enumerate() {
                let r = t.join().unwrap();
                e.rec(format!("waiter {i} = {}", ret(r)));
            }
        }),
        c("destroy/waiter_with_null_timeout_woken", |e| {
            let ctx = e.setup(4);
            let aio = aio_of(e);
            let t = std::thread::spawn(move || {
                let mut evs = [io_event::default(); 1];
                // SAFETY: valid buffer, no timeout; destroy wakes us.
                unsafe { aio.getevents(ctx, 1, 1, evs.as_mut_ptr(), std::ptr::null_mut()) }
            });
            std::thread::sleep(Duration::from_millis(100));
            destroy(e, "", ctx);
            e.rec(format!("waiter = {}", ret(t.join().unwrap())));
        }),
        c("destroy/then_setup_again", |e| {
            let f = e.file(b"abcdef", libc::O_RDWR);
            for round in 0..3 {
                let ctx = e.setup(4);
                let buf = leak_buf(2).as_mut_ptr() as u64;
                sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 2, round, round as u64));
                e.reap(ctx, 1);
                destroy(e, &format!("round {round}"), ctx);
            }
        }),
        c("destroy/other_contexts_unaffected", |e| {
            let a = e.setup(4);
            let b = e.setup(4);
            let c2 = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let (r, _w) = pipe();
            let pa = poll_cb(&r, 1);
            e.submit(a, &mut [&mut *pa]);
            let pb = poll_cb(&r, 2);
            e.submit(b, &mut [&mut *pb]);
            destroy(e, "b", b);
            cancel(e, "poll on a", a, pa);
            e.reap(a, 1);
            let buf = leak_buf(2).as_mut_ptr() as u64;
            sub1(e, c2, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 2, 0, 3));
            e.reap(c2, 1);
        }),
        c("destroy/many_contexts", |e| {
            let aio = e.aio;
            let mut ctxs = Vec::new();
            let mut fails = 0;
            for _ in 0..200 {
                let mut c = 0u64;
                // SAFETY: valid pointer to a zeroed handle.
                if unsafe { aio.setup(1, &mut c) } == 0 {
                    ctxs.push(c);
                } else {
                    fails += 1;
                }
            }
            let mut distinct = ctxs.clone();
            distinct.sort();
            distinct.dedup();
            // SAFETY: reading ring headers of live contexts.
            let mut ids: Vec<u32> = ctxs.iter().map(|&c| unsafe { (*ring(c)).id }).collect();
            let max_id = ids.iter().copied().max().unwrap_or(0) as i64 - ids.iter().copied().min().unwrap_or(0) as i64;
            ids.sort();
            ids.dedup();
            e.rec(format!(
                "setup ok {} failed {fails}, distinct handles {}, distinct ids {}",
                ctxs.len(),
                distinct.len(),
                ids.len()
            ));
            e.rec(format!("id span = {max_id}"));
            // SAFETY: destroying what we created, in reverse.
            let ok = ctxs.iter().rev().filter(|&&c| unsafe { aio.destroy(c) } == 0).count();
            e.rec(format!("destroyed {ok}"));
            // SAFETY: as above.
            let again = ctxs.iter().filter(|&&c| unsafe { aio.destroy(c) } == -(libc::EINVAL as i64)).count();
            e.rec(format!("second destroy EINVAL {again}"));
        }),
        c("destroy/ring_id_reused", |e| {
            let a = e.setup(4);
            let b = e.setup(4);
            let c2 = e.setup(4);
            // SAFETY: reading ring headers of live contexts.
            let id = |c: u64| unsafe { (*ring(c)).id } as i64;
            let (ia, ib, ic) = (id(a), id(b), id(c2));
            e.rec(format!("b-a = {} c-a = {}", ib - ia, ic - ia));
            destroy(e, "b", b);
            let d = e.setup(4);
            e.rec(format!("new-a = {}", id(d) - ia));
            let x = e.setup(4);
            e.rec(format!("next-a = {}", id(x) - ia));
        }),
    ]
}
