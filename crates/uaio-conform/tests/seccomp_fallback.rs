//! Proves the automatic fallback: a child process installs a seccomp filter
//! refusing the io_uring system calls with `EPERM` (as Docker's default
//! profile does), then runs the whole conformance suite against the kernel
//! and uaio. uaio must pick the thread pool by itself and agree with the
//! kernel on every case.
//!
//! One test trial (`seccomp_fallback`), so `--list` and nextest see it; it
//! must run before any other thread exists (the child is forked), which a
//! single trial on the main thread guarantees.
#![deny(clippy::undocumented_unsafe_blocks)]

use libtest_mimic::{Arguments, Completion, Failed, Trial};

#[path = "../../uaio/tests/util/seccomp.rs"]
mod seccomp;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trial = if cfg!(target_arch = "x86_64") {
        Trial::test("seccomp_fallback", run)
    } else {
        Trial::ignorable_test("seccomp_fallback", || {
            Ok(Completion::ignored_with("the filter is written for x86-64 system call numbers"))
        })
    };
    libtest_mimic::run(&args, vec![trial]).exit();
}

/// Runs the suite in a child that refuses io_uring; fails unless the child
/// chose the thread pool and every case agreed.
fn run() -> Result<(), Failed> {
    // SAFETY: fork(2) before any thread exists; the child runs the suite and
    // exits with its verdict.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        seccomp::Refusal::of(&[libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register])
            .install()
            .expect("seccomp filter");
        let mut p = [0u8; 120];
        // SAFETY: probing io_uring_setup with a zeroed 120-byte params struct.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, p.as_mut_ptr()) };
        let err = std::io::Error::last_os_error().raw_os_error();
        println!("io_uring_setup under the filter: {r} ({err:?})");
        let cases = uaio_conform::all_cases();
        let mut failed = 0;
        for c in &cases {
            let o = uaio_conform::run_case(c);
            if o.failure.is_none() {
                println!("ok   {}", o.name);
            }
            if let Some(why) = o.failure {
                failed += 1;
                println!("FAIL {}\n{why}", o.name);
            }
        }
        println!("backend chosen: {}", uaio::backend_name());
        let ok = r < 0 && err == Some(libc::EPERM) && uaio::backend_name() == "threads" && failed == 0;
        println!("seccomp fallback: {} cases on kernel and uaio(threads), {} disagree", cases.len(), failed);
        std::process::exit(if ok { 0 } else { 1 });
    }
    // The suite takes under two minutes here; a child still running after
    // LIMIT hangs, and is killed so that the run ends and says so.
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);
    let start = std::time::Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: polling our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed() > LIMIT {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(Failed::from(format!(
                "the child under the seccomp filter was still running after {} s: killed (the last case it \
                 printed is above; the one after it hung)",
                LIMIT.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(Failed::from("the child under the seccomp filter failed (its output is above)"))
    }
}
