//! The future of one request.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use super::{AsyncContext, Slot};
use crate::api::buf::IoBuffer;
use crate::api::request::Request;
use crate::api::sys;

/// The future of one request on an [`AsyncContext`] (from
/// [`AsyncContext::run`]); resolves to the result and the request back.
/// Dropping it before it resolves cancels the request (see
/// [`AsyncContext`]).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let ctx = uaio::AsyncContext::new(4)?;
/// let flight: uaio::Flight<'_, '_, Vec<u8>> = ctx.run(uaio::Request::noop());
/// let (res, _req) = flight.await;
/// assert_eq!(res?, 0);
/// # Ok(())
/// # }
/// ```
#[must_use = "a request is submitted only when its future is polled"]
pub struct Flight<'a, 'fd, B: IoBuffer> {
    pub(super) ctx: &'a AsyncContext<'fd>,
    pub(super) req: Option<Request<'fd, B>>,
    pub(super) slot: Option<(u32, u64)>,
}

// The request's memory never moves with the future (IoBuffer), and the
// iocb lives in the context: nothing here needs pinning.
impl<B: IoBuffer> Unpin for Flight<'_, '_, B> {}

impl<B: IoBuffer> fmt::Debug for Flight<'_, '_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight").field("request", &self.req).field("submitted", &self.slot.is_some()).finish()
    }
}

impl<'fd, B: IoBuffer> Future for Flight<'_, 'fd, B> {
    type Output = (io::Result<usize>, Request<'fd, B>);

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ctx = this.ctx;
        let me = match this.slot {
            Some(me) => me,
            None => {
                let req = this.req.as_mut().expect("Flight polled after it resolved");
                let mut r = ctx.submit(req, cx.waker());
                if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)) {
                    // Completions of dropped futures may fill the ring:
                    // reap them and try once more.
                    let _ = ctx.reap();
                    r = ctx.submit(req, cx.waker());
                }
                match r {
                    Ok(me) => *this.slot.insert(me),
                    Err(e) => return Poll::Ready((Err(e), this.req.take().expect("present"))),
                }
            }
        };
        loop {
            // The waker this poll replaces, dropped once the lock is
            // released.
            let mut replaced = None;
            let mut st = ctx.lock();
            let e = st.slots.entry(me.0);
            match &mut e.value {
                Some(Slot::Done(res)) => {
                    let res = *res;
                    st.slots.remove(me.0);
                    let next = AsyncContext::hand_off(&mut st, me);
                    this.slot = None;
                    drop(st);
                    if let Some(w) = next {
                        w.wake();
                    }
                    let req = this.req.take().expect("present");
                    let out = if res < 0 { Err(io::Error::from_raw_os_error(-res as i32)) } else { Ok(res as usize) };
                    return Poll::Ready((out, req));
                }
                Some(Slot::Waiting(w)) => {
                    if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        replaced = w.replace(cx.waker().clone());
                    }
                }
                _ => unreachable!("a live future's slot is waiting or done"),
            }
            let driven = ctx.drive(st, me, cx);
            drop(replaced);
            match driven {
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    let res = ctx.finish_blocking(me);
                    this.slot = None;
                    let req = this.req.take().expect("present");
                    let out = if res < 0 { Err(io::Error::from_raw_os_error(-res as i32)) } else { Ok(res as usize) };
                    return Poll::Ready((out, req));
                }
            }
        }
    }
}

impl<B: IoBuffer> Drop for Flight<'_, '_, B> {
    fn drop(&mut self) {
        let Some(me) = self.slot.take() else { return };
        // The slot's waker, dropped once the lock is released.
        let mut waiting = None;
        let mut st = self.ctx.lock();
        match st.slots.entry(me.0).value {
            Some(Slot::Done(_)) => {
                st.slots.remove(me.0);
            }
            _ => {
                let (cb, e) = st.slots.parts(me.0);
                // Pending (EINPROGRESS: the completion follows) or already
                // finished (EINVAL: its completion is on its way): either
                // way the request must outlive its completion.
                let _ = sys::cancel(self.ctx.handle, cb);
                let req = self.req.take().expect("present while submitted");
                waiting = e.value.replace(Slot::Orphan(Box::new(req)));
            }
        }
        let next = AsyncContext::hand_off(&mut st, me);
        drop(st);
        drop(waiting);
        if let Some(w) = next {
            w.wake();
        }
    }
}
