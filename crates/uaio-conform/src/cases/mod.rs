//! The case catalogue, one module per area.

use crate::Case;

mod anon;
mod cancel_destroy;
mod concurrency;
mod core;
mod faults;
mod fds;
mod getevents;
mod handlers;
mod inline;
mod nowait;
mod process;
mod races;
mod ring;
mod ring_mapping;
mod submit_more;
mod util;

/// Every case of every area.
pub(crate) fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(core::cases());
    v.extend(submit_more::cases());
    v.extend(getevents::cases());
    v.extend(ring::cases());
    v.extend(ring_mapping::cases());
    v.extend(cancel_destroy::cases());
    v.extend(process::cases());
    v.extend(concurrency::cases());
    v.extend(races::cases());
    v.extend(fds::cases());
    v.extend(faults::cases());
    v.extend(handlers::cases());
    v.extend(nowait::cases());
    v.extend(anon::cases());
    v.extend(inline::cases());
    v
}
