//! [`Spare`]: a value a thread keeps between calls and takes out while a
//! call uses it, safe against a signal handler that makes the same call in
//! between (a program may call uaio from a handler that interrupted uaio).

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A per-thread spare value (declared in a `thread_local!`). Taking it out
/// and putting it back are each one atomic exchange of a pointer, so a call
/// from a signal handler that runs in between finds the slot empty (and
/// makes its own value) or holding a whole value, never one half written,
/// as a `Cell` holding the value itself would be while being replaced (a
/// torn vector or `Weak` is a crash).
#[derive(Debug)]
pub(crate) struct Spare<T> {
    slot: AtomicPtr<T>,
}

impl<T> Spare<T> {
    /// An empty slot.
    pub(crate) const fn new() -> Spare<T> {
        Spare { slot: AtomicPtr::new(null_mut()) }
    }

    /// The value, if the slot holds one; the slot is empty afterwards.
    pub(crate) fn take(&self) -> Option<Box<T>> {
        let p = self.slot.swap(null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw`
        // in `put`, and the exchange made this call its only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// Puts `v` in the slot; a value a nested call left there goes.
    pub(crate) fn put(&self, v: Box<T>) {
        let old = self.slot.swap(Box::into_raw(v), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: as in `take`: the exchange handed it to this call.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

impl<T> Drop for Spare<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_call_finds_the_slot_empty_and_its_value_is_dropped() {
        let s: Spare<Vec<u8>> = Spare::new();
        assert!(s.take().is_none());
        s.put(Box::new(vec![1]));
        let outer = s.take().unwrap();
        // What a nested call (a signal handler) sees meanwhile.
        assert!(s.take().is_none());
        s.put(Box::new(vec![2]));
        // The outer call puts its own back; the nested one's goes.
        s.put(outer);
        assert_eq!(*s.take().unwrap(), vec![1]);
        assert!(s.take().is_none());
    }
}
