//! cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI.
//!
//! The modules follow SPEC.md: the exit-code table (`exit`), the process
//! model and lifetime guards (`lifetime`, `proc`), the locks (`lock`, with
//! `lockholder` for the kernel's view of who holds one), and one module per
//! command.

pub mod abra;
pub mod cli;
pub mod commands;
pub mod config;
pub mod converge;
pub mod docker;
pub mod exit;
pub mod external;
pub mod gitrepo;
pub mod history;
pub mod interpolate;
pub mod janitor;
pub mod leftovers;
pub mod lifetime;
pub mod lock;
pub mod lockbackend;
pub mod lockcmd;
pub mod lockholder;
pub mod log;
pub mod manual;
pub mod metrics;
pub mod proc;
pub mod recipe;
pub mod run;
pub mod rundir;
pub mod status;
pub mod swarmlock;
pub mod table;
pub mod teardown;
pub mod testrun;
pub mod timeline;
pub mod units;
