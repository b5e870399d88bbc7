//! The C face of uaio: the functions of libaio (`io_setup`, `io_submit`,
//! `io_getevents`, `io_pgetevents`, `io_cancel`, `io_destroy`, and the
//! `io_queue_*` helpers) with libaio's symbol versions, a `syscall()`
//! that sends the AIO system call numbers to uaio, and an `_exit` and
//! `exec` functions (`exec.rs`) that let the I/O in flight finish first, as
//! the kernel does, `sigaction` and `signal` (`signals.rs`), which hold
//! the program's signal handlers back while a thread is inside a uaio
//! call, as the kernel runs them only between system calls, and `close`,
//! `close_range`, `closefrom`, `dup2` and `dup3` (`fds.rs`), which leave
//! uaio's own descriptors alone.
//!
//! `cargo build` links this crate as a cdylib, `libaio.so` (the `uaio`
//! command carries it and installs it as `libaio.so.1` and
//! `libaio.so.1t64`). `build.rs` gives it the soname `libaio.so.1` and
//! `libaio.map`, which defines the version nodes `LIBAIO_0.1`, `LIBAIO_0.4`
//! and `LIBAIO_0.5` (and `GLIBC_2.2.5`, `GLIBC_2.9`, `GLIBC_2.11` and
//! `GLIBC_2.34` for the C library's functions defined here). No Rust function is
//! exported under its own name: the `global_asm!` at the end of this file
//! binds every exported name, with its version, to a function here. Three names exist in two versions
//! (`io_cancel`, `io_getevents`, `io_queue_wait`: the old ABI at
//! `LIBAIO_0.1`, the current one as default at `LIBAIO_0.4`).
//!
//! The libaio functions return a negative errno and leave `errno` alone, as
//! libaio does; `syscall()` keeps the kernel's `-1` and `errno` convention.
//! No constructor runs and no thread starts until the first `io_setup`.
#![deny(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_long, c_uint, c_ulong, c_void, timespec};
use uaio::abi::{aio_context_t, aio_sigset, io_event, iocb};
use uaio::raw;

mod exec;
mod fds;
mod signals;

/// libaio's completion callback type (`io_callback_t`).
pub type IoCallback = unsafe extern "C" fn(ctx: aio_context_t, iocb: *mut iocb, res: c_long, res2: c_long);

/// `io_setup(maxevents, ctxp)`: 0 or a negative errno.
///
/// # Safety
/// `ctxp` as for the system call.
pub unsafe extern "C" fn io_setup(maxevents: c_int, ctxp: *mut aio_context_t) -> c_int {
    fds::check_interposed();
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { raw::io_setup(maxevents as u32, ctxp) as c_int })
}

/// `io_destroy(ctx)`: 0 or a negative errno.
///
/// # Safety
/// None beyond the system call's.
pub unsafe extern "C" fn io_destroy(ctx: aio_context_t) -> c_int {
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { raw::io_destroy(ctx) as c_int })
}

/// `io_submit(ctx, nr, iocbs)`: count submitted or a negative errno.
///
/// # Safety
/// As for the system call.
pub unsafe extern "C" fn io_submit(ctx: aio_context_t, nr: c_long, iocbs: *mut *mut iocb) -> c_int {
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { raw::io_submit(ctx, nr, iocbs) as c_int })
}

