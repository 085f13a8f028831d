//! The one engine client: every question cc-ci-run asks the engine and
//! everything it tells it goes through [`Docker`] (no other module spawns
//! `docker`): convergence of a stack's services (judged by `converge`),
//! the teardown check, the watch, image checks and pulls, the test
//! runner's container removal, and the swarm lock's objects. Parsing is
//! pure; the calls go through `docker` (CCCI_DOCKER) with JSON output, each
//! bounded and cancellable the one way `ext::run` does it.
//!
//! Waits look again on each event of the stack (`events`: `docker events`
//! subscribed before the action they follow), with a slow backstop poll;
//! without a stream they poll with exponential backoff (50 ms doubling to
//! 500 ms). Bounded by the caller's deadline and interruptible by the
//! shutdown latch: never a fixed sleep.

pub mod converge;
pub mod events;
pub mod labels;
pub mod watch;

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::ext::{self, Bound};
use converge::Settle;
use events::{Events, Pacer};

/// The longest pause between two polls of a wait. Each poll is several
/// docker CLI calls (~0.1 s each on a loaded host), so a shorter cap buys
/// little; a longer one would add up to a second to every teardown.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(500);

/// The label docker stack puts on everything of a stack.
pub(crate) const STACK_LABEL: &str = "com.docker.stack.namespace";

/// One service's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub id: String,
    pub name: String,
    pub running: u64,
    pub desired: u64,
    /// `UpdateStatus.State` (`updating`, `paused`, `completed`, …), if any.
    pub update_state: Option<String>,
}

#[derive(Deserialize)]
struct LsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Replicas", default)]
    replicas: String,
}

/// Parses `docker service ls --format '{{json .}}'`: one object per line,
/// `Replicas` as `running/desired` (global services may add text after).
pub fn parse_service_ls(text: &str) -> Result<Vec<ServiceState>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: LsLine = serde_json::from_str(line)
            .with_context(|| format!("unexpected docker service ls line: {line}"))?;
        let (running, desired) = parse_replicas(&l.replicas).with_context(|| {
            format!(
                "unexpected replica count {:?} of service {}",
                l.replicas, l.name
            )
        })?;
        out.push(ServiceState {
            id: l.id,
            name: l.name,
            running,
            desired,
            update_state: None,
        });
    }
    Ok(out)
}

/// `1/1`, `0/1`, `2/2 (max 1 per node)` → (running, desired).
pub(crate) fn parse_replicas(text: &str) -> Option<(u64, u64)> {
    let first = text.split_whitespace().next()?;
    let (r, d) = first.split_once('/')?;
    Some((r.parse().ok()?, d.parse().ok()?))
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "UpdateStatus", default)]
    update_status: Option<UpdateStatus>,
    #[serde(rename = "Spec", default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct UpdateStatus {
    #[serde(rename = "State", default)]
    state: String,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "Labels", default)]
    labels: std::collections::HashMap<String, String>,
}

/// Parses `docker service inspect` (a JSON array): id → update state.
pub fn parse_update_states(text: &str) -> Result<Vec<(String, Option<String>)>> {
    let v: Vec<Inspect> =
        serde_json::from_str(text.trim()).context("unexpected docker service inspect output")?;
    Ok(v.into_iter()
        .map(|i| {
            (
                i.id,
                i.update_status.map(|u| u.state).filter(|s| !s.is_empty()),
            )
        })
        .collect())
}

/// Parses the labels of the first service of `docker service inspect`.
pub fn parse_labels(text: &str) -> Result<std::collections::HashMap<String, String>> {
    let v: Vec<Inspect> =
        serde_json::from_str(text.trim()).context("unexpected docker service inspect output")?;
    Ok(v.into_iter()
        .next()
        .and_then(|i| i.spec)
        .unwrap_or_default()
        .labels)
}

/// What is left of a stack on the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub services: Vec<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
}

