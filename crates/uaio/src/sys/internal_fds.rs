//! uaio's own descriptors (io_uring instances, eventfds) and the rule that
//! keeps them out of the application's way:
//! - they live at high numbers, at or above a floor (half the soft
//!   `RLIMIT_NOFILE`, at most 4096), so the low numbers the application
//!   gets from `open` stay free, and a number it closed is never reused by
//!   uaio behind its back;
//! - a request naming one of them is refused with `EBADF`, as the kernel
//!   refuses a descriptor the application does not have;
//! - they use at most a quarter of the soft limit: past that, new contexts
//!   run on the thread pool instead of opening another io_uring
//!   (see [`internal_fds::room_for_one_more`]);
//! - a duplicate of one of the program's files is not closed while a
//!   record lock (`fcntl` `F_SETLK`) is held on that file: closing any
//!   descriptor of a file releases every such lock the process holds on
//!   it, and the program's locks are not uaio's to release (see
//!   [`InternalFd::dup_of_program`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

use rustix::io::Errno;

/// uaio's threads making a descriptor of their own now ([`making`]), and
/// program threads closing or replacing descriptors now through the
/// drop-in library ([`program_closing`]): each side waits for the other.
static MAKING: AtomicUsize = AtomicUsize::new(0);
static CLOSING: AtomicUsize = AtomicUsize::new(0);
/// `io_submit` calls between their first look at a descriptor and the
/// backend's hold on its file ([`submitting`]).
static SUBMITTING: AtomicUsize = AtomicUsize::new(0);

/// How long a `close` of the program's waits for the `io_submit` calls
/// under way ([`submitting`]) at most: they take microseconds, but one
/// that must run a request itself may wait for the file (a pipe with no
/// reader), perhaps for the very close that would end that wait.
const SUBMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

