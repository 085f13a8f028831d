//! Idempotent teardown of one app (SPEC section 3 step 10), shared by the
//! run, its pre-clean and the janitor. Safe on an app that is whole, half
//! there or absent: each step first asks the engine what exists.
//!
//! The order follows what the engine and abra really do: `app undeploy` may
//! return before the stack's containers are gone, and `app rm` fails on
//! volume removal ("volume is in use") while they exist; so we wait for
//! services, containers and networks to go, then remove the app, then check
//! that no volume or secret of the stack is left.
//!
//! The engine does not always finish: `docker stack rm` (and so `app
//! undeploy`) leaves a network that was still "in use by task" and never
//! retries (moby/moby#31068), and may leave a container that no task owns.
//! Once the stack has had no service for the grace, teardown removes what
//! carries the stack's namespace label itself (`leftovers`), then goes on.
//!
//! It runs under the app lock, and a swarm lock can be lost half-way (a
//! holder paused past its lease, SPEC 11): the undeploy's wait for the
//! engine takes seconds. So the lock is asked again, from the authority,
//! before each later mutating step (the leftovers' removal, `app rm`); a
//! lost lock stops the teardown there and the app is the next holder's.

pub mod leftovers;

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::ext::abra::Abra;
use crate::ext::abra::RmError;
use crate::ext::docker::events::Pacer;
use crate::ext::docker::{Docker, Leftovers};
use crate::ext::Bound;
use crate::lock::backend::AppLock;
use crate::say;
use crate::sys::wait::Backoff;

/// One app to tear down.
#[derive(Clone, Copy, Debug)]
pub(crate) struct App<'a> {
    pub server: &'a str,
    pub domain: &'a str,
    pub stack: &'a str,
}

/// Whether anything of the app exists: its env file or anything on the engine.
pub(crate) fn present(abra: &Abra, docker: &Docker, app: App, bound: &Bound) -> Result<bool> {
    if abra.env_file(app.server, app.domain).exists() {
        return Ok(true);
    }
    Ok(!docker.leftovers(app.stack, bound)?.is_empty())
}

/// Tears the app down completely, within `bound`, under `lock` (the
/// caller checked it before calling); Ok only when nothing of it is left
/// (no service, container, network, volume, secret, env file).
pub(crate) fn teardown(
    abra: &Abra,
    docker: &Docker,
    app: App,
    bound: &Bound,
    lock: &dyn AppLock,
) -> Result<()> {
    teardown_beside(abra, docker, app, bound, lock, || {})
}

