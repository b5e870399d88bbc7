//! The safe API: owned buffers come back, tickets that never name another
//! request, batches, cancellation, destroy on drop, aligned buffers.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use uaio::{AlignedBuf, Backend, Completion, Context, Opcode, PollFlags, ReadWriteFlags, Request};

mod util;

const LONG: Option<Duration> = Some(Duration::from_secs(10));

/// Counts the allocations of the threads that ask for it.
struct Counting;

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters are plain
// thread-local cells (const-initialised, so reading them never allocates).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.with(|a| a.get()), r)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe().unwrap()
}

fn write_pipe(w: impl AsFd, data: &[u8]) {
    assert_eq!(rustix::io::write(w, data).unwrap(), data.len());
}

/// Waits until `n` completions have been reaped, through one reused vector.
fn wait_n<'fd, B: uaio::IoBuffer>(ctx: &Context<'fd, B>, n: usize) -> Vec<Completion<'fd, B>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        ctx.wait(n - out.len(), LONG, &mut out).unwrap();
    }
    out
}

/// A wait for more completions than the context's ring holds is refused
/// with `EINVAL`, and nothing is lost: before, its event array was sized
/// by `min` (2^30 aborted the process allocating 32 GiB, `usize::MAX`
/// panicked, 10^8 took 3 GB; a black-box attack). A wait for as many as
/// the ring holds allocates no more than one for a few.
#[test]
fn a_wait_for_more_than_the_ring_holds_is_einval_and_loses_nothing() {
    let ctx = Context::new(8).unwrap();
    ctx.submit(Request::noop().user_data(5)).unwrap();
    let mut out = Vec::with_capacity(4);
    for min in [1usize << 30, 1 << 40, usize::MAX] {
        let e = ctx.wait(min, Some(Duration::ZERO), &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "min {min}");
    }
    assert!(out.is_empty());
    let got = wait_n(&ctx, 1);
    assert_eq!(got[0].user_data(), 5);
    let (n, r) = allocations(|| ctx.wait(1 << 20, Some(Duration::ZERO), &mut out).map(|_| ()));
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert_eq!(n, 0, "a refused wait allocates nothing");
}