/// `io_cancel(ctx, iocb, evt)`: a negative errno (`-EINPROGRESS` when the
/// cancellation started).
///
/// # Safety
/// As for the system call.
pub unsafe extern "C" fn io_cancel(ctx: aio_context_t, iocb: *mut iocb, evt: *mut io_event) -> c_int {
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { raw::io_cancel(ctx, iocb, evt) as c_int })
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)`: count or a negative errno.
///
/// # Safety
/// As for the system call.
pub unsafe extern "C" fn io_getevents(
    ctx: aio_context_t,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
) -> c_int {
    if raw::libaio_empty_poll(ctx, timeout) {
        return 0;
    }
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { raw::io_getevents(ctx, min_nr, nr, events, timeout) as c_int })
}

/// `io_pgetevents(ctx, min_nr, nr, events, timeout, sigmask)`: count or a
/// negative errno; `sigmask` (may be null) is in force while waiting.
///
/// # Safety
/// As for the system call; `sigmask` null or a valid `sigset_t`.
pub unsafe extern "C" fn io_pgetevents(
    ctx: aio_context_t,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    if raw::libaio_empty_poll(ctx, timeout) {
        return 0;
    }
    let sig = aio_sigset { sigmask: sigmask.cast(), sigsetsize: 8 };
    // SAFETY: forwarded contract; `sig` lives across the call.
    keep_errno(|| unsafe { raw::io_pgetevents(ctx, min_nr, nr, events, timeout, &sig) as c_int })
}

/// `io_queue_init(maxevents, ctxp)`: `io_setup` for a positive count.
///
/// # Safety
/// As [`io_setup`].
pub unsafe extern "C" fn io_queue_init(maxevents: c_int, ctxp: *mut aio_context_t) -> c_int {
    if maxevents <= 0 {
        return -libc::EINVAL;
    }
    if !ctxp.is_null() {
        // SAFETY: libaio clears the handle before creating the context; a bad
        // pointer faults in the application, as it would with libaio.
        unsafe { ctxp.write(0) };
    }
    // SAFETY: forwarded contract.
    unsafe { io_setup(maxevents, ctxp) }
}

/// `io_queue_release(ctx)`: `io_destroy`.
///
/// # Safety
/// As [`io_destroy`].
pub unsafe extern "C" fn io_queue_release(ctx: aio_context_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { io_destroy(ctx) }
}

/// `io_queue_wait(ctx, timeout)`: waits for nothing, as libaio does
/// (`io_getevents(ctx, 0, 0, NULL, timeout)`).
///
/// # Safety
/// As [`io_getevents`].
pub unsafe extern "C" fn io_queue_wait(ctx: aio_context_t, timeout: *mut timespec) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { io_getevents(ctx, 0, 0, std::ptr::null_mut(), timeout) }
}

/// `io_queue_run(ctx)`: reaps what is ready (without waiting) and calls
/// each iocb's callback, stored in `aio_data` by libaio's `io_set_callback`.
///
/// # Safety
/// Every completed iocb's `aio_data` must be an [`IoCallback`].
pub unsafe extern "C" fn io_queue_run(ctx: aio_context_t) -> c_int {
    let mut evs = [io_event::default(); 32];
    let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        // SAFETY: 32 events of room, a valid timeout.
        let r = unsafe { io_getevents(ctx, 1, 32, evs.as_mut_ptr(), &mut ts) };
        if r <= 0 {
            return r;
        }
        for e in &evs[..r as usize] {
            if e.data != 0 {
                // SAFETY: per the contract, data holds the callback.
                let cb: IoCallback = unsafe { std::mem::transmute::<usize, IoCallback>(e.data as usize) };
                // SAFETY: calling the application's callback as libaio would.
                unsafe { cb(ctx, e.obj as *mut iocb, e.res as c_long, e.res2 as c_long) };
            }
        }
        if r < 32 {
            return 0;
        }
    }
}

/// Old-ABI `io_cancel@LIBAIO_0.1(ctx, iocb)`.
///
/// # Safety
/// As [`io_cancel`].
pub unsafe extern "C" fn io_cancel_0_1(ctx: aio_context_t, iocb: *mut iocb) -> c_int {
    let mut ev = io_event::default();
    // SAFETY: forwarded contract.
    unsafe { io_cancel(ctx, iocb, &mut ev) }
}

/// Old-ABI `io_getevents@LIBAIO_0.1(ctx, nr, events, timeout)`: waits for
/// at least one event.
///
/// # Safety
/// As [`io_getevents`].
pub unsafe extern "C" fn io_getevents_0_1(
    ctx: aio_context_t,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> c_int {
    let mut ts = if timeout.is_null() {
        None
    } else {
        // SAFETY: a caller-provided timeout, read once as libaio does.
        Some(unsafe { timeout.read() })
    };
    let p = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut timespec);
    // SAFETY: forwarded contract.
    unsafe { io_getevents(ctx, 1, nr, events, p) }
}

/// Old-ABI `io_queue_wait@LIBAIO_0.1(ctx, timeout)`.
///
/// # Safety
/// As [`io_getevents`].
pub unsafe extern "C" fn io_queue_wait_0_1(ctx: aio_context_t, timeout: *const timespec) -> c_int {
    // SAFETY: forwarded contract; the kernel-style call only reads timeout.
    unsafe { io_getevents(ctx, 0, 0, std::ptr::null_mut(), timeout as *mut timespec) }
}

fn errno() -> c_int {
    // SAFETY: errno is thread-local storage of the C library.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` with `errno` restored afterwards: libaio's functions return
