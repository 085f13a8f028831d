//! The one engine client: every question cc-ci-run asks the engine and
//! everything it tells it goes through [`Docker`] over the Engine API on
//! the engine's socket ([`api`]; `DOCKER_HOST`): convergence of a stack's
//! services (judged by `converge`), the teardown check, the watch, image
//! checks and pulls, the test runner's container removal, and the swarm
//! lock's objects. cc-ci-run spawns no `docker` at all (`CCCI_DOCKER` is
//! the CLI a recipe's tests and the stand-in abra call). Parsing is pure;
//! each call is bounded by its caller's deadline and ended at once by the
//! funnel's latch.
//!
//! Waits look again on each event of the stack (`events`: `docker events`
//! subscribed before the action they follow), with a slow backstop poll;
//! without a stream they poll with exponential backoff (50 ms doubling to
//! 500 ms). Bounded by the caller's deadline and interruptible by the
//! shutdown latch: never a fixed sleep.

pub mod api;
pub mod converge;
pub mod events;
pub mod labels;
pub mod watch;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::ext::{self, Bound};
use converge::Settle;
use events::{Events, Pacer};

/// The longest pause between two polls of a wait with no event stream
/// (an engine that serves none): a longer one would add up to a second to
/// every teardown.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(500);

/// The label docker stack puts on everything of a stack.
pub(crate) const STACK_LABEL: &str = "com.docker.stack.namespace";

/// A service as the engine shows it: the part `app_labels` reads.
#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Spec", default)]
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "Labels", default)]
    labels: std::collections::HashMap<String, String>,
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

/// The engine, through its API ([`api`]): every call bounded by the
/// caller's [`Bound`] and ended at once by its latch.
#[derive(Clone, Debug)]
pub(crate) struct Docker {
    /// The engine, or why `DOCKER_HOST` names none cc-ci-run can use (every
    /// call then fails with it; the configuration check refused it first).
    engine: std::result::Result<api::Engine, String>,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "Id", alias = "ID")]
    id: String,
}

impl Docker {
    /// The engine `DOCKER_HOST` (`host`) names; None or empty: the default
    /// socket.
    pub(crate) fn new(host: Option<&str>) -> Docker {
        Docker {
            engine: api::Engine::from_host(host).map_err(|e| format!("{e:#}")),
        }
    }

    /// The engine `host` names, as [`Docker::new`] takes it (the test
    /// runner's, which a test points at a stand-in); None when `host` is
    /// not one cc-ci-run can use or there is no engine to reach there.
    pub(crate) fn reachable(host: Option<&str>) -> Option<Docker> {
        let engine = api::Engine::from_host(host).ok()?;
        engine.present().then_some(Docker { engine: Ok(engine) })
    }

    /// The API client, or the configuration error.
    pub(crate) fn engine(&self) -> Result<&api::Engine> {
        self.engine.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// `GET path`, a 2xx answer's body as JSON.
    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, bound: &Bound) -> Result<T> {
        let what = api::call_name("GET", path);
        self.engine()?.get(path, bound)?.check(&what)?.json(&what)
    }

    /// The IDs of a list call's objects (`Id` or `ID`).
    fn ids(&self, path: &str, bound: &Bound) -> Result<Vec<String>> {
        let v: Vec<IdOnly> = self.get_json(path, bound)?;
        Ok(v.into_iter().map(|o| o.id).collect())
    }

    /// Opens `GET /events?QUERY` (None: no stream; the caller polls).
    pub(crate) fn stream(&self, query: &str) -> Option<events::Stream> {
        events::Stream::open(self.engine.as_ref().ok()?, query)
    }

    /// The IDs of every container (any state) labelled `label`.
    pub(crate) fn labelled_containers(&self, label: &str, bound: &Bound) -> Result<Vec<String>> {
        self.ids(
            &format!(
                "/containers/json?all=1&{}",
                api::filters(&[("label", label)])
            ),
            bound,
        )
    }

    /// Force-removes each of `ids`: the engine's error for each that could
    /// not be removed (a container gone meanwhile is not one).
    pub(crate) fn remove_containers(&self, ids: &[String], bound: &Bound) -> Result<Vec<String>> {
        let mut errors = Vec::new();
        for id in ids {
            let r = self.engine()?.send(
                "DELETE",
                &format!("/containers/{}?force=1&v=0", api::encode(id)),
                None,
                bound,
            )?;
            if !r.ok() && r.status != 404 {
                errors.push(format!("{id}: {} ({})", r.message(), r.status));
            }
        }
        Ok(errors)
    }

