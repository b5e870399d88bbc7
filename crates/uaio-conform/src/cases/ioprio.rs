//! `IOCB_FLAG_IOPRIO`: classes and levels, when `aio_reqprio` is ignored,
//! and real-time priority with and without `CAP_SYS_ADMIN`/`CAP_SYS_NICE`.

use std::os::fd::AsRawFd;

use super::fixtures::*;
use crate::*;

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

pub(crate) fn cases() -> Vec<Case> {
    vec![
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
        c("ioprio/sync_writes_with_a_priority", |e| {
            // A buffered write with RWF_DSYNC or RWF_SYNC and a priority:
            // the kernel's write syncs what it wrote itself (found by the
            // differential fuzzer: the io_uring backend, which copies such a
            // write inside io_submit and leaves the sync to io_uring, gave
            // the sync the request's priority, which io_uring refuses).
            // Alone, and first of a batch (the batch's other requests read
            // another file).
            let ctx = e.setup(16);
            let f = e.file(&[b'.'; 16384], libc::O_WRONLY);
            let g = e.file(&[b'g'; 4096], libc::O_RDONLY);
            let flags = [("DSYNC", RWF_DSYNC), ("SYNC", RWF_SYNC)];
            for (i, (name, fl)) in flags.iter().enumerate() {
                for batch in [1, 3] {
                    let data = leak_buf(4096);
                    data.fill(b'a' + i as u8 + batch as u8);
                    let off = 4096 * (2 * i + batch / 3) as i64;
                    let mut a = cb(WR, f.as_raw_fd(), data.as_ptr() as u64, 4096, off, i as u64);
                    a.aio_flags = IOCB_FLAG_IOPRIO;
                    a.aio_reqprio = ioprio_value(IOPRIO_CLASS_BE, 2) as i16;
                    a.aio_rw_flags = *fl;
                    let mut v = vec![leak(a)];
                    for k in 1..batch {
                        let buf = leak_buf(512).as_mut_ptr() as u64;
                        v.push(leak(cb(RD, g.as_raw_fd(), buf, 512, 0, 10 + k as u64)));
                    }
                    e.rec(format!("{name}, batch of {batch}"));
                    e.submit(ctx, &mut v);
                    e.reap(ctx, batch as i64);
                }
            }
            e.record_file(&f);
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
                let ctx = child_context(aio, out);
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
    ]
}
