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
//! Parsing is pure; the calls go through the engine client (`ext::docker`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::ext::docker::api;
use crate::ext::docker::events::Pacer;
use crate::ext::docker::{says_gone, says_in_use};
use crate::ext::docker::{Docker, Leftovers, SeenGone, STACK_LABEL};
use crate::ext::{self, Bound};
use crate::say;
use crate::sys::wait::Backoff;

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

    /// The API's list of everything carrying `label` (full IDs).
    fn list_path(self, label: &str) -> String {
        let head = match self {
            Kind::Container => "/containers/json?all=1&",
            Kind::Network => "/networks?",
        };
        format!("{head}{}", api::filters(&[("label", label)]))
    }

    /// The API's path of one object.
    fn path(self, id: &str) -> String {
        match self {
            Kind::Container => format!("/containers/{}", api::encode(id)),
            Kind::Network => format!("/networks/{}", api::encode(id)),
        }
    }
}

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

/// Parses the engine's container or network inspect answers, as a JSON
/// array (`docker container inspect` prints the same objects).
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
    #[derive(Deserialize)]
    struct Listed {
        #[serde(rename = "Id")]
        id: String,
    }
    let what = || format!("failed to list the {}s of stack {stack}", kind.noun());
    let r = docker
        .engine()?
        .get(&kind.list_path(&format!("{STACK_LABEL}={stack}")), bound)
        .with_context(what)?
        .check("the listing")
        .with_context(what)?;
    let v: Vec<Listed> = r.json("the listing").with_context(what)?;
    Ok(v.into_iter().map(|o| o.id).collect())
}

/// The object as the engine shows it now; None when it is gone.
pub(crate) fn inspect(
    docker: &Docker,
    kind: Kind,
    id: &str,
    bound: &Bound,
) -> Result<Option<Object>> {
    let what = || format!("failed to inspect {} {id}", kind.noun());
    let suffix = if kind == Kind::Container { "/json" } else { "" };
    let r = docker
        .engine()?
        .get(&format!("{}{suffix}", kind.path(id)), bound)
        .with_context(what)?;
    if r.status == 404 || (!r.ok() && says_gone(&r.message())) {
        return Ok(None);
    }
    let r = r.check("the inspect").with_context(what)?;
    let mut text = b"[".to_vec();
    text.extend_from_slice(&r.body);
    text.push(b']');
    let objects = parse_inspect(kind, &String::from_utf8_lossy(&text))
        .with_context(|| format!("inspecting {} {id}", kind.noun()))?;
    Ok(objects
        .into_iter()
        .find(|o| o.id == id || o.id.starts_with(id)))
}

/// One removal by full ID. Containers are force-removed: a leftover may
/// still run (a container no task owns is never stopped by the engine
/// either).
pub(crate) fn remove(docker: &Docker, kind: Kind, id: &str, bound: &Bound) -> Result<Removal> {
    let query = if kind == Kind::Container {
        "?force=1"
    } else {
        ""
    };
    let r = docker
        .engine()?
        .send("DELETE", &format!("{}{query}", kind.path(id)), None, bound)
        .with_context(|| format!("failed to remove {} {id}", kind.noun()))?;
    if r.ok() {
        return Ok(Removal::Removed);
    }
    let text = r.message();
    if r.status == 404 || says_gone(&text) {
        return Ok(Removal::Gone);
    }
    if says_in_use(&text) {
        return Ok(Removal::InUse(text));
    }
    bail!(
        "failed to remove {} {id} ({}): {text}",
        kind.noun(),
        r.status
    )
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
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
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
                crate::units::human(backoff.delay())
            );
            bound.sleep(backoff.delay());
            backoff.double();
        }
    }
    Ok(removed)
}
