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
//! - a stream that ends (the CLI killed, the daemon restarted, a `docker`
//!   without `events`) turns the wait into the poll it was before, never
//!   into a hang; a stream that is alive but silent about a change (a task
//!   on another node of a multi-node swarm sends no event to this one) is
//!   caught by a slow backstop poll.
//!
//! The stream is a child of ours in its own process group (`sys::spawn`):
//! dropping the [`Stream`] kills and reaps it on every path. [`Stream`] is
//! the plumbing any `docker events` subscription shares (the swarm lock's
//! waiter watches its lock object with one too); [`Events`] is a stack's.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::ext::Bound;
use crate::sys::latch::{self, Latch};
use crate::sys::spawn::{self, Child, Isolation};

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

/// How long the stream's CLI gets to go once signalled.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// A running `docker events` CLI and the non-blocking read end of its
/// output, split into lines.
pub(crate) struct Stream {
    child: Child,
    out: std::fs::File,
    /// The part of a line read so far.
    partial: Vec<u8>,
}

/// A live `docker events` stream of one stack's services, containers and
/// networks.
pub(crate) struct Events {
    stream: Stream,
    stack: String,
    /// An event of the stack created an object, or removed a service,
    /// since [`Events::take_reshaped`] was last asked.
    reshaped: bool,
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

/// One line of `docker events --format '{{json .}}'`, the fields the
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

/// What one line of `docker events --format '{{json .}}'` says about
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

/// The `--since` argument for a subscription that replays from `at`.
pub fn since_arg(at: SystemTime) -> String {
    let t = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(REPLAY_MARGIN);
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

impl Stream {
    /// Starts `docker ARGS` (an `events` subscription) with its output on
    /// a pipe we read without blocking. None when it cannot start.
    pub(crate) fn start(docker: &OsString, args: &[String]) -> Option<Stream> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let flags = nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).ok()?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(read.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
        let mut cmd = Command::new(docker);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::null());
        let child = spawn::spawn(&mut cmd, Isolation::Group);
        // The Command holds a copy of the write end until dropped: without
        // this the stream's end would never show as end-of-file.
        drop(cmd);
        Some(Stream {
            child: child.ok()?,
            out: std::fs::File::from(read),
            partial: Vec::new(),
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
            let mut fds = vec![PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = cancel {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, latch::timeout_for(until - now)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Woke::Closed,
            }
        }
    }

    /// Reads what the stream has written: Some(whether a whole line that
    /// matters came), None at its end (once what came before it is read).
    fn drain(&mut self, matters: &mut impl FnMut(&str) -> bool) -> Option<bool> {
        let mut buf = [0u8; 8192];
        let mut relevant = false;
        loop {
            match self.out.read(&mut buf) {
                Ok(0) => return if relevant { Some(true) } else { None },
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        let line = String::from_utf8_lossy(&line);
                        if !line.trim().is_empty() && matters(line.trim()) {
                            relevant = true;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EAGAIN: drained for now.
                Err(_) => return Some(relevant),
            }
        }
    }

    /// How the stream ended, once it has: for the log.
    pub(crate) fn ended(&mut self) -> String {
        match self.child.wait(None, Some(Instant::now() + STOP_GRACE)) {
            Ok(spawn::Waited::Exited) => self
                .child
                .status()
                .map_or_else(|| "ended".to_string(), |s| format!("ended ({s})")),
            _ => "stopped answering".to_string(),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SIGKILL to the whole group at once: the stream holds nothing a
        // TERM would let it release, and a group kill reaches every member
        // (a wrapper's shell and its CLI alike) without the process-table
        // sweep of `terminate`, which would sit between a wait's end and
        // the run's next step. `terminate` only when the leader did not go.
        if self.child.try_reap().unwrap_or(false) {
            // The stream ended by itself: its group is swept by the table,
            // never signalled by a pid that is no longer ours.
            let _ = self.child.terminate(STOP_GRACE);
            return;
        }
        self.child.signal_group(nix::sys::signal::Signal::SIGKILL);
        if !matches!(
            self.child.wait(None, Some(Instant::now() + STOP_GRACE)),
            Ok(spawn::Waited::Exited)
        ) {
            let _ = self.child.terminate(STOP_GRACE);
        }
    }
}

impl Events {
    /// Subscribes to the events of `stack`, replayed from `since`. None
    /// when the stream cannot start (the wait then polls).
    pub(crate) fn subscribe(docker: &OsString, stack: &str, since: SystemTime) -> Option<Events> {
        // Several `type` filters are one OR; the stack is picked out here
        // (`relevance`), because the engine's `label` filter would drop the
        // service and network events, which carry no labels.
        let args = [
            "events",
            "--format",
            "{{json .}}",
            "--since",
            &since_arg(since),
            "--filter",
            "type=service",
            "--filter",
            "type=container",
            "--filter",
            "type=network",
        ]
        .map(String::from);
        Some(Events {
            stream: Stream::start(docker, &args)?,
            stack: stack.to_string(),
            // What a wait knows before its first look is nothing.
            reshaped: true,
        })
    }

    /// Waits for an event of the stack until `until`.
    pub(crate) fn wait(&mut self, cancel: Option<&Latch>, until: Instant) -> Woke {
        let (stack, reshaped) = (&self.stack, &mut self.reshaped);
        self.stream
            .wait(cancel, until, |line| match relevance(line, stack) {
                Relevance::Other => false,
                Relevance::Changed => true,
                Relevance::Reshaped => {
                    *reshaped = true;
                    true
                }
            })
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
    delay: Duration,
    stack: String,
    /// When the last event of the stack came.
    last_event: Option<Instant>,
}

impl Pacer {
    /// A pacer on `events` (None: poll from the start).
    pub(crate) fn new(stack: &str, events: Option<Events>) -> Pacer {
        Pacer {
            events,
            delay: FIRST,
            stack: stack.to_string(),
            last_event: None,
        }
    }

    /// The stream, if it is still alive: what comes next on it is what
    /// came after the last pause.
    pub(crate) fn into_events(self) -> Option<Events> {
        self.events
    }

    /// Subscribes to `stack`'s events, replayed from `since`.
    pub(crate) fn subscribe(docker: &OsString, stack: &str, since: SystemTime) -> Pacer {
        Pacer::new(stack, Events::subscribe(docker, stack, since))
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
        let mut until = Instant::now() + self.delay;
        for t in [by, bound.deadline].into_iter().flatten() {
            until = until.min(t);
        }
        let Some(events) = self.events.as_mut() else {
            self.delay = (self.delay * 2).min(POLL_MAX);
            return bound.sleep(until.saturating_duration_since(Instant::now()));
        };
        match events.wait(bound.cancel, until) {
            Woke::Event => {
                self.last_event = Some(Instant::now());
                self.delay = FOLLOW_UP;
                false
            }
            Woke::Timeout => {
                let following = self.last_event.is_some_and(|t| t.elapsed() < FOLLOW_WINDOW);
                if !following {
                    self.delay = (self.delay * 2).min(BACKSTOP);
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
                // Dropping it reaps the child; the next look comes at once.
                self.events = None;
                self.delay = FIRST;
                false
            }
        }
    }
}
