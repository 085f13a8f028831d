//! Deployment-file tests: `.drone.yml` read as Drone reads it and its
//! pull-request step run as written through a Drone exec simulation, the
//! README's runnable blocks, `completions` and `man` (ops.rs). They check
//! what an operator deploys, not concurrency, so they are a target of their
//! own; no feature: the README's `cargo nextest run` runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../concurrency/support.rs"]
mod support;

mod forge;
mod ops;
