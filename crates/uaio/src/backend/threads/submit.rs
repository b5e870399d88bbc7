//! Submission to the thread pool: each request tried without blocking,
//! then handed to a worker or the poller (or run here when neither can
//! take it), with what one `io_submit` learns of its descriptors.

use super::*;

/// What one [`Backend::submit`] call gathers for the workers, handed over
/// together at its end, and what it learnt of the descriptors it met.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) jobs: Vec<Arc<Job>>,
    /// One entry per descriptor number (a few at most are kept): the
    /// engine resolves a descriptor once per `io_submit` too.
    pub(super) files: Vec<FileFacts>,
    /// The files of the ordered writes among `jobs` ([`Job::order`]).
    pub(super) ordered: Vec<FileKey>,
    /// Direct reads and writes for the kernel AIO lane (`lane.rs`).
    pub(super) lane: Vec<Arc<Job>>,
}

/// What a batch knows of one descriptor number: what the engine saw of it
/// when it validated the request, or else a look of the batch's own.
#[derive(Debug)]
pub(super) struct FileFacts {
    pub(super) fd: i32,
    pub(super) st: Option<FileStat>,
    /// Its `F_GETFL` flags, when the engine told them.
    pub(super) flags: Option<u32>,
    /// See [`crate::backend::Seen::generation`].
    pub(super) generation: Option<u64>,
    /// The duplicate its jobs hold, not kept open by the batch: a
    /// duplicate goes as soon as its last job is done.
    pub(super) held: Weak<Held>,
}

/// Descriptors a batch remembers.
pub(super) const BATCH_FILES: usize = 8;

impl Batch {
    pub(super) fn facts(&mut self, op: &BackendOp) -> &mut FileFacts {
        let fd = op.fd;
        if let Some(i) = self.files.iter().position(|f| f.fd == fd) {
            return &mut self.files[i];
        }
        if self.files.len() >= BATCH_FILES {
            self.files.remove(0);
        }
        let (st, flags, generation) = match op.seen {
            // The engine's look failed (the number was closed meanwhile).
            Some(s) if s.st == FileStat::default() => (None, None, None),
            Some(s) => (Some(s.st), Some(s.flags), s.generation),
            None => (sys::file_stat(fd), None, None),
        };
        self.files.push(FileFacts { fd, st, flags, generation, held: Weak::new() });
        self.files.last_mut().expect("just pushed")
    }

    /// The file `op`'s descriptor names, once per batch.
    pub(super) fn stat(&mut self, op: &BackendOp) -> Option<FileStat> {
        self.facts(op).st
    }

    /// [`Pool::hold`], once per batch and descriptor.
    pub(super) fn hold(&mut self, p: &'static Pool, op: &BackendOp, st: &FileStat) -> Option<Arc<Held>> {
        let f = self.facts(op);
        if let Some(h) = f.held.upgrade() {
            return Some(h);
        }
        let (flags, generation) = (f.flags, f.generation);
        let h = p.hold(op.fd, st, flags, generation)?;
        f.held = Arc::downgrade(&h);
        Some(h)
    }
}

impl Threads {
    pub(super) fn submit_one(&self, p: &'static Pool, op: &BackendOp, here: &Here, batch: &mut Batch) {
        if self.shared.take_early(op.key) {
            self.shared.complete(op.key, -libc::ECANCELED, here);
            return;
        }
        match op.kind {
            OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => self.submit_rw(p, op, here, batch),
            OpKind::Fsync | OpKind::Fdatasync => {
                let st = batch.stat(op);
                self.start(p, op, Cursor::new(op), Route::Worker, st, here, batch);
            }
            OpKind::Poll => {
                let mut pfd = libc::pollfd { fd: op.fd, events: op.poll_mask as i16, revents: 0 };
                // SAFETY: poll(2) on one pollfd, no waiting.
                let n = unsafe { libc::poll(&mut pfd, 1, 0) };
                if n > 0 {
                    self.shared.complete(op.key, (pfd.revents as u16) as i32, here);
                } else {
                    let st = batch.stat(op);
                    self.start(p, op, Cursor::new(op), Route::Poller, st, here, batch);
                }
            }
        }
    }

