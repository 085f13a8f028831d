//! Whether a deployed stack runs what was deployed (SPEC section 3 step 8):
//! the pure decision of the convergence wait, from what the engine says of
//! the stack's services and their tasks. `docker::Docker::wait_converged`
//! asks the engine; everything here is parsing and judging, so the unit
//! tests feed it the engine's JSON and spawn nothing.
//!
//! A replica count is not enough: during a rolling update the task of the
//! previous spec is running and counts, and right after `docker stack
//! deploy` returns swarmkit has reset the service's UpdateStatus to null
//! before its updater starts. So a service is settled only when every task
//! in state `running` is of the service's current spec (swarmkit's own
//! test, `orchestrator.IsTaskDirty`: the task's spec equals the service's
//! task template), their number is the desired count, and an update, if
//! one is reported, has `completed`. A `paused` or `rollback_*` update ends
//! the wait at once as a failed deploy.
//!
//! Which spec is "the service's": `docker service inspect` always asks the
//! engine with `insertDefaults=true` (docker/cli
//! `cli/command/service/inspect.go`, "Service inspect shows defaults values
//! in empty fields"), so the template it prints carries swarmkit's
//! defaults (`api/defaults`, `InterpolateService`, applied by swarmkit's
//! `controlapi.GetService` when asked) that the stored spec, and hence
//! every task's copy, lacks: a service whose compose sets no
//! `deploy.restart_policy` shows a whole `RestartPolicy` object its tasks
//! do not have. Two ways to compare like with like: ask the Engine API
//! without inserted defaults, or apply the same defaults to the task's
//! side. cc-ci-run asks the Engine API, whose service list carries the
//! stored spec; but even the raw API differs from a task in one converter
//! field (`Runtime`). So both sides are interpolated, by swarmkit's own
//! rules ([`as_service_shows`], which only fills what is unset: the CLI's
//! inserted defaults and the raw spec compare alike; measured against
//! Docker 20.10.24 with CLI 28.2.2, the captures in
//! tests/unit/data/converge), never by a list of guessed leaves.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// How many replicas a service wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    /// One task per eligible node (or a job): the engine decides the
    /// count, so the tasks it wants running are the measure.
    Other,
}

/// A service's update as the engine reports it (`UpdateStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub state: String,
    pub message: String,
    pub started_at: Option<SystemTime>,
    pub completed_at: Option<SystemTime>,
}

impl Update {
    /// The engine's own time for the update, once it completed.
    pub(crate) fn took(&self) -> Option<Duration> {
        self.completed_at?.duration_since(self.started_at?).ok()
    }
}

/// One service of `docker service inspect`.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// `Spec.TaskTemplate`: what a task of the current spec runs.
    pub template: Value,
    pub mode: Mode,
    pub update: Option<Update>,
}

/// One task of `docker inspect --type task`.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    pub spec: Value,
    /// `Status.State`: `new`, `pending`, …, `running`, `failed`, `shutdown`, …
    pub state: String,
    pub desired_state: String,
    /// `Status.Err`: why the task failed, when it did.
    pub err: String,
    /// `Status.Timestamp`: when the task last changed state.
    pub at: Option<SystemTime>,
    /// `Status.ContainerStatus.ExitCode`, once its container exited.
    pub exit_code: Option<i64>,
}

#[derive(Deserialize)]
struct RawService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Spec")]
    spec: RawServiceSpec,
    #[serde(rename = "UpdateStatus", default)]
    update_status: Option<RawUpdate>,
}

#[derive(Deserialize)]
struct RawServiceSpec {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "TaskTemplate", default)]
    task_template: Value,
    #[serde(rename = "Mode", default)]
    mode: Value,
}

#[derive(Deserialize)]
struct RawUpdate {
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "StartedAt", default)]
    started_at: Option<String>,
    #[serde(rename = "CompletedAt", default)]
    completed_at: Option<String>,
}

#[derive(Deserialize)]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(rename = "Spec", default)]
    spec: Value,
    #[serde(rename = "Status", default)]
    status: RawTaskStatus,
    #[serde(rename = "DesiredState", default)]
    desired_state: String,
}

#[derive(Deserialize, Default)]
struct RawTaskStatus {
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Err", default)]
    err: String,
    #[serde(rename = "Timestamp", default)]
    timestamp: Option<String>,
    #[serde(rename = "ContainerStatus", default)]
    container: Option<RawContainerStatus>,
}

#[derive(Deserialize, Default)]
struct RawContainerStatus {
    #[serde(rename = "ExitCode", default)]
    exit_code: Option<i64>,
}