impl Leftovers {
    /// Nothing that keeps `app rm` from working: no service, container or network.
    pub fn running_gone(&self) -> bool {
        self.services.is_empty() && self.containers.is_empty() && self.networks.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.running_gone() && self.volumes.is_empty() && self.secrets.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("services", &self.services),
            ("containers", &self.containers),
            ("networks", &self.networks),
            ("volumes", &self.volumes),
            ("secrets", &self.secrets),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect();
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Lines of a `-q`/`{{.Name}}` listing.
pub(crate) fn parse_names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The kinds of a stack's objects a teardown wait has seen gone.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeenGone {
    services: bool,
    networks: bool,
}

/// What a convergence wait saw when the stack settled.
#[derive(Debug)]
pub(crate) struct Converged {
    /// How long cc-ci-run waited, from its first look to the settled one.
    pub waited: Duration,
    /// Each service and what it runs.
    pub summary: String,
    /// The engine's own update time (UpdateStatus StartedAt → CompletedAt,
    /// the longest of the stack) of the deploy the wait followed, when it
    /// updated a service.
    pub engine_update: Option<Duration>,
    /// Why the stack counts as settled although an update paused (the
    /// current spec ran for the stability window), for the log and record.
    pub warning: Option<String>,
    /// The stream the wait read, still open, for the watch through the
    /// tests (None when it had ended).
    pub events: Option<Events>,
    /// The tasks whose end the wait already judged: of a previous spec,
    /// or ended before the stack settled. Their containers' late `die`
    /// events are not the watch's.
    pub judged: std::collections::HashSet<String>,
    /// The stack's services, by name.
    pub services: Vec<String>,
}

/// An image presence check running beside other work (issue 18 item 3):
/// the run starts it as soon as the recipe's images are known and reads
/// it in the prepare phase. Dropping it stops and reaps the check.
pub(crate) struct ImageCheck(crate::sys::spawn::Child);

impl ImageCheck {
    /// Whether every image was present; false also when the check failed,
    /// was interrupted or overran the bound (the caller then checks and
    /// pulls image by image, which reports what went wrong).
    pub(crate) fn all_present(mut self, bound: &Bound) -> bool {
        matches!(
            self.0.wait(bound.cancel, bound.deadline),
            Ok(crate::sys::spawn::Waited::Exited)
        ) && self.0.status().is_some_and(|s| s.success())
    }
}

impl Drop for ImageCheck {
    fn drop(&mut self) {
        let _ = self.0.terminate(Duration::from_millis(200));
    }
}

/// The engine, through its CLI.
#[derive(Clone, Debug)]
pub(crate) struct Docker {
    bin: OsString,
}

impl Docker {
    pub(crate) fn new(bin: &OsString) -> Docker {
        Docker { bin: bin.clone() }
    }

    /// The docker of an environment given as a map (the test runner's,
    /// which a test points at a stand-in): `CCCI_DOCKER`, else `docker` on
    /// its PATH; None when neither is there.
    pub(crate) fn from_env(env: &std::collections::HashMap<String, String>) -> Option<Docker> {
        if let Some(p) = env.get("CCCI_DOCKER").filter(|p| !p.is_empty()) {
            return Some(Docker { bin: p.into() });
        }
        let path = env.get("PATH")?;
        std::env::split_paths(path)
            .map(|d| d.join("docker"))
            .find(|p| p.is_file())
            .map(|p| Docker {
                bin: p.into_os_string(),
            })
    }

    /// `docker ARGS` as a stream of lines (`docker events`), read as it
    /// comes; None when it cannot be started.
    pub(crate) fn stream(&self, args: &[String]) -> Option<events::Stream> {
        events::Stream::start(&self.bin, args)
    }

    /// The IDs of every container (any state) labelled `label`:
    /// `docker ps -aq --filter label=LABEL`.
    pub(crate) fn labelled_containers(&self, label: &str, bound: &Bound) -> Result<Vec<String>> {
        let filter = format!("label={label}");
        Ok(parse_names(
            &self.query(&["ps", "-aq", "--filter", &filter], bound)?,
        ))
    }

    /// `docker rm -f IDS`: its output whatever its exit status (a
    /// container gone meanwhile is not an error of the caller's).
    pub(crate) fn remove_containers(
        &self,
        ids: &[String],
        bound: &Bound,
    ) -> Result<crate::sys::spawn::Output> {
        let mut args = vec!["rm".to_string(), "-f".to_string()];
        args.extend(ids.iter().cloned());
        self.call(&args, bound)
    }

    fn query(&self, args: &[&str], bound: &Bound) -> Result<String> {
        let what = format!("docker {}", args.join(" "));
        let mut c = Command::new(&self.bin);
        c.args(args);
        Ok(ext::run_ok(&mut c, &what, bound)?.stdout)
    }

    /// Runs `docker ARGS` within `bound` and returns its output whatever its
    /// exit status, for callers that tell the engine's errors apart ("no
    /// such container", "in use"): see `leftovers`.
    pub(crate) fn call<S: AsRef<str>>(
        &self,
        args: &[S],
        bound: &Bound,
    ) -> Result<crate::sys::spawn::Output> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let what = format!("docker {}", args.join(" "));
        let mut c = Command::new(&self.bin);
        c.args(args);
        ext::run(&mut c, &what, bound)
    }

