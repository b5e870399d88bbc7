//! What cases are built from: iocbs and buffers that outlive the case,
//! recorded calls, pages with chosen protections, the ring read in user
//! space, signal handlers and masks, descriptors.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::*;

/// `IOCB_CMD_PREAD`, short.
pub(crate) const RD: u16 = IOCB_CMD_PREAD;

/// `IOCB_CMD_PWRITE`, short.
pub(crate) const WR: u16 = IOCB_CMD_PWRITE;

/// An address in the kernel's half: never valid user memory.
pub(crate) const KADDR: u64 = 0xffff_8000_0000_0000;

/// A case whose traces must be identical.
pub(crate) fn c(name: &'static str, run: fn(&mut Env)) -> Case {
    Case { name, expect: Expect::Same, run }
}

/// The implementation a case runs against, as a `'static` value that can be
/// moved into other threads and forked children.
pub(crate) fn aio_of(e: &Env) -> &'static dyn Aio {
    if e.is_kernel() {
        &Kernel
    } else {
        &Uaio
    }
}

/// Moves an iocb to the heap for the rest of the process, so its address is
/// unique and stays valid however the case ends (pending requests may still
/// name it).
pub(crate) fn leak(a: iocb) -> &'static mut iocb {
    Box::leak(Box::new(a))
}

/// A zeroed heap buffer that lives for the rest of the process.
pub(crate) fn leak_buf(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

/// Submits one iocb whose `aio_key` was set to 9, and records the result
/// and what `aio_key` holds afterwards.
pub(crate) fn try_key(e: &mut Env, ctx: u64, what: &str, a: iocb) -> i64 {
    let a = leak(a);
    a.aio_key = 9;
    e.name_iocb(a);
    let mut p = [a as *mut iocb];
    // SAFETY: one valid iocb pointer.
    let r = unsafe { e.aio.submit(ctx, 1, p.as_mut_ptr()) };
    let key = a.aio_key;
    e.rec(format!("{what}: submit = {} key={key}", ret(r)));
    r
}

/// A POLL for input on `fd`, made to live forever.
pub(crate) fn poll_cb(fd: &std::os::fd::OwnedFd, data: u64) -> &'static mut iocb {
    leak(cb(IOCB_CMD_POLL, std::os::fd::AsRawFd::as_raw_fd(fd), libc::POLLIN as u64, 0, 0, data))
}

/// In a forked child: arms a 20 s alarm (a hang kills the child), then
/// `io_setup(4)`, recorded; returns the handle.
pub(crate) fn child_context(aio: &dyn Aio, out: &mut Vec<String>) -> u64 {
    // SAFETY: alarm(2); the child is killed if it hangs.
    unsafe { libc::alarm(20) };
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
    ctx
}

/// Submits one iocb (made to live forever) and records the result.
pub(crate) fn sub1(e: &mut Env, ctx: u64, a: iocb) -> i64 {
    let a = leak(a);
    e.submit(ctx, &mut [a])
}

/// `io_cancel`, recorded under `what`.
pub(crate) fn cancel(e: &mut Env, what: &str, ctx: u64, cb: *mut iocb) -> i64 {
    // SAFETY: the harness passes whatever pointer the case wants to test.
    let r = unsafe { e.aio.cancel(ctx, cb, std::ptr::null_mut()) };
    e.rec(format!("{what}: cancel = {}", ret(r)));
    r
}

/// `io_destroy`, recorded under `what`.
pub(crate) fn destroy(e: &mut Env, what: &str, ctx: u64) -> i64 {
    // SAFETY: destroying any handle is safe; the kernel and uaio validate it.
    let r = unsafe { e.aio.destroy(ctx) };
    e.rec(format!("{what}: destroy = {}", ret(r)));
    r
}

/// The ring header of a live context.
pub(crate) fn ring(ctx: u64) -> *mut aio_ring {
    ctx as *mut aio_ring
}

/// Events in the ring that nobody has consumed yet, read the way a program
/// reaping in user space reads them.
pub(crate) fn ring_avail(ctx: u64) -> u32 {
    let r = ring(ctx);
    // SAFETY: the ring header of a live context is mapped and readable.
    unsafe {
        let nr = std::ptr::read_volatile(&(*r).nr);
        let head = std::ptr::read_volatile(&(*r).head) % nr;
        let tail = std::ptr::read_volatile(&(*r).tail) % nr;
        (tail + nr - head) % nr
    }
}

