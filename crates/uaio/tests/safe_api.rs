//! The safe API: owned buffers come back, cancellation, destroy on drop.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uaio::{Context, Op, Request};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a valid array; the descriptors are owned below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: freshly created, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn write_then_read_returns_the_buffer() {
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(8).unwrap();
    ctx.submit(Request::write(f.as_raw_fd(), b"hello world".to_vec(), 3).user_data(1)).unwrap();
    let c = ctx.wait(1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!((c[0].user_data, c[0].result), (1, Ok(11)));
    ctx.submit(Request::read(f.as_raw_fd(), 20, 0).user_data(2)).unwrap();
    let c = ctx.wait(1, Some(Duration::from_secs(5))).unwrap().pop().unwrap();
    assert_eq!(c.result, Ok(14));
    match c.op {
        Op::Read { buf, .. } => assert_eq!(&buf[3..14], b"hello world"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ctx.pending(), 0);
}

#[test]
fn cancel_of_a_pending_pipe_read_completes_with_ecanceled() {
    let (r, _w) = pipe();
    let ctx = Context::new(4).unwrap();
    let t = ctx.submit(Request::read(r.as_raw_fd(), 16, 0).user_data(9)).unwrap();
    assert!(ctx.wait(0, Some(Duration::ZERO)).unwrap().is_empty());
    ctx.cancel(t).unwrap();
    let c = ctx.wait(1, Some(Duration::from_secs(5))).unwrap().pop().unwrap();
    assert_eq!((c.user_data, c.result), (9, Err(libc::ECANCELED)));
    assert_eq!(ctx.cancel(t).unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn poll_reports_readiness_and_noop_completes() {
    let (r, w) = pipe();
    let ctx = Context::new(4).unwrap();
    ctx.submit(Request::poll(r.as_raw_fd(), libc::POLLIN as u16).user_data(1)).unwrap();
    ctx.submit(Request::new(Op::Noop).user_data(2)).unwrap();
    let c = ctx.wait(1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].user_data, c[0].result), (2, Ok(0)));
    // SAFETY: writing one byte from a valid buffer to our pipe.
    assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
    let c = ctx.wait(1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c[0].user_data, 1);
    assert_ne!(c[0].result.unwrap() & libc::POLLIN as u64, 0);
}

#[test]
fn drop_with_pending_requests_cancels_them_before_returning() {
    let (r, w) = pipe();
    {
        let ctx = Context::new(4).unwrap();
        for i in 0..3 {
            ctx.submit(Request::read(r.as_raw_fd(), 8, 0).user_data(i)).unwrap();
        }
        assert_eq!(ctx.pending(), 3);
    }
    // Had any of the three reads survived the drop, it would take this data.
    // SAFETY: an 8-byte write from a live buffer to our pipe.
    assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"abcdefgh".as_ptr().cast(), 8) }, 8);
    let mut buf = [0u8; 16];
    // SAFETY: a read into a live buffer from our pipe, which holds 8 bytes.
    let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 16) };
    assert_eq!(&buf[..n as usize], b"abcdefgh");
}

#[test]
fn many_threads_wait_on_one_context_and_every_completion_arrives_once() {
    let (r, w) = pipe();
    let ctx = std::sync::Arc::new(Context::new(64).unwrap());
    for i in 0..16 {
        ctx.submit(Request::poll(r.as_raw_fd(), libc::POLLIN as u16).user_data(i)).unwrap();
    }
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < 4 {
                    for c in ctx.wait(1, Some(Duration::from_millis(200))).unwrap() {
                        seen.push(c.user_data);
                    }
                    if ctx.pending() == 0 {
                        break;
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: one-byte write from a valid buffer.
    unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    let mut all: Vec<u64> = waiters.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    assert_eq!(all, (0..16).collect::<Vec<_>>());
}

#[test]
fn drop_with_pending_file_writes_keeps_every_write() {
    const N: usize = 256;
    let f = tempfile::tempfile().unwrap();
    let ctx = Context::new(N as u32).unwrap();
    for i in 0..N {
        let block = vec![(i % 251) as u8 + 1; 4096];
        ctx.submit(Request::write(f.as_raw_fd(), block, (i * 4096) as u64).user_data(i as u64)).unwrap();
    }
    // Dropping the context waits for the writes (only what could wait
    // forever is cancelled), as the kernel's io_destroy does.
    drop(ctx);
    let mut got = vec![0u8; 4096];
    for i in 0..N {
        // SAFETY: pread into a local buffer of 4096 bytes.
        let n = unsafe { libc::pread(f.as_raw_fd(), got.as_mut_ptr().cast(), 4096, (i * 4096) as i64) };
        assert_eq!(n, 4096, "block {i}");
        assert!(got.iter().all(|&b| b == (i % 251) as u8 + 1), "block {i}");
    }
}
