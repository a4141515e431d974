//! `incentives`: a month-end batch engine for a cloud vendor's partner incentives.
//!
//! One module per stage of the pipeline; data flows one way (see `ARCHITECTURE.md`).

pub mod analyst;
pub mod balances;
pub mod budget;
pub mod calendar;
pub mod chain;
pub mod cli;
pub mod csv_field;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod fnv;
pub mod generate;
pub mod group;
pub mod import;
pub mod load;
pub mod model;
pub mod money;
pub mod partition;
pub mod process;
pub mod progress;
pub mod reconcile;
pub mod reject;
pub mod report;
pub mod rules;
pub mod run;
pub mod serial;
pub mod spill;
pub mod state;
pub mod status;
pub mod store;
pub mod subsidies;
pub mod vouchers;
pub mod write;

#[cfg(test)]
mod testkit;
