//! Reads a file with `O_DIRECT` through uaio on tokio, into aligned buffers.
//!
//! ```sh
//! cargo run -p uaio --features tokio --example direct_read -- FILE
//! cargo run -p uaio --features tokio --example direct_read   # reads a generated file and checks it
//! ```
//!
//! `O_DIRECT` bypasses the page cache and needs the buffer address, the
//! offset and the length aligned to the file's direct-I/O alignment:
//! [`uaio::AlignedBuf::for_direct_io`] asks the file system for it. Eight
//! reads are in flight at once (a `JoinSet` of tasks); the program prints
//! a checksum of the file, which it compares with a buffered read.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use uaio::{AlignedBuf, AsyncContext};

const IN_FLIGHT: u64 = 8;
const BLOCK: usize = 256 * 1024;

/// FNV-1a, per block, combined by position: independent of read order.
fn checksum(block_index: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ block_index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

async fn read_direct(path: &Path) -> io::Result<(u64, u64)> {
    let file = Arc::new(OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path)?);
    let len = file.metadata()?.len();
    let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(IN_FLIGHT as u32)?);
    let blocks = len.div_ceil(BLOCK as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..IN_FLIGHT {
        let (ctx, file) = (ctx.clone(), file.clone());
        tasks.spawn(async move {
            let mut buf = AlignedBuf::for_direct_io(&*file, BLOCK)?;
            let (mut sum, mut bytes) = (0u64, 0u64);
            // Task `first` reads blocks first, first + 8, first + 16, ...
            for block in (first..blocks).step_by(IN_FLIGHT as usize) {
                let (n, b) = ctx.read(file.clone(), buf, block * BLOCK as u64).await;
                let n = n?;
                sum = sum.wrapping_add(checksum(block, &b[..n]));
                bytes += n as u64;
                buf = b;
            }
            Ok::<_, io::Error>((sum, bytes))
        });
    }
    let (mut sum, mut bytes) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let (s, b) = r.map_err(io::Error::other)??;
        sum = sum.wrapping_add(s);
        bytes += b;
    }
    Ok((sum, bytes))
}

fn read_buffered(path: &Path) -> io::Result<u64> {
    let data = std::fs::read(path)?;
    Ok(data.chunks(BLOCK).enumerate().fold(0u64, |s, (i, c)| s.wrapping_add(checksum(i as u64, c))))
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = std::time::Instant::now();
    match args.as_slice() {
        [path] => {
            let (sum, bytes) = read_direct(Path::new(path)).await?;
            println!("{bytes} bytes, checksum {sum:016x}, in {:?} ({} backend)", start.elapsed(), uaio::backend_name());
        }
        [] => {
            // tmpfs refuses O_DIRECT: the file goes in the current directory.
            let dir = tempfile::tempdir_in(".")?;
            let path = dir.path().join("data");
            let data: Vec<u8> = (0..4 * 1024 * 1024 + 4096).map(|i: u32| (i.wrapping_mul(40503) >> 8) as u8).collect();
            std::fs::write(&path, &data)?;
            File::open(&path)?.sync_all()?;
            let (sum, bytes) = read_direct(&path).await?;
            assert_eq!(bytes, data.len() as u64, "every byte read");
            assert_eq!(sum, read_buffered(&path)?, "O_DIRECT and buffered reads differ");
            println!(
                "read and checked {bytes} bytes with O_DIRECT in {:?} ({} backend)",
                start.elapsed(),
                uaio::backend_name()
            );
        }
        _ => {
            eprintln!("usage: direct_read [FILE]");
            std::process::exit(2);
        }
    }
    Ok(())
}
