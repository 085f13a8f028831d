//! The kernel-facing primitives every other part builds on: spawning and
//! waiting on children (`spawn`, on what `spec` prepares), ending processes (`kill`), reading /proc
//! (`procfs`), and the latch a shutdown request sets (`latch`). These are
//! the only modules that send signals to processes or reap them, apart from
//! the wrapper's forwarding in `lifetime` and the runner's per-test timers
//! in `testrun::exec`, which signal the groups of children they spawned here.

pub(crate) mod kill;
pub mod latch;
pub mod procfs;
pub mod spawn;
pub mod spec;