/// Waits (up to 5 s) until at least `n` events are in the ring; true if so.
pub(crate) fn wait_ready(ctx: u64, n: u32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if ring_avail(ctx) >= n {
            std::sync::atomic::fence(Ordering::Acquire);
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Takes one event out of the ring in user space (as fio, QEMU, SPDK and
/// Seastar do), waiting up to 5 s for it.
pub(crate) fn ring_take(ctx: u64) -> Option<io_event> {
    if !wait_ready(ctx, 1) {
        return None;
    }
    let r = ring(ctx);
    // SAFETY: ring header and events of a live context are mapped; head is
    // within the ring (checked by the modulo).
    unsafe {
        let nr = std::ptr::read_volatile(&(*r).nr);
        let head = std::ptr::read_volatile(&(*r).head) % nr;
        let hlen = std::ptr::read_volatile(&(*r).header_length) as u64;
        let ev = std::ptr::read_volatile((ctx + hlen + 32 * head as u64) as *const io_event);
        std::sync::atomic::fence(Ordering::Release);
        std::ptr::write_volatile(&mut (*r).head, (head + 1) % nr);
        Some(ev)
    }
}

/// A timespec from its two fields.
pub(crate) fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec { tv_sec: sec as _, tv_nsec: nsec as _ }
}

/// Bytes of an iocb (to copy it into a page with other protections).
pub(crate) fn iocb_bytes(a: &iocb) -> Vec<u8> {
    // SAFETY: iocb is plain old data of 64 bytes.
    unsafe { std::slice::from_raw_parts((a as *const iocb).cast::<u8>(), std::mem::size_of::<iocb>()).to_vec() }
}

/// Two adjacent pages, the first readable and writable, the second with no
/// access; returns the address of the first.
pub(crate) fn page_then_hole() -> u64 {
    let p = anon_pages(2);
    // SAFETY: taking all rights from the second page of a mapping just made.
    unsafe { libc::mprotect(p.add(4096).cast(), 4096, libc::PROT_NONE) };
    p as u64
}

/// Writes bytes to a descriptor.
pub(crate) fn write_fd(fd: i32, b: &[u8]) -> isize {
    // SAFETY: write from a valid slice.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}

/// Runs `f` on another thread after `ms` milliseconds.
pub(crate) fn later(ms: u64, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        f();
    })
}

/// Signal used by the signal cases.
pub(crate) const SIG: i32 = libc::SIGUSR2;

/// How many times the handler for [`SIG`] ran.
pub(crate) static SIG_COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sig(_: libc::c_int) {
    SIG_COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Installs the counting handler for [`SIG`], with or without `SA_RESTART`.
pub(crate) fn install_handler(restart: bool) {
    // SAFETY: sigaction with a zeroed struct and an async-signal-safe handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sig as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(SIG, &sa, std::ptr::null_mut());
    }
}

/// Sends [`SIG`] to a thread every 20 ms (starting after 50 ms) until stopped,
/// so a call that blocks is interrupted whenever it starts blocking.
#[derive(Debug)]
pub(crate) struct Spammer {
    done: Arc<AtomicBool>,
    t: Option<std::thread::JoinHandle<()>>,
}

impl Spammer {
    /// Starts sending to `target`.
    pub(crate) fn start(target: libc::pthread_t) -> Spammer {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            while !d.load(Ordering::SeqCst) {
                // SAFETY: the target thread is alive until stop() is joined.
                unsafe { libc::pthread_kill(target, SIG) };
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Spammer { done, t: Some(t) }
    }

    /// Stops sending and waits for the sender to end.
    pub(crate) fn stop(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
    }
}

/// The calling thread's signal mask.
pub(crate) fn thread_mask() -> libc::sigset_t {
    // SAFETY: querying the mask into a zeroed set.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut old);
        old
    }
}

/// Blocks or unblocks one signal in the calling thread.
pub(crate) fn set_blocked(sig: i32, blocked: bool) {
    // SAFETY: building a one-signal set and changing this thread's mask.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, sig);
        libc::pthread_sigmask(if blocked { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK }, &s, std::ptr::null_mut());
    }
}

