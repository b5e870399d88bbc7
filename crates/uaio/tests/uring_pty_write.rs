//! A write to a pty's master, submitted on io_uring after reads of its
//! slave in the same context and thread. A tty takes the non-blocking flag
//! of io_uring's first attempt as a blocking write when poll shows room, so
//! that attempt, made inside `io_submit`, waited there for the whole write
//! to be read, and the reads that would take it complete in the submitting
//! thread: `io_submit` never returned (64 KiB and 4 MiB, every run). Only
//! that `io_submit` returns and every byte arrives in order is checked, with
//! a bound far above what it takes. (Kernel AIO's `io_submit` waits in the
//! first read, so the program cannot do this there.)
#![deny(clippy::undocumented_unsafe_blocks)]

use std::sync::mpsc;
use std::time::Duration;

use uaio::abi::{io_event, iocb, IOCB_CMD_PREAD, IOCB_CMD_PWRITE};
use uaio::raw;

/// A pty's two ends in raw mode, as (master, slave); `None` where none can
/// be had.
fn pty() -> Option<(i32, i32)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty(3) into two locals, with no name, termios or size.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if r != 0 {
        return None;
    }
    // SAFETY: a termios filled by tcgetattr on the slave, made raw.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(s, &mut t);
        libc::cfmakeraw(&mut t);
        libc::tcsetattr(s, libc::TCSANOW, &t);
    }
    Some((m, s))
}

/// A leaked iocb of `op` on `fd` over `len` bytes at `buf`, with `data`.
fn leaked_cb(op: u16, fd: i32, buf: u64, len: usize, data: u64) -> *mut iocb {
    Box::leak(Box::new(iocb {
        aio_lio_opcode: op,
        aio_fildes: fd as u32,
        aio_buf: buf,
        aio_nbytes: len as u64,
        aio_data: data,
        ..iocb::default()
    }))
}

/// Reads in flight on the slave at a time, and the size of each.
const READS: usize = 4;
const CHUNK: usize = 65536;

/// Submits the reads, then the write of `total` bytes, and reaps until
/// every byte was read (reads submitted again as they complete): the bytes
/// in the order their reads were submitted.
fn write_under_reads(master: i32, slave: i32, total: usize) -> Vec<u8> {
    let mut ctx = 0u64;
    // SAFETY: a valid pointer to a zeroed handle.
    assert_eq!(unsafe { raw::io_setup(16, &mut ctx) }, 0);
    let data: &'static [u8] = Box::leak((0..total).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into_boxed_slice());
    let bufs: Vec<&'static mut [u8]> =
        (0..READS).map(|_| &mut *Box::leak(vec![0u8; CHUNK].into_boxed_slice())).collect();
    let addrs: Vec<u64> = bufs.iter().map(|b| b.as_ptr() as u64).collect();
    // Which read (by submission number) each buffer holds now.
    let mut seq = [0usize; READS];
    let mut next = 0usize;
    let mut submit = |slot: usize, seq: &mut [usize; READS]| {
        let mut p = [leaked_cb(IOCB_CMD_PREAD, slave, addrs[slot], CHUNK, slot as u64)];
        seq[slot] = next;
        next += 1;
        // SAFETY: one valid iocb, leaked with its buffer.
        assert_eq!(unsafe { raw::io_submit(ctx, 1, p.as_mut_ptr()) }, 1);
    };
    for slot in 0..READS {
        submit(slot, &mut seq);
    }
    let mut w = [leaked_cb(IOCB_CMD_PWRITE, master, data.as_ptr() as u64, total, READS as u64)];
    // SAFETY: one valid iocb, leaked with its buffer.
    assert_eq!(unsafe { raw::io_submit(ctx, 1, w.as_mut_ptr()) }, 1);
    let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
    let (mut got, mut written) = (0usize, None);
    while got < total || written.is_none() {
        let mut ev = [io_event::default(); 8];
        let mut ts = libc::timespec { tv_sec: 30, tv_nsec: 0 };
        // SAFETY: room for 8 events and a valid timeout.
        let n = unsafe { raw::io_getevents(ctx, 1, 8, ev.as_mut_ptr(), &mut ts) };
        assert!(n > 0, "no event in 30 s: {got} of {total} bytes read");
        for e in &ev[..n as usize] {
            let slot = e.data as usize;
            if slot == READS {
                written = Some(e.res);
                continue;
            }
            assert!(e.res > 0, "a read ended with {}", e.res);
            // SAFETY: the read of this buffer is over; it is leaked.
            let bytes = unsafe { std::slice::from_raw_parts(addrs[slot] as *const u8, e.res as usize) };
            pieces.push((seq[slot], bytes.to_vec()));
            got += e.res as usize;
            if got < total {
                submit(slot, &mut seq);
            }
        }
    }
    assert_eq!(written, Some(total as i64), "the write's event");
    pieces.sort_by_key(|(s, _)| *s);
    pieces.into_iter().flat_map(|(_, b)| b).collect()
}

#[test]
fn a_pty_write_under_reads_of_its_slave_leaves_io_submit() {
    std::env::set_var("UAIO_BACKEND", "uring");
    if !uaio::io_uring_available() {
        eprintln!("skipped: io_uring is not available here ({})", uaio::backend_reason());
        return;
    }
    // A pty each (reads left waiting by the first would take bytes of
    // the second).
    let (Some(a), Some(b)) = (pty(), pty()) else {
        eprintln!("skipped: no pty can be opened here ({})", std::io::Error::last_os_error());
        return;
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (total, (master, slave)) in [(CHUNK, a), (4 << 20, b)] {
            let _ = tx.send((total, write_under_reads(master, slave, total)));
        }
    });
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok((total, bytes)) => {
                assert_eq!(bytes.len(), total);
                assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "bytes out of order");
            }
            Err(_) => panic!("io_submit of the write, or the reads, never ended"),
        }
    }
}
