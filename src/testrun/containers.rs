//! Removal of the containers a suite's tests started. Every test gets
//! `CCCI_CONTAINER_LABEL` (`cc-ci.run=<run-id>`) to put on any container it
//! runs; at the end of the suite, on every path (pass, fail, a stop), the
//! runner removes every container that carries it:
//! the engine's container list by that label, a forced removal of each,
//! then a second listing to confirm (the engine at `DOCKER_HOST` of the
//! runner's environment). An engine that is absent, fails or hangs (each
//! call is bounded) is logged and never fails the suite: the verdict is
//! the tests', and the janitor finds what a dead engine kept.
//!
//! A suite stopped by a signal under `run` leaves the removal to the run's
//! teardown (see [`Removal`]): on a cancel every millisecond before the
//! teardown starts is a millisecond the app stays on the swarm.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::ext::docker::Docker;
use crate::ext::Bound;
use crate::say;

/// The label tests put on their containers.
pub(crate) fn label(run_id: &str) -> String {
    format!("cc-ci.run={run_id}")
}

/// How long one engine call may take before it is given up.
const CALL_BOUND: Duration = Duration::from_secs(60);

/// Says how a removal went; a failure is never fatal (see the header).
pub(crate) fn say_removed(label: &str, removed: &Result<usize>) {
    match removed {
        Ok(0) => {}
        Ok(k) => say!("removed {k} container(s) labelled {label}"),
        Err(e) => say!("container cleanup for label {label} failed (not fatal): {e:#}"),
    }
}

/// A removal of the containers labelled `label` on a thread of its own, so
/// that the run's teardown of the app goes on beside it. [`Removal::finish`]
/// waits for it; the run calls it before it releases the app lock, so the
/// order of SPEC section 3 (teardown, then the lock) holds for the
/// containers too.
///
pub(crate) struct Removal {
    label: String,
    thread: Option<std::thread::JoinHandle<Result<usize>>>,
}

impl Removal {
    /// Starts the removal, each engine call bounded by `until` (the
    /// teardown's deadline, so a hung engine cannot hold the run past the
    /// wrapper's allowance; at least `grace` from now); if no thread can be
    /// started, removes them here.
    pub(crate) fn start(
        docker: Option<Docker>,
        label: String,
        grace: Duration,
        until: Instant,
    ) -> Removal {
        let until = until.max(Instant::now() + grace);
        let (d, l) = (docker.clone(), label.clone());
        let started = std::thread::Builder::new()
            .name("container-removal".into())
            .spawn(move || remove_labelled(d.as_ref(), &l, grace, Some(until)));
        let thread = match started {
            Ok(t) => Some(t),
            Err(e) => {
                say!("could not start a thread for the container cleanup ({e}): removing them now");
                say_removed(
                    &label,
                    &remove_labelled(docker.as_ref(), &label, grace, Some(until)),
                );
                None
            }
        };
        Removal { label, thread }
    }

    /// Waits for the removal and says how it went.
    pub(crate) fn finish(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let removed = t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the container cleanup thread panicked")));
            say_removed(&self.label, &removed);
        }
    }
}

impl Drop for Removal {
    /// A removal is never abandoned: an early return still waits for it.
    fn drop(&mut self) {
        self.join();
    }
}

/// Removes every container labelled `label`; returns how many were removed.
/// Each engine call is bounded by [`CALL_BOUND`], and by `until` if given.
pub(crate) fn remove_labelled(
    docker: Option<&Docker>,
    label: &str,
    grace: Duration,
    until: Option<Instant>,
) -> Result<usize> {
    let Some(docker) = docker else {
        bail!(
            "no Docker engine to reach (DOCKER_HOST, else {})",
            crate::ext::docker::api::DEFAULT_SOCKET
        );
    };
    // One call's bound: CALL_BOUND from its start, and never past `until`.
    let bound = || {
        let end = Instant::now() + CALL_BOUND;
        Bound::until(until.map_or(end, |u| u.min(end)), grace)
    };
    let ids = docker.labelled_containers(label, &bound())?;
    if ids.is_empty() {
        return Ok(0);
    }
    say!(
        "removing {} container(s) labelled {label}: {}",
        ids.len(),
        ids.join(" ")
    );
    let errors = docker.remove_containers(&ids, &bound())?;
    let left = docker.labelled_containers(label, &bound())?;
    if !left.is_empty() {
        bail!(
            "{} container(s) labelled {label} are still there after their forced removal ({}): {}",
            left.len(),
            left.join(" "),
            errors.join("; ")
        );
    }
    if !errors.is_empty() {
        say!("the forced removal reported: {}", errors.join("; "));
    }
    Ok(ids.len())
}