/// negative errno values and leave `errno` as they found it, while uaio's
/// own system calls may set it.
fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let r = f();
    set_errno(saved);
    r
}

/// The address of the next definition of `name` after this library (the
/// C library's), looked up once and kept in `cache`.
fn next_definition(name: &std::ffi::CStr, cache: &AtomicUsize) -> Option<*mut c_void> {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a valid, NUL-terminated name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        cache.store(f, Ordering::Release);
    }
    (f != 0).then_some(f as *mut c_void)
}

/// The C library's function `name`, of type `F` (a function pointer type
/// matching its C declaration), looked up once in `cache`.
fn next<F: Copy>(name: &std::ffi::CStr, cache: &AtomicUsize) -> Option<F> {
    let f = next_definition(name, cache)?;
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: `F` is a function pointer type (every caller names one with
    // the C declaration of `name`), of a pointer's size, and `f` is that
    // function's address.
    Some(unsafe { std::mem::transmute_copy::<usize, F>(&(f as usize)) })
}

static REAL_SYSCALL: AtomicUsize = AtomicUsize::new(0);

type SyscallFn = unsafe extern "C" fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long;

fn real_syscall() -> Option<SyscallFn> {
    let f = next_definition(c"syscall", &REAL_SYSCALL)?;
    // SAFETY: the C library's syscall(); passing six longs is how every
    // caller's variadic arguments arrive on this ABI.
    Some(unsafe { std::mem::transmute::<*mut c_void, SyscallFn>(f) })
}

fn kernel_convention(r: i64) -> c_long {
    if r < 0 {
        set_errno((-r) as c_int);
        -1
    } else {
        r as c_long
    }
}

/// `syscall(2)`: the AIO numbers are served by uaio (with `-1`/`errno`),
/// every other number goes to the C library's `syscall` with all six
/// arguments unchanged.
///
/// # Safety
/// As for the system call requested.
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let saved = errno();
    // SAFETY: in every arm the arguments are the caller's, with the system
    // call's meaning (this function's contract); uaio's raw functions check
    // every pointer, and other numbers go unchanged to the C library.
    let r = unsafe {
        match n {
            libc::SYS_io_setup => {
                fds::check_interposed();
                raw::io_setup(a1 as u32, a2 as *mut aio_context_t)
            }
            libc::SYS_io_destroy => raw::io_destroy(a1 as aio_context_t),
            libc::SYS_io_submit => raw::io_submit(a1 as aio_context_t, a2, a3 as *mut *mut iocb),
            libc::SYS_io_cancel => raw::io_cancel(a1 as aio_context_t, a2 as *mut iocb, a3 as *mut io_event),
            libc::SYS_io_getevents => {
                raw::io_getevents(a1 as aio_context_t, a2, a3, a4 as *mut io_event, a5 as *mut timespec)
            }
            libc::SYS_exit => {
                // The thread ends without its thread-local destructors.
                raw::thread_leaving();
                set_errno(saved);
                return match real_syscall() {
                    Some(f) => f(n, a1, a2, a3, a4, a5, a6),
                    None => kernel_convention(-(libc::ENOSYS as i64)),
                };
            }
            libc::SYS_exit_group | libc::SYS_execve | libc::SYS_execveat => {
                let _hold = if n == libc::SYS_exit_group {
                    raw::before_exit();
                    None
                } else {
                    Some(raw::before_exec())
                };
                set_errno(saved);
                return match real_syscall() {
                    Some(f) => f(n, a1, a2, a3, a4, a5, a6),
                    None => kernel_convention(-(libc::ENOSYS as i64)),
                };
            }
            // Descriptor calls that must leave uaio's own alone (fds.rs).
            libc::SYS_close => return fds::close(a1 as c_int) as c_long,
            libc::SYS_close_range => return fds::close_range(a1 as c_uint, a2 as c_uint, a3 as c_int) as c_long,
            libc::SYS_dup2 => return fds::dup2(a1 as c_int, a2 as c_int) as c_long,
            libc::SYS_dup3 => return fds::dup3(a1 as c_int, a2 as c_int, a3 as c_int) as c_long,
            libc::SYS_fcntl => return fds::fcntl(a1 as c_int, a2 as c_int, a3 as c_ulong) as c_long,
            SYS_IO_PGETEVENTS => raw::io_pgetevents(
                a1 as aio_context_t,
                a2,
                a3,
                a4 as *mut io_event,
                a5 as *mut timespec,
                a6 as *const aio_sigset,
            ),
            _ => {
                return match real_syscall() {
                    Some(f) => f(n, a1, a2, a3, a4, a5, a6),
                    None => kernel_convention(-(libc::ENOSYS as i64)),
                };
            }
        }
    };
    set_errno(saved);
    kernel_convention(r)
}

