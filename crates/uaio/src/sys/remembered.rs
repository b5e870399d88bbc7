//! What a descriptor number named at the last look, kept for the calls
//! that follow while nothing can have changed it: the `statx` of the file
//! behind each request (type, device, inode) costs about 450 ns, a quarter
//! of a cached 4 KiB buffered write.
//!
//! A number names another file only after the program closed it or put
//! another file on it (`close`, `close_range`, `closefrom`, `dup2`, `dup3`:
//! numbers are handed out again only once free). The drop-in library runs
//! each of those through [`changing`], which counts it and moves a
//! generation on; what was looked at under an older generation, or while
//! one ran, is not used. A thread keeps what it looked at for the rest of
//! the coarse clock tick (1–4 ms), for its next calls, and only for the
//! same status flags (`F_GETFL`, asked at every call that hands a request
//! to a backend, tells a reopened file apart whenever its flags differ,
//! and a change of them; a read or write run inside `io_submit` finds a
//! closed number by its own system call).
//!
//! The memory is used only once the drop-in library has found that the
//! program's calls of those functions reach its own ([`changes_seen`]): a
//! program that uses the Rust API, or that loaded the library after the C
//! library's definitions, closes without uaio knowing. What is still not
//! seen (a raw `syscall` instruction, a program's own io_uring closing a
//! descriptor, the C library closing a stream's descriptor in `fclose`) is
//! seen at the next tick. The file's size is never taken from here: it
//! changes without any of that (see [`super::FdInfo::size`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::FileStat;
use crate::writeback::WriteFs;

/// Program threads inside [`changing`] now.
static CHANGING: AtomicUsize = AtomicUsize::new(0);
/// Moved on by every [`changing`] call, when it ends.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The program's closes and replacements of descriptors all go through
/// [`changing`] (set by the drop-in library, see [`changes_seen`]).
static SEEN: AtomicBool = AtomicBool::new(false);

/// Entries a thread keeps (by descriptor number, one each).
const SLOTS: usize = 4;

/// One look at a descriptor number.
#[derive(Clone, Copy)]
struct Look {
    fd: i32,
    flags: u32,
    generation: u64,
    tick: u64,
    st: FileStat,
    /// What the file system makes of a buffered write to the file, once
    /// found out ([`crate::writeback`] trusts its facts for longer than a
    /// tick).
    write_fs: Option<WriteFs>,
}

const EMPTY: Look = Look {
    fd: -1,
    flags: 0,
    generation: 0,
    tick: 0,
    st: FileStat { mode: 0, dev: 0, ino: 0, rdev: 0, size: 0 },
    write_fs: None,
};

std::thread_local! {
    static LOOKS: [Cell<Look>; SLOTS] = const { [const { Cell::new(EMPTY) }; SLOTS] };
}

