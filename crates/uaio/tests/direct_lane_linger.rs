//! The duplicate the thread pool holds for a direct request in its lane
//! stays open a moment after the request (so that a program with one
//! request in flight finds it for the next), and no longer: checked from
//! outside, by the descriptors that name each file in `/proc/self/fd`.
//! Requests one at a time read the right data and leave at most one
//! duplicate beside the program's descriptor; once the program puts
//! another file on that number, the next request reads that file, and the
//! first file's last descriptor (uaio's duplicate) goes by itself; none is
//! left once the context is gone. One test, so nothing else shares the
//! pool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, Instant};

use uaio::{AlignedBuf, Backend, Context, Request};

mod util;
use util::{direct_file, lane_test_file, numbered_block};

const LONG: Option<Duration> = Some(Duration::from_secs(20));

/// The descriptor numbers of this process that name the file `f` names
/// (same device and inode).
fn naming(ident: (u64, u64)) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(m) = std::fs::metadata(e.path()) {
            if (m.dev(), m.ino()) == ident {
                v.push(n);
            }
        }
    }
    v
}

fn ident(f: &File) -> (u64, u64) {
    let m = f.metadata().unwrap();
    (m.dev(), m.ino())
}

/// Waits until `f` holds, for at most `limit` (a bound thousands of times
/// what it takes, not a measure of speed).
fn within(limit: Duration, what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads block `i` of `f` alone through `ctx` and checks it is `want`'s.
fn read_one<'a>(ctx: &Context<'a, AlignedBuf>, f: &'a File, i: u64, want: u64, what: &str) {
    ctx.submit(Request::read(f, AlignedBuf::with_alignment(4096, 4096).unwrap(), i * 4096).user_data(i)).unwrap();
    let c = ctx.wait_one(LONG).unwrap();
    assert_eq!(c.result().unwrap(), 4096, "{what}: read of block {i}");
    assert!(c.into_buf().unwrap().iter().eq(numbered_block(want).iter()), "{what}: block {i} came back wrong");
}

#[test]
fn a_lane_duplicate_lingers_only_while_its_descriptor_names_its_file() {
    let Some(a) = lane_test_file("linger-a") else { return };
    let dirs = [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir(), std::env::current_dir().unwrap()];
    let b = direct_file(&dirs, "linger-b").unwrap();
    for i in 0..8 {
        a.write_all_at(&numbered_block(i), i * 4096).unwrap();
        b.write_all_at(&numbered_block(100 + i), i * 4096).unwrap();
    }
    let (ia, ib) = (ident(&a), ident(&b));
    let b2 = b.try_clone().unwrap();
    let ctx = Context::builder().entries(64).backend(Backend::Threads).build_for::<AlignedBuf>().unwrap();

    for round in 0..200 {
        let i = round % 8;
        read_one(&ctx, &a, i, i, "file a");
        let n = naming(ia);
        assert!(
            n.len() <= 2,
            "round {round}: descriptors naming file a: {n:?} (the program's and one duplicate at most)"
        );
    }
    assert!(util::thread_names().iter().any(|n| n == "uaio-reaper"), "the reads did not take the lane");

    // The program puts file b on a's number: the next request on that
    // number reads b, as the kernel's would.
    // SAFETY: dup2 of two open descriptors of this test's; `a` (the File)
    // then names file b, and closes it when dropped.
    assert_eq!(unsafe { libc::dup2(b.as_raw_fd(), a.as_raw_fd()) }, a.as_raw_fd());
    for i in 0..8 {
        read_one(&ctx, &a, i, 100 + i, "file b on a's number");
    }
    // File a has no descriptor of the program's left: uaio's duplicate,
    // if one lingered, goes by itself, a millisecond after its last use
    // (5 s is the bound here: the lane's reaper, which would also close
    // it, leaves only after 10 s without requests).
    within(Duration::from_secs(5), "file a's last descriptor closed", || naming(ia).is_empty());

    // Alternating between two numbers of one file: reads stay right, and
    // once the context is gone the file keeps the program's descriptors
    // only.
    for i in 0..16 {
        read_one(&ctx, if i % 2 == 0 { &a } else { &b2 }, i % 8, 100 + i % 8, "file b, two numbers");
    }
    drop(ctx);
    let programs = [a.as_raw_fd(), b.as_raw_fd(), b2.as_raw_fd()];
    let mine = |v: Vec<i32>| v.into_iter().filter(|n| !programs.contains(n)).collect::<Vec<_>>();
    within(Duration::from_secs(20), "no duplicate of file b once the context is gone", || mine(naming(ib)).is_empty());
}
