//! Core cases: setup, submit validation order, I/O results, getevents,
//! cancel and destroy basics.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::*;

fn c(name: &'static str, run: fn(&mut Env)) -> Case {
    Case { name, expect: Expect::Same, run }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("setup/zero_nr", |e| {
            e.setup(0);
        }),
        c("setup/ctxp_not_zero", |e| {
            let mut ctx = 1u64;
            // SAFETY: valid pointer to a live local; both implementations read
            // the 1 there and refuse it (EINVAL) without writing.
            let r = unsafe { e.aio.setup(4, &mut ctx) };
            e.rec(format!("setup = {}", ret(r)));
        }),
        c("setup/ctxp_null", |e| {
            // SAFETY: the pointer is deliberately null; both implementations
            // must report EFAULT without dereferencing it in this process (the
            // kernel checks it, uaio probes it with a fault-recovering copy).
            let r = unsafe { e.aio.setup(4, std::ptr::null_mut()) };
            e.rec(format!("setup = {}", ret(r)));
        }),
        c("setup/ctxp_readonly", |e| {
            let p = read_only_page(&[0u8; 8]);
            // SAFETY: p is a leaked read-only page holding 0: reading it is
            // fine, and the failed write of the handle is reported as EFAULT
            // (the kernel checks it, uaio uses a fault-recovering copy) instead
            // of faulting here.
            let r = unsafe { e.aio.setup(4, p as *mut u64) };
            e.rec(format!("setup = {}", ret(r)));
        }),
        c("setup/overflow_0x7fffffff", |e| {
            e.setup(0x7fff_ffff);
        }),
        c("setup/wraps_to_zero_0x80000000", |e| {
            e.setup(0x8000_0000);
        }),
        c("setup/above_aio_max_nr", |e| {
            let max = std::fs::read_to_string("/proc/sys/fs/aio-max-nr").unwrap().trim().parse::<u32>().unwrap();
            e.setup(max + 1);
        }),
        c("setup/ring_header", |e| {
            for nr in [1u32, 4, 100, 128, 1000, 4096] {
                let ctx = e.setup(nr);
                // SAFETY: setup succeeded, so ctx is the address of the
                // context's ring, mapped in the kernel's struct aio_ring layout
                // by both implementations and alive until the case ends.
                let h = unsafe { *(ctx as *const aio_ring) };
                e.rec(format!(
                    "nr_events={nr} ring nr={} head={} tail={} magic={:#x} compat={} incompat={} hlen={}",
                    h.nr, h.head, h.tail, h.magic, h.compat_features, h.incompat_features, h.header_length
                ));
            }
        }),
        c("setup/ring_ids_count_up", |e| {
            let a = e.setup(4);
            let b = e.setup(4);
            // SAFETY: a and b are the addresses of two live rings (struct
            // aio_ring layout, mapped by both implementations until the case
            // ends).
            let (ia, ib) = unsafe { ((*(a as *const aio_ring)).id, (*(b as *const aio_ring)).id) };
            e.rec(format!("second id - first id = {}", ib as i64 - ia as i64));
        }),
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
        c("submit/resfd_rules", |e| {
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
        c("submit/resfd_signalled", |e| {
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
        c("io/read_write_roundtrip", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"", libc::O_RDWR);
            let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
            let mut w = cb(IOCB_CMD_PWRITE, f.as_raw_fd(), data.as_ptr() as u64, 8192, 4096, 1);
            e.submit(ctx, &mut [&mut w]);
            e.reap(ctx, 1);
            let mut buf = vec![0u8; 16384];
            let mut r = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 16384, 0, 2);
            e.submit(ctx, &mut [&mut r]);
            e.reap(ctx, 1);
            e.rec(format!("read back equal = {}", buf[4096..12288] == data[..]));
            let mut past = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 10, 100_000, 3);
            e.submit(ctx, &mut [&mut past]);
            e.reap(ctx, 1);
            e.record_file(&f);
        }),
        c("io/vectored", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"", libc::O_RDWR);
            let (a, b) = (vec![1u8; 100], vec![2u8; 300]);
            let iov = [
                iovec { iov_base: a.as_ptr() as u64, iov_len: 100 },
                iovec { iov_base: b.as_ptr() as u64, iov_len: 300 },
            ];
            let mut w = cb(IOCB_CMD_PWRITEV, f.as_raw_fd(), iov.as_ptr() as u64, 2, 10, 1);
            e.submit(ctx, &mut [&mut w]);
            e.reap(ctx, 1);
            let (mut x, mut y) = (vec![0u8; 50], vec![0u8; 500]);
            let iov2 = [
                iovec { iov_base: x.as_mut_ptr() as u64, iov_len: 50 },
                iovec { iov_base: y.as_mut_ptr() as u64, iov_len: 500 },
            ];
            let mut r = cb(IOCB_CMD_PREADV, f.as_raw_fd(), iov2.as_ptr() as u64, 2, 0, 2);
            e.submit(ctx, &mut [&mut r]);
            e.reap(ctx, 1);
            e.rec(format!("x[9..11]={:?} y[60..61]={:?} y[359]={}", &x[9..11], &y[60..61], y[359]));
            e.record_file(&f);
        }),
        c("io/bad_data_buffer_event_efault", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), no_access_page(), 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            e.reap(ctx, 1);
        }),
        c("io/pipe_epipe", |e| {
            let ctx = e.setup(4);
            let (r, w) = pipe();
            drop(r);
            // SAFETY: SIG_IGN installs no handler code; it only makes the write
            // to the closed pipe fail with EPIPE instead of killing the
            // process.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            let buf = [1u8; 4];
            let mut a = cb(IOCB_CMD_PWRITE, w.as_raw_fd(), buf.as_ptr() as u64, 4, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            e.reap(ctx, 1);
        }),
        c("io/fsync_fdatasync", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut a = cb(IOCB_CMD_FSYNC, f.as_raw_fd(), 0, 0, 0, 1);
            let mut b = cb(IOCB_CMD_FDSYNC, f.as_raw_fd(), 0, 0, 0, 2);
            e.submit(ctx, &mut [&mut a, &mut b]);
            e.reap(ctx, 2);
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
        c("getevents/arg_rules", |e| {
            let ctx = e.setup(4);
            e.getevents(0, 0, 1, Some(Duration::ZERO));
            e.getevents(ctx, -1, 1, Some(Duration::ZERO));
            e.getevents(ctx, 0, -1, Some(Duration::ZERO));
            e.getevents(ctx, 2, 1, Some(Duration::ZERO));
            e.getevents(ctx, 0, 0, None);
            // SAFETY: the timeout pointer is deliberately a PROT_NONE page;
            // both implementations check it first and must report EFAULT
            // without dereferencing it in this process (the kernel checks it,
            // uaio probes it with a fault-recovering copy), so the null events
            // array is never used.
            let r =
                unsafe { e.aio.getevents(ctx, 0, 1, std::ptr::null_mut(), no_access_page() as *mut libc::timespec) };
            e.rec(format!("bad timeout = {}", ret(r)));
            // SAFETY: as above, with a bad handle as well: the timeout is still
            // checked first, and the handle is only looked up.
            let r = unsafe { e.aio.getevents(0, 0, 1, std::ptr::null_mut(), no_access_page() as *mut libc::timespec) };
            e.rec(format!("bad timeout bad ctx = {}", ret(r)));
        }),
        c("getevents/timeout_expires", |e| {
            let ctx = e.setup(4);
            e.getevents(ctx, 1, 1, Some(Duration::from_millis(30)));
        }),
        c("getevents/efault_with_events_ready", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abc", libc::O_RDWR);
            let mut buf = [0u8; 3];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 3, 0, 1);
            e.submit(ctx, &mut [&mut a]);
            std::thread::sleep(Duration::from_millis(20));
            let mut ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
            // SAFETY: ts is a live local; the events pointer is deliberately a
            // PROT_NONE page, and writing the ready event there must give
            // EFAULT (the kernel checks it, uaio uses a fault-recovering copy)
            // without faulting here.
            let r = unsafe { e.aio.getevents(ctx, 1, 1, no_access_page() as *mut io_event, &mut ts) };
            e.rec(format!("bad events = {}", ret(r)));
            e.reap(ctx, 1);
        }),
        c("getevents/user_reaps_ring", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcd", libc::O_RDWR);
            let mut buf = [0u8; 4];
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 0, 42);
            e.submit(ctx, &mut [&mut a]);
            let ring = ctx as *mut aio_ring;
            let mut spins = 0;
            loop {
                // SAFETY: ctx is the address of the live context's ring (struct
                // aio_ring layout, mapped read/write by both implementations
                // until the case ends).
                let tail = unsafe { std::ptr::read_volatile(&(*ring).tail) };
                // SAFETY: as above.
                let head = unsafe { std::ptr::read_volatile(&(*ring).head) };
                if tail != head {
                    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                    // SAFETY: head < nr as the implementation keeps it (nothing
                    // in this case corrupts it), so the slot lies inside the
                    // ring mapping, and tail != head means it holds a published
                    // event.
                    let ev = unsafe { *((ctx + 32 + 32 * head as u64) as *const io_event) };
                    let l = e.ev(&ev);
                    e.rec(format!("from ring: {l}"));
                    // SAFETY: the ring header is the program's to write:
                    // advancing head is how a user-space reaper consumes the
                    // event it has read.
                    unsafe { std::ptr::write_volatile(&mut (*ring).head, (head + 1) % (*ring).nr) };
                    break;
                }
                spins += 1;
                if spins > 1000 {
                    e.rec("nothing in ring after 1 s");
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
        }),
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
        Case {
            name: "ext/noop_completes",
            expect: Expect::Differs {
                why: "IOCB_CMD_NOOP completes with res = 0 (the kernel rejects it)",
                kernel: "submit(n=1) = EINVAL",
                uaio: "event data=5 iocb#0 res=0 res2=0",
            },
            run: |e| {
                let ctx = e.setup(4);
                let f = e.file(b"", libc::O_RDWR);
                let mut a = cb(IOCB_CMD_NOOP, f.as_raw_fd(), 0, 0, 0, 5);
                e.submit(ctx, &mut [&mut a]);
                e.getevents(ctx, 0, 1, Some(Duration::from_millis(100)));
            },
        },
        Case {
            name: "ext/cancel_pending_read",
            expect: Expect::Differs {
                why: "io_cancel cancels a pending read: -EINPROGRESS, event res = -ECANCELED",
                kernel: "cancel = EINVAL",
                uaio: "event data=1 iocb#0 res=ECANCELED res2=0",
            },
            run: |e| {
                let ctx = e.setup(4);
                let (r, _w) = pipe();
                let mut buf = [0u8; 4];
                let mut a = cb(IOCB_CMD_PREAD, r.as_raw_fd(), buf.as_mut_ptr() as u64, 4, 0, 1);
                // The kernel's io_submit blocks until the pipe has data (uaio's
                // does not): feed it from another thread.
                let wfd = _w.as_raw_fd();
                let feeder = e.is_kernel().then(|| {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(50));
                        // SAFETY: four-byte write from a static buffer to the
                        // pipe's write end, which the case keeps open until
                        // after the join.
                        unsafe { libc::write(wfd, b"abcd".as_ptr().cast(), 4) };
                    })
                });
                e.submit(ctx, &mut [&mut a]);
                // SAFETY: a is a live iocb, only read by io_cancel; its buffer
                // stays alive until the event is reaped below, and the result
                // pointer is null and unused by both implementations.
                let res = unsafe { e.aio.cancel(ctx, &mut a, std::ptr::null_mut()) };
                e.rec(format!("cancel = {}", ret(res)));
                e.reap(ctx, 1);
                if let Some(t) = feeder {
                    t.join().unwrap();
                }
            },
        },
    ]
}
