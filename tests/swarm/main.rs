//! Engine-backed tests (SPEC section 10): the real binary against a real
//! one-node Docker Swarm, through the stand-in abra's swarm backend
//! (`tests/fake-swarm`) and the real `docker` CLI. Built only with
//! `--features swarm-tests`; `.ci/run` initialises the swarm first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../concurrency/support.rs"]
mod support;

#[path = "../common/junit.rs"]
mod junit;

mod backuptier;
mod browser;
mod converge;
mod e2e;
mod engine;
mod floor;
mod forms;
mod lockfaults;
mod locks;
mod proxy;
mod teardown;
mod waits;
mod watch;
