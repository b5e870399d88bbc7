//! uaio's documented extensions, each a case whose traces must differ as the
//! README says: `IOCB_CMD_NOOP` completes, `io_cancel` cancels a pending
//! read, `io_submit` never blocks, `aio-max-nr` is a per-process budget.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use super::setup::{budget, quiet_setup, Owned};
use crate::*;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "extensions/noop_completes",
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
            name: "extensions/cancel_pending_read",
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
        Case {
            name: "extensions/submit_does_not_block_on_empty_pipe",
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
        Case {
            name: "extensions/aio_max_nr_per_process",
            expect: Expect::Differs {
                why: "aio-max-nr is honoured per process: a child has a budget of its own",
                kernel: "child setup(1) = EAGAIN",
                uaio: "child setup(1) = 0",
            },
            run: |e| {
                let avail = budget(e);
                let o = &mut Owned(aio_of(e), Vec::new());
                let whole = quiet_setup(o, avail);
                e.rec(format!("parent takes the whole budget: {}", ret(whole.0)));
                let aio = aio_of(e);
                let lines = in_child(move |out| {
                    // SAFETY: alarm(2); the child is killed if it hangs.
                    unsafe { libc::alarm(20) };
                    let mut c = 0u64;
                    // SAFETY: valid pointer to a zeroed handle.
                    let r = unsafe { aio.setup(1, &mut c) };
                    out.push(format!("child setup(1) = {}", ret(r)));
                    if r == 0 {
                        // SAFETY: destroying our own context.
                        unsafe { aio.destroy(c) };
                    }
                });
                e.rec_all(lines);
            },
        },
    ]
}
