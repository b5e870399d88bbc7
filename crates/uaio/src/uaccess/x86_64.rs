//! The fault-recovering copy and the fault handler for x86-64.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

// Copies `rdx` bytes from `rsi` to `rdi`, sixteen at a time, then eight,
// then four (a lone `u32` field, such as the iocb's key, is one move), then
// the tail byte by byte. Returns 0; a fault anywhere between `begin` and
// `end` resumes at `fault`, which returns 1.
core::arch::global_asm!(
    ".pushsection .text.uaio_uaccess,\"ax\",@progbits",
    ".p2align 4",
    ".globl uaio_uaccess_copy",
    ".hidden uaio_uaccess_copy",
    ".type uaio_uaccess_copy,@function",
    "uaio_uaccess_copy:",
    "    xor eax, eax",
    ".globl uaio_uaccess_begin",
    ".hidden uaio_uaccess_begin",
    "uaio_uaccess_begin:",
    // 16 bytes at a time first: a later load of a field (8 bytes) or of
    // a pair of fields (16 bytes, as the compiler moves structures) is
    // then contained in one store and forwarded from it, instead of
    // stalling on a store-forwarding failure, as it did after 8-byte stores.
    "    cmp rdx, 16",
    "    jb 5f",
    "6:",
    "    movdqu xmm0, xmmword ptr [rsi]",
    "    movdqu xmmword ptr [rdi], xmm0",
    "    add rsi, 16",
    "    add rdi, 16",
    "    sub rdx, 16",
    "    cmp rdx, 16",
    "    jae 6b",
    "5:",
    "    cmp rdx, 8",
    "    jb 2f",
    "1:",
    "    mov rcx, qword ptr [rsi]",
    "    mov qword ptr [rdi], rcx",
    "    add rsi, 8",
    "    add rdi, 8",
    "    sub rdx, 8",
    "    cmp rdx, 8",
    "    jae 1b",
    "2:",
    "    cmp rdx, 4",
    "    jb 7f",
    "    mov ecx, dword ptr [rsi]",
    "    mov dword ptr [rdi], ecx",
    "    add rsi, 4",
    "    add rdi, 4",
    "    sub rdx, 4",
    "7:",
    "    test rdx, rdx",
    "    jz 3f",
    "4:",
    "    mov cl, byte ptr [rsi]",
    "    mov byte ptr [rdi], cl",
    "    inc rsi",
    "    inc rdi",
    "    dec rdx",
    "    jnz 4b",
    "3:",
    ".globl uaio_uaccess_end",
    ".hidden uaio_uaccess_end",
    "uaio_uaccess_end:",
    "    ret",
    ".globl uaio_uaccess_fault",
    ".hidden uaio_uaccess_fault",
    "uaio_uaccess_fault:",
    "    mov eax, 1",
    "    ret",
    ".size uaio_uaccess_copy, .-uaio_uaccess_copy",
    ".popsection",
);

extern "C" {
    /// Copies `len` bytes; returns 0, or non-zero when a fault stopped it.
    fn uaio_uaccess_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static uaio_uaccess_begin: u8;
    static uaio_uaccess_end: u8;
    static uaio_uaccess_fault: u8;
}

