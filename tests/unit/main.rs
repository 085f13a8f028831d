//! Unit tests of the pure parts: no processes, no locks, no engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod locks;
#[path = "../common/junit.rs"]
mod junit;
mod testrun_meta;
mod testrun_report;
mod testrun_select;
mod exit;
mod proc_stat;
mod config;
mod parse;
mod recipe;
mod units;
