//! Races between the calls, as hostile or merely busy programs make them:
//! destroy against pending writes and against submitters, waiters woken by
//! completions made inside `io_submit`, idle waiters, signals to waiters,
//! slot accounting under several submitters, and faults while a signal mask
//! is installed. Cases that could hang or crash run in a forked child with
//! an alarm, so a hang or a crash is a failed case, not a stuck suite.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::fixtures::*;
use crate::*;

/// Block `i` of the pattern files: every byte says which block it is.
fn block(i: usize, len: usize) -> Vec<u8> {
    vec![(i % 251) as u8 + 1; len]
}

/// Submits `n` writes of `len` bytes (block `i` at offset `i * len`, from
/// buffers at `bufs + i * len`), destroys the context at once, and records
/// what destroy returned and whether every block is on the file.
fn write_then_destroy(aio: &'static dyn Aio, fd: i32, bufs: *mut u8, n: usize, len: usize, out: &mut Vec<String>) {
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(n as u32, &mut ctx) })));
    let mut cbs: Vec<iocb> = (0..n)
        .map(|i| {
            // SAFETY: block i of the caller's buffer area of n * len bytes.
            let b = unsafe { bufs.add(i * len) };
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(block(i, len).as_ptr(), b, len) };
            cb(IOCB_CMD_PWRITE, fd, b as u64, len as u64, (i * len) as i64, i as u64)
        })
        .collect();
    let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
    // SAFETY: n valid iocbs whose buffers live until destroy returns.
    let r = unsafe { aio.submit(ctx, n as i64, ptrs.as_mut_ptr()) };
    out.push(format!("submit = {}", ret(r)));
    // SAFETY: destroying the context just made.
    out.push(format!("destroy = {}", ret(unsafe { aio.destroy(ctx) })));
    let mut missing = 0;
    // Page-aligned, since `fd` may be open O_DIRECT (a heap buffer made the
    // check fail whenever the allocator's address was not block-aligned).
    let got_ptr = anon_pages(len.div_ceil(4096));
    // SAFETY: anon_pages maps at least len bytes, leaked for the process.
    let got = unsafe { std::slice::from_raw_parts_mut(got_ptr, len) };
    for i in 0..n {
        // SAFETY: pread into a buffer of len bytes.
        let k = unsafe { libc::pread(fd, got.as_mut_ptr().cast(), len, (i * len) as i64) };
        if k != len as isize || *got != block(i, len)[..] {
            missing += 1;
        }
    }
    out.push(format!("blocks missing after destroy: {missing} of {n}"));
}

