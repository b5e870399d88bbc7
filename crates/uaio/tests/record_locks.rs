//! A program's locks on a file it does AIO on. Closing any descriptor of a
//! file releases the process's POSIX record locks on it, so uaio keeps a
//! duplicate it made for a request (a sync here, which both backends run
//! on one) rather than close it while such a lock is held. That
//! duplicate must then not outlive the program's own descriptor for long:
//! it keeps the open file alive, and with it a `flock` the program took,
//! which the kernel releases when the program closes its last descriptor.
//! Checked: both locks hold while the program keeps the file; once it
//! closes it, another process gets the `flock` (looked for every 20 ms
//! for up to 20 s: only that it happens is asserted, not how soon). And
//! when the only record lock on the file is another process's, which no
//! close of this process releases, nothing is kept: the `flock` is free
//! as soon as the program closes the file, as on the kernel.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use uaio::{Backend, Context, Request};

/// In a child process: whether `path` can be locked now, by `flock` or by
/// `fcntl(F_SETLK)`.
fn free_in_another_process(path: &std::path::Path, posix: bool) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: fork(2); the child only opens, locks and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: open(2) of a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        let got = if posix {
            // SAFETY: an all-zero flock is valid; F_SETLK with it.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as i16;
            fl.l_whence = libc::SEEK_SET as i16;
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) == 0 }
        } else {
            // SAFETY: flock(2) on the descriptor just opened.
            unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 }
        };
        // SAFETY: _exit(2) in the child.
        unsafe { libc::_exit(got as i32) };
    }
    let mut status = 0;
    // SAFETY: waitpid(2) for the child just made.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WEXITSTATUS(status) == 1
}

fn locks_after_requests(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked");
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: flock(2) on the file just opened.
    assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
    // SAFETY: an all-zero flock is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_SETLK with a valid flock.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) }, 0);
    let ctx = match Context::<Vec<u8>>::builder().entries(8).backend(backend).build() {
        Ok(c) => c,
        Err(e) => {
            println!("skipped {backend:?}: {e}");
            return;
        }
    };
    for _ in 0..3 {
        ctx.submit(Request::fsync(&file)).unwrap();
        ctx.wait_one(None).unwrap().result().unwrap();
    }
    assert!(!free_in_another_process(&path, true), "{backend:?}: the record lock was released by uaio");
    assert!(!free_in_another_process(&path, false), "{backend:?}: the flock was released while the file is open");
    drop(ctx);
    drop(file);
    let start = Instant::now();
    while !free_in_another_process(&path, false) {
        assert!(start.elapsed() < Duration::from_secs(20), "{backend:?}: the flock outlived the program's descriptor");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{backend:?}: flock free {:?} after the close", start.elapsed());
}

/// A process that holds a read lock on one byte of `path` far from the
/// data until the returned descriptor (the write end of a pipe it reads)
/// is closed.
fn lock_held_by_another_process(path: &std::path::Path) -> (libc::pid_t, std::os::fd::OwnedFd) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let (mut ready, mut hold) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe(2) into local arrays.
    assert!(unsafe { libc::pipe(ready.as_mut_ptr()) == 0 && libc::pipe(hold.as_mut_ptr()) == 0 });
    // SAFETY: fork(2); the child only locks, writes, reads and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain system calls on the child's own descriptors and a
        // valid C string; an all-zero flock is valid.
        unsafe {
            libc::close(hold[1]);
            let fd = libc::open(c.as_ptr(), libc::O_RDWR);
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_RDLCK as i16;
            fl.l_whence = libc::SEEK_SET as i16;
            fl.l_start = 1 << 30;
            fl.l_len = 1;
            let ok = libc::fcntl(fd, libc::F_SETLK, &fl) == 0;
            libc::write(ready[1], [ok as u8].as_ptr().cast(), 1);
            let mut b = 0u8;
            libc::read(hold[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    let mut ok = 0u8;
    // SAFETY: closing the ends the parent does not use; one byte read into
    // a local.
    unsafe {
        libc::close(hold[0]);
        libc::close(ready[1]);
        assert_eq!(libc::read(ready[0], (&mut ok as *mut u8).cast(), 1), 1);
        libc::close(ready[0]);
    }
    assert_eq!(ok, 1, "the other process's lock");
    // SAFETY: the write end, owned by nobody else.
    (pid, unsafe { std::os::fd::FromRawFd::from_raw_fd(hold[1]) })
}

fn others_lock_keeps_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other");
    std::fs::write(&path, b"").unwrap();
    // Before the file is opened here: the forked holder must not share it.
    let (pid, hold) = lock_held_by_another_process(&path);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // SAFETY: flock(2) on the file just opened.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    let Ok(ctx) = Context::<Vec<u8>>::builder().entries(8).backend(backend).build() else { return };
    for _ in 0..3 {
        ctx.submit(Request::fsync(&file)).unwrap();
        ctx.wait_one(None).unwrap().result().unwrap();
    }
    drop(ctx);
    drop(file);
    let free = free_in_another_process(&path, false);
    drop(hold);
    let mut status = 0;
    // SAFETY: waitpid(2) for the lock holder.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(free, "{backend:?}: the flock outlived the program's close while another process held a record lock");
}

/// The tests take turns: a child one of them forks inherits every
/// descriptor of the process, the other test's locked file too, and while
/// it lives its copy holds that file's `flock` (the other test then saw
/// its `flock` outlive the close: 36 of 250 runs on a loaded machine).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn another_process_lock_keeps_no_duplicate() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    others_lock_keeps_nothing(Backend::Threads);
    others_lock_keeps_nothing(Backend::IoUring);
}

#[test]
fn locks_hold_while_the_file_is_open_and_go_with_it() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    locks_after_requests(Backend::Threads);
    locks_after_requests(Backend::IoUring);
}
