//! A `fork` child reads uaio's kept `/proc` files afresh: its copies of
//! uaio's descriptors are closed at the fork, and the numbers must not be
//! used again (they may name something else in the child).

use uaio::abi::aio_context_t;
use uaio::raw;

#[test]
fn a_fork_child_reads_aio_max_nr_through_its_own_descriptor() {
    let mut ctx: aio_context_t = 0;
    // SAFETY: io_setup writes the handle; this opens the kept files.
    assert_eq!(unsafe { raw::io_setup(4, &mut ctx) }, 0);
    let want = uaio::aio_max_nr();
    assert!(uaio::kept_descriptors() >= 1);
    // The number uaio keeps /proc/sys/fs/aio-max-nr open at.
    let kept: i32 = std::fs::read_dir("/proc/self/fd")
        .expect("fd list")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (target.as_os_str() == "/proc/sys/fs/aio-max-nr").then(|| e.file_name().to_str()?.parse().ok())?
        })
        .next()
        .expect("uaio keeps aio-max-nr open");
    // SAFETY: fork(2); the child only makes uaio calls and reads a file,
    // then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // The number the parent's aio-max-nr had now names a file that
        // says 777: a child still reading through it would believe it.
        let fake = std::env::temp_dir().join(format!("uaio-fork-files-{}", std::process::id()));
        std::fs::write(&fake, "777\n").expect("fake file");
        let f = std::fs::File::open(&fake).expect("open fake");
        let _ = std::fs::remove_file(&fake);
        // SAFETY: dup2 onto the number the parent's descriptor had (closed
        // in the child by uaio's fork handler).
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), kept) };
        let real: u64 =
            std::fs::read_to_string("/proc/sys/fs/aio-max-nr").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut c: aio_context_t = 0;
        // SAFETY: io_setup in the child, which reads aio-max-nr again.
        let r = unsafe { raw::io_setup(4, &mut c) };
        let ok = uaio::aio_max_nr() == real && real == want && r == 0;
        // SAFETY: leaving the child without running the parent's handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: our own context.
    assert_eq!(unsafe { raw::io_destroy(ctx) }, 0);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child read aio-max-nr wrong: {status:#x}");
}
