//! The thread-pool backend, for hosts where io_uring is refused.
//!
//! What can complete without blocking is done inline by the submitting
//! thread: reads and writes are first tried with `RWF_NOWAIT`, so cached data
//! costs one system call and no thread hop. What would block goes elsewhere:
//! reads and writes of regular files and block devices, and syncs, to a
//! bounded pool of named worker threads; reads and writes of pipes, sockets
//! and other pollable files, and `IOCB_CMD_POLL`, to one poller thread that
//! waits for readiness with `poll(2)` and retries without blocking. A worker
//! never waits for a pipe, so cancellation of anything queued or polling is
//! immediate, and `io_destroy` only ever waits for I/O that finishes.
//!
//! Threads start on demand and leave once the last context using this
//! backend is gone; a `fork` child starts from an empty pool.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustix::io::Errno;

use super::{Backend, Op, OpKind};
use crate::sys;

const RWF_NOWAIT: i32 = uaio_abi::RWF_NOWAIT as i32;

/// Where a request is while it is not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Queued,
    Running,
    Polling,
}

/// Per-context state shared with the pool and the poller.
#[derive(Debug)]
struct Shared {
    done: Mutex<Vec<(u64, i32)>>,
    ndone: AtomicUsize,
    /// Requests not done, with the token of the job that carries them (ids
    /// are reused once a completion is harvested; tokens never are).
    places: Mutex<std::collections::HashMap<u64, (Place, u64)>>,
    wake_fd: OwnedFd,
    waiting: AtomicBool,
    notify: Option<Arc<OwnedFd>>,
    notify_on: AtomicBool,
}

static TOKENS: AtomicUsize = AtomicUsize::new(1);

fn token() -> u64 {
    TOKENS.fetch_add(1, Ordering::Relaxed) as u64
}

impl Shared {
    /// Completes the request carried by the job with `token`, unless it was
    /// completed already (cancelled while a thread was working on it).
    fn finish(&self, id: u64, tok: u64, res: i32) {
        {
            let mut pl = self.places.lock().unwrap_or_else(|e| e.into_inner());
            match pl.get(&id) {
                Some(&(_, t)) if t == tok => {
                    pl.remove(&id);
                }
                _ => return,
            }
        }
        self.complete(id, res);
    }

    fn set_place(&self, id: u64, tok: u64, place: Place) {
        let mut pl = self.places.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = pl.get_mut(&id).filter(|e| e.1 == tok) {
            e.0 = place;
        }
    }

    fn is_current(&self, id: u64, tok: u64) -> bool {
        self.places.lock().unwrap_or_else(|e| e.into_inner()).get(&id).is_some_and(|e| e.1 == tok)
    }

    /// Publishes a result (the caller made sure it is the only one).
    fn complete(&self, id: u64, res: i32) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push((id, res));
        self.ndone.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            write_one(self.wake_fd.as_fd());
        }
        if self.notify_on.load(Ordering::SeqCst) {
            if let Some(n) = &self.notify {
                write_one(n.as_fd());
            }
        }
    }
}

fn write_one(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

#[derive(Debug)]
struct Job {
    shared: Arc<Shared>,
    op: Op,
    tok: u64,
    /// A duplicate of the request's descriptor, held while the job waits or
    /// runs (the kernel holds a file reference the same way): closing the
    /// application's descriptor does not disturb the request.
    _hold: Option<OwnedFd>,
}

impl Job {
    fn new(shared: Arc<Shared>, mut op: Op, tok: u64) -> Job {
        // SAFETY: F_DUPFD_CLOEXEC on the descriptor number; the new one is ours.
        let d = unsafe { libc::fcntl(op.fd, libc::F_DUPFD_CLOEXEC, 0) };
        let hold = (d >= 0).then(|| {
            op.fd = d;
            // SAFETY: freshly duplicated, owned by this job only.
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(d) }
        });
        Job { shared, op, tok, _hold: hold }
    }
}

#[derive(Debug, Default)]
struct PoolState {
    queue: VecDeque<Job>,
    instances: usize,
    threads: usize,
    idle: usize,
    polls: Vec<Job>,
    poller: bool,
}

