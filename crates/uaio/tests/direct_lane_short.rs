//! Thread pool: a file system may serve an `O_DIRECT` read from the page
//! cache (ext4 mounted `data=journal` has no direct I/O and reads through
//! the cache), where the direct lane's `RWF_NOWAIT` stops at the first page
//! not in it. That short answer is not the read's: the rest is read by a
//! worker, and the read returns what the kernel's returns (before, 4,096
//! of a 6,000-byte file, where the kernel's read 6,000; a black-box attack).
//! Needs root, a loop device and `mkfs.ext4`; skipped, saying why, without.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::LoopFs;

const LONG: Option<Duration> = Some(Duration::from_secs(30));

#[test]
fn a_direct_read_served_from_the_page_cache_is_read_whole() {
    let Some(fs) = LoopFs::mount_or_skip("ext4", &["-q", "-F"], "data=journal") else { return };
    let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(fs.path("f"), &data).unwrap();
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(fs.path("f")).unwrap();
    let ctx = Context::builder().entries(8).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();
    for round in 0..4 {
        // The first page cached, the second not (the file's end lies there).
        // SAFETY: posix_fadvise(2) on an open descriptor.
        unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 4096, 0, libc::POSIX_FADV_DONTNEED) };
        let buf = AlignedBuf::with_alignment(8192, 4096).unwrap();
        ctx.submit(Request::read(&f, buf, 0)).unwrap();
        let (r, buf) = ctx.wait_one(LONG).unwrap().into_result_and_buf();
        assert_eq!(r.unwrap(), 6000, "round {round}");
        assert!(buf.is_some_and(|b| b[..6000] == data[..]), "round {round}: other bytes");
    }
}
