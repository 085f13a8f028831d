//! Watched through its tests (SPEC section 3 step 8, issue 26): from a
//! tier's convergence to the end of its tests, a task of the version under
//! test that exits (or is replaced) turns that tier red even when its tests
//! pass. The watch reads the `docker events` stream the convergence wait
//! already had open, on a thread of its own so that the tests run as
//! before: on a good run it costs one idle thread and the stream that was
//! open anyway.
//!
//! What counts: a container `die` event of the stack's swarm tasks (every
//! container of a task carries the stack's namespace label and
//! `com.docker.swarm.task.id`; `die` carries `exitCode`, moby
//! `daemon/monitor.go` `LogContainerEventWithAttributes(c, "die", attrs)`).
//! A replaced task (a failed health check, a task the orchestrator moves)
//! ends its container the same way. `exec_die` (a test's `docker exec`
//! ending) is another action and does not count. The tasks the convergence
//! already judged (of a previous spec, or ended before it settled) are
//! ignored: their containers may report their end a little after the look
//! that saw them shut down.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::sys::latch::Latch;

use super::events::{Events, RawEvent, Woke};
use super::{Docker, STACK_LABEL};

/// One exit of a watched task's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub service: String,
    pub task: String,
    /// The container's id (the task's, when the engine was asked).
    pub container: String,
    pub exit_code: Option<i64>,
    /// The engine's time of the event.
    pub at: Option<SystemTime>,
}

impl Exit {
    /// `exit code 1 at 2026-…Z (task …)`
    pub fn describe(&self) -> String {
        let code = self
            .exit_code
            .map_or_else(|| "no exit code".to_string(), |c| format!("exit code {c}"));
        let at = self
            .at
            .map(crate::log::timestamp)
            .unwrap_or_else(|| "an unknown time".into());
        format!("{code} at {at} (task {})", self.task)
    }
}

/// The exit one line of `docker events --format '{{json .}}'` reports of
/// a swarm task of `stack`, if it reports one.
pub fn exit_of(line: &str, stack: &str) -> Option<Exit> {
    let e: RawEvent = serde_json::from_str(line).ok()?;
    if e.kind != "container" || e.action != "die" {
        return None;
    }
    let mut attrs = e.actor.attributes?;
    if attrs.get(STACK_LABEL).map(String::as_str) != Some(stack) {
        return None;
    }
    let task = attrs.remove("com.docker.swarm.task.id")?;
    Some(Exit {
        service: attrs
            .remove("com.docker.swarm.service.name")
            .unwrap_or_else(|| "unknown service".into()),
        task,
        container: e.actor.id,
        exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        at: e
            .time_nano
            .and_then(|n| u64::try_from(n).ok())
            .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n)),
    })
}

/// What the watch has seen, shared with its thread.
#[derive(Default)]
struct Seen {
    exits: Vec<Exit>,
    /// The tasks whose exit was counted: a task has one container, which
    /// ends once (a replayed stream, or the look at the engine, repeats it).
    counted: HashSet<String>,
    /// The stream was not alive the whole time (it ended, or the watch
    /// had to subscribe anew): what it says is not all there was.
    gap: bool,
}

/// A running watch of one stack. Dropping it stops its thread and the
/// stream.
pub(crate) struct Watch {
    stop: Arc<Latch>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
    /// The stack's services, by name, when the watch began.
    services: Vec<String>,
    /// When the watch began, and the tasks it ignores: for the look at
    /// the engine that stands in for a stream with a gap.
    since: SystemTime,
    judged: HashSet<String>,
}

/// How long a closed stream waits before it is subscribed again, at first
/// (doubling to [`RESUBSCRIBE_MAX`]: a `docker` without `events` is not
/// started in a loop).
const RESUBSCRIBE: Duration = Duration::from_millis(500);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(8);