#[derive(Debug)]
struct Pool {
    st: Mutex<PoolState>,
    cv: Condvar,
    poll_wake: OwnedFd,
    max_threads: usize,
}

static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

fn max_threads() -> usize {
    std::env::var("UAIO_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() * 4).unwrap_or(8).clamp(4, 64))
}

/// The process's pool. It exists whenever a [`Threads`] does (created by
/// [`try_pool`] in [`Threads::new`]).
fn pool() -> &'static Pool {
    try_pool().expect("the pool exists while a context uses it")
}

/// The process's pool, created on first use (again in a fork child).
fn try_pool() -> Result<&'static Pool, Errno> {
    let p = POOL.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: pools are never freed (a fork child's old one is leaked).
        return Ok(unsafe { &*p });
    }
    let poll_wake =
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
    let fresh = Box::into_raw(Box::new(Pool {
        st: Mutex::new(PoolState::default()),
        cv: Condvar::new(),
        poll_wake,
        max_threads: max_threads(),
    }));
    match POOL.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published, never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(other) => {
            // SAFETY: ours lost the race and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above.
            Ok(unsafe { &*other })
        }
    }
}

/// Called in a fork child: the parent's threads do not exist here, and its
/// pool's locks may be held; the next use creates a new pool.
pub(crate) fn after_fork_in_child() {
    POOL.store(std::ptr::null_mut(), Ordering::SeqCst);
}

/// Number of pool and poller threads alive now.
pub(crate) fn threads_alive() -> usize {
    let p = POOL.load(Ordering::SeqCst);
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `pool`.
    let st = unsafe { &*p }.st.lock().unwrap_or_else(|e| e.into_inner());
    st.threads + st.poller as usize
}

/// Thread-pool backend state for one context.
#[derive(Debug)]
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

impl Threads {
    /// A backend whose completions signal `notify` while notification is on.
    pub(crate) fn new(notify: Option<Arc<OwnedFd>>) -> Result<Threads, Errno> {
        let wake_fd =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
        let p = try_pool()?;
        p.st.lock().unwrap_or_else(|e| e.into_inner()).instances += 1;
        Ok(Threads {
            shared: Arc::new(Shared {
                done: Mutex::new(Vec::new()),
                ndone: AtomicUsize::new(0),
                places: Mutex::new(Default::default()),
                wake_fd,
                waiting: AtomicBool::new(false),
                notify,
                notify_on: AtomicBool::new(true),
            }),
        })
    }

    fn to_worker(&self, op: Op) {
        let p = pool();
        let tok = token();
        self.shared.places.lock().unwrap_or_else(|e| e.into_inner()).insert(op.key, (Place::Queued, tok));
        let job = Job::new(self.shared.clone(), op, tok);
        let mut st = p.st.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push_back(job);
        if st.idle == 0 && st.threads < p.max_threads {
            st.threads += 1;
            let spawned = std::thread::Builder::new().name("uaio-worker".into()).spawn(move || worker(p));
            if spawned.is_err() {
                st.threads -= 1;
            }
        }
        drop(st);
        p.cv.notify_one();
    }

    fn to_poller(&self, op: Op) {
        let p = pool();
        let tok = token();
        self.shared.places.lock().unwrap_or_else(|e| e.into_inner()).insert(op.key, (Place::Polling, tok));
        let job = Job::new(self.shared.clone(), op, tok);
        let mut st = p.st.lock().unwrap_or_else(|e| e.into_inner());
        st.polls.push(job);
        if !st.poller {
            st.poller = true;
            if std::thread::Builder::new().name("uaio-poller".into()).spawn(move || poller(p)).is_err() {
                st.poller = false;
            }
        }
        drop(st);
        write_one(p.poll_wake.as_fd());
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let p = pool();
        p.st.lock().unwrap_or_else(|e| e.into_inner()).instances -= 1;
        p.cv.notify_all();
        write_one(p.poll_wake.as_fd());
    }
}

