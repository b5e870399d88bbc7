//! Fault injection, for tests only: a [`Backend`] wrapper that makes requests
//! fail with `EIO` or `ENOSPC`, transfer fewer bytes, or complete late.
//!
//! It is off unless the environment variable `UAIO_FAULTS` is set (read once
//! per process, at the first `io_setup`) and costs nothing then: contexts get
//! the real backend unwrapped. Never set it in production.
//!
//! # The plan
//! `UAIO_FAULTS` is a comma-separated list of rules, each
//! `KIND:every=N` with optional `:ms=T` (`slow` only, and required there):
//!
//! - `eio`: the request completes with `-EIO`; no I/O is done;
//! - `enospc`: the request completes with `-ENOSPC`; no I/O is done;
//! - `short`: a read or write transfers half its bytes (rounded down): the
//!   shortened request really runs, so the file holds exactly what the
//!   result says; other requests, and requests of fewer than 2 bytes, are
//!   left alone;
//! - `slow`: the request runs normally but its completion is held back
//!   until `T` milliseconds (1 to 60000) after submission.
//!
//! Example: `UAIO_FAULTS=eio:every=7,enospc:every=11,short:every=5,slow:every=3:ms=20`.
//!
//! Every context numbers its reads, writes and syncs from 1, in the order
//! they reach the backend (within one `io_submit`, the order of the iocbs;
//! polls, NOOPs and requests completed during submission are not counted).
//! Request number `n` gets the first rule whose `every` divides `n`, or none.
//! The same program therefore sees the same faults on every run and on
//! either backend. A malformed value makes every `io_setup` fail with
//! `EINVAL` (and says why on standard error once), so a typo never passes
//! for a run without faults.
//!
//! # Guarantees
//! Every request still completes exactly once. A slow completion is held
//! until an internal `POLL` on a `timerfd` armed for its deadline completes
//! through the real backend, so waiters, the progress thread and destroy
//! (which waits for it, as for any file I/O) are woken by the backend's own
//! means. Cancelling a held request delivers its real result at once; one
//! still running is cancelled in the real backend (real result or
//! `-ECANCELED`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rustix::io::Errno;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use uaio_abi::iovec;

use super::{Backend, BackendOp, OpKind, Refused};
use crate::sys::process::Leaked;

/// What a rule does to the request it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Eio,
    Enospc,
    Short,
    Slow(Duration),
}

/// One rule of the plan: `fault` for every request whose number `every` divides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    fault: Fault,
    every: u64,
}

/// Parses a `UAIO_FAULTS` value (see the module documentation).
fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for part in spec.split(',') {
        let mut fields = part.split(':');
        let kind = fields.next().unwrap_or_default();
        let (mut every, mut ms) = (None, None);
        for f in fields {
            let (k, v) = f.split_once('=').ok_or_else(|| format!("{part:?}: expected key=value, found {f:?}"))?;
            let n: u64 = v.parse().map_err(|_| format!("{part:?}: {k}={v:?} is not a number"))?;
            let slot = match k {
                "every" => &mut every,
                "ms" => &mut ms,
                _ => return Err(format!("{part:?}: unknown key {k:?} (every, ms)")),
            };
            if slot.replace(n).is_some() {
                return Err(format!("{part:?}: {k} given twice"));
            }
        }
        let every = every.ok_or_else(|| format!("{part:?}: every=N is required"))?;
        if every == 0 {
            return Err(format!("{part:?}: every must be at least 1"));
        }
        let fault = match (kind, ms) {
            ("eio", None) => Fault::Eio,
            ("enospc", None) => Fault::Enospc,
            ("short", None) => Fault::Short,
            ("slow", Some(ms)) if (1..=60_000).contains(&ms) => Fault::Slow(Duration::from_millis(ms)),
            ("slow", Some(_)) => return Err(format!("{part:?}: ms must be 1 to 60000")),
            ("slow", None) => return Err(format!("{part:?}: slow needs ms=T")),
            ("eio" | "enospc" | "short", Some(_)) => return Err(format!("{part:?}: ms applies to slow only")),
            _ => return Err(format!("{part:?}: unknown fault {kind:?} (eio, enospc, short, slow)")),
        };
        rules.push(Rule { fault, every });
    }
    Ok(rules)
}