/// Counts as `running` each task the engine is about to report so: one
/// that should run, is still on its way (`assigned` … `starting`), whose
/// container the engine's events said it started (`started`: task →
/// container, see `events::task_started`), and that `runs` says runs now
/// (the container running and, when it has a health check, healthy: the
/// agent reports a task with a health check running only once healthy).
/// The manager's record follows 60-110 ms later; a container that ended
/// since is not in `started`.
pub fn count_started(
    tasks: &mut [Task],
    started: &std::collections::HashMap<String, String>,
    mut runs: impl FnMut(&str) -> bool,
) {
    for t in tasks.iter_mut() {
        let on_its_way = matches!(
            t.state.as_str(),
            "assigned" | "accepted" | "preparing" | "ready" | "starting"
        );
        if !on_its_way || t.desired_state != "running" {
            continue;
        }
        if let Some(container) = started.get(&t.id) {
            if runs(container) {
                t.state = "running".to_string();
            }
        }
    }
}

/// Parses `docker service inspect ID...` (a JSON array).
pub fn parse_services(text: &str) -> Result<Vec<Service>> {
    let raw: Vec<RawService> =
        serde_json::from_str(text.trim()).context("unexpected docker service inspect output")?;
    Ok(raw
        .into_iter()
        .map(|r| {
            let mode = match r.spec.mode.pointer("/Replicated/Replicas") {
                Some(n) => Mode::Replicated(n.as_u64().unwrap_or(0)),
                // `Replicated: {}` means one replica (the API's default).
                None if r.spec.mode.get("Replicated").is_some() => Mode::Replicated(1),
                None => Mode::Other,
            };
            Service {
                id: r.id,
                name: r.spec.name,
                template: r.spec.task_template,
                mode,
                // The engine drops UpdateStatus after a redeploy that
                // replaced no task; an empty state is the same as none.
                update: r
                    .update_status
                    .filter(|u| !u.state.is_empty())
                    .map(|u| Update {
                        state: u.state,
                        message: u.message,
                        started_at: u
                            .started_at
                            .as_deref()
                            .and_then(crate::log::parse_timestamp),
                        completed_at: u
                            .completed_at
                            .as_deref()
                            .and_then(crate::log::parse_timestamp),
                    }),
            }
        })
        .collect())
}

/// Parses `docker inspect --type task ID...` (a JSON array).
pub fn parse_tasks(text: &str) -> Result<Vec<Task>> {
    let raw: Vec<RawTask> = serde_json::from_str(text.trim())
        .context("unexpected docker inspect --type task output")?;
    Ok(raw
        .into_iter()
        .map(|r| Task {
            id: r.id,
            service_id: r.service_id,
            spec: r.spec,
            state: r.status.state,
            desired_state: r.desired_state,
            err: r.status.err,
            exit_code: r.status.container.and_then(|c| c.exit_code),
            at: r
                .status
                .timestamp
                .as_deref()
                .and_then(crate::log::parse_timestamp),
        })
        .collect())
}

/// swarmkit's defaults for a service's task spec (`api/defaults`,
/// `defaults.Service`), in the Engine API's JSON: a container's stop grace
/// period of 10 s, a restart policy `any` after 5 s.
const DEFAULT_STOP_GRACE_NS: u64 = 10_000_000_000;
const DEFAULT_RESTART_DELAY_NS: u64 = 5_000_000_000;

