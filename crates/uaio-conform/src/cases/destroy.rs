//! `io_destroy`: dead handles, waiters woken with `EINVAL`, pending and
//! unreaped requests, the ring unmapped, other contexts unaffected.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("destroy/rules", |e| {
            let ctx = e.setup(4);
            // SAFETY: io_destroy takes no pointer; the handle is only looked
            // up.
            let r = unsafe { e.aio.destroy(ctx) };
            e.rec(format!("destroy = {}", ret(r)));
            // SAFETY: as above; the second destroy finds nothing (EINVAL).
            let r = unsafe { e.aio.destroy(ctx) };
            e.rec(format!("again = {}", ret(r)));
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            let mut a = cb(IOCB_CMD_PREAD, 0, 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            // SAFETY: as above; handle 0 is invalid (EINVAL).
            let r = unsafe { e.aio.destroy(0) };
            e.rec(format!("destroy 0 = {}", ret(r)));
        }),
        c("destroy/wakes_waiter_einval", |e| {
            let ctx = e.setup(4);
            let aio = e.aio as *const dyn Aio as *const () as usize;
            let _ = aio;
            let is_kernel = e.is_kernel();
            let t = std::thread::spawn(move || {
                let mut evs = [io_event::default(); 1];
                let mut ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
                let a: &dyn Aio = if is_kernel { &Kernel } else { &Uaio };
                // SAFETY: evs and ts are locals of this thread, alive for the
                // whole call; the context being destroyed meanwhile is
                // reported, not a memory hazard.
                unsafe { a.getevents(ctx, 1, 1, evs.as_mut_ptr(), &mut ts) }
            });
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: io_destroy takes no pointer; the handle is only looked
            // up.
            let r = unsafe { e.aio.destroy(ctx) };
            e.rec(format!("destroy = {}", ret(r)));
            let w = t.join().unwrap();
            e.rec(format!("waiter = {}", ret(w)));
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
