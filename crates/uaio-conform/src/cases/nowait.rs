//! `io_submit` never waits for a device. A loop device is made slow with
//! the block I/O throttle of a cgroup (2 KiB/s for reads, writes or both),
//! and requests that need it are submitted from a process in that cgroup:
//! when `io_submit` returns, they must still be in flight (each needs two
//! seconds of device time), on uaio always, and on the kernel wherever its
//! AIO is asynchronous (direct I/O). The check is structural, not a timing:
//! had `io_submit` waited for the device, the event would be in the ring
//! when it returned, so the margin is the device time against the time
//! `io_submit` takes (microseconds), well over 100×.
//!
//! The cases: direct reads and writes of the device, one request or a batch
//! of eight; a buffered read of the device itself and of a file of an ext4
//! file system on it, neither in the page cache (the kernel's AIO reads
//! those inside `io_submit`, uaio does not: a documented extension, and
//! uaio's own non-blocking first attempt must give up rather than wait); a
//! buffered write of part of an uncached block of that file (the file
//! system reads the block first, which the kernel's AIO does inside
//! `io_submit`: an extension too); the same file read with `RWF_NOWAIT` set
//! by the application (both answer `-EAGAIN` at once, and the data is still
//! not there afterwards); and a direct read and a direct write with
//! `RWF_NOWAIT` (the kernel's AIO leaves them in flight).
//!
//! A case is skipped, saying why, where no loop device, throttle or file
//! system can be made. A skipped extension case records the documented line
//! of its side next to the reason, since the harness compares those lines.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::fixtures::*;
use crate::*;

/// Bytes per second the throttled device serves.
const BPS: u64 = 2048;

/// Bytes of each request: two seconds of device time.
const LEN: usize = 4096;

/// Size of the scratch image behind the loop device.
const IMAGE: u64 = 16 << 20;

/// `BLKFLSBUF`: write back and drop a block device's page cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// The lines an extension case's two sides must show.
const WAITED: &str = "events ready when io_submit returned: 1";
const LEFT: &str = "events ready when io_submit returned: 0";

/// Which directions the device is slow in, and whether it carries a file
/// system with one uncached file.
#[derive(Debug, Clone, Copy)]
struct Need {
    read: bool,
    write: bool,
    fs: bool,
}

/// What a process in the throttled cgroup needs to know: the device, the
/// cgroup to join, the throttle files, and the file on the file system.
#[derive(Debug, Clone)]
struct Slow {
    dev: String,
    majmin: String,
    tasks: PathBuf,
    limits: Vec<PathBuf>,
    file: Option<String>,
}

impl Slow {
    /// Moves the calling (single-threaded) process into the cgroup; the
    /// threads it starts later are in it too.
    fn join(&self) -> Result<(), String> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        std::fs::write(&self.tasks, pid.to_string()).map_err(|e| format!("could not join the throttled cgroup: {e}"))
    }

    /// Lifts the limits: what the throttle holds is dispatched at once.
    fn lift(&self) {
        for f in &self.limits {
            let _ = std::fs::write(f, format!("{} 0", self.majmin));
        }
    }
}

/// A loop device over a scratch file, throttled for the processes of one
/// cgroup, with an ext4 file system mounted on it when asked for; all of it
/// torn down on drop.
struct SlowDevice {
    dir: PathBuf,
    dev: Option<String>,
    cgroup: Option<PathBuf>,
    mount: Option<PathBuf>,
    slow: Option<Slow>,
}

impl SlowDevice {
    fn new(need: Need) -> Result<SlowDevice, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("uaio-nowait-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("scratch dir: {e}"))?;
        // Whatever fails from here on, drop undoes what was done.
        let mut s = SlowDevice { dir, dev: None, cgroup: None, mount: None, slow: None };
        s.build(need, n)?;
        Ok(s)
    }

