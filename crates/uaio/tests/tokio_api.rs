//! The tokio API: reads and writes land where they should, dropped futures
//! cancel without freeing what the I/O may still use, many futures at once.
#![cfg(feature = "tokio")]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use uaio::{AsyncContext, IoBuffer, PollFlags};

/// A hang detector, not a time assertion: a test that waits this long has
/// lost a wake-up.
const HANG: Duration = Duration::from_secs(30);

async fn no_hang<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f).await.expect("lost wake-up: the future never completed")
}

/// Polls `f` once; true if it was still pending.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx).is_pending())).await
}

/// Runs `f` with a current-thread runtime on a thread of its own, so that
/// a deadlock fails the test (with `deadlock`) instead of hanging it.
fn on_own_thread(deadlock: &str, f: impl FnOnce(&tokio::runtime::Runtime) + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        f(&rt);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(HANG).expect(deadlock);
}

/// A buffer that records when it is freed.
struct Watched {
    bytes: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl Deref for Watched {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl DerefMut for Watched {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

// SAFETY: the bytes live in the Vec's heap allocation, which is never
// resized through this type.
unsafe impl IoBuffer for Watched {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_then_reads_return_the_right_bytes() {
    const N: u64 = 64;
    const BS: usize = 4096;
    let file = Arc::new(tempfile::tempfile().unwrap());
    let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(32).unwrap());
    let mut tasks = Vec::new();
    for i in 0..N {
        let (ctx, file) = (ctx.clone(), file.clone());
        tasks.push(tokio::spawn(async move {
            let (n, buf) = ctx.write(file, vec![i as u8 + 1; BS], i * BS as u64).await;
            assert_eq!(n.unwrap(), BS);
            assert_eq!(buf.len(), BS);
        }));
    }
    for t in tasks {
        no_hang(t).await.unwrap();
    }
    ctx.fsync(file.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for i in (0..N).rev() {
        let (ctx, file) = (ctx.clone(), file.clone());
        tasks.push(tokio::spawn(async move {
            let (n, buf) = ctx.read(file, vec![0; BS], i * BS as u64).await;
            assert_eq!(n.unwrap(), BS);
            assert!(buf.iter().all(|&b| b == i as u8 + 1), "block {i}");
        }));
    }
    for t in tasks {
        no_hang(t).await.unwrap();
    }
    let mut back = vec![0; BS];
    file.read_exact_at(&mut back, (N - 1) * BS as u64).unwrap();
    assert!(back.iter().all(|&b| b == N as u8));
    assert_eq!(ctx.pending(), 0);
}

#[tokio::test]
async fn vectored_io_syncs_and_short_reads() {
    let file = tempfile::tempfile().unwrap();
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let ctx = AsyncContext::new(8).unwrap();
    let (n, bufs) = ctx.writev(&file, vec![b"hello ".to_vec(), b"world".to_vec()], 0).await;
    assert_eq!((n.unwrap(), bufs.len()), (11, 2));
    ctx.fdsync(&file).await.unwrap();
    let (n, bufs) = ctx.readv(&file, vec![vec![0; 6], vec![0; 16]], 0).await;
    assert_eq!(n.unwrap(), 11);
    assert_eq!((&bufs[0][..], &bufs[1][..5]), (&b"hello "[..], &b"world"[..]));
    let (n, _) = ctx.read(&file, vec![0; 8], 100).await;
    assert_eq!(n.unwrap(), 0, "past the end");
    assert_eq!(ctx.fsync(&r).await.unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[tokio::test]
async fn a_dropped_poll_is_cancelled_and_its_buffer_lives_until_reaped() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    let ctx = AsyncContext::new(8).unwrap();
    let freed = Arc::new(AtomicBool::new(false));
    {
        let buf = Watched { bytes: vec![0; 64], freed: freed.clone() };
        let mut read = pin!(ctx.read(&r, buf, 0));
        assert!(poll_once(&mut read).await, "an empty pipe: pending");
        assert_eq!(ctx.pending(), 1);
    } // dropped while pending: cancelled, the buffer moves into the context
    assert!(!freed.load(Ordering::SeqCst), "freed before its completion was reaped");
    assert_eq!(ctx.pending(), 1);
    // A poll that never becomes ready, dropped the same way.
    {
        let mut poll = pin!(ctx.poll(&r, PollFlags::IN));
        assert!(poll_once(&mut poll).await);
    }
    // Any later operation reaps both completions (ECANCELED) and frees them.
    no_hang(ctx.noop()).await.unwrap();
    while ctx.pending() > 0 {
        no_hang(ctx.noop()).await.unwrap();
    }
    assert!(freed.load(Ordering::SeqCst));
    // The cancelled read took nothing from the pipe.
    assert_eq!(rustix::io::write(&w, b"abc").unwrap(), 3);
    let (n, buf) = no_hang(ctx.read(&r, vec![0; 8], 0)).await;
    assert_eq!(&buf[..n.unwrap()], b"abc");
}

/// A buffer that asks its context how many requests are pending when it
/// is dropped.
struct Asking {
    bytes: Vec<u8>,
    ctx: std::sync::Weak<AsyncContext<'static>>,
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl Deref for Asking {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl DerefMut for Asking {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.upgrade() {
            self.seen.store(ctx.pending() + 1, Ordering::SeqCst);
        }
    }
}

// SAFETY: as for `Watched`.
unsafe impl IoBuffer for Asking {}

/// The buffer of a dropped future is dropped when the completion is
/// reaped, and its `Drop` may call into the context (it deadlocked: the
/// context dropped it holding its own lock). Run on a thread of its own,
/// so that a deadlock fails the test instead of hanging it.
#[test]
fn a_freed_buffer_may_call_into_its_context() {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    on_own_thread("deadlock: the reaping call never returned", move |rt| {
        rt.block_on(async {
            let (r, _w) = rustix::pipe::pipe().unwrap();
            let ctx = Arc::new(AsyncContext::new(8).unwrap());
            {
                let buf = Asking { bytes: vec![0; 8], ctx: Arc::downgrade(&ctx), seen: s.clone() };
                let mut read = pin!(ctx.read(r, buf, 0));
                assert!(poll_once(&mut read).await, "an empty pipe: pending");
            }
            while ctx.pending() > 0 {
                ctx.noop().await.unwrap();
            }
        });
    });
    assert_ne!(seen.load(Ordering::SeqCst), 0, "the buffer was dropped, asking its context");
}

/// A waker that calls into its context when it is woken and when it is
/// dropped, counting those calls.
struct Calling {
    ctx: std::sync::Weak<AsyncContext<'static>>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Calling {
    fn call(&self) {
        if let Some(ctx) = self.ctx.upgrade() {
            let _ = ctx.pending();
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl std::task::Wake for Calling {
    fn wake(self: Arc<Self>) {
        self.call();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.call();
    }
}

impl Drop for Calling {
    fn drop(&mut self) {
        self.call();
    }
}

/// Wakers are the program's code, and may call into the context when they
/// are woken or dropped: the context never does either holding its lock.
/// A future polled with one waker and then another (the context, and the
/// reactor, let go of the first), a future dropped while it waits (its
/// waker goes), and a driving future that completes while another waits
/// (that one's waker is woken to take over). The first deadlocked (a
/// black-box attack). Run on a thread of its own, so that a deadlock fails
/// the test instead of hanging it.
#[test]
fn wakers_may_call_into_their_context_when_woken_or_dropped() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    on_own_thread("deadlock: a waker's call into its context never returned", move |rt| {
        let _in = rt.enter();
        let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(8).unwrap());
        let waker = || std::task::Waker::from(Arc::new(Calling { ctx: Arc::downgrade(&ctx), calls: c.clone() }));
        let (ra, wa) = rustix::pipe::pipe().unwrap();
        let (rb, _wb) = rustix::pipe::pipe().unwrap();
        let mut a = Box::pin(ctx.read(Arc::new(ra), vec![0; 4], 0));
        let mut b = Box::pin(ctx.poll(Arc::new(rb), PollFlags::IN));
        for _ in 0..3 {
            // A new waker each time: the one before goes.
            assert!(a.as_mut().poll(&mut std::task::Context::from_waker(&waker())).is_pending());
        }
        assert!(b.as_mut().poll(&mut std::task::Context::from_waker(&waker())).is_pending());
        assert!(a.as_mut().poll(&mut std::task::Context::from_waker(&waker())).is_pending());
        assert_eq!(rustix::io::write(&wa, b"data").unwrap(), 4);
        // A, the driver, completes; B's waker is woken to take over.
        let done = rt.block_on(no_hang(a)).0.unwrap();
        assert_eq!(done, 4);
        drop(b);
        while ctx.pending() > 0 {
            rt.block_on(no_hang(ctx.noop())).unwrap();
        }
    });
    assert!(calls.load(Ordering::SeqCst) >= 4, "the wakers called into their context");
}

#[tokio::test]
async fn dropping_the_context_with_orphans_returns() {
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let freed = Arc::new(AtomicBool::new(false));
    let ctx = AsyncContext::new(8).unwrap();
    {
        let buf = Watched { bytes: vec![0; 64], freed: freed.clone() };
        let mut read = pin!(ctx.read(&r, buf, 0));
        assert!(poll_once(&mut read).await);
        let mut poll = pin!(ctx.poll(&r, PollFlags::IN));
        assert!(poll_once(&mut poll).await);
    }
    assert!(!freed.load(Ordering::SeqCst));
    drop(ctx); // io_destroy: returns once nothing is in flight
    assert!(freed.load(Ordering::SeqCst));
}

#[tokio::test]
async fn select_drops_the_loser_and_the_context_goes_on() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    let ctx = AsyncContext::new(8).unwrap();
    for _ in 0..10 {
        tokio::select! {
            _ = ctx.poll(&r, PollFlags::IN) => panic!("nothing was written"),
            res = ctx.noop() => res.unwrap(),
        }
    }
    assert_eq!(rustix::io::write(&w, b"!").unwrap(), 1);
    let ready = no_hang(ctx.poll(&r, PollFlags::IN)).await.unwrap();
    assert!(ready.contains(PollFlags::IN));
    while ctx.pending() > 0 {
        no_hang(ctx.noop()).await.unwrap();
    }
}

/// The task the eventfd wakes completes first: the other waiting future
/// must take over, or it would never be woken again.
#[tokio::test]
async fn when_the_waking_future_finishes_another_takes_over() {
    let (ra, wa) = rustix::pipe::pipe().unwrap();
    let (rb, wb) = rustix::pipe::pipe().unwrap();
    let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(8).unwrap());
    let ra = Arc::new(ra);
    let rb = Arc::new(rb);
    let a = tokio::spawn({
        let (ctx, ra) = (ctx.clone(), ra.clone());
        async move { ctx.poll(ra, PollFlags::IN).await }
    });
    let b = tokio::spawn({
        let (ctx, rb) = (ctx.clone(), rb.clone());
        async move { ctx.poll(rb, PollFlags::IN).await }
    });
    // Let both tasks poll once (A first, then B, which the eventfd now wakes).
    while ctx.pending() < 2 {
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
    rustix::io::write(&wb, b"b").unwrap();
    assert!(no_hang(b).await.unwrap().unwrap().contains(PollFlags::IN));
    rustix::io::write(&wa, b"a").unwrap();
    assert!(no_hang(a).await.unwrap().unwrap().contains(PollFlags::IN));
}

/// 48 futures on 48 pipes, woken in an order unrelated to their
/// submission, on two runtime threads; 100 rounds, since a lost wake-up
/// shows only in some interleavings. Two were fixed: a future woken to
/// take over the reactor that found its own completion at once and left
/// without passing the duty on (about one round in ten), and a future
/// whose readiness check replaced the driver's waker although it answered
/// ready, then left with its own completion (one run of this test in
/// 60 to 120 hung before it was fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_futures_on_many_pipes_all_complete_once() {
    const N: usize = 48;
    for round in 0..100 {
        let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(N as u32).unwrap());
        let pipes: Vec<_> = (0..N).map(|_| rustix::pipe::pipe().unwrap()).collect();
        let readers: Vec<_> = pipes.iter().map(|(r, _)| Arc::new(rustix::io::dup(r).unwrap())).collect();
        let mut tasks = Vec::new();
        for (i, r) in readers.iter().enumerate() {
            let (ctx, r) = (ctx.clone(), r.clone());
            tasks.push(tokio::spawn(async move {
                let (n, buf) = ctx.read(r, vec![0; 8], 0).await;
                let n = n.unwrap();
                assert_eq!(&buf[..n], format!("{i:08}").as_bytes());
                i
            }));
        }
        // Writes in an order unrelated to the submissions, with noops between.
        for k in 0..N {
            let i = (k * 7 + round) % N;
            rustix::io::write(&pipes[i].1, format!("{i:08}").as_bytes()).unwrap();
            ctx.noop().await.unwrap();
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(no_hang(t).await.unwrap());
        }
        done.sort();
        assert_eq!(done, (0..N).collect::<Vec<_>>(), "round {round}");
        assert_eq!(ctx.pending(), 0);
    }
}

#[tokio::test]
async fn direct_io_with_aligned_buffers() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let path = dir.path().join("direct");
    std::fs::write(&path, vec![7u8; 16384]).unwrap();
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path) {
        Ok(f) => f,
        Err(e) => panic!("O_DIRECT refused in the build tree: {e}"),
    };
    let ctx = AsyncContext::new(8).unwrap();
    let buf = uaio::AlignedBuf::for_direct_io(&file, 8192).unwrap();
    let (n, buf) = ctx.read(&file, buf, 4096).await;
    assert_eq!(n.unwrap(), 8192);
    assert!(buf.iter().all(|&b| b == 7));
}

/// Futures dropped while pending, from many tasks at once: every one is
/// cancelled, the context keeps going, and nothing is left in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_dropping_futures_while_others_complete() {
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let r = Arc::new(r);
    let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(64).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (ctx, r) = (ctx.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            let file = Arc::new(tempfile::tempfile().unwrap());
            for i in 0..50u64 {
                tokio::select! {
                    _ = ctx.read(r.clone(), vec![0; 8], 0) => panic!("the pipe is empty"),
                    (n, _) = ctx.write(file.clone(), vec![t as u8; 16], i * 16) => assert_eq!(n.unwrap(), 16),
                }
            }
            file.metadata().unwrap().len()
        }));
    }
    for t in tasks {
        assert_eq!(no_hang(t).await.unwrap(), 50 * 16);
    }
    while ctx.pending() > 0 {
        no_hang(ctx.noop()).await.unwrap();
    }
}
