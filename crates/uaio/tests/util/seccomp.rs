//! A seccomp filter for the tests that run uaio where a container's profile
//! refuses system calls: it answers the listed x86-64 system calls with
//! `EPERM` (as Docker's default profile answers io_uring's) and lets every
//! other call, and every call of another architecture, through.
//!
//! Shared by the test crates of the engine, the conformance suite and the
//! command (the last two include this file by path).

/// A filter program, built in full before it is installed, so that
/// [`Refusal::install`] allocates nothing (it may run between `fork` and
/// `exec`).
#[derive(Debug)]
pub struct Refusal {
    prog: Vec<libc::sock_filter>,
}

impl Refusal {
    /// A filter refusing the system calls numbered `calls`.
    pub fn of(calls: &[libc::c_long]) -> Refusal {
        const LD_ABS_W: u16 = 0x20;
        const JEQ_K: u16 = 0x15;
        const RET_K: u16 = 0x06;
        const ALLOW: u32 = 0x7fff_0000;
        const ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        // The architecture (offset 4 of seccomp_data): another one passes.
        let mut prog = vec![op(LD_ABS_W, 0, 0, 4), op(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), op(RET_K, 0, 0, ALLOW)];
        // The system call number (offset 0): each listed one jumps to the
        // refusal at the end, past the allowance.
        prog.push(op(LD_ABS_W, 0, 0, 0));
        for (i, &nr) in calls.iter().enumerate() {
            let to_refusal = u8::try_from(calls.len() - i).expect("at most 255 calls");
            prog.push(op(JEQ_K, to_refusal, 0, nr as u32));
        }
        prog.push(op(RET_K, 0, 0, ALLOW));
        prog.push(op(RET_K, 0, 0, ERRNO_EPERM));
        Refusal { prog }
    }

    /// Installs the filter on the calling thread (and on the threads and
    /// processes it makes from now on): two `prctl` calls, which are
    /// async-signal-safe, and no allocation.
    pub fn install(&self) -> std::io::Result<()> {
        let fprog = libc::sock_fprog { len: self.prog.len() as u16, filter: self.prog.as_ptr().cast_mut() };
        // SAFETY: prctl(2) calls; the second reads the program `fprog`
        // points to, which `self` keeps alive through the call (the kernel
        // copies it).
        let ok = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog, 0, 0)
                    == 0
        };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
