//! The kernel-facing primitives every other part builds on: spawning and
//! waiting on children (`spawn`, on what `spec` prepares), ending processes
//! (`kill`: the one TERM → grace → KILL escalation), reading /proc
//! (`procfs`: every read of it but self-protection's configurable
//! directory), the latch a shutdown request sets (`latch`), and sleeping
//! until a deadline or a backoff's next step (`wait`). These are the only
//! modules that send signals to processes or reap them: the wrapper's
//! forwarding in `lifetime` and the runner's per-test timers in
//! `testrun::exec` decide when, and signal through `kill::Escalation`.

pub(crate) mod kill;
pub mod latch;
pub mod procfs;
pub mod spawn;
pub mod spec;
pub(crate) mod wait;
