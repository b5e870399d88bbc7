//! `io_submit`: the checks in the kernel's order (`submit/order/`), `aio_key`,
//! buffers and iovecs (`submit/iovec/`), field rules of each opcode, partial
//! submission, batches and a full ring.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("submit/bad_ctx", |e| {
            let f = e.file(b"x", libc::O_RDWR);
            let mut buf = [0u8; 1];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 1, 0, 1);
            e.submit(0, &mut [&mut a]);
            e.submit(0xdead_0000, &mut [&mut a]);
        }),
        c("submit/negative_nr_and_zero", |e| {
            let ctx = e.setup(4);
            // SAFETY: nr < 0 is refused before the (null) array is looked at.
            let r = unsafe { e.aio.submit(ctx, -1, std::ptr::null_mut()) };
            e.rec(format!("nr=-1 = {}", ret(r)));
            // SAFETY: nr == 0 returns before the (null) array is looked at.
            let r = unsafe { e.aio.submit(ctx, 0, std::ptr::null_mut()) };
            e.rec(format!("nr=0 = {}", ret(r)));
            // SAFETY: nr == 0 with a bad handle: nothing is dereferenced; the
            // handle is only looked up.
            let r = unsafe { e.aio.submit(0, 0, std::ptr::null_mut()) };
            e.rec(format!("bad ctx nr=0 = {}", ret(r)));
        }),
        c("submit/array_unreadable", |e| {
            let ctx = e.setup(4);
            // SAFETY: the array pointer is deliberately a PROT_NONE page; both
            // implementations must report EFAULT without dereferencing it in
            // this process (the kernel checks it, uaio probes it with a
            // fault-recovering copy).
            let r = unsafe { e.aio.submit(ctx, 1, no_access_page() as *mut *mut iocb) };
            e.rec(format!("= {}", ret(r)));
            // SAFETY: the array pointer is deliberately null; both
            // implementations must report EFAULT without dereferencing it in
            // this process (the kernel checks it, uaio probes it with a
            // fault-recovering copy).
            let r = unsafe { e.aio.submit(ctx, 1, std::ptr::null_mut()) };
            e.rec(format!("null = {}", ret(r)));
        }),
        c("submit/iocb_unreadable", |e| {
            let ctx = e.setup(4);
            let mut p = [no_access_page() as *mut iocb];
            // SAFETY: p is a live local array whose one entry deliberately
            // points to a PROT_NONE page; reading that iocb must give EFAULT
            // (the kernel checks it, uaio probes it with a fault-recovering
            // copy).
            let r = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
            e.rec(format!("= {}", ret(r)));
        }),
        c("submit/reserved2", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"x", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_NOOP + 100, -1, 0, 0, 0, 1);
            a.aio_reserved2 = 1;
            e.submit(ctx, &mut [&mut a]);
            let mut buf = [0u8; 1];
            let mut b = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 1, 0, 1);
            b.aio_reserved2 = 1;
            e.submit(ctx, &mut [&mut b]);
        }),
        c("submit/nbytes_overflow", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"x", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), 0x1000, 1 << 63, 0, 1);
            e.submit(ctx, &mut [&mut a]);
        }),
        c("submit/bad_fd", |e| {
            let ctx = e.setup(4);
            let mut a = cb(IOCB_CMD_PREAD, 999_999, 0x1000, 1, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            let mut b = cb(77, -1, 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut b]);
        }),
        c("submit/invalid_opcode_writes_key", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"x", libc::O_RDWR);
            for op in [4u16, 9, 100, 0xffff] {
                let mut a = cb(op, f.as_raw_fd(), 0, 0, 0, 1);
                a.aio_key = 0x55;
                e.submit(ctx, &mut [&mut a]);
                e.rec(format!("op {op} key after = {:#x}", a.aio_key));
            }
        }),
        c("submit/access_mode", |e| {
            let ctx = e.setup(4);
            let ro = e.file(b"abc", libc::O_RDONLY);
            let wo = e.file(b"abc", libc::O_WRONLY);
            let mut buf = [0u8; 3];
            let mut a = cb(IOCB_CMD_PWRITE, ro.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            let mut b = cb(IOCB_CMD_PREAD, wo.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
            e.submit(ctx, &mut [&mut b]);
            let mut c2 = cb(IOCB_CMD_PREADV, wo.as_raw_fd(), 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut c2]);
        }),
        c("submit/negative_offset", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut buf = [0u8; 3];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, -1, 1);
            e.submit(ctx, &mut [&mut a]);
            let mut b = cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, i64::MAX - 1, 1);
            e.submit(ctx, &mut [&mut b]);
        }),
        c("submit/unknown_rwf", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDONLY);
            let mut buf = [0u8; 3];
            for flags in [0x200u32, 0x8000_0000, RWF_APPEND | RWF_NOAPPEND, RWF_ATOMIC] {
                let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
                a.aio_rw_flags = flags;
                e.submit(ctx, &mut [&mut a]);
            }
            // Unknown flag wins over the wrong access mode.
            let mut a = cb(IOCB_CMD_PWRITE, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, -1, 1);
            a.aio_rw_flags = 0x200;
            e.submit(ctx, &mut [&mut a]);
            a.aio_rw_flags = 0;
            e.submit(ctx, &mut [&mut a]);
        }),
        c("submit/directory", |e| {
            let ctx = e.setup(4);
            let d = e.dir_fd();
            let mut buf = [0u8; 3];
            let mut a = cb(IOCB_CMD_PREAD, d.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            let mut s = cb(IOCB_CMD_FSYNC, d.as_raw_fd(), 0, 0, 0, 2);
            e.submit(ctx, &mut [&mut s]);
            e.reap(ctx, 1);
        }),
        c("submit/iovec_rules", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_PREADV, f.as_raw_fd(), 0x1000, 1025, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            let mut b = cb(IOCB_CMD_PREADV, f.as_raw_fd(), no_access_page(), 1, 0, 1);
            e.submit(ctx, &mut [&mut b]);
            let bad = [iovec { iov_base: 0xffff_8000_0000_0000, iov_len: 4 }];
            let mut c2 = cb(IOCB_CMD_PREADV, f.as_raw_fd(), bad.as_ptr() as u64, 1, 0, 1);
            e.submit(ctx, &mut [&mut c2]);
            let neg = [iovec { iov_base: 0x1000, iov_len: u64::MAX }];
            let mut d = cb(IOCB_CMD_PREADV, f.as_raw_fd(), neg.as_ptr() as u64, 1, 0, 1);
            e.submit(ctx, &mut [&mut d]);
            let mut zero = cb(IOCB_CMD_PREADV, f.as_raw_fd(), 0, 0, 0, 9);
            e.submit(ctx, &mut [&mut zero]);
            e.reap(ctx, 1);
        }),
        c("submit/kernel_address_buffer", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), 0xffff_8000_0000_0000, 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
        }),
        c("submit/fsync_field_rules", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            for (buf, n, off, fl) in [(1u64, 0u64, 0i64, 0u32), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, RWF_SYNC)] {
                for op in [IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC] {
                    let mut a = cb(op, f.as_raw_fd(), buf, n, off, 1);
                    a.aio_rw_flags = fl;
                    e.submit(ctx, &mut [&mut a]);
                }
            }
            let (r, _w) = pipe();
            let mut p = cb(IOCB_CMD_FSYNC, r.as_raw_fd(), 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut p]);
            let ro = e.file(b"abc", libc::O_RDONLY);
            let mut ok = cb(IOCB_CMD_FDSYNC, ro.as_raw_fd(), 0, 0, 0, 3);
            e.submit(ctx, &mut [&mut ok]);
            e.reap(ctx, 1);
        }),
        c("submit/poll_field_rules", |e| {
            let ctx = e.setup(4);
            let (r, _w) = pipe();
            for (buf, n, off, fl) in [(0x1_0000u64, 0u64, 0i64, 0u32), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, RWF_SYNC)]
            {
                let mut a = cb(IOCB_CMD_POLL, r.as_raw_fd(), buf, n, off, 1);
                a.aio_rw_flags = fl;
                e.submit(ctx, &mut [&mut a]);
            }
        }),
        c("submit/partial", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let mut b1 = [0u8; 2];
            let mut b2 = [0u8; 2];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), b1.as_mut_ptr() as u64, 2, 0, 1);
            let mut b = cb(IOCB_CMD_PREAD, f.as_raw_fd(), b2.as_mut_ptr() as u64, 2, 2, 2);
            let mut bad = cb(IOCB_CMD_PREAD, -1, 0, 0, 0, 3);
            let mut d = cb(IOCB_CMD_PREAD, f.as_raw_fd(), b2.as_mut_ptr() as u64, 2, 4, 4);
            e.submit(ctx, &mut [&mut a, &mut b, &mut bad, &mut d]);
            e.reap(ctx, 2);
            e.rec(format!("bufs {:?} {:?}", b1, b2));
            e.submit(ctx, &mut [&mut bad, &mut d]);
        }),
        c("submit/ring_full_eagain", |e| {
            let ctx = e.setup(1);
            let (r, _w) = pipe();
            let mut cbs: Vec<iocb> =
                (0..200).map(|i| cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i)).collect();
            let mut n = 0;
            loop {
                let mut p = [&mut cbs[n] as *mut iocb];
                // SAFETY: p holds a pointer to a live iocb of cbs; the iocb is
                // read (and its aio_key written) only during the call, and a
                // poll request has no buffer.
                let r = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
                if r != 1 {
                    e.rec(format!("submitted {n}, then {}", ret(r)));
                    break;
                }
                n += 1;
                if n == 200 {
                    e.rec("never full");
                    break;
                }
            }
            // Full ring: EAGAIN wins over a bad fd and a bad opcode, not over reserved2.
            let mut bad = cb(IOCB_CMD_PREAD, -1, 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut bad]);
            let mut badop = cb(99, r.as_raw_fd(), 0, 0, 0, 1);
            e.submit(ctx, &mut [&mut badop]);
            let mut res = cb(IOCB_CMD_PREAD, -1, 0, 0, 0, 1);
            res.aio_reserved2 = 1;
            e.submit(ctx, &mut [&mut res]);
        }),
        c("submit/order/reserved2_first", |e| {
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
        c("submit/order/overflow_before_fd", |e| {
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
        c("submit/order/bad_fd_before_resfd_and_opcode", |e| {
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
            // Writes too (uaio confirms a write's descriptor later than a
            // read's when it looked at it in an earlier call).
            a.aio_lio_opcode = WR;
            try_key(e, ctx, "bad fd+non-eventfd resfd, write", a);
            a.aio_resfd = 999_998;
            try_key(e, ctx, "bad fd+bad resfd, write", a);
            let mut a = cb(WR, -1, 0, 0, 0, 1);
            a.aio_flags = IOCB_FLAG_RESFD;
            a.aio_resfd = r.as_raw_fd() as u32;
            try_key(e, ctx, "fd -1+non-eventfd resfd, write", a);
        }),
        c("submit/order/resfd_before_opcode", |e| {
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
        c("submit/order/key_written_before_later_checks", |e| {
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
        c("submit/order/iocb_in_read_only_page", |e| {
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
        c("submit/order/ioprio_before_rwf_and_mode", |e| {
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
        c("submit/order/mode_buffer_offset", |e| {
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
        c("submit/unknown_aio_flags_ignored", |e| {
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
        c("submit/iovec/1024_ok_1025_einval", |e| {
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
        c("submit/iovec/entries_checked", |e| {
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
    ]
}