/// The handlers uaio forwards foreign faults to (index 0 for SIGSEGV,
/// 1 for SIGBUS): the one in place before ours, or one the application
/// installed over ours later (see [`super::enter`]). Kept
/// in atomics, since the signal handler reads them.
static NEXT_HANDLER: [AtomicUsize; 2] = [AtomicUsize::new(libc::SIG_DFL), AtomicUsize::new(libc::SIG_DFL)];
static NEXT_FLAGS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];
/// Its `sa_mask` (the kernel's 64 signals) and `sa_restorer`, as the
/// kernel would report them.
static NEXT_MASK: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static NEXT_RESTORER: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Written into the last word of a siginfo while uaio forwards that
/// fault: a handler that calls the one it replaced (ours) with the same
/// siginfo must not be sent the fault again. The kernel fills every
/// siginfo it delivers, padding included, so a fresh fault never carries
/// the mark, even where the program's handler left ours with
/// `siglongjmp` (a thread-local flag would then stay set for good).
const FORWARD_MARK: u32 = 0x75_61_69_6f;
/// Offset of that word: the end of the 128-byte siginfo, padding for
/// SIGSEGV and SIGBUS.
const MARK_AT: usize = 124;
const _: () = assert!(core::mem::size_of::<libc::siginfo_t>() == MARK_AT + 4);

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let uc = unsafe { &mut *(uctx as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let begin = core::ptr::addr_of!(uaio_uaccess_begin) as usize;
    let end = core::ptr::addr_of!(uaio_uaccess_end) as usize;
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // A fault (a signal some process sent has a code of 0 or below, and
    // must not fail the copy it happens to interrupt).
    if code > 0 && (begin..end).contains(&rip) {
        // Resume at the routine's failure exit, which reports the fault.
        let fault = core::ptr::addr_of!(uaio_uaccess_fault) as usize;
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = fault as i64;
        return;
    }
    // SAFETY: `info` is the 128-byte siginfo of this delivery (or the
    // same one handed on by a handler we forwarded to); its last word is
    // padding for these signals.
    let mark = unsafe { &mut *(info as *mut u8).add(MARK_AT).cast::<u32>() };
    if code <= 0 && *mark != FORWARD_MARK && super::not_ours_to_take() {
        // Sent by a process to the process, and taken by one of uaio's
        // threads (the program's may all block it): blocked here from now
        // on, and sent to the process again, for a program's thread or to
        // stay pending as on the kernel.
        let bit = 1u64 << (sig - 1);
        let sys = crate::sys::signal_syscall;
        sys(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK as usize, &bit as *const u64 as usize, 0, 8);
        let pid = std::process::id() as usize;
        // With its siginfo where the kernel allows it (a thread other than
        // the first may not queue a code of 0 or more, such as `kill`'s),
        // else as `kill` from this process would.
        if sys(libc::SYS_rt_sigqueueinfo, pid, sig as usize, info as usize, 0) < 0 {
            sys(libc::SYS_kill, pid, sig as usize, 0, 0);
        }
        // SAFETY: the mask the kernel puts back when the handler returns.
        unsafe { libc::sigaddset(&mut uc.uc_sigmask, sig) };
        return;
    }
    if code <= 0 && *mark != FORWARD_MARK {
        // Sent by a process (`kill`, `tgkill`, `sigqueue`), not raised
        // by a fault: the program's disposition decides, as it would have
        // without uaio's handler in front.
        match NEXT_HANDLER[index(sig)].load(Ordering::SeqCst) {
            libc::SIG_IGN => return,
            libc::SIG_DFL => {
                // The default action (the process ends, with a core dump
                // where allowed): the same signal again, with its siginfo,
                // once the action is the default. Our handler runs with
                // SA_NODEFER, so it is taken as soon as it is queued.
                set_default(sig);
                let (pid, tid) = (std::process::id() as usize, crate::sys::gettid() as usize);
                crate::sys::signal_syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig as usize, info as usize);
                return;
            }
            _ => {}
        }
    }
    if *mark == FORWARD_MARK {
        // Sent back to us by the handler we forwarded to: end the loop
        // with the default action.
        set_default(sig);
        return;
    }
    *mark = FORWARD_MARK;
    forward(sig, info, uctx);
    *mark = 0;
}

/// The kernel's `struct sigaction` on x86-64, for `rt_sigaction` made
/// directly (the drop-in library defines `sigaction` itself, and a call
/// through that name would only change what it reports).
#[repr(C)]
#[derive(Default)]
struct KernelAction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The kernel's action for `sig` (`None` if the query fails).
fn kernel_action(sig: libc::c_int) -> Option<KernelAction> {
    let mut k = KernelAction::default();
    let r = crate::sys::signal_syscall(libc::SYS_rt_sigaction, sig as usize, 0, &mut k as *mut _ as usize, 8);
    (r == 0).then_some(k)
}

fn set_default(sig: libc::c_int) {
    // Put the default action back; the faulting instruction runs again
    // and the process gets the default treatment with the real state.
    let dfl = KernelAction::default();
    crate::sys::signal_syscall(libc::SYS_rt_sigaction, sig as usize, &dfl as *const _ as usize, 0, 8);
}

/// Before an `exec`: the new program keeps an ignored `SIGSEGV` or
/// `SIGBUS` (the kernel resets handlers to the default, and keeps
/// `SIG_IGN`), so where the program's action is `SIG_IGN` the kernel's
/// becomes it again. Raw system calls only: it may run in a `vfork` child
/// or a signal handler.
pub(super) fn before_exec() {
    let ours = on_fault as *const () as usize;
    for (i, &sig) in SIGNALS.iter().enumerate() {
        if NEXT_HANDLER[i].load(Ordering::SeqCst) == libc::SIG_IGN
            && kernel_action(sig).is_some_and(|k| k.handler == ours)
        {
            let ign = KernelAction { handler: libc::SIG_IGN, ..KernelAction::default() };
            crate::sys::signal_syscall(libc::SYS_rt_sigaction, sig as usize, &ign as *const _ as usize, 0, 8);
        }
    }
}

