//! Idempotent teardown of one app (SPEC section 3 step 10), shared by the
//! run, its pre-clean and the janitor. Safe on an app that is whole, half
//! there or absent: each step first asks the engine what exists.
//!
//! The order follows what the engine and abra really do: `app undeploy` may
//! return before the stack's containers are gone, and `app rm` fails on
//! volume removal ("volume is in use") while they exist; so we wait for
//! services, containers and networks to go, then remove the app, then check
//! that no volume or secret of the stack is left.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::abra::Abra;
use crate::docker::Docker;
use crate::external::Bound;
use crate::say;

/// One app to tear down.
#[derive(Clone, Copy, Debug)]
pub struct App<'a> {
    pub server: &'a str,
    pub domain: &'a str,
    pub stack: &'a str,
}

/// Whether anything of the app exists: its env file or anything on the engine.
pub fn present(abra: &Abra, docker: &Docker, app: App, bound: &Bound) -> Result<bool> {
    if abra.env_file(app.server, app.domain).exists() {
        return Ok(true);
    }
    Ok(!docker.leftovers(app.stack, bound)?.is_empty())
}

/// Tears the app down completely, within `bound`; Ok only when nothing of
/// it is left (no service, container, network, volume, secret, env file).
pub fn teardown(abra: &Abra, docker: &Docker, app: App, bound: &Bound) -> Result<()> {
    let started = std::time::Instant::now();
    say!("teardown of {} (stack {})", app.domain, app.stack);
    let services = docker
        .services(app.stack, bound)
        .context("failed to list the stack's services")?;
    if !services.is_empty() {
        abra.undeploy(app.domain, bound)
            .with_context(|| format!("failed to undeploy {}", app.domain))?;
    }
    docker
        .wait_gone(app.stack, bound)
        .with_context(|| format!("stack {} did not go away after undeploy", app.stack))?;
    let env_file = abra.env_file(app.server, app.domain);
    if env_file.exists() {
        let mut delay = Duration::from_millis(100);
        loop {
            match abra.rm(app.domain, bound) {
                Ok(()) => break,
                // The engine may report a volume in use for a moment after
                // the last container went; retry within the bound.
                Err(e) if format!("{e:#}").contains("in use") && !bound.expired() => {
                    say!(
                        "app rm: volume still in use, retrying in {}",
                        crate::units::human(delay)
                    );
                    bound.sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to remove app {}", app.domain))
                }
            }
        }
    }
    let left = docker.leftovers(app.stack, bound)?;
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
