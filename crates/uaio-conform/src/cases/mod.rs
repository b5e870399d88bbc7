//! The case catalogue, one module per area.

use crate::Case;

mod core;

/// Every case of every area.
pub(crate) fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(core::cases());
    v
}
