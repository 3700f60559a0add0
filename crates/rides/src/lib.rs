//! Plaza rides: drivers on a live H3 index, priced quotes, batched dispatch, trips.
pub mod assignment;
pub mod index;
pub mod model;