std::thread_local! {
    /// [`making`] calls this thread is inside.
    static MAKING_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// [`program_closing`] calls this thread is inside (and counts in
    /// `CLOSING` for).
    static CLOSING_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// [`submitting`] calls this thread is inside.
    static SUBMITTING_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, which makes descriptors of uaio's (a new descriptor at a low
/// number, then its duplicate above the floor, marked as uaio's), with no
/// `close`, `close_range`, `closefrom`, `dup2` or `dup3` of the program's
/// (through the drop-in library, see [`program_closing`]) running
/// meanwhile: one that ran between the making and the marking would close
/// or replace the new number, and uaio would then use the program's file
/// as its own (an io_uring ring mapped from it faulted with `SIGBUS`), or
/// a closed number (POLLs that never completed, syncs failing with
/// `EBADF`). Nested calls wait once.
pub(crate) fn making<T>(f: impl FnOnce() -> T) -> T {
    struct Made(bool);
    impl Drop for Made {
        fn drop(&mut self) {
            if self.0 {
                MAKING.fetch_sub(1, Ordering::SeqCst);
            }
            let _ = MAKING_HERE.try_with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    let outer = MAKING_HERE
        .try_with(|c| {
            c.set(c.get() + 1);
            c.get() == 1
        })
        .unwrap_or(false);
    // Inside this thread's own program_closing (its `f` called uaio), the
    // other threads' making waits already: waiting here would wait for
    // the thread itself, for ever.
    let closing_here = CLOSING_HERE.try_with(|c| c.get() > 0).unwrap_or(false);
    // Inside an `io_submit`'s [`submitting`], which closes wait for: a
    // close waiting for it must not be waited for.
    let submitting_here = SUBMITTING_HERE.try_with(|c| c.get() > 0).unwrap_or(false);
    if outer && (closing_here || submitting_here) {
        MAKING.fetch_add(1, Ordering::SeqCst);
    } else if outer {
        count_in_unless_closing(&MAKING);
    }
    let _made = Made(outer);
    f()
}

/// Counts this thread in `count` once no close of the program's runs
/// (see [`program_closing`], which waits for `count` in turn): counted
/// first, then backing off while a close runs, so that one of the two
/// always sees the other.
fn count_in_unless_closing(count: &AtomicUsize) {
    loop {
        count.fetch_add(1, Ordering::SeqCst);
        if CLOSING.load(Ordering::SeqCst) == 0 {
            return;
        }
        count.fetch_sub(1, Ordering::SeqCst);
        while CLOSING.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

/// Runs `f`, the part of an `io_submit` from the first look at its
/// requests' descriptors to the backend's hold on their files (a
/// duplicate, or io_uring's lookup as it takes the entries), with no
/// `close`, `close_range`, `closefrom`, `dup2` or `dup3` of the program's
/// (through the drop-in library) running meanwhile (waiting for one that
/// runs, which waits for it in turn at most [`SUBMIT_WAIT`]): as on the
/// kernel, whose `io_submit` takes the file when it looks the number up, a
/// close in another thread comes before (the request fails, `EBADF`) or
/// after (the request has its file), and an accepted request never ends
/// with `EBADF` because the number went away.
pub(crate) fn submitting<T>(f: impl FnOnce() -> T) -> T {
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            SUBMITTING.fetch_sub(1, Ordering::SeqCst);
            let _ = SUBMITTING_HERE.try_with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    // A close running on this thread (its handler submits) waits for
    // nothing of this thread's.
    if CLOSING_HERE.try_with(|c| c.get() == 0).unwrap_or(false) {
        count_in_unless_closing(&SUBMITTING);
    } else {
        SUBMITTING.fetch_add(1, Ordering::SeqCst);
    }
    let _ = SUBMITTING_HERE.try_with(|c| c.set(c.get() + 1));
    let _done = Done;
    f()
}

/// Runs `f`, the program's `close`, `close_range`, `closefrom`, `dup2` or
/// `dup3`, once no descriptor of uaio's is being made, keeping new ones
/// from being made meanwhile (see [`making`]). uaio's own closes (on its
/// threads, or inside a call, where a program's signal handler may run
/// too) run at once: they never touch a number being made, and waiting
/// there could wait for the thread itself.
pub(crate) fn program_closing<T>(f: impl FnOnce() -> T) -> T {
    if crate::sync::held_here() || crate::uaccess::is_own_thread() {
        return f();
    }
    struct Closed;
    impl Drop for Closed {
        fn drop(&mut self) {
            CLOSING.fetch_sub(1, Ordering::SeqCst);
            let _ = CLOSING_HERE.try_with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    CLOSING.fetch_add(1, Ordering::SeqCst);
    let _ = CLOSING_HERE.try_with(|c| c.set(c.get() + 1));
    let _closed = Closed;
    while MAKING.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    if SUBMITTING.load(Ordering::SeqCst) != 0 {
        let since = std::time::Instant::now();
        while SUBMITTING.load(Ordering::SeqCst) != 0 && since.elapsed() < SUBMIT_WAIT {
            std::thread::yield_now();
        }
    }
    f()
}

/// Numbers tracked exactly above the floor (a bit each).
const SPAN: usize = 4096;
static FLOOR: AtomicI32 = AtomicI32::new(0);
static BITS: [AtomicU64; SPAN / 64] = [const { AtomicU64::new(0) }; SPAN / 64];
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn soft_limit() -> usize {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return 1 << 20;
    }
    rl.rlim_cur as usize
}

fn floor() -> i32 {
    match FLOOR.load(Ordering::Relaxed) {
        0 => {
            let f = (soft_limit() / 2).clamp(3, SPAN) as i32;
            FLOOR.store(f, Ordering::Relaxed);
            f
        }
        f => f,
    }
}

/// A descriptor of uaio's own, at a high number, refused in requests.
///
/// Held by number, not as an `OwnedFd`: a program may close it behind
/// uaio's back (`close_range` in a daemon), and the number may then
/// name a file of the program's. Its file's device and inode are
/// recorded, and it is closed on drop only while the number still
/// names a file with the same device and inode.
#[derive(Debug)]
pub(crate) struct InternalFd {
    fd: i32,
    id: Option<(u64, u64)>,
    /// A duplicate of a program's file (see [`InternalFd::dup_of_program`]).
    program: bool,
    /// For such a duplicate, the program's descriptor number it was made
    /// from (-1 otherwise).
    app_fd: i32,
    /// When `app_fd` was last found to name the duplicate's open file (a
    /// look that stands as [`InternalFd::verified`] does).
    app_seen: Verified,
    /// The last look that found the number intact: see [`Verified`].
    verified: Verified,
}

/// When a descriptor of uaio's was last found to name its file: the
/// `remembered` generation (plus one; 0 for never) and the coarse clock
/// tick of that look. The drop-in library refuses the program's `close`
/// and `dup2` of uaio's numbers, so once it sees them all
/// (`remembered`), only a raw system call could take a number over, and
/// such a change is trusted to be seen at the next tick, as for the
/// program's own numbers: a look of this tick, under this generation,
/// stands (one `statx` less for each request of the thread pool that
/// holds a duplicate, and for each wait on the direct lane).
#[derive(Debug, Default)]
struct Verified {
    generation: AtomicU64,
    tick: AtomicU64,
}

impl Verified {
    /// A look that began under `generation`, now: it stands if no close
    /// or replacement of the program's ran since.
    fn look(generation: Option<u64>) -> Verified {
        let v = Verified::default();
        v.record(generation, super::coarse_clock_ns());
        v
    }

    /// A look that found the number intact began under `generation`.
    /// (Stored apart, the two values may be read from two looks; a mix
    /// matches the present only where both looks are of this tick, and
    /// under this generation.)
    fn record(&self, generation: Option<u64>, tick: u64) {
        if let Some(g) = generation.filter(|&g| super::remembered::generation() == Some(g)) {
            self.generation.store(g + 1, Ordering::Relaxed);
            self.tick.store(tick, Ordering::Relaxed);
        }
    }

    /// Whether a look of this tick, under the present generation, found
    /// the number intact.
    fn stands(&self, generation: Option<u64>, tick: u64) -> bool {
        generation.is_some_and(|g| self.generation.load(Ordering::Relaxed) == g + 1)
            && self.tick.load(Ordering::Relaxed) == tick
    }
}

fn file_id(fd: i32) -> Option<(u64, u64)> {
    super::file_stat(fd).map(|st| st.ident())
}

impl InternalFd {
    /// Moves `fd` to a number at or above the floor (close-on-exec) and
    /// records it as uaio's. `EMFILE` when no number is left there.
    pub(crate) fn new(fd: OwnedFd) -> Result<InternalFd, Errno> {
        Self::dup_of(fd.as_fd())
    }

    /// [`InternalFd::new`] of the descriptor `make` opens, both inside one
    /// [`making`]: the low number `make` gets is not closed or replaced
    /// by the program before it is moved.
    pub(crate) fn make(make: impl FnOnce() -> Result<OwnedFd, Errno>) -> Result<InternalFd, Errno> {
        making(|| InternalFd::new(make()?))
    }

    /// A duplicate of `fd` (which stays open, and may be the
    /// application's) at a number at or above the floor (close-on-exec),
    /// recorded as uaio's. `EMFILE` when no number is left there, `EBADF`
    /// when `fd` is no longer open.
    pub(crate) fn dup_of(fd: BorrowedFd<'_>) -> Result<InternalFd, Errno> {
        InternalFd::dup_of_number(fd.as_raw_fd())
    }

    /// [`InternalFd::dup_of`] by number: what the number names at the
    /// moment of the call (`EBADF` if nothing).
    pub(crate) fn dup_of_number(fd: i32) -> Result<InternalFd, Errno> {
        making(|| InternalFd::dup_unguarded(fd, None))
    }

    /// [`InternalFd::dup_of_number`], inside a [`making`]. `seen`: the
    /// file `fd` named at a look under a `remembered` generation; while
    /// that generation stands, the duplicate names that file (no close or
    /// replacement of the program's ran since), and it is not looked at.
    fn dup_unguarded(fd: i32, seen: Option<((u64, u64), u64)>) -> Result<InternalFd, Errno> {
        let min = floor();
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor number (a closed one just
        // fails); the result, if any, is a new descriptor that only this
        // function holds.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        if d < 0 {
            // EBADF when the descriptor was closed meanwhile; any other
            // failure means no number is left above the floor.
            let e = std::io::Error::last_os_error().raw_os_error();
            return Err(if e == Some(libc::EBADF) { Errno::BADF } else { Errno::MFILE });
        }
        set(d, true);
        COUNT.fetch_add(1, Ordering::SeqCst);
        if let Some((id, g)) = seen.filter(|&(_, g)| super::remembered::generation() == Some(g)) {
            let (verified, app_seen) = (Verified::look(Some(g)), Verified::default());
            return Ok(InternalFd { fd: d, id: Some(id), program: false, app_fd: -1, app_seen, verified });
        }
        Ok(InternalFd::looked_at(d, false))
    }

    /// [`InternalFd::dup_of_number`] for a duplicate of the program's own
    /// file, which uaio keeps while a request uses it, as the kernel keeps
    /// a reference to the file.
    ///
    /// POSIX record locks (`fcntl` `F_SETLK`, `F_SETLKW`) belong to the
    /// process and the file, and closing any descriptor of the file
    /// releases all of them: uaio closing its duplicate would release the
    /// locks the program holds on the file (a database's lock on its data
    /// files, which keeps a second instance out). The kernel drops its
    /// reference without a close, and the locks stay. So when such a
    /// duplicate goes while a lock is held on its file (`F_OFD_GETLK`,
    /// which sees the process's own POSIX locks, says so), it is not
    /// closed but kept aside ([`sweep`] closes it once no lock is left),
    /// and a later duplicate of the same open file takes it back instead
    /// of making another.
    ///
    /// That look and the close are two steps, and a lock another thread
    /// takes between them is released all the same. So while the drop-in
    /// library sees the program's closes (`remembered`), a duplicate whose
    /// program descriptor still names its open file is never closed when
    /// its request ends: it is kept aside for the next request on that
    /// descriptor, and closed only when the program closes or replaces
    /// that descriptor ([`program_closes`], just before the program's own
    /// close, which releases the locks anyway).
    /// `seen`: as for [`InternalFd::dup_unguarded`].
    pub(crate) fn dup_of_program(fd: i32, seen: Option<((u64, u64), u64)>) -> Result<InternalFd, Errno> {
        if let Some(kept) = take_kept(fd) {
            return Ok(kept);
        }
        let before = super::remembered::generation();
        let mut d = making(|| InternalFd::dup_unguarded(fd, seen))?;
        d.program = true;
        d.app_fd = fd;
        d.app_seen = Verified::look(before);
        Ok(d)
    }
}

impl InternalFd {
    /// The device and inode of the file, as recorded when the descriptor
    /// was made (`None` if they could not be read).
    pub(crate) fn ident(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// Lets go of the number without closing it: the program took it over
    /// (closed it, or put a file of its own there), so what it names now
    /// is the program's, and uaio's duplicate is gone already.
    pub(crate) fn disown(mut self) {
        self.id = None;
        self.program = false;
    }

    /// Whether the number still names the file it was made for (a program
    /// may have closed it, or put a file of its own there).
    pub(crate) fn intact(&self) -> bool {
        let Some(id) = self.id else { return false };
        let (generation, tick) = (super::remembered::generation(), super::coarse_clock_ns());
        if self.verified.stands(generation, tick) {
            return true;
        }
        let intact = file_id(self.fd) == Some(id);
        if intact {
            self.verified.record(generation, tick);
        }
        intact
    }

    /// uaio's new descriptor `d`, with the device and inode of its file
    /// looked at now.
    fn looked_at(d: i32, program: bool) -> InternalFd {
        let generation = super::remembered::generation();
        let id = file_id(d);
        let verified = if id.is_some() { Verified::look(generation) } else { Verified::default() };
        InternalFd { fd: d, id, program, app_fd: -1, app_seen: Verified::default(), verified }
    }

    /// Closes the duplicate whatever its number names now (for tests
    /// that gave it a made-up identity).
    #[cfg(test)]
    fn disown_for_test(self) {
        let fd = self.fd;
        self.disown();
        forget(fd);
        super::close_own(fd);
    }

    /// The descriptor, staying recorded as uaio's for the rest of the
    /// process (for descriptors that live as long as the process).
    pub(crate) fn into_permanent(self) -> OwnedFd {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: the descriptor was created by `dup_of` and `me` is
        // never dropped, so ownership passes exactly once.
        unsafe { OwnedFd::from_raw_fd(me.fd) }
    }
}

impl AsFd for InternalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: uaio's own descriptor, open until this value drops
        // (unless the program closes it behind uaio's back, which then
        // makes uaio's calls on it fail, never touch memory).
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl AsRawFd for InternalFd {
    fn as_raw_fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for InternalFd {
    fn drop(&mut self) {
        let intact = self.intact();
        if self.program
            && intact
            && parked(self.app_fd, self.fd, &self.app_seen)
            && keep_aside(self.fd, self.id, self.app_fd, false)
        {
            // Kept for the next request on the program's descriptor, until
            // the program closes it (see `dup_of_program`).
            return;
        }
        if self.program && intact && record_locked(self.fd) && keep_aside(self.fd, self.id, self.app_fd, true) {
            // Still uaio's, counted and marked, until `sweep` closes it.
            return;
        }
        forget(self.fd);
        if intact {
            // The number still names the file uaio duplicated; closing it
            // releases uaio's reference.
            super::close_own(self.fd);
        }
    }
}

/// Duplicates of program files kept aside because a record lock was held
/// on their file (one bit per number above the floor), with the file each
/// was made for; lock-free, so that a `fork` child can empty it.
static KEPT: [AtomicU64; SPAN / 64] = [const { AtomicU64::new(0) }; SPAN / 64];
static KEPT_DEV: [AtomicU64; SPAN] = [const { AtomicU64::new(0) }; SPAN];
static KEPT_INO: [AtomicU64; SPAN] = [const { AtomicU64::new(0) }; SPAN];
/// The program's descriptor number each was made from (-1: not known).
static KEPT_APP: [AtomicI32; SPAN] = [const { AtomicI32::new(-1) }; SPAN];
static NKEPT: AtomicUsize = AtomicUsize::new(0);
/// Those of them kept for a program descriptor only (not for a record
/// lock found on the file): see [`PARKED_MAX`].
static KEPT_PARKED: [AtomicU64; SPAN / 64] = [const { AtomicU64::new(0) }; SPAN / 64];
static NPARKED: AtomicUsize = AtomicUsize::new(0);

/// Most duplicates kept for their program descriptor at once. Each holds
/// a number of the program's table (counted against its `RLIMIT_NOFILE`,
/// where kernel AIO holds none): past that, a duplicate whose file has no
/// lock of the process is closed at the end of its request, as before
/// (with the window that look leaves), and one whose file has is kept
/// for the lock.
const PARKED_MAX: usize = 64;
/// The coarse clock tick of the last [`sweep`] that looked.
static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);

/// How often [`sweep`] looks at the duplicates kept per program
/// descriptor (nanoseconds of the coarse clock; the progress thread looks
/// every 100 ms while any is kept).
const PARKED_SWEEP_NS: u64 = 90_000_000;

/// Most duplicates kept aside at once: past that (on a kernel that cannot
/// tell open files apart, where none is taken back), they are closed as
/// before, locks or not. (Each is one kept per open file of the program
/// that has a lock, or per descriptor, [`PARKED_MAX`] at most.)
const KEPT_MAX: usize = 1024;

/// Whether this process holds a POSIX record lock on the file of `fd`
/// (which a close of `fd` would release). `F_OFD_GETLK` reports the
/// process's own POSIX locks as conflicts (their owner is the process, not
/// the open file), but it reports one lock only, and it may be another
/// process's, or an open file's (OFD) lock, neither of which a close of
/// uaio's releases: `/proc/locks` then says whether one of this process's
/// is there too (and when it cannot be read, the answer is yes). False
/// when the kernel cannot say (before Linux 3.15, or a file system without
/// locks).
fn record_locked(fd: i32) -> bool {
    // SAFETY: an all-zero flock is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_OFD_GETLK on a descriptor number with a valid flock.
    let r = unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) };
    if r != 0 || fl.l_type == libc::F_UNLCK as i16 {
        return false;
    }
    let me = rustix::process::getpid().as_raw_nonzero().get();
    fl.l_pid == me || own_posix_lock_listed(fd, me)
}

/// Whether `/proc/locks` lists a POSIX lock of the process `me` on the
/// file of `fd` (lines such as `1: POSIX  ADVISORY  WRITE 1234 fe:00:5678
/// 0 EOF`: pid, then the file system's device and the inode).
fn own_posix_lock_listed(fd: i32, me: i32) -> bool {
    let Some(st) = super::file_stat(fd) else { return true };
    let Some(text) = super::procfs::read(super::procfs::ProcFile::Locks) else { return true };
    let file = format!("{:02x}:{:02x}:{}", libc::major(st.dev), libc::minor(st.dev), st.ino);
    let pid = me.to_string();
    text.lines().any(|line| {
        let mut f = line.split_whitespace().skip(1);
        f.next() == Some("POSIX") && f.nth(2) == Some(pid.as_str()) && f.next() == Some(file.as_str())
    })
}

/// Whether the program's duplicate `fd`, made from its descriptor `app_fd`,
/// is to be kept for the next request on `app_fd` rather than closed: the
/// drop-in library sees the program's closes, and `app_fd` still names
/// the open file `fd` names (see [`InternalFd::dup_of_program`]), as a
/// look of this tick under this generation (`app_seen`) says, or a new one.
fn parked(app_fd: i32, fd: i32, app_seen: &Verified) -> bool {
    if app_fd < 0 || !super::remembered::changes_are_seen() {
        return false;
    }
    app_seen.stands(super::remembered::generation(), super::coarse_clock_ns()) || super::same_open_file(app_fd, fd)
}

/// Sets `fd`, a duplicate of the program's `app_fd`, aside (see
/// [`InternalFd::dup_of_program`]); `locked`: for a record lock, which
/// [`sweep`] looks at. False when it cannot be (outside the tracked span,
/// or too many already).
fn keep_aside(fd: i32, id: Option<(u64, u64)>, app_fd: i32, locked: bool) -> bool {
    let i = fd - FLOOR.load(Ordering::Relaxed);
    let Some(id) = id else { return false };
    let full =
        if locked { NKEPT.load(Ordering::SeqCst) >= KEPT_MAX } else { NPARKED.load(Ordering::SeqCst) >= PARKED_MAX };
    if i < 0 || i as usize >= SPAN || full {
        return false;
    }
    let i = i as usize;
    KEPT_DEV[i].store(id.0, Ordering::SeqCst);
    KEPT_INO[i].store(id.1, Ordering::SeqCst);
    KEPT_APP[i].store(app_fd, Ordering::SeqCst);
    if !locked {
        NPARKED.fetch_add(1, Ordering::SeqCst);
        KEPT_PARKED[i / 64].fetch_or(1u64 << (i % 64), Ordering::SeqCst);
    }
    mark_kept(i);
    if locked {
        // The progress thread then looks every so often, so that the
        // duplicate goes even if the program makes no more calls.
        let _ = poke_sweeper();
    }
    true
}

/// The eventfd of the thread that calls [`sweep`] while duplicates are
/// kept aside (the progress thread; -1 before it exists, and in a fork
/// child until it has its own).
static SWEEPER: AtomicI32 = AtomicI32::new(-1);

/// Records the eventfd that wakes the thread that calls [`sweep`].
pub(crate) fn set_sweeper(fd: i32) {
    SWEEPER.store(fd, Ordering::SeqCst);
}

/// Wakes that thread (the progress thread); `false` when there is none.
/// Written only while the number still names an anonymous file: a program
/// that took the number over does not receive the 8 bytes. Takes no lock
/// and allocates nothing.
pub(crate) fn poke_sweeper() -> bool {
    let fd = SWEEPER.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: uaio's own eventfd, kept for the life of the process (if
        // the program took the number over, the write checks the kind).
        super::signal_own_eventfd(unsafe { BorrowedFd::borrow_raw(fd) });
    }
    fd >= 0
}

/// Puts the number at offset `i` (its file recorded) in the kept-aside set.
fn mark_kept(i: usize) {
    NKEPT.fetch_add(1, Ordering::SeqCst);
    KEPT[i / 64].fetch_or(1u64 << (i % 64), Ordering::SeqCst);
}

/// A number uaio kept for the life of the process
/// ([`InternalFd::into_permanent`]) was found closed behind its back (a raw
/// system call) or naming another file: it is no longer counted as uaio's,
/// and not closed (what it names now, if anything, is not uaio's).
pub(crate) fn lost_permanent(fd: i32) {
    let i = fd - FLOOR.load(Ordering::Relaxed);
    if i < 0 || i as usize >= SPAN {
        return;
    }
    let (w, b) = (i as usize / 64, 1u64 << (i % 64));
    // Counted out once, by whoever clears the mark.
    if BITS[w].fetch_and(!b, Ordering::SeqCst) & b != 0 {
        COUNT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops counting `fd` as uaio's (it is closed, or the program's now).
fn forget(fd: i32) {
    set(fd, false);
    COUNT.fetch_sub(1, Ordering::SeqCst);
}

/// Takes the kept-aside number at offset `i` out of the set; false if
/// another thread took it first.
fn claim_kept(i: usize) -> bool {
    let b = 1u64 << (i % 64);
    if KEPT[i / 64].fetch_and(!b, Ordering::SeqCst) & b == 0 {
        return false;
    }
    if KEPT_PARKED[i / 64].fetch_and(!b, Ordering::SeqCst) & b != 0 {
        NPARKED.fetch_sub(1, Ordering::SeqCst);
    }
    NKEPT.fetch_sub(1, Ordering::SeqCst);
    true
}

/// The kept-aside offsets, as numbers and recorded files.
fn kept_now() -> impl Iterator<Item = (usize, i32, (u64, u64), i32)> {
    let f = FLOOR.load(Ordering::Relaxed);
    KEPT.iter().enumerate().flat_map(move |(w, word)| {
        let mut bits = word.load(Ordering::SeqCst);
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let i = w * 64 + b;
            let id = (KEPT_DEV[i].load(Ordering::SeqCst), KEPT_INO[i].load(Ordering::SeqCst));
            Some((i, f + i as i32, id, KEPT_APP[i].load(Ordering::SeqCst)))
        })
    })
}

/// A kept-aside duplicate of the open file the program's `fd` names, taken
/// back for a new use.
fn take_kept(fd: i32) -> Option<InternalFd> {
    if NKEPT.load(Ordering::SeqCst) == 0 {
        return None;
    }
    // While duplicates are kept per program descriptor, only those made
    // from `fd` are asked about (one `fcntl` each, not one per kept one).
    let per_descriptor = super::remembered::changes_are_seen();
    for (i, d, id, app) in kept_now() {
        if (!per_descriptor || app == fd) && super::same_open_file(fd, d) && claim_kept(i) {
            // A duplicate of the open file `fd` names: uaio's still, and of
            // the file recorded (no look needed).
            if per_descriptor {
                let generation = super::remembered::generation();
                let (verified, app_seen) = (Verified::look(generation), Verified::look(generation));
                return Some(InternalFd { fd: d, id: Some(id), program: true, app_fd: fd, app_seen, verified });
            }
            let mut kept = InternalFd::looked_at(d, true);
            if kept.id == Some(id) {
                kept.app_fd = fd;
                return Some(kept);
            }
            std::mem::forget(kept);
            // The program took the number over: no longer uaio's.
            forget(d);
        }
    }
    None
}

/// Closes the duplicates kept aside whose file no longer has a record
/// lock, and forgets those whose number the program took over. At most
/// once per coarse clock tick; nothing to do costs one atomic load.
pub(crate) fn sweep() {
    if NKEPT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let tick = super::coarse_clock_ns();
    if super::remembered::changes_are_seen() {
        // Duplicates are kept per program descriptor, one each, for as
        // long as the program keeps it (hundreds, for a program with
        // hundreds of files): each look costs an `fcntl`, so they are
        // looked at once per [`PARKED_SWEEP_NS`] (by the progress thread,
        // or a call), not once per tick. What they wait for is a close the
        // drop-in did not see (`freopen`, a raw system call).
        let last = LAST_SWEEP.load(Ordering::Relaxed);
        if tick.wrapping_sub(last) < PARKED_SWEEP_NS || LAST_SWEEP.swap(tick, Ordering::Relaxed) != last {
            return;
        }
    } else if LAST_SWEEP.swap(tick, Ordering::Relaxed) == tick {
        return;
    }
    for (i, d, id, app) in kept_now() {
        if parked(app, d, &Verified::default()) || !claim_kept(i) {
            // (Kept for its program descriptor, which still names it.)
            continue;
        }
        let intact = file_id(d) == Some(id);
        if intact && record_locked(d) {
            // Still locked: back in the set.
            mark_kept(i);
            continue;
        }
        forget(d);
        if intact {
            // uaio's duplicate, still naming the file it was made for, and
            // no longer in the set: this thread alone closes it.
            super::close_own(d);
        }
    }
}

/// The program is about to close or replace its descriptors `lo..=hi`
/// (through the drop-in library's `close`, `close_range`, `closefrom`,
/// `dup2`, `dup3`, `fclose`): the duplicates kept aside for those of them that still
/// name their open file are closed first. The program's own close then
/// releases its record locks on those files in any case, and the last
/// reference to an open file goes with the program's (its `flock` with
/// it), as on the kernel. Takes no lock and allocates nothing.
pub(crate) fn program_closes(lo: i32, hi: i32) {
    if NKEPT.load(Ordering::SeqCst) == 0 || hi < 0 {
        return;
    }
    for (i, d, _, app) in kept_now() {
        if app >= lo.max(0) && app <= hi && super::same_open_file(app, d) && claim_kept(i) {
            forget(d);
            super::close_own(d);
        }
    }
}

/// How many duplicates are kept aside now (for tests).
pub(crate) fn kept_count() -> usize {
    NKEPT.load(Ordering::SeqCst)
}

fn set(fd: i32, on: bool) {
    let i = fd - FLOOR.load(Ordering::Relaxed);
    if i < 0 || i as usize >= SPAN {
        return;
    }
    let (w, b) = (i as usize / 64, 1u64 << (i % 64));
    if on {
        BITS[w].fetch_or(b, Ordering::SeqCst);
    } else {
        BITS[w].fetch_and(!b, Ordering::SeqCst);
    }
}

/// Whether `fd` is one of uaio's own descriptors (a request naming it
/// gets `EBADF`). Numbers below the floor cost one comparison.
#[inline]
pub(crate) fn is_internal(fd: i32) -> bool {
    let f = FLOOR.load(Ordering::Relaxed);
    if f == 0 || fd < f {
        return false;
    }
    let i = (fd - f) as usize;
    i < SPAN && BITS[i / 64].load(Ordering::Relaxed) & (1u64 << (i % 64)) != 0
}

/// The lowest of uaio's own numbers in `lo..=hi`, if any. Takes no lock
/// and allocates nothing.
pub(crate) fn first_internal_in(lo: u64, hi: u64) -> Option<u64> {
    let f = FLOOR.load(Ordering::Relaxed);
    if f == 0 || hi < f as u64 {
        return None;
    }
    let f = f as u64;
    let end = (hi - f).min(SPAN as u64 - 1);
    let mut i = lo.max(f) - f;
    while i <= end {
        let bits = BITS[(i / 64) as usize].load(Ordering::SeqCst) >> (i % 64);
        if bits != 0 {
            let j = i + bits.trailing_zeros() as u64;
            return (j <= end).then_some(j + f);
        }
        i = (i / 64 + 1) * 64;
    }
    None
}

/// In a fork child: the parent's descriptors of uaio's are closed (the
/// child inherits no context, as with the kernel) and the record starts
/// empty. Only async-signal-safe calls.
pub(crate) fn after_fork_in_child() {
    // Threads of the parent's that were making a descriptor, or closing
    // one, are not in the child. Reset first: the closes below go through
    // the drop-in library's `close`, which waits while a descriptor is
    // being made (a child whose parent's thread was making one waited for
    // ever, found by a black-box attack: 5 of 8,716 forks).
    MAKING.store(0, Ordering::SeqCst);
    CLOSING.store(0, Ordering::SeqCst);
    // Likewise an io_submit under way in another thread: its count stayed,
    // and each close of the child's waited for it (100 ms: fork_conform
    // busy made 10 forks in 2 s where the kernel made 2,400).
    SUBMITTING.store(0, Ordering::SeqCst);
    let f = FLOOR.load(Ordering::Relaxed);
    for (w, word) in BITS.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::SeqCst);
        while bits != 0 {
            let b = bits.trailing_zeros() as i32;
            bits &= bits - 1;
            // The child's copy of a descriptor that was uaio's in the
            // parent; nothing in the child refers to it.
            super::close_own(f + w as i32 * 64 + b);
        }
    }
    for word in KEPT.iter().chain(&KEPT_PARKED) {
        word.store(0, Ordering::SeqCst);
    }
    NKEPT.store(0, Ordering::SeqCst);
    NPARKED.store(0, Ordering::SeqCst);
    SWEEPER.store(-1, Ordering::SeqCst);
    COUNT.store(0, Ordering::SeqCst);
    FLOOR.store(0, Ordering::Relaxed);
}

/// Whether uaio may open one more descriptor of its own: it keeps to a
/// quarter of the soft `RLIMIT_NOFILE`, and takes none while the
/// program's next descriptor (the lowest free number, found by
/// duplicating `any`) is past half the limit, so that a program short
/// of descriptors never loses one to uaio.
pub(crate) fn room_for_one_more(any: BorrowedFd<'_>) -> bool {
    let limit = soft_limit();
    if COUNT.load(Ordering::SeqCst) >= (limit / 4).max(1) {
        return false;
    }
    // The duplicate is closed before the program may close or reuse its
    // number (see `making`).
    let low = making(|| {
        // SAFETY: F_DUPFD_CLOEXEC of a valid descriptor; the duplicate is
        // closed at once.
        let low = unsafe { libc::fcntl(any.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if low >= 0 {
            // The duplicate just made.
            super::close_own(low);
        }
        low
    });
    low >= 0 && (low as usize) < limit / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd() -> OwnedFd {
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd")
    }

    /// The pieces `around_own_fds` gives for `first..=last`.
    fn pieces(first: u32, last: u32) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        crate::raw::around_own_fds(first, last, |a, b| {
            v.push((a, b));
            0
        });
        v
    }

    #[test]
    fn a_duplicate_is_kept_for_its_descriptor_until_the_program_closes_that() {
        crate::sys::remembered::changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        let d = InternalFd::dup_of_program(fd, None).expect("duplicate");
        let n = d.as_raw_fd();
        drop(d);
        // Not closed when its request ended: a close would release the
        // program's record locks on the file.
        assert!(crate::sys::same_open_file(fd, n), "closed at the end of its use");
        let again = InternalFd::dup_of_program(fd, None).expect("duplicate");
        assert_eq!(again.as_raw_fd(), n, "not taken back for the next request");
        drop(again);
        // The program's close of its descriptor closes it first.
        program_closes(fd, fd);
        assert!(!crate::sys::same_open_file(fd, n), "left open after the program's close");
    }

    #[test]
    fn a_number_replaced_through_the_drop_in_hooks_is_no_longer_intact() {
        crate::sys::remembered::changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let other = tempfile::tempfile().expect("tempfile");
        let d = InternalFd::dup_of_number(file.as_raw_fd()).expect("duplicate");
        assert!(d.intact() && d.intact());
        // The program's dup2 onto uaio's number, as the drop-in library's
        // hooks report it (the drop-in itself refuses it with EBUSY).
        // SAFETY: dup2 of two open descriptors of this test.
        let r = crate::raw::program_closing(|| unsafe { libc::dup2(other.as_raw_fd(), d.as_raw_fd()) });
        assert_eq!(r, d.as_raw_fd());
        assert!(!d.intact(), "a look of the same tick must not stand after a replacement");
        let n = d.as_raw_fd();
        // Not closed by the drop (the number is the test's now).
        drop(d);
        // SAFETY: the test's own descriptor, made by the dup2 above.
        assert_eq!(unsafe { libc::close(n) }, 0);
    }

    #[test]
    fn a_duplicate_is_taken_for_the_file_looked_at_only_while_nothing_changed() {
        crate::sys::remembered::changes_seen();
        let file = tempfile::tempfile().expect("tempfile");
        let fd = file.as_raw_fd();
        let real = file_id(fd).expect("statx");
        // An identity no file has, to tell a trusted look from a new one.
        let claimed = (u64::MAX, u64::MAX);
        // Other tests' changes move the generation on: retried until none
        // came between.
        let trusted = (0..1000).any(|_| {
            let Some(g) = crate::sys::remembered::generation() else { return false };
            let d = InternalFd::dup_of_program(fd, Some((claimed, g))).expect("duplicate");
            let id = d.ident();
            d.disown_for_test();
            crate::sys::remembered::generation() == Some(g) && id == Some(claimed)
        });
        assert!(trusted, "the look of an unchanged generation was not taken");
        let g = crate::sys::remembered::generation().expect("on");
        crate::sys::remembered::changing(|| ());
        let d = InternalFd::dup_of_program(fd, Some((claimed, g))).expect("duplicate");
        assert_eq!(d.ident(), Some(real), "a look of an older generation was taken");
    }

    #[test]
    fn ranges_are_split_around_own_descriptors_only() {
        let a = InternalFd::new(eventfd()).expect("internal");
        let b = InternalFd::new(eventfd()).expect("internal");
        let c = InternalFd::new(eventfd()).expect("internal");
        let mut own = [a.as_raw_fd() as u32, b.as_raw_fd() as u32, c.as_raw_fd() as u32];
        own.sort();
        let [x, y, z] = own;
        assert!(crate::raw::is_own_fd(x as i32) && !crate::raw::is_own_fd(0));

        // Everything: the gaps between (other tests' numbers may be own
        // too, so only what must hold is checked).
        let all = pieces(0, u32::MAX);
        assert_eq!(all.first().map(|p| p.0), Some(0));
        assert_eq!(all.last().map(|p| p.1), Some(u32::MAX));
        for (i, &(lo, hi)) in all.iter().enumerate() {
            assert!(lo <= hi);
            assert!(!own.iter().any(|&o| (lo..=hi).contains(&o)), "{lo}..={hi} holds an own number");
            if let Some(&(next, _)) = all.get(i + 1) {
                assert!(next > hi + 1, "pieces {lo}..={hi} and {next} touch");
                assert!((hi + 1..next).all(|n| crate::raw::is_own_fd(n as i32)));
            }
        }
        // Exactly one own number: nothing to call.
        assert!(pieces(y, y).is_empty());
        // The range below and above one number.
        let p = pieces(x, z);
        assert!(p.iter().all(|&(lo, hi)| lo > x && hi < z));
        // A call that fails stops the walk, and its value is returned.
        let mut calls = 0;
        let r = crate::raw::around_own_fds(0, u32::MAX, |_, _| {
            calls += 1;
            -9
        });
        assert_eq!((r, calls), (-9, 1));
        // Below the floor: one piece, unchanged.
        assert_eq!(pieces(0, 2), vec![(0, 2)]);
        drop((a, b, c));
    }

    #[test]
    fn a_closing_closure_that_makes_a_descriptor_does_not_wait_for_itself() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let made = crate::raw::program_closing(|| InternalFd::new(eventfd()).is_ok());
            let _ = tx.send(made);
        });
        let made = rx.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(made, Ok(true), "program_closing's closure waited for itself (30 s)");
        // The gate is open again: another thread makes one at once.
        assert!(std::thread::spawn(|| InternalFd::new(eventfd()).is_ok()).join().expect("thread"));
    }
}
