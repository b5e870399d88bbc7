//! Events: requests handed to the backend or published at once when they
//! completed during submission, the backend's completions harvested into
//! the ring (with the kernel's results for cancelled requests and POLLs),
//! RESFD eventfds signalled, waiters told, and events copied out to the
//! caller's array.

use std::sync::atomic::Ordering;

use rustix::io::Errno;
use uaio_abi::*;

use super::{Kioctx, Prepared, Req, Resfd, State};
use crate::backend::{BackendOp, OpKind, Order};
use crate::stats;
use crate::sys;
use crate::uaccess::UserPtr;
use crate::writeback;

impl Kioctx {
    /// Starts validated requests; NOOPs complete at once. The entries are
    /// left emptied (their descriptors and vectors moved out), for reuse.
    /// `ops` is room for the requests that go to the backend, left empty
    /// with its capacity kept (a thread's calls reuse it: no allocation
    /// per call).
    pub(crate) fn start(&self, preps: &mut [Prepared], ops: &mut Vec<BackendOp>) {
        if preps.is_empty() {
            return;
        }
        // Requests completed during submission never meet the backend: no
        // need to hold its notifications off (see `enter`).
        let to_backend = preps.iter().any(|p| p.kind.is_some());
        if to_backend {
            self.enter();
        }
        ops.clear();
        self.accept(preps, ops);
        if !ops.is_empty() {
            let _handing = HandingOver::new();
            self.hand_over(ops);
            ops.clear();
        }
        if to_backend {
            self.leave();
        } else if self.backend.has_completions() {
            // Earlier requests finished meanwhile (a sync behind inline
            // writes): their events join the ring now, not at the progress
            // thread's next turn.
            self.harvest();
        }
    }

    /// Under the completion lock, publishes the events of the requests
    /// completed during submission and enters the others in the request
    /// table, adding them to `ops` as backend operations.
    fn accept(&self, preps: &mut [Prepared], ops: &mut Vec<BackendOp>) {
        let mut published = 0u32;
        let mut signals: Vec<(Resfd, u64)> = Vec::new();
        {
            let mut guard = self.lock();
            let st = &mut *guard;
            for p in preps.iter_mut() {
                match p.kind {
                    None => {
                        let ev = io_event { data: p.data, obj: p.obj, res: p.inline, res2: 0 };
                        self.ring.push_event(&mut st.tail, &ev);
                        if let Some(s) = st.stats.as_deref_mut() {
                            s.completed(p.opcode, p.inline, true, 0, false);
                        }
                        published += 1;
                        add_signal(&mut signals, &p.resfd);
                        p.resfd = Resfd::None;
                    }
                    Some(kind) => {
                        ops.push(enter_request(st, p, kind));
                    }
                }
            }
            if !ops.is_empty() {
                self.counts.entered.fetch_add(ops.len() as u64, Ordering::SeqCst);
            }
            if published > 0 {
                self.counts.published.fetch_add(published as u64, Ordering::SeqCst);
                self.ring.publish_tail(st.tail);
                st.unreclaimed += published;
            }
            if let Some(s) = st.stats.as_deref_mut() {
                s.depth(st.in_flight);
            }
        }
        signal_all(signals);
        if published > 0 {
            self.notify_waiters(true);
        }
    }

    /// Gives `ops` to the backend, and harvests what it completed at once.
    fn hand_over(&self, ops: &[BackendOp]) {
        crate::progress::requests_in_flight();
        if let Err(r) = self.backend.submit(ops) {
            let refused: Vec<BackendOp> = ops.iter().filter(|o| r.keys.contains(&o.key)).copied().collect();
            self.fail(&refused, r.errno);
        }
        if self.backend.has_completions() {
            self.harvest();
        }
        // The requests are the backend's now (an `io_cancel` waits for
        // this). One cancelled meanwhile by a signal handler of this thread
        // had its cancel held back, since the backend might not have known
        // it yet: it is sent now.
        let mut held_back: Vec<u64> = Vec::new();
        {
            let mut st = self.lock();
            for op in ops {
                if let Some(r) = st.reqs.get_mut(op.key as u32 as usize).filter(|r| r.key == op.key) {
                    r.fresh = false;
                    if r.cancel_held {
                        held_back.push(op.key);
                    }
                }
            }
        }
        if !held_back.is_empty() {
            for key in held_back {
                self.backend.cancel(key);
            }
            if self.backend.has_completions() {
                self.harvest();
            }
        }
    }

