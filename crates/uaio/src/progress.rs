//! The progress thread: completions reach the ring even when no thread
//! calls into uaio (programs that reap from the ring themselves, or wait on
//! an eventfd). It sleeps on one eventfd that every backend signals while
//! no caller is inside the context, harvests the contexts that have
//! completions and no caller, and costs nothing while idle.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use rustix::io::Errno;

use crate::kioctx::Kioctx;
use crate::sys::internal_fds;

/// The eventfd the backends signal for the progress thread of the process
/// whose slot is `slot`, with the thread started on first use; the thread
/// looks at the contexts `contexts` returns.
pub(crate) fn eventfd(
    slot: &Mutex<Option<Arc<OwnedFd>>>,
    contexts: impl Fn() -> Vec<Arc<Kioctx>> + Send + 'static,
) -> Result<Arc<OwnedFd>, Errno> {
    let mut g = crate::sync::lock(slot);
    if let Some(fd) = g.as_ref() {
        return Ok(fd.clone());
    }
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
    let fd = Arc::new(internal_fds::InternalFd::new(fd)?.into_permanent());
    let efd = fd.clone();
    crate::sys::spawn_thread("uaio-progress", move || run(efd, contexts)).map_err(|_| Errno::AGAIN)?;
    internal_fds::set_sweeper(fd.as_raw_fd());
    *g = Some(fd.clone());
    Ok(fd)
}

/// How often the progress thread looks at contexts with requests in flight
/// even without a notification: a safety net for a completion whose
/// notification was lost between io_uring turning the eventfd back on and
/// posting (the kernel orders its tail store and its read of the flag with
/// no full barrier). Idle processes (nothing in flight) are never woken.
const PROGRESS_SAFETY_NET: std::time::Duration = std::time::Duration::from_millis(50);

fn run(efd: Arc<OwnedFd>, contexts: impl Fn() -> Vec<Arc<Kioctx>>) {
    let mut buf = [0u8; 8];
    let mut timeout = None;
    loop {
        match crate::sys::ppoll_one(efd.as_raw_fd(), timeout, None) {
            Ok(0) => {}
            Ok(_) => {
                let _ = rustix::io::read(efd.as_fd(), &mut buf);
            }
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
        let mut busy = false;
        for c in contexts() {
            if c.idle() && c.has_completions() {
                c.harvest();
            }
            busy |= c.busy();
        }
        // Duplicates kept aside for a program's record lock go once the
        // lock is gone, even if the program makes no more calls (until
        // then they keep its open file, and so a `flock` on it, alive).
        internal_fds::sweep();
        let kept = internal_fds::kept_count() > 0;
        timeout = [busy.then_some(PROGRESS_SAFETY_NET), kept.then_some(KEPT_SWEEP)].into_iter().flatten().min();
    }
}

/// How often the progress thread closes what [`internal_fds::sweep`] can
/// while duplicates are kept aside for record locks.
const KEPT_SWEEP: std::time::Duration = std::time::Duration::from_millis(100);
