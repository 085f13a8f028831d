//! Waiting on the engine's own events (issue 18): the convergence and
//! teardown waits look at the stack again as soon as `docker events`
//! reports something of it, instead of at the next tick of a poll.
//!
//! The races it closes:
//! - the subscription is replayed from a time taken before the action the
//!   wait follows (`--since`), so an event that lands between the action
//!   and the moment the stream is live is still delivered;
//! - an event can come before the state it announces is readable (a
//!   container's `start` reaches us before the manager records its task as
//!   running), so every event also restarts a short backoff of follow-up
//!   looks: the look that comes too early is followed by one soon after;
//! - a stream that ends (the daemon restarted, an engine that serves no
//!   events) turns the wait into the poll it was before, never
//!   into a hang; a stream that is alive but silent about a change (a task
//!   on another node of a multi-node swarm sends no event to this one) is
//!   caught by a slow backstop poll.
//!
//! The stream is one `GET /events` connection to the engine
//! (`api::Engine::open`): dropping the [`Stream`] closes it on every path.
//! [`Stream`] is the plumbing any events subscription shares (the swarm
//! lock's waiter watches its lock object with one too); [`Events`] is a
//! stack's.

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::ext::Bound;
use crate::sys::latch::{self, Latch};
use crate::sys::wait::Backoff;

use super::api::{self, BodyStream, Engine};
use super::{POLL_MAX, STACK_LABEL};

/// The slowest look while the stream is alive: only a change this node's
/// engine sends no event for waits this long.
pub(crate) const BACKSTOP: Duration = Duration::from_secs(1);

/// The first pause of a wait's backoff.
const FIRST: Duration = Duration::from_millis(50);

/// After an event, the pause between follow-up looks for [`FOLLOW_WINDOW`]
/// (then the backoff doubles from here). The manager learns of a task's
/// `running` 60–110 ms after its container's `start` event (measured on
/// 20.10: the dispatcher batches the agents' status updates), and no event
/// says when it did: so a short, even pace over that window, not a
/// doubling one that would overshoot it.
const FOLLOW_UP: Duration = Duration::from_millis(20);
const FOLLOW_WINDOW: Duration = Duration::from_millis(400);

/// How far before the subscription's own time the replay starts: `--since`
/// is compared with the engine's clock, which may run a little behind ours
/// (a remote engine). Replaying a second more costs a look, not a miss.
const REPLAY_MARGIN: Duration = Duration::from_secs(1);

/// How long the engine gets to answer a subscription's head (the engine
/// flushes it at once): a subscription is taken before the action a wait
/// follows, outside any latch, so an engine slower than this gets no
/// stream (the wait polls) rather than holding the action up.
const OPEN_BOUND: Duration = Duration::from_secs(1);

/// An open `GET /events` of the engine, its body split into lines.
pub(crate) struct Stream {
    body: BodyStream,
    /// The part of a line read so far.
    partial: Vec<u8>,
    /// Why the stream ended, once it has.
    end: Option<String>,
}

/// A live `docker events` stream of one stack's services, containers and
/// networks.
pub(crate) struct Events {
    stream: Stream,
    stack: String,
    /// An event of the stack created an object, or removed a service,
    /// since [`Events::take_reshaped`] was last asked.
    reshaped: bool,
    /// The swarm tasks of the stack whose container the engine started
    /// and has not reported ended since ([`task_started`]): task id →
    /// container id.
    started: std::collections::HashMap<String, String>,
}

/// What ended a wait on the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// An event that matters: look now.
    Event,
    /// The time ran out with no event that matters.
    Timeout,
    Cancelled,
    /// The stream ended: poll instead.
    Closed,
}

/// One event of the engine's `/events` stream, the fields the
/// waits and the watch (`watch::exit_of`) read.
#[derive(Deserialize)]
pub(super) struct RawEvent {
    #[serde(rename = "Type", default)]
    pub(super) kind: String,
    #[serde(rename = "Action", default)]
    pub(super) action: String,
    #[serde(rename = "Actor", default)]
    pub(super) actor: RawActor,
    #[serde(rename = "timeNano", default)]
    pub(super) time_nano: Option<i64>,
}

/// What one line of the stream says about a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relevance {
    /// Not of the stack.
    Other,
    /// Of the stack: look again.
    Changed,
    /// Of the stack, and the set of its objects is no longer what a wait
    /// saw (an object created, a service removed): what the wait knew to be
    /// gone or fixed must be asked again.
    Reshaped,
}

#[derive(Deserialize, Default)]
pub(super) struct RawActor {
    #[serde(rename = "ID", default)]
    pub(super) id: String,
    #[serde(rename = "Attributes", default)]
    pub(super) attributes: Option<std::collections::HashMap<String, String>>,
}