/// `io_setup(4)` and one POLL for input on `rfd` (an empty pipe), each
/// recorded; returns the handle.
fn setup_with_pending_poll(aio: &'static dyn Aio, rfd: i32, out: &mut Vec<String>) -> u64 {
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
    let a = leak(cb(IOCB_CMD_POLL, rfd, libc::POLLIN as u64, 0, 0, 1));
    let mut p = [a as *mut iocb];
    // SAFETY: one valid iocb, leaked so it outlives the request.
    out.push(format!("submit = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
    ctx
}

/// `n` bytes of zeroed memory shared with forked children.
fn anon_shared(n: usize) -> *mut u8 {
    // SAFETY: a new shared anonymous mapping that nothing else refers to.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// Runs `f` with `SIG`'s counting handler (with `SA_RESTART`) in the child.
fn with_restart_handler(f: impl FnOnce(&mut Vec<String>)) -> Vec<String> {
    in_child(move |out| {
        install_handler(true);
        f(out)
    })
}

fn thread_switches() -> i64 {
    // SAFETY: getrusage into a zeroed struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    ru.ru_nvcsw + ru.ru_nivcsw
}

/// Starts `n` threads that each wait in `io_getevents(1, 1)` on `ctx` with
/// `timeout` (None: no limit); returns their pthread ids and handles that
/// yield (return value, context switches during the call).
#[allow(clippy::type_complexity)]
fn waiters(
    aio: &'static dyn Aio,
    ctx: u64,
    n: usize,
    timeout: Option<Duration>,
) -> (Vec<libc::pthread_t>, Vec<std::thread::JoinHandle<(i64, i64)>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let hs = (0..n)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                tx.send(unsafe { libc::pthread_self() }).expect("send");
                let mut ev = [io_event::default(); 1];
                let mut t = timeout.map(|d| ts(d.as_secs() as i64, d.subsec_nanos() as i64));
                let tp = t.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
                let before = thread_switches();
                // SAFETY: room for one event; tp is null or a valid timespec.
                let r = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), tp) };
                (r, thread_switches() - before)
            })
        })
        .collect();
    let ids = (0..n).map(|_| rx.recv().expect("recv")).collect();
    (ids, hs)
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("races/destroy_waits_for_buffered_writes", |e| {
            const N: usize = 256;
            const LEN: usize = 4096;
            let aio = aio_of(e);
            let f = e.file(b"", libc::O_RDWR);
            let fd = f.as_raw_fd();
            let bufs = anon_pages(N).cast::<u8>();
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(60) };
                write_then_destroy(aio, fd, bufs, N, LEN, out);
            });
            e.rec_all(lines);
        }),
        c("races/destroy_waits_for_direct_writes", |e| {
            const N: usize = 64;
            const LEN: usize = 4096;
            let aio = aio_of(e);
            let f = e.file(b"", libc::O_RDWR);
            let Some(d) = reopen_direct(e, &f, libc::O_RDWR) else { return };
            let fd = d.as_raw_fd();
            let bufs = anon_pages(N).cast::<u8>();
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(60) };
                write_then_destroy(aio, fd, bufs, N, LEN, out);
            });
            e.rec_all(lines);
        }),
        c("races/destroy_racing_submit_of_polls_finishes", |e| {
            const REPS: u64 = 100;
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(120) };
                let (r, _w) = pipe();
                let rfd = r.as_raw_fd();
                let mut finished = 0;
                let mut destroy_ok = 0;
                let mut seed = 0x9e37_79b9_u64;
                for _ in 0..REPS {
                    let mut ctx = 0u64;
                    // SAFETY: a valid pointer to a zeroed handle.
                    if unsafe { aio.setup(64, &mut ctx) } != 0 {
                        break;
                    }
                    let go = Arc::new(Barrier::new(2));
                    let g = go.clone();
                    let submitter = std::thread::spawn(move || {
                        let cbs: Vec<&'static mut iocb> =
                            (0..64).map(|i| leak(cb(IOCB_CMD_POLL, rfd, libc::POLLIN as u64, 0, 0, i))).collect();
                        let mut ptrs: Vec<*mut iocb> = cbs.into_iter().map(|c| c as *mut iocb).collect();
                        g.wait();
                        let mut i = 0usize;
                        loop {
                            // SAFETY: one valid iocb pointer (leaked, so it
                            // outlives any pending request naming it).
                            let r = unsafe { aio.submit(ctx, 1, ptrs.as_mut_ptr().add(i % 64)) };
                            i += 1;
                            if r == -(libc::EINVAL as i64) {
                                return true;
                            }
                            if r != 1 && r != -(libc::EAGAIN as i64) {
                                return false;
                            }
                        }
                    });
                    go.wait();
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    std::thread::sleep(Duration::from_micros(seed % 2000));
                    // SAFETY: destroying the context made above.
                    if unsafe { aio.destroy(ctx) } == 0 {
                        destroy_ok += 1;
                    }
                    if submitter.join().unwrap_or(false) {
                        finished += 1;
                    }
                }
                out.push(format!("destroy returned 0: {destroy_ok} of {REPS}"));
                out.push(format!("submitter saw EINVAL after destroy: {finished} of {REPS}"));
            });
            e.rec_all(lines);
        }),
        c("races/pgetevents_with_mask_and_unwritable_events_is_efault", |e| {
            let aio = aio_of(e);
            let f = e.file(b"abc", libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let bad = no_access_page();
            let lines = in_child(move |out| {
                let ctx = child_context(aio, out);
                let buf = leak_buf(3);
                let a = leak(cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 3, 0, 5));
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb.
                out.push(format!("submit = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
                out.push(format!("ready = {}", wait_ready(ctx, 1)));
                let mask: u64 = 0;
                let sig = aio_sigset { sigmask: &mask as *const u64, sigsetsize: 8 };
                let mut t = ts(1, 0);
                // SAFETY: the events pointer is deliberately unwritable; the
                // rest is valid.
                let r = unsafe { aio.pgetevents(ctx, 1, 1, bad as *mut io_event, &mut t, &sig) };
                out.push(format!("pgetevents into an unwritable array = {}", ret(r)));
                let mut ev = [io_event::default(); 1];
                // SAFETY: room for one event.
                let r = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                out.push(format!("getevents after = {} data={} res={}", ret(r), ev[0].data, ev[0].res));
                // SAFETY: destroying the context made above.
                unsafe { aio.destroy(ctx) };
            });
            e.rec_all(lines);
        }),
        c("races/completions_inside_submit_wake_a_waiter_of_several", |e| {
            let aio = aio_of(e);
            let f = e.file(b"0123456789", libc::O_RDONLY);
            let fd = f.as_raw_fd();
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                let (r, _w) = pipe();
                let mut ctx = 0u64;
                // SAFETY: a valid pointer to a zeroed handle.
                out.push(format!("setup = {}", ret(unsafe { aio.setup(16, &mut ctx) })));
                let mut polls: Vec<*mut iocb> = (0..3)
                    .map(|i| leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 100 + i)) as *mut iocb)
                    .collect();
                // SAFETY: three valid iocbs.
                out.push(format!("submit polls = {}", ret(unsafe { aio.submit(ctx, 3, polls.as_mut_ptr()) })));
                let waiter = std::thread::spawn(move || {
                    let mut ev = [io_event::default(); 3];
                    // SAFETY: room for three events; no time limit.
                    let r = unsafe { aio.getevents(ctx, 3, 3, ev.as_mut_ptr(), std::ptr::null_mut()) };
                    let mut data: Vec<u64> = ev.iter().take(r.max(0) as usize).map(|e| e.data).collect();
                    data.sort();
                    (r, data)
                });
                // Let the waiter fall asleep first (a head start, not a
                // measurement: the outcome is the same either way).
                std::thread::sleep(Duration::from_millis(200));
                let mut reads: Vec<*mut iocb> = (0..3)
                    .map(|i| {
                        leak(cb(IOCB_CMD_PREAD, fd, leak_buf(2).as_mut_ptr() as u64, 2, 2 * i, i as u64)) as *mut iocb
                    })
                    .collect();
                // SAFETY: three valid iocbs.
                out.push(format!("submit reads = {}", ret(unsafe { aio.submit(ctx, 3, reads.as_mut_ptr()) })));
                let (n, data) = waiter.join().expect("waiter");
                out.push(format!("waiter got {} events: {data:?}", ret(n)));
                // SAFETY: destroying the context made above (cancels the polls).
                out.push(format!("destroy = {}", ret(unsafe { aio.destroy(ctx) })));
            });
            e.rec_all(lines);
        }),
        c("races/idle_waiters_sleep", |e| {
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                let (r, _w) = pipe();
                let ctx = setup_with_pending_poll(aio, r.as_raw_fd(), out);
                let (_, hs) = waiters(aio, ctx, 2, Some(Duration::from_secs(1)));
                for h in hs {
                    let (r, switches) = h.join().expect("waiter");
                    // A sleeping waiter switches a handful of times; one that
                    // spins with the other switches thousands of times.
                    out.push(format!("waiter: {} after its timeout, asleep: {}", ret(r), switches < 100));
                }
                // SAFETY: destroying the context made above.
                unsafe { aio.destroy(ctx) };
            });
            e.rec_all(lines);
        }),
        c("races/signal_interrupts_every_waiter", |e| {
            let aio = aio_of(e);
            let lines = with_restart_handler(move |out| {
                // SAFETY: alarm(2); the child is killed if a waiter never wakes.
                unsafe { libc::alarm(20) };
                let (r, _w) = pipe();
                let ctx = setup_with_pending_poll(aio, r.as_raw_fd(), out);
                // No time limit: only the signal can end these waits, even
                // with SA_RESTART (io_getevents is never restarted).
                let (ids, hs) = waiters(aio, ctx, 3, None);
                // One signal at a time, each once the waiters are asleep
                // again (a signal that lands while a thread is awake and
                // between system calls cannot be seen by any library).
                for id in ids {
                    std::thread::sleep(Duration::from_millis(200));
                    // SAFETY: the waiter threads are alive until joined below.
                    unsafe { libc::pthread_kill(id, SIG) };
                }
                for h in hs {
                    out.push(format!("waiter: {}", ret(h.join().expect("waiter").0)));
                }
                // SAFETY: destroying the context made above.
                unsafe { aio.destroy(ctx) };
            });
            e.rec_all(lines);
        }),
        c("races/waiter_sees_einval_when_destroy_cancels_its_poll", |e| {
            const REPS: usize = 400;
            let aio = aio_of(e);
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(60) };
                let (r, _w) = pipe();
                let rfd = r.as_raw_fd();
                let mut einval = 0;
                for i in 0..REPS {
                    let mut ctx = 0u64;
                    // SAFETY: a valid pointer to a zeroed handle.
                    if unsafe { aio.setup(8, &mut ctx) } != 0 {
                        break;
                    }
                    let a = leak(cb(IOCB_CMD_POLL, rfd, libc::POLLIN as u64, 0, 0, 0x1234));
                    let mut p = [a as *mut iocb];
                    // SAFETY: one valid iocb.
                    unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                    let waiter = std::thread::spawn(move || {
                        let mut ev = [io_event::default(); 4];
                        // SAFETY: room for four events; no time limit (the
                        // destroy ends the wait).
                        unsafe { aio.getevents(ctx, 1, 4, ev.as_mut_ptr(), std::ptr::null_mut()) }
                    });
                    // Half the destroys come before the waiter can have
                    // started (it may then find the context dead on entry),
                    // half while it waits.
                    let pause = if i % 2 == 0 { (i / 2 % 4) as u64 } else { 50 * (i % 20) as u64 };
                    std::thread::sleep(Duration::from_micros(pause));
                    // SAFETY: destroying the context made above.
                    unsafe { aio.destroy(ctx) };
                    if waiter.join().expect("waiter") == -(libc::EINVAL as i64) {
                        einval += 1;
                    }
                }
                out.push(format!("waiter got EINVAL: {einval} of {REPS}"));
            });
            e.rec_all(lines);
        }),
        c("races/poll_cancelled_while_it_becomes_ready_reports_0", |e| {
            const REPS: usize = 400;
            let aio = aio_of(e);
            let ctx = e.setup(8);
            let (mut inprogress, mut nonzero) = (0, 0);
            for i in 0..REPS {
                let (r, w) = pipe();
                let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 7));
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb.
                unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                let wfd = w.as_raw_fd();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros((i % 7) as u64 * 10));
                    write_fd(wfd, b"x");
                });
                // SAFETY: cancelling the POLL just submitted.
                let c = unsafe { aio.cancel(ctx, a, std::ptr::null_mut()) };
                writer.join().expect("writer");
                let mut ev = [io_event::default(); 1];
                let mut t = ts(5, 0);
                // SAFETY: room for one event.
                unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                if c == -(libc::EINPROGRESS as i64) {
                    inprogress += 1;
                    if ev[0].res != 0 {
                        nonzero += 1;
                    }
                }
            }
            e.rec(format!("cancels that found the POLL pending: some = {}", inprogress > 0));
            e.rec(format!("of those, events with res != 0: {nonzero}"));
        }),
        c("races/exit_while_threads_submit_is_prompt_and_keeps_accepted_writes", |e| {
            const SLOTS: usize = 1 << 18;
            const BLOCK: usize = 4096;
            let aio = aio_of(e);
            let f = e.file(b"", libc::O_RDWR);
            let Some(d) = reopen_direct(e, &f, libc::O_RDWR) else { return };
            let fd = d.as_raw_fd();
            // Which slots' writes io_submit accepted, shared with the child.
            let accepted = anon_shared(SLOTS) as usize;
            let lines = in_child(move |_| {
                // SAFETY: alarm(2): a child whose exit hangs is killed.
                unsafe { libc::alarm(30) };
                for t in 0..2usize {
                    std::thread::spawn(move || {
                        let mut ctx = 0u64;
                        // SAFETY: a valid pointer to a zeroed handle.
                        if unsafe { aio.setup(64, &mut ctx) } != 0 {
                            return;
                        }
                        let mut in_flight = 0i64;
                        let buf = anon_pages(1);
                        // SAFETY: filling the page just mapped.
                        unsafe { buf.write_bytes(0x5a, BLOCK) };
                        let mut slot = t;
                        let mut ev = [io_event::default(); 64];
                        // Until the process is gone: an exit that waits for
                        // these threads to stop submitting never ends.
                        loop {
                            if slot + 16 >= SLOTS {
                                // SAFETY: pause(2): nothing left to write.
                                unsafe { libc::pause() };
                            }
                            let mut batch: Vec<*mut iocb> = (0..8)
                                .map(|k| {
                                    let s = (slot + 2 * k) % SLOTS;
                                    leak(cb(
                                        IOCB_CMD_PWRITE,
                                        fd,
                                        buf as u64,
                                        BLOCK as u64,
                                        (BLOCK * s) as i64,
                                        s as u64,
                                    )) as *mut iocb
                                })
                                .collect();
                            // SAFETY: eight valid iocbs whose buffer lives for the process.
                            let n = unsafe { aio.submit(ctx, 8, batch.as_mut_ptr()) };
                            for k in 0..n.max(0) as usize {
                                // SAFETY: slots < SLOTS bytes of shared memory.
                                unsafe { (accepted as *mut u8).add((slot + 2 * k) % SLOTS).write_volatile(1) };
                            }
                            slot = (slot + 2 * n.max(0) as usize) % SLOTS;
                            in_flight += n.max(0);
                            // Reap, keeping at least 32 in flight all along.
                            let min = (in_flight - 32).max(0);
                            // SAFETY: room for 64 events; waits for `min`.
                            let g =
                                unsafe { aio.getevents(ctx, min.min(64), 64, ev.as_mut_ptr(), std::ptr::null_mut()) };
                            in_flight -= g.max(0);
                        }
                    });
                }
                std::thread::sleep(Duration::from_millis(1000));
                // SAFETY: exit(3) from the main thread while the others submit.
                unsafe { libc::exit(0) };
            });
            let (mut acc, mut missing) = (0, 0);
            let mut b = vec![0u8; BLOCK];
            for slot in 0..SLOTS {
                // SAFETY: slot < SLOTS bytes of shared memory.
                if unsafe { (accepted as *const u8).add(slot).read_volatile() } == 1 {
                    acc += 1;
                    // SAFETY: pread into a local buffer of BLOCK bytes.
                    let n = unsafe { libc::pread(f.as_raw_fd(), b.as_mut_ptr().cast(), BLOCK, (BLOCK * slot) as i64) };
                    if n != BLOCK as isize || b.iter().any(|&x| x != 0x5a) {
                        missing += 1;
                    }
                }
            }
            e.rec_all(lines);
            e.rec(format!("some writes accepted: {}", acc > 0));
            e.rec(format!("accepted writes missing from the file: {missing}"));
        }),
        c("races/resfd_number_swapped_during_submit_never_writes_a_file", |e| {
            let aio = aio_of(e);
            let target = e.file(b"", libc::O_RDWR);
            let tfd = target.as_raw_fd();
            let victim = e.file(b"", libc::O_RDWR);
            let vpath = format!("/proc/self/fd/{}", victim.as_raw_fd());
            let vpath = std::fs::read_link(&vpath).expect("victim path");
            let ctx = e.setup(64);
            // The number the swapper keeps closing and reopening, first as
            // an eventfd, then as the victim file, then as an eventfd again.
            let n = eventfd();
            let num = n.as_raw_fd();
            std::mem::forget(n);
            let buf = leak_buf(8);
            let write_signalling = |i: u64| {
                let mut a = cb(IOCB_CMD_PWRITE, tfd, buf.as_ptr() as u64, 8, 0, i);
                a.aio_flags = IOCB_FLAG_RESFD;
                a.aio_resfd = num as u32;
                let a = leak(a);
                let mut p = [a as *mut iocb];
                // SAFETY: one valid iocb.
                let accepted = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) } == 1;
                if accepted {
                    let mut ev = [io_event::default(); 1];
                    let mut t = ts(5, 0);
                    // SAFETY: room for one event.
                    unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                }
                accepted
            };
            // Before the swapping, the number is an eventfd: the write is
            // accepted (how many are during the swapping depends on timing
            // alone, and is not compared).
            e.rec(format!("a write before the swapping accepted: {}", write_signalling(u64::MAX)));
            let stop = Arc::new(AtomicU64::new(0));
            let st = stop.clone();
            let swapper = std::thread::spawn(move || {
                let c_path = std::ffi::CString::new(vpath.as_os_str().as_encoded_bytes()).expect("path");
                while st.load(Ordering::SeqCst) == 0 {
                    // SAFETY: closing and reopening the one number this case
                    // owns; each open takes the lowest free number, `num`.
                    unsafe {
                        libc::close(num);
                        let v = libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                        libc::close(v);
                        libc::eventfd(0, libc::EFD_CLOEXEC);
                    }
                }
            });
            let done = (0..20_000u64).filter(|&i| write_signalling(i)).count();
            stop.store(1, Ordering::SeqCst);
            swapper.join().expect("swapper");
            // SAFETY: closing the swapped number, which this case owns.
            unsafe { libc::close(num) };
            if std::env::var_os("UAIO_CONFORM_TRACE").is_some() {
                let side = if e.is_kernel() { "kernel" } else { "uaio" };
                eprintln!("{side}: {done} of 20000 writes accepted during the swapping");
            }
            // SAFETY: fstat into a zeroed struct.
            let size = unsafe {
                let mut s: libc::stat = std::mem::zeroed();
                libc::fstat(victim.as_raw_fd(), &mut s);
                s.st_size
            };
            e.rec(format!("bytes in the file that took the eventfd's number: {size}"));
        }),
        c("races/few_in_flight_never_eagain", |e| {
            const THREADS: usize = 4;
            const PER: usize = 4000;
            let aio = aio_of(e);
            let f = e.file(&[7u8; 512], libc::O_RDWR);
            let fd = f.as_raw_fd();
            let ctx = e.setup(256);
            let eagain = Arc::new(AtomicU64::new(0));
            let other = Arc::new(AtomicU64::new(0));
            let events = Arc::new(AtomicU64::new(0));
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (eagain, other, events) = (eagain.clone(), other.clone(), events.clone());
                    std::thread::spawn(move || {
                        let buf = leak_buf(512);
                        let a = leak(cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 512, 0, t as u64));
                        if t % 2 == 1 {
                            a.aio_lio_opcode = IOCB_CMD_PWRITE;
                        }
                        let mut p = [a as *mut iocb];
                        let mut ev = [io_event::default(); 1];
                        for _ in 0..PER {
                            // SAFETY: one valid iocb, not pending (its event
                            // was reaped before the next submission).
                            let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
                            if r == -(libc::EAGAIN as i64) {
                                eagain.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            if r != 1 {
                                other.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            let mut t = ts(5, 0);
                            // SAFETY: room for one event.
                            let n = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                            events.fetch_add(n.max(0) as u64, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("thread");
            }
            e.rec(format!("EAGAIN from io_submit: {}", eagain.load(Ordering::SeqCst)));
            e.rec(format!("other submit results: {}", other.load(Ordering::SeqCst)));
            e.rec(format!("events: {}", events.load(Ordering::SeqCst)));
        }),
    ]
}