/// Runs `f`, a `close`, `close_range`, `closefrom`, `dup2` or `dup3` of
/// the program's: no look is kept or used while it runs, and none from
/// before it afterwards.
pub(crate) fn changing<T>(f: impl FnOnce() -> T) -> T {
    struct Changed;
    impl Drop for Changed {
        fn drop(&mut self) {
            GENERATION.fetch_add(1, Ordering::SeqCst);
            CHANGING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    CHANGING.fetch_add(1, Ordering::SeqCst);
    let _changed = Changed;
    f()
}

/// The program's closes and replacements of descriptors reach
/// [`changing`] from now on.
pub(crate) fn changes_seen() {
    SEEN.store(true, Ordering::SeqCst);
    #[cfg(test)]
    SEEN_HERE.with(|s| s.set(true));
}

/// The generation looks may be kept or used under: `None` when they may
/// not (the memory is off, or a close or replacement runs).
pub(super) fn generation() -> Option<u64> {
    if !enabled() || CHANGING.load(Ordering::SeqCst) != 0 {
        return None;
    }
    Some(GENERATION.load(Ordering::SeqCst))
}

/// Whether the program's closes and replacements of descriptors reach
/// uaio (the drop-in library found its own definitions in use).
pub(crate) fn changes_are_seen() -> bool {
    SEEN.load(Ordering::Relaxed)
}

/// Whether [`changes_seen`] was called (in unit tests: on this thread, so
/// that the other tests, which close and reuse numbers directly, run as
/// before).
fn enabled() -> bool {
    #[cfg(test)]
    return SEEN_HERE.with(Cell::get);
    #[cfg(not(test))]
    SEEN.load(Ordering::Relaxed)
}

#[cfg(test)]
std::thread_local! {
    static SEEN_HERE: Cell<bool> = const { Cell::new(false) };
}

fn slot(fd: i32) -> usize {
    fd as usize % SLOTS
}

/// This thread's look at `fd` if it was taken with the status `flags`
/// under `generation`, in this coarse clock tick.
fn current_look(fd: i32, flags: u32, generation: u64) -> Option<Look> {
    let tick = super::coarse_clock_ns();
    let look = LOOKS.try_with(|l| l[slot(fd)].get()).ok()?;
    (look.fd == fd && look.flags == flags && look.generation == generation && look.tick == tick).then_some(look)
}

/// What this thread saw `fd` name under `generation` in this coarse clock
/// tick, with the same status `flags`.
pub(super) fn recall(fd: i32, flags: u32, generation: u64) -> Option<FileStat> {
    current_look(fd, flags, generation).map(|look| look.st)
}

/// What this thread saw `fd` name under `generation` in this coarse clock
/// tick, with the status flags it had then, when that was a regular file
/// or a block device: the whole look, `F_GETFL` included, is then taken
/// from memory. The drop-in library's `fcntl` moves the generation on at
/// every `F_SETFL` (the only way to change the flags: `O_APPEND`,
/// `O_DIRECT`, `O_NOATIME`, `O_ASYNC`, `O_NONBLOCK`), so flags are
/// recalled under the same conditions as the file; a close the library
/// does not see leaves a number looking open until the tick ends. Other
/// files are left out: `O_NONBLOCK`, which only they heed, may also change
/// through `ioctl(FIONBIO)`.
pub(super) fn recall_with_flags(fd: i32, generation: u64) -> Option<(u32, FileStat)> {
    let tick = super::coarse_clock_ns();
    let look = LOOKS.try_with(|l| l[slot(fd)].get()).ok()?;
    let kind = look.st.mode & libc::S_IFMT;
    (look.fd == fd
        && look.generation == generation
        && look.tick == tick
        && (kind == libc::S_IFREG || kind == libc::S_IFBLK))
        .then_some((look.flags, look.st))
}

/// Whether a look at `fd` now would be kept for the calls that follow
/// without pushing out another descriptor's: this thread's place for it
/// is empty, or holds an older look at the same number under `generation`
/// (a descriptor used call after call, whose look only ran out of its
/// tick). A number that shares its place with another in turn, or that
/// names a new file after each close (an open, one read, a close), gets
/// none, so that it never costs a `statx` its requests would not ask for.
pub(super) fn worth_a_look(fd: i32, generation: u64) -> bool {
    LOOKS
        .try_with(|l| {
            let look = l[slot(fd)].get();
            look.fd == -1 || (look.fd == fd && look.generation == generation)
        })
        .unwrap_or(false)
}

/// Keeps what `fd` (with status `flags`) named at a look that began under
/// `generation`, unless a close or replacement ran since.
pub(super) fn remember(fd: i32, flags: u32, generation: u64, st: FileStat) {
    if self::generation() != Some(generation) {
        return;
    }
    let tick = super::coarse_clock_ns();
    let _ = LOOKS.try_with(|l| l[slot(fd)].set(Look { fd, flags, generation, tick, st, write_fs: None }));
}

/// What this thread found a buffered write to `fd` (status `flags`) would
/// meet ([`WriteFs`]), under `generation` in this coarse clock tick.
pub(super) fn recall_write_fs(fd: i32, flags: u32, generation: u64) -> Option<WriteFs> {
    current_look(fd, flags, generation)?.write_fs
}

/// Keeps `k` with this thread's look at `fd` (status `flags`) taken under
/// `generation` in this tick, if that look is still kept.
pub(super) fn remember_write_fs(fd: i32, flags: u32, generation: u64, k: WriteFs) {
    if self::generation() != Some(generation) {
        return;
    }
    if let Some(look) = current_look(fd, flags, generation) {
        let _ = LOOKS.try_with(|l| l[slot(fd)].set(Look { write_fs: Some(k), ..look }));
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::raw::program_sets_flags;
    use crate::sys::FdInfo;

    /// Two looks at `fd` within one coarse clock tick: whether the second
    /// came from the first, and the file type it gave. Tried up to 1,000
    /// times until it does (the tick moves between the looks now and then,
    /// and other tests' changes, counted for the whole process, stop it
    /// while they run).
    fn look_twice(fd: i32) -> (bool, u32) {
        let mut last = (false, 0);
        for _ in 0..1000 {
            let _ = FdInfo::get(fd as u32).expect("open").mode();
            let mut f = FdInfo::get(fd as u32).expect("open");
            let mode = f.mode();
            last = (f.recalled(), mode & libc::S_IFMT);
            if last.0 {
                break;
            }
        }
        last
    }

    #[test]
    fn a_look_is_reused_only_once_changes_are_seen() {
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        assert_eq!(look_twice(fd), (false, libc::S_IFREG), "off until the drop-in library turns it on");
        changes_seen();
        assert_eq!(look_twice(fd), (true, libc::S_IFREG));
    }

    #[test]
    fn a_number_replaced_through_the_drop_in_hooks_is_looked_at_again() {
        changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let dir = std::fs::File::open("/").expect("root directory");
        let fd = file.as_raw_fd();
        assert_eq!(look_twice(fd), (true, libc::S_IFREG));
        // The drop-in library's dup2 puts the directory on the number.
        // SAFETY: dup2 of two open descriptors of this test.
        crate::raw::program_closing(|| unsafe { libc::dup2(dir.as_raw_fd(), fd) });
        let mut f = FdInfo::get(fd as u32).expect("open");
        assert_eq!((f.mode() & libc::S_IFMT, f.recalled()), (libc::S_IFDIR, false));
        // And a close, then a new file at the same number.
        let again = tempfile::tempfile().expect("tempfile");
        // SAFETY: as above.
        crate::raw::program_closing(|| unsafe { libc::dup2(again.as_raw_fd(), fd) });
        let mut f = FdInfo::get(fd as u32).expect("open");
        assert_eq!((f.mode() & libc::S_IFMT, f.recalled()), (libc::S_IFREG, false));
    }

    #[test]
    fn a_whole_look_with_its_flags_is_reused_until_the_flags_are_set() {
        changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        // Two calls in a row: the second asks nothing of the kernel (within
        // one tick; retried as in look_twice).
        let whole = (0..1000).any(|_| {
            let _ = FdInfo::get(fd as u32).expect("open").mode();
            FdInfo::get(fd as u32).expect("open").taken_whole()
        });
        assert!(whole, "the second look came from the first");
        // Every way but the inline read asks whether the number is still
        // open: closed without the drop-in hooks, it is not.
        let other = tempfile::tempfile().expect("tempfile");
        let spare = other.as_raw_fd();
        let taken = (0..1000).find_map(|_| {
            let _ = FdInfo::get(spare as u32).expect("open").mode();
            let f = FdInfo::get(spare as u32).expect("open");
            f.taken_whole().then_some(f)
        });
        let mut f = taken.expect("a whole look at the second file");
        drop(other);
        assert_eq!(f.confirm_open().map_err(|e| e.raw_os_error()), Err(libc::EBADF));
        // The program's F_SETFL (through the drop-in library's fcntl).
        // SAFETY: F_SETFL on this test's open file.
        program_sets_flags(|| unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) });
        let f = FdInfo::get(fd as u32).expect("open");
        assert!(!f.taken_whole());
        assert_ne!(f.flags & libc::O_APPEND as u32, 0, "the new flags");
        // A directory is never taken whole (its O_NONBLOCK may change
        // through ioctl).
        let dir = std::fs::File::open("/").expect("root directory");
        let recalled = (0..50).any(|_| {
            let _ = FdInfo::get(dir.as_raw_fd() as u32).expect("open").mode();
            FdInfo::get(dir.as_raw_fd() as u32).expect("open").taken_whole()
        });
        assert!(!recalled);
    }

    #[test]
    fn what_a_write_meets_is_kept_with_the_look_and_goes_with_it() {
        use crate::writeback::WriteFs;
        changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        // Kept, then recalled by the next call's look (within one tick;
        // retried as in look_twice).
        let kept = |fd: i32| {
            (0..1000).any(|_| {
                let mut f = FdInfo::get(fd as u32).expect("open");
                let _ = f.mode();
                f.remember_write_fs(WriteFs::Memory);
                FdInfo::get(fd as u32).expect("open").recalled_write_fs() == Some(WriteFs::Memory)
            })
        };
        assert!(kept(fd));
        // Another file put on the number through the drop-in library: not
        // recalled for it.
        let other = tempfile::tempfile().expect("tempfile");
        // SAFETY: dup2 of two open descriptors of this test.
        crate::raw::program_closing(|| unsafe { libc::dup2(other.as_raw_fd(), fd) });
        assert_eq!(FdInfo::get(fd as u32).expect("open").recalled_write_fs(), None);
        // New flags: not recalled either.
        assert!(kept(fd));
        // SAFETY: F_SETFL on this test's open file.
        program_sets_flags(|| unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) });
        assert_eq!(FdInfo::get(fd as u32).expect("open").recalled_write_fs(), None);
    }

    #[test]
    fn nothing_is_kept_or_used_while_a_change_runs() {
        changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        let _ = look_twice(fd);
        changing(|| {
            assert_eq!(generation(), None);
            let mut f = FdInfo::get(fd as u32).expect("open");
            let _ = f.mode();
            assert!(!f.recalled());
        });
    }

    #[test]
    fn the_size_is_never_taken_from_an_earlier_call() {
        changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        for round in 1..=50u64 {
            file.set_len(round * 100).expect("set_len");
            let mut f = FdInfo::get(fd as u32).expect("open");
            let _ = f.mode();
            assert_eq!(f.size(), round * 100);
        }
    }
}