/// The plan of this process: `None` without `UAIO_FAULTS` (or with it
/// empty), an error message when the value is malformed.
fn plan() -> &'static Result<Option<Vec<Rule>>, String> {
    static PLAN: Leaked<Result<Option<Vec<Rule>>, String>> = Leaked::new();
    PLAN.get_or_init(|| match std::env::var("UAIO_FAULTS") {
        Ok(s) if !s.is_empty() => {
            let p = parse(&s).map(Some);
            if let Err(e) = &p {
                eprintln!("uaio: UAIO_FAULTS is malformed, every io_setup fails with EINVAL: {e}");
            }
            p
        }
        _ => Ok(None),
    })
}

/// `backend` itself when no fault plan is set, else `backend` wrapped in
/// the fault injector; `EINVAL` when `UAIO_FAULTS` is malformed.
pub(crate) fn wrap(backend: Box<dyn Backend>) -> Result<Box<dyn Backend>, Errno> {
    match plan() {
        Ok(None) => Ok(backend),
        Ok(Some(rules)) => Ok(Box::new(Faulty {
            inner: backend,
            rules,
            count: AtomicU64::new(0),
            timers: AtomicU64::new(0),
            st: Mutex::new(State::default()),
        })),
        Err(_) => Err(Errno::INVAL),
    }
}

/// High half of the keys of the internal timer polls. Request keys have a
/// slot index below the context's capacity in their low half, which never
/// reaches 2^31, so `TIMER_HIGH << 32 | 1 << 31 | n` names no request; and
/// the high half is not all ones, which backends keep for their own entries.
const TIMER_HIGH: u64 = 0xffff_fffe;
const TIMER_BIT: u64 = 1 << 31;

fn is_timer(key: u64) -> bool {
    key >> 32 == TIMER_HIGH && key & TIMER_BIT != 0
}

/// A request whose completion is held back.
#[derive(Debug)]
struct Slow {
    /// Key of the timer poll that ends the hold.
    timer: u64,
    /// Its timerfd (closed when the hold ends; the backends hold their own
    /// reference while the poll is pending).
    _tfd: OwnedFd,
    /// The real result, once the request completed.
    res: Option<i32>,
    /// The deadline passed (the timer poll completed).
    due: bool,
    /// Cancelled: the real result goes out as soon as it is known.
    cancelled: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Completions made here (injected errors, cancelled holds).
    ready: Vec<(u64, i32)>,
    /// Held-back requests by key.
    slow: HashMap<u64, Slow>,
    /// Timer key -> request key; the entry stays until the timer poll's own
    /// completion arrives, after which the key is never seen again.
    timers: HashMap<u64, u64>,
    /// Shortened iovec arrays, kept until the request completes.
    iovs: HashMap<u64, Box<[iovec]>>,
}

/// The fault-injecting wrapper around a context's real backend.
#[derive(Debug)]
struct Faulty {
    inner: Box<dyn Backend>,
    rules: &'static [Rule],
    /// Requests numbered so far (see the module documentation).
    count: AtomicU64,
    /// Timer polls made so far.
    timers: AtomicU64,
    st: Mutex<State>,
}

/// A timerfd that becomes readable after `d`.
fn timer_after(d: Duration) -> Result<OwnedFd, Errno> {
    let fd = rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK)?;
    let value = Timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ };
    let spec = Itimerspec { it_interval: Timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
    rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
    Ok(fd)
}