    fn build(&mut self, need: Need, n: u32) -> Result<(), String> {
        let base = PathBuf::from("/sys/fs/cgroup/blkio");
        if !base.join("blkio.throttle.read_bps_device").exists() {
            return Err("no cgroup v1 blkio throttle here".into());
        }
        if need.fs && !["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"].iter().any(|p| Path::new(p).exists()) {
            return Err("no mkfs.ext4 here".into());
        }
        let img = self.dir.join("slow.img");
        let f = std::fs::File::create(&img).map_err(|e| format!("scratch image: {e}"))?;
        f.set_len(IMAGE).map_err(|e| format!("scratch image: {e}"))?;
        let out =
            Command::new("losetup").args(["-f", "--show"]).arg(&img).output().map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.dev = Some(dev.clone());
        let rdev = std::fs::metadata(&dev).map(|m| std::os::unix::fs::MetadataExt::rdev(&m));
        let rdev = rdev.map_err(|e| format!("{dev}: {e}"))?;
        let majmin = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
        let mut file = None;
        if need.fs {
            file = Some(self.make_fs(&dev)?);
        }
        let cgroup = base.join(format!("uaio-conform-{}-{n}", std::process::id()));
        std::fs::create_dir(&cgroup).map_err(|e| format!("cgroup: {e}"))?;
        self.cgroup = Some(cgroup.clone());
        let mut limits = Vec::new();
        for (on, name) in
            [(need.read, "blkio.throttle.read_bps_device"), (need.write, "blkio.throttle.write_bps_device")]
        {
            if on {
                let p = cgroup.join(name);
                std::fs::write(&p, format!("{majmin} {BPS}")).map_err(|e| format!("throttle: {e}"))?;
                limits.push(p);
            }
        }
        self.slow = Some(Slow { dev, majmin, tasks: cgroup.join("tasks"), limits, file });
        Ok(())
    }

    /// Makes an ext4 file system on the device, mounts it on a fresh
    /// directory and writes one file of [`LEN`] bytes, which is then dropped
    /// from the page cache; returns the file's path.
    fn make_fs(&mut self, dev: &str) -> Result<String, String> {
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev])
            .output()
            .map_err(|e| format!("mkfs.ext4: {e}"))?;
        if !out.status.success() {
            return Err(format!("mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let mnt = self.dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| format!("mount point: {e}"))?;
        let src = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
        let target = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: mount(2) with valid C strings and no option data.
        let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), c"ext4".as_ptr(), 0, std::ptr::null()) };
        if r != 0 {
            return Err(format!("mount -t ext4 refused: {}", std::io::Error::last_os_error()));
        }
        self.mount = Some(mnt.clone());
        let path = mnt.join("data");
        std::fs::write(&path, pattern()).map_err(|e| format!("data file: {e}"))?;
        let f = std::fs::File::open(&path).map_err(|e| format!("data file: {e}"))?;
        f.sync_all().map_err(|e| format!("fsync: {e}"))?;
        // SAFETY: an advice on an open descriptor; the pages are clean.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        Ok(path.to_string_lossy().into_owned())
    }
}

