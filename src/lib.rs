//! cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI.
//!
//! The modules follow SPEC.md: the exit-code table (`exit`), the process
//! model and lifetime guards (`lifetime`, `proc`), the locks (`lock`, with
//! `lockholder` for the kernel's view of who holds one), and one module per
//! command.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod exit;
pub mod ext;
pub mod janitor;
pub mod lifetime;
pub mod lock;
pub mod lockbackend;
pub mod log;
pub mod manual;
pub mod names;
pub mod run;
pub mod rundir;
pub mod swarmlock;
pub mod sys;
pub mod table;
pub mod teardown;
pub mod testrun;

pub mod units;
pub mod views;