/// A task's spec as `docker service inspect` would show it were it the
/// service's spec: swarmkit's `defaults.InterpolateService` applied to the
/// task spec (the daemon's `insertDefaults`, what the CLI always asks
/// for), then moby's service converter. Each rule, in the order of
/// InterpolateService (moby/swarmkit `api/defaults/service.go`):
///
/// - a container spec gets `StopGracePeriod` 10 s, `DNSConfig` `{}` (and
///   `PullOptions`, which the Engine API has no field for) when unset;
/// - `Resources` becomes `{}` when unset;
/// - an unset `RestartPolicy` becomes the whole default policy
///   (`Condition` `any`, `Delay` 5 s; moby's `restartPolicyFromGRPC`
///   always prints `MaxAttempts`, 0 here); a set one gets `Delay` 5 s when
///   it has none;
/// - `Placement` becomes `{}` when unset.
///
/// moby's `serviceSpecFromGRPC` (daemon/cluster/convert/service.go) then
/// names the runtime of a service's template (`container` for a container
/// spec, `plugin` for a plugin), which its task converter does not. The
/// `Update`/`Rollback` defaults are outside the task template.
pub fn as_service_shows(task_spec: &Value) -> Value {
    let mut spec = task_spec.clone();
    let Value::Object(t) = &mut spec else {
        return spec;
    };
    let unset = |o: &serde_json::Map<String, Value>, k: &str| o.get(k).is_none_or(Value::is_null);
    if let Some(Value::Object(c)) = t.get_mut("ContainerSpec") {
        if unset(c, "StopGracePeriod") {
            c.insert("StopGracePeriod".into(), Value::from(DEFAULT_STOP_GRACE_NS));
        }
        if unset(c, "DNSConfig") {
            c.insert("DNSConfig".into(), Value::Object(Default::default()));
        }
    }
    if unset(t, "Resources") {
        t.insert("Resources".into(), Value::Object(Default::default()));
    }
    match t.get_mut("RestartPolicy") {
        Some(Value::Object(r)) => {
            if unset(r, "Delay") {
                r.insert("Delay".into(), Value::from(DEFAULT_RESTART_DELAY_NS));
            }
        }
        _ => {
            t.insert(
                "RestartPolicy".into(),
                serde_json::json!({
                    "Condition": "any",
                    "Delay": DEFAULT_RESTART_DELAY_NS,
                    "MaxAttempts": 0
                }),
            );
        }
    }
    if unset(t, "Placement") {
        t.insert("Placement".into(), Value::Object(Default::default()));
    }
    if unset(t, "Runtime") {
        let runtime = if t.contains_key("ContainerSpec") {
            Some("container")
        } else if t.contains_key("PluginSpec") {
            Some("plugin")
        } else {
            None
        };
        if let Some(r) = runtime {
            t.insert("Runtime".into(), Value::from(r));
        }
    }
    spec
}

/// Go's zero value as JSON: what a field decoded from absent and encoded
/// again without `omitempty` prints.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Deep equality of two JSON values where a field only one side has is
/// equal when its value is a zero value: the CLI decodes the service into
/// its own (vendored) API types and prints them again, so a field its
/// types do not mark `omitempty` shows as a zero the engine left out
/// (docker 28's CLI prints `Privileges.NoNewPrivileges: false` for a 20.10
/// engine's service, never for its tasks, which `docker inspect` prints as
/// the engine sent them).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.iter().all(|(k, va)| match b.get(k) {
                Some(vb) => same_json(va, vb),
                None => is_zero(va),
            }) && b.iter().all(|(k, vb)| a.contains_key(k) || is_zero(vb))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y))
        }
        (a, b) => a == b,
    }
}

/// Whether a task's spec is the service's current task template as
/// `docker service inspect` prints it (swarmkit's own test,
/// `orchestrator.IsTaskDirty`, compares the two as stored): the task's
/// spec with the engine's inserted defaults ([`as_service_shows`]) equals
/// the template, up to zero values the CLI prints for fields the engine
/// left out. One case stays ambiguous, as it is for the CLI: a redeploy
/// that only sets a field to its default value (`restart_policy:
/// condition: any, delay: 5s` where there was none) looks unchanged; the
/// engine replaces the task anyway, and the wait then rests on the
/// update's state.
pub fn same_spec(task_spec: &Value, template: &Value) -> bool {
    // The Engine API's service list carries the stored spec (with only the
    // converter's `Runtime`), the CLI's inspect the interpolated one:
    // both sides interpolated compare alike either way (interpolation only
    // fills what is unset, so it is idempotent).
    same_json(&as_service_shows(task_spec), &as_service_shows(template))
}

/// The verdict on one service, or on a whole stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Runs its current spec: what, for the log.
    Settled(String),
    /// Runs its current spec after its update paused (a start-up hiccup):
    /// what, for the log, and the warning for the log and the record.
    Recovered(String, String),
    /// Not yet: why, for the log and the timeout's message.
    Waiting(String),
    /// Will not settle without help: a crash loop, a rolled-back update, or
    /// a paused one whose current spec does not run.
    Failed(String),
}

/// Exits of the current spec's tasks during one wait that make a crash
/// loop (SPEC section 3 step 8): the wait ends at once, not at its bound.
pub const CRASH_LOOP_EXITS: usize = 3;

/// How long after a task of the current spec ended a paused update waits
/// for the orchestrator's replacement task before it counts as failed.
pub const REPLACE_GRACE: Duration = Duration::from_secs(2);

/// The stability window's default (`--stable-for`).
pub const DEFAULT_STABLE_FOR: Duration = Duration::from_secs(10);

/// What a decision needs besides the engine's answer.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Exits count from here: the deploy the wait follows (None: every
    /// exit the engine still keeps).
    pub since: Option<SystemTime>,
    /// The time of the look.
    pub now: SystemTime,
    /// How long the current spec's tasks must have run after a paused
    /// update for the service to count as settled.
    pub stable_for: Duration,
}

