//! The case catalogue, one module per kernel concept; a case's name starts
//! with its module's name (`submit/order/...` is in `submit`).

use crate::Case;

mod fixtures;

mod cancel;
mod concurrency;
mod descriptors;
mod destroy;
mod extensions;
mod fault_handlers;
mod faults;
mod fork;
mod getevents;
mod inline;
mod ioprio;
mod nowait;
mod poll;
mod races;
mod resfd;
mod ring;
mod ring_mapping;
mod rw;
mod rwf;
mod setup;
mod submit;

/// Every case of every area.
pub(crate) fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(setup::cases());
    v.extend(submit::cases());
    v.extend(rw::cases());
    v.extend(poll::cases());
    v.extend(resfd::cases());
    v.extend(rwf::cases());
    v.extend(ioprio::cases());
    v.extend(getevents::cases());
    v.extend(ring::cases());
    v.extend(ring_mapping::cases());
    v.extend(cancel::cases());
    v.extend(destroy::cases());
    v.extend(fork::cases());
    v.extend(descriptors::cases());
    v.extend(fault_handlers::cases());
    v.extend(concurrency::cases());
    v.extend(races::cases());
    v.extend(faults::cases());
    v.extend(nowait::cases());
    v.extend(inline::cases());
    v.extend(extensions::cases());
    v
}
