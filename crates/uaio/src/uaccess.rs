//! Access to memory named by the application, which may be unmapped.
//!
//! The kernel reads iocbs, pointer arrays and iovecs, and writes `aio_key` and
//! events, with instructions that may fault; a fault turns into `EFAULT`
//! through its exception table. uaio does the same in user space: every such
//! copy goes through one small assembly routine whose address range is
//! known, and a `SIGSEGV`/`SIGBUS` handler that sees a fault inside that range
//! resumes execution at the routine's failure exit. Faults anywhere
//! else are handed to the handler that was installed before (or the default
//! action), so the application's own crash handling is untouched. A handler
//! the application installs after uaio's is noticed at the next entry point
//! (see [`enter`]), put behind uaio's and sent every fault that
//! is not uaio's.
//!
//! Measured on the development machine: one `process_vm_readv` of 64 bytes on
//! the own process costs 1.3 µs (and 430 ns per extra iovec), against a few
//! nanoseconds for this copy, which is why the fault-recovering copy is used.
//!
//! Like the kernel's `access_ok`, addresses outside the user half of the
//! address space are refused before any access.

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::{size_of, size_of_val, MaybeUninit};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Highest user address + 1 on x86-64 with 4-level paging (`TASK_SIZE_MAX`).
pub(crate) const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// The access touched memory that is not mapped (or not with the needed
/// protection): the caller reports `EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault;

/// The kernel's `access_ok`: `[addr, addr + len)` lies in user space.
#[inline]
pub(crate) fn access_ok(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => end <= USER_END,
        None => false,
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "uaccess/x86_64.rs"]
mod arch;

#[cfg(not(target_arch = "x86_64"))]
#[path = "uaccess/other.rs"]
mod arch;

/// `sigaction` of `SIGSEGV` or `SIGBUS` through the drop-in library: the
/// program's action stays behind uaio's fault handler where that is in
/// place (see the architecture's `set_fault_action`).
///
/// # Safety
/// As `sigaction(2)`: `act` and `old` null or valid.
pub(crate) unsafe fn set_fault_action(
    sig: libc::c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
    real: crate::sys::deferral::RealSigaction,
) -> libc::c_int {
    // SAFETY: forwarded contract.
    unsafe { arch::set_fault_action(sig, act, old, real) }
}

/// Before an `exec` (see the architecture's `before_exec`); [`after_failed_exec`]
/// undoes it.
pub(crate) fn before_exec() {
    if READY.load(Ordering::Acquire) {
        arch::before_exec();
    }
}

/// The `exec` failed: uaio's handler in front again.
pub(crate) fn after_failed_exec() {
    if READY.load(Ordering::Acquire) {
        arch::install();
    }
}

static READY: AtomicBool = AtomicBool::new(false);
static INSTALL: crate::sys::process::ForkOnce = crate::sys::process::ForkOnce::new();

#[inline]
fn ensure_installed() {
    if !READY.load(Ordering::Acquire) {
        INSTALL.call_once(|| {
            arch::install();
            READY.store(true, Ordering::Release);
        });
    }
}

/// Coarse clock tick of the last check of uaio's handler.
static LAST_CHECK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Per thread: the tick of the last look at the signal mask, and
    /// whether it blocked SIGSEGV then.
    static MASK_SEEN: Cell<(u64, bool)> = const { Cell::new((0, false)) };
    /// Per thread: the program's signal handlers running (a handler may
    /// block SIGSEGV and SIGBUS, so calls made from one look at the mask
    /// every time).
    static IN_HANDLER: Cell<u32> = const { Cell::new(0) };
    /// Per thread: copies must not fault (a fault signal is blocked and
    /// pending, see [`enter`]): they go through the kernel instead.
    static NO_FAULTS: Cell<bool> = const { Cell::new(false) };
    /// Per thread: one of uaio's own threads.
    static OWN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one of uaio's own (see