impl Clock {
    /// A look now, every kept exit counted, the default window.
    pub fn now() -> Clock {
        Clock {
            since: None,
            now: SystemTime::now(),
            stable_for: DEFAULT_STABLE_FOR,
        }
    }
}

/// A task state the engine never leaves (swarmkit's `TaskState` from
/// `COMPLETE` on).
fn terminal(state: &str) -> bool {
    matches!(
        state,
        "complete" | "failed" | "rejected" | "shutdown" | "remove" | "orphaned"
    )
}

/// A task whose container exited (or could not start) on its own: not one
/// the orchestrator shut down.
pub(crate) fn exited(state: &str) -> bool {
    matches!(state, "complete" | "failed" | "rejected")
}

/// The most recent error of the service's tasks (`Status.Err`), if any.
pub(crate) fn last_task_error<'a>(service: &Service, tasks: &'a [Task]) -> Option<&'a Task> {
    tasks
        .iter()
        .filter(|t| t.service_id == service.id && !t.err.is_empty())
        .max_by_key(|t| t.at)
}

fn with_last_error(text: String, service: &Service, tasks: &[Task]) -> String {
    match last_task_error(service, tasks) {
        Some(t) => format!("{text}; last task error: {} (task {})", t.err, t.id),
        None => text,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Decides one service from its tasks at `clock` (tasks of other
/// services are ignored).
pub(crate) fn settle_at(service: &Service, tasks: &[Task], clock: &Clock) -> Settle {
    let name = &service.name;
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .collect();
    let is_current = |t: &Task| same_spec(&t.spec, &service.template);
    let update = service.update.as_ref();
    let update_text = |u: &Update| {
        let msg = if u.message.is_empty() {
            "no message"
        } else {
            u.message.as_str()
        };
        format!("update {}: {msg}", u.state)
    };
    // A crash loop: the current spec's tasks exited three times since the
    // deploy. The engine keeps restarting them (paused update or not), so
    // nothing but the bound would end the wait.
    let mut exits: Vec<&&Task> = mine
        .iter()
        .filter(|t| exited(&t.state) && is_current(t))
        .filter(|t| match (clock.since, t.at) {
            (Some(since), Some(at)) => at >= since,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if exits.len() >= CRASH_LOOP_EXITS {
        exits.sort_by_key(|t| t.at);
        let last = exits[exits.len() - 1];
        let code = match last.exit_code {
            Some(c) if last.state != "rejected" => format!("exit code {c}"),
            _ => "no exit code (it did not start)".to_string(),
        };
        let paused = update
            .filter(|u| u.state == "paused")
            .map(|u| format!("{}; ", update_text(u)))
            .unwrap_or_default();
        return Settle::Failed(with_last_error(
            format!(
                "service {name}: {paused}crash loop: the current spec's tasks exited {} times (last: {code}, task {})",
                exits.len(),
                last.id
            ),
            service,
            tasks,
        ));
    }
    if let Some(u) = update.filter(|u| u.state.starts_with("rollback_")) {
        return Settle::Failed(with_last_error(
            format!("service {name}: {}", update_text(u)),
            service,
            tasks,
        ));
    }
    let running: Vec<&&Task> = mine.iter().filter(|t| t.state == "running").collect();
    let stale = running.iter().filter(|t| !is_current(t)).count();
    let current = running.len() - stale;
    let desired = match service.mode {
        Mode::Replicated(n) => n,
        Mode::Other => mine
            .iter()
            .filter(|t| t.desired_state == "running" && is_current(t))
            .count()
            .max(1) as u64,
    };
    if let Some(u) = update.filter(|u| u.state == "paused") {
        // Judged by what runs (SPEC section 3 step 8): the updater stopped,
        // but the orchestrator still restarts the current spec's tasks.
        if stale == 0 && current as u64 == desired {
            let up_since = running.iter().filter_map(|t| t.at).max();
            let up = up_since
                .and_then(|t| clock.now.duration_since(t).ok())
                .unwrap_or_default();
            if up >= clock.stable_for {
                let summary = format!(
                    "{name} {current}/{desired} (update paused, then stable for {})",
                    secs(clock.stable_for)
                );
                // An update paused before this wait's deploy (the engine
                // keeps the state after the service recovered) was
                // reported by the wait that saw it.
                let ours = match (clock.since, u.started_at) {
                    (Some(since), Some(started)) => started >= since,
                    _ => true,
                };
                if !ours {
                    return Settle::Settled(summary);
                }
                return Settle::Recovered(
                    summary,
                    format!(
                        "service {name}: {}; the current spec then ran for {} (the stability window): taken as a start-up hiccup",
                        update_text(u),
                        secs(up)
                    ),
                );
            }
            return Settle::Waiting(format!(
                "{name}: {current}/{desired} running the current spec after a paused update, up {} of the {} stability window",
                secs(up),
                secs(clock.stable_for)
            ));
        }
        let coming = mine
            .iter()
            .any(|t| is_current(t) && t.state != "running" && !terminal(&t.state));
        // The orchestrator replaces an ended task at once, but not in the
        // same instant: a look taken on the ended task's own event (within
        // milliseconds, through the API) can fall between the two.
        let just_ended = mine
            .iter()
            .filter(|t| is_current(t) && terminal(&t.state))
            .filter_map(|t| t.at)
            .max()
            .and_then(|at| clock.now.duration_since(at).ok())
            .is_some_and(|d| d < REPLACE_GRACE);
        if stale == 0 && (coming || just_ended) {
            return Settle::Waiting(with_last_error(
                format!(
                    "{name}: {current}/{desired} running the current spec, {}; a task of it is being restarted",
                    update_text(u)
                ),
                service,
                tasks,
            ));
        }
        return Settle::Failed(with_last_error(
            format!("service {name}: {}", update_text(u)),
            service,
            tasks,
        ));
    }
    let update = update.map(|u| u.state.as_str());
    if stale > 0 {
        return Settle::Waiting(format!(
            "{name}: {stale} task(s) of a previous spec still running, {current}/{desired} of the current spec{}",
            update.map(|u| format!(" (update {u})")).unwrap_or_default()
        ));
    }
    if current as u64 != desired {
        return Settle::Waiting(with_last_error(
            format!(
                "{name}: {current}/{desired} running the current spec{}",
                update.map(|u| format!(" (update {u})")).unwrap_or_default()
            ),
            service,
            tasks,
        ));
    }
    match update {
        None => Settle::Settled(format!("{name} {current}/{desired}")),
        Some("completed") => {
            Settle::Settled(format!("{name} {current}/{desired} (update completed)"))
        }
        Some(other) => Settle::Waiting(format!(
            "{name}: {current}/{desired} running the current spec, update {other}"
        )),
    }
}

/// Decides a stack: failed when any service failed, settled when all are
/// (and there is at least one), else waiting with every service's reason;
/// every exit kept counted, the default window.
pub fn settle_stack(services: &[Service], tasks: &[Task]) -> Settle {
    settle_stack_at(services, tasks, &Clock::now())
}

/// Decides a stack at `clock`: failed when any service failed, waiting
/// (every service's reason) while any waits, else settled, or recovered
/// when a service settled only after its paused update.
pub fn settle_stack_at(services: &[Service], tasks: &[Task], clock: &Clock) -> Settle {
    if services.is_empty() {
        return Settle::Waiting("no services".to_string());
    }
    let verdicts: Vec<Settle> = services
        .iter()
        .map(|s| settle_at(s, tasks, clock))
        .collect();
    let pick = |want: fn(&Settle) -> Option<&String>| -> Vec<String> {
        verdicts.iter().filter_map(want).cloned().collect()
    };
    let failed = pick(|v| match v {
        Settle::Failed(s) => Some(s),
        _ => None,
    });
    if !failed.is_empty() {
        return Settle::Failed(failed.join("; "));
    }
    let waiting = pick(|v| match v {
        Settle::Waiting(s) => Some(s),
        _ => None,
    });
    if !waiting.is_empty() {
        return Settle::Waiting(waiting.join("; "));
    }
    let summary = pick(|v| match v {
        Settle::Settled(s) | Settle::Recovered(s, _) => Some(s),
        _ => None,
    })
    .join(", ");
    let warnings = pick(|v| match v {
        Settle::Recovered(_, w) => Some(w),
        _ => None,
    });
    if warnings.is_empty() {
        Settle::Settled(summary)
    } else {
        Settle::Recovered(summary, warnings.join("; "))
    }
}

/// The engine's time for the stack's updates that started at or after
/// `since` (the deploy that the wait follows; an older completed update
/// is not this deploy's), UpdateStatus StartedAt → CompletedAt, the
/// longest of the stack; None when the deploy updated nothing.
pub fn engine_update_time(services: &[Service], since: SystemTime) -> Option<Duration> {
    services
        .iter()
        .filter_map(|s| s.update.as_ref())
        .filter(|u| u.started_at.is_some_and(|t| t >= since))
        .filter_map(Update::took)
        .max()
}
