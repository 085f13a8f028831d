//! Concurrency tests: the real binary as separate processes, real signals,
//! real flocks, real /proc. One module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod converge;
mod diskfull;
mod exec;
mod faults;
mod janitor;
#[path = "../common/junit.rs"]
mod junit;
mod locks;
mod records;
mod reports;
mod run;
mod support;
mod teardown;
mod testrun;
mod verdict;