impl Drop for SlowDevice {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            let c = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: unmounting the file system this value mounted; a busy
            // one is detached and goes when its last user does.
            unsafe {
                if libc::umount2(c.as_ptr(), 0) != 0 {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
        if let Some(cg) = self.cgroup.take() {
            // The child that was in it has been reaped; its threads may take
            // a moment longer to leave.
            for _ in 0..100 {
                if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        if let Some(dev) = self.dev.take() {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bytes of the data file (and of what the write cases write).
fn pattern() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 + 3) as u8).collect()
}

/// Opens without panicking (the caller is a forked child).
fn try_open(path: &str, flags: i32) -> Result<OwnedFd, String> {
    let c = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("open {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(own(fd))
}

/// How many pages of `[off, off + len)` of `fd` are in the page cache
/// (`mincore` of a shared mapping, which does not fault anything in).
fn cached_pages(fd: &OwnedFd, off: i64, len: usize) -> String {
    // SAFETY: a new read-only shared mapping of the range; nothing touches
    // its pages, and it is unmapped below.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), off) };
    if p == libc::MAP_FAILED {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: mincore on the mapping just made, into a vector of one byte
    // per page; then the mapping is removed.
    let r = unsafe {
        let r = libc::mincore(p, len, vec.as_mut_ptr());
        libc::munmap(p, len);
        r
    };
    if r != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    vec.iter().filter(|&&b| b & 1 != 0).count().to_string()
}

/// One read or write of [`LEN`] bytes into (or from) its own page.
fn request(op: u16, fd: &OwnedFd, off: i64, data: u64, rw_flags: u32) -> &'static mut iocb {
    let buf = anon_pages(1);
    if op == IOCB_CMD_PWRITE {
        // SAFETY: filling the page just mapped.
        unsafe { std::ptr::copy_nonoverlapping(pattern().as_ptr(), buf, LEN) };
    }
    let a = leak(cb(op, fd.as_raw_fd(), buf as u64, LEN as u64, off, data));
    a.aio_rw_flags = rw_flags;
    a
}

/// Submits the requests, records how many events were ready when
/// `io_submit` returned, then reaps them all: the first while the device is
/// still slow, the others with the throttle lifted (eight requests would
/// otherwise take sixteen seconds). Events are recorded by `aio_data`, with
/// whether a read brought the expected bytes.
fn submit_and_watch(aio: &'static dyn Aio, slow: &Slow, reqs: Vec<&'static mut iocb>, out: &mut Vec<String>) {
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(16, &mut ctx) })));
    let n = reqs.len();
    let bufs: Vec<u64> = reqs.iter().map(|a| a.aio_buf).collect();
    let reads: Vec<bool> = reqs.iter().map(|a| a.aio_lio_opcode == IOCB_CMD_PREAD).collect();
    let mut ptrs: Vec<*mut iocb> = reqs.into_iter().map(|a| a as *mut iocb).collect();
    // SAFETY: valid iocbs whose buffers live for the process.
    let r = unsafe { aio.submit(ctx, n as i64, ptrs.as_mut_ptr()) };
    let mut evs = vec![io_event::default(); n];
    let mut now = ts(0, 0);
    // SAFETY: room for n events; a zero timeout.
    let ready = unsafe { aio.getevents(ctx, 0, n as i64, evs.as_mut_ptr(), &mut now) };
    out.push(format!("submit = {}", ret(r)));
    out.push(format!("events ready when io_submit returned: {}", ret(ready)));
    let mut got = ready.max(0) as usize;
    if got == 0 && r > 0 {
        let mut t = ts(30, 0);
        // SAFETY: room for n events.
        let k = unsafe { aio.getevents(ctx, 1, n as i64, evs.as_mut_ptr(), &mut t) };
        out.push(format!("then, with the device still slow: {}", if k >= 1 { "an event" } else { "none" }));
        got = k.max(0) as usize;
    }
    slow.lift();
    if got < r.max(0) as usize {
        let want = r as usize - got;
        let mut t = ts(30, 0);
        // SAFETY: room for the remaining events.
        let k = unsafe { aio.getevents(ctx, want as i64, want as i64, evs[got..].as_mut_ptr(), &mut t) };
        got += k.max(0) as usize;
    }
    evs.truncate(got);
    evs.sort_by_key(|e| e.data);
    let expected = pattern();
    for e in &evs {
        let i = e.data as usize;
        let res = if e.res < 0 { errno_name(e.res) } else { e.res.to_string() };
        let mut line = format!("event data={} res={res}", e.data);
        if reads.get(i).copied().unwrap_or(false) && e.res == LEN as i64 {
            // SAFETY: the read filled LEN bytes of its page, which lives
            // for the process.
            let b = unsafe { std::slice::from_raw_parts(bufs[i] as *const u8, LEN) };
            line += if b == expected.as_slice() {
                " bytes as written"
            } else if b.iter().all(|&x| x == 0) {
                " zeros"
            } else {
                " other bytes"
            };
        }
        out.push(line);
    }
    // SAFETY: destroying the context made above.
    unsafe { aio.destroy(ctx) };
}

