//! Reads and writes of anonymous-inode files: the kernel accepts AIO reads
//! only where the file implements `read_iter` (eventfd, timerfd, signalfd)
//! and refuses every AIO write to them (none implements `write_iter`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::util::{c, leak, leak_buf};
use crate::*;

fn own(fd: i32) -> OwnedFd {
    assert!(fd >= 0);
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn try_rw(e: &mut Env, ctx: u64, what: &str, fd: i32, write: bool) {
    let buf = leak_buf(128);
    let op = if write { IOCB_CMD_PWRITE } else { IOCB_CMD_PREAD };
    let n = if write { 8 } else { 128 };
    let a = leak(cb(op, fd, buf.as_mut_ptr() as u64, n, 0, 1));
    e.name_iocb(a);
    let mut p = [a as *mut iocb];
    // SAFETY: a live iocb and a buffer leaked for the rest of the process.
    let r = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
    e.rec(format!("{what}: submit = {}", ret(r)));
    if r == 1 {
        e.reap(ctx, 1);
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![c("io/anon_inode_read_iter_rules", |e| {
        let ctx = e.setup(8);
        // SAFETY: plain system calls creating descriptors owned below.
        let (tfd, ifd, pfd) = unsafe {
            let t = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
            let its = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 1000 },
            };
            libc::timerfd_settime(t, 0, &its, std::ptr::null_mut());
            (
                own(t),
                own(libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC)),
                own(libc::epoll_create1(libc::EPOLL_CLOEXEC)),
            )
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        let efd = eventfd();
        write_one(&efd);
        try_rw(e, ctx, "timerfd read", tfd.as_raw_fd(), false);
        try_rw(e, ctx, "eventfd read", efd.as_raw_fd(), false);
        try_rw(e, ctx, "inotify read", ifd.as_raw_fd(), false);
        try_rw(e, ctx, "epoll read", pfd.as_raw_fd(), false);
        try_rw(e, ctx, "epoll write", pfd.as_raw_fd(), true);
        try_rw(e, ctx, "timerfd write", tfd.as_raw_fd(), true);
    })]
}

fn write_one(fd: &OwnedFd) {
    let v = 1u64.to_ne_bytes();
    // SAFETY: an 8-byte write from a live buffer to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), v.as_ptr().cast(), 8) };
}
