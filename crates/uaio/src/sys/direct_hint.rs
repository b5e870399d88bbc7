//! Which descriptors are open `O_DIRECT`, as last seen: a hint that keeps
//! `io_submit` from trying a read inline where even a `RWF_NOWAIT` read
//! waits for the device (a direct read through `preadv2` is synchronous:
//! the kernel waits for the bio, `RWF_NOWAIT` only refuses to queue behind
//! a busy device). A "direct" hint costs speed when stale, never
//! correctness, and every full validation refreshes it. A "buffered" hint
//! is trusted only within the coarse clock tick (a few milliseconds) in
//! which it was taken, since a stale one would let a read wait for a device
//! inside `io_submit` (the program closed the descriptor and opened a
//! direct one under the same number); a fork child starts with none.

use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptor numbers with a hint; others are looked up each time.
const SPAN: usize = 4096;
const DIRECT: u64 = 1;
const BUFFERED: u64 = 2;

/// Per descriptor: the tick the hint was taken in, shifted left by 2,
/// and the state in the low 2 bits (0: none).
static HINT: [AtomicU64; SPAN] = [const { AtomicU64::new(0) }; SPAN];

/// Records what `F_GETFL` said about `fd`.
pub(crate) fn record(fd: i32, flags: u32) {
    if let Some(h) = usize::try_from(fd).ok().and_then(|i| HINT.get(i)) {
        let state = if flags & libc::O_DIRECT as u32 != 0 { DIRECT } else { BUFFERED };
        h.store(super::coarse_clock_ns() << 2 | state, Ordering::Relaxed);
    }
}

/// Whether `fd` is (probably) open `O_DIRECT`; asks the kernel when
/// there is no trustworthy hint.
pub(crate) fn is_direct(fd: i32) -> bool {
    let Some(h) = usize::try_from(fd).ok().and_then(|i| HINT.get(i)) else { return lookup(fd) };
    let v = h.load(Ordering::Relaxed);
    match v & 3 {
        DIRECT => true,
        BUFFERED if v >> 2 == super::coarse_clock_ns() => false,
        _ => lookup(fd),
    }
}

fn lookup(fd: i32) -> bool {
    let flags = super::status_flags(fd);
    if flags < 0 {
        return false;
    }
    record(fd, flags as u32);
    flags & libc::O_DIRECT != 0
}

/// In a fork child: no hint survives (async-signal-safe stores only).
pub(crate) fn after_fork_in_child() {
    for h in HINT.iter() {
        h.store(0, Ordering::Relaxed);
    }
}
