//! The `async fn` of each operation, on [`AsyncContext::run`].

use std::io;

use super::{AsyncContext, BufResult};
use crate::api::buf::IoBuffer;
use crate::api::fd::Fd;
use crate::api::request::Request;
use crate::api::PollFlags;

impl<'fd> AsyncContext<'fd> {
    /// Reads `buf.len()` bytes at `offset` into `buf`; resolves to the
    /// count read (short at the end of the file) and the buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use std::os::unix::fs::FileExt;
    /// let file = tempfile::tempfile()?;
    /// file.write_all_at(b"abc", 0)?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let (n, buf) = ctx.read(&file, vec![0; 8], 0).await;
    /// assert_eq!(&buf[..n?], b"abc");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read<B: IoBuffer>(&self, fd: impl Into<Fd<'fd>>, buf: B, offset: u64) -> BufResult<usize, B> {
        let (res, req) = self.run(Request::read(fd, buf, offset)).await;
        (res, req.into_buf().expect("a read owns a buffer"))
    }

    /// Writes all of `buf` at `offset`; resolves to the count written and
    /// the buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let (n, _buf) = ctx.write(&file, vec![1; 4096], 4096).await;
    /// assert_eq!(n?, 4096);
    /// assert_eq!(file.metadata()?.len(), 8192);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write<B: IoBuffer>(&self, fd: impl Into<Fd<'fd>>, buf: B, offset: u64) -> BufResult<usize, B> {
        let (res, req) = self.run(Request::write(fd, buf, offset)).await;
        (res, req.into_buf().expect("a write owns a buffer"))
    }

    /// Reads into `bufs` in order from `offset`; resolves to the count read
    /// and the buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use std::os::unix::fs::FileExt;
    /// let file = tempfile::tempfile()?;
    /// file.write_all_at(b"abcd", 0)?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let (n, bufs) = ctx.readv(&file, vec![vec![0; 1], vec![0; 3]], 0).await;
    /// assert_eq!((n?, bufs), (4, vec![b"a".to_vec(), b"bcd".to_vec()]));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn readv<B: IoBuffer>(
        &self,
        fd: impl Into<Fd<'fd>>,
        bufs: Vec<B>,
        offset: u64,
    ) -> BufResult<usize, Vec<B>> {
        let (res, req) = self.run(Request::readv(fd, bufs, offset)).await;
        (res, req.into_bufs())
    }

    /// Writes `bufs` in order from `offset`; resolves to the count written
    /// and the buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let file = tempfile::tempfile()?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let (n, bufs) = ctx.writev(&file, vec![vec![1; 3], vec![2; 5]], 0).await;
    /// assert_eq!((n?, bufs.len()), (8, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn writev<B: IoBuffer>(
        &self,
        fd: impl Into<Fd<'fd>>,
        bufs: Vec<B>,
        offset: u64,
    ) -> BufResult<usize, Vec<B>> {
        let (res, req) = self.run(Request::writev(fd, bufs, offset)).await;
        (res, req.into_bufs())
    }

    /// `fsync(2)` of the file, without blocking a thread of the runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let file = tempfile::tempfile()?;
    /// uaio::AsyncContext::new(4)?.fsync(&file).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fsync(&self, fd: impl Into<Fd<'fd>>) -> io::Result<()> {
        self.run(Request::<Vec<u8>>::fsync(fd)).await.0.map(drop)
    }

    /// `fdatasync(2)` of the file, without blocking a thread of the runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let file = tempfile::tempfile()?;
    /// uaio::AsyncContext::new(4)?.fdsync(&file).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fdsync(&self, fd: impl Into<Fd<'fd>>) -> io::Result<()> {
        self.run(Request::<Vec<u8>>::fdsync(fd)).await.0.map(drop)
    }

    /// Waits until one of `events` is ready on `fd`; resolves to the ready
    /// events.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use uaio::PollFlags;
    /// let (reader, writer) = rustix::pipe::pipe()?;
    /// let ctx = uaio::AsyncContext::new(4)?;
    /// let readable = ctx.poll(&reader, PollFlags::IN);
    /// rustix::io::write(&writer, b"!")?;
    /// assert!(readable.await?.contains(PollFlags::IN));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn poll(&self, fd: impl Into<Fd<'fd>>, events: PollFlags) -> io::Result<PollFlags> {
        let (res, _) = self.run(Request::<Vec<u8>>::poll(fd, events)).await;
        res.map(|m| PollFlags::from_bits_retain(m as u16))
    }

    /// A request that does nothing (`IOCB_CMD_NOOP`): a round trip through
    /// the engine and the reactor.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// uaio::AsyncContext::new(4)?.noop().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn noop(&self) -> io::Result<()> {
        self.run(Request::<Vec<u8>>::noop()).await.0.map(drop)
    }
}
