//! uaio's own descriptors and the application's: a number the application
//! closed stays invalid after `io_setup`, uaio's descriptors are refused in
//! requests, and a low `RLIMIT_NOFILE` (a dozen free numbers) limits neither the contexts a
//! program can make nor its own `open` afterwards.

use std::os::fd::{AsRawFd, IntoRawFd};

use super::fixtures::*;
use crate::*;

/// Submits a POLL for input on `fd` whose completion signals the eventfd
/// number `efd` (`IOCB_FLAG_RESFD`).
fn poll_signalling(e: &mut Env, ctx: u64, fd: i32, efd: i32, data: u64) {
    let mut a = cb(IOCB_CMD_POLL, fd, libc::POLLIN as u64, 0, 0, data);
    a.aio_flags = IOCB_FLAG_RESFD;
    a.aio_resfd = efd as u32;
    sub1(e, ctx, a);
}

/// Reaps one event and records its data and result as the `which` one.
fn rec_next_event(e: &mut Env, ctx: u64, which: &str) {
    let ev = e.reap(ctx, 1);
    let (data, res) = ev.first().map_or((0, -1), |v| (v.data, v.res));
    e.rec(format!("{which} event: data {data} res {res}"));
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("descriptors/number_closed_before_setup_stays_ebadf", |e| {
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                // The lowest free number, closed again: the next descriptor
                // anyone opens would get it.
                let n = open("/dev/null", libc::O_RDONLY).into_raw_fd();
                // SAFETY: closing the descriptor just opened.
                unsafe { libc::close(n) };
                let mut ctxs = [0u64; 4];
                for c in ctxs.iter_mut() {
                    // SAFETY: a valid pointer to a zeroed handle.
                    out.push(format!("setup = {}", ret(unsafe { aio.setup(4, c) })));
                }
                let buf = leak_buf(8);
                let a = leak(cb(IOCB_CMD_PREAD, n, buf.as_mut_ptr() as u64, 8, 0, 1));
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb naming a number nobody should have.
                let r = unsafe { aio.submit(ctxs[0], 1, p.as_mut_ptr()) };
                out.push(format!("read of the closed number = {}", ret(r)));
                let w = leak(cb(IOCB_CMD_PWRITE, n, buf.as_mut_ptr() as u64, 8, 0, 2));
                let mut p = [w as *mut iocb];
                // SAFETY: as above.
                let r = unsafe { aio.submit(ctxs[0], 1, p.as_mut_ptr()) };
                out.push(format!("write to the closed number = {}", ret(r)));
                for c in ctxs {
                    // SAFETY: destroying the contexts made above.
                    unsafe { aio.destroy(c) };
                }
            });
            e.rec_all(lines);
        }),
        c("descriptors/syncs_keep_their_file_when_the_number_is_closed_or_reused", |e| {
            // The kernel takes the file when io_submit reads the iocb: a
            // sync runs on it whatever the program does with the number
            // afterwards (closes it, or puts a pipe on it, where a sync
            // would fail with EINVAL).
            let ctx = e.setup(16);
            let data = vec![b'z'; 1 << 20];
            let files: Vec<std::os::fd::OwnedFd> = (0..4).map(|_| e.file(&data, libc::O_RDWR)).collect();
            let mut cbs: Vec<&mut iocb> = files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let op = if i % 2 == 0 { IOCB_CMD_FDSYNC } else { IOCB_CMD_FSYNC };
                    leak(cb(op, f.as_raw_fd(), 0, 0, 0, i as u64 + 1))
                })
                .collect();
            e.submit(ctx, &mut cbs);
            let (r, _w) = pipe();
            let mut files = files.into_iter();
            drop(files.next());
            drop(files.next());
            let reused: Vec<std::os::fd::OwnedFd> = files.collect();
            for f in &reused {
                // SAFETY: both numbers are open; the file's number now names
                // the pipe.
                unsafe { libc::dup2(r.as_raw_fd(), f.as_raw_fd()) };
            }
            e.reap(ctx, 4);
        }),
        c("descriptors/resfd_closed_and_its_number_reused_while_pending", |e| {
            let ctx = e.setup(8);
            let (r, w) = pipe();
            let efd = eventfd();
            let n = efd.as_raw_fd();
            poll_signalling(e, ctx, r.as_raw_fd(), n, 1);
            drop(efd);
            // The next eventfd takes the closed number.
            let other = eventfd();
            e.rec(format!("new eventfd has the old number: {}", other.as_raw_fd() == n));
            write_fd(w.as_raw_fd(), b"x");
            let ev = e.reap(ctx, 1);
            e.rec(format!("event res = {}", ev.first().map_or(-1, |v| v.res)));
            // The completion signals the eventfd the request named, which is
            // closed; the file now under its number hears nothing.
            e.rec(format!("count of the new eventfd: {}", eventfd_count(&other)));
        }),
        c("descriptors/resfd_number_reused_by_a_new_eventfd_for_the_next_request", |e| {
            // uaio keeps a duplicate of a RESFD eventfd for the requests that
            // follow on the same number: a new eventfd under that number
            // must be told apart from the old one, whose duplicate is held.
            let ctx = e.setup(8);
            let (r1, w1) = pipe();
            let (r2, w2) = pipe();
            let efd = eventfd();
            let n = efd.as_raw_fd();
            poll_signalling(e, ctx, r1.as_raw_fd(), n, 1);
            drop(efd);
            let other = eventfd();
            e.rec(format!("new eventfd has the old number: {}", other.as_raw_fd() == n));
            poll_signalling(e, ctx, r2.as_raw_fd(), n, 2);
            write_fd(w2.as_raw_fd(), b"x");
            rec_next_event(e, ctx, "first");
            e.rec(format!("count of the new eventfd after the second request: {}", eventfd_count(&other)));
            write_fd(w1.as_raw_fd(), b"x");
            rec_next_event(e, ctx, "second");
            e.rec(format!("count of the new eventfd after the first request: {}", eventfd_count(&other)));
        }),
        c("descriptors/record_lock_of_the_program_outlives_requests_on_its_file", |e| {
            // POSIX record locks belong to the process and the file:
            // closing any descriptor of the file releases them. A request
            // holds its file as the kernel does, and letting go of it must
            // not release the program's lock (a database's lock on its data
            // files keeps a second instance out).
            let ctx = e.setup(8);
            let f = e.file(&[7u8; 16384], libc::O_RDWR);
            let fd = f.as_raw_fd();
            let lock = |fd: i32, kind: i32| {
                // SAFETY: an all-zero flock is valid; F_SETLK with it.
                let mut fl: libc::flock = unsafe { std::mem::zeroed() };
                fl.l_type = kind as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                // SAFETY: as above.
                unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) }
            };
            let probe = |e: &mut Env, when: &str| {
                let when = when.to_string();
                let lines = in_child(move |out| {
                    // SAFETY: alarm(2); the child is killed if it hangs.
                    unsafe { libc::alarm(20) };
                    out.push(format!("another process takes the lock {when}: {}", lock(fd, libc::F_WRLCK) == 0));
                });
                e.rec_all(lines);
            };
            e.rec(format!("lock = {}", lock(fd, libc::F_WRLCK)));
            probe(e, "at first");
            for direct in [false, true] {
                // SAFETY: F_GETFL/F_SETFL on the case's file.
                let set = unsafe {
                    let fl = libc::fcntl(fd, libc::F_GETFL);
                    let fl = if direct { fl | libc::O_DIRECT } else { fl & !libc::O_DIRECT };
                    libc::fcntl(fd, libc::F_SETFL, fl)
                };
                e.rec(format!("O_DIRECT {direct}: F_SETFL = {set}"));
                let buf = anon_pages(2) as u64;
                let base = if direct { 8 } else { 0 };
                let r = leak(cb(IOCB_CMD_PREAD, fd, buf, 4096, 0, base + 1));
                let w = leak(cb(IOCB_CMD_PWRITE, fd, buf + 4096, 4096, 4096, base + 2));
                let s = leak(cb(IOCB_CMD_FSYNC, fd, 0, 0, 0, base + 3));
                let d = leak(cb(IOCB_CMD_FDSYNC, fd, 0, 0, 0, base + 4));
                e.submit(ctx, &mut [r, w, s, d]);
                e.reap(ctx, 4);
                probe(e, &format!("after requests (O_DIRECT {direct})"));
            }
            // SAFETY: destroying the case's context (the case's end finds it
            // destroyed: EINVAL, ignored).
            let r = unsafe { aio_of(e).destroy(ctx) };
            e.rec(format!("destroy = {}", ret(r)));
            probe(e, "after destroy");
            e.rec(format!("unlock = {}", lock(fd, libc::F_UNLCK)));
            probe(e, "after unlock");
        }),
        c("descriptors/low_nofile_limit_many_contexts_and_own_open_works", |e| {
            const CONTEXTS: usize = 40;
            let aio = aio_of(e);
            let f = e.file(b"abcd", libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(30) };
                // Exactly a dozen free numbers: every hole below the
                // highest open descriptor is filled first.
                let highest = std::fs::read_dir("/proc/self/fd")
                    .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok()).max().unwrap_or(2))
                    .unwrap_or(2);
                loop {
                    let n = open("/dev/null", libc::O_RDONLY).into_raw_fd();
                    if n as u64 > highest {
                        // SAFETY: closing the descriptor just opened, above every other.
                        unsafe { libc::close(n) };
                        break;
                    }
                }
                let rl = libc::rlimit { rlim_cur: highest + 13, rlim_max: highest + 13 };
                // SAFETY: setrlimit with a valid struct.
                out.push(format!("setrlimit = {}", unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }));
                let mut ctxs = Vec::new();
                let mut first_error = 0;
                for _ in 0..CONTEXTS {
                    let mut c = 0u64;
                    // SAFETY: a valid pointer to a zeroed handle.
                    let r = unsafe { aio.setup(4, &mut c) };
                    if r != 0 {
                        first_error = r;
                        break;
                    }
                    ctxs.push(c);
                }
                out.push(format!("contexts made: {} (first error {})", ctxs.len(), ret(first_error)));
                // Each context still works.
                let mut ok = 0;
                for &c in &ctxs {
                    let buf = leak_buf(4);
                    let a = leak(cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 4, 0, 1));
                    let mut p = [a as *mut iocb];
                    let mut ev = [io_event::default(); 1];
                    let mut t = ts(5, 0);
                    // SAFETY: one valid iocb; room for one event.
                    let r = unsafe {
                        aio.submit(c, 1, p.as_mut_ptr());
                        aio.getevents(c, 1, 1, ev.as_mut_ptr(), &mut t)
                    };
                    if r == 1 && ev[0].res == 4 && buf == b"abcd" {
                        ok += 1;
                    }
                }
                out.push(format!("contexts that read the file: {ok}"));
                let c_path = c"/dev/null";
                let mut opened = 0;
                for _ in 0..8 {
                    // SAFETY: open(2) with a valid C string; the descriptor is leaked on purpose.
                    if unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY) } >= 0 {
                        opened += 1;
                    }
                }
                out.push(format!("own opens that worked: {opened} of 8"));
                for c in ctxs {
                    // SAFETY: destroying the contexts made above.
                    unsafe { aio.destroy(c) };
                }
            });
            e.rec_all(lines);
        }),
    ]
}
