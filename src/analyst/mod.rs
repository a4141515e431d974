//! The tools that read a published cycle (SPEC §10): `explain` (`analyst::explain`), `report`,
//! `query` and `whatif`, on polars' lazy scans of the cycle's tables (`cycle`).

pub mod cycle;
pub mod explain;
pub mod query;
pub mod whatif;

pub use crate::money::{grouped, prose, separate};