/// `op` transferring half its bytes, with the shortened iovec array that a
/// vectored one needs kept alive by the caller; `None` when `op` is not a
/// read or write of at least 2 bytes.
fn shortened(op: &BackendOp) -> Option<(BackendOp, Option<Box<[iovec]>>)> {
    match op.kind {
        OpKind::Read | OpKind::Write if op.len >= 2 => Some((BackendOp { len: op.len / 2, ..*op }, None)),
        OpKind::Readv | OpKind::Writev => {
            // SAFETY: the context keeps the `len` iovecs at `addr` (its own
            // copy of the application's array) alive while the request is
            // pending, which it is during `submit`.
            let v = unsafe { std::slice::from_raw_parts(op.addr as *const iovec, op.len as usize) };
            let total: u64 = v.iter().map(|e| e.iov_len).sum();
            if total < 2 {
                return None;
            }
            let mut left = total / 2;
            let mut out = Vec::new();
            for e in v {
                if left == 0 {
                    break;
                }
                let n = e.iov_len.min(left);
                out.push(iovec { iov_base: e.iov_base, iov_len: n });
                left -= n;
            }
            let out = out.into_boxed_slice();
            let short = BackendOp { addr: out.as_ptr() as u64, len: out.len() as u32, ..*op };
            Some((short, Some(out)))
        }
        _ => None,
    }
}

impl Faulty {
    fn lock(&self) -> crate::sync::Counted<std::sync::MutexGuard<'_, State>> {
        crate::sync::lock(&self.st)
    }

    /// The fault for the next numbered request, if any.
    fn fault_for(&self, op: &BackendOp) -> Option<Fault> {
        if op.kind == OpKind::Poll {
            return None;
        }
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.rules.iter().find(|r| n.is_multiple_of(r.every)).map(|r| r.fault)
    }

    fn timer_key(&self) -> u64 {
        TIMER_HIGH << 32 | TIMER_BIT | (self.timers.fetch_add(1, Ordering::Relaxed) & (TIMER_BIT - 1))
    }
}

