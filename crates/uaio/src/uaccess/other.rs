//! Architectures without the fault-recovering copy.

pub(super) fn install() {}

pub(super) fn before_exec() {}

/// No handler of uaio's here: the C library's `sigaction` as it is.
///
/// # Safety
/// As `sigaction(2)`.
pub(super) unsafe fn set_fault_action(
    sig: libc::c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
    real: crate::sys::deferral::RealSigaction,
) -> libc::c_int {
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(sig, act, old) }
}

/// # Safety
/// Same contract as the x86-64 version; here every copy goes through the
/// kernel (`process_vm_readv` on the own process), which never faults.
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> usize {
    let local = libc::iovec { iov_base: dst.cast(), iov_len: len };
    let remote = libc::iovec { iov_base: src as *mut _, iov_len: len };
    // SAFETY: process_vm_readv validates both ranges itself.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        len
    } else {
        len - n as usize
    }
}