    /// Completes operations the backend refused with `-e`.
    pub(super) fn fail(&self, ops: &[BackendOp], e: Errno) {
        let mut signals = Vec::new();
        {
            let mut st = self.lock();
            for op in ops {
                let req = st.reqs.remove(op.key as u32 as usize);
                if req.write_id != 0 {
                    writeback::backend_write_ended(req.write_id);
                }
                let res = -(e.raw_os_error() as i64);
                self.ring.push_event(&mut st.tail, &io_event { data: req.data, obj: req.obj, res, res2: 0 });
                if let Some(s) = st.stats.as_deref_mut() {
                    s.completed(req.opcode, res, false, stats::now_ns().saturating_sub(req.start_ns), false);
                }
                st.in_flight -= 1;
                st.unreclaimed += 1;
                add_signal(&mut signals, &req.resfd);
                self.counts.published.fetch_add(1, Ordering::SeqCst);
            }
            self.ring.publish_tail(st.tail);
        }
        signal_all(signals);
        self.notify_waiters(true);
    }

    /// Moves completions from the backend into the ring. Returns the number
    /// of backend entries consumed.
    pub(crate) fn harvest(&self) -> usize {
        self.harvest_by(false)
    }

    /// [`Kioctx::harvest`], by the leading waiter when `leader` (which need
    /// not be woken by its own publication).
    pub(super) fn harvest_by(&self, leader: bool) -> usize {
        self.harvest_before(leader, None)
    }

    /// [`Kioctx::harvest_by`], of the backend's completions that had
    /// arrived when its mark read `mark` (all when `None`).
    pub(super) fn harvest_before(&self, leader: bool, mark: Option<u32>) -> usize {
        let mut published = 0u32;
        let consumed;
        let mut signals = Vec::new();
        {
            let mut guard = self.lock();
            // From before the backend's completions leave it until they
            // are in the ring (see `may_have_events`).
            self.harvesting.store(true, Ordering::SeqCst);
            let st = &mut *guard;
            let ring = &self.ring;
            let mut tail = st.tail;
            let reqs = &mut st.reqs;
            let mut stats = st.stats.as_deref_mut();
            let mut sink = |key: u64, res: i32| {
                let idx = key as u32 as usize;
                if reqs.get(idx).is_none_or(|r| r.key != key) {
                    return;
                }
                let req = reqs.remove(idx);
                if req.write_id != 0 {
                    writeback::backend_write_ended(req.write_id);
                }
                let res = res as i64;
                let res = if req.poll && (res == -(libc::ECANCELED as i64) || req.cancelled) {
                    // A cancelled POLL completes with 0, as the kernel's does
                    // (readiness that raced the cancel is not reported).
                    0
                } else if req.poll && req.fresh && res > 0 {
                    // The kernel's initial check reports only what was asked.
                    res & req.wanted as i64
                } else if req.cancelled && (res == -(libc::ECANCELED as i64) || res == -(libc::EINTR as i64)) {
                    -(libc::ECANCELED as i64)
                } else if req.written > 0 && res == 0 {
                    // The sync of a write copied during submission.
                    req.written
                } else {
                    res
                };
                ring.push_event(&mut tail, &io_event { data: req.data, obj: req.obj, res, res2: 0 });
                if let Some(s) = stats.as_deref_mut() {
                    s.completed(req.opcode, res, false, stats::now_ns().saturating_sub(req.start_ns), req.cancelled);
                }
                published += 1;
                add_signal(&mut signals, &req.resfd);
            };
            consumed = match mark {
                Some(m) => self.backend.drain_before(m, &mut sink),
                None => self.backend.drain(&mut sink),
            };
            if published > 0 {
                st.tail = tail;
                self.counts.published.fetch_add(published as u64, Ordering::SeqCst);
                ring.publish_tail(tail);
                st.in_flight -= published;
                st.unreclaimed += published;
            }
            self.harvesting.store(false, Ordering::SeqCst);
        }
        signal_all(signals);
        if published > 0 {
            self.notify_waiters(!leader);
        }
        if consumed > 0 {
            self.harvests.fetch_add(1, Ordering::SeqCst);
        }
        consumed
    }

    /// Tells waiters that events were published: followers through the
    /// futex, and the leader, unless `wake_leader` is false (the leader
    /// published them itself), through the backend.
    pub(super) fn notify_waiters(&self, wake_leader: bool) {
        self.wake_followers();
        if wake_leader && self.leader.load(Ordering::SeqCst) != 0 {
            self.backend.wake();
        }
    }

    /// Copies up to `max` events from the ring to the user array at `out`.
    pub(super) fn consume(&self, out: UserPtr<io_event>, max: usize) -> Result<usize, Errno> {
        self.consume_published_before(out, max, u64::MAX)
    }