/// [`not_ours_to_take`]).
pub(crate) fn own_thread() {
    let _ = OWN_THREAD.try_with(|c| c.set(true));
}

/// Whether the calling thread is one of uaio's own.
pub(crate) fn is_own_thread() -> bool {
    OWN_THREAD.try_with(Cell::get).unwrap_or(false)
}

/// In uaio's fault handler: whether the calling thread is one of uaio's,
/// which must pass a fault signal sent to the process on to the program's
/// threads. It keeps the signal blocked from now on (the caller sets that
/// in the mask the handler returns to), and its copies go through the
/// kernel, since a fault with the signal blocked would end the process.
pub(crate) fn not_ours_to_take() -> bool {
    if !OWN_THREAD.try_with(Cell::get).unwrap_or(false) {
        return false;
    }
    set_no_faults(true);
    true
}

/// Runs `f`, a program's signal handler, counted as running (see
/// [`enter`]). A handler that leaves with `siglongjmp` stays counted, which
/// only costs the calls of its thread a look at the mask.
pub(crate) fn in_handler<R>(f: impl FnOnce() -> R) -> R {
    let _ = IN_HANDLER.try_with(|c| c.set(c.get().saturating_add(1)));
    let r = f();
    let _ = IN_HANDLER.try_with(|c| c.set(c.get().saturating_sub(1)));
    r
}

/// Keeps uaio's fault recovery working for the length of one call into
/// uaio (see [`enter`]): a thread that blocks SIGSEGV copies through the
/// kernel until the scope ends.
#[derive(Debug)]
pub(crate) struct FaultScope {
    /// [`NO_FAULTS`] as it was before the scope, when the scope set it.
    no_faults_before: Option<bool>,
}

impl Drop for FaultScope {
    fn drop(&mut self) {
        if let Some(before) = self.no_faults_before {
            set_no_faults(before);
        }
    }
}

/// Called at every entry point before application memory is touched, so
/// that a bad pointer gives `EFAULT` as with the kernel, whatever the
/// program did to its signal handling:
/// - A program that installs its own SIGSEGV or SIGBUS handler after uaio's
///   (a crash reporter that does not expect faults it did not cause) would
///   receive the fault; uaio puts its handler back on top and forwards to
///   the program's every fault that is not uaio's.
/// - A thread that blocks SIGSEGV would be killed by a fault (the kernel
///   does not deliver a blocked synchronous fault signal); the copies of
///   its calls go through the kernel instead
///   (`process_vm_readv`/`process_vm_writev`) until the returned scope
///   ends, and its mask is left alone.
///
/// Both are looked at with a system call, so at most once per coarse clock
/// tick (a few milliseconds; per process for the handler, per thread for
/// the mask), or at once when `now` (`io_setup`, `io_destroy`), and the
/// mask at every call made from a program's signal handler that uaio
/// runs ([`in_handler`]). A change made less than a tick before a call
/// with a bad pointer can still let that fault through; the README says so.
pub(crate) fn enter(now: bool) -> FaultScope {
    let tick = crate::sys::coarse_clock_ns();
    // (A plain load first: the exchange, a locked write of a line every
    // thread calls through, is made once per tick, not once per call.)
    let new_tick = || LAST_CHECK.load(Ordering::Relaxed) != tick && LAST_CHECK.swap(tick, Ordering::Relaxed) != tick;
    if READY.load(Ordering::Acquire) && (now || new_tick()) {
        arch::install();
    }
    let (seen, blocked) = MASK_SEEN.with(Cell::get);
    let handler = IN_HANDLER.try_with(Cell::get).unwrap_or(0) > 0;
    let blocked = if !now && seen == tick && !handler {
        blocked
    } else {
        // SAFETY: a plain C struct, all zeroes valid; a query of the mask.
        let old = unsafe {
            let mut old: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut old);
            old
        };
        // SAFETY: sigismember on a valid set.
        let b = unsafe { libc::sigismember(&old, libc::SIGSEGV) == 1 };
        MASK_SEEN.with(|m| m.set((tick, b)));
        b
    };
    if !blocked {
        return FaultScope { no_faults_before: None };
    }
    // The mask stays as it is (unblocked, a fault signal that is pending,
    // or comes while the call sleeps, would be delivered, where the kernel
    // leaves it for the program's `sigwait`); with SIGSEGV blocked, a
    // fault would end the process, so the call's copies go through the
    // kernel, which never faults. A thread that blocks SIGBUS alone (QEMU's
    // do) copies directly: its copies fault with SIGSEGV, and SIGBUS only
    // where a pointer lies in a file mapping past the end of its file.
    SOME_NO_FAULTS.store(true, Ordering::SeqCst);
    let no_faults_before = Some(NO_FAULTS.try_with(|c| c.replace(true)).unwrap_or(false));
    FaultScope { no_faults_before }
}

