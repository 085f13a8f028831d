//! cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI.
//!
//! Imports flow one way, at every level of folders: a module imports only
//! from the layers below it, and two children of one folder never import
//! each other both ways (`scripts/modgraph.py --check`, in the lint gate).
//! The top-level modules in their layers, top first, as
//! `scripts/modgraph.py --layers` prints them from the code:
//!
//! | layer | modules |
//! |---|---|
//! | 8 | `cmd`: every command's entry point |
//! | 7 | `run`: the run lifecycle, phase by phase, teardown always |
//! | 6 | `janitor`, `testrun` (the recipe test runner) |
//! | 5 | `cli` (clap's raw arguments), `teardown` (an app's), `views` (what operators read) |
//! | 4 | `lock`: app-domain and run locks, flock or the swarm |
//! | 3 | `ext`: abra, git and the engine API |
//! | 2 | `host`, `lifetime` (the guards), `log`, `rundir` (the state directory and run records), `settings` (ccci.toml) |
//! | 1 | `config` (validated configuration, every name rule), `manual`, `phase`, `redact`, `sys` (the kernel), `verdict` |
//! | 0 | `exit` (the exit codes), `outcome`, `table`, `tier`, `units` |
//!
//! The README's "Where things are" says what each holds. The public
//! surface is what `main.rs` and the tests use; everything else is
//! `pub(crate)`, so rustc reports dead code.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod exit;
pub mod ext;
pub mod host;
pub mod janitor;
pub mod lifetime;
pub mod lock;
pub mod log;
pub mod manual;
pub mod outcome;
pub mod phase;
pub mod redact;
pub mod run;
pub mod rundir;
pub mod settings;
pub mod sys;
pub mod table;
pub mod teardown;
pub mod testrun;
pub mod tier;

pub mod units;
pub mod verdict;
pub mod views;