    /// A read or write: tried without blocking (unless direct, or behind
    /// the file's queued writes); what is not done goes to a worker (files)
    /// or the poller (streams), with the part already done counted.
    fn submit_rw(&self, p: &'static Pool, op: &BackendOp, here: &Here, batch: &mut Batch) {
        let flags = op.rw_flags as i32;
        // A direct transfer waits for the device even with
        // RWF_NOWAIT: it goes to a worker untried (with the
        // program's RWF_NOWAIT, if it gave one, for its answer).
        // The engine's F_GETFL of this call, where it tells one.
        let direct = match op.seen {
            Some(seen) => seen.flags & libc::O_DIRECT as u32 != 0,
            None => sys::direct_hint::is_direct(op.fd),
        };
        let write = matches!(op.kind, OpKind::Write | OpKind::Writev);
        if !direct && (flags & RWF_NOWAIT == 0 || !write) && self.behind_writes(p, op, batch) {
            // After the file's queued writes, in order.
            let st = batch.stat(op);
            return self.start(p, op, Cursor::new(op), Route::Worker, st, here, batch);
        }
        if let Some(Order::Member(k)) = op.order {
            if op.seen.is_some_and(|s| !s.st.is_regular_or_block()) && p.stream_busy(k) {
                // Behind the stream's read or write (as it is) in the
                // poller, untried: tried now, a read would take the bytes
                // that one waits for.
                let st = batch.stat(op);
                return self.start(p, op, Cursor::new(op), Route::Poller, st, here, batch);
            }
        }
        let (r, total) = if direct { (-libc::EAGAIN, 0) } else { first_try(op, flags | RWF_NOWAIT) };
        if flags & RWF_NOWAIT != 0 && !direct {
            self.shared.complete(op.key, r, here);
            return;
        }
        let would_block = r == -libc::EAGAIN || r == -libc::EOPNOTSUPP;
        let partial = r > 0 && (r as u64) < total;
        // The non-blocking call answers an empty transfer 0 without asking
        // the file; the kernel's AIO hands it to the file in io_submit,
        // which may refuse it (ext4: any write to an immutable inode).
        let empty = r == 0 && total == 0;
        if !would_block && !partial && !empty {
            self.shared.complete(op.key, r, here);
            return;
        }
        let st = batch.stat(op);
        let file = st.as_ref().is_none_or(FileStat::is_regular_or_block);
        if empty {
            // A file's answer, asked here as the kernel does (moving
            // nothing, it waits for no device; ext4 takes the inode's lock
            // for a write, as under kernel AIO). A stream's empty transfer
            // moves nothing and waits for nothing.
            let r = if file { first_try(op, flags).0 } else { r };
            self.shared.complete(op.key, r, here);
            return;
        }
        if partial {
            // A stream read returns what was there, and so does a read
            // that met the end of a regular file (a later write, of this
            // call or the next, must not lengthen it); anything else goes
            // on with the rest.
            if !write && (!file || at_end_of_file(op, r)) {
                self.shared.complete(op.key, r, here);
                return;
            }
        }
        let mut cur = Cursor::new(op);
        if partial {
            cur.advance(r as usize);
        }
        let route = if file { Route::Worker } else { Route::Poller };
        self.start(p, op, cur, route, st, here, batch);
    }

    /// Whether `op` is a buffered write, or a read, of a file with a
    /// buffered write queued or running (in the pool, or in this batch on
    /// its way there): it must then run after them.
    pub(super) fn behind_writes(&self, p: &Pool, op: &BackendOp, batch: &Batch) -> bool {
        let k = match (op.order, op.kind) {
            (Some(Order::Member(k)), _) | (Some(Order::After(k)), OpKind::Read | OpKind::Readv) => k,
            _ => return false,
        };
        if p.nchains.load(Ordering::SeqCst) == 0 && batch.ordered.is_empty() {
            return false;
        }
        batch.ordered.contains(&k) || p.chained(k)
    }

    /// Hands a request that cannot complete now to a worker or the poller,
    /// or runs it here when they cannot take it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &self,
        p: &'static Pool,
        op: &BackendOp,
        cur: Cursor,
        route: Route,
        st: Option<FileStat>,
        here: &Here,
        batch: &mut Batch,
    ) {
        let Some(st) = st.filter(|_| here.owner()) else {
            return self.run_here(op, &cur, route, here);
        };
        let Some(held) = batch.hold(p, op, &st) else {
            return self.run_here(op, &cur, route, here);
        };
        // The order the engine found for the request's file.
        // A stream's writes take turns in the poller instead.
        let stream = match (route, op.order) {
            (Route::Poller, Some(Order::Member(k))) => Some(k),
            _ => None,
        };
        let order = op.order.filter(|_| stream.is_none()).and_then(|o| match o {
            Order::Member(k) => Some(k),
            // A sync, or a direct read or write, follows the buffered
            // writes of its file queued before it (kernel AIO's sees them
            // done); with none, it orders nothing.
            Order::After(k) => (batch.ordered.contains(&k) || p.chained(k)).then_some(k),
        });
        let direct_lane = route == Route::Worker && lane::eligible(op.kind, &held, order, &st, &cur);
        let job = Arc::new(Job {
            shared: self.shared.clone(),
            key: op.key,
            kind: op.kind,
            fd: held.fd.as_raw_fd(),
            rw_flags: op.rw_flags as i32,
            ioprio: op.ioprio,
            poll_mask: op.poll_mask,
            state: AtomicU8::new(WAITING),
            polled: route == Route::Poller,
            hold: Mutex::new(Some(held)),
            cur: Mutex::new(cur),
            order,
            buffered: op.buffered(),
            stream,
            io_pending: AtomicBool::new(false),
            lane: AtomicU8::new(LANE_UNTRIED),
        });
        if !self.shared.register(&job) {
            let res = lock(&job.cur).cancelled();
            drop(job);
            self.shared.complete(op.key, res, here);
            return;
        }
        match route {
            Route::Worker if direct_lane => batch.lane.push(job),
            Route::Worker => {
                if let Some(k) = order.filter(|k| !batch.ordered.contains(k)) {
                    batch.ordered.push(k);
                }
                batch.jobs.push(job)
            }
            Route::Poller => {
                if let Err(job) = p.watch(job) {
                    run_unhanded(&job, route, here);
                }
            }
        }
    }

    /// Runs a request in the submitting thread, on the application's own
    /// descriptor ([`run_in_caller`]).
    pub(super) fn run_here(&self, op: &BackendOp, cur: &Cursor, route: Route, here: &Here) {
        let res = run_in_caller(op.kind, op.fd, cur, route, op.rw_flags as i32, op.ioprio);
        self.shared.complete(op.key, res, here);
    }
}

/// Whether a read of `op` that returned `n` bytes, fewer than it asked
/// for, stopped at the end of its regular file (its size looked at now)
/// rather than at a page not in the cache.
#[cold]
fn at_end_of_file(op: &BackendOp, n: i32) -> bool {
    sys::file_stat(op.fd).is_some_and(|st| st.kind() == libc::S_IFREG && op.off.saturating_add(n as u64) >= st.size)
}