/// What one line of the engine's `/events` stream says about
/// `stack`: a container carries the stack's namespace label among its
/// attributes; a service or network of the stack is named `STACK_…` (so
/// stack `s_2`'s `s_2_app` also counts for stack `s`). Erring that way,
/// and counting a line that does not parse as a reshape, costs a needless
/// look; erring the other way would cost the backstop's delay.
pub fn relevance(line: &str, stack: &str) -> Relevance {
    let Ok(e) = serde_json::from_str::<RawEvent>(line) else {
        return Relevance::Reshaped;
    };
    let attrs = e.actor.attributes.unwrap_or_default();
    let mine = attrs.get(STACK_LABEL).is_some_and(|v| v == stack)
        || attrs
            .get("name")
            .and_then(|n| n.strip_prefix(stack))
            .is_some_and(|rest| rest.starts_with('_'));
    if !mine {
        Relevance::Other
    } else if e.action == "create" || (e.kind == "service" && e.action == "remove") {
        Relevance::Reshaped
    } else {
        Relevance::Changed
    }
}

/// What a container event of a swarm task says of the task's container:
/// (task id, Some(container id)) when the engine started it, (task id,
/// None) when it ended (`die`, `kill`, `oom`, `stop`, `destroy`); None for
/// any other event. The manager records a task as `running` 60-110 ms
/// after its container's `start` (the dispatcher batches the agents'
/// reports, and no event says when): the convergence wait counts a task
/// of the current spec whose container it heard start, and that runs
/// (healthy, when it has a health check), as running from that moment.
pub fn task_started(line: &str) -> Option<(String, Option<String>)> {
    let e: RawEvent = serde_json::from_str(line).ok()?;
    if e.kind != "container" {
        return None;
    }
    let task = e
        .actor
        .attributes
        .as_ref()?
        .get("com.docker.swarm.task.id")?
        .clone();
    match e.action.as_str() {
        "start" => Some((task, Some(e.actor.id))),
        "die" | "kill" | "oom" | "stop" | "destroy" => Some((task, None)),
        _ => None,
    }
}

/// The `--since` argument for a subscription that replays from `at`.
pub fn since_arg(at: SystemTime) -> String {
    let t = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(REPLAY_MARGIN);
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

impl Stream {
    /// Opens `GET /events?QUERY` on the engine. None when the engine
    /// cannot be reached or serves no events (the caller then polls).
    pub(crate) fn open(engine: &Engine, query: &str) -> Option<Stream> {
        let bound = Bound::until(Instant::now() + OPEN_BOUND, Duration::ZERO);
        let body = engine
            .open("GET", &format!("/events?{query}"), &bound)
            .ok()?;
        if body.status != 200 {
            return None;
        }
        Some(Stream {
            body,
            partial: Vec::new(),
            end: None,
        })
    }

    /// Waits until a line that `matters` says counts, `until`, the latch,
    /// or the stream's end. Every line that came is shown to `matters`.
    pub(crate) fn wait(
        &mut self,
        cancel: Option<&Latch>,
        until: Instant,
        mut matters: impl FnMut(&str) -> bool,
    ) -> Woke {
        use nix::poll::{poll, PollFd, PollFlags};
        loop {
            if cancel.is_some_and(Latch::is_set) {
                return Woke::Cancelled;
            }
            match self.drain(&mut matters) {
                Some(true) => return Woke::Event,
                Some(false) => {}
                None => return Woke::Closed,
            }
            let now = Instant::now();
            if now >= until {
                return Woke::Timeout;
            }
            let mut fds = vec![PollFd::new(self.body.fd(), PollFlags::POLLIN)];
            if let Some(c) = cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, latch::timeout_for(until - now)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Woke::Closed,
            }
        }
    }

    /// Reads what the stream has sent: Some(whether a whole line that
    /// matters came), None at its end (once what came before it is read).
    fn drain(&mut self, matters: &mut impl FnMut(&str) -> bool) -> Option<bool> {
        if self.end.is_some() {
            return None;
        }
        let mut relevant = false;
        let ended = match self.body.read_available(&mut self.partial) {
            Ok(true) => Some("ended".to_string()),
            Ok(false) => None,
            Err(e) => Some(format!("failed: {e:#}")),
        };
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if !line.trim().is_empty() && matters(line.trim()) {
                relevant = true;
            }
        }
        if let Some(how) = ended {
            self.end = Some(how);
            return if relevant { Some(true) } else { None };
        }
        Some(relevant)
    }

    /// How the stream ended, once it has: for the log.
    pub(crate) fn ended(&mut self) -> String {
        self.end
            .clone()
            .unwrap_or_else(|| "stopped answering".to_string())
    }
}