/// Whether some thread has ever had [`NO_FAULTS`] set: until then no
/// copy needs to look at its thread's flag. Set before the flag is, by
/// the thread that sets it, so that thread's copies always see it.
static SOME_NO_FAULTS: AtomicBool = AtomicBool::new(false);

/// Sets this thread's [`NO_FAULTS`].
fn set_no_faults(on: bool) {
    if on {
        SOME_NO_FAULTS.store(true, Ordering::SeqCst);
    }
    let _ = NO_FAULTS.try_with(|c| c.set(on));
}

/// Whether this thread's copies must go through the kernel (see [`enter`]).
#[inline]
fn no_faults() -> bool {
    SOME_NO_FAULTS.load(Ordering::Relaxed) && thread_no_faults()
}

/// This thread's [`NO_FAULTS`] (kept out of line: the compiler would
/// otherwise find the thread-local's address before looking at the flag).
#[cold]
#[inline(never)]
fn thread_no_faults() -> bool {
    NO_FAULTS.try_with(Cell::get).unwrap_or(false)
}

/// Copies `len` bytes between this process's `local` and `remote`
/// addresses through the kernel (`process_vm_readv` when `read`, else
/// `process_vm_writev`), which answers a bad address with an error, never
/// a fault signal. Returns whether every byte was copied.
fn kernel_copy(read: bool, local: *mut u8, remote: u64, len: usize) -> bool {
    let l = libc::iovec { iov_base: local.cast(), iov_len: len };
    let r = libc::iovec { iov_base: remote as *mut libc::c_void, iov_len: len };
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: the kernel checks both ranges; `local` is valid for `len`
    // bytes per the callers' contracts.
    let n = unsafe {
        if read {
            libc::process_vm_readv(pid, &l, 1, &r, 1, 0)
        } else {
            libc::process_vm_writev(pid, &l, 1, &r, 1, 0)
        }
    };
    n == len as isize
}

