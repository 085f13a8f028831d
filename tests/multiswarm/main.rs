//! The swarm lock (SPEC section 11) across three real managers: three
//! Docker engines in network namespaces of their own, joined as one swarm
//! ([`cluster`]), and runner "hosts" (processes with their own state
//! directories and host ids) each talking to one manager through its
//! socket. The cases kill the leader, cut the leader or a follower off the
//! others, read through a follower that missed the changes, and stop a
//! real `run` whose manager dies: every case checks the O_APPEND oracle
//! (never two holders inside at once) and prints its timings.
//!
//! Built only with `--features multiswarm-tests`; needs root, `ip`
//! (iproute2), `nsenter` and `dockerd`, and refuses to run, saying which is
//! missing, without them. `.ci/run` installs them and runs this target.
//! The swarm is made once for all cases (one test: a test process of its
//! own under nextest would form it again per case); a failed case is
//! reported, the cluster healed, and the next case runs.
//!
//! `CCCI_DEV_MULTISWARM_CASES=a,b` runs only those cases (names below);
//! `CCCI_DEV_MULTISWARM_REPS=N` changes the repetitions of the fault cases
//! (10 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../concurrency/support.rs"]
mod support;

#[path = "../swarm/proxy.rs"]
mod proxy;

mod cases;
mod cluster;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

#[test]
fn the_swarm_lock_never_has_two_holders_across_three_real_managers() {
    let only: Option<Vec<String>> = std::env::var("CCCI_DEV_MULTISWARM_CASES")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(o) = &only {
        for name in o {
            assert!(
                cases::ALL.iter().any(|(n, _)| n == name),
                "CCCI_DEV_MULTISWARM_CASES names no case `{name}`; the cases: {:?}",
                cases::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            );
        }
    }
    let started = Instant::now();
    let mut cluster = cluster::Cluster::form();
    let formed = started.elapsed();
    eprintln!("three-manager swarm formed in {formed:.1?}");
    let mut table = cases::Table::default();
    let mut failed = Vec::new();
    for (name, case) in cases::ALL {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut cluster, &mut table)));
        eprintln!(
            "case {name}: {} in {:.1?}",
            if result.is_ok() { "passed" } else { "FAILED" },
            t.elapsed()
        );
        if result.is_err() {
            failed.push(*name);
            // The next case starts from three reachable managers.
            cluster.recover();
        }
    }
    let ran = started.elapsed();
    drop(cluster);
    table.print();
    eprintln!(
        "formed in {formed:.1?}, cases and formation {ran:.1?}, torn down after {:.1?}",
        started.elapsed()
    );
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}
