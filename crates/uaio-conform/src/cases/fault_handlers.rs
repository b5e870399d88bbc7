//! The application's own fault handlers: a SIGSEGV handler installed after
//! the first context (a crash reporter that exits on any fault) must still
//! see `EFAULT` for bad pointers handed to the calls, and must still get
//! the program's own crashes.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

extern "C" fn reporter(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(77) };
}

fn install_reporter() {
    // SAFETY: sigaction with a zeroed struct and an async-signal-safe handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = reporter as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![c("fault_handlers/crash_reporter_installed_after_setup", |e| {
        let aio = aio_of(e);
        let f = e.file(b"abc", libc::O_RDONLY);
        let fd = f.as_raw_fd();
        let bad = no_access_page();
        let lines = in_child(move |out| {
            let ctx = child_context(aio, out);
            install_reporter();
            // uaio notices a handler installed after its own within a clock
            // tick (see the README); the kernel needs no such delay.
            std::thread::sleep(Duration::from_millis(30));
            let mut p = [bad as *mut iocb];
            // SAFETY: a deliberately unreadable iocb pointer.
            out.push(format!("submit of an unreadable iocb = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
            // SAFETY: a deliberately unreadable pointer array.
            let r = unsafe { aio.submit(ctx, 1, bad as *mut *mut iocb) };
            out.push(format!("submit of an unreadable array = {}", ret(r)));
            let buf = leak_buf(3);
            let a = leak(cb(IOCB_CMD_PREAD, fd, buf.as_mut_ptr() as u64, 3, 0, 1));
            let mut p = [a as *mut iocb];
            // SAFETY: one valid iocb.
            out.push(format!("submit = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
            out.push(format!("ready = {}", wait_ready(ctx, 1)));
            let mut t = ts(1, 0);
            // SAFETY: a deliberately unwritable events array.
            let r = unsafe { aio.getevents(ctx, 1, 1, bad as *mut io_event, &mut t) };
            out.push(format!("getevents into an unwritable array = {}", ret(r)));
            // SAFETY: destroying the context made above.
            out.push(format!("destroy = {}", ret(unsafe { aio.destroy(ctx) })));
            // A crash of the program's own still reaches its reporter: a
            // grandchild faults, and its exit status tells who handled it.
            // SAFETY: fork(2); the grandchild only faults (or _exits).
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: a deliberate write to an inaccessible page, which
                // the reporter turns into _exit(77).
                unsafe {
                    std::ptr::write_volatile(bad as *mut u8, 1);
                    libc::_exit(0);
                }
            }
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let how = if libc::WIFEXITED(status) {
                format!("exit {}", libc::WEXITSTATUS(status))
            } else {
                format!("signal {}", libc::WTERMSIG(status))
            };
            out.push(format!("the program's own fault: {how}"));
        });
        e.rec_all(lines);
    })]
}