impl Backend for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn submit(&self, ops: &[BackendOp]) -> Result<(), Refused> {
        let mut pass: Vec<BackendOp> = Vec::with_capacity(ops.len());
        let mut ready: Vec<(u64, i32)> = Vec::new();
        let mut iovs: Vec<(u64, Box<[iovec]>)> = Vec::new();
        let mut slow: Vec<(u64, u64, OwnedFd)> = Vec::new();
        for op in ops {
            match self.fault_for(op) {
                Some(Fault::Eio) => ready.push((op.key, -libc::EIO)),
                Some(Fault::Enospc) => ready.push((op.key, -libc::ENOSPC)),
                Some(Fault::Short) => match shortened(op) {
                    Some((short, iov)) => {
                        if let Some(v) = iov {
                            iovs.push((op.key, v));
                        }
                        pass.push(short);
                    }
                    None => pass.push(*op),
                },
                Some(Fault::Slow(d)) => {
                    pass.push(*op);
                    // Without a timer the request is simply not slow.
                    if let Ok(tfd) = timer_after(d) {
                        let timer = self.timer_key();
                        pass.push(BackendOp::poll(timer, tfd.as_raw_fd(), libc::POLLIN as u32));
                        slow.push((op.key, timer, tfd));
                    }
                }
                None => pass.push(*op),
            }
        }
        // Record the holds before the backend can complete anything.
        {
            let mut st = self.lock();
            st.iovs.extend(iovs);
            for (key, timer, tfd) in slow {
                st.timers.insert(timer, key);
                st.slow.insert(key, Slow { timer, _tfd: tfd, res: None, due: false, cancelled: false });
            }
        }
        if !pass.is_empty() {
            if let Err(r) = self.inner.submit(&pass) {
                // Those not started are forgotten; nothing is injected, and
                // the requests whose faults were to be injected are
                // refused too.
                let mut st = self.lock();
                for key in &r.keys {
                    st.iovs.remove(key);
                    st.slow.remove(key);
                    st.timers.remove(key);
                }
                let mut keys = r.keys;
                keys.extend(ready.iter().map(|&(key, _)| key));
                return Err(Refused { errno: r.errno, keys });
            }
        }
        if !ready.is_empty() {
            self.lock().ready.extend(ready);
        }
        Ok(())
    }

    fn drain(&self, sink: &mut dyn FnMut(u64, i32)) -> usize {
        let mut st = self.lock();
        let st = &mut *st;
        let mut n = self.inner.drain(&mut |key, res| {
            if is_timer(key) {
                let Some(req) = st.timers.remove(&key) else { return };
                if let Some(s) = st.slow.get_mut(&req).filter(|s| s.timer == key) {
                    match s.res {
                        Some(r) => {
                            st.slow.remove(&req);
                            sink(req, r);
                        }
                        None => s.due = true,
                    }
                }
                return;
            }
            st.iovs.remove(&key);
            match st.slow.get_mut(&key) {
                Some(s) if s.due || s.cancelled => {
                    st.slow.remove(&key);
                    sink(key, res);
                }
                Some(s) => s.res = Some(res),
                None => sink(key, res),
            }
        });
        n += st.ready.len();
        for (key, res) in std::mem::take(&mut st.ready) {
            sink(key, res);
        }
        n
    }

    fn has_completions(&self) -> bool {
        self.inner.has_completions() || !self.lock().ready.is_empty()
    }

    fn wait(&self, min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        if !self.lock().ready.is_empty() {
            return Ok(());
        }
        // Every held request still has its timer poll pending in the real
        // backend, whose completion ends this wait.
        self.inner.wait(min, timeout, sigmask)
    }

    fn wake(&self) {
        self.inner.wake()
    }

    fn holds_completions_across_signals(&self) -> bool {
        self.inner.holds_completions_across_signals()
    }

    fn cancel(&self, key: u64) {
        let mut st = self.lock();
        let Some(s) = st.slow.get_mut(&key) else {
            drop(st);
            return self.inner.cancel(key);
        };
        s.cancelled = true;
        let timer = s.timer;
        match s.res {
            // Held back: the real result goes out now.
            Some(r) => {
                st.slow.remove(&key);
                st.ready.push((key, r));
                drop(st);
            }
            // Still running: the real backend decides.
            None => {
                drop(st);
                self.inner.cancel(key);
            }
        }
        // The timer poll's completion is still awaited, and dropped.
        self.inner.cancel(timer);
    }

    fn set_notify(&self, on: bool) {
        self.inner.set_notify(on)
    }

    fn destroyed(&self) {
        self.inner.destroyed()
    }

    fn wants_every_write(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_strictly() {
        let p = parse("eio:every=7,enospc:every=11,short:every=5,slow:every=3:ms=20").unwrap();
        assert_eq!(
            p,
            vec![
                Rule { fault: Fault::Eio, every: 7 },
                Rule { fault: Fault::Enospc, every: 11 },
                Rule { fault: Fault::Short, every: 5 },
                Rule { fault: Fault::Slow(Duration::from_millis(20)), every: 3 },
            ]
        );
        for bad in [
            "",
            "eio",
            "eio:every=0",
            "eio:every=x",
            "eio:every=1:ms=3",
            "slow:every=2",
            "slow:every=2:ms=0",
            "slow:every=2:ms=70000",
            "eio:every=1:every=2",
            "eio:often=1",
            "boom:every=1",
            "eio:every=1,",
            "eio:every",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timer_keys_name_no_request_and_no_backend_entry() {
        let k = TIMER_HIGH << 32 | TIMER_BIT | 5;
        assert!(is_timer(k));
        assert_ne!(k >> 32, 0xffff_ffff);
        assert!(!is_timer(TIMER_HIGH << 32 | 5));
        assert!(!is_timer(3 << 32 | TIMER_BIT));
    }
}