/// The body of a case, run in a child that joined the throttled cgroup.
type Body = fn(&'static dyn Aio, &Slow, &mut Vec<String>) -> Result<(), String>;

/// Builds a slow device as `need` says, runs `body` in a child process in
/// its cgroup, records what the child reported, and tears everything down.
fn run(e: &mut Env, need: Need, extension: bool, body: Body) {
    let aio = aio_of(e);
    let dev = match SlowDevice::new(need) {
        Ok(d) => d,
        Err(why) => {
            // The reason in detail, apart from the results (stdout may be
            // a JSON document).
            eprintln!("     skipped: {why}");
            e.rec("skipped: no throttled loop device here");
            if extension {
                e.rec(if e.is_kernel() { WAITED } else { LEFT });
            }
            return;
        }
    };
    let Some(slow) = dev.slow.clone() else { return };
    let lines = in_child(move |out| {
        // SAFETY: alarm(2); the child is killed if it hangs.
        unsafe { libc::alarm(90) };
        if let Err(why) = slow.join().and_then(|()| body(aio, &slow, out)) {
            out.push(why);
        }
        slow.lift();
    });
    drop(dev);
    e.rec_all(lines);
}

/// A first small direct transfer takes whatever burst the throttle allows.
fn warm_up(slow: &Slow, write: bool, out: &mut Vec<String>) -> Result<(), String> {
    let d = try_open(&slow.dev, if write { libc::O_WRONLY } else { libc::O_RDONLY } | libc::O_DIRECT)?;
    let buf = anon_pages(1);
    // SAFETY: a 512-byte direct transfer from or into a page-aligned page.
    let n = unsafe {
        if write {
            libc::pwrite(d.as_raw_fd(), buf.cast(), 512, 0)
        } else {
            libc::pread(d.as_raw_fd(), buf.cast(), 512, 0)
        }
    };
    out.push(format!("warm-up = {n}"));
    Ok(())
}

/// Direct transfers of the device, `n` of them in one batch, at offsets no
/// other case has touched.
fn direct(aio: &'static dyn Aio, slow: &Slow, out: &mut Vec<String>, write: bool, n: usize) -> Result<(), String> {
    warm_up(slow, write, out)?;
    let d = try_open(&slow.dev, if write { libc::O_WRONLY } else { libc::O_RDONLY } | libc::O_DIRECT)?;
    let op = if write { IOCB_CMD_PWRITE } else { IOCB_CMD_PREAD };
    let reqs = (0..n).map(|i| request(op, &d, (64 << 10) + (i * LEN) as i64, i as u64, 0)).collect();
    submit_and_watch(aio, slow, reqs, out);
    Ok(())
}

/// One direct transfer of the device with `RWF_NOWAIT` set by the
/// application: the kernel's AIO sends it to the device (`REQ_NOWAIT` only
/// forbids waiting for a request slot) and returns.
fn direct_nowait(aio: &'static dyn Aio, slow: &Slow, out: &mut Vec<String>, write: bool) -> Result<(), String> {
    warm_up(slow, write, out)?;
    let d = try_open(&slow.dev, if write { libc::O_WRONLY } else { libc::O_RDONLY } | libc::O_DIRECT)?;
    let op = if write { IOCB_CMD_PWRITE } else { IOCB_CMD_PREAD };
    submit_and_watch(aio, slow, vec![request(op, &d, 64 << 10, 0, RWF_NOWAIT)], out);
    Ok(())
}

/// A direct read through a descriptor number that named the same device
/// opened buffered a moment before (closed and opened again `O_DIRECT`,
/// the number reused), after a buffered read through the old one: uaio
/// must not trust what it saw of the number then.
fn direct_after_reopen(aio: &'static dyn Aio, slow: &Slow, out: &mut Vec<String>) -> Result<(), String> {
    let path = slow.file.clone().ok_or("no file system on the slow device")?;
    let b = try_open(&path, libc::O_RDONLY)?;
    // Bring the first page in (two seconds at the device's pace).
    let page = anon_pages(1);
    // SAFETY: a read of LEN bytes into a fresh page.
    let n = unsafe { libc::pread(b.as_raw_fd(), page.cast(), LEN, 0) };
    out.push(format!("plain read = {n}"));
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
    // A page the warm-up brought in: the buffered read is served at once.
    let mut p = [request(IOCB_CMD_PREAD, &b, 0, 0, 0) as *mut iocb];
    // SAFETY: one valid iocb whose buffer lives for the process.
    out.push(format!("buffered submit = {}", ret(unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) })));
    let mut ev = [io_event::default(); 1];
    let mut t = ts(30, 0);
    // SAFETY: room for one event.
    out.push(format!("buffered read reaped: {}", ret(unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) })));
    // At once (within the same clock tick as the buffered read): close,
    // open O_DIRECT under the same number, submit.
    let number = b.as_raw_fd();
    drop(b);
    let d = try_open(&path, libc::O_RDONLY | libc::O_DIRECT)?;
    let mut p = [request(IOCB_CMD_PREAD, &d, 0, 1, 0) as *mut iocb];
    // SAFETY: one valid iocb whose buffer lives for the process.
    let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
    let mut now = ts(0, 0);
    // SAFETY: room for one event; a zero timeout.
    let ready = unsafe { aio.getevents(ctx, 0, 1, ev.as_mut_ptr(), &mut now) };
    out.push(format!("same number again: {}", d.as_raw_fd() == number));
    out.push(format!("direct submit = {}", ret(r)));
    out.push(format!("events ready when io_submit returned: {}", ret(ready)));
    slow.lift();
    if ready == 0 {
        let mut t = ts(30, 0);
        // SAFETY: room for one event.
        let k = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
        out.push(format!("then: {} event(s), res {}", ret(k), ev[0].res));
    }
    // SAFETY: destroying the context made above.
    unsafe { aio.destroy(ctx) };
    Ok(())
}

