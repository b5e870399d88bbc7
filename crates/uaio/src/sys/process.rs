//! Process-wide state and hooks: a value that a `fork` child replaces
//! wholesale (the old one is leaked, never freed, since threads of the
//! parent may have been using it), and the `fork` and `exit` hooks.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A process-wide value, set once and replaced (never freed) in a `fork`
/// child: readers get a `&'static T` that stays valid for ever.
#[derive(Debug)]
pub(crate) struct Leaked<T> {
    ptr: AtomicPtr<T>,
}

impl<T: Sync> Leaked<T> {
    /// Nothing yet.
    pub(crate) const fn new() -> Self {
        Leaked { ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The current value, if one was set.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `replace`
        // and is never freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The current value, or `make()`'s when none was set (if threads race,
    /// one value wins and the others are dropped unused).
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> T) -> &'static T {
        if let Some(v) = self.get() {
            return v;
        }
        let p = Box::into_raw(Box::new(make()));
        match self.ptr.compare_exchange(std::ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst) {
            // SAFETY: just made, never freed from now on.
            Ok(_) => unsafe { &*p },
            Err(winner) => {
                // SAFETY: `p` was never shared; `winner` came from
                // `Box::into_raw` and is never freed.
                unsafe {
                    drop(Box::from_raw(p));
                    &*winner
                }
            }
        }
    }

    /// Puts `v` in place and returns it; the previous value is leaked.
    pub(crate) fn replace(&self, v: T) -> &'static T {
        let p = Box::into_raw(Box::new(v));
        self.ptr.store(p, Ordering::SeqCst);
        // SAFETY: just made, never freed.
        unsafe { &*p }
    }
}

/// Runs `f` in the child of every later `fork` (`pthread_atfork`).
pub(crate) fn on_fork_child(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::pthread_atfork(None, None, Some(f)) };
}

/// Runs `f` when the process calls `exit` or returns from `main`.
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::atexit(f) };
}