    /// The IDs of `stack`'s services: one `service ls -q`, all teardown
    /// needs to know whether there is something to undeploy.
    pub(crate) fn service_ids(&self, stack: &str, bound: &Bound) -> Result<Vec<String>> {
        let filter = format!("label={STACK_LABEL}={stack}");
        Ok(parse_names(&self.query(
            &["service", "ls", "-q", "--filter", &filter],
            bound,
        )?))
    }

    /// The labels of the stack's `app` service.
    pub(crate) fn app_labels(
        &self,
        stack: &str,
        bound: &Bound,
    ) -> Result<std::collections::HashMap<String, String>> {
        let name = format!("{stack}_app");
        parse_labels(&self.query(&["service", "inspect", &name], bound)?)
    }

    /// Subscribes to the events of `stack`, replayed from `since`: taken
    /// before the action a wait follows, so that nothing is missed.
    pub(crate) fn subscribe(&self, stack: &str, since: SystemTime) -> Option<Events> {
        Events::subscribe(&self.bin, stack, since)
    }

    /// Starts the watch through a tier's tests (SPEC section 3 step 8) on
    /// what the convergence wait `c` left: its stream, still open, and the
    /// tasks it judged.
    pub(crate) fn watch(&self, stack: &str, c: &mut Converged) -> Result<watch::Watch> {
        watch::Watch::start(
            &self.bin,
            stack,
            c.events.take(),
            std::mem::take(&mut c.judged),
            c.services.clone(),
        )
    }

    /// The watch's look at the engine, for a stream with a gap: the exits
    /// of `stack`'s tasks (each task that ended by itself: complete,
    /// failed, rejected) since `since`, the tasks in `judged` left out.
    pub(crate) fn task_exits(
        &self,
        stack: &str,
        since: SystemTime,
        judged: &std::collections::HashSet<String>,
        bound: &Bound,
    ) -> Result<Vec<watch::Exit>> {
        let mut pacer = Pacer::new(stack, None);
        let (services, tasks) = self.converge_state(stack, bound, &mut None, &mut pacer)?;
        Ok(tasks
            .into_iter()
            .filter(|t| converge::exited(&t.state) && !judged.contains(&t.id))
            .filter(|t| t.at.is_some_and(|at| at >= since))
            .map(|t| watch::Exit {
                service: services
                    .iter()
                    .find(|s| s.id == t.service_id)
                    .map_or_else(|| t.service_id.clone(), |s| s.name.clone()),
                container: t.id.clone(),
                task: t.id,
                exit_code: t.exit_code,
                at: t.at,
            })
            .collect())
    }

    /// What keeps `app rm` from working: the services, containers and
    /// networks of `stack` (volumes and secrets are not asked for). A kind
    /// that `seen` holds gone is not asked again while `pacer` says the
    /// stack kept its shape (nothing of it created since): the engine
    /// removes services and networks early and containers last, so the
    /// look that ends a teardown wait is one `docker ps`.
    pub(crate) fn running_leftovers(
        &self,
        stack: &str,
        bound: &Bound,
        seen: &mut SeenGone,
        pacer: &mut Pacer,
    ) -> Result<Leftovers> {
        if !pacer.still_shaped() {
            *seen = SeenGone::default();
        }
        let filter = format!("label={STACK_LABEL}={stack}");
        let q = |gone: bool, args: &[&str]| -> Result<Vec<String>> {
            if gone {
                return Ok(Vec::new());
            }
            Ok(parse_names(&self.query(args, bound)?))
        };
        let left = Leftovers {
            services: q(seen.services, &["service", "ls", "-q", "--filter", &filter])?,
            containers: q(false, &["ps", "-a", "-q", "--filter", &filter])?,
            networks: q(seen.networks, &["network", "ls", "-q", "--filter", &filter])?,
            ..Leftovers::default()
        };
        seen.services = left.services.is_empty();
        seen.networks = left.networks.is_empty();
        Ok(left)
    }

