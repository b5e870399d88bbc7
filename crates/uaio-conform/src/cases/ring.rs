//! The ring as programs see it: reaped in user space, interleaved with
//! io_getevents, wrapped around, and its user-writable header corrupted.
//! Also handles that only look like a ring.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

fn reads(e: &mut Env, ctx: u64, f: &std::os::fd::OwnedFd, first: u64, n: u64) {
    for i in first..first + n {
        let buf = leak_buf(1).as_mut_ptr() as u64;
        let a = leak(cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, (i % 16) as i64, i));
        let mut p = [a as *mut iocb];
        // SAFETY: one valid iocb.
        let r = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
        if r != 1 {
            e.rec(format!("submit {i} = {}", ret(r)));
        }
    }
}

fn get_data(e: &mut Env, ctx: u64, min: i64, nr: i64) -> Vec<u64> {
    let mut evs = vec![io_event::default(); nr as usize];
    let mut t = ts(5, 0);
    // SAFETY: room for nr events.
    let r = unsafe { e.aio.getevents(ctx, min, nr, evs.as_mut_ptr(), &mut t) };
    if r < 0 {
        e.rec(format!("getevents = {}", ret(r)));
    }
    evs.iter().take(r.max(0) as usize).map(|e| e.data).collect()
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("ring/user_reap_interleaved_with_getevents", |e| {
            let ctx = e.setup(8);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            reads(e, ctx, &f, 1, 4);
            e.rec(format!("4 ready = {}", wait_ready(ctx, 4)));
            let mut seen = Vec::new();
            if let Some(ev) = ring_take(ctx) {
                seen.push(ev.data);
            }
            seen.extend(get_data(e, ctx, 1, 1));
            if let Some(ev) = ring_take(ctx) {
                seen.push(ev.data);
            }
            seen.extend(get_data(e, ctx, 1, 4));
            e.rec(format!("took {} events", seen.len()));
            seen.sort();
            e.rec(format!("data {seen:?}"));
            e.getevents(ctx, 0, 4, Some(Duration::ZERO));
            e.rec(format!("ring empty = {}", ring_avail(ctx) == 0));
        }),
        c("ring/wraps_around_with_user_reaping", |e| {
            let ctx = e.setup(1);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            // SAFETY: reading the header of a live context.
            let nr = unsafe { (*ring(ctx)).nr } as u64;
            let mut ok = 0u64;
            let mut via_getevents = 0u64;
            for round in 0..(nr * 3 / 10 + 1) {
                let base = round * 10;
                reads(e, ctx, &f, base, 10);
                let mut got: Vec<u64> = Vec::new();
                for k in 0..10 {
                    if k % 3 == 2 {
                        let d = get_data(e, ctx, 1, 1);
                        via_getevents += d.len() as u64;
                        got.extend(d);
                    } else if let Some(ev) = ring_take(ctx) {
                        if ev.res == 1 {
                            got.push(ev.data);
                        }
                    }
                }
                got.sort();
                if got == (base..base + 10).collect::<Vec<_>>() {
                    ok += 1;
                }
            }
            e.rec(format!("rounds all correct: {ok} of {}, via getevents {via_getevents}", nr * 3 / 10 + 1));
            // SAFETY: as above.
            let (h, t) = unsafe { ((*ring(ctx)).head, (*ring(ctx)).tail) };
            e.rec(format!("head == tail = {}, head < nr = {}", h == t, (h as u64) < nr));
        }),
        c("ring/garbage_head_does_not_break_context", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            // SAFETY: the header of a live context; head is the reader's field.
            let nr = unsafe { (*ring(ctx)).nr };
            for garbage in [0xffff_fff0u32, nr, nr + 3, 0x8000_0000] {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile(&mut (*ring(ctx)).head, garbage) };
                let mut evs = vec![io_event::default(); nr as usize + 1];
                let mut t = ts(0, 0);
                // SAFETY: room for nr + 1 events.
                let r = unsafe { e.aio.getevents(ctx, 0, nr as i64 + 1, evs.as_mut_ptr(), &mut t) };
                e.rec(format!("head={garbage:#x}: getevents returned, in range = {}", (0..=nr as i64).contains(&r)));
                // SAFETY: as above; restore a consistent head.
                unsafe {
                    let tail = std::ptr::read_volatile(&(*ring(ctx)).tail);
                    std::ptr::write_volatile(&mut (*ring(ctx)).head, tail);
                }
                reads(e, ctx, &f, 1, 2);
                let mut d = get_data(e, ctx, 2, 2);
                d.sort();
                e.rec(format!("after restoring head: data {d:?}"));
            }
            e.getevents(ctx, 0, 4, Some(Duration::ZERO));
        }),
        c("ring/header_fields_not_trusted", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            let r = ring(ctx);
            // SAFETY: the header of a live context is writable by the program.
            let saved = unsafe { *r };
            // SAFETY: as above: garbage in fields the kernel does not read.
            unsafe {
                (*r).magic = 0;
                (*r).compat_features = 77;
                (*r).incompat_features = 0xffff;
                (*r).header_length = 4096;
            }
            reads(e, ctx, &f, 1, 2);
            let mut d = get_data(e, ctx, 2, 2);
            d.sort();
            e.rec(format!("magic etc. overwritten: data {d:?}"));
            // SAFETY: as above.
            unsafe {
                (*r).magic = saved.magic;
                (*r).compat_features = saved.compat_features;
                (*r).incompat_features = saved.incompat_features;
                (*r).header_length = saved.header_length;
            }
            // SAFETY: reading nr from the header of the live context's ring.
            e.rec(format!("nr unchanged = {}", unsafe { (*r).nr } == saved.nr));
        }),
        c("ring/corrupted_id_makes_handle_invalid", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            let r = ring(ctx);
            // SAFETY: the header of a live context.
            let id = unsafe { (*r).id };
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(&mut (*r).id, id + 1000) };
            let buf = leak_buf(1).as_mut_ptr() as u64;
            try_key(e, ctx, "read with corrupted id", cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, 0, 1));
            e.getevents(ctx, 0, 1, Some(Duration::ZERO));
            let mut a = cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, 0, 1);
            cancel(e, "corrupted id", ctx, &mut a);
            let d = destroy(e, "corrupted id", ctx);
            if d != 0 {
                // SAFETY: still mapped, since destroy refused.
                unsafe { std::ptr::write_volatile(&mut (*r).id, id) };
                sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, 0, 2));
                e.reap(ctx, 1);
            }
        }),
        c("ring/forged_and_shifted_handles", |e| {
            let ctx = e.setup(4);
            let f = e.file(b"abcdefghijklmnop", libc::O_RDWR);
            // A copy of the real header elsewhere in memory.
            // SAFETY: reading the header of a live context.
            let hdr = unsafe { *ring(ctx) };
            let copy = leak_buf(4096 + 64);
            let fake = (copy.as_mut_ptr() as u64 + 63) & !63;
            // SAFETY: the copy fits in the leaked buffer.
            unsafe { *(fake as *mut aio_ring) = hdr };
            let ro = read_only_page(&[0u8; 64]);
            let buf = leak_buf(1).as_mut_ptr() as u64;
            for (what, h) in [
                ("forged copy", fake),
                ("ctx + 8", ctx + 8),
                ("ctx + 4096", ctx + 4096),
                ("ctx - 4096", ctx - 4096),
                ("read-only zero page", ro),
                ("unmapped page", no_access_page()),
                ("u64::MAX", u64::MAX),
            ] {
                try_key(e, h, what, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, 0, 1));
                let mut evs = [io_event::default(); 1];
                let mut t = ts(0, 0);
                // SAFETY: room for one event.
                let g = unsafe { e.aio.getevents(h, 0, 1, evs.as_mut_ptr(), &mut t) };
                let mut a = cb(IOCB_CMD_PREAD, 0, 0, 0, 0, 1);
                // SAFETY: a valid iocb with key 0.
                let cn = unsafe { e.aio.cancel(h, &mut a, std::ptr::null_mut()) };
                e.rec(format!("{what}: getevents = {} cancel = {}", ret(g), ret(cn)));
            }
            for (what, h) in [("forged copy", fake), ("ctx + 8", ctx + 8), ("read-only zero page", ro)] {
                destroy(e, what, h);
            }
            sub1(e, ctx, cb(IOCB_CMD_PREAD, f.as_raw_fd(), buf, 1, 0, 9));
            e.reap(ctx, 1);
        }),
    ]
}