/// A buffered read of [`LEN`] bytes of the file at `path` (or of the
/// device), after making sure none of it is in the page cache.
fn buffered(aio: &'static dyn Aio, slow: &Slow, out: &mut Vec<String>, rw_flags: u32) -> Result<(), String> {
    warm_up(slow, false, out)?;
    let (path, off) = match &slow.file {
        Some(f) => (f.as_str(), 0),
        None => (slow.dev.as_str(), 128 << 10),
    };
    if slow.file.is_none() {
        // The device's content is the pattern, written directly (only
        // reads are slow), which bypasses the page cache.
        let w = try_open(&slow.dev, libc::O_WRONLY | libc::O_DIRECT)?;
        let buf = anon_pages(1);
        // SAFETY: filling a fresh page, then a direct write from it.
        let n = unsafe {
            std::ptr::copy_nonoverlapping(pattern().as_ptr(), buf, LEN);
            libc::pwrite(w.as_raw_fd(), buf.cast(), LEN, off)
        };
        out.push(format!("content written = {n}"));
    }
    let fd = try_open(path, libc::O_RDONLY)?;
    if slow.file.is_none() {
        // SAFETY: ioctl(BLKFLSBUF) takes no argument; fadvise on an open
        // descriptor. Random access: the read brings only its own page,
        // not a readahead window (which would take a minute here).
        unsafe {
            libc::ioctl(fd.as_raw_fd(), BLKFLSBUF, 0);
            libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
        }
    }
    out.push(format!("pages in the page cache before: {}", cached_pages(&fd, off, LEN)));
    let a = request(IOCB_CMD_PREAD, &fd, off, 0, rw_flags);
    if rw_flags & RWF_NOWAIT == 0 {
        submit_and_watch(aio, slow, vec![a], out);
        return Ok(());
    }
    // RWF_NOWAIT from the application: its own answer, at once, and the
    // device read it started is still under way afterwards.
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
    let mut p = [a as *mut iocb];
    // SAFETY: one valid iocb whose buffer lives for the process.
    let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
    let mut ev = [io_event::default(); 1];
    let mut now = ts(0, 0);
    // SAFETY: room for one event; a zero timeout.
    let ready = unsafe { aio.getevents(ctx, 0, 1, ev.as_mut_ptr(), &mut now) };
    out.push(format!("submit = {}", ret(r)));
    out.push(format!("events ready when io_submit returned: {}", ret(ready)));
    if ready == 1 {
        out.push(format!("res = {}", ret(ev[0].res)));
    }
    let mut probe = vec![0u8; LEN];
    let v = libc::iovec { iov_base: probe.as_mut_ptr().cast(), iov_len: LEN };
    // SAFETY: a non-blocking read into a local buffer.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &v, 1, off, RWF_NOWAIT as i32) };
    let n = if n < 0 {
        errno_name(-(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64))
    } else {
        n.to_string()
    };
    out.push(format!("the data right after: {n}"));
    slow.lift();
    // SAFETY: a blocking read into the same buffer.
    let n = unsafe { libc::pread(fd.as_raw_fd(), probe.as_mut_ptr().cast(), LEN, off) };
    out.push(format!(
        "then a plain read = {n}, {}",
        if probe == pattern() { "bytes as written" } else { "other bytes" }
    ));
    // SAFETY: destroying the context made above.
    unsafe { aio.destroy(ctx) };
    Ok(())
}

