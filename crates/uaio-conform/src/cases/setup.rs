//! `io_setup`: argument checks, the ring header, ring sizes and slots per
//! size, and the `aio-max-nr` budget.

use std::os::fd::AsRawFd;

use super::fixtures::*;
use crate::*;

pub(super) fn aio_max_nr() -> u32 {
    std::fs::read_to_string("/proc/sys/fs/aio-max-nr").unwrap().trim().parse().unwrap()
}

/// What this process may still ask of io_setup: the host-wide remainder for
/// the kernel (other processes may hold contexts), the whole of aio-max-nr
/// for uaio (its budget is per process, and the case starts with none).
pub(super) fn budget(e: &Env) -> u32 {
    let max = aio_max_nr();
    if e.is_kernel() {
        let used: u32 = std::fs::read_to_string("/proc/sys/fs/aio-nr").unwrap().trim().parse().unwrap();
        max - used
    } else {
        max
    }
}

/// Contexts made by [`quiet_setup`], destroyed when dropped.
pub(super) struct Owned(pub(super) &'static dyn Aio, pub(super) Vec<u64>);

impl Drop for Owned {
    fn drop(&mut self) {
        for &c in &self.1 {
            // SAFETY: destroying our own contexts (EINVAL if already gone).
            unsafe { self.0.destroy(c) };
        }
    }
}

/// io_setup without recording `nr` (budget numbers depend on the host).
pub(super) fn quiet_setup(o: &mut Owned, nr: u32) -> (i64, u64) {
    let mut ctx = 0u64;
    // SAFETY: valid pointer to a zeroed handle.
    let r = unsafe { o.0.setup(nr, &mut ctx) };
    if r == 0 {
        o.1.push(ctx);
    }
    (r, ctx)
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
        c("setup/aio_max_nr_boundary", |e| {
            let avail = budget(e);
            let o = &mut Owned(aio_of(e), Vec::new());
            let ctx = quiet_setup(o, avail);
            e.rec(format!("nr == whole budget: {}", ret(ctx.0)));
            e.rec(format!("one more: {}", ret(quiet_setup(o, 1).0)));
            destroy(e, "whole budget", ctx.1);
            let h1 = quiet_setup(o, avail / 2);
            let h2 = quiet_setup(o, avail - avail / 2);
            let h3 = quiet_setup(o, 1);
            e.rec(format!("two halves: {} {}, one more: {}", ret(h1.0), ret(h2.0), ret(h3.0)));
            destroy(e, "first half", h1.1);
            e.rec(format!("after freeing a half: {}", ret(quiet_setup(o, 1).0)));
        }),
        c("setup/budget_counts_requested_nr", |e| {
            let avail = budget(e);
            let o = &mut Owned(aio_of(e), Vec::new());
            let a = quiet_setup(o, avail - 10);
            let b = quiet_setup(o, 11);
            let c2 = quiet_setup(o, 10);
            let d = quiet_setup(o, 1);
            e.rec(format!("all-10: {}, 11: {}, 10: {}, 1: {}", ret(a.0), ret(b.0), ret(c2.0), ret(d.0)));
            destroy(e, "10", c2.1);
            e.rec(format!("after freeing 10: 10 again {}", ret(quiet_setup(o, 10).0)));
        }),
        c("setup/size_limit_boundary", |e| {
            for nr in [4_194_304u32, 4_194_305, 0x1000_0000, 0xffff_ffff] {
                e.setup(nr);
            }
        }),
        c("setup/ring_nr_for_sizes", |e| {
            for nr in [2u32, 3, 7, 8, 9, 63, 64, 65, 126, 127, 128, 129, 255, 256, 511, 512, 1023, 1024, 1025, 10000] {
                let mut ctx = 0u64;
                // SAFETY: valid pointer to a zeroed handle.
                let r = unsafe { e.aio.setup(nr, &mut ctx) };
                // SAFETY: reading the header of the context just created.
                let h = if r == 0 { unsafe { *ring(ctx) } } else { aio_ring::default() };
                e.rec(format!("nr {nr}: setup = {} ring nr {}", ret(r), h.nr));
                if r == 0 {
                    // SAFETY: destroying our context.
                    unsafe { e.aio.destroy(ctx) };
                }
            }
        }),
        c("setup/slots_per_size", |e| {
            for nr in [1u32, 8, 32, 100] {
                let ctx = e.setup(nr);
                let (r, _w) = pipe();
                let mut n = 0;
                loop {
                    let a = leak(cb(IOCB_CMD_POLL, r.as_raw_fd(), libc::POLLIN as u64, 0, 0, n));
                    let mut p = [a as *mut iocb];
                    // SAFETY: one valid iocb.
                    let k = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
                    if k != 1 {
                        e.rec(format!("nr {nr}: {n} pending, then {}", ret(k)));
                        break;
                    }
                    n += 1;
                    if n > 5000 {
                        e.rec("never full");
                        break;
                    }
                }
                destroy(e, "", ctx);
            }
        }),
    ]
}
