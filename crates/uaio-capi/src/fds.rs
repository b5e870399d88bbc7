//! The C library's `close`, `close_range`, `closefrom`, `dup2` and `dup3`,
//! which leave uaio's own descriptors alone ([`raw::is_own_fd`]).
//!
//! A kernel AIO context gives the program no descriptor; uaio's contexts
//! hold some (an io_uring instance, eventfds, duplicates of the program's
//! files for requests in flight), at high numbers the program never
//! received. A program may close every number it does not know of (a
//! daemon's `close_range(3, ~0U, 0)` or a loop of `close`), or put a file
//! of its own on a number it picked (`dup2`): on the kernel its contexts
//! go on working. So here, as the kernel would answer for a number that
//! names nothing of the program's:
//! - `close` of one of uaio's numbers fails with `EBADF` and closes
//!   nothing;
//! - `close_range` and `closefrom` close every number of the range except
//!   uaio's;
//! - `dup2` and `dup3` from one of uaio's numbers fail with `EBADF`; onto
//!   one of them they fail with `EBUSY` (the kernel's answer for a number
//!   another thread is putting a file on), because uaio's descriptor
//!   cannot be moved while its threads use the number.
//!
//! The same system calls made through `syscall()` come here too. uaio's
//! own closes of its descriptors pass: it stops counting a number as its
//! own before it closes it. And none of these runs while uaio is making a
//! descriptor of its own ([`raw::program_closing`]): uaio opens it at a
//! low number, then moves it above its floor and marks it, and a close or
//! `dup2` of the program's between the two would take it away.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use uaio::raw;

use crate::{next, real_syscall, set_errno};

/// `close_range` flags the kernel knows (`CLOSE_RANGE_UNSHARE`,
/// `CLOSE_RANGE_CLOEXEC`).
const CLOSE_RANGE_UNSHARE: c_int = 1 << 1;
const CLOSE_RANGE_CLOEXEC: c_int = 1 << 2;

fn fail(e: c_int) -> c_int {
    set_errno(e);
    -1
}

/// The system call `n` with these arguments, through the C library's
/// `syscall` (never uaio's, which sends these numbers here).
fn sys(n: c_long, a: c_long, b: c_long, c: c_long) -> c_int {
    match real_syscall() {
        // SAFETY: a system call on descriptor numbers only.
        Some(f) => unsafe { f(n, a, b, c, 0, 0, 0) as c_int },
        None => fail(libc::ENOSYS),
    }
}

/// The C library's `close`.
fn real_close(fd: c_int) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    match next::<unsafe extern "C" fn(c_int) -> c_int>(c"close", &NEXT) {
        // SAFETY: the C library's close of a number.
        Some(f) => unsafe { f(fd) },
        None => sys(libc::SYS_close, fd as c_long, 0, 0),
    }
}

/// The `close_range` system call (the C library has it from 2.34).
fn real_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    sys(libc::SYS_close_range, first as c_long, last as c_long, flags as c_long)
}

/// Tells uaio, at the first `io_setup`, whether the program's `close`,
/// `close_range`, `closefrom`, `dup2`, `dup3` and `syscall` are this
/// library's (first in the program's symbol lookup, as for a program linked
/// with `-laio`, and not a library opened later with `dlopen`): uaio then
/// sees every change of what a descriptor number names and keeps what it
/// found out about one from call to call ([`raw::descriptor_changes_seen`]).
pub(crate) fn check_interposed() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    // The object a symbol's definition lies in (its load address).
    let object_of = |addr: *const c_void| {
        // SAFETY: dladdr fills the zeroed struct for any address.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        (unsafe { libc::dladdr(addr, &mut info) } != 0).then_some(info.dli_fbase)
    };
    let this = object_of(check_interposed as *const c_void);
    let names = [
        c"close",
        c"close_range",
        c"closefrom",
        c"dup2",
        c"dup3",
        c"fclose",
        c"freopen",
        c"freopen64",
        c"fcntl",
        c"fcntl64",
        c"syscall",
    ];
    // SAFETY: dlsym of NUL-terminated names in the global scope.
    let all = this.is_some()
        && names.iter().all(|name| object_of(unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }) == this);
    if all {
        raw::descriptor_changes_seen();
    }
}