/// `io_pgetevents` system call number (x86-64).
const SYS_IO_PGETEVENTS: c_long = 333;

/// `_exit(2)` and `_Exit(3)`: the file I/O in flight finishes first
/// ([`raw::before_exit`]), as the kernel lets it finish before a process is
/// gone (`exit` runs uaio's `atexit` hook instead); then the process ends
/// with the `exit_group` system call, as the C library's `_exit` does.
///
/// # Safety
/// Ends the process.
pub unsafe extern "C" fn exit_now(status: c_int) -> ! {
    raw::before_exit();
    // The system call itself: this library's own `_exit` and `syscall`
    // are what a call through the C library's names would reach.
    // SAFETY: exit_group(2) takes one integer and does not return.
    unsafe {
        std::arch::asm!(
            "syscall",
            in("rax") libc::SYS_exit_group,
            in("rdi") status as c_long,
            options(noreturn, nostack)
        )
    }
}

/// `pthread_exit(3)`: the main thread's ends without thread-local
/// destructors (the C library runs them for the other threads only), so
/// uaio is told first ([`raw::thread_leaving`]); then the C library's.
///
/// # Safety
/// Ends the calling thread.
pub unsafe extern "C" fn pthread_exit(retval: *mut c_void) -> ! {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // SAFETY: gettid(2) and getpid(2) take no arguments and cannot fail.
    if unsafe { libc::gettid() == libc::getpid() } {
        raw::thread_leaving();
    }
    match next::<unsafe extern "C" fn(*mut c_void) -> !>(c"pthread_exit", &NEXT) {
        // SAFETY: the C library's pthread_exit, with the caller's value.
        Some(f) => unsafe { f(retval) },
        // No C library after this one: the thread ends by the system call.
        // SAFETY: exit(2) of the calling thread takes one integer.
        None => unsafe {
            std::arch::asm!("syscall", in("rax") libc::SYS_exit, in("rdi") 0, options(noreturn, nostack))
        },
    }
}

/// Defines each exported name as a jump to the function that serves it.
///
/// `stub => "name@@NODE" (default version) or "name@NODE" (old version):
/// function`. The stub is a global symbol (`libaio.map` makes it local, so
/// only the versioned name is exported); `.symver` gives it the exported
/// name and version. A jump keeps the caller's registers and stack as they
/// are, so the function receives the C arguments unchanged.
macro_rules! export {
    ($($stub:literal => $name:literal : $f:path),* ; $($node_stub:literal => $node:literal),* $(,)?) => {
        std::arch::global_asm!(
            ".pushsection .text.uaio_exports,\"ax\",@progbits",
            $(
                concat!(".globl ", $stub),
                concat!(".type ", $stub, ",@function"),
                concat!(".p2align 4"),
                concat!($stub, ":"),
                "jmp {}",
                concat!(".size ", $stub, ", . - ", $stub),
                concat!(".symver ", $stub, ", ", $name),
            )*
            ".popsection",
            // Each version node's name as an absolute symbol of value 0 in
            // its own node, as GNU ld writes them for a version script
            // (`objdump -T` of libaio lists them).
            $(
                concat!(".globl ", $node_stub),
                concat!(".set ", $node_stub, ", 0"),
                concat!(".symver ", $node_stub, ", ", $node, "@@", $node),
                concat!(".type \"", $node, "@@", $node, "\",@object"),
            )*
            $(sym $f),*
        );
    };
}