    /// Everything of `stack` still on the engine.
    pub(crate) fn leftovers(&self, stack: &str, bound: &Bound) -> Result<Leftovers> {
        let filter = format!("label={STACK_LABEL}={stack}");
        let q =
            |args: &[&str]| -> Result<Vec<String>> { Ok(parse_names(&self.query(args, bound)?)) };
        let prefix = format!("{stack}_");
        Ok(Leftovers {
            services: q(&["service", "ls", "-q", "--filter", &filter])?,
            containers: q(&["ps", "-a", "-q", "--filter", &filter])?,
            networks: q(&["network", "ls", "-q", "--filter", &filter])?,
            volumes: q(&["volume", "ls", "-q", "--filter", &filter])?,
            // abra's secrets are named `${STACK}_${SECRET}_${VERSION}`; a name
            // filter is a substring match, so keep the prefix matches only.
            secrets: q(&[
                "secret",
                "ls",
                "--filter",
                &format!("name={prefix}"),
                "--format",
                "{{.Name}}",
            ])?
            .into_iter()
            .filter(|s| s.starts_with(&prefix))
            .collect(),
        })
    }

    /// Starts asking the engine whether all of `images` are present, in the
    /// background: one `docker image inspect` of them all, which fails when
    /// any is missing. None when it cannot start (the caller then checks
    /// each image itself).
    pub(crate) fn start_image_check(&self, images: &[String]) -> Option<ImageCheck> {
        if images.is_empty() {
            return None;
        }
        let mut c = Command::new(&self.bin);
        c.args(["image", "inspect", "--format", "{{.Id}}"])
            .args(images)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        crate::sys::spawn::spawn(&mut c, crate::sys::spawn::Isolation::Group)
            .ok()
            .map(ImageCheck)
    }

    /// Makes `image` present: inspect, else pull.
    pub(crate) fn ensure_image(&self, image: &str, bound: &Bound) -> Result<()> {
        let mut c = Command::new(&self.bin);
        c.args(["image", "inspect", image]);
        if ext::run(&mut c, "docker image inspect", bound)?
            .status
            .success()
        {
            return Ok(());
        }
        crate::say!("pulling {image}");
        self.query(&["pull", image], bound).map(drop)
    }

    /// One look at `stack` for the convergence wait: its services with
    /// their specs and update states, and every task the engine keeps of
    /// them (running, starting, failed, shut down), each with its own copy
    /// of the spec it runs. Four CLI calls: `service ls -q`, `service
    /// inspect`, `service ps -q --no-trunc`, `inspect --type task`; three
    /// when `ids` holds the services of an earlier look and `pacer` says
    /// no service was created or removed since.
    pub(crate) fn converge_state(
        &self,
        stack: &str,
        bound: &Bound,
        ids: &mut Option<Vec<String>>,
        pacer: &mut Pacer,
    ) -> Result<(Vec<converge::Service>, Vec<converge::Task>)> {
        if !pacer.still_shaped() {
            *ids = None;
        }
        let ids = match ids {
            Some(ids) => ids,
            None => {
                let filter = format!("label={STACK_LABEL}={stack}");
                let found =
                    parse_names(&self.query(&["service", "ls", "-q", "--filter", &filter], bound)?);
                // No service yet is nothing to remember.
                if found.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                ids.insert(found)
            }
        };
        let mut args = vec!["service", "inspect"];
        args.extend(ids.iter().map(String::as_str));
        let services = converge::parse_services(&self.query(&args, bound)?)?;
        let mut args = vec!["service", "ps", "-q", "--no-trunc"];
        args.extend(services.iter().map(|s| s.id.as_str()));
        let task_ids = parse_names(&self.query(&args, bound)?);
        if task_ids.is_empty() {
            return Ok((services, Vec::new()));
        }
        let mut args = vec!["inspect", "--type", "task"];
        args.extend(task_ids.iter().map(String::as_str));
        let tasks = converge::parse_tasks(&self.query(&args, bound)?)?;
        Ok((services, tasks))
    }

