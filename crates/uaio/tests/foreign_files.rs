//! A program that puts its own files on uaio's descriptor numbers (`dup2`
//! onto numbers at or above uaio's floor) while requests are in flight on
//! the thread pool: no request may read or write that file, and no wake-up
//! of uaio's may write its 8 bytes there. (The kernel holds no descriptor;
//! uaio's held duplicates and eventfds live at those numbers.) The process
//! runs the thread pool and nothing else, since the test clobbers uaio's
//! descriptors for good.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use uaio::abi::{aio_context_t, io_event, iocb, IOCB_CMD_PWRITE};
use uaio::raw;

mod util;
use util::cb;

const MIB: usize = 1 << 20;
const WRITES: usize = 16;

/// uaio's floor: half the soft `RLIMIT_NOFILE`, at most 4096.
fn floor() -> i32 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills `r`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    ((r.rlim_cur / 2).min(4096)) as i32
}

#[test]
fn files_put_on_uaios_numbers_get_no_request_and_no_wakeup() {
    // SAFETY (edition 2021: safe calls): before the first uaio call. One
    // worker: the writes wait in the queue behind the sync below.
    std::env::set_var("UAIO_BACKEND", "threads");
    std::env::set_var("UAIO_THREADS", "1");
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let path = dir.path().join("a");
    let a = match File::options().read(true).write(true).create(true).custom_flags(libc::O_DIRECT).open(&path) {
        Ok(f) => f,
        Err(e) => {
            println!("skipped: /var/tmp refuses O_DIRECT here ({e})");
            return;
        }
    };
    let victim = tempfile::tempfile_in("/var/tmp").expect("victim");
    // One aligned buffer for all the writes ('x').
    // SAFETY: an anonymous private mapping, page-aligned, leaked for the process.
    let buf = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            MIB,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::write_bytes(p.cast::<u8>(), b'x', MIB);
        p as u64
    };
    let mut ctx: aio_context_t = 0;
    // SAFETY: io_setup writes the handle.
    assert_eq!(unsafe { raw::io_setup(64, &mut ctx) }, 0);
    assert_eq!(uaio::backend_name(), "threads");
    // A sync of 64 MiB of dirty data keeps the one worker busy while the
    // program replaces the numbers: no write can have passed uaio's check
    // before the replacement and run after it.
    let dirty = tempfile::tempfile_in("/var/tmp").expect("dirty file");
    dirty.write_all_at(&vec![7u8; 64 * MIB], 0).expect("dirty data");
    let mut sync = cb(uaio::abi::IOCB_CMD_FSYNC, dirty.as_raw_fd(), 0, 0, 0, 99);
    let mut sp = [&mut sync as *mut iocb];
    // SAFETY: one valid iocb.
    assert_eq!(unsafe { raw::io_submit(ctx, 1, sp.as_mut_ptr()) }, 1);
    let mut cbs: Vec<iocb> =
        (0..WRITES).map(|i| cb(IOCB_CMD_PWRITE, a.as_raw_fd(), buf, MIB as u64, (i * MIB) as i64, i as u64)).collect();
    let mut ptrs: Vec<*mut iocb> = cbs.iter_mut().map(|c| c as *mut iocb).collect();
    // SAFETY: WRITES valid iocbs; the buffer lives for the process.
    assert_eq!(unsafe { raw::io_submit(ctx, WRITES as i64, ptrs.as_mut_ptr()) }, WRITES as i64);
    // The program puts its file on uaio's numbers while the writes run.
    let f = floor();
    for n in f..f + 64 {
        // SAFETY: dup2 of an open file onto a number (which closes what
        // was there: that is the hostile part).
        unsafe { libc::dup2(victim.as_raw_fd(), n) };
    }
    let mut evs = vec![io_event::default(); WRITES + 1];
    let mut got = 0;
    while got < WRITES + 1 {
        let mut ts = libc::timespec { tv_sec: 20, tv_nsec: 0 };
        // SAFETY: room for the remaining events.
        let r = unsafe { raw::io_getevents(ctx, 1, (WRITES + 1 - got) as i64, evs[got..].as_mut_ptr(), &mut ts) };
        assert!(r > 0, "io_getevents: {r} after {got} events");
        got += r as usize;
    }
    let victim_len = victim.metadata().expect("stat").len();
    // Read back through a buffered descriptor (an O_DIRECT read would need
    // an aligned buffer).
    let plain = File::open(&path).expect("reopen");
    let mut back = vec![0u8; MIB];
    evs.retain(|e| e.data != 99);
    for e in &evs {
        assert!(e.res == MIB as i64 || e.res == -(libc::EBADF as i64), "write {}: {}", e.data, e.res);
        if e.res == MIB as i64 {
            plain.read_exact_at(&mut back, e.data * MIB as u64).expect("read back");
            assert!(back.iter().all(|&b| b == b'x'), "write {} reported done but its data is not in the file", e.data);
        }
    }
    let done = evs.iter().filter(|e| e.res > 0).count();
    println!("{done} of {WRITES} writes done, the others -EBADF; {victim_len} bytes in the program's file");
    assert_eq!(victim_len, 0, "uaio wrote into the file the program put on its numbers");
    for n in f..f + 64 {
        // SAFETY: closing the copies this test made.
        unsafe { libc::close(n) };
    }
}