impl Events {
    /// Subscribes to the events of `stack`, replayed from `since`. None
    /// when the stream cannot start (the wait then polls).
    pub(crate) fn subscribe(engine: &Engine, stack: &str, since: SystemTime) -> Option<Events> {
        // Several `type` filters are one OR; the stack is picked out here
        // (`relevance`), because the engine's `label` filter would drop the
        // service and network events, which carry no labels.
        let query = format!(
            "since={}&{}",
            since_arg(since),
            api::filters(&[
                ("type", "service"),
                ("type", "container"),
                ("type", "network")
            ])
        );
        Some(Events {
            stream: Stream::open(engine, &query)?,
            stack: stack.to_string(),
            // What a wait knows before its first look is nothing.
            reshaped: true,
            started: Default::default(),
        })
    }

    /// Waits for an event of the stack until `until`.
    pub(crate) fn wait(&mut self, cancel: Option<&Latch>, until: Instant) -> Woke {
        let (stack, reshaped, started) = (&self.stack, &mut self.reshaped, &mut self.started);
        self.stream
            .wait(cancel, until, |line| match relevance(line, stack) {
                Relevance::Other => false,
                Relevance::Changed => {
                    match task_started(line) {
                        Some((task, Some(container))) => {
                            started.insert(task, container);
                        }
                        Some((task, None)) => {
                            started.remove(&task);
                        }
                        None => {}
                    }
                    true
                }
                Relevance::Reshaped => {
                    *reshaped = true;
                    true
                }
            })
    }

    /// The tasks whose container the engine said it started (and not yet
    /// that it ended) on this stream, with their containers.
    pub(crate) fn started(&self) -> &std::collections::HashMap<String, String> {
        &self.started
    }

    /// Whether the stack was reshaped since the last call (true at first).
    fn take_reshaped(&mut self) -> bool {
        std::mem::replace(&mut self.reshaped, false)
    }

    /// How the stream ended, once it has: for the log.
    fn ended(&mut self) -> String {
        self.stream.ended()
    }

    /// The stream itself, for a reader of every line (the watch).
    pub(crate) fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker events of stack {}", self.stack)
    }
}

/// The pace of a wait's looks at the engine: at once after an event of
/// the stack, then a backoff from [`FOLLOW_UP`] doubling to [`BACKSTOP`]
/// while the stream is alive; without a stream, the poll's backoff from
/// [`FIRST`] doubling to [`POLL_MAX`].
pub(crate) struct Pacer {
    events: Option<Events>,
    backoff: Backoff,
    stack: String,
    /// When the last event of the stack came.
    last_event: Option<Instant>,
}

impl Pacer {
    /// A pacer on `events` (None: poll from the start).
    pub(crate) fn new(stack: &str, events: Option<Events>) -> Pacer {
        // From FIRST either way, doubling to the stream's cap or the poll's.
        let max = if events.is_some() { BACKSTOP } else { POLL_MAX };
        Pacer {
            events,
            backoff: Backoff::new(FIRST, max),
            stack: stack.to_string(),
            last_event: None,
        }
    }

    /// The stream, if it is still alive: what comes next on it is what
    /// came after the last pause.
    pub(crate) fn into_events(self) -> Option<Events> {
        self.events
    }

    /// The tasks whose container start the stream reported ([`Events::started`]);
    /// empty without a stream.
    pub(crate) fn started(&self) -> Option<&std::collections::HashMap<String, String>> {
        self.events.as_ref().map(Events::started)
    }

    /// Whether what a wait learnt of the stack's set of objects still
    /// holds: the stream is alive and has reported no object of the stack
    /// created and no service removed since the last call. Without a
    /// stream nothing is known and every look asks for everything.
    pub(crate) fn still_shaped(&mut self) -> bool {
        self.events.as_mut().is_some_and(|e| !e.take_reshaped())
    }

    /// Pauses until the next look: an event of the stack, the backoff's
    /// delay, `by` or the bound's deadline, whichever comes first. True
    /// when the bound's latch was set (the wait must stop).
    pub(crate) fn pause(&mut self, bound: &Bound, by: Option<Instant>) -> bool {
        let mut until = Instant::now() + self.backoff.delay();
        for t in [by, bound.deadline].into_iter().flatten() {
            until = until.min(t);
        }
        let Some(events) = self.events.as_mut() else {
            self.backoff.double();
            return bound.sleep(until.saturating_duration_since(Instant::now()));
        };
        match events.wait(bound.cancel, until) {
            Woke::Event => {
                self.last_event = Some(Instant::now());
                self.backoff = Backoff::new(FOLLOW_UP, BACKSTOP);
                false
            }
            Woke::Timeout => {
                let following = self.last_event.is_some_and(|t| t.elapsed() < FOLLOW_WINDOW);
                if !following {
                    self.backoff.double();
                }
                false
            }
            Woke::Cancelled => true,
            Woke::Closed => {
                let how = events.ended();
                crate::say!(
                    "docker events of stack {} {how}: polling every {} at most instead",
                    self.stack,
                    crate::units::human(POLL_MAX)
                );
                // Dropping it closes the connection; the next look comes at once.
                self.events = None;
                self.backoff = Backoff::new(FIRST, POLL_MAX);
                false
            }
        }
    }
}
