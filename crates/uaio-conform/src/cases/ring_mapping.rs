//! The application changes the ring's mapping while a request is pending:
//! unmaps it, moves it with `mremap`, maps something else over it, changes
//! its protection, or forks. Each case runs in a forked child, so a crash is
//! a failed case (`child exit=-1`) rather than a dead test run.
//!
//! What the kernel does (checked on 6.18): it writes completions through its
//! own mapping of the ring pages, so nothing the program does to its view
//! stops delivery; it finds a context by reading `id` at the handle, so an
//! unmapped or inaccessible handle is `EINVAL`; it follows a move (the new
//! address becomes the handle, the old one is `EINVAL`); and `io_destroy`
//! unmaps whatever lies at the handle, for the ring's length.

use std::os::fd::{AsRawFd, OwnedFd};

use super::fixtures::*;
use crate::*;

/// Bytes of the ring `io_setup(nr)` makes on this machine (whole pages).
fn ring_len(ctx: u64) -> usize {
    // SAFETY: reading `nr` from the header of a live, mapped ring.
    let nr = unsafe { std::ptr::read_volatile(&(*ring(ctx)).nr) } as usize;
    (32 + 32 * nr).div_ceil(4096) * 4096
}

/// A context made by [`setup`] with one POLL pending on an empty pipe.
struct Pending {
    /// The handle.
    ctx: u64,
    /// Bytes of its ring ([`ring_len`]).
    len: usize,
    /// The pipe the POLL waits on, read end.
    r: OwnedFd,
    /// Its write end ([`complete`] makes the POLL ready).
    w: OwnedFd,
    /// The eventfd the POLL's completion signals.
    efd: OwnedFd,
    /// The POLL's iocb (`aio_data` 1).
    cb: u64,
}

/// `setup(a, 4)`, then a POLL (`aio_data` 1) on a new pipe, signalling a
/// new eventfd; each step recorded as [`setup`] and [`poll`] do.
fn pending_poll(a: &dyn Aio, out: &mut Vec<String>) -> Pending {
    let ctx = setup(a, 4, out);
    let len = ring_len(ctx);
    let (r, w) = pipe();
    let efd = eventfd();
    let cb = poll(a, ctx, r.as_raw_fd(), efd.as_raw_fd(), 1, out);
    Pending { ctx, len, r, w, efd, cb }
}

/// Whether the page at `addr` is mapped (`msync` fails with `ENOMEM` on a hole).
fn mapped(addr: u64) -> bool {
    // SAFETY: msync only inspects the address range.
    unsafe { libc::msync(addr as *mut libc::c_void, 4096, libc::MS_ASYNC) == 0 }
}

/// `io_setup(nr)` in the child, recorded, then one POLL completed and
/// reaped. The round trip lets uaio's threads start first: a thread maps
/// its signal stack when it starts, and that mapping could otherwise land
/// in the hole the case makes where the ring was, where its zeroes would
/// read as the ring's `id` (0) and name the context again, as they would
/// for the kernel.
fn setup(a: &dyn Aio, nr: u32, out: &mut Vec<String>) -> u64 {
    let mut ctx = 0u64;
    // SAFETY: valid pointer to a zeroed handle.
    let r = unsafe { a.setup(nr, &mut ctx) };
    out.push(format!("setup({nr}) = {}", ret(r)));
    let (rd, w) = pipe();
    let efd = eventfd();
    let cb = poll(a, ctx, rd.as_raw_fd(), efd.as_raw_fd(), 100, out);
    complete(&w, &efd, out);
    getevents(a, ctx, 1, "first poll", cb, out);
    ctx
}