/// The C library's `sigaction` (not the drop-in's, which defines the
/// name): the next definition after this object, else the one this object
/// links to (then the drop-in's is not in front of it).
fn c_sigaction() -> crate::sys::deferral::RealSigaction {
    static F: AtomicUsize = AtomicUsize::new(0);
    let mut f = F.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a valid, NUL-terminated name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"sigaction".as_ptr()) } as usize;
        if f == 0 {
            f = libc::sigaction as *const () as usize;
        }
        F.store(f, Ordering::Release);
    }
    // SAFETY: a `sigaction` function, of this type.
    unsafe { core::mem::transmute::<usize, crate::sys::deferral::RealSigaction>(f) }
}

/// uaio's handler for `sig`, on the alternate stack only if the program's
/// action (where faults that are not uaio's go) asks for it: a program
/// whose alternate stack is too small for a signal frame, or whose handler
/// must not run there, sees none of it (the kernel's `EFAULT` involves no
/// signal at all).
fn our_action(i: usize) -> libc::sigaction {
    // SAFETY: a plain C struct, all zeroes valid.
    let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
    act.sa_sigaction = on_fault as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | (NEXT_FLAGS[i].load(Ordering::SeqCst) & libc::SA_ONSTACK);
    act
}

/// The slot of `sig` in the `NEXT_*` tables.
fn index(sig: libc::c_int) -> usize {
    if sig == libc::SIGSEGV {
        0
    } else {
        1
    }
}

fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let idx = index(sig);
    let h = NEXT_HANDLER[idx].load(Ordering::SeqCst);
    let flags = NEXT_FLAGS[idx].load(Ordering::SeqCst);
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        set_default(sig);
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        // Runs once: the kernel would have put the default action back
        // on delivery (keeping the flags and the mask).
        NEXT_HANDLER[idx].store(libc::SIG_DFL, Ordering::SeqCst);
    }
    // The handler's own mask while it runs, as the kernel would have set
    // it: its `sa_mask`, and the signal unless `SA_NODEFER`.
    let mut block = NEXT_MASK[idx].load(Ordering::SeqCst);
    if flags & libc::SA_NODEFER == 0 {
        block |= 1 << (sig - 1);
    }
    let mut before = 0u64;
    let sys = crate::sys::signal_syscall;
    if block != 0 {
        let set = &block as *const u64 as usize;
        sys(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK as usize, set, &mut before as *mut u64 as usize, 8);
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the handler was installed with SA_SIGINFO, so it has
        // this signature; we call it as the kernel would have.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { core::mem::transmute(h) };
        super::in_handler(|| f(sig, info, uctx));
    } else {
        // SAFETY: a plain handler takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(h) };
        super::in_handler(|| f(sig));
    }
    if block != 0 {
        sys(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, &before as *const u64 as usize, 0, 8);
    }
}

/// Puts uaio's handler in place for SIGSEGV and SIGBUS unless it is
/// there already. Whatever handler it displaces (the one from before
/// uaio, or one the application installed later) receives the faults
/// that are not uaio's.
pub(super) fn install() {
    let ours = on_fault as *const () as usize;
    let real = c_sigaction();
    for (i, &sig) in SIGNALS.iter().enumerate() {
        if kernel_action(sig).is_some_and(|k| k.handler == ours) {
            continue;
        }
        // SAFETY: plain C structs, all zeroes valid.
        let mut was: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: a query into a local.
        if unsafe { real(sig, core::ptr::null(), &mut was) } != 0 {
            continue;
        }
        // The flags of ours follow the program's action.
        record_next(i, &was);
        let act = our_action(i);
        // What goes next is what this very call displaces (another thread
        // may change the action between the look and here).
        // SAFETY: a valid action, and a local for the old one.
        if unsafe { real(sig, &act, &mut was) } == 0 && was.sa_sigaction != ours {
            record_next(i, &was);
        }
    }
}