    /// Waits until every service of `stack` runs its current spec
    /// ([`converge::settle_stack`]); a paused or rolled-back update ends the
    /// wait at once with an error naming the service, the update's message
    /// and the last task error. A query that fails (the engine prunes a
    /// task between `service ps` and `inspect`) is retried on the next
    /// poll; three failures in a row end the wait. `deployed_at` is when
    /// the deploy that the wait follows began (None after a restore, which
    /// deploys nothing): the engine's update time is reported for updates
    /// since then. `events`: the stack's events, subscribed before the
    /// deploy (None: subscribed here, replayed from `deployed_at`).
    pub(crate) fn wait_converged(
        &self,
        stack: &str,
        deployed_at: Option<SystemTime>,
        events: Option<Events>,
        stable_for: Duration,
        bound: &Bound,
    ) -> Result<Converged> {
        let started = Instant::now();
        // Exits of the current spec count from the deploy (or, when the
        // tier deployed nothing, from the wait's start).
        let since = deployed_at.unwrap_or_else(SystemTime::now);
        let mut pacer = match events {
            Some(e) => Pacer::new(stack, Some(e)),
            None => Pacer::subscribe(
                &self.bin,
                stack,
                deployed_at.unwrap_or_else(SystemTime::now),
            ),
        };
        let mut failures = 0;
        // Why the stack is not settled yet, for the bound's message.
        let mut last = String::new();
        let mut ids = None;
        loop {
            match self.converge_state(stack, &bound.for_query(), &mut ids, &mut pacer) {
                Ok((services, tasks)) => {
                    failures = 0;
                    let clock = converge::Clock {
                        since: Some(since),
                        now: SystemTime::now(),
                        stable_for,
                    };
                    let settled = match converge::settle_stack_at(&services, &tasks, &clock) {
                        Settle::Settled(summary) => Some((summary, None)),
                        Settle::Recovered(summary, warning) => Some((summary, Some(warning))),
                        Settle::Failed(why) => bail!("stack {stack} will not converge: {why}"),
                        Settle::Waiting(why) => {
                            last = why;
                            None
                        }
                    };
                    if let Some((summary, warning)) = settled {
                        let judged = tasks
                            .iter()
                            .filter(|t| {
                                t.state != "running"
                                    || services
                                        .iter()
                                        .find(|s| s.id == t.service_id)
                                        .is_none_or(|s| !converge::same_spec(&t.spec, &s.template))
                            })
                            .map(|t| t.id.clone())
                            .collect();
                        return Ok(Converged {
                            events: pacer.into_events(),
                            judged,
                            services: services.iter().map(|s| s.name.clone()).collect(),
                            waited: started.elapsed(),
                            summary,
                            engine_update: deployed_at
                                .and_then(|t| converge::engine_update_time(&services, t)),
                            warning,
                        });
                    }
                }
                Err(e) if ext::is_interrupted(&e) => return Err(e),
                Err(e) => {
                    // A service removed since the ids were read fails the
                    // inspect: read them again.
                    ids = None;
                    failures += 1;
                    if failures >= 3 {
                        return Err(e.context(format!(
                            "failed to read the convergence of stack {stack} three times in a row"
                        )));
                    }
                    last = format!("query failed: {e:#}");
                }
            }
            if bound.expired() {
                bail!(
                    "stack {stack} did not converge in {}: {last}",
                    crate::units::human(started.elapsed())
                );
            }
            if pacer.pause(bound, None) {
                return Err(
                    anyhow::Error::new(ext::Interrupted).context("convergence wait was stopped")
                );
            }
        }
    }

    /// Waits until no service, container or network of `stack` is left. A
    /// query that fails while the engine removes the stack (a container
    /// listed and gone in one `docker ps`) is retried within the bound: one
    /// failed poll must not abort a teardown and leak the app. Looks again
    /// on each event of the stack that `pacer` reports.
    pub(crate) fn wait_gone(&self, stack: &str, bound: &Bound, pacer: &mut Pacer) -> Result<()> {
        let mut seen = SeenGone::default();
        loop {
            let left = match self.running_leftovers(stack, &bound.for_query(), &mut seen, pacer) {
                Ok(left) => left,
                Err(e) if ext::is_interrupted(&e) || bound.expired() => return Err(e),
                Err(e) => {
                    crate::say!(
                        "warning: querying what is left of stack {stack} failed, retrying: {e:#}"
                    );
                    pacer.pause(bound, None);
                    continue;
                }
            };
            if left.running_gone() {
                return Ok(());
            }
            if bound.expired() {
                bail!("stack {stack} is still there: {left}");
            }
            pacer.pause(bound, None);
        }
    }
}

/// Whether a docker error says the object does not exist. `docker rm -f` of
/// a missing container prints "No such container" and exits 0; `network
/// rm` says "network X not found" and exits 1; the swarm's own API may
/// say "not found" in an rpc error.
pub fn says_gone(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("no such container") || s.contains("no such network") || s.contains("not found")
}

/// Whether a docker error says the object is still in use: "network X is
/// in use by task Y" (swarm, a task still shutting down), "network X id Y
/// has active endpoints" (local), "container is in use"/"removal of
/// container ... is already in progress".
pub fn says_in_use(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("in use") || s.contains("active endpoints") || s.contains("already in progress")
}
