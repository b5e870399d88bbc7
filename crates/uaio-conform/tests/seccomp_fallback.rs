//! Proves the automatic fallback: a child process installs a seccomp filter
//! refusing the io_uring system calls with `EPERM` (as Docker's default
//! profile does), then runs the whole conformance suite against the kernel
//! and uaio. uaio must pick the thread pool by itself and agree with the
//! kernel on every case.
#![deny(clippy::undocumented_unsafe_blocks)]

#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

const fn jeq(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code: 0x15, jt, jf, k }
}

fn refuse_io_uring() {
    const LD_ABS_W: u16 = 0x20;
    const RET: u16 = 0x06;
    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let prog = [
        stmt(LD_ABS_W, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, ALLOW),
        stmt(LD_ABS_W, 0),
        jeq(libc::SYS_io_uring_setup as u32, 3, 0),
        jeq(libc::SYS_io_uring_enter as u32, 2, 0),
        jeq(libc::SYS_io_uring_register as u32, 1, 0),
        stmt(RET, ALLOW),
        stmt(RET, ERRNO_EPERM),
    ];
    let fprog = SockFprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SAFETY: prctl(2) calls with a valid BPF program that outlives them.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const SockFprog, 0, 0), 0);
    }
}

fn main() {
    if !cfg!(target_arch = "x86_64") {
        println!("seccomp fallback: skipped (the filter is written for x86-64 system call numbers)");
        return;
    }
    // SAFETY: fork(2) before any thread exists; the child runs the suite and
    // exits with its verdict.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        refuse_io_uring();
        let mut p = [0u8; 120];
        // SAFETY: probing io_uring_setup with a zeroed 120-byte params struct.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, p.as_mut_ptr()) };
        let err = std::io::Error::last_os_error().raw_os_error();
        println!("io_uring_setup under the filter: {r} ({err:?})");
        let cases = uaio_conform::all_cases();
        let mut failed = 0;
        for c in &cases {
            let o = uaio_conform::run_case(c);
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
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    println!("{} passed, {} failed", ok as u32, !ok as u32);
    if !ok {
        std::process::exit(1);
    }
}
