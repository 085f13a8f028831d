//! Concurrency tests: the real binary as separate processes, real signals,
//! real flocks, real /proc. One module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod locks;
#[path = "../common/junit.rs"]
mod junit;
mod exec;
mod support;
mod testrun;
mod run;
mod faults;
mod janitor;