/// Keeps `a` as the action faults that are not uaio's go to (slot `i`).
fn record_next(i: usize, a: &libc::sigaction) {
    // SAFETY: the kernel's part of the set is its first 8 bytes.
    let mask = unsafe { core::ptr::read_unaligned((&a.sa_mask as *const libc::sigset_t).cast::<u64>()) };
    NEXT_MASK[i].store(mask, Ordering::SeqCst);
    NEXT_RESTORER[i].store(a.sa_restorer.map_or(0, |f| f as usize), Ordering::SeqCst);
    NEXT_FLAGS[i].store(a.sa_flags, Ordering::SeqCst);
    NEXT_HANDLER[i].store(a.sa_sigaction, Ordering::SeqCst);
}

/// `sigaction` for `SIGSEGV` and `SIGBUS` through the drop-in library
/// (`real` is the C library's): while uaio's handler is in place, the
/// program's action is the one faults that are not uaio's go to, so a
/// query reports it and a change replaces it, leaving uaio's handler in
/// front; otherwise the call goes to the C library unchanged.
///
/// # Safety
/// As `sigaction(2)`: `act` and `old` null or valid.
pub(super) unsafe fn set_fault_action(
    sig: libc::c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
    real: crate::sys::deferral::RealSigaction,
) -> libc::c_int {
    let ours = on_fault as *const () as usize;
    // SAFETY: a plain C struct, all zeroes valid.
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a query into a local.
    if unsafe { real(sig, core::ptr::null(), &mut cur) } != 0 || cur.sa_sigaction != ours {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(sig, act, old) };
    }
    let i = index(sig);
    // SAFETY: as above.
    let mut was: libc::sigaction = unsafe { core::mem::zeroed() };
    was.sa_sigaction = NEXT_HANDLER[i].load(Ordering::SeqCst);
    was.sa_flags = NEXT_FLAGS[i].load(Ordering::SeqCst);
    let mask = NEXT_MASK[i].load(Ordering::SeqCst);
    // SAFETY: the kernel's part of the set is its first 8 bytes.
    unsafe { core::ptr::write_unaligned((&mut was.sa_mask as *mut libc::sigset_t).cast::<u64>(), mask) };
    let restorer = NEXT_RESTORER[i].load(Ordering::SeqCst);
    // SAFETY: 0 or the address of the restorer a sigaction call reported.
    was.sa_restorer = (restorer != 0).then(|| unsafe { core::mem::transmute::<usize, extern "C" fn()>(restorer) });
    if !act.is_null() {
        // SAFETY: the caller vouches for `act`.
        let mut a = unsafe { *act };
        // As the kernel would keep it: the flags it knows, with the C
        // library's restorer (which it adds to every action it installs).
        a.sa_flags = (a.sa_flags & KNOWN_FLAGS) | SA_RESTORER;
        a.sa_restorer = cur.sa_restorer;
        // The kernel never blocks SIGKILL and SIGSTOP.
        // SAFETY: the first 8 bytes of the set, as above.
        unsafe {
            let m = (&mut a.sa_mask as *mut libc::sigset_t).cast::<u64>();
            let v = core::ptr::read_unaligned(m) & !(1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1));
            core::ptr::write_unaligned(m, v);
        }
        let onstack = (a.sa_flags ^ was.sa_flags) & libc::SA_ONSTACK != 0;
        record_next(i, &a);
        if onstack {
            // uaio's handler takes the alternate stack as the program's does.
            let act = our_action(i);
            // SAFETY: a valid action.
            unsafe { real(sig, &act, core::ptr::null_mut()) };
        }
    }
    if !old.is_null() {
        // SAFETY: the caller vouches for `old`.
        unsafe { *old = was };
    }
    0
}

/// x86-64's flag for an action with a return trampoline of its own.
const SA_RESTORER: libc::c_int = 0x0400_0000;

/// The `sa_flags` bits the kernel keeps (`UAPI_SA_FLAGS` and
/// `SA_RESTORER`); the others are dropped from what it reports.
const KNOWN_FLAGS: libc::c_int = libc::SA_NOCLDSTOP
    | libc::SA_NOCLDWAIT
    | libc::SA_SIGINFO
    | libc::SA_ONSTACK
    | libc::SA_RESTART
    | libc::SA_NODEFER
    | libc::SA_RESETHAND
    | SA_RESTORER
    | 0x0000_0800; // SA_EXPOSE_TAGBITS

/// # Safety
/// `dst..dst+len` and `src..src+len` may be unmapped but must not overlap
/// memory Rust code holds references to (other than through raw pointers).
#[inline]
pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> usize {
    // SAFETY: forwarded contract; faults are recovered by `on_fault`.
    unsafe { uaio_uaccess_copy(dst, src, len) }
}
