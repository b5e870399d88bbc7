//! Which contexts' waits each thread is counted in: `io_destroy` waits
//! for a context's waiters to leave, but not for those of its own thread
//! that cannot leave before it returns (a wait a handler of the thread
//! jumped out of with `siglongjmp`, or the one a handler running the
//! destroy interrupted). Contexts are named by their serial.

/// Most contexts whose waits one thread is counted in at a time (see
/// [`held_here`]). One more takes the place of the oldest context's
/// record (the lowest serial), whose destroy by this thread then waits for
/// the count's bound, as for another thread's. A destroy by this thread
/// frees its context's place ([`forget_held`]).
const HELD_SLOTS: usize = 32;

thread_local! {
    /// The registrations in contexts' counts of waiters this thread holds:
    /// by context serial, how many (0: a free slot).
    static HELD: [std::cell::Cell<(u64, u32)>; HELD_SLOTS] = const { [const { std::cell::Cell::new((0, 0)) }; HELD_SLOTS] };
}

/// Records a registration of this thread's in the waiters of the context
/// `serial` (`add`), or its end. Made after the count rises and before it
/// falls, so that a handler interrupting in between sees fewer than the
/// thread holds, never more: the destroy it runs may then wait for the
/// bound, but never goes on while another thread's waiter is inside.
pub(crate) fn hold(serial: u64, add: bool) {
    let _ = HELD.try_with(|h| {
        let mine = h.iter().find(|e| e.get().0 == serial && e.get().1 > 0);
        match (add, mine) {
            (true, Some(e)) => e.set((serial, e.get().1 + 1)),
            (true, None) => {
                let free = h.iter().find(|e| e.get().1 == 0);
                if let Some(e) = free.or_else(|| h.iter().min_by_key(|e| e.get().0)) {
                    e.set((serial, 1));
                }
            }
            (false, Some(e)) => e.set((serial, e.get().1 - 1)),
            (false, None) => {}
        }
    });
}

/// How many registrations in the waiters of the context `serial` this
/// thread holds: a wait that a handler of its jumped out of (`siglongjmp`)
/// never ends, and one that a handler running now interrupted ends only
/// once the handler returns. Destroy does not wait for those.
pub(crate) fn held_here(serial: u64) -> u32 {
    HELD.try_with(|h| h.iter().map(|e| e.get()).filter(|e| e.0 == serial).map(|e| e.1).sum()).unwrap_or(0)
}

/// The context `serial` is destroyed: this thread's record of its waits
/// goes (a wait a handler interrupted, still to return, finds none).
pub(crate) fn forget_held(serial: u64) {
    let _ = HELD.try_with(|h| h.iter().filter(|e| e.get().0 == serial).for_each(|e| e.set((0, 0))));
}