    /// As [`Kioctx::consume`], of the events in the ring that were among
    /// the first `before` ever published (`Counts::published`).
    pub(super) fn consume_published_before(
        &self,
        out: UserPtr<io_event>,
        max: usize,
        before: u64,
    ) -> Result<usize, Errno> {
        if max == 0 {
            return Ok(0);
        }
        let st = self.lock();
        let nr = self.ring.nr();
        let mut head = self.ring.head();
        let tail = st.tail;
        let max = if before == u64::MAX {
            max
        } else {
            // Counted under the completion lock, as `tail`.
            let unread = ((tail + nr - head % nr) % nr) as u64;
            let first = self.counts.published.load(Ordering::SeqCst).saturating_sub(unread);
            max.min(before.saturating_sub(first) as usize)
        };
        let mut done = 0usize;
        while done < max && head != tail {
            let end = if head < tail { tail } else { nr };
            let n = ((end - head) as usize).min(max - done);
            self.ring.copy_events(head, n, out.add(done)).map_err(|_| Errno::FAULT)?;
            done += n;
            head = (head + n as u32) % nr;
        }
        if done > 0 {
            self.ring.set_head(head);
        }
        Ok(done)
    }

    /// Events in the ring not yet read.
    pub(super) fn ring_available(&self) -> usize {
        let tail = self.lock().tail;
        let nr = self.ring.nr();
        ((tail + nr - self.ring.head() % nr) % nr) as usize
    }
}

/// Enters a request for the backend in the table (the completion lock
/// held) and returns its backend operation.
fn enter_request(st: &mut State, p: &mut Prepared, kind: OpKind) -> BackendOp {
    let entry = st.reqs.vacant_entry();
    let key = (st.gen as u64) << 32 | entry.key() as u64;
    entry.insert(Req {
        key,
        forever: p.forever,
        data: p.data,
        obj: p.obj,
        poll: kind == OpKind::Poll,
        wanted: p.poll_mask | (libc::POLLERR | libc::POLLHUP) as u32,
        fresh: true,
        cancel_held: false,
        resfd: std::mem::take(&mut p.resfd),
        cancelled: false,
        write_id: match (p.write_span, p.order) {
            (Some(span), Some(Order::Member(k))) => writeback::backend_write_started(k, span),
            _ => 0,
        },
        _stream_read: super::rw::StreamRead::of(kind, p.order),
        written: p.written,
        started: p.started,
        _iov: p.iov.take(),
        _bounce: p.bounce.take(),
        opcode: p.opcode,
        start_ns: if st.stats.is_some() { stats::now_ns() } else { 0 },
    });
    st.gen = st.gen.wrapping_add(1) % u32::MAX;
    st.in_flight += 1;
    BackendOp {
        key,
        kind,
        fd: p.fd,
        addr: p.addr,
        len: p.len,
        off: p.off,
        rw_flags: p.rw_flags,
        ioprio: p.ioprio,
        poll_mask: p.poll_mask,
        order: p.order,
        seen: p.seen,
    }
}

/// Counts one completion for `r`'s eventfd (nothing without RESFD).
#[inline]
fn add_signal(v: &mut Vec<(Resfd, u64)>, r: &Resfd) {
    if !matches!(r, Resfd::None) {
        count_signal(v, r);
    }
}

/// [`add_signal`] for a request with an eventfd.
fn count_signal(v: &mut Vec<(Resfd, u64)>, r: &Resfd) {
    let Some(fd) = r.raw() else { return };
    match v.iter_mut().find(|(f, _)| f.raw() == Some(fd)) {
        Some((_, n)) => *n += 1,
        None => v.push((r.clone(), 1)),
    }
}

/// Signals the counted eventfds (after the events are in the ring); each
/// held duplicate stays open until its signal is written.
fn signal_all(v: Vec<(Resfd, u64)>) {
    for (r, n) in v {
        if let Some(fd) = r.raw() {
            sys::eventfd_add(fd, n);
        }
    }
}

thread_local! {
    /// Per thread: hand-overs to a backend under way (see `hand_over`).
    static HANDING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts the calling thread as handing requests over while it lives.
struct HandingOver;

impl HandingOver {
    fn new() -> Self {
        let _ = HANDING.try_with(|h| h.set(h.get() + 1));
        HandingOver
    }
}

impl Drop for HandingOver {
    fn drop(&mut self) {
        let _ = HANDING.try_with(|h| h.set(h.get().saturating_sub(1)));
    }
}

/// Whether the calling thread is inside a hand-over (an `io_cancel` from a
/// signal handler that interrupted it must not wait for it to end).
pub(super) fn handing_over() -> bool {
    HANDING.try_with(|h| h.get() > 0).unwrap_or(false)
}
