//! The kernel-facing primitives every other part builds on: spawning and
//! waiting on children, killing process groups, reading /proc, and the
//! latch a shutdown request sets.

pub mod latch;
pub mod proc;