/// `close(fd)`: `EBADF` for one of uaio's numbers.
///
/// # Safety
/// As `close(2)`.
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    raw::program_closing(|| {
        if raw::is_own_fd(fd) {
            return fail(libc::EBADF);
        }
        raw::program_closes(fd, fd);
        real_close(fd)
    })
}

/// `fclose(stream)`: the C library's, which closes the stream's
/// descriptor without going through `close`; the duplicates uaio keeps for
/// requests on that descriptor go first, as in [`close`].
///
/// # Safety
/// As `fclose(3)`: a stream the program opened and has not closed.
pub unsafe extern "C" fn fclose(stream: *mut libc::FILE) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    raw::program_closing(|| {
        if !stream.is_null() {
            // SAFETY: the caller's open stream (a memory stream has no
            // descriptor: -1).
            let fd = unsafe { libc::fileno(stream) };
            if fd >= 0 && !raw::is_own_fd(fd) {
                raw::program_closes(fd, fd);
            }
        }
        match next::<unsafe extern "C" fn(*mut libc::FILE) -> c_int>(c"fclose", &NEXT) {
            // SAFETY: the C library's fclose of the caller's stream.
            Some(f) => unsafe { f(stream) },
            None => fail(libc::ENOSYS),
        }
    })
}

/// `freopen(path, mode, stream)`: the C library's, which closes the
/// stream's descriptor without going through `close` and opens the new
/// file under the same number; uaio forgets what it kept about the number
/// and lets its duplicates go first, as in [`fclose`].
///
/// # Safety
/// As `freopen(3)`.
pub unsafe extern "C" fn freopen(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // SAFETY: the caller's arguments, as freopen's contract wants them.
    unsafe { real_freopen(c"freopen", &NEXT, path, mode, stream) }
}

/// `freopen64`, the name programs built with 64-bit file offsets call:
/// as [`freopen`].
///
/// # Safety
/// As `freopen(3)`.
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // SAFETY: as in freopen.
    unsafe { real_freopen(c"freopen64", &NEXT, path, mode, stream) }
}

/// The C library's definition `name` of `freopen`, called with the
/// caller's arguments inside [`raw::program_closing`], after uaio let go
/// of what it holds on the stream's descriptor.
///
/// # Safety
/// As `freopen(3)`.
unsafe fn real_freopen(
    name: &std::ffi::CStr,
    cache: &AtomicUsize,
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    raw::program_closing(|| {
        if !stream.is_null() {
            // SAFETY: the caller's open stream.
            let fd = unsafe { libc::fileno(stream) };
            if fd >= 0 && !raw::is_own_fd(fd) {
                raw::program_closes(fd, fd);
            }
        }
        type Freopen = unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
        match next::<Freopen>(name, cache) {
            // SAFETY: the C library's freopen with the caller's arguments.
            Some(f) => unsafe { f(path, mode, stream) },
            None => {
                set_errno(libc::ENOSYS);
                std::ptr::null_mut()
            }
        }
    })
}

/// `close_range(first, last, flags)`: every number of the range but
/// uaio's.
///
/// # Safety
/// As `close_range(2)`.
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    raw::program_closing(|| close_range_around_own(first, last, flags))
}

/// [`close_range`], with no descriptor of uaio's being made.
fn close_range_around_own(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last || flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 {
        // The kernel's EINVAL.
        return real_close_range(first, last, flags);
    }
    if flags == 0 {
        // (Marked close-on-exec, the numbers stay open; closed in an
        // unshared table, they stay open in the shared one uaio uses.)
        raw::program_closes(first.min(c_int::MAX as c_uint) as c_int, last.min(c_int::MAX as c_uint) as c_int);
    }
    let mut flags = flags;
    let r = raw::around_own_fds(first, last, |a, b| {
        let r = real_close_range(a, b, flags);
        // Unshared once: the later pieces are in this thread's own table.
        flags &= !CLOSE_RANGE_UNSHARE;
        r
    });
    if r == 0 && flags & CLOSE_RANGE_UNSHARE != 0 {
        // Nothing but uaio's numbers in the range: the table is still
        // unshared, as asked.
        // SAFETY: unshare of this thread's descriptor table.
        if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
            return -1;
        }
    }
    r
}

/// `closefrom(lowfd)`: every number from `lowfd` up but uaio's.
///
/// # Safety
/// As `closefrom(3)`.
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    raw::program_closing(|| closefrom_around_own(lowfd))
}