/// Runs a read or write once; `extra` is OR-ed into the flags.
fn rw(op: &Op, extra: i32) -> i32 {
    let one = libc::iovec { iov_base: op.addr as *mut libc::c_void, iov_len: op.len as usize };
    let (iov, cnt) = match op.kind {
        OpKind::Read | OpKind::Write => (&one as *const libc::iovec, 1),
        _ => (op.addr as *const libc::iovec, op.len as i32),
    };
    let flags = op.rw_flags as i32 | extra;
    let call = |off: i64| {
        // SAFETY: the buffers were validated at submission and belong to the
        // application until the completion is reaped; uaio's iovec layout is
        // the C one. preadv2/pwritev2 are direct system calls in the C library.
        let r = unsafe {
            match op.kind {
                OpKind::Read | OpKind::Readv => libc::preadv2(op.fd, iov, cnt, off, flags),
                _ => libc::pwritev2(op.fd, iov, cnt, off, flags),
            }
        };
        if r < 0 {
            -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
        } else {
            r as i32
        }
    };
    match call(op.off as i64) {
        // Pipes, sockets and other streams have no position: AIO ignores the
        // offset there, and offset -1 is how preadv2 says "no position".
        r if r == -libc::ESPIPE => call(-1),
        r => r,
    }
}

fn execute(op: &Op) -> i32 {
    match op.kind {
        OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => {
            if op.ioprio != 0 {
                let old = sys::ioprio_get_thread();
                sys::ioprio_set_thread(op.ioprio as i32);
                let r = rw(op, 0);
                sys::ioprio_set_thread(old);
                r
            } else {
                rw(op, 0)
            }
        }
        OpKind::Fsync | OpKind::Fdatasync => {
            // SAFETY: plain fsync/fdatasync on a descriptor number.
            let r = unsafe {
                if op.kind == OpKind::Fsync {
                    libc::fsync(op.fd)
                } else {
                    libc::fdatasync(op.fd)
                }
            };
            if r < 0 {
                -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
            } else {
                0
            }
        }
        OpKind::Poll => 0,
    }
}

fn worker(p: &'static Pool) {
    loop {
        let job = {
            let mut st = p.st.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = st.queue.pop_front() {
                    break j;
                }
                if st.instances == 0 {
                    st.threads -= 1;
                    return;
                }
                st.idle += 1;
                st = p.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle -= 1;
            }
        };
        job.shared.set_place(job.op.key, job.tok, Place::Running);
        let r = execute(&job.op);
        job.shared.finish(job.op.key, job.tok, r);
    }
}

/// Readiness events a request waits for.
fn poll_events(op: &Op) -> i16 {
    match op.kind {
        OpKind::Read | OpKind::Readv => libc::POLLIN | libc::POLLRDNORM,
        OpKind::Write | OpKind::Writev => libc::POLLOUT | libc::POLLWRNORM,
        _ => {
            let mut m = op.poll_mask as i16;
            if m & libc::POLLIN != 0 {
                m |= libc::POLLRDNORM;
            }
            if m & libc::POLLOUT != 0 {
                m |= libc::POLLWRNORM;
            }
            m
        }
    }
}

fn poller(p: &'static Pool) {
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let jobs: Vec<Job> = {
            let mut st = p.st.lock().unwrap_or_else(|e| e.into_inner());
            if st.instances == 0 && st.polls.is_empty() {
                st.poller = false;
                return;
            }
            std::mem::take(&mut st.polls)
        };
        // Drop what was cancelled meanwhile (already completed by `cancel`).
        let mut jobs: Vec<Job> = jobs.into_iter().filter(|j| j.shared.is_current(j.op.key, j.tok)).collect();
        fds.clear();
        fds.push(libc::pollfd { fd: p.poll_wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(jobs.iter().map(|j| libc::pollfd { fd: j.op.fd, events: poll_events(&j.op), revents: 0 }));
        // SAFETY: poll(2) over a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            p.st.lock().unwrap_or_else(|e| e.into_inner()).polls.append(&mut jobs);
            continue;
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(p.poll_wake.as_fd(), &mut b);
        }
        let mut keep = Vec::new();
        for (j, f) in jobs.into_iter().zip(fds[1..].iter()) {
            if f.revents == 0 {
                keep.push(j);
                continue;
            }
            if j.op.kind == OpKind::Poll {
                j.shared.finish(j.op.key, j.tok, (f.revents as u16) as i32);
                continue;
            }
            let r = rw(&j.op, RWF_NOWAIT);
            if r == -libc::EAGAIN && j.op.rw_flags as i32 & RWF_NOWAIT == 0 {
                keep.push(j);
            } else {
                j.shared.finish(j.op.key, j.tok, r);
            }
        }
        p.st.lock().unwrap_or_else(|e| e.into_inner()).polls.append(&mut keep);
    }
}

