//! Several threads on one context: submitting and reaping together,
//! waiting together, racing cancel against completion. Only totals are
//! recorded, since interleavings differ from run to run.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use super::fixtures::*;
use crate::*;

const CONTENT_LEN: usize = 4096;

fn content() -> Vec<u8> {
    (0..CONTENT_LEN as u32).map(|i| (i % 251) as u8).collect()
}

/// Starts `n` threads, each waiting (up to 10 s) in `io_getevents` for one
/// event of `ctx`; each returns the call's result and the event's `data`.
fn waiters_for_one(aio: &'static dyn Aio, ctx: u64, n: usize) -> Vec<std::thread::JoinHandle<(i64, u64)>> {
    (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut ev = [io_event::default(); 1];
                let mut t = ts(10, 0);
                // SAFETY: room for one event.
                let r = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                (r, ev[0].data)
            })
        })
        .collect()
}

/// Joins the waiters of [`waiters_for_one`] and records what they got, sorted.
fn record_waiters(e: &mut Env, hs: Vec<std::thread::JoinHandle<(i64, u64)>>) {
    let mut res: Vec<(i64, u64)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    res.sort();
    e.rec(format!("waiters got {res:?}"));
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("concurrency/threads_submit_and_reap_one_context", |e| {
            const THREADS: u64 = 4;
            const PER: u64 = 64;
            const BATCH: u64 = 8;
            let ctx = e.setup(256);
            let f = e.file(&content(), libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let reaped: Arc<Mutex<Vec<(u64, i64)>>> = Arc::new(Mutex::new(Vec::new()));
            let count = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let total = THREADS * PER;
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (reaped, count, errors) = (reaped.clone(), count.clone(), errors.clone());
                    std::thread::spawn(move || {
                        let bufs: Vec<&'static mut [u8]> = (0..PER).map(|_| leak_buf(1)).collect();
                        let mut cbs: Vec<iocb> = (0..PER)
                            .map(|i| {
                                let off = ((t * PER + i) * 7 % CONTENT_LEN as u64) as i64;
                                cb(IOCB_CMD_PREAD, fd, bufs[i as usize].as_ptr() as u64, 1, off, t * 1000 + i)
                            })
                            .collect();
                        let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
                        let mut next = 0u64;
                        let end = Instant::now() + Duration::from_secs(20);
                        let mut evs = [io_event::default(); BATCH as usize];
                        while count.load(Ordering::SeqCst) < total && Instant::now() < end {
                            if next < PER {
                                let n = BATCH.min(PER - next);
                                // SAFETY: n valid iocb pointers from index next.
                                let r = unsafe { aio.submit(ctx, n as i64, ptrs.as_mut_ptr().add(next as usize)) };
                                if r > 0 {
                                    next += r as u64;
                                } else if r != -(libc::EAGAIN as i64) {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            let mut to = ts(0, 50_000_000);
                            // SAFETY: room for BATCH events.
                            let k = unsafe { aio.getevents(ctx, 1, BATCH as i64, evs.as_mut_ptr(), &mut to) };
                            if k > 0 {
                                let mut v = reaped.lock().unwrap();
                                v.extend(evs.iter().take(k as usize).map(|e| (e.data, e.res)));
                                count.fetch_add(k as u64, Ordering::SeqCst);
                            } else if k < 0 {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        let got: Vec<u8> = bufs.iter().map(|b| b[0]).collect();
                        (next, got)
                    })
                })
                .collect();
            let want = content();
            let mut submitted = 0;
            let mut bytes_ok = true;
            for (t, h) in hs.into_iter().enumerate() {
                let (n, got) = h.join().unwrap();
                submitted += n;
                for (i, b) in got.iter().enumerate() {
                    let off = ((t as u64 * PER + i as u64) * 7 % CONTENT_LEN as u64) as usize;
                    bytes_ok &= *b == want[off];
                }
            }
            let v = reaped.lock().unwrap();
            let mut data: Vec<u64> = v.iter().map(|x| x.0).collect();
            data.sort();
            let n = data.len();
            data.dedup();
            e.rec(format!(
                "submitted {submitted} reaped {n} distinct {} all res 1 = {} bytes ok = {bytes_ok} errors {}",
                data.len(),
                v.iter().all(|x| x.1 == 1),
                errors.load(Ordering::SeqCst)
            ));
            e.getevents(ctx, 0, 8, Some(Duration::ZERO));
        }),
        c("concurrency/all_waiters_woken_by_completions", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let aio = aio_of(e);
            let hs = waiters_for_one(aio, ctx, 3);
            std::thread::sleep(Duration::from_millis(100));
            let bufs: Vec<u64> = (0..3).map(|_| leak_buf(1).as_mut_ptr() as u64).collect();
            let mut a = [
                leak(cb(IOCB_CMD_PREAD, f.as_raw_fd(), bufs[0], 1, 0, 1)),
                leak(cb(IOCB_CMD_PREAD, f.as_raw_fd(), bufs[1], 1, 1, 2)),
                leak(cb(IOCB_CMD_PREAD, f.as_raw_fd(), bufs[2], 1, 2, 3)),
            ];
            e.submit(ctx, &mut a);
            record_waiters(e, hs);
        }),
        c("concurrency/waiter_for_two_leaves_a_single_event_to_others", |e| {
            // A waiter for two events is not woken by one (the kernel since
            // 6.9): the event stays in the ring, and another reader takes it.
            let ctx = e.setup(8);
            let aio = aio_of(e);
            let (r, w) = pipe();
            sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 1));
            let h = std::thread::spawn(move || {
                let mut ev = [io_event::default(); 2];
                let mut t = ts(1, 0);
                // SAFETY: room for two events.
                unsafe { aio.getevents(ctx, 2, 2, ev.as_mut_ptr(), &mut t) }
            });
            std::thread::sleep(Duration::from_millis(200));
            write_fd(w.as_raw_fd(), b"x");
            std::thread::sleep(Duration::from_millis(200));
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            e.rec(format!("the waiter for two got {}", ret(h.join().unwrap())));
        }),
        c("concurrency/waiters_woken_one_completion_at_a_time", |e| {
            let ctx = e.setup(8);
            let aio = aio_of(e);
            let (r, w) = pipe();
            for i in 1..=3 {
                sub1(e, ctx, cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i));
            }
            let hs = waiters_for_one(aio, ctx, 3);
            std::thread::sleep(Duration::from_millis(100));
            // One write completes all three polls.
            write_fd(w.as_raw_fd(), b"x");
            record_waiters(e, hs);
        }),
        c("concurrency/waiter_woken_by_submit_from_other_thread", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdef", libc::O_RDWR);
            let aio = aio_of(e);
            let h = std::thread::spawn(move || {
                let mut ev = [io_event::default(); 2];
                let mut t = ts(10, 0);
                // SAFETY: room for two events.
                let r = unsafe { aio.getevents(ctx, 2, 2, ev.as_mut_ptr(), &mut t) };
                let mut d = [ev[0].data, ev[1].data];
                d.sort();
                (r, d)
            });
            std::thread::sleep(Duration::from_millis(50));
            let b = leak_buf(1).as_mut_ptr() as u64;
            sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), b, 1, 0, 1));
            let fd = f.as_raw_fd();
            let t2 = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let b = leak_buf(1).as_mut_ptr() as u64;
                let mut a = cb(IOCB_CMD_PREAD, fd, b, 1, 1, 2);
                let mut p = [&mut a as *mut iocb];
                // SAFETY: one valid iocb.
                unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) }
            });
            let s2 = t2.join().unwrap();
            let (r, d) = h.join().unwrap();
            e.rec(format!("second submit = {} waiter = {} data {d:?}", ret(s2), ret(r)));
        }),
        c("concurrency/cancel_races_completion", |e| {
            let ctx = e.setup(8);
            let aio = aio_of(e);
            let mut events = 0;
            let mut extra = 0;
            let mut cancel_ok = 0;
            let mut res_ok = 0;
            for i in 0..20u64 {
                let (r, w) = pipe();
                let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, i));
                let ap = a as *mut iocb as usize;
                e.name_iocb(a);
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb.
                unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                let bar = Arc::new(Barrier::new(2));
                let b2 = bar.clone();
                let wfd = w.as_raw_fd();
                let writer = std::thread::spawn(move || {
                    b2.wait();
                    write_fd(wfd, b"x");
                });
                bar.wait();
                // SAFETY: the submitted iocb.
                let cr = unsafe { aio.cancel(ctx, ap as *mut iocb, std::ptr::null_mut()) };
                writer.join().unwrap();
                if cr == -(libc::EINPROGRESS as i64) || cr == -(libc::EINVAL as i64) {
                    cancel_ok += 1;
                }
                let mut ev = [io_event::default(); 2];
                let mut t = ts(5, 0);
                // SAFETY: room for two events.
                let n = unsafe { aio.getevents(ctx, 1, 2, ev.as_mut_ptr(), &mut t) };
                events += n.max(0);
                if n == 1 && ev[0].data == i && (ev[0].res == 0 || ev[0].res & libc::POLLIN as i64 != 0) {
                    res_ok += 1;
                }
                let mut t = ts(0, 10_000_000);
                // SAFETY: as above.
                extra += unsafe { aio.getevents(ctx, 1, 2, ev.as_mut_ptr(), &mut t) }.max(0);
            }
            e.rec(format!("events {events} extra {extra} cancel results ok {cancel_ok} results ok {res_ok}"));
        }),
        c("concurrency/parallel_setup_io_destroy", |e| {
            let f = e.file(&content(), libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || {
                        let (mut s, mut io, mut d) = (0, 0, 0);
                        for i in 0..50 {
                            let mut ctx = 0u64;
                            // SAFETY: valid pointer to a zeroed handle.
                            if unsafe { aio.setup(8, &mut ctx) } != 0 {
                                continue;
                            }
                            s += 1;
                            let mut b = [0u8; 1];
                            let mut a = cb(IOCB_CMD_PREAD, fd, b.as_mut_ptr() as u64, 1, (t * 50 + i) as i64, 1);
                            let mut p = [&mut a as *mut iocb];
                            let mut ev = [io_event::default(); 1];
                            let mut to = ts(5, 0);
                            // SAFETY: one valid iocb and room for one event.
                            unsafe {
                                if aio.submit(ctx, 1, p.as_mut_ptr()) == 1
                                    && aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut to) == 1
                                    && ev[0].res == 1
                                {
                                    io += 1;
                                }
                                if aio.destroy(ctx) == 0 {
                                    d += 1;
                                }
                            }
                        }
                        (s, io, d)
                    })
                })
                .collect();
            let tot =
                hs.into_iter().map(|h| h.join().unwrap()).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            e.rec(format!("setups {} ios {} destroys {}", tot.0, tot.1, tot.2));
        }),
        c("concurrency/destroy_while_other_thread_submits", |e| {
            let ctx = e.setup(64);
            let f = e.file(&content(), libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let aio = aio_of(e);
            let h = std::thread::spawn(move || {
                // Submit until the context is gone; every answer must be 1,
                // EAGAIN or EINVAL, and EINVAL must stay.
                let (mut ok, mut bad, mut einval_then_ok) = (0u64, 0u64, false);
                let mut seen_einval = false;
                let end = Instant::now() + Duration::from_secs(10);
                let bufs = leak_buf(1);
                let a = leak(cb(IOCB_CMD_PREAD, fd, bufs.as_mut_ptr() as u64, 1, 0, 1)) as *mut iocb;
                while Instant::now() < end {
                    let mut p = [a];
                    // SAFETY: one valid iocb.
                    let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                    match r {
                        1 => {
                            ok += 1;
                            einval_then_ok |= seen_einval;
                        }
                        x if x == -(libc::EAGAIN as i64) => {}
                        x if x == -(libc::EINVAL as i64) => {
                            seen_einval = true;
                            if ok > 0 {
                                break;
                            }
                        }
                        _ => bad += 1,
                    }
                    if ok % 16 == 0 {
                        let mut ev = [io_event::default(); 16];
                        let mut t = ts(0, 0);
                        // SAFETY: room for 16 events.
                        unsafe { aio.getevents(ctx, 0, 16, ev.as_mut_ptr(), &mut t) };
                    }
                }
                (ok > 0, bad, seen_einval, einval_then_ok)
            });
            std::thread::sleep(Duration::from_millis(100));
            destroy(e, "", ctx);
            let (some_ok, bad, seen, resurrected) = h.join().unwrap();
            e.rec(format!(
                "some submitted {some_ok}, other errors {bad}, EINVAL seen {seen}, ok after EINVAL {resurrected}"
            ));
        }),
        c("concurrency/requests_outlive_the_thread_that_submitted_them", |e| requests_outlive_their_thread(e, false)),
        c("concurrency/requests_outlive_their_thread_and_its_descriptor_numbers", |e| {
            requests_outlive_their_thread(e, true)
        }),
    ]
}