impl Watch {
    /// Watches `stack` on `events` (the convergence wait's stream; None:
    /// subscribed anew from now), ignoring the tasks in `judged`.
    pub(crate) fn start(
        docker: &Docker,
        stack: &str,
        events: Option<Events>,
        judged: HashSet<String>,
        services: Vec<String>,
    ) -> anyhow::Result<Watch> {
        let since = SystemTime::now();
        let stop = Arc::new(Latch::new()?);
        let seen = Arc::new(Mutex::new(Seen {
            gap: events.is_none(),
            ..Seen::default()
        }));
        let (t_stop, t_seen, t_judged) = (stop.clone(), seen.clone(), judged.clone());
        let (docker, stack) = (docker.clone(), stack.to_string());
        let thread = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || follow(&docker, &stack, events, &t_judged, &t_stop, &t_seen))?;
        Ok(Watch {
            stop,
            seen,
            thread: Some(thread),
            services,
            since,
            judged,
        })
    }

    /// The exits seen since the last call, and whether the stream had a
    /// gap (then the caller asks the engine: [`Watch::since`]).
    pub(crate) fn take(&self) -> (Vec<Exit>, bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut seen.exits), seen.gap)
    }

    /// When the watch began.
    pub(crate) fn since(&self) -> SystemTime {
        self.since
    }

    /// The tasks the convergence judged.
    pub(crate) fn judged(&self) -> &HashSet<String> {
        &self.judged
    }

    /// Keeps the exits of `found` (a look at the engine) that the stream
    /// did not report, by task; each task counts once per watch.
    pub(crate) fn merge(&self, mut exits: Vec<Exit>, found: Vec<Exit>) -> Vec<Exit> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for x in found {
            if seen.counted.insert(x.task.clone()) {
                exits.push(x);
            }
        }
        exits
    }

    pub(crate) fn services(&self) -> &[String] {
        &self.services
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watch's thread: reads the stream until `stop`, subscribing again
/// (replayed from a second before it closed) when it ends.
fn follow(
    docker: &Docker,
    stack: &str,
    mut events: Option<Events>,
    judged: &HashSet<String>,
    stop: &Latch,
    seen: &Mutex<Seen>,
) {
    let mut closed_at = SystemTime::now();
    let mut pause = RESUBSCRIBE;
    loop {
        if stop.is_set() {
            return;
        }
        let Some(ev) = events.as_mut() else {
            events = docker.subscribe(stack, closed_at);
            if events.is_none() && stop.wait_until(Instant::now() + pause) {
                return;
            }
            continue;
        };
        let woke = ev.stream_mut().wait(
            Some(stop),
            Instant::now() + Duration::from_secs(3600),
            |line| {
                if let Some(x) = exit_of(line, stack).filter(|x| !judged.contains(&x.task)) {
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    if s.counted.insert(x.task.clone()) {
                        crate::say!("watch: service {} exited: {}", x.service, x.describe());
                        s.exits.push(x);
                    }
                }
                false
            },
        );
        match woke {
            Woke::Cancelled => return,
            Woke::Closed => {
                let how = ev.stream_mut().ended();
                let first = {
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    !std::mem::replace(&mut s.gap, true)
                };
                if first {
                    crate::say!(
                        "watch: docker events of stack {stack} {how}: subscribing again; the engine's tasks are asked at the end of the tier"
                    );
                }
                closed_at = SystemTime::now();
                events = None;
                if stop.wait_until(Instant::now() + pause) {
                    return;
                }
                pause = (pause * 2).min(RESUBSCRIBE_MAX);
            }
            Woke::Event | Woke::Timeout => {}
        }
    }
}

/// Restarts per service of `services` in `exits` (every service listed,
/// 0 when it never exited).
pub fn restarts(services: &[String], exits: &[Exit]) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = services.iter().map(|s| (s.clone(), 0)).collect();
    for x in exits {
        *out.entry(x.service.clone()).or_default() += 1;
    }
    out
}

/// The reason a watched tier is red: each service that exited, how often,
/// and its last exit.
pub fn reason(exits: &[Exit]) -> Option<String> {
    let mut by: BTreeMap<&str, Vec<&Exit>> = BTreeMap::new();
    for x in exits {
        by.entry(x.service.as_str()).or_default().push(x);
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(service, xs)| {
            let last = xs.iter().max_by_key(|x| x.at).copied();
            format!(
                "service {service} exited {} time(s) while watched (restarts: {}; last: {})",
                xs.len(),
                xs.len(),
                last.map(Exit::describe).unwrap_or_default()
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