/// A buffered write of 512 bytes into the middle of the uncached first
/// block of the file: the file system must read the block (two seconds)
/// before it can copy the bytes in.
fn partial_write(aio: &'static dyn Aio, slow: &Slow, out: &mut Vec<String>) -> Result<(), String> {
    warm_up(slow, false, out)?;
    let Some(path) = &slow.file else { return Err("no file".into()) };
    let fd = try_open(path, libc::O_RDWR)?;
    out.push(format!("pages in the page cache before: {}", cached_pages(&fd, 0, LEN)));
    let buf = anon_pages(1);
    // SAFETY: filling the first 512 bytes of the page just mapped.
    unsafe { std::ptr::write_bytes(buf, 0xab, 512) };
    let a = leak(cb(IOCB_CMD_PWRITE, fd.as_raw_fd(), buf as u64, 512, 1024, 0));
    submit_and_watch(aio, slow, vec![a], out);
    let mut expected = pattern();
    expected[1024..1536].fill(0xab);
    let mut back = vec![0u8; LEN];
    // SAFETY: a read into a local buffer (the throttle is lifted).
    let n = unsafe { libc::pread(fd.as_raw_fd(), back.as_mut_ptr().cast(), LEN, 0) };
    out.push(format!("file read back = {n}, {}", if back == expected { "as expected" } else { "other bytes" }));
    Ok(())
}

/// A case whose two sides must differ: the kernel's `io_submit` waits for
/// the device, uaio's does not.
fn ext(name: &'static str, run: fn(&mut Env)) -> Case {
    Case {
        name,
        expect: Expect::Differs {
            why: "io_submit never blocks on I/O, whatever the file (the kernel reads buffered files inside it)",
            kernel: WAITED,
            uaio: LEFT,
        },
        run,
    }
}

const READ: Need = Need { read: true, write: false, fs: false };
const WRITE: Need = Need { read: false, write: true, fs: false };
const FS: Need = Need { read: true, write: false, fs: true };

pub(crate) fn cases() -> Vec<Case> {
    vec![
        c("nowait/direct_read_of_a_slow_device_leaves_submit_at_once", |e| {
            run(e, READ, false, |aio, slow, out| direct(aio, slow, out, false, 1))
        }),
        c("nowait/direct_reads_of_a_slow_device_batch_of_8_leave_submit_at_once", |e| {
            run(e, READ, false, |aio, slow, out| direct(aio, slow, out, false, 8))
        }),
        c("nowait/direct_write_of_a_slow_device_leaves_submit_at_once", |e| {
            run(e, WRITE, false, |aio, slow, out| direct(aio, slow, out, true, 1))
        }),
        c("nowait/direct_writes_of_a_slow_device_batch_of_8_leave_submit_at_once", |e| {
            run(e, WRITE, false, |aio, slow, out| direct(aio, slow, out, true, 8))
        }),
        c("nowait/direct_read_with_rwf_nowait_of_a_slow_device_leaves_submit_at_once", |e| {
            run(e, READ, false, |aio, slow, out| direct_nowait(aio, slow, out, false))
        }),
        c("nowait/direct_write_with_rwf_nowait_of_a_slow_device_leaves_submit_at_once", |e| {
            run(e, WRITE, false, |aio, slow, out| direct_nowait(aio, slow, out, true))
        }),
        c("nowait/direct_read_through_a_number_just_reopened_direct_leaves_submit_at_once", |e| {
            run(e, FS, false, direct_after_reopen)
        }),
        ext("nowait/buffered_read_of_an_uncached_slow_device_leaves_submit_at_once", |e| {
            run(e, READ, true, |aio, slow, out| buffered(aio, slow, out, 0))
        }),
        ext("nowait/buffered_read_of_an_uncached_ext4_file_on_a_slow_device_leaves_submit_at_once", |e| {
            run(e, FS, true, |aio, slow, out| buffered(aio, slow, out, 0))
        }),
        ext("nowait/partial_buffered_write_of_an_uncached_ext4_block_on_a_slow_device_leaves_submit_at_once", |e| {
            run(e, FS, true, partial_write)
        }),
        c("nowait/rwf_nowait_read_of_an_uncached_ext4_file_on_a_slow_device_answers_eagain_at_once", |e| {
            run(e, FS, false, |aio, slow, out| buffered(aio, slow, out, RWF_NOWAIT))
        }),
    ]
}
