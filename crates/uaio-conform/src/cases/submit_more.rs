//! io_submit beyond the core set: the order of the checks, `aio_key`, every
//! `RWF_*` flag, I/O priorities, buffers and iovecs, file kinds, batches.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::util::*;
use crate::*;

const RD: u16 = IOCB_CMD_PREAD;
const WR: u16 = IOCB_CMD_PWRITE;
const KADDR: u64 = 0xffff_8000_0000_0000;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("submit_order/reserved2_first", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut a = cb(99, -1, KADDR, 1 << 63, -1, 1);
            a.aio_reserved2 = 7;
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = 999_999;
            try_key(e, ctx, "reserved2+everything bad", a);
            let mut b = cb(RD, f.as_raw_fd(), 0, 0, 0, 2);
            b.aio_reserved2 = u64::MAX;
            try_key(e, ctx, "reserved2 on a good read", b);
            e.getevents(ctx, 0, 4, Some(Duration::ZERO));
        }),
        c("submit_order/overflow_before_fd", |e| {
            let ctx = e.setup(4);
            let a = cb(RD, -1, 0x1000, 1 << 63, 0, 1);
            try_key(e, ctx, "overflow+bad fd", a);
            let a = cb(99, -1, 0x1000, u64::MAX, 0, 1);
            try_key(e, ctx, "overflow+bad fd+bad op", a);
            let f = e.file(b"abc", libc::O_RDWR);
            let a = cb(RD, f.as_raw_fd(), 0x1000, (1 << 63) + 3, 0, 1);
            try_key(e, ctx, "overflow", a);
            // The largest length that is not negative as ssize_t passes this
            // check (and fails later on the buffer).
            let a = cb(RD, f.as_raw_fd(), KADDR, i64::MAX as u64, 0, 1);
            try_key(e, ctx, "len i64::MAX kernel buf", a);
        }),
        c("submit_order/bad_fd_before_resfd_and_opcode", |e| {
            let ctx = e.setup(4);
            try_key(e, ctx, "bad fd+bad op", cb(99, -1, 0, 0, 0, 1));
            try_key(e, ctx, "closed fd+noop", cb(IOCB_CMD_NOOP, 999_999, 0, 0, 0, 1));
            let mut a = cb(99, 999_999, 0, 0, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = 999_998;
            try_key(e, ctx, "bad fd+bad resfd", a);
            let (r, _w) = pipe();
            let mut a = cb(RD, 999_999, 0, 0, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = r.as_raw_fd() as u32;
            try_key(e, ctx, "bad fd+non-eventfd resfd", a);
        }),
        c("submit_order/resfd_before_opcode", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let efd = eventfd();
            let mut a = cb(99, f.as_raw_fd(), 0, 0, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = 999_999;
            try_key(e, ctx, "bad op+bad resfd", a);
            a.aio_resfd = f.as_raw_fd() as u32;
            try_key(e, ctx, "bad op+file resfd", a);
            a.aio_resfd = efd.as_raw_fd() as u32;
            try_key(e, ctx, "bad op+eventfd resfd", a);
            e.rec(format!("eventfd count = {}", eventfd_count(&efd)));
        }),
        c("submit_order/key_written_before_later_checks", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let ro = e.file(b"abcdef", libc::O_RDONLY);
            let d = e.dir_fd();
            let (pr, _pw) = pipe();
            let buf = leak_buf(8).as_mut_ptr() as u64;
            try_key(e, ctx, "opcode 4", cb(IOCB_CMD_PREADX, f.as_raw_fd(), buf, 1, 0, 1));
            try_key(e, ctx, "write on read-only", cb(WR, ro.as_raw_fd(), buf, 1, 0, 1));
            let mut a = cb(RD, f.as_raw_fd(), buf, 1, 0, 1);
            a.aio_rw_flags = 0x4000;
            try_key(e, ctx, "unknown rwf", a);
            let mut a = cb(RD, f.as_raw_fd(), buf, 1, 0, 1);
            a.aio_rw_flags = RWF_APPEND | RWF_NOAPPEND;
            try_key(e, ctx, "append+noappend", a);
            try_key(e, ctx, "negative offset", cb(RD, f.as_raw_fd(), buf, 1, -5, 1));
            try_key(e, ctx, "kernel buffer", cb(RD, f.as_raw_fd(), KADDR, 1, 0, 1));
            try_key(e, ctx, "1025 iovecs", cb(IOCB_CMD_PREADV, f.as_raw_fd(), buf, 1025, 0, 1));
            try_key(e, ctx, "directory", cb(RD, d.as_raw_fd(), buf, 1, 0, 1));
            try_key(e, ctx, "fsync with buf", cb(IOCB_CMD_FSYNC, f.as_raw_fd(), 1, 0, 0, 1));
            try_key(e, ctx, "fsync on pipe", cb(IOCB_CMD_FSYNC, pr.as_raw_fd(), 0, 0, 0, 1));
            try_key(e, ctx, "poll with nbytes", cb(IOCB_CMD_POLL, pr.as_raw_fd(), 1, 1, 0, 1));
            let mut a = cb(RD, f.as_raw_fd(), buf, 1, 0, 1);
            a.aio_flags = IOCB_FLAG_IOPRIO;
            a.aio_reqprio = -1;
            try_key(e, ctx, "bad ioprio", a);
            e.getevents(ctx, 0, 8, Some(Duration::ZERO));
        }),
        c("submit_order/iocb_in_read_only_page", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let one = |e: &mut Env, what: &str, a: iocb| {
                let p = read_only_page(&iocb_bytes(&a));
                let mut ptrs = [p as *mut iocb];
                // SAFETY: a readable iocb; the kernel may only fail to write aio_key.
                let r = unsafe { e.aio.submit(ctx, 1, ptrs.as_mut_ptr()) };
                e.rec(format!("{what}: submit = {}", ret(r)));
            };
            one(e, "good read", cb(RD, f.as_raw_fd(), buf, 3, 0, 1));
            one(e, "bad fd", cb(RD, -1, buf, 3, 0, 1));
            let mut a = cb(RD, f.as_raw_fd(), buf, 3, 0, 1);
            a.aio_reserved2 = 1;
            one(e, "reserved2", a);
            let mut a = cb(RD, f.as_raw_fd(), buf, 3, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = 999_999;
            one(e, "bad resfd", a);
            one(e, "bad opcode", cb(99, f.as_raw_fd(), buf, 3, 0, 1));
            e.getevents(ctx, 0, 4, Some(Duration::from_millis(20)));
        }),
        c("submit_order/ioprio_before_rwf_and_mode", |e| {
            let ctx = e.setup(4);
            let ro = e.file(b"abc", libc::O_RDONLY);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let mut a = cb(WR, ro.as_raw_fd(), buf, 3, -1, 1);
            a.aio_flags = IOCB_FLAG_IOPRIO;
            a.aio_reqprio = -1;
            a.aio_rw_flags = 0x4000;
            try_key(e, ctx, "bad ioprio+unknown rwf+read-only+neg offset", a);
            a.aio_reqprio = ioprio_value(IOPRIO_CLASS_BE, 4) as i16;
            try_key(e, ctx, "good ioprio+unknown rwf+read-only+neg offset", a);
            a.aio_rw_flags = RWF_APPEND | RWF_NOAPPEND;
            try_key(e, ctx, "append+noappend+read-only", a);
            a.aio_rw_flags = RWF_APPEND | RWF_NOAPPEND | 0x4000;
            try_key(e, ctx, "append+noappend+unknown", a);
            a.aio_rw_flags = 0;
            try_key(e, ctx, "read-only+neg offset", a);
        }),
        c("submit_order/mode_buffer_offset", |e| {
            let ctx = e.setup(4);
            let ro = e.file(b"abc", libc::O_RDONLY);
            let rw = e.file(b"abc", libc::O_RDWR);
            try_key(e, ctx, "write on ro, kernel buf, neg off", cb(WR, ro.as_raw_fd(), KADDR, 3, -1, 1));
            try_key(e, ctx, "read, kernel buf, neg off", cb(RD, rw.as_raw_fd(), KADDR, 3, -1, 1));
            try_key(e, ctx, "readv, 1025 iovecs, neg off", cb(IOCB_CMD_PREADV, rw.as_raw_fd(), 0x1000, 1025, -1, 1));
            try_key(
                e,
                ctx,
                "readv, unreadable array, neg off",
                cb(IOCB_CMD_PREADV, rw.as_raw_fd(), no_access_page(), 1, -1, 1),
            );
            let buf = leak_buf(4).as_mut_ptr() as u64;
            try_key(e, ctx, "read, off+len past i64::MAX", cb(RD, rw.as_raw_fd(), buf, 4, i64::MAX - 2, 1));
            try_key(e, ctx, "read, off i64::MAX len 0", cb(RD, rw.as_raw_fd(), buf, 0, i64::MAX, 2));
            e.reap(ctx, 1);
        }),
        c("submit/o_path_fd", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let path = format!("/proc/self/fd/{}", f.as_raw_fd());
            let p = open(&std::fs::read_link(&path).unwrap().to_string_lossy(), libc::O_PATH);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            try_key(e, ctx, "read", cb(RD, p.as_raw_fd(), buf, 3, 0, 1));
            try_key(e, ctx, "fsync", cb(IOCB_CMD_FSYNC, p.as_raw_fd(), 0, 0, 0, 1));
            try_key(e, ctx, "poll", cb(IOCB_CMD_POLL, p.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            let efd = eventfd();
            let ep = open(&format!("/proc/self/fd/{}", efd.as_raw_fd()), libc::O_PATH);
            let mut a = cb(RD, f.as_raw_fd(), buf, 3, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = ep.as_raw_fd() as u32;
            try_key(e, ctx, "resfd O_PATH eventfd", a);
        }),
        c("submit/resfd_other_anon_inodes", |e| {
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
        c("ioprio/classes_and_levels", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let prios: [(&str, i16); 14] = [
                ("NONE 0", 0),
                ("NONE level 3", ioprio_value(IOPRIO_CLASS_NONE, 3) as i16),
                ("RT 0 (root)", ioprio_value(IOPRIO_CLASS_RT, 0) as i16),
                ("RT 7 (root)", ioprio_value(IOPRIO_CLASS_RT, 7) as i16),
                ("BE 0", ioprio_value(IOPRIO_CLASS_BE, 0) as i16),
                ("BE 7", ioprio_value(IOPRIO_CLASS_BE, 7) as i16),
                ("BE 4 + hint bit 3", ioprio_value(IOPRIO_CLASS_BE, 4) as i16 | 1 << 3),
                ("BE + hint bits 12", ioprio_value(IOPRIO_CLASS_BE, 0) as i16 | 1 << 12),
                ("IDLE 0", ioprio_value(IOPRIO_CLASS_IDLE, 0) as i16),
                ("IDLE 5", ioprio_value(IOPRIO_CLASS_IDLE, 5) as i16),
                ("class 4", (4u16 << 13) as i16),
                ("class 7", (7u16 << 13) as i16),
                ("-1", -1),
                ("i16::MIN", i16::MIN),
            ];
            for (i, (what, p)) in prios.iter().enumerate() {
                let mut a = cb(RD, f.as_raw_fd(), buf, 2, 0, i as u64);
                a.aio_flags = IOCB_FLAG_IOPRIO;
                a.aio_reqprio = *p;
                if try_key(e, ctx, what, a) == 1 {
                    e.reap(ctx, 1);
                }
            }
        }),
        c("ioprio/ignored_without_flag_and_for_poll_fsync", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            let mut a = cb(RD, f.as_raw_fd(), buf, 2, 0, 1);
            a.aio_reqprio = -1;
            sub1(e, ctx, a);
            e.reap(ctx, 1);
            let (_pr, pw) = pipe();
            let mut p = cb(IOCB_CMD_POLL, pw.as_raw_fd(), libc::POLLOUT as u64, 0, 0, 2);
            p.aio_flags = IOCB_FLAG_IOPRIO;
            p.aio_reqprio = -1;
            sub1(e, ctx, p);
            e.reap(ctx, 1);
            let mut s = cb(IOCB_CMD_FDSYNC, f.as_raw_fd(), 0, 0, 0, 3);
            s.aio_flags = IOCB_FLAG_IOPRIO;
            s.aio_reqprio = (7u16 << 13) as i16;
            sub1(e, ctx, s);
            e.reap(ctx, 1);
        }),
        c("flags/unknown_aio_flags_ignored", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let buf = leak_buf(4).as_mut_ptr() as u64;
            for (i, fl) in [!3u32, 1 << 2, 1 << 31, !1u32].into_iter().enumerate() {
                let mut a = cb(RD, f.as_raw_fd(), buf, 2, 0, i as u64);
                a.aio_flags = fl;
                if try_key(e, ctx, &format!("aio_flags {fl:#x}"), a) == 1 {
                    e.reap(ctx, 1);
                }
            }
        }),
        c("io/short_and_zero_length", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let buf = leak_buf(16);
            let p = buf.as_mut_ptr() as u64;
            sub1(e, ctx, cb(RD, f.as_raw_fd(), p, 10, 4, 1));
            e.reap(ctx, 1);
            e.rec(format!("buf = {:?}", String::from_utf8_lossy(&buf[..4])));
            sub1(e, ctx, cb(RD, f.as_raw_fd(), p, 10, 6, 2));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(RD, f.as_raw_fd(), 0, 0, 0, 3));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(WR, f.as_raw_fd(), 0, 0, 100, 4));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(IOCB_CMD_PREADV, f.as_raw_fd(), 0, 0, 2, 5));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(IOCB_CMD_PWRITEV, f.as_raw_fd(), 0, 0, 50, 6));
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("io/zero_length_buffer_checks", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            try_key(e, ctx, "read len 0 kernel addr", cb(RD, f.as_raw_fd(), KADDR, 0, 0, 1));
            try_key(e, ctx, "read len 0 unmapped", cb(RD, f.as_raw_fd(), no_access_page(), 0, 0, 2));
            e.getevents(ctx, 0, 4, Some(Duration::from_millis(50)));
            let iov = Box::leak(Box::new([iovec { iov_base: KADDR, iov_len: 0 }]));
            try_key(
                e,
                ctx,
                "readv zero-length entry at kernel addr",
                cb(IOCB_CMD_PREADV, f.as_raw_fd(), iov.as_ptr() as u64, 1, 0, 3),
            );
            e.getevents(ctx, 0, 4, Some(Duration::from_millis(50)));
        }),
        c("io/read_into_read_only_page_event_efault", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let p = read_only_page(b"zzzzzz");
            sub1(e, ctx, cb(RD, f.as_raw_fd(), p, 6, 0, 1));
            e.reap(ctx, 1);
            // SAFETY: reading the page we mapped read-only.
            let now = unsafe { std::slice::from_raw_parts(p as *const u8, 6) };
            e.rec(format!("page = {:?}", String::from_utf8_lossy(now)));
        }),
        c("io/write_from_unmapped_event_efault", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            sub1(e, ctx, cb(WR, f.as_raw_fd(), no_access_page(), 6, 0, 1));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(WR, f.as_raw_fd(), no_access_page(), 6, 100, 2));
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("io/partially_mapped_buffer_short", |e| {
            let ctx = e.setup(4);
            let content: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
            let f = e.file(&content, libc::O_RDWR);
            let p = page_then_hole();
            sub1(e, ctx, cb(RD, f.as_raw_fd(), p, 8192, 0, 1));
            e.reap(ctx, 1);
            // SAFETY: the first page is readable.
            let got = unsafe { std::slice::from_raw_parts(p as *const u8, 4096) };
            e.rec(format!("first page equal = {}", got == &content[..4096]));
            sub1(e, ctx, cb(WR, f.as_raw_fd(), p, 8192, 16384, 2));
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("iovec/1024_ok_1025_einval", |e| {
            let ctx = e.setup(4);
            let content: Vec<u8> = (0..2048u32).map(|i| (i % 253) as u8).collect();
            let f = e.file(&content, libc::O_RDWR);
            let buf = leak_buf(2048);
            let iov: &'static mut [iovec] =
                Box::leak((0..1025).map(|i| iovec { iov_base: buf.as_ptr() as u64 + i as u64, iov_len: 1 }).collect());
            sub1(e, ctx, cb(IOCB_CMD_PREADV, f.as_raw_fd(), iov.as_ptr() as u64, 1024, 3, 1));
            e.reap(ctx, 1);
            e.rec(format!("equal = {}", buf[..1024] == content[3..1027]));
            try_key(e, ctx, "readv 1025", cb(IOCB_CMD_PREADV, f.as_raw_fd(), iov.as_ptr() as u64, 1025, 0, 2));
            try_key(e, ctx, "writev 1025", cb(IOCB_CMD_PWRITEV, f.as_raw_fd(), iov.as_ptr() as u64, 1025, 0, 3));
            sub1(e, ctx, cb(IOCB_CMD_PWRITEV, f.as_raw_fd(), iov.as_ptr() as u64, 1024, 4096, 4));
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("iovec/entries_checked", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"0123456789", libc::O_RDWR);
            let a = leak_buf(4);
            let b = leak_buf(4);
            let mk = |v: Vec<iovec>| -> u64 { Box::leak(v.into_boxed_slice()).as_ptr() as u64 };
            let zeros = mk(vec![
                iovec { iov_base: 0, iov_len: 0 },
                iovec { iov_base: a.as_ptr() as u64, iov_len: 3 },
                iovec { iov_base: 0, iov_len: 0 },
                iovec { iov_base: b.as_ptr() as u64, iov_len: 2 },
            ]);
            sub1(e, ctx, cb(IOCB_CMD_PREADV, f.as_raw_fd(), zeros, 4, 1, 1));
            e.reap(ctx, 1);
            e.rec(format!("a={:?} b={:?}", &a[..3], &b[..2]));
            let kern2 =
                mk(vec![iovec { iov_base: a.as_ptr() as u64, iov_len: 3 }, iovec { iov_base: KADDR, iov_len: 3 }]);
            try_key(e, ctx, "second entry kernel addr", cb(IOCB_CMD_PREADV, f.as_raw_fd(), kern2, 2, 0, 2));
            let hole = mk(vec![
                iovec { iov_base: a.as_ptr() as u64, iov_len: 3 },
                iovec { iov_base: no_access_page(), iov_len: 3 },
            ]);
            sub1(e, ctx, cb(IOCB_CMD_PREADV, f.as_raw_fd(), hole, 2, 0, 3));
            e.reap(ctx, 1);
            let all_hole = mk(vec![iovec { iov_base: no_access_page(), iov_len: 3 }]);
            sub1(e, ctx, cb(IOCB_CMD_PWRITEV, f.as_raw_fd(), all_hole, 1, 0, 4));
            e.reap(ctx, 1);
            let neg2 = mk(vec![
                iovec { iov_base: a.as_ptr() as u64, iov_len: 3 },
                iovec { iov_base: b.as_ptr() as u64, iov_len: 1 << 63 },
            ]);
            try_key(e, ctx, "second entry negative length", cb(IOCB_CMD_PREADV, f.as_raw_fd(), neg2, 2, 0, 5));
            // The iovec array itself ends in an unmapped page.
            let p = page_then_hole();
            // SAFETY: the last 16 bytes of the readable page hold one iovec.
            unsafe { *((p + 4096 - 16) as *mut iovec) = iovec { iov_base: a.as_ptr() as u64, iov_len: 1 } };
            try_key(e, ctx, "array runs into a hole", cb(IOCB_CMD_PREADV, f.as_raw_fd(), p + 4096 - 16, 2, 0, 6));
            sub1(e, ctx, cb(IOCB_CMD_PREADV, f.as_raw_fd(), p + 4096 - 16, 1, 0, 7));
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("submit/huge_nr_is_capped", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let b1 = leak_buf(2);
            let b2 = leak_buf(2);
            let a = leak(cb(RD, f.as_raw_fd(), b1.as_mut_ptr() as u64, 2, 0, 1));
            let b = leak(cb(RD, f.as_raw_fd(), b2.as_mut_ptr() as u64, 2, 2, 2));
            let bad = leak(cb(RD, -1, 0, 0, 0, 3));
            e.name_iocb(a);
            e.name_iocb(b);
            let ptrs: &mut [*mut iocb] = Box::leak(Box::new([a as *mut iocb, b as *mut iocb, bad as *mut iocb]));
            for nr in [i64::MAX, 1_000_000, 1 << 40] {
                // SAFETY: the kernel stops at the third (bad) iocb.
                let r = unsafe { e.aio.submit(ctx, nr, ptrs.as_mut_ptr()) };
                e.rec(format!("nr={nr}: submit = {}", ret(r)));
                e.reap(ctx, r.max(0));
            }
        }),
        c("submit/partial_bad_pointer_in_array", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let b1 = leak_buf(2);
            let a = leak(cb(RD, f.as_raw_fd(), b1.as_mut_ptr() as u64, 2, 0, 1));
            let b = leak(cb(RD, f.as_raw_fd(), b1.as_mut_ptr() as u64, 2, 2, 2));
            e.name_iocb(a);
            e.name_iocb(b);
            let (pa, pb) = (a as *mut iocb, b as *mut iocb);
            for (what, arr) in [
                ("[ok, unreadable, ok]", [pa, no_access_page() as *mut iocb, pb]),
                ("[ok, null, ok]", [pa, std::ptr::null_mut(), pb]),
                ("[null, ok, ok]", [std::ptr::null_mut(), pa, pb]),
                ("[ok, kernel addr, ok]", [pa, KADDR as *mut iocb, pb]),
            ] {
                let mut arr = arr;
                // SAFETY: bad entries are the point; they are not dereferenced by us.
                let r = unsafe { e.aio.submit(ctx, 3, arr.as_mut_ptr()) };
                e.rec(format!("{what}: submit = {}", ret(r)));
                e.getevents(ctx, r.max(0), 8, Some(Duration::from_secs(5)));
            }
            // The array of pointers itself runs into a hole after the first entry.
            let p = page_then_hole();
            // SAFETY: the last 8 bytes of the readable page hold one pointer.
            unsafe { *((p + 4096 - 8) as *mut *mut iocb) = pa };
            // SAFETY: as above.
            let r = unsafe { e.aio.submit(ctx, 2, (p + 4096 - 8) as *mut *mut iocb) };
            e.rec(format!("array into hole: submit = {}", ret(r)));
            e.getevents(ctx, r.max(0), 8, Some(Duration::from_secs(5)));
        }),
        c("submit/batch_larger_than_free_slots", |e| {
            let ctx = e.setup(1);
            let (r, w) = pipe();
            let mut ptrs: Vec<*mut iocb> = (0..200)
                .map(|i| {
                    let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i));
                    e.name_iocb(a);
                    a as *mut iocb
                })
                .collect();
            // SAFETY: 200 valid iocb pointers.
            let n = unsafe { e.aio.submit(ctx, 200, ptrs.as_mut_ptr()) };
            e.rec(format!("batch of 200 = {}", ret(n)));
            // SAFETY: as above.
            let again = unsafe { e.aio.submit(ctx, 1, ptrs.as_mut_ptr().add(199)) };
            e.rec(format!("one more = {}", ret(again)));
            write_fd(w.as_raw_fd(), b"x");
            let mut got = 0;
            let mut evs = vec![io_event::default(); 256];
            let mut kinds: Vec<i64> = Vec::new();
            for _ in 0..100 {
                let mut t = ts(1, 0);
                // SAFETY: room for 256 events.
                let k = unsafe { e.aio.getevents(ctx, 1, 256, evs.as_mut_ptr(), &mut t) };
                if k <= 0 {
                    break;
                }
                kinds.extend(evs[..k as usize].iter().map(|e| e.res));
                got += k;
                if got >= n {
                    break;
                }
            }
            kinds.sort();
            kinds.dedup();
            e.rec(format!("reaped {got}, distinct results {kinds:?}"));
            // SAFETY: as above.
            let after = unsafe { e.aio.submit(ctx, 1, ptrs.as_mut_ptr().add(199)) };
            e.rec(format!("after reaping = {}", ret(after)));
            e.reap(ctx, after.max(0));
        }),
        c("submit/full_ring_recovers_after_user_reap", |e| {
            let ctx = e.setup(1);
            let (r, w) = pipe();
            let mut ptrs: Vec<*mut iocb> = (0..200)
                .map(|i| {
                    let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i));
                    a as *mut iocb
                })
                .collect();
            let mut n = 0;
            while n < 200 {
                // SAFETY: a valid iocb pointer.
                let k = unsafe { e.aio.submit(ctx, 1, ptrs.as_mut_ptr().add(n)) };
                if k != 1 {
                    e.rec(format!("submitted {n}, then {}", ret(k)));
                    break;
                }
                n += 1;
            }
            write_fd(w.as_raw_fd(), b"x");
            let mut taken = 0;
            let mut kinds = Vec::new();
            while taken < n {
                match ring_take(ctx) {
                    Some(ev) => kinds.push(ev.res),
                    None => break,
                }
                taken += 1;
            }
            kinds.sort();
            kinds.dedup();
            e.rec(format!("taken from ring {taken}, results {kinds:?}"));
            let mut again = 0;
            while again < 200 - n {
                // SAFETY: a valid iocb pointer.
                let k = unsafe { e.aio.submit(ctx, 1, ptrs.as_mut_ptr().add(n + again)) };
                if k != 1 {
                    break;
                }
                again += 1;
            }
            e.rec(format!("submitted again {again} (of {})", 200 - n));
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
        c("io/pipe_ignores_offset", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            let data = b"hello";
            sub1(e, ctx, cb(WR, w.as_raw_fd(), data.as_ptr() as u64, 5, 12345, 1));
            e.reap(ctx, 1);
            let buf = leak_buf(8);
            sub1(e, ctx, cb(RD, r.as_raw_fd(), buf.as_mut_ptr() as u64, 8, 999, 2));
            e.reap(ctx, 1);
            e.rec(format!("buf = {:?}", String::from_utf8_lossy(&buf[..5])));
            try_key(e, ctx, "pipe negative offset", cb(WR, w.as_raw_fd(), data.as_ptr() as u64, 5, -1, 3));
            try_key(e, ctx, "read on write end", cb(RD, w.as_raw_fd(), buf.as_mut_ptr() as u64, 5, 0, 4));
            try_key(e, ctx, "write on read end", cb(WR, r.as_raw_fd(), data.as_ptr() as u64, 5, 0, 5));
        }),
        c("io/eventfd_read_write", |e| {
            let ctx = e.setup(4);
            let efd = eventfd();
            let v = 5u64.to_ne_bytes();
            // An eventfd has read_iter but no write_iter.
            try_key(e, ctx, "aio write to eventfd", cb(WR, efd.as_raw_fd(), v.as_ptr() as u64, 8, 0, 1));
            write_fd(efd.as_raw_fd(), &v);
            let short = leak_buf(4);
            sub1(e, ctx, cb(RD, efd.as_raw_fd(), short.as_mut_ptr() as u64, 4, 0, 2));
            e.reap(ctx, 1);
            let buf = leak_buf(8);
            sub1(e, ctx, cb(RD, efd.as_raw_fd(), buf.as_mut_ptr() as u64, 8, 0, 3));
            e.reap(ctx, 1);
            e.rec(format!("value = {}", u64::from_ne_bytes(buf[..8].try_into().unwrap())));
            let mut nw = cb(RD, efd.as_raw_fd(), buf.as_mut_ptr() as u64, 8, 0, 4);
            nw.aio_rw_flags = RWF_NOWAIT;
            sub1(e, ctx, nw);
            e.reap(ctx, 1);
            try_key(e, ctx, "fsync eventfd", cb(IOCB_CMD_FSYNC, efd.as_raw_fd(), 0, 0, 0, 5));
        }),
        c("io/char_devices_and_sockets", |e| {
            let ctx = e.setup(8);
            let zero = open("/dev/zero", libc::O_RDONLY);
            let null = open("/dev/null", libc::O_WRONLY);
            let buf = leak_buf(16);
            buf.fill(7);
            sub1(e, ctx, cb(RD, zero.as_raw_fd(), buf.as_mut_ptr() as u64, 16, 0, 1));
            e.reap(ctx, 1);
            e.rec(format!("zeroed = {}", buf.iter().all(|&b| b == 0)));
            sub1(e, ctx, cb(WR, null.as_raw_fd(), buf.as_ptr() as u64, 16, 777, 2));
            e.reap(ctx, 1);
            try_key(e, ctx, "fsync /dev/null", cb(IOCB_CMD_FSYNC, null.as_raw_fd(), 0, 0, 0, 3));
            let mut sv = [0i32; 2];
            // SAFETY: socketpair into a valid array.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
            let (s0, s1) = (own(sv[0]), own(sv[1]));
            let msg = b"ping";
            sub1(e, ctx, cb(WR, s0.as_raw_fd(), msg.as_ptr() as u64, 4, 0, 4));
            e.reap(ctx, 1);
            let rb = leak_buf(8);
            sub1(e, ctx, cb(RD, s1.as_raw_fd(), rb.as_mut_ptr() as u64, 8, 0, 5));
            e.reap(ctx, 1);
            e.rec(format!("got = {:?}", String::from_utf8_lossy(&rb[..4])));
            try_key(e, ctx, "fsync socket", cb(IOCB_CMD_FDSYNC, s0.as_raw_fd(), 0, 0, 0, 6));
            // A position on a socket is refused (ESPIPE in the event), and
            // the data stays in the socket; a pipe ignores it.
            sub1(e, ctx, cb(WR, s0.as_raw_fd(), msg.as_ptr() as u64, 4, 0, 7));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(RD, s1.as_raw_fd(), rb.as_mut_ptr() as u64, 8, 5, 8));
            sub1(e, ctx, cb(WR, s0.as_raw_fd(), msg.as_ptr() as u64, 4, 3, 9));
            e.reap(ctx, 2);
            sub1(e, ctx, cb(RD, s1.as_raw_fd(), rb.as_mut_ptr() as u64, 8, 0, 10));
            e.reap(ctx, 1);
            let (pr, pw) = pipe();
            sub1(e, ctx, cb(WR, pw.as_raw_fd(), msg.as_ptr() as u64, 4, 3, 11));
            e.reap(ctx, 1);
            sub1(e, ctx, cb(RD, pr.as_raw_fd(), rb.as_mut_ptr() as u64, 8, 5, 12));
            e.reap(ctx, 1);
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
        Case {
            name: "ext/submit_does_not_block_on_empty_pipe",
            expect: Expect::Differs {
                why: "io_submit never blocks on I/O, whatever the file",
                kernel: "right after submit: getevents = 1",
                uaio: "right after submit: getevents = 0",
            },
            run: |e| {
                let ctx = e.setup(4);
                let (r, w) = pipe();
                let buf = leak_buf(4);
                let wfd = w.as_raw_fd();
                // The kernel's io_submit blocks until the pipe has data.
                let feeder = later(100, move || {
                    write_fd(wfd, b"abcd");
                });
                sub1(e, ctx, cb(RD, r.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 0, 1));
                let mut ev = [io_event::default(); 1];
                let mut t = ts(0, 0);
                // SAFETY: room for one event.
                let n = unsafe { e.aio.getevents(ctx, 0, 1, ev.as_mut_ptr(), &mut t) };
                e.rec(format!("right after submit: getevents = {}", ret(n)));
                feeder.join().unwrap();
                if n == 0 {
                    e.reap(ctx, 1);
                }
                e.rec(format!("buf = {:?}", String::from_utf8_lossy(buf)));
            },
        },
    ]
}