    /// The IDs of `stack`'s services, all teardown needs to know whether
    /// there is something to undeploy.
    pub(crate) fn service_ids(&self, stack: &str, bound: &Bound) -> Result<Vec<String>> {
        self.ids(&stack_query("/services", stack), bound)
    }

    /// The labels of the stack's `app` service.
    pub(crate) fn app_labels(
        &self,
        stack: &str,
        bound: &Bound,
    ) -> Result<std::collections::HashMap<String, String>> {
        let name = format!("{stack}_app");
        let body = self
            .engine()?
            .get(&format!("/services/{}", api::encode(&name)), bound)?
            .check(&format!("GET /services/{name}"))?;
        let s: Inspect = body.json("GET /services/{name}")?;
        Ok(s.spec.unwrap_or_default().labels)
    }

    /// Subscribes to the events of `stack`, replayed from `since`: taken
    /// before the action a wait follows, so that nothing is missed.
    pub(crate) fn subscribe(&self, stack: &str, since: SystemTime) -> Option<Events> {
        Events::subscribe(self.engine.as_ref().ok()?, stack, since)
    }

    /// A pacer for a wait on `stack`, subscribed from `since`.
    pub(crate) fn pacer(&self, stack: &str, since: SystemTime) -> Pacer {
        Pacer::new(stack, self.subscribe(stack, since))
    }

    /// Starts the watch through a tier's tests (SPEC section 3 step 8) on
    /// what the convergence wait `c` left: its stream, still open, and the
    /// tasks it judged.
    pub(crate) fn watch(&self, stack: &str, c: &mut Converged) -> Result<watch::Watch> {
        watch::Watch::start(
            self,
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
        let (services, tasks) = self.converge_state(stack, bound)?;
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
    /// look that ends a teardown wait is one container listing.
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
        let q = |gone: bool, path: &str| -> Result<Vec<String>> {
            if gone {
                return Ok(Vec::new());
            }
            self.ids(&stack_query(path, stack), bound)
        };
        let left = Leftovers {
            services: q(seen.services, "/services")?,
            containers: q(false, "/containers/json?all=1")?,
            networks: q(seen.networks, "/networks")?,
            ..Leftovers::default()
        };
        seen.services = left.services.is_empty();
        seen.networks = left.networks.is_empty();
        Ok(left)
    }

    /// Everything of `stack` still on the engine.
    pub(crate) fn leftovers(&self, stack: &str, bound: &Bound) -> Result<Leftovers> {
        #[derive(Deserialize)]
        struct Volume {
            #[serde(rename = "Name")]
            name: String,
        }
        #[derive(Deserialize)]
        struct Volumes {
            #[serde(rename = "Volumes", default)]
            volumes: Option<Vec<Volume>>,
        }
        #[derive(Deserialize)]
        struct Secret {
            #[serde(rename = "Spec")]
            spec: SecretSpec,
        }
        #[derive(Deserialize)]
        struct SecretSpec {
            #[serde(rename = "Name")]
            name: String,
        }
        let q = |path: &str| self.ids(&stack_query(path, stack), bound);
        let prefix = format!("{stack}_");
        let volumes: Volumes = self.get_json(&stack_query("/volumes", stack), bound)?;
        // abra's secrets are named `${STACK}_${SECRET}_${VERSION}`; a name
        // filter is a substring match, so keep the prefix matches only.
        let secrets: Vec<Secret> = self.get_json(
            &format!("/secrets?{}", api::filters(&[("name", &prefix)])),
            bound,
        )?;
        Ok(Leftovers {
            services: q("/services")?,
            containers: q("/containers/json?all=1")?,
            networks: q("/networks")?,
            volumes: volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|s| s.spec.name)
                .filter(|s| s.starts_with(&prefix))
                .collect(),
        })
    }

    /// Makes `image` present: inspect, else pull.
    pub(crate) fn ensure_image(&self, image: &str, bound: &Bound) -> Result<()> {
        let engine = self.engine()?;
        let r = engine.get(&format!("/images/{}/json", api::encode(image)), bound)?;
        if r.ok() {
            return Ok(());
        }
        if r.status != 404 {
            bail!(
                "inspecting image {image} failed ({}): {}",
                r.status,
                r.message()
            );
        }
        crate::say!("pulling {image}");
        let (from, tag) = split_image(image);
        let mut s = engine.open(
            "POST",
            &format!(
                "/images/create?fromImage={}&tag={}",
                api::encode(from),
                api::encode(tag)
            ),
            bound,
        )?;
        let mut body = Vec::new();
        while !s.read_available(&mut body)? {
            if bound.cancel.is_some_and(crate::sys::latch::Latch::is_set) {
                return Err(anyhow::Error::new(ext::Interrupted).context("pull was stopped"));
            }
            if bound.expired() {
                bail!("pulling {image} did not finish within its bound");
            }
            bound.sleep(Duration::from_millis(20));
        }
        let text = String::from_utf8_lossy(&body);
        if !(200..300).contains(&s.status) {
            let msg = api::Reply {
                status: s.status,
                body: body.clone(),
            }
            .message();
            bail!("pulling {image} failed ({}): {msg}", s.status);
        }
        // A pull that fails on the way says so in the stream, with 200.
        for line in text.lines() {
            #[derive(Deserialize)]
            struct Progress {
                #[serde(default)]
                error: Option<String>,
            }
            if let Ok(Progress { error: Some(e) }) = serde_json::from_str(line) {
                bail!("pulling {image} failed: {e}");
            }
        }
        Ok(())
    }

