//! cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI.
//!
//! The modules follow SPEC.md: the exit-code table (`exit`), the process
//! model and lifetime guards (`lifetime`, `proc`), and one module per command.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod lifetime;
pub mod log;
pub mod proc;
pub mod testrun;
pub mod units;
