//! The C library's `exec` functions, each of which first lets the file I/O
//! in flight finish ([`raw::before_exec`]) and then calls the C library's
//! own function of the same name.
//!
//! The kernel lets AIO requests in flight finish when `exec` lets go of
//! the old program's memory. uaio's requests are carried by threads (and,
//! on io_uring, by the ring of the old program's descriptor table), which
//! `exec` ends at once: without the wait, writes `io_submit` accepted are
//! lost. The C library's `exec` functions call one another and `execve`
//! inside the library, where no interposed name is reached, so each one is
//! defined here. `execl`, `execle` and `execlp` take their arguments as a
//! variable list: a short trampoline (below) lays the list out as the
//! `argv` array it is and calls [`execl_listed`], [`execle_listed`] or
//! [`execlp_listed`].

use std::ffi::CStr;
use std::sync::atomic::AtomicUsize;

use libc::{c_char, c_int};
use uaio::raw;

use crate::{keep_errno, next, set_errno};

type Argv = *const *const c_char;

/// Defines a function `$name` that waits for the I/O in flight and then
/// calls the C library's function of the same name with its arguments;
/// `-1` with `ENOSYS` where the C library has none.
macro_rules! exec_fn {
    ($(#[$doc:meta])* $name:ident ( $($arg:ident : $t:ty),* )) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As for the C library's function: valid strings and
        /// NULL-terminated arrays of them.
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let _hold = keep_errno(raw::before_exec);
            let name = CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()).expect("one NUL");
            match next::<unsafe extern "C" fn($($t),*) -> c_int>(name, &NEXT) {
                // SAFETY: the caller's arguments, unchanged, to the
                // function they were meant for.
                Some(f) => unsafe { f($($arg),*) },
                None => {
                    set_errno(libc::ENOSYS);
                    -1
                }
            }
        }
    };
}

exec_fn!(
    /// `execve(path, argv, envp)`.
    execve(path: *const c_char, argv: Argv, envp: Argv)
);
exec_fn!(
    /// `execv(path, argv)`.
    execv(path: *const c_char, argv: Argv)
);
exec_fn!(
    /// `execvp(file, argv)`.
    execvp(file: *const c_char, argv: Argv)
);
exec_fn!(
    /// `execvpe(file, argv, envp)`.
    execvpe(file: *const c_char, argv: Argv, envp: Argv)
);
exec_fn!(
    /// `fexecve(fd, argv, envp)`.
    fexecve(fd: c_int, argv: Argv, envp: Argv)
);
exec_fn!(
    /// `execveat(dirfd, path, argv, envp, flags)`.
    execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int)
);

/// `execl(path, arg0, ..., NULL)` with the list as `argv`.
///
/// # Safety
/// `argv` is the caller's NULL-terminated list (see the trampoline).
pub unsafe extern "C" fn execl_listed(path: *const c_char, argv: Argv) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { execv(path, argv) }
}

/// `execlp(file, arg0, ..., NULL)` with the list as `argv`.
///
/// # Safety
/// As [`execl_listed`].
pub unsafe extern "C" fn execlp_listed(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { execvp(file, argv) }
}

/// `execle(path, arg0, ..., NULL, envp)` with the list as `argv`: the
/// environment is the argument after the NULL.
///
/// # Safety
/// As [`execl_listed`], with the environment after the NULL.
pub unsafe extern "C" fn execle_listed(path: *const c_char, argv: Argv) -> c_int {
    let mut n = 0;
    // SAFETY: the list is NULL-terminated and followed by `envp` (the
    // function's contract), all laid out as one array by the trampoline.
    let envp = unsafe {
        while !(*argv.add(n)).is_null() {
            n += 1;
        }
        *argv.add(n + 1) as Argv
    };
    // SAFETY: forwarded contract.
    unsafe { execve(path, argv, envp) }
}

/// Defines each listed name (`stub => "name@@NODE": target`) as a
/// trampoline that turns a variadic call `name(first, a0, a1, ...)` into
/// `target(first, &a0)`: on x86-64 the first five list arguments arrive in
/// `rsi`, `rdx`, `rcx`, `r8` and `r9` and the rest on the stack just above
/// the return address. The trampoline takes the return address off the
/// stack and pushes the five registers in its place, so that the whole
/// list lies in memory as one array; keeps the return address in `rbx`
/// (saved below the array) across the call; and afterwards restores `rbx`
/// and the stack as they were and returns to the caller.
macro_rules! export_listed {
    ($($stub:literal => $name:literal : $f:path),* $(,)?) => {
        std::arch::global_asm!(
            ".pushsection .text.uaio_exports,\"ax\",@progbits",
            $(
                concat!(".globl ", $stub),
                concat!(".type ", $stub, ",@function"),
                ".p2align 4",
                concat!($stub, ":"),
                "pop rax",
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "mov rsi, rsp",
                "push rbx",
                "mov rbx, rax",
                "call {}",
                "mov rcx, rbx",
                "pop rbx",
                "add rsp, 40",
                "jmp rcx",
                concat!(".size ", $stub, ", . - ", $stub),
                concat!(".symver ", $stub, ", ", $name),
            )*
            ".popsection",
            $(sym $f),*
        );
    };
}

export_listed! {
    "uaio_export_execl" => "execl@@GLIBC_2.2.5": execl_listed,
    "uaio_export_execle" => "execle@@GLIBC_2.2.5": execle_listed,
    "uaio_export_execlp" => "execlp@@GLIBC_2.2.5": execlp_listed,
}