    /// Whether container `id` runs and, if it has a health check, is
    /// healthy (false when it cannot be asked).
    fn container_runs(&self, id: &str, bound: &Bound) -> bool {
        #[derive(Deserialize)]
        struct C {
            #[serde(rename = "State")]
            state: S,
        }
        #[derive(Deserialize)]
        struct S {
            #[serde(rename = "Running", default)]
            running: bool,
            #[serde(rename = "Health", default)]
            health: Option<H>,
        }
        #[derive(Deserialize)]
        struct H {
            #[serde(rename = "Status", default)]
            status: String,
        }
        self.get_json::<C>(&format!("/containers/{}/json", api::encode(id)), bound)
            .is_ok_and(|c| c.state.running && c.state.health.is_none_or(|h| h.status == "healthy"))
    }

    /// `GET /services` of `stack`'s services: the answer's text.
    fn stack_services(&self, stack: &str, bound: &Bound) -> Result<(String, &api::Engine)> {
        let engine = self.engine()?;
        let body = engine
            .get(&stack_query("/services", stack), bound)?
            .check("GET /services")?
            .body;
        Ok((String::from_utf8_lossy(&body).into_owned(), engine))
    }

    /// One look at `stack` for the convergence wait: its services with
    /// their specs (as the engine stores them) and update states, and
    /// every task the engine keeps of them (running, starting, failed,
    /// shut down), each with its own copy of the spec it runs. Two calls:
    /// `GET /services` by the stack's label, `GET /tasks` of those
    /// services.
    pub(crate) fn converge_state(
        &self,
        stack: &str,
        bound: &Bound,
    ) -> Result<(Vec<converge::Service>, Vec<converge::Task>)> {
        let (body, engine) = self.stack_services(stack, bound)?;
        let services = converge::parse_services(&body)?;
        if services.is_empty() {
            return Ok((services, Vec::new()));
        }
        let pairs: Vec<(&str, &str)> = services
            .iter()
            .map(|s| ("service", s.id.as_str()))
            .collect();
        let body = engine
            .get(&format!("/tasks?{}", api::filters(&pairs)), bound)?
            .check("GET /tasks")?
            .body;
        let tasks = converge::parse_tasks(&String::from_utf8_lossy(&body))?;
        Ok((services, tasks))
    }

    /// Waits until every service of `stack` runs its current spec
    /// ([`converge::settle_stack`]); a paused or rolled-back update ends the
    /// wait at once with an error naming the service, the update's message
    /// and the last task error. A query that fails is retried on the next
    /// look; three failures in a row end the wait. `deployed_at` is when
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
            None => self.pacer(stack, deployed_at.unwrap_or_else(SystemTime::now)),
        };
        let mut failures = 0;
        // Why the stack is not settled yet, for the bound's message.
        let mut last = String::new();
        loop {
            match self.converge_state(stack, &bound.for_query()) {
                Ok((services, mut tasks)) => {
                    if let Some(started) = pacer.started() {
                        converge::count_started(&mut tasks, started, |c| {
                            self.container_runs(c, &bound.for_query())
                        });
                    }
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
    /// query that fails while the engine removes the stack is retried
    /// within the bound: one failed look must not abort a teardown and
    /// leak the app. Looks again on each event of the stack that `pacer`
    /// reports.
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

/// `PATH?filters={"label":["com.docker.stack.namespace=STACK"]}` (PATH may
/// carry a query of its own).
fn stack_query(path: &str, stack: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let label = format!("{STACK_LABEL}={stack}");
    format!("{path}{sep}{}", api::filters(&[("label", &label)]))
}

/// An image reference as the pull call takes it: (`fromImage`, `tag`),
/// the tag `latest` when the reference names none; a digest is the tag.
pub(crate) fn split_image(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
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
