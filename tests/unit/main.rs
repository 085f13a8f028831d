//! Unit tests of the pure parts: no processes, no locks, no engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exit;
mod proc_stat;
mod units;