/// Copies `len` bytes from the user address `src` into `dst`.
///
/// # Safety
/// `dst` must be valid for `len` bytes of writes.
#[inline]
pub(crate) unsafe fn copy_from_user(dst: *mut u8, src: u64, len: usize) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    if !access_ok(src, len as u64) {
        return Err(Fault);
    }
    ensure_installed();
    if no_faults() {
        return if kernel_copy(true, dst, src, len) { Ok(()) } else { Err(Fault) };
    }
    // SAFETY: dst is valid per the caller; src is probed by the fault-recovering copy.
    match unsafe { arch::copy(dst, src as *const u8, len) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

/// Copies `len` bytes from `src` to the user address `dst`.
///
/// # Safety
/// `src` must be valid for `len` bytes of reads, and the application must
/// have handed `dst` to uaio for writing (it is the application's memory).
#[inline]
pub(crate) unsafe fn copy_to_user(dst: u64, src: *const u8, len: usize) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    if !access_ok(dst, len as u64) {
        return Err(Fault);
    }
    ensure_installed();
    if no_faults() {
        return if kernel_copy(false, src as *mut u8, dst, len) { Ok(()) } else { Err(Fault) };
    }
    // SAFETY: see the function contract; faults are recovered.
    match unsafe { arch::copy(dst as *mut u8, src, len) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

/// Plain data: every bit pattern of its size is a valid value, it owns
/// nothing (no references, no drop), and it has no padding, so that it can
/// be copied from and to the application's memory as bytes.
///
/// # Safety
/// Implement only for integers, and arrays and `repr(C)` structs of them
/// without padding (the ABI structs' layouts are checked in `uaio-abi`).
pub(crate) unsafe trait Pod: Copy + 'static {}

// SAFETY: integers: any bits are a value.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: an array of plain data is plain data.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
// SAFETY: repr(C) structs of integers with no padding (layouts checked in
// uaio-abi): `iocb`, `io_event`, `iovec`, the ring header.
unsafe impl Pod for uaio_abi::iocb {}
// SAFETY: as above.
unsafe impl Pod for uaio_abi::io_event {}
// SAFETY: as above.
unsafe impl Pod for uaio_abi::iovec {}
// SAFETY: as above.
unsafe impl Pod for uaio_abi::aio_ring {}

/// An address in the application's memory, holding a `T`: the kernel's
/// `__user` pointer. It is never dereferenced; every access is a copy that
/// turns a fault into [`Fault`] (`EFAULT`), as the kernel's `copy_from_user`
/// and `copy_to_user` do.
///
/// Making one is safe: the application promised, by calling uaio's entry
/// points (`unsafe fn`s, see `raw`), that the addresses it names, directly
/// or in its iocbs and iovecs, are its own memory, as the kernel assumes of
/// a process; that promise is what makes the writes sound.
pub(crate) struct UserPtr<T> {
    addr: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for UserPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for UserPtr<T> {}

impl<T> PartialEq for UserPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

impl<T> Eq for UserPtr<T> {}

impl<T> std::fmt::Debug for UserPtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserPtr({:#x})", self.addr)
    }
}

impl<T: Pod> UserPtr<T> {
    /// The `T` at the application's address `addr`.
    #[inline]
    pub(crate) const fn new(addr: u64) -> Self {
        UserPtr { addr, _t: PhantomData }
    }

    /// The address.
    #[inline]
    pub(crate) const fn addr(self) -> u64 {
        self.addr
    }

    /// The `n`-th `T` of an array starting here.
    #[inline]
    pub(crate) const fn add(self, n: usize) -> Self {
        UserPtr::new(self.addr.wrapping_add((n * size_of::<T>()) as u64))
    }

    /// A field of the `T` here, `offset` bytes in, named by `get` (which
    /// gives the field's type); see [`user_field!`].
    #[inline]
    pub(crate) const fn field<F: Pod>(self, offset: usize, _get: fn(&T) -> &F) -> UserPtr<F> {
        UserPtr::new(self.addr.wrapping_add(offset as u64))
    }

    /// Reads the `T` here.
    #[inline]
    pub(crate) fn read(self) -> Result<T, Fault> {
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: `v` has room for one T; the copy fills all of it or fails.
        unsafe { copy_from_user(v.as_mut_ptr().cast(), self.addr, size_of::<T>())? };
        // SAFETY: filled by the copy, and any bits are a T (Pod).
        Ok(unsafe { v.assume_init() })
    }

    /// Reads `dst.len()` consecutive `T`s starting here.
    #[inline]
    pub(crate) fn read_slice(self, dst: &mut [T]) -> Result<(), Fault> {
        // SAFETY: `dst` is valid for its own size in bytes; any bits are a T.
        unsafe { copy_from_user(dst.as_mut_ptr().cast(), self.addr, size_of_val(dst)) }
    }

    /// Writes `v` here.
    #[inline]
    pub(crate) fn write(self, v: &T) -> Result<(), Fault> {
        // SAFETY: `v` is valid for reads; the application's memory (see the
        // type's documentation).
        unsafe { copy_to_user(self.addr, (v as *const T).cast(), size_of::<T>()) }
    }
}

/// The field `$f` of the `$T` that `$p` (a [`UserPtr`] to a `$T`) points to,
/// as a [`UserPtr`] of the field's type, at `offset_of!($T, $f)`.
macro_rules! user_field {
    ($p:expr, $T:ty, $f:ident) => {
        $p.field(core::mem::offset_of!($T, $f), |v: &$T| &v.$f)
    };
}
pub(crate) use user_field;

/// Reads a plain-data value from a user address.
#[inline]
pub(crate) fn read_user<T: Pod>(addr: u64) -> Result<T, Fault> {
    UserPtr::<T>::new(addr).read()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mapped_memory() {
        let x: u64 = 0x1122_3344_5566_7788;
        assert_eq!(read_user::<u64>(&x as *const u64 as u64), Ok(x));
    }

    #[test]
    fn null_and_kernel_addresses_fault() {
        assert_eq!(read_user::<u64>(0), Err(Fault));
        assert_eq!(read_user::<u64>(8), Err(Fault));
        assert_eq!(read_user::<u64>(0xffff_8000_0000_0000), Err(Fault));
        assert_eq!(read_user::<u64>(u64::MAX - 3), Err(Fault));
    }

    /// Two fresh read-write pages of anonymous memory, for one test.
    fn two_pages() -> *mut libc::c_void {
        // SAFETY: a new private anonymous mapping, owned by the caller.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p
    }

    #[test]
    fn write_to_read_only_page_faults_and_partial_pages_are_refused() {
        // SAFETY: plain anonymous mappings used only by this test.
        unsafe {
            let p = two_pages();
            let base = p as u64;
            assert_eq!(libc::mprotect(p, 4096, libc::PROT_READ), 0);
            assert_eq!(UserPtr::<u32>::new(base).write(&7u32), Err(Fault));
            assert_eq!(UserPtr::<u32>::new(base + 4096).write(&7u32), Ok(()));
            // A copy straddling into an unmapped page fails as a whole.
            assert_eq!(libc::munmap((base + 4096) as *mut _, 4096), 0);
            assert_eq!(read_user::<u64>(base + 4092), Err(Fault));
            assert_eq!(read_user::<u32>(base + 4092), Ok(0));
            libc::munmap(p, 4096);
        }
    }

    #[test]
    fn every_length_is_copied_exactly_and_a_fault_at_its_end_is_seen() {
        let src: Vec<u8> = (1..=80).collect();
        for len in 0..=72usize {
            let mut dst = [0xaau8; 80];
            let at = UserPtr::<u8>::new(src.as_ptr() as u64 + 3);
            assert_eq!(at.read_slice(&mut dst[..len]), Ok(()), "length {len}");
            assert_eq!(&dst[..len], &src[3..3 + len], "length {len}");
            assert!(dst[len..].iter().all(|&b| b == 0xaa), "length {len}: wrote past the end");
        }
        // SAFETY: a plain anonymous mapping used only by this test; its
        // second page is unmapped, so the copy's last byte faults.
        unsafe {
            let p = two_pages();
            assert_eq!(libc::munmap((p as u64 + 4096) as *mut _, 4096), 0);
            for len in 1..=72u64 {
                let mut dst = [0u8; 72];
                let at = UserPtr::<u8>::new(p as u64 + 4096 - len + 1);
                assert_eq!(at.read_slice(&mut dst[..len as usize]), Err(Fault), "length {len}");
                assert_eq!(UserPtr::<u8>::new(p as u64 + 4096 - len).read_slice(&mut dst[..len as usize]), Ok(()));
            }
            libc::munmap(p, 4096);
        }
    }

    #[test]
    fn access_ok_matches_task_size() {
        assert!(access_ok(USER_END - 8, 8));
        assert!(!access_ok(USER_END - 8, 9));
        assert!(!access_ok(u64::MAX, 2));
        assert!(access_ok(0, 0));
    }
}