/// [`closefrom`], with no descriptor of uaio's being made.
fn closefrom_around_own(lowfd: c_int) {
    raw::program_closes(lowfd.max(0), c_int::MAX);
    raw::around_own_fds(lowfd.max(0) as c_uint, c_uint::MAX, |a, b| {
        if real_close_range(a, b, 0) != 0 {
            // A kernel without close_range (before 5.9): one at a time, up
            // to the highest number this process may have.
            // SAFETY: sysconf has no memory argument.
            let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, c_int::MAX as c_long) as c_uint;
            for fd in a..=b.min(max) {
                real_close(fd as c_int);
            }
        }
        0
    });
}

/// Whether `fd` names an open file (of the program's or uaio's).
fn open_now(fd: c_int) -> bool {
    // SAFETY: F_GETFD on a number.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The checks `dup2` and `dup3` share: `Some(-1)` (with `errno` set) when
/// uaio's numbers are involved, `None` when the C library's call decides.
fn dup_onto_own(old: c_int, new: c_int) -> Option<c_int> {
    if raw::is_own_fd(old) {
        return Some(fail(libc::EBADF));
    }
    if raw::is_own_fd(new) {
        if !open_now(old) {
            return Some(fail(libc::EBADF));
        }
        return Some(fail(libc::EBUSY));
    }
    None
}

/// `fcntl(fd, cmd, arg)`: the C library's, with a change of status flags
/// (`F_SETFL`) made known to uaio ([`raw::program_sets_flags`]), which
/// otherwise keeps a descriptor's flags from one call to the next. The
/// third, variadic argument arrives where a third ordinary argument would
/// on this ABI (an integer or a pointer: `fcntl` takes nothing else), and
/// goes on unchanged.
///
/// # Safety
/// As `fcntl(2)`.
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    real_fcntl(c"fcntl", &NEXT, fd, cmd, arg)
}

/// `fcntl64`, the name programs built with 64-bit file offsets call
/// (the same function on a 64-bit system): as [`fcntl`].
///
/// # Safety
/// As `fcntl(2)`.
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    real_fcntl(c"fcntl64", &NEXT, fd, cmd, arg)
}

/// The C library's definition `name` of `fcntl`, called with the
/// caller's arguments, inside [`raw::program_sets_flags`] for `F_SETFL`.
fn real_fcntl(name: &std::ffi::CStr, cache: &AtomicUsize, fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let call = || match next::<unsafe extern "C" fn(c_int, c_int, c_ulong) -> c_int>(name, cache) {
        // SAFETY: the C library's fcntl with the caller's arguments (the
        // caller's contract covers what `arg` points to).
        Some(f) => unsafe { f(fd, cmd, arg) },
        None => sys(libc::SYS_fcntl, fd as c_long, cmd as c_long, arg as c_long),
    };
    if cmd == libc::F_SETFL {
        raw::program_sets_flags(call)
    } else {
        call()
    }
}

/// `dup2(old, new)`.
///
/// # Safety
/// As `dup2(2)`.
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    raw::program_closing(|| {
        if let Some(r) = dup_onto_own(old, new) {
            return r;
        }
        if old != new && open_now(old) {
            // `new` is closed first, if open.
            raw::program_closes(new, new);
        }
        match next::<unsafe extern "C" fn(c_int, c_int) -> c_int>(c"dup2", &NEXT) {
            // SAFETY: the C library's dup2 of two numbers.
            Some(f) => unsafe { f(old, new) },
            None => sys(libc::SYS_dup2, old as c_long, new as c_long, 0),
        }
    })
}

/// `dup3(old, new, flags)`.
///
/// # Safety
/// As `dup3(2)`.
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    raw::program_closing(|| {
        // The kernel's EINVAL comes first.
        if flags & !libc::O_CLOEXEC == 0 && old != new {
            if let Some(r) = dup_onto_own(old, new) {
                return r;
            }
            if open_now(old) {
                // `new` is closed first, if open.
                raw::program_closes(new, new);
            }
        }
        match next::<unsafe extern "C" fn(c_int, c_int, c_int) -> c_int>(c"dup3", &NEXT) {
            // SAFETY: the C library's dup3 of two numbers.
            Some(f) => unsafe { f(old, new, flags) },
            None => sys(libc::SYS_dup3, old as c_long, new as c_long, flags as c_long),
        }
    })
}
