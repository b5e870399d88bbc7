//! `aio_rw_flags`: every `RWF_*` flag a read or write accepts, append rules,
//! `RWF_NOWAIT` and `RWF_NOSIGNAL`.

use std::os::fd::AsRawFd;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        // A FIFO opened by its name is not open for non-blocking I/O (only
        // pipe(2)'s pipes are): the kernel refuses RWF_NOWAIT on it in
        // io_submit (EOPNOTSUPP). Before, uaio accepted the read and its
        // event carried the error.
        c("rwf/nowait_on_a_named_fifo", |e| {
            let ctx = e.setup(4);
            let fifo = named_fifo(e);
            let (r, w) = pipe();
            for (what, fd) in [("fifo", fifo.as_raw_fd()), ("pipe", r.as_raw_fd())] {
                write_fd(if what == "fifo" { fd } else { w.as_raw_fd() }, b"x");
                let buf = leak_buf(16);
                let mut a = cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 16, 0, 1);
                a.aio_rw_flags = RWF_NOWAIT;
                e.rec(what);
                if sub1(e, ctx, a) == 1 {
                    e.reap(ctx, 1);
                }
            }
        }),
        c("rwf/write_flags_accepted", |e| {
            let ctx = e.setup(16);
            let f = e.file(b"0123456789abcdef", libc::O_RDWR);
            let flags = [
                ("HIPRI", RWF_HIPRI),
                ("DSYNC", RWF_DSYNC),
                ("SYNC", RWF_SYNC),
                ("NOAPPEND", RWF_NOAPPEND),
                ("NOSIGNAL", RWF_NOSIGNAL),
                ("DSYNC|SYNC|HIPRI", RWF_DSYNC | RWF_SYNC | RWF_HIPRI),
            ];
            for (i, (name, fl)) in flags.iter().enumerate() {
                let data = leak_buf(2);
                data.copy_from_slice(&[b'A' + i as u8; 2]);
                let mut a = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 2 * i as i64, i as u64);
                a.aio_rw_flags = *fl;
                e.rec(name.to_string());
                sub1(e, ctx, a);
                e.reap(ctx, 1);
            }
            e.record_file(&f);
        }),
        c("rwf/read_flags_accepted", |e| {
            let ctx = e.setup(16);
            let f = e.file(b"0123456789abcdef", libc::O_RDWR);
            let flags = [
                ("HIPRI", RWF_HIPRI),
                ("NOWAIT (cached)", RWF_NOWAIT),
                ("DSYNC", RWF_DSYNC),
                ("SYNC", RWF_SYNC),
                ("NOSIGNAL", RWF_NOSIGNAL),
                ("NOAPPEND", RWF_NOAPPEND),
                ("APPEND", RWF_APPEND),
            ];
            for (i, (name, fl)) in flags.iter().enumerate() {
                let buf = leak_buf(4);
                let mut a = cb(RD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 4, i as i64, i as u64);
                a.aio_rw_flags = *fl;
                e.rec(name.to_string());
                if sub1(e, ctx, a) == 1 {
                    e.reap(ctx, 1);
                }
                e.rec(format!("buf = {:?}", String::from_utf8_lossy(buf)));
            }
        }),
        c("rwf/dontcache_and_atomic", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"0123456789abcdef", libc::O_RDWR);
            let (pr, pw) = pipe();
            let buf = leak_buf(4).as_mut_ptr() as u64;
            for (what, op, fd, fl) in [
                ("atomic read", RD, f.as_raw_fd(), RWF_ATOMIC),
                ("atomic write", WR, f.as_raw_fd(), RWF_ATOMIC),
                ("atomic write pipe", WR, pw.as_raw_fd(), RWF_ATOMIC),
                ("dontcache read pipe", RD, pr.as_raw_fd(), RWF_DONTCACHE),
                ("dontcache write pipe", WR, pw.as_raw_fd(), RWF_DONTCACHE),
            ] {
                let mut a = cb(op, fd, buf, 4, 0, 1);
                a.aio_rw_flags = fl;
                if try_key(e, ctx, what, a) == 1 {
                    e.reap(ctx, 1);
                }
            }
        }),
        c("rwf/dontcache_regular_file", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"0123456789abcdef", libc::O_RDWR);
            let buf = leak_buf(4);
            let mut a = cb(RD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 2, 1);
            a.aio_rw_flags = RWF_DONTCACHE;
            if sub1(e, ctx, a) == 1 {
                e.reap(ctx, 1);
            }
            let data = leak_buf(4);
            data.copy_from_slice(b"WXYZ");
            let mut w = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 4, 8, 2);
            w.aio_rw_flags = RWF_DONTCACHE;
            if sub1(e, ctx, w) == 1 {
                e.reap(ctx, 1);
            }
            e.record_file(&f);
        }),
        c("rwf/dontcache_on_a_file_system_without_it", |e| {
            // tmpfs has no RWF_DONTCACHE: io_submit refuses it, for reads
            // and writes, before the request is queued.
            let fs = match Tmpfs::mount(1 << 20) {
                Ok(fs) => fs,
                Err(why) => {
                    e.rec(format!("skipped: {why}"));
                    return;
                }
            };
            std::fs::write(fs.path("a"), b"0123456789abcdef").expect("write tmpfs file");
            let ctx = e.setup(8);
            for (what, flags) in [("read-write", libc::O_RDWR), ("write-only", libc::O_WRONLY)] {
                let f = open(&fs.path("a"), flags);
                let buf = leak_buf(4);
                let mut r = cb(RD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 2, 1);
                r.aio_rw_flags = RWF_DONTCACHE;
                if try_key(e, ctx, &format!("{what} dontcache read"), r) == 1 {
                    e.reap(ctx, 1);
                }
                let mut w = cb(WR, f.as_raw_fd(), b"WXYZ".as_ptr() as u64, 4, 8, 2);
                w.aio_rw_flags = RWF_DONTCACHE;
                if try_key(e, ctx, &format!("{what} dontcache write"), w) == 1 {
                    e.reap(ctx, 1);
                }
                e.record_file(&f);
            }
        }),
        c("rwf/append_ignores_offset", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let data = b"XY";
            let mut a = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 0, 1);
            a.aio_rw_flags = RWF_APPEND;
            sub1(e, ctx, a);
            e.reap(ctx, 1);
            let mut b = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 1000, 2);
            b.aio_rw_flags = RWF_APPEND | RWF_DSYNC;
            sub1(e, ctx, b);
            e.reap(ctx, 1);
            e.record_file(&f);
            let s = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            e.rec(format!("content = {:?}", String::from_utf8_lossy(&std::fs::read(s).unwrap())));
        }),
        c("rwf/o_append_and_noappend", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR | libc::O_APPEND);
            let data = b"XY";
            sub1(e, ctx, cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 0, 1));
            e.reap(ctx, 1);
            let mut b = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 1, 2);
            b.aio_rw_flags = RWF_NOAPPEND;
            sub1(e, ctx, b);
            e.reap(ctx, 1);
            let s = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            e.rec(format!("content = {:?}", String::from_utf8_lossy(&std::fs::read(s).unwrap())));
        }),
        c("rwf/noappend_on_append_only_inode_eperm", |e| {
            const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
            const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
            const FS_APPEND_FL: libc::c_long = 0x20;
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_WRONLY | libc::O_APPEND);
            let mut fl: libc::c_long = 0;
            // SAFETY: ioctls on our own file with a valid flag word.
            let ok = unsafe {
                libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut fl);
                fl |= FS_APPEND_FL;
                libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &fl)
            };
            e.rec(format!("set append-only = {ok}"));
            let data = b"XY";
            let mut a = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 0, 1);
            a.aio_rw_flags = RWF_NOAPPEND;
            try_key(e, ctx, "noappend", a);
            if sub1(e, ctx, cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 2, 0, 2)) == 1 {
                e.reap(ctx, 1);
            }
            fl &= !FS_APPEND_FL;
            // SAFETY: as above.
            unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &fl) };
            let s = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            e.rec(format!("content = {:?}", String::from_utf8_lossy(&std::fs::read(s).unwrap())));
        }),
        c("rwf/nowait_not_ready_event_eagain", |e| {
            let ctx = e.setup(4);
            let (pr, _pw) = pipe();
            let efd = eventfd();
            let b1 = leak_buf(4);
            let b2 = leak_buf(8);
            let mut a = cb(RD, pr.as_raw_fd(), b1.as_mut_ptr() as u64, 4, 0, 1);
            a.aio_rw_flags = RWF_NOWAIT;
            sub1(e, ctx, a);
            let mut b = cb(RD, efd.as_raw_fd(), b2.as_mut_ptr() as u64, 8, 0, 2);
            b.aio_rw_flags = RWF_NOWAIT;
            sub1(e, ctx, b);
            e.reap(ctx, 2);
        }),
        c("rwf/nowait_ready_pipe", |e| {
            let ctx = e.setup(4);
            let (pr, pw) = pipe();
            write_fd(pw.as_raw_fd(), b"hello");
            let b1 = leak_buf(8);
            let mut a = cb(RD, pr.as_raw_fd(), b1.as_mut_ptr() as u64, 8, 0, 1);
            a.aio_rw_flags = RWF_NOWAIT;
            sub1(e, ctx, a);
            e.reap(ctx, 1);
            e.rec(format!("buf = {:?}", String::from_utf8_lossy(&b1[..5])));
        }),
        c("rwf/nosignal_pipe_no_sigpipe", |e| {
            let ctx = e.setup(4);
            let (pr, pw) = pipe();
            drop(pr);
            // SAFETY: ignoring SIGPIPE process-wide (a blocked one still queues).
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            set_blocked(libc::SIGPIPE, true);
            let data = b"abcd";
            let mut a = cb(WR, pw.as_raw_fd(), data.as_ptr() as u64, 4, 0, 1);
            a.aio_rw_flags = RWF_NOSIGNAL;
            sub1(e, ctx, a);
            e.reap(ctx, 1);
            e.rec(format!("SIGPIPE pending = {}", pending(libc::SIGPIPE)));
            while take_pending(libc::SIGPIPE, 0) {}
            set_blocked(libc::SIGPIPE, false);
        }),
    ]
}