/// Whether `sig` is in the set.
pub(crate) fn has(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: sigismember on a valid set.
    unsafe { libc::sigismember(set, sig) == 1 }
}

/// Whether `sig` is pending for the calling thread or the process.
pub(crate) fn pending(sig: i32) -> bool {
    // SAFETY: sigpending into a zeroed set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut s);
        libc::sigismember(&s, sig) == 1
    }
}

/// Takes a pending `sig` off (it must be blocked), waiting at most `ms`.
pub(crate) fn take_pending(sig: i32, ms: i64) -> bool {
    // SAFETY: sigtimedwait on a one-signal set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, sig);
        let t = ts(0, ms * 1_000_000);
        libc::sigtimedwait(&s, std::ptr::null_mut(), &t) == sig
    }
}

/// Opens a path with the given flags.
pub(crate) fn open(path: &str, flags: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(path).expect("path");
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path}");
    // SAFETY: freshly opened.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Another descriptor of the file of `f`, opened anew with `flags` through
/// `/proc/self/fd` (a new open file, with status flags of its own), or
/// the error of `open(2)`.
pub(crate) fn try_reopen(f: &std::os::fd::OwnedFd, flags: i32) -> Result<std::os::fd::OwnedFd, std::io::Error> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("path");
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: freshly opened.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// [`try_reopen`], which must succeed.
pub(crate) fn reopen(f: &std::os::fd::OwnedFd, flags: i32) -> std::os::fd::OwnedFd {
    try_reopen(f, flags).expect("reopen")
}

/// [`try_reopen`] with `O_DIRECT` added to `flags`, or `None`, recorded as
/// a skip alike on both sides, where the scratch file system refuses it.
pub(crate) fn reopen_direct(e: &mut Env, f: &std::os::fd::OwnedFd, flags: i32) -> Option<std::os::fd::OwnedFd> {
    let d = try_reopen(f, flags | libc::O_DIRECT).ok();
    if d.is_none() {
        e.rec("skipped: the scratch file system refuses O_DIRECT");
    }
    d
}

/// A FIFO made in the case's directory, opened by its name for reading
/// and writing (which never waits for a peer).
pub(crate) fn named_fifo(e: &Env) -> std::os::fd::OwnedFd {
    use std::os::fd::AsRawFd;
    let dir = e.dir_fd();
    // SAFETY: mkfifoat(3) of a name in the case's own directory.
    let made = unsafe { libc::mkfifoat(dir.as_raw_fd(), c"fifo".as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo");
    // SAFETY: openat(2) of that FIFO.
    own(unsafe { libc::openat(dir.as_raw_fd(), c"fifo".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

/// Wraps a raw descriptor that the case owns.
pub(crate) fn own(fd: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    assert!(fd >= 0);
    // SAFETY: the caller just created fd.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// A file system mounted for one case (a tmpfs, or a pseudo file system
/// such as tracefs), unmounted and removed on drop.
pub(crate) struct Mounted {
    dir: std::path::PathBuf,
}

/// A tmpfs mounted for one case.
pub(crate) type Tmpfs = Mounted;

impl Mounted {
    /// Mounts a tmpfs of `size` bytes on a fresh directory, or says why not.
    pub(crate) fn mount(size: usize) -> Result<Mounted, String> {
        Mounted::of("tmpfs", &format!("size={size}"))
    }

    /// Mounts a file system of type `kind` (with no device) and `options`
    /// on a fresh directory, or says why not.
    pub(crate) fn of(kind: &str, options: &str) -> Result<Mounted, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "uaio-conform-{kind}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
        let fstype = std::ffi::CString::new(kind).expect("type");
        let opts = std::ffi::CString::new(options).expect("options");
        // SAFETY: mount(2) with valid C strings; the data argument is the
        // option string the file system parses.
        let r = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, opts.as_ptr().cast()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount -t {kind} refused: {e}"));
        }
        Ok(Mounted { dir })
    }

    /// The path of `name` in the file system.
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: unmounting the file system this value mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.dir);
    }
}
