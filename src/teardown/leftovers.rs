//! Removing what the engine leaves of a stack after `docker stack rm`
//! (SPEC section 3 step 10). The engine removes a stack's services, then its
//! networks, in one pass: a network still attached to a task that is
//! shutting down fails with "network ... is in use by task ..." and is never
//! retried (moby/moby#31068), and a container that no task owns any more is
//! never reaped. Teardown gives the engine its grace, then removes the rest
//! itself: containers first (they hold the networks and volumes), then
//! networks.
//!
//! Only what carries the stack's namespace label is ever removed. A label
//! filter selects the candidates, and each one's labels are read again from
//! `inspect` before it is removed, by its full ID: a name or a name prefix
//! is not enough (`example_com` is a prefix of `example_com_2`'s names), and
//! the filter is the engine's, so the exact value is checked here too.
//! Parsing is pure; the calls go through `docker` (CCCI_DOCKER).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::ext::docker::events::Pacer;
use crate::ext::docker::{says_gone, says_in_use};
use crate::ext::docker::{Docker, Leftovers, SeenGone, STACK_LABEL};
use crate::ext::{self, Bound};
use crate::say;

/// The two kinds of object teardown removes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Container,
    Network,
}

impl Kind {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Network => "network",
        }
    }

    /// `docker ... ls` of everything carrying `label`, full IDs.
    fn list_args(self, label: &str) -> Vec<String> {
        let filter = format!("label={label}");
        let head: &[&str] = match self {
            Kind::Container => &["ps", "-a"],
            Kind::Network => &["network", "ls"],
        };
        head.iter()
            .copied()
            .chain(["-q", "--no-trunc", "--filter", &filter])
            .map(String::from)
            .collect()
    }

    fn inspect_args(self, id: &str) -> Vec<String> {
        [self.noun(), "inspect", id]
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Containers are force-removed: a leftover may still run (a container
    /// no task owns is never stopped by the engine either).
    fn remove_args(self, id: &str) -> Vec<String> {
        let v: &[&str] = match self {
            Kind::Container => &["rm", "-f", id],
            Kind::Network => &["network", "rm", id],
        };
        v.iter().copied().map(String::from).collect()
    }
}

/// One container or network as `inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// A container's state (`running`, `exited`, `created`...); empty for a network.
    pub state: String,
}

impl Object {
    /// Whether it carries exactly `stack` as its namespace label.
    pub fn of_stack(&self, stack: &str) -> bool {
        self.labels.get(STACK_LABEL).is_some_and(|v| v == stack)
    }

    fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

#[derive(Deserialize)]
struct ContainerJson {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<ContainerConfig>,
    #[serde(rename = "State", default)]
    state: Option<ContainerState>,
}

#[derive(Deserialize, Default)]
struct ContainerConfig {
    // The engine writes `null` for a container created without labels.
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct ContainerState {
    #[serde(rename = "Status", default)]
    status: String,
}

#[derive(Deserialize)]
struct NetworkJson {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Parses `docker container inspect` or `docker network inspect` (a JSON
/// array; `[]` when the object is gone).
pub fn parse_inspect(kind: Kind, text: &str) -> Result<Vec<Object>> {
    let text = text.trim();
    match kind {
        Kind::Container => {
            let v: Vec<ContainerJson> =
                serde_json::from_str(text).context("unexpected docker container inspect output")?;
            Ok(v.into_iter()
                .map(|c| Object {
                    id: c.id,
                    // The engine names containers with a leading `/`.
                    name: c.name.trim_start_matches('/').to_string(),
                    labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
                    state: c.state.map(|s| s.status).unwrap_or_default(),
                })
                .collect())
        }
        Kind::Network => {
            let v: Vec<NetworkJson> =
                serde_json::from_str(text).context("unexpected docker network inspect output")?;
            Ok(v.into_iter()
                .map(|n| Object {
                    id: n.id,
                    name: n.name,
                    labels: n.labels.unwrap_or_default(),
                    state: String::new(),
                })
                .collect())
        }
    }
}

/// What one removal attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Removed,
    /// It was already gone (removed by the engine meanwhile).
    Gone,
    /// Still in use: a task shutting down, or an endpoint not yet released.
    InUse(String),
}

/// The full IDs of the objects of `kind` carrying `STACK_LABEL=stack`.
pub(crate) fn labelled(
    docker: &Docker,
    kind: Kind,
    stack: &str,
    bound: &Bound,
) -> Result<Vec<String>> {
    let args = kind.list_args(&format!("{STACK_LABEL}={stack}"));
    let out = docker
        .call(&args, bound)
        .with_context(|| format!("failed to list the {}s of stack {stack}", kind.noun()))?;
    if !out.status.success() {
        bail!(
            "failed to list the {}s of stack {stack}: {}",
            kind.noun(),
            ext::tail(&out.stderr, &out.stdout)
        );
    }
    Ok(crate::ext::docker::parse_names(&out.stdout))
}

/// The object as `inspect` shows it now; None when it is gone.
pub(crate) fn inspect(
    docker: &Docker,
    kind: Kind,
    id: &str,
    bound: &Bound,
) -> Result<Option<Object>> {
    let out = docker
        .call(&kind.inspect_args(id), bound)
        .with_context(|| format!("failed to inspect {} {id}", kind.noun()))?;
    if !out.status.success() {
        if says_gone(&out.stderr) {
            return Ok(None);
        }
        bail!(
            "failed to inspect {} {id}: {}",
            kind.noun(),
            ext::tail(&out.stderr, &out.stdout)
        );
    }
    let objects = parse_inspect(kind, &out.stdout)
        .with_context(|| format!("inspecting {} {id}", kind.noun()))?;
    Ok(objects
        .into_iter()
        .find(|o| o.id == id || o.id.starts_with(id)))
}

/// One removal by full ID.
pub(crate) fn remove(docker: &Docker, kind: Kind, id: &str, bound: &Bound) -> Result<Removal> {
    let out = docker
        .call(&kind.remove_args(id), bound)
        .with_context(|| format!("failed to remove {} {id}", kind.noun()))?;
    let text = ext::tail(&out.stderr, "");
    // Checked before the status: `rm -f` of a missing container exits 0
    // with "No such container" on stderr.
    if says_gone(&out.stderr) {
        return Ok(Removal::Gone);
    }
    if out.status.success() {
        return Ok(Removal::Removed);
    }
    if says_in_use(&out.stderr) {
        return Ok(Removal::InUse(text));
    }
    bail!("failed to remove {} {id}: {text}", kind.noun())
}

/// Waits until no service, container or network of `stack` is left, or
/// until the stack has had no service for `patience` while containers or
/// networks remain (the engine stopped short). Returns what is left of
/// those three. A failed query is retried within the bound, as in
/// [`Docker::wait_gone`]. Looks again on each event of the stack that
/// `pacer` reports, and when the patience runs out.
pub(crate) fn wait_gone_or_stalled(
    docker: &Docker,
    stack: &str,
    bound: &Bound,
    patience: Duration,
    pacer: &mut Pacer,
) -> Result<Leftovers> {
    let mut no_service_since: Option<Instant> = None;
    let mut seen = SeenGone::default();
    loop {
        let left = match docker.running_leftovers(stack, &bound.for_query(), &mut seen, pacer) {
            Ok(left) => left,
            Err(e) if ext::is_interrupted(&e) || bound.expired() => return Err(e),
            Err(e) => {
                say!("warning: querying what is left of stack {stack} failed, retrying: {e:#}");
                pacer.pause(bound, None);
                continue;
            }
        };
        if left.running_gone() {
            return Ok(left);
        }
        if left.services.is_empty() {
            let since = *no_service_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= patience {
                return Ok(left);
            }
        } else {
            no_service_since = None;
        }
        if bound.expired() {
            bail!("stack {stack} is still there: {left}");
        }
        pacer.pause(bound, no_service_since.map(|t| t + patience));
    }
}

/// Removes the containers, then the networks, that carry exactly `stack`'s
/// namespace label. A network "in use" (a task the swarm still shuts down,
/// an endpoint not yet released) is retried with a short backoff within
/// the bound. Returns what was removed, as log lines were written.
pub(crate) fn remove_stack_leftovers(
    docker: &Docker,
    stack: &str,
    why: &str,
    bound: &Bound,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for kind in [Kind::Container, Kind::Network] {
        let mut delay = Duration::from_millis(100);
        loop {
            let mut busy = Vec::new();
            for id in labelled(docker, kind, stack, &bound.for_query())? {
                let Some(obj) = inspect(docker, kind, &id, &bound.for_query())? else {
                    continue;
                };
                if !obj.of_stack(stack) {
                    say!(
                        "{} {} ({}) was listed for stack {stack} but its namespace label is {:?}: left alone",
                        kind.noun(),
                        obj.name,
                        obj.short_id(),
                        obj.labels.get(STACK_LABEL)
                    );
                    continue;
                }
                let what = match kind {
                    Kind::Container => {
                        format!("container {} ({}, {})", obj.name, obj.short_id(), obj.state)
                    }
                    Kind::Network => format!("network {} ({})", obj.name, obj.short_id()),
                };
                match remove(docker, kind, &obj.id, &bound.for_query())? {
                    Removal::Removed => {
                        say!("{what} {why}: removed");
                        removed.push(what);
                    }
                    Removal::Gone => say!("{what} {why}: gone by itself meanwhile"),
                    Removal::InUse(msg) => busy.push(format!("{what}: {msg}")),
                }
            }
            if busy.is_empty() {
                break;
            }
            if bound.expired() {
                bail!(
                    "{}s of stack {stack} still in use: {}",
                    kind.noun(),
                    busy.join("; ")
                );
            }
            say!(
                "{} still in use, retrying in {}",
                busy.join("; "),
                crate::units::human(delay)
            );
            bound.sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
    Ok(removed)
}
