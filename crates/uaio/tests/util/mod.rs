//! Helpers shared by the engine's integration tests (each test file is its
//! own crate and uses what it needs).
#![allow(dead_code)]

use std::os::fd::{FromRawFd, OwnedFd};

pub mod seccomp;

use uaio::abi::iocb;

/// An iocb with the fields every request sets.
pub fn cb(op: u16, fd: i32, buf: u64, len: u64, off: i64, data: u64) -> iocb {
    iocb {
        aio_data: data,
        aio_lio_opcode: op,
        aio_fildes: fd as u32,
        aio_buf: buf,
        aio_nbytes: len,
        aio_offset: off,
        ..Default::default()
    }
}

/// A pipe, as (read end, write end), close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
}

/// The names of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// A new file opened `O_DIRECT` (read and write, unlinked at once) in the
/// first of `dirs` whose file system takes it; what each refused when
/// none does (tmpfs refuses `O_DIRECT`).
pub fn direct_file(dirs: &[std::path::PathBuf], tag: &str) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tried = Vec::new();
    for dir in dirs {
        let path = dir.join(format!("uaio-{tag}-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path);
        let _ = std::fs::remove_file(&path);
        match f {
            Ok(f) => return Ok(f),
            Err(e) => tried.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(format!("no directory here takes O_DIRECT: {tried:?}"))
}

/// Whether kernel AIO answers here (a seccomp filter or `aio-max-nr` may
/// refuse it; the thread pool's direct lane is then never made).
pub fn kernel_aio_works() -> Result<(), String> {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup into a local, destroyed at once.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx) };
    if r != 0 {
        return Err(format!("io_setup refused: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the context just made.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    Ok(())
}

/// For a test of the thread pool's direct lane: chooses the thread pool
/// for the process (before its first uaio call) and gives an `O_DIRECT`
/// file (unlinked) named after `tag`, or `None` after printing why the
/// test is skipped here.
pub fn lane_test_file(tag: &str) -> Option<std::fs::File> {
    // SAFETY (edition 2021: safe call): set before the first uaio call of
    // this process, which is where the backend is chosen.
    std::env::set_var("UAIO_BACKEND", "threads");
    let ready = kernel_aio_works().and_then(|()| {
        let dirs = [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir(), std::env::current_dir().unwrap()];
        direct_file(&dirs, tag)
    });
    match ready {
        Ok(f) => Some(f),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Sets its flag when dropped: a test's main thread holds one so that a
/// helper thread looping until the flag is set ends even when an
/// assertion fails, and the test reports instead of hanging.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A 4 KiB aligned block whose bytes depend on `i` (its number, mixed
/// with the offset in the block).
pub fn numbered_block(i: u64) -> uaio::AlignedBuf {
    let mut b = uaio::AlignedBuf::with_alignment(4096, 4096).unwrap();
    for (j, x) in b.iter_mut().enumerate() {
        *x = (i.to_le_bytes()[j % 8]) ^ (j / 8) as u8;
    }
    b
}

/// The lowest number uaio gives its own descriptors: half the soft
/// `RLIMIT_NOFILE`, at most 4096 (see the README, "How it works").
pub fn uaio_floor() -> i32 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    let soft = if rl.rlim_cur == libc::RLIM_INFINITY { 1 << 20 } else { rl.rlim_cur as usize };
    (soft / 2).clamp(3, 4096) as i32
}

/// Waits for the child `pid` to end, at most `limit`: its `waitpid`
/// status, or `None` when it was still running then (it is killed and
/// reaped).
pub fn wait_child_for(pid: i32, limit: std::time::Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child, without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Runs `child` in a `fork` child (a panic there is exit code 99) and
/// returns its exit code; panics if it does not end within `limit` (a
/// hang) or ends by a signal.
pub fn exit_code_of_child(child: fn() -> i32, limit: std::time::Duration) -> i32 {
    // SAFETY: fork(2); the child runs `child` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code = std::panic::catch_unwind(child).unwrap_or(99);
        // SAFETY: ending the forked child without running the parent's
        // exit handlers.
        unsafe { libc::_exit(code) };
    }
    let status = wait_child_for(pid, limit).expect("the child did not finish: hung");
    assert!(libc::WIFEXITED(status), "child ended by signal {}", libc::WTERMSIG(status));
    libc::WEXITSTATUS(status)
}

/// A file system of its own, made with `mkfs.KIND` on an image in
/// /var/tmp and loop-mounted with `options`; unmounted on drop.
pub struct LoopFs {
    dir: tempfile::TempDir,
}

impl LoopFs {
    /// Makes and mounts it; `Err` (the reason, for a skip message) where
    /// that cannot be done here (no `mkfs.KIND`, not root, no loop device).
    pub fn mount(kind: &str, mkfs_args: &[&str], options: &str) -> Result<LoopFs, String> {
        use std::process::Command;
        let dir = tempfile::tempdir_in("/var/tmp").map_err(|e| e.to_string())?;
        let img = dir.path().join("img");
        std::fs::File::create(&img).and_then(|f| f.set_len(512 << 20)).map_err(|e| format!("image: {e}"))?;
        let mkfs = Command::new(format!("mkfs.{kind}")).args(mkfs_args).arg(&img).output();
        if !mkfs.as_ref().is_ok_and(|o| o.status.success()) {
            return Err(format!("mkfs.{kind} is not usable here"));
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let opts = if options.is_empty() { "loop".to_string() } else { format!("loop,{options}") };
        let ok =
            Command::new("mount").args(["-o", &opts]).arg(&img).arg(&mnt).output().is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("cannot loop-mount a {kind} image here (root and a loop device needed)"));
        }
        Ok(LoopFs { dir })
    }

    /// [`LoopFs::mount`], or `None` after printing why the test is
    /// skipped.
    pub fn mount_or_skip(kind: &str, mkfs_args: &[&str], options: &str) -> Option<LoopFs> {
        LoopFs::mount(kind, mkfs_args, options).map_err(|why| println!("skipped: {why}")).ok()
    }

    /// A path in the mounted file system.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("mnt").join(name)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path().join("mnt")).status();
    }
}