/// A thread submits armed POLLs, reads of a file not in the page cache,
/// buffered writes large enough to leave io_submit and a sync, and exits;
/// AIO requests belong to the context, not to the thread, and all complete
/// as if the thread were still there. `then_close`: the program then
/// closes or reuses the descriptor numbers of the POLLs and the reads.
fn requests_outlive_their_thread(e: &mut Env, then_close: bool) {
    // AIO requests belong to the context, not to the thread that
    // submitted them: a thread that submits and exits leaves them
    // running. Armed POLLs, reads of a file not in the page cache
    // and buffered writes large enough to leave io_submit all
    // complete as if the thread were still there.
    const MIB: usize = 1 << 20;
    let ctx = e.setup(16);
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    let src: Vec<u8> = (0..4 * MIB as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let a = e.file(&src, libc::O_RDONLY);
    // SAFETY: fdatasync and fadvise on an open descriptor: the
    // file's pages leave the page cache where the file system lets
    // them go, so the reads wait for the device.
    unsafe {
        libc::fdatasync(a.as_raw_fd());
        libc::posix_fadvise(a.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    let b = e.file(b"", libc::O_RDWR);
    let rbuf = [leak_buf(MIB), leak_buf(MIB / 4)];
    let mut wbuf: Vec<&'static mut [u8]> = (0..3).map(|_| leak_buf(3 * MIB / 2)).collect();
    for (k, w) in wbuf.iter_mut().enumerate() {
        w.iter_mut().enumerate().for_each(|(i, x)| *x = (i as u8).wrapping_mul(k as u8 + 3) ^ k as u8);
    }
    let (af, bf) = (a.as_raw_fd(), b.as_raw_fd());
    let cbs: Vec<&'static mut iocb> = vec![
        poll_cb(&r1, 1),
        poll_cb(&r2, 2),
        leak(cb(IOCB_CMD_PREAD, af, rbuf[0].as_ptr() as u64, MIB as u64, 0, 3)),
        leak(cb(IOCB_CMD_PREAD, af, rbuf[1].as_ptr() as u64, (MIB / 4) as u64, 2 * MIB as i64, 4)),
        leak(cb(IOCB_CMD_PWRITE, bf, wbuf[0].as_ptr() as u64, wbuf[0].len() as u64, 0, 5)),
        leak(cb(IOCB_CMD_PWRITE, bf, wbuf[1].as_ptr() as u64, wbuf[1].len() as u64, MIB as i64, 6)),
        leak(cb(IOCB_CMD_PWRITE, bf, wbuf[2].as_ptr() as u64, wbuf[2].len() as u64, 2 * MIB as i64, 7)),
        leak(cb(IOCB_CMD_FDSYNC, bf, 0, 0, 0, 8)),
    ];
    let mut ptrs: Vec<u64> = cbs.into_iter().map(|c| c as *mut iocb as u64).collect();
    for &p in &ptrs {
        e.name_iocb(p as *const iocb);
    }
    let aio = aio_of(e);
    let r = std::thread::spawn(move || {
        let mut v: Vec<*mut iocb> = ptrs.iter_mut().map(|p| *p as *mut iocb).collect();
        // SAFETY: eight valid iocbs, leaked for the process's life.
        unsafe { aio.submit(ctx, v.len() as i64, v.as_mut_ptr()) }
    })
    .join()
    .expect("submitting thread");
    e.rec(format!("submit from a thread that then exited = {}", ret(r)));
    if then_close {
        // The program then closes or reuses the numbers: the requests
        // keep the files they named.
        drop(r1);
        let (p, _pw) = pipe();
        // SAFETY: both numbers are open; r2's now names the new pipe.
        unsafe { libc::dup2(p.as_raw_fd(), r2.as_raw_fd()) };
        drop(a);
    }
    std::thread::sleep(Duration::from_millis(100));
    write_fd(w1.as_raw_fd(), b"x");
    write_fd(w2.as_raw_fd(), b"y");
    e.reap(ctx, 8);
    let reads_ok = rbuf[0][..] == src[..MIB] && rbuf[1][..] == src[2 * MIB..2 * MIB + MIB / 4];
    e.rec(format!("read buffers hold the file's bytes: {reads_ok}"));
    e.record_file(&b);
}