/// [`teardown`], calling `beside` once the undeploy has been issued (or
/// there was nothing to undeploy), before the wait for the engine: what the
/// caller starts there runs while the stack goes, and never ahead of the
/// undeploy. Not called when the undeploy failed with services left.
pub(crate) fn teardown_beside(
    abra: &Abra,
    docker: &Docker,
    app: App,
    bound: &Bound,
    lock: &dyn AppLock,
    beside: impl FnOnce(),
) -> Result<()> {
    let started = std::time::Instant::now();
    say!("teardown of {} (stack {})", app.domain, app.stack);
    // Subscribed before the undeploy, so the wait below hears every removal
    // the undeploy starts (the stream is stopped when the pacer is dropped).
    let mut pacer = Pacer::new(
        app.stack,
        docker.subscribe(app.stack, std::time::SystemTime::now()),
    );
    let services = docker
        .service_ids(app.stack, bound)
        .context("failed to list the stack's services")?;
    if !services.is_empty() {
        if let Err(e) = abra.undeploy(app.domain, bound) {
            // `docker stack rm` removes the services, then fails on a
            // network still in use and exits non-zero: what matters is
            // whether a service is left, and the network is removed below.
            let left = docker
                .service_ids(app.stack, &bound.for_query())
                .context("failed to list the stack's services after a failed undeploy")?;
            if !left.is_empty() {
                return Err(e).with_context(|| format!("failed to undeploy {}", app.domain));
            }
            say!(
                "undeploy of {} reported an error but no service of stack {} is left: going on ({e:#})",
                app.domain,
                app.stack
            );
        }
    }
    beside();
    finish_engine_side(docker, app.stack, bound, &mut pacer, lock)?;
    drop(pacer);
    let env_file = abra.env_file(app.server, app.domain);
    if env_file.exists() {
        still_ours(lock, app.domain, "app rm")?;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match abra.rm(app.domain, bound) {
                Ok(()) => break,
                // The engine may report a volume in use for a moment after
                // the last container went; retry within the bound.
                Err(RmError::VolumeInUse(_)) if !bound.expired() => {
                    say!(
                        "app rm: volume still in use, retrying in {}",
                        crate::units::human(backoff.delay())
                    );
                    bound.sleep(backoff.delay());
                    backoff.double();
                    lock.may_mutate().with_context(|| {
                        format!("teardown of {} stopped before retrying app rm", app.domain)
                    })?;
                }
                Err(e) => {
                    return Err(e.into_error())
                        .with_context(|| format!("failed to remove app {}", app.domain))
                }
            }
        }
    }
    let mut left = docker.leftovers(app.stack, bound)?;
    if !left.running_gone() {
        // A task that was still starting when the stack went can bring a
        // container or its network attachment up after the wait saw
        // nothing (the engine's list is empty for a moment between the
        // manager's removal and the node's late start): wait and remove
        // again, once, before judging.
        say!(
            "the engine brought back {left} of stack {} after the wait: waiting and removing again",
            app.stack
        );
        finish_engine_side(
            docker,
            app.stack,
            bound,
            &mut Pacer::new(app.stack, None),
            lock,
        )?;
        left = docker.leftovers(app.stack, bound)?;
    }
    if !left.is_empty() || env_file.exists() {
        bail!(
            "teardown of {} left {}{}",
            app.domain,
            left,
            if env_file.exists() {
                " and its env file"
            } else {
                ""
            }
        );
    }
    say!(
        "teardown of {} complete in {}: nothing of stack {} is left",
        app.domain,
        crate::units::human(started.elapsed()),
        app.stack
    );
    Ok(())
}

/// Waits for the engine to remove the stack's containers and networks; when
/// it has stopped short (no service for the grace, something left), removes
/// the rest itself and waits until the engine confirms that nothing is left.
/// The grace gives the engine's own task reaper its chance first: a task
/// container normally goes seconds after its service (~6 s measured).
fn finish_engine_side(
    docker: &Docker,
    stack: &str,
    bound: &Bound,
    pacer: &mut Pacer,
    lock: &dyn AppLock,
) -> Result<()> {
    // At most half of what is left of the bound, so that a grace as long
    // as the bound (the janitor's 10 s against a short teardown timeout)
    // still leaves time to remove the rest.
    let patience = bound.deadline.map_or(bound.grace, |d| {
        bound
            .grace
            .min(d.saturating_duration_since(std::time::Instant::now()) / 2)
    });
    let left = leftovers::wait_gone_or_stalled(docker, stack, bound, patience, pacer)
        .with_context(|| format!("stack {stack} did not go away after undeploy"))?;
    if left.running_gone() {
        return Ok(());
    }
    // Volumes and secrets are `app rm`'s to remove: name only what we remove.
    let stray = Leftovers {
        containers: left.containers,
        networks: left.networks,
        ..Leftovers::default()
    };
    say!(
        "stack {stack} has had no service for {} and the engine left {stray}: removing them",
        crate::units::human(patience)
    );
    let why = format!(
        "left by the engine after undeploy (no service for {})",
        crate::units::human(patience)
    );
    still_ours(lock, stack, "removing the stack's leftovers")?;
    leftovers::remove_stack_leftovers(docker, stack, &why, bound)
        .with_context(|| format!("failed to remove what the engine left of stack {stack}"))?;
    docker
        .wait_gone(stack, bound, pacer)
        .with_context(|| format!("stack {stack} did not go away after removing its leftovers"))?;
    Ok(())
}

/// Asks the lock's authority whether the app is still ours before `step`
/// (for a swarm lock, one read of its object; nothing for flock). A lock
/// lost since the teardown began stops it: the app is the next holder's
/// (its pre-clean, or the janitor) and touching it could destroy that
/// holder's fresh deploy.
fn still_ours(lock: &dyn AppLock, what: &str, step: &str) -> Result<()> {
    lock.confirm_held().with_context(|| {
        format!("teardown of {what} stopped before {step}: the app lock is no longer ours")
    })
}