export! {
    "uaio_export_io_setup" => "io_setup@@LIBAIO_0.4": io_setup,
    "uaio_export_io_destroy" => "io_destroy@@LIBAIO_0.4": io_destroy,
    "uaio_export_io_submit" => "io_submit@@LIBAIO_0.1": io_submit,
    "uaio_export_io_cancel" => "io_cancel@@LIBAIO_0.4": io_cancel,
    "uaio_export_io_cancel_0_1" => "io_cancel@LIBAIO_0.1": io_cancel_0_1,
    "uaio_export_io_getevents" => "io_getevents@@LIBAIO_0.4": io_getevents,
    "uaio_export_io_getevents_0_1" => "io_getevents@LIBAIO_0.1": io_getevents_0_1,
    "uaio_export_io_pgetevents" => "io_pgetevents@@LIBAIO_0.5": io_pgetevents,
    "uaio_export_io_queue_init" => "io_queue_init@@LIBAIO_0.1": io_queue_init,
    "uaio_export_io_queue_release" => "io_queue_release@@LIBAIO_0.1": io_queue_release,
    "uaio_export_io_queue_run" => "io_queue_run@@LIBAIO_0.1": io_queue_run,
    "uaio_export_io_queue_wait" => "io_queue_wait@@LIBAIO_0.4": io_queue_wait,
    "uaio_export_io_queue_wait_0_1" => "io_queue_wait@LIBAIO_0.1": io_queue_wait_0_1,
    "uaio_export_syscall" => "syscall@@GLIBC_2.2.5": syscall,
    "uaio_export__exit" => "_exit@@GLIBC_2.2.5": exit_now,
    "uaio_export__Exit" => "_Exit@@GLIBC_2.2.5": exit_now,
    "uaio_export_execve" => "execve@@GLIBC_2.2.5": exec::execve,
    "uaio_export_execv" => "execv@@GLIBC_2.2.5": exec::execv,
    "uaio_export_execvp" => "execvp@@GLIBC_2.2.5": exec::execvp,
    "uaio_export_execvpe" => "execvpe@@GLIBC_2.11": exec::execvpe,
    "uaio_export_fexecve" => "fexecve@@GLIBC_2.2.5": exec::fexecve,
    "uaio_export_execveat" => "execveat@@GLIBC_2.34": exec::execveat,
    "uaio_export_sigaction" => "sigaction@@GLIBC_2.2.5": signals::sigaction,
    "uaio_export___sigaction" => "__sigaction@@GLIBC_2.2.5": signals::sigaction,
    "uaio_export_signal" => "signal@@GLIBC_2.2.5": signals::signal,
    "uaio_export_bsd_signal" => "bsd_signal@@GLIBC_2.2.5": signals::signal,
    "uaio_export_ssignal" => "ssignal@@GLIBC_2.2.5": signals::signal,
    "uaio_export_sysv_signal" => "sysv_signal@@GLIBC_2.2.5": signals::sysv_signal,
    "uaio_export___sysv_signal" => "__sysv_signal@@GLIBC_2.2.5": signals::sysv_signal,
    "uaio_export_sigset" => "sigset@@GLIBC_2.2.5": signals::sigset,
    "uaio_export_close" => "close@@GLIBC_2.2.5": fds::close,
    "uaio_export___close" => "__close@@GLIBC_2.2.5": fds::close,
    "uaio_export_dup2" => "dup2@@GLIBC_2.2.5": fds::dup2,
    "uaio_export___dup2" => "__dup2@@GLIBC_2.2.5": fds::dup2,
    "uaio_export_fclose" => "fclose@@GLIBC_2.2.5": fds::fclose,
    "uaio_export_freopen" => "freopen@@GLIBC_2.2.5": fds::freopen,
    "uaio_export_freopen64" => "freopen64@@GLIBC_2.2.5": fds::freopen64,
    "uaio_export_dup3" => "dup3@@GLIBC_2.9": fds::dup3,
    "uaio_export_fcntl" => "fcntl@@GLIBC_2.2.5": fds::fcntl,
    "uaio_export___fcntl" => "__fcntl@@GLIBC_2.2.5": fds::fcntl,
    "uaio_export_fcntl64" => "fcntl64@@GLIBC_2.28": fds::fcntl64,
    "uaio_export_close_range" => "close_range@@GLIBC_2.34": fds::close_range,
    "uaio_export_closefrom" => "closefrom@@GLIBC_2.34": fds::closefrom,
    "uaio_export_pthread_exit" => "pthread_exit@@GLIBC_2.34": pthread_exit,
    "uaio_export_pthread_exit_2_2_5" => "pthread_exit@GLIBC_2.2.5": pthread_exit;
    "uaio_node_0_1" => "LIBAIO_0.1",
    "uaio_node_0_4" => "LIBAIO_0.4",
    "uaio_node_0_5" => "LIBAIO_0.5",
    "uaio_node_glibc" => "GLIBC_2.2.5",
    "uaio_node_glibc_2_9" => "GLIBC_2.9",
    "uaio_node_glibc_2_11" => "GLIBC_2.11",
    "uaio_node_glibc_2_28" => "GLIBC_2.28",
    "uaio_node_glibc_2_34" => "GLIBC_2.34",
}
