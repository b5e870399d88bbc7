//! `IOCB_CMD_POLL`: field rules, readiness and masks, wake-ups, hang-up, a
//! descriptor closed while the poll is pending.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        // A FIFO open for reading and writing, and a pty's two ends, poll
        // on two queues: the kernel's AIO poll refuses them in io_submit
        // (EINVAL) unless they are ready at once. Before, uaio accepted
        // them and completed them when ready.
        c("poll/files_that_poll_two_queues", |e| {
            let ctx = e.setup(8);
            let fifo = named_fifo(e);
            let (r, _w) = pipe();
            let (mut m, mut s) = (-1, -1);
            // SAFETY: openpty(3) into two locals, with no name, termios or size.
            let pty =
                unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } == 0;
            let mut files = vec![("fifo O_RDWR", fifo.as_raw_fd()), ("pipe read end", r.as_raw_fd())];
            let ends = pty.then(|| (own(m), own(s)));
            if let Some((m, s)) = &ends {
                files.push(("pty master", m.as_raw_fd()));
                files.push(("pty slave", s.as_raw_fd()));
            } else {
                e.rec("no pty here: its part skipped");
            }
            for (what, fd) in &files {
                e.rec(*what);
                let a = leak(cb(IOCB_CMD_POLL, *fd, libc::POLLIN as u64, 0, 0, 1));
                e.submit(ctx, &mut [a]);
                // Ready at once for output.
                let b = leak(cb(IOCB_CMD_POLL, *fd, libc::POLLOUT as u64, 0, 0, 2));
                e.submit(ctx, &mut [b]);
                e.getevents(ctx, 1, 2, Some(Duration::from_millis(200)));
            }
            // SAFETY: destroying the context made above (its POLLs go).
            unsafe { e.aio.destroy(ctx) };
        }),
        c("poll/ready_and_cancel", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            let mut a = cb(IOCB_CMD_POLL, w.as_raw_fd(), libc::POLLOUT as u64, 0, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            e.reap(ctx, 1);
            let mut b = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 2);
            e.submit(ctx, &mut [&mut b]);
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            // SAFETY: b is a live local iocb, only read by io_cancel; the
            // result pointer is null and unused by both implementations.
            let res = unsafe { e.aio.cancel(ctx, &mut b, std::ptr::null_mut()) };
            e.rec(format!("cancel = {}", ret(res)));
            e.reap(ctx, 1);
            // SAFETY: as above.
            let res = unsafe { e.aio.cancel(ctx, &mut b, std::ptr::null_mut()) };
            e.rec(format!("cancel again = {}", ret(res)));
        }),
        // A POLL made ready by a write, then cancelled: done already (the
        // kernel's completes in the write's wake-up), so the cancel
        // answers EINVAL and the event carries the events. 200 rounds, the
        // write made by this thread and by another one. Before, on the
        // thread pool, most cancels answered EINPROGRESS with res 0.
        c("poll/ready_by_a_write_then_cancel", |e| {
            let ctx = e.setup(4);
            for other in [false, true] {
                let mut answers = std::collections::BTreeMap::<String, u32>::new();
                for round in 0..200u64 {
                    let (r, w) = pipe();
                    let mut b = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, round);
                    let mut p = [&mut b as *mut iocb];
                    // SAFETY: a live iocb, reaped below before it goes.
                    let s = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
                    let wfd = w.as_raw_fd();
                    // SAFETY: a one-byte write from a static buffer to the
                    // pipe's write end, open until the end of the round.
                    let write = move || unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) };
                    if other {
                        std::thread::spawn(write).join().unwrap();
                    } else {
                        write();
                    }
                    // SAFETY: as above; the result pointer is null and unused.
                    let c = unsafe { e.aio.cancel(ctx, &mut b, std::ptr::null_mut()) };
                    let mut ev = [io_event::default(); 1];
                    let mut ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
                    // SAFETY: room for one event; a valid timeout.
                    let g = unsafe { e.aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut ts) };
                    let res = if g == 1 { ev[0].res } else { -1 };
                    *answers.entry(format!("submit {}, cancel {}, event res {res}", ret(s), ret(c))).or_default() += 1;
                }
                for (a, n) in answers {
                    e.rec(format!("write by another thread {other}: {a}: {n} of 200"));
                }
            }
        }),
        c("poll/wakes_on_data", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            let mut b = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 2);
            e.submit(ctx, &mut [&mut b]);
            let wfd = w.as_raw_fd();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                // SAFETY: one-byte write from a static buffer to the pipe's
                // write end, which the case keeps open until after the join.
                unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) };
            });
            e.reap(ctx, 1);
            t.join().unwrap();
        }),
        c("poll/pri_alone_wakes_on_urgent_data", |e| {
            // A POLL for POLLPRI alone on a TCP socket, then urgent data
            // (MSG_OOB): it completes, with POLLPRI among its bits (the
            // kernel's reports the waker's whole mask; which other bits
            // come with it is not compared). Before: no event on io_uring.
            let ctx = e.setup(4);
            let (a, b) = tcp_pair();
            let mut p = cb(IOCB_CMD_POLL, a.as_raw_fd(), libc::POLLPRI as u64, 0, 0, 1);
            e.submit(ctx, &mut [&mut p]);
            // SAFETY: a one-byte send from a static buffer on a connected socket.
            let sent = unsafe { libc::send(b.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
            e.rec(format!("send MSG_OOB = {sent}"));
            let mut ev = [io_event::default(); 1];
            let mut ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
            // SAFETY: room for one event; a valid timeout.
            let r = unsafe { e.aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut ts) };
            e.rec(format!("getevents = {}", ret(r)));
            if r == 1 {
                e.rec(format!("data={} POLLPRI set: {}", ev[0].data, ev[0].res & libc::POLLPRI as i64 != 0));
            }
        }),
        c("poll/regular_file_and_masks", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abc", libc::O_RDWR);
            for (i, m) in [
                libc::POLLIN,
                libc::POLLOUT,
                libc::POLLIN | libc::POLLOUT,
                0x7fff_u16 as i16,
                libc::POLLPRI | libc::POLLIN,
            ]
            .into_iter()
            .enumerate()
            {
                sub1(e, ctx, cb(IOCB_CMD_POLL, f.as_raw_fd(), m as u16 as u64, 0, 0, i as u64));
                e.reap(ctx, 1);
            }
        }),
        c("poll/hup_when_writer_closes", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            drop(w);
            e.reap(ctx, 1);
            let (r2, w2) = pipe();
            drop(r2);
            sub1(e, ctx, cb(IOCB_CMD_POLL, w2.as_raw_fd(), libc::POLLOUT as u64, 0, 0, 2));
            e.reap(ctx, 1);
        }),
        c("poll/fd_closed_while_pending", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            drop(r);
            e.getevents(ctx, 0, 1, Some(Duration::from_millis(20)));
            e.rec(format!("write = {}", write_fd(w.as_raw_fd(), b"x")));
            e.reap(ctx, 1);
        }),
        c("poll/eventfd_with_resfd", |e| {
            let ctx = e.setup(4);
            let watched = eventfd();
            let sig = eventfd();
            let mut a = cb(IOCB_CMD_POLL, watched.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = sig.as_raw_fd() as u32;
            sub1(e, ctx, a);
            e.rec(format!("count before = {}", eventfd_count(&sig)));
            write_fd(watched.as_raw_fd(), &3u64.to_ne_bytes());
            e.reap(ctx, 1);
            e.rec(format!("count after = {}", eventfd_count(&sig)));
        }),
    ]
}