fn is_regular_or_block(fd: i32) -> bool {
    // SAFETY: fstat on a descriptor number; an invalid one just fails.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match rustix::fs::fstat(fd) {
        Ok(st) => matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFBLK),
        Err(_) => true,
    }
}

impl Backend for Threads {
    fn submit(&self, ops: &[Op]) -> Result<(), Errno> {
        for op in ops {
            match op.kind {
                OpKind::Read | OpKind::Readv | OpKind::Write | OpKind::Writev => {
                    let r = rw(op, RWF_NOWAIT);
                    let user_nowait = op.rw_flags as i32 & RWF_NOWAIT != 0;
                    let would_block = r == -libc::EAGAIN || (r == -libc::EOPNOTSUPP && !user_nowait);
                    if !would_block || user_nowait {
                        self.shared.complete(op.key, r);
                    } else if is_regular_or_block(op.fd) {
                        self.to_worker(*op);
                    } else {
                        self.to_poller(*op);
                    }
                }
                OpKind::Fsync | OpKind::Fdatasync => self.to_worker(*op),
                OpKind::Poll => {
                    let mut pfd = libc::pollfd { fd: op.fd, events: op.poll_mask as i16, revents: 0 };
                    // SAFETY: poll(2) on one pollfd, no waiting.
                    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
                    if n > 0 {
                        self.shared.complete(op.key, (pfd.revents as u16) as i32);
                    } else {
                        self.to_poller(*op);
                    }
                }
            }
        }
        Ok(())
    }

    fn drain(&self, sink: &mut dyn FnMut(u64, i32)) -> usize {
        if self.shared.ndone.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let v = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared.ndone.fetch_sub(v.len(), Ordering::SeqCst);
        for &(id, res) in &v {
            sink(id, res);
        }
        v.len()
    }

    fn has_completions(&self) -> bool {
        self.shared.ndone.load(Ordering::SeqCst) > 0
    }

    fn wait(&self, _min: u32, timeout: Option<Duration>, sigmask: Option<&u64>) -> Result<(), Errno> {
        self.shared.waiting.store(true, Ordering::SeqCst);
        if self.has_completions() {
            self.shared.waiting.store(false, Ordering::SeqCst);
            return Ok(());
        }
        let r = sys::ppoll_one(self.shared.wake_fd.as_raw_fd(), timeout, sigmask);
        self.shared.waiting.store(false, Ordering::SeqCst);
        let mut b = [0u8; 8];
        let _ = rustix::io::read(self.shared.wake_fd.as_fd(), &mut b);
        match r {
            Ok(0) => Err(Errno::TIME),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn wake(&self) {
        write_one(self.shared.wake_fd.as_fd());
    }

    fn cancel(&self, id: u64) {
        let entry = self.shared.places.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied();
        match entry {
            Some((Place::Queued, tok)) => {
                let p = pool();
                let mut st = p.st.lock().unwrap_or_else(|e| e.into_inner());
                st.queue.retain(|j| j.tok != tok);
                drop(st);
                self.shared.finish(id, tok, -libc::ECANCELED);
            }
            Some((Place::Polling, tok)) => {
                // The poller drops the job on its next pass.
                self.shared.finish(id, tok, -libc::ECANCELED);
                write_one(pool().poll_wake.as_fd());
            }
            Some((Place::Running, _)) | None => {}
        }
    }

    fn set_notify(&self, on: bool) {
        self.shared.notify_on.store(on, Ordering::SeqCst);
    }
}