/// Submits a POLL for input on `rfd` that signals `efd` when its event is
/// in the ring; returns the (leaked) iocb.
fn poll(a: &dyn Aio, ctx: u64, rfd: i32, efd: i32, data: u64, out: &mut Vec<String>) -> u64 {
    let cb = leak(cb(IOCB_CMD_POLL, rfd, libc::POLLIN as u64, 0, 0, data));
    cb.aio_flags = IOCB_FLAG_RESFD;
    cb.aio_resfd = efd as u32;
    let mut p = [cb as *mut iocb];
    // SAFETY: one valid iocb that lives for the rest of the process.
    let r = unsafe { a.submit(ctx, 1, p.as_mut_ptr()) };
    out.push(format!("submit poll {data} = {}", ret(r)));
    cb as *mut iocb as u64
}

/// Makes the pipe readable, then blocks until the eventfd says the event is
/// in the ring: from then on, the completion has been written.
fn complete(w: &OwnedFd, efd: &OwnedFd, out: &mut Vec<String>) {
    write_fd(w.as_raw_fd(), b"x");
    let mut v = 0u64;
    // SAFETY: an 8-byte blocking read of an eventfd into v.
    let n = unsafe { libc::read(efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    out.push(format!("eventfd read = {n}, count = {v}"));
}

/// `io_getevents(min, nr)` with a 5 s timeout, recorded with its events.
fn getevents(a: &dyn Aio, ctx: u64, min: i64, what: &str, obj: u64, out: &mut Vec<String>) -> i64 {
    let mut evs = [io_event::default(); 4];
    let mut t = ts(5, 0);
    // SAFETY: room for four events.
    let r = unsafe { a.getevents(ctx, min, 4, evs.as_mut_ptr(), &mut t) };
    out.push(format!("{what}: getevents(min={min}) = {}", ret(r)));
    for e in evs.iter().take(r.max(0) as usize) {
        out.push(format!("  event data={} res={} obj matches={}", e.data, e.res, e.obj == obj));
    }
    r
}

/// Every call on a handle that must be invalid, recorded.
fn all_invalid(a: &dyn Aio, h: u64, what: &str, pending: u64, out: &mut Vec<String>) {
    let mut evs = [io_event::default(); 1];
    let mut t = ts(0, 0);
    // SAFETY: room for one event.
    let g = unsafe { a.getevents(h, 0, 1, evs.as_mut_ptr(), &mut t) };
    let mut extra = cb(IOCB_CMD_POLL, 0, libc::POLLIN as u64, 0, 0, 99);
    let mut p = [&mut extra as *mut iocb];
    // SAFETY: one valid iocb; the handle is what is under test.
    let s = unsafe { a.submit(h, 1, p.as_mut_ptr()) };
    // SAFETY: the pending iocb, still alive.
    let c = unsafe { a.cancel(h, pending as *mut iocb, std::ptr::null_mut()) };
    // SAFETY: destroying any handle is allowed.
    let d = unsafe { a.destroy(h) };
    out.push(format!("{what}: getevents = {} submit = {} cancel = {} destroy = {}", ret(g), ret(s), ret(c), ret(d)));
}

/// An anonymous read-write mapping of `len` bytes, at `at` if not 0 (fixed).
fn map(at: u64, len: usize, fill: u8) -> u64 {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if at != 0 { libc::MAP_FIXED } else { 0 };
    // SAFETY: a new anonymous mapping; at a fixed address only where the
    // case means to replace the ring.
    let p = unsafe { libc::mmap(at as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED);
    if fill != 0 {
        // SAFETY: filling the mapping just made.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), fill, len) };
    }
    p as u64
}

/// `mremap(old, len, len, MAYMOVE | FIXED, dst)`: moves the ring to `dst`.
fn move_to(old: u64, len: usize, dst: u64) -> bool {
    // SAFETY: moving the ring over a reservation the case made; nothing in
    // Rust refers to either range.
    let p = unsafe {
        libc::mremap(
            old as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst as *mut libc::c_void,
        )
    };
    p as u64 == dst
}

/// A case whose body runs in a forked child (with a 20 s alarm), its lines
/// recorded in the trace.
fn child(e: &mut Env, f: fn(&dyn Aio, &mut Vec<String>)) {
    let a = aio_of(e);
    let lines = in_child(move |out| {
        // SAFETY: alarm(2); the child is killed if it hangs.
        unsafe { libc::alarm(20) };
        f(a, out);
    });
    e.rec_all(lines);
}

/// Reads the ring's header fields `(id, head, tail)` at `ctx`.
fn header(ctx: u64) -> (u32, u32, u32) {
    let r = ring(ctx);
    // SAFETY: the caller knows the ring is mapped readable at ctx.
    unsafe {
        (std::ptr::read_volatile(&(*r).id), std::ptr::read_volatile(&(*r).head), std::ptr::read_volatile(&(*r).tail))
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("ring_mapping/munmap_then_poll_completes", |e| {
            child(e, |a, out| {
                let ctx = setup(a, 4, out);
                let (r, w) = pipe();
                let efd = eventfd();
                let cb = poll(a, ctx, r.as_raw_fd(), efd.as_raw_fd(), 1, out);
                // SAFETY: the program unmaps its ring, as the case is about.
                let u = unsafe { libc::munmap(ctx as *mut libc::c_void, ring_len(ctx)) };
                out.push(format!("munmap = {u}"));
                complete(&w, &efd, out);
                all_invalid(a, ctx, "unmapped handle", cb, out);
                all_invalid(a, ctx, "again", cb, out);
                out.push(format!("still unmapped = {}", !mapped(ctx)));
            })
        }),
        c("ring_mapping/mremap_moves_the_handle", |e| {
            child(e, |a, out| {
                let Pending { ctx, len, r, w, efd, cb: cb1 } = pending_poll(a, out);
                let dst = map(0, len, 0);
                out.push(format!("moved = {}", move_to(ctx, len, dst)));
                complete(&w, &efd, out);
                all_invalid(a, ctx, "old address before the new is used", cb1, out);
                out.push(format!("header at new address (id, head, tail) = {:?}", header(dst)));
                getevents(a, dst, 1, "new address", cb1, out);
                out.push(format!("after reaping (id, head, tail) = {:?}", header(dst)));
                // Another request through the new handle, reaped in user space.
                let mut byte = [0u8; 1];
                // SAFETY: draining the byte that made the pipe readable.
                unsafe { libc::read(r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
                let cb2 = poll(a, dst, r.as_raw_fd(), efd.as_raw_fd(), 2, out);
                complete(&w, &efd, out);
                let ev = ring_take(dst);
                out.push(format!(
                    "reaped from the ring: {:?}",
                    ev.map(|e| (e.data, e.res, e.obj == cb2)).unwrap_or((0, 0, false))
                ));
                // The old address, even with a page carrying the ring's id there.
                let old = map(ctx, 4096, 0);
                // SAFETY: the page just mapped at the old address.
                unsafe { *(old as *mut u32) = header(dst).0 };
                all_invalid(a, ctx, "old address over a page with the same id", cb2, out);
                out.push(format!("page at the old address untouched = {}", mapped(old)));
                getevents(a, dst, 0, "new address still", cb2, out);
                // SAFETY: destroying the context through its new handle.
                out.push(format!("destroy new = {}", ret(unsafe { a.destroy(dst) })));
                out.push(format!("new address mapped after destroy = {}", mapped(dst)));
                // SAFETY: as above, a second time.
                out.push(format!("destroy new again = {}", ret(unsafe { a.destroy(dst) })));
            })
        }),
        c("ring_mapping/mremap_then_destroy_at_new_address", |e| {
            child(e, |a, out| {
                let ctx = setup(a, 4, out);
                let len = ring_len(ctx);
                let (r, _w) = pipe();
                let efd = eventfd();
                poll(a, ctx, r.as_raw_fd(), efd.as_raw_fd(), 1, out);
                let dst = map(0, len, 0);
                out.push(format!("moved = {}", move_to(ctx, len, dst)));
                // SAFETY: the new handle is used first by io_destroy.
                out.push(format!("destroy new = {}", ret(unsafe { a.destroy(dst) })));
                out.push(format!("new address mapped after destroy = {}", mapped(dst)));
                // SAFETY: the old handle, unmapped by the move.
                out.push(format!("destroy old = {}", ret(unsafe { a.destroy(ctx) })));
            })
        }),
        c("ring_mapping/map_fixed_over_ring_is_never_written", |e| {
            child(e, |a, out| {
                let Pending { ctx, len, r: _r, w, efd, cb } = pending_poll(a, out);
                let m = map(ctx, len, 0xa5);
                out.push(format!("mapped over the ring = {}", m == ctx));
                complete(&w, &efd, out);
                // SAFETY: the program's own new mapping, len bytes.
                let bytes = unsafe { std::slice::from_raw_parts(m as *const u8, len) };
                out.push(format!("new mapping unchanged = {}", bytes.iter().all(|&b| b == 0xa5)));
                all_invalid(a, ctx, "handle over foreign bytes", cb, out);
                out.push(format!("new mapping still mapped = {}", mapped(m)));
            })
        }),
        c("ring_mapping/map_fixed_zero_page_with_the_same_id", |e| {
            // A fresh zeroed mapping at the handle holds id 0 where the
            // ring's id was: the first context of the process, found again.
            child(e, |a, out| {
                let ctx = setup(a, 4, out);
                let len = ring_len(ctx);
                out.push(format!("id = {}", header(ctx).0));
                let (r, w) = pipe();
                let efd = eventfd();
                let cb = poll(a, ctx, r.as_raw_fd(), efd.as_raw_fd(), 1, out);
                let m = map(ctx, len, 0);
                complete(&w, &efd, out);
                // SAFETY: the program's own new mapping, len bytes.
                let bytes = unsafe { std::slice::from_raw_parts(m as *const u8, len) };
                out.push(format!("new mapping still all zero = {}", bytes.iter().all(|&b| b == 0)));
                getevents(a, ctx, 1, "same handle", cb, out);
                out.push(format!("new mapping still all zero = {}", bytes.iter().all(|&b| b == 0)));
                // SAFETY: destroying the context found at the handle.
                out.push(format!("destroy = {}", ret(unsafe { a.destroy(ctx) })));
                out.push(format!("new mapping mapped after destroy = {}", mapped(m)));
            })
        }),
        c("ring_mapping/mprotect_none_then_restore", |e| {
            child(e, |a, out| {
                let Pending { ctx, len, r: _r, w, efd, cb } = pending_poll(a, out);
                // SAFETY: taking all access from the program's view of its ring.
                let p = unsafe { libc::mprotect(ctx as *mut libc::c_void, len, libc::PROT_NONE) };
                out.push(format!("mprotect none = {p}"));
                complete(&w, &efd, out);
                all_invalid(a, ctx, "inaccessible handle", cb, out);
                // SAFETY: giving the access back.
                let p = unsafe { libc::mprotect(ctx as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) };
                out.push(format!("mprotect read-write = {p}"));
                out.push(format!("(id, head, tail) = {:?}", header(ctx)));
                getevents(a, ctx, 1, "restored", cb, out);
                // SAFETY: destroying the context.
                out.push(format!("destroy = {}", ret(unsafe { a.destroy(ctx) })));
                out.push(format!("mapped after destroy = {}", mapped(ctx)));
            })
        }),
        c("ring_mapping/read_only_ring_still_works", |e| {
            child(e, |a, out| {
                let Pending { ctx, len, r: _r, w, efd, cb } = pending_poll(a, out);
                // SAFETY: write-protecting the program's view of its ring.
                let p = unsafe { libc::mprotect(ctx as *mut libc::c_void, len, libc::PROT_READ) };
                out.push(format!("mprotect read = {p}"));
                complete(&w, &efd, out);
                out.push(format!("(id, head, tail) = {:?}", header(ctx)));
                getevents(a, ctx, 1, "read-only ring", cb, out);
                out.push(format!("(id, head, tail) = {:?}", header(ctx)));
                // SAFETY: destroying the context.
                out.push(format!("destroy = {}", ret(unsafe { a.destroy(ctx) })));
            })
        }),
        c("ring_mapping/partial_unmap_keeps_the_context", |e| {
            child(e, |a, out| {
                let ctx = setup(a, 200, out);
                let len = ring_len(ctx);
                out.push(format!("pages = {}", len / 4096));
                let (r, w) = pipe();
                let efd = eventfd();
                let cb = poll(a, ctx, r.as_raw_fd(), efd.as_raw_fd(), 1, out);
                // SAFETY: unmapping the ring's pages after the first.
                let u = unsafe { libc::munmap((ctx + 4096) as *mut libc::c_void, len - 4096) };
                out.push(format!("munmap tail pages = {u}"));
                complete(&w, &efd, out);
                getevents(a, ctx, 1, "first page only", cb, out);
                // SAFETY: destroying the context.
                out.push(format!("destroy = {}", ret(unsafe { a.destroy(ctx) })));
                out.push(format!("first page mapped after destroy = {}", mapped(ctx)));
            })
        }),
        c("ring_mapping/fork_child_sees_parent_completions", |e| {
            // The ring is a shared mapping: a child inherits it and sees
            // what completes in the parent afterwards.
            let ctx = e.setup(4);
            let (r, w) = pipe();
            let cb = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, 5));
            e.submit(ctx, &mut [&mut *cb]);
            let wfd = w.as_raw_fd();
            // (The id as the parent sees it: this case runs in the test's
            // own process, where contexts of other cases may hold lower
            // ids.)
            let parent_id = header(ctx).0;
            let lines = in_child(move |out| {
                // SAFETY: alarm(2); the child is killed if it hangs.
                unsafe { libc::alarm(20) };
                out.push(format!("child: ring mapped = {}", mapped(ctx)));
                let (id, head, tail) = header(ctx);
                out.push(format!("child: id the parent's = {}, (head, tail) = {:?}", id == parent_id, (head, tail)));
                write_fd(wfd, b"x");
                out.push(format!("child: sees the parent's event = {}", wait_ready(ctx, 1)));
                // SAFETY: the header is readable (inherited mapping).
                let ev = unsafe { std::ptr::read_volatile((ctx + 32) as *const io_event) };
                out.push(format!("child: event data={} res={}", ev.data, ev.res));
            });
            e.rec_all(lines);
            e.reap(ctx, 1);
        }),
        Case {
            name: "ring_mapping/grow_is_refused_only_by_the_kernel",
            expect: Expect::Differs {
                why: "the kernel refuses to grow or duplicate the ring with mremap (EFAULT); uaio cannot refuse it, \
                      and follows the ring to its new address",
                kernel: "grow: mremap = EFAULT",
                uaio: "grow: mremap = ok",
            },
            run: |e| {
                child(e, |a, out| {
                    let Pending { ctx, len, r: _r, w, efd, cb } = pending_poll(a, out);
                    // SAFETY: growing the program's view of its ring; nothing
                    // in Rust refers to it.
                    let p = unsafe { libc::mremap(ctx as *mut libc::c_void, len, 2 * len, libc::MREMAP_MAYMOVE) };
                    let h = if p == libc::MAP_FAILED {
                        out.push(format!("grow: mremap = {}", ret(-(errno() as i64))));
                        ctx
                    } else {
                        out.push("grow: mremap = ok".to_string());
                        p as u64
                    };
                    complete(&w, &efd, out);
                    getevents(a, h, 1, "after grow", cb, out);
                    // SAFETY: destroying the context.
                    out.push(format!("destroy = {}", ret(unsafe { a.destroy(h) })));
                })
            },
        },
    ]
}

/// The calling thread's errno.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
