//! Copies a file with uaio on tokio, 32 requests in flight.
//!
//! ```sh
//! cargo run -p uaio --features tokio --example tokio_copy -- SOURCE DEST
//! cargo run -p uaio --features tokio --example tokio_copy   # copies a generated 8 MiB file and checks it
//! ```
//!
//! 32 tasks share one `AsyncContext` and one pair of files; each takes the
//! next chunk, reads it and writes it, reusing its buffer (the buffer goes
//! into each operation and comes back with the result). So 32 reads or
//! writes are in flight at any time.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use uaio::AsyncContext;

const IN_FLIGHT: usize = 32;
const CHUNK: usize = 128 * 1024;

async fn copy(src: File, dst: File) -> io::Result<u64> {
    let len = src.metadata()?.len();
    dst.set_len(len)?;
    let (src, dst) = (Arc::new(src), Arc::new(dst));
    let ctx: Arc<AsyncContext<'static>> = Arc::new(AsyncContext::new(IN_FLIGHT as u32)?);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (ctx, src, dst, next) = (ctx.clone(), src.clone(), dst.clone(), next.clone());
        tasks.spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let offset = next.fetch_add(CHUNK as u64, Ordering::Relaxed);
                if offset >= len {
                    return Ok::<(), io::Error>(());
                }
                buf.resize(CHUNK.min((len - offset) as usize), 0);
                let (n, b) = ctx.read(src.clone(), buf, offset).await;
                let n = n?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "source shrank"));
                }
                let mut b = b;
                b.truncate(n);
                let (written, b) = ctx.write(dst.clone(), b, offset).await;
                if written? != n {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
                }
                buf = b;
                if n < CHUNK.min((len - offset) as usize) {
                    // A short read: the rest of this chunk is read again.
                    next.fetch_min(offset + n as u64, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(io::Error::other)??;
    }
    ctx.fsync(dst).await?;
    Ok(len)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = std::time::Instant::now();
    match args.as_slice() {
        [src, dst] => {
            let n = copy(File::open(src)?, File::create(dst)?).await?;
            println!("copied {n} bytes in {:?} ({} backend)", start.elapsed(), uaio::backend_name());
        }
        [] => {
            let dir = tempfile::tempdir()?;
            let (src, dst) = (dir.path().join("source"), dir.path().join("copy"));
            let data: Vec<u8> =
                (0..8 * 1024 * 1024 + 12345).map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
            std::fs::write(&src, &data)?;
            let n = copy(File::open(&src)?, File::create(&dst)?).await?;
            assert_eq!(std::fs::read(&dst)?, data, "the copy differs from the source");
            println!("copied and checked {n} bytes in {:?} ({} backend)", start.elapsed(), uaio::backend_name());
        }
        _ => {
            eprintln!("usage: tokio_copy [SOURCE DEST]");
            std::process::exit(2);
        }
    }
    Ok(())
}
