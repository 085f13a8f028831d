//! cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI.
//!
//! The folders are the parts, in the order of SPEC.md, and imports flow one
//! way (`scripts/modgraph.py --check`): the kernel (`sys`) and the lifetime
//! guards (`lifetime`) at the bottom; configuration with every name rule
//! and the exit codes (`config`, `exit`); locks (`lock`); external programs
//! (`ext`); an app's teardown (`teardown`); the words of a run record
//! (`phase`, `tier`, `verdict`) and the state directory (`rundir`);
//! the run lifecycle (`run`), the janitor (`janitor`) and the test runner
//! (`testrun`); what operators read (`views`); and the commands (`cmd`) on
//! top. The README's "Where things are" says what each holds. The public
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
