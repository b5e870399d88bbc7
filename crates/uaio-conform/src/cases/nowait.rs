//! `io_submit` never waits for a device. A loop device is made slow with
//! the block I/O throttle of a cgroup (2 KiB/s), and an `O_DIRECT` read of
//! it is submitted: when `io_submit` returns, the read must still be in
//! flight (the device needs two seconds for it), on the kernel as on uaio.
//! The check is structural, not a timing: had `io_submit` waited for the
//! device, the event would be in the ring when it returned. The case is
//! skipped, saying why, where no loop device or throttle can be made.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use super::util::*;
use crate::*;

/// Bytes per second the throttled device serves.
const BPS: u64 = 2048;

/// A loop device over a scratch file, throttled for the processes of one
/// cgroup; torn down on drop.
struct SlowDevice {
    dev: String,
    cgroup: PathBuf,
}

impl SlowDevice {
    fn new(dir: &std::path::Path) -> Result<SlowDevice, String> {
        let img = dir.join("slow.img");
        let f = std::fs::File::create(&img).map_err(|e| format!("scratch image: {e}"))?;
        f.set_len(1 << 20).map_err(|e| format!("scratch image: {e}"))?;
        let out =
            Command::new("losetup").args(["-f", "--show"]).arg(&img).output().map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let detach = |why: String| {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
            Err(why)
        };
        let rdev = match std::fs::metadata(&dev) {
            Ok(m) => std::os::unix::fs::MetadataExt::rdev(&m),
            Err(e) => return detach(format!("{dev}: {e}")),
        };
        let base = PathBuf::from("/sys/fs/cgroup/blkio");
        if !base.join("blkio.throttle.read_bps_device").exists() {
            return detach("no cgroup v1 blkio throttle here".into());
        }
        let cgroup = base.join(format!("uaio-conform-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&cgroup) {
            return detach(format!("cgroup: {e}"));
        }
        let rule = format!("{}:{} {BPS}", libc::major(rdev), libc::minor(rdev));
        if let Err(e) = std::fs::write(cgroup.join("blkio.throttle.read_bps_device"), rule) {
            let _ = std::fs::remove_dir(&cgroup);
            return detach(format!("throttle: {e}"));
        }
        Ok(SlowDevice { dev, cgroup })
    }
}

impl Drop for SlowDevice {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![c("nowait/direct_read_of_a_slow_device_leaves_submit_at_once", |e| {
        let aio = aio_of(e);
        let dir = std::env::temp_dir().join(format!("uaio-nowait-{}-{}", std::process::id(), e.is_kernel()));
        let _ = std::fs::create_dir_all(&dir);
        let slow = match SlowDevice::new(&dir) {
            Ok(s) => s,
            Err(why) => {
                println!("     skipped: {why}");
                e.rec("skipped: no throttled loop device here");
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        };
        let dev = slow.dev.clone();
        let tasks = slow.cgroup.join("tasks");
        let lines = in_child(move |out| {
            // SAFETY: alarm(2); the child is killed if it hangs.
            unsafe { libc::alarm(60) };
            // SAFETY: getpid has no preconditions.
            if std::fs::write(&tasks, unsafe { libc::getpid() }.to_string()).is_err() {
                out.push("could not join the throttled cgroup".into());
                return;
            }
            let d = open(&dev, libc::O_RDONLY | libc::O_DIRECT);
            let buf = anon_pages(1);
            // A first small read takes whatever burst the throttle allows.
            // SAFETY: a 512-byte direct read into a page-aligned buffer.
            let n = unsafe { libc::pread(d.as_raw_fd(), buf.cast(), 512, 0) };
            out.push(format!("warm-up read = {n}"));
            let mut ctx = 0u64;
            // SAFETY: a valid pointer to a zeroed handle.
            out.push(format!("setup = {}", ret(unsafe { aio.setup(4, &mut ctx) })));
            let a = leak(cb(IOCB_CMD_PREAD, d.as_raw_fd(), buf as u64, 4096, 8192, 1));
            let mut p = [a as *mut iocb];
            // SAFETY: one valid iocb whose buffer lives for the process.
            let r = unsafe { aio.submit(ctx, 1, p.as_mut_ptr()) };
            let mut ev = [io_event::default(); 1];
            let mut now = ts(0, 0);
            // SAFETY: room for one event; a zero timeout.
            let ready = unsafe { aio.getevents(ctx, 0, 1, ev.as_mut_ptr(), &mut now) };
            out.push(format!("submit = {}", ret(r)));
            out.push(format!("events ready when io_submit returned: {}", ret(ready)));
            if ready == 0 {
                let mut t = ts(30, 0);
                // SAFETY: room for one event.
                let got = unsafe { aio.getevents(ctx, 1, 1, ev.as_mut_ptr(), &mut t) };
                out.push(format!("then: {} event(s)", ret(got)));
            }
            out.push(format!("res = {}", ev[0].res));
            // SAFETY: destroying the context made above.
            unsafe { aio.destroy(ctx) };
        });
        drop(slow);
        let _ = std::fs::remove_dir_all(&dir);
        e.rec_all(lines);
    })]
}
