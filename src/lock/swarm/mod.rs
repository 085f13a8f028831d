//! App-domain locks whose authority is the swarm's raft store (SPEC section
//! 11): one lock authority for several runner hosts that feed one swarm.
//!
//! **The object is a swarm config** named from the domain
//! ([`object_name`]). A config is the smallest object the managers keep in
//! raft: creating one is a single replicated write that the managers refuse
//! when the name exists (`AlreadyExists`), so "create" is an atomic
//! test-and-set across every host of the swarm. It needs no image, no
//! scheduler and no task (a zero-replica service would need an image to
//! exist on each node, and the scheduler would watch it), its labels can be
//! rewritten through the engine API's versioned update (`POST
//! /configs/{id}/update?version=N`, refused with "update out of sequence" when
//! anyone wrote since version N), and its ID is never reused. Create,
//! inspect, list, remove and the update all go through the one engine
//! client (`ext::docker`, the Engine API on `DOCKER_HOST`).
//!
//! The protocol step by step (acquire, renew, mutating steps, release,
//! take-over), the argument that two hosts never both believe they hold the
//! lock, and what it assumes are in `docs/swarm-lock.md`.

mod admin;
mod client;
mod hold;
mod lease;
mod protocol;
mod renew;
mod watch;

pub use admin::swarm_reports;
pub use client::{boot_now, classify_refusal, judge_skew, skew_ms, EngineTime, Refusal, Swarm};
pub use lease::{
    now_ms, object_name, parse_inspect, timestamp_ms, unix_ms, LeaseInfo, LockObject, LOCK_LABEL,
    NAME_MAX,
};
pub use protocol::{SwarmLock, SwarmLocks};