#[test]
fn write_then_read_returns_the_buffer() {
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(8).unwrap();
    ctx.submit(Request::write(&f, b"hello world".to_vec(), 3).user_data(1)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!((c.user_data(), c.result().unwrap(), c.opcode()), (1, 11, Opcode::Write));
    assert_eq!(c.into_buf().unwrap(), b"hello world");
    ctx.submit(Request::read(&f, vec![0; 20], 0).user_data(2)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    let (res, buf) = c.into_result_and_buf();
    assert_eq!(res.unwrap(), 14);
    assert_eq!(&buf.unwrap()[3..14], b"hello world");
    assert_eq!(ctx.pending(), 0);
}

#[test]
fn vectored_requests_fill_and_drain_their_buffers_in_order() {
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(8).unwrap();
    ctx.submit(Request::writev(&f, vec![b"abc".to_vec(), b"".to_vec(), b"defgh".to_vec()], 1)).unwrap();
    assert_eq!(ctx.wait_one(LONG).unwrap().result().unwrap(), 8);
    ctx.submit(Request::readv(&f, vec![vec![0; 4], vec![0; 2], vec![0; 10]], 0)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!(c.result().unwrap(), 9);
    let bufs = c.into_bufs();
    assert_eq!(bufs[0], b"\0abc");
    assert_eq!(bufs[1], b"de");
    assert_eq!(&bufs[2][..3], b"fgh");
}

#[test]
fn cancel_of_a_pending_pipe_read_completes_with_ecanceled_and_the_ticket_goes_stale() {
    let (r, _w) = pipe();
    let ctx = Context::new(4).unwrap();
    let t = ctx.submit(Request::read(&r, vec![0; 16], 0).user_data(9)).unwrap();
    let mut none = Vec::new();
    assert_eq!(ctx.wait(0, Some(Duration::ZERO), &mut none).unwrap(), 0);
    ctx.cancel(t).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!((c.user_data(), c.ticket()), (9, t));
    assert_eq!(c.result().unwrap_err().raw_os_error(), Some(libc::ECANCELED));
    assert_eq!(c.into_buf().unwrap().len(), 16, "the buffer comes back");
    assert_eq!(ctx.cancel(t).unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn a_stale_ticket_never_cancels_the_newer_request_in_its_slot() {
    let (r, w) = pipe();
    let ctx = Context::new(4).unwrap();
    let old = ctx.submit(Request::noop()).unwrap();
    assert_eq!(ctx.wait_one(LONG).unwrap().ticket(), old);
    // The freed slot is reused by the next request (same index, newer
    // generation): the old ticket must not reach it.
    let new = ctx.submit(Request::read(&r, vec![0; 4], 0).user_data(2)).unwrap();
    assert_ne!(old, new);
    assert_eq!(ctx.cancel(old).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    write_pipe(&w, b"data");
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!((c.ticket(), c.result().unwrap()), (new, 4), "the newer read was not cancelled");
    assert_eq!(c.into_buf().unwrap(), b"data");
}

#[test]
fn a_ticket_of_another_context_names_nothing_here() {
    let (r, _w) = pipe();
    let a = Context::new(4).unwrap();
    let b = Context::new(4).unwrap();
    let ta = a.submit(Request::read(&r, vec![0; 4], 0)).unwrap();
    let tb = b.submit(Request::read(&r, vec![0; 4], 0)).unwrap();
    assert_eq!(b.cancel(ta).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert_eq!(a.pending(), 1);
    a.cancel(ta).unwrap();
    b.cancel(tb).unwrap();
    assert_eq!(wait_n(&a, 1)[0].ticket(), ta);
    assert_eq!(wait_n(&b, 1)[0].ticket(), tb);
}

#[test]
fn poll_reports_readiness_and_noop_completes() {
    let (r, w) = pipe();
    let ctx = Context::new(4).unwrap();
    ctx.submit(Request::poll(&r, PollFlags::IN).user_data(1)).unwrap();
    ctx.submit(Request::noop().user_data(2)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!((c.user_data(), c.result().unwrap(), c.poll_flags()), (2, 0, None));
    write_pipe(&w, b"x");
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!(c.user_data(), 1);
    assert!(c.poll_flags().unwrap().contains(PollFlags::IN));
}

#[test]
fn submit_errors_hand_the_request_back() {
    let f = tempfile::tempfile().unwrap();
    let (r, _w) = pipe();
    let ctx = Context::new(4).unwrap();
    let e = ctx.submit(Request::write(&f, vec![5; 3], 0).flags(ReadWriteFlags::from_bits_retain(1 << 30))).unwrap_err();
    assert_eq!(e.error().raw_os_error(), Some(libc::EOPNOTSUPP));
    assert_eq!(e.into_request().into_buf().unwrap(), vec![5; 3]);
    let e = ctx.submit(Request::fdsync(&r).user_data(3)).unwrap_err();
    let (err, req) = e.into_parts();
    assert_eq!((err.raw_os_error(), req.get_user_data()), (Some(libc::EINVAL), 3));
    let io: std::io::Error = ctx.submit(Request::write(&r, vec![], u64::MAX)).unwrap_err().into();
    assert!(io.raw_os_error().is_some());
    assert_eq!(ctx.pending(), 0);
}

#[test]
fn a_batch_submits_the_prefix_before_a_bad_request_and_keeps_the_rest() {
    let f = tempfile::tempfile().unwrap();
    let (r, _w) = pipe();
    let ctx = Context::new(16).unwrap();
    let mut reqs = vec![
        Request::write(&f, vec![1; 8], 0).user_data(0),
        Request::noop().user_data(1),
        Request::fsync(&r).user_data(2), // a pipe cannot sync: EINVAL
        Request::noop().user_data(3),
    ];
    let mut tickets = Vec::new();
    assert_eq!(ctx.submit_batch(&mut reqs, &mut tickets).unwrap(), 2);
    assert_eq!(tickets.len(), 2);
    assert_eq!(reqs.iter().map(|r| r.get_user_data()).collect::<Vec<_>>(), vec![2, 3]);
    // The first is now the bad one: the error comes back, nothing moves.
    let e = ctx.submit_batch(&mut reqs, &mut tickets).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert_eq!((reqs.len(), tickets.len()), (2, 2));
    reqs.remove(0);
    assert_eq!(ctx.submit_batch(&mut reqs, &mut tickets).unwrap(), 1);
    let mut done = wait_n(&ctx, 3);
    done.sort_by_key(|c| c.user_data());
    assert_eq!(done.iter().map(|c| c.ticket()).collect::<Vec<_>>(), tickets);
    assert_eq!(done[0].result().unwrap(), 8);
}

#[test]
fn a_batch_larger_than_the_context_submits_what_fits() {
    let ctx = Context::new(1).unwrap();
    let mut reqs: Vec<Request> = (0..1000).map(|i| Request::noop().user_data(i)).collect();
    let mut tickets = Vec::new();
    let n = ctx.submit_batch(&mut reqs, &mut tickets).unwrap();
    assert!(n > 0 && n < 1000, "{n}");
    assert_eq!(reqs.len(), 1000 - n);
    assert_eq!(reqs[0].get_user_data(), n as u64, "the rest stays in order");
    assert_eq!(wait_n(&ctx, n).len(), n);
}

#[test]
fn wait_reaps_no_more_than_the_spare_capacity_and_reuses_it() {
    let ctx = Context::new(64).unwrap();
    for i in 0..10 {
        ctx.submit(Request::noop().user_data(i)).unwrap();
    }
    let mut out = Vec::with_capacity(4);
    let cap = out.capacity();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        out.clear();
        let n = ctx.wait(1, LONG, &mut out).unwrap();
        assert!(n <= cap && n == out.len());
        assert_eq!(out.capacity(), cap, "no reallocation");
        seen.extend(out.iter().map(|c| c.user_data()));
    }
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

#[test]
fn reaping_into_a_reused_vector_allocates_nothing_once_warm() {
    // (Submission is not measured: the engine's io_submit may allocate.)
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(64).unwrap();
    let mut reqs: Vec<Request> = Vec::with_capacity(32);
    let mut tickets = Vec::with_capacity(32);
    let mut done = Vec::with_capacity(32);
    let mut bufs: Vec<Vec<u8>> = (0..32).map(|_| vec![0; 512]).collect();
    for round in 0..4 {
        for (i, b) in bufs.drain(..).enumerate() {
            reqs.push(Request::write(&f, b, i as u64 * 512));
        }
        tickets.clear();
        while !reqs.is_empty() {
            ctx.submit_batch(&mut reqs, &mut tickets).unwrap();
        }
        let (n, ()) = allocations(|| {
            let mut reaped = 0;
            while reaped < 32 {
                done.clear();
                reaped += ctx.wait(1, LONG, &mut done).unwrap();
                bufs.extend(done.drain(..).map(|c| c.into_buf().unwrap()));
            }
        });
        if round > 0 {
            // Round 0 warms up the thread's event array.
            assert_eq!(n, 0, "allocations while reaping 32 completions, round {round}");
        }
    }
}

#[test]
fn owned_and_shared_descriptors_live_as_long_as_their_requests() {
    let ctx: Context<'static> = Context::new(8).unwrap();
    let shared = Arc::new(tempfile::tempfile().unwrap());
    ctx.submit(Request::write(shared.clone(), b"shared".to_vec(), 0)).unwrap();
    // An owned descriptor moves into the request: the file stays open until
    // the completion is dropped.
    let (r, w) = pipe();
    ctx.submit(Request::read(r, vec![0; 2], 0).user_data(7)).unwrap();
    write_pipe(&w, b"ok");
    let mut done = wait_n(&ctx, 2);
    done.sort_by_key(|c| c.user_data());
    assert_eq!(done[0].result().unwrap(), 6);
    assert_eq!(done[1].result().unwrap(), 2);
    let mut back = [0u8; 6];
    shared.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"shared");
}

#[test]
fn eventfd_is_signalled_per_completion() {
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let ctx = Context::new(4).unwrap();
    ctx.submit(Request::noop().eventfd(&efd)).unwrap();
    ctx.submit(Request::noop().eventfd(&efd)).unwrap();
    let mut got = 0;
    while got < 2 {
        let mut count = [0u8; 8];
        rustix::io::read(&efd, &mut count).unwrap();
        got += u64::from_ne_bytes(count);
    }
    assert_eq!(got, 2);
    assert_eq!(wait_n(&ctx, 2).len(), 2);
}

#[test]
fn aligned_buffers_do_o_direct_io() {
    // O_DIRECT is refused by some file systems (tmpfs): try the temporary
    // directory, then the current one (the build tree).
    let dirs = [std::env::temp_dir(), std::env::current_dir().unwrap()];
    let f = util::direct_file(&dirs, "direct").unwrap();
    let ctx = Context::builder().entries(8).build_for::<AlignedBuf>().unwrap();
    let mut buf = AlignedBuf::for_direct_io(&f, 8192).unwrap();
    assert_eq!(buf.as_ptr() as usize % buf.alignment(), 0);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    ctx.submit(Request::write(&f, buf, 0)).unwrap();
    assert_eq!(ctx.wait_one(LONG).unwrap().result().unwrap(), 8192);
    ctx.submit(Request::read(&f, AlignedBuf::new(4096), 4096)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!(c.result().unwrap(), 4096);
    let back = c.into_buf().unwrap();
    assert!(back.iter().enumerate().all(|(i, &b)| b == ((i + 4096) % 251) as u8));
    // A misaligned length is refused by the file system, not a crash.
    ctx.submit(Request::read(&f, AlignedBuf::new(100), 0)).unwrap();
    assert_eq!(ctx.wait_one(LONG).unwrap().result().unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn the_builder_puts_each_context_on_the_backend_asked_for() {
    let here = Backend::current();
    let auto = Context::builder().entries(4).build().unwrap();
    // The process's default, or the pool where the kernel refused a ring.
    assert!(auto.backend() == here || auto.backend() == Backend::Threads);
    assert_eq!(auto.pending(), 0);
    let pool = Context::builder().entries(4).backend(Backend::Threads).build().unwrap();
    assert_eq!(pool.backend(), Backend::Threads);
    match Context::builder().backend(Backend::IoUring).build() {
        Ok(ring) => assert_eq!(ring.backend(), Backend::IoUring),
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
            assert!(e.to_string().contains("io_uring"), "{e}");
            assert!(!uaio::io_uring_available(), "io_uring works here, yet a context could not have it: {e}");
        }
    }
    assert!(Context::builder().entries(0).build().is_err());
}

#[test]
fn drop_with_pending_requests_cancels_them_before_returning() {
    let (r, w) = pipe();
    {
        let ctx = Context::new(4).unwrap();
        for i in 0..3 {
            ctx.submit(Request::read(&r, vec![0; 8], 0).user_data(i)).unwrap();
        }
        assert_eq!(ctx.pending(), 3);
    }
    // Had any of the three reads survived the drop, it would take this data.
    write_pipe(&w, b"abcdefgh");
    let mut buf = [0u8; 16];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"abcdefgh");
}

#[test]
fn many_threads_wait_on_one_context_and_every_completion_arrives_once() {
    let (r, w) = pipe();
    let ctx = Context::new(64).unwrap();
    for i in 0..16 {
        ctx.submit(Request::poll(&r, PollFlags::IN).user_data(i)).unwrap();
    }
    let mut all: Vec<u64> = std::thread::scope(|s| {
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    let mut out = Vec::with_capacity(16);
                    while ctx.pending() > 0 {
                        out.clear();
                        ctx.wait(1, Some(Duration::from_millis(200)), &mut out).unwrap();
                        seen.extend(out.iter().map(|c| c.user_data()));
                    }
                    seen
                })
            })
            .collect();
        write_pipe(&w, b"x");
        waiters.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    all.sort();
    assert_eq!(all, (0..16).collect::<Vec<_>>());
}

#[test]
fn drop_with_pending_file_writes_keeps_every_write() {
    const N: usize = 256;
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(N as u32).unwrap();
    let mut reqs: Vec<Request> =
        (0..N).map(|i| Request::write(&f, vec![(i % 251) as u8 + 1; 4096], (i * 4096) as u64)).collect();
    let mut tickets = Vec::with_capacity(N);
    while !reqs.is_empty() {
        ctx.submit_batch(&mut reqs, &mut tickets).unwrap();
    }
    // Dropping the context waits for the writes (only what could wait
    // forever is cancelled), as the kernel's io_destroy does.
    drop(ctx);
    let mut got = vec![0u8; 4096];
    for i in 0..N {
        f.read_exact_at(&mut got, (i * 4096) as u64).unwrap();
        assert!(got.iter().all(|&b| b == (i % 251) as u8 + 1), "block {i}");
    }
}

/// One process, contexts on both backends at once (where io_uring can be
/// set up): each runs on the backend it was built for, and I/O on one file
/// through both agrees.
#[test]
fn contexts_on_both_backends_live_side_by_side() {
    let file = tempfile::tempfile().expect("temp file");
    let pool = Context::builder().entries(8).backend(Backend::Threads).build().expect("thread-pool context");
    assert_eq!(pool.backend(), Backend::Threads);
    let ring = match Context::builder().entries(8).backend(Backend::IoUring).build() {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
            println!("skipped the io_uring half: {e}");
            return;
        }
    };
    assert_eq!(ring.backend(), Backend::IoUring);
    pool.submit(Request::write(&file, b"threads".to_vec(), 0)).expect("submit on the pool");
    assert_eq!(pool.wait_one(LONG).expect("pool write").result().expect("written"), 7);
    ring.submit(Request::read(&file, vec![0; 7], 0)).expect("submit on the ring");
    let done = ring.wait_one(LONG).expect("ring read");
    assert_eq!(done.result().expect("read"), 7);
    assert_eq!(done.into_buf().as_deref(), Some(&b"threads"[..]));
    let auto = Context::builder().entries(8).build().expect("auto context");
    assert_eq!(auto.backend(), Backend::current());
}

/// A buffer whose `Deref` panics while `armed` is set.
struct Touchy {
    bytes: Vec<u8>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::ops::Deref for Touchy {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        assert!(!self.armed.load(std::sync::atomic::Ordering::SeqCst), "a buffer that panics");
        &self.bytes
    }
}

impl std::ops::DerefMut for Touchy {
    fn deref_mut(&mut self) -> &mut [u8] {
        assert!(!self.armed.load(std::sync::atomic::Ordering::SeqCst), "a buffer that panics");
        &mut self.bytes
    }
}

// SAFETY: the bytes live in the Vec's heap allocation, which is never
// resized through this type.
unsafe impl uaio::IoBuffer for Touchy {}

/// A buffer that panics when `submit` or `submit_batch` asks for its
/// address leaves nothing behind: nothing counted as pending, nothing that
/// goes out with the next call's batch (whose request would then come back
/// to its caller while submitted).
#[test]
fn a_buffer_panicking_during_submission_leaves_nothing_behind() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (r, w) = pipe();
    let ctx = Context::builder().entries(4).build_for::<Touchy>().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let touchy = |data: u64| Request::read(&r, Touchy { bytes: vec![0; 4], armed: armed.clone() }, 0).user_data(data);
    for i in 0..3 {
        let req = touchy(i);
        armed.store(true, Ordering::SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| ctx.submit(req).map(|_| ()))).is_err());
        armed.store(false, Ordering::SeqCst);
        assert_eq!(ctx.pending(), 0, "after panic {i} in submit");
    }
    let mut reqs = vec![Request::noop(), touchy(10), Request::noop()];
    let mut tickets = Vec::new();
    armed.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| ctx.submit_batch(&mut reqs, &mut tickets).map(|_| ()))).is_err());
    armed.store(false, Ordering::SeqCst);
    assert_eq!((ctx.pending(), tickets.len()), (0, 0), "after a panic in submit_batch");
    // The context goes on: one request, one ticket, one completion.
    let ticket = ctx.submit(touchy(20)).map_err(|e| e.error().raw_os_error()).unwrap();
    assert_eq!(ctx.pending(), 1);
    write_pipe(&w, b"abcd");
    let done = wait_n(&ctx, 1);
    assert_eq!((done[0].ticket(), done[0].user_data()), (ticket, 20));
    assert_eq!(done[0].result().unwrap(), 4);
    assert_eq!(ctx.pending(), 0);
}
