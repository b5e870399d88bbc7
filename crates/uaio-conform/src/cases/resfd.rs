//! `IOCB_FLAG_RESFD`: the eventfd named by a request, its checks, and when
//! it is signalled.

use std::os::fd::AsRawFd;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("resfd/rules", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"x", libc::O_RDWR);
            let mut buf = [0u8; 1];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 1, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = 999_999;
            a.aio_key = 9;
            e.submit(ctx, &mut [&mut a]);
            e.rec(format!("key after bad resfd = {}", a.aio_key));
            a.aio_resfd = f.as_raw_fd() as u32;
            e.submit(ctx, &mut [&mut a]);
            let (r, _w) = pipe();
            a.aio_resfd = r.as_raw_fd() as u32;
            e.submit(ctx, &mut [&mut a]);
        }),
        c("resfd/signalled", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let efd = eventfd();
            let mut b1 = [0u8; 3];
            let mut b2 = [0u8; 3];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), b1.as_mut_ptr() as u64, 3, 0, 1);
            let mut b = cb(IOCB_CMD_PREAD, f.as_raw_fd(), b2.as_mut_ptr() as u64, 3, 0, 2);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = efd.as_raw_fd() as u32;
            b.aio_flags = IOCB_FLAG_RESFD;
            b.aio_resfd = efd.as_raw_fd() as u32;
            e.submit(ctx, &mut [&mut a, &mut b]);
            e.reap(ctx, 2);
            e.rec(format!("eventfd count = {}", eventfd_count(&efd)));
        }),
        c("resfd/other_anon_inodes", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            // SAFETY: creating descriptors the case owns.
            let ep = own(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) });
            // SAFETY: as above.
            let tf = own(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) });
            // SAFETY: a signalfd for an empty set.
            let sf = own(unsafe {
                let mut s: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut s);
                libc::signalfd(-1, &s, libc::SFD_CLOEXEC)
            });
            let null = open("/dev/null", libc::O_RDWR);
            for (what, fd) in [("epoll", &ep), ("timerfd", &tf), ("signalfd", &sf), ("/dev/null", &null)] {
                let mut a = cb(RD, f.as_raw_fd(), buf, 3, 0, 1);
                a.aio_flags = IOCB_FLAG_RESFD;
                a.aio_resfd = fd.as_raw_fd() as u32;
                try_key(e, ctx, what, a);
            }
        }),
        c("resfd/counts_only_completed_requests", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let efd = eventfd();
            let buf = leak_buf(8).as_mut_ptr() as u64;
            let with = |op: u16, fd: i32, data: u64| {
                let mut a = cb(op, fd, buf, 2, 0, data);
                a.aio_flags = IOCB_FLAG_RESFD;
                a.aio_resfd = efd.as_raw_fd() as u32;
                a
            };
            let a = leak(with(RD, f.as_raw_fd(), 1));
            let b = leak(cb(RD, f.as_raw_fd(), buf, 2, 2, 2));
            let c2 = leak(with(RD, f.as_raw_fd(), 3));
            let bad = leak(with(RD, -1, 4));
            let d = leak(with(RD, f.as_raw_fd(), 5));
            e.submit(ctx, &mut [a, b, c2, bad, d]);
            e.reap(ctx, 3);
            e.rec(format!("eventfd count = {}", eventfd_count(&efd)));
            let bad_op = leak(with(99, f.as_raw_fd(), 6));
            e.submit(ctx, &mut [bad_op]);
            e.rec(format!("eventfd count after failed submit = {}", eventfd_count(&efd)));
        }),
        c("resfd/event_visible_when_signalled", |e| {
            let ctx = e.setup(8);
            let (r, w) = pipe();
            let efd = eventfd();
            let mut ok = 0;
            for i in 0..20u64 {
                let mut a = cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i);
                a.aio_flags = IOCB_FLAG_RESFD;
                a.aio_resfd = efd.as_raw_fd() as u32;
                let a = leak(a);
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb.
                unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
                write_fd(w.as_raw_fd(), b"x");
                let mut pfd = libc::pollfd { fd: efd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one pollfd.
                unsafe { libc::poll(&mut pfd, 1, 5000) };
                let n = eventfd_count(&efd);
                let mut ev = [io_event::default(); 2];
                let mut t = ts(0, 0);
                // SAFETY: room for two events.
                let got = unsafe { e.aio.getevents(ctx, 0, 2, ev.as_mut_ptr(), &mut t) };
                if n == 1 && got == 1 && ev[0].data == i {
                    ok += 1;
                }
                let mut sink = [0u8; 8];
                // SAFETY: draining the pipe.
                unsafe { libc::read(r.as_raw_fd(), sink.as_mut_ptr().cast(), 8) };
            }
            e.rec(format!("event already in ring when eventfd fired: {ok}/20"));
        }),
    ]
}
