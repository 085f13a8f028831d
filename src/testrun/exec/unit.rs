//! One test under the runner: its state, as an explicit machine (running
//! → terminating, with the reason and the escalation of `sys::kill` whose
//! SIGKILL follows → killed), why the suite stops, and the resource limits
//! a test is started with.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::resource::{getrlimit, Resource};

use super::super::report;
use super::super::Suite;
use crate::sys::kill::Escalation;
use crate::sys::spawn;
use crate::sys::spec::Spec;

/// Why the suite stopped early.
#[derive(Clone, Debug)]
pub(super) enum Stop {
    FailFast(String),
    /// A built-in test run before the suite (the floor) failed: the
    /// tier's own tests are not started.
    Builtin(String),
    SelfProtect(String),
    Signal(i32),
}

impl Stop {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Stop::FailFast(_) => "fail-fast",
            Stop::Builtin(_) => "floor",
            Stop::SelfProtect(_) => "self-protect",
            Stop::Signal(_) => "signal",
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Stop::FailFast(name) => format!("fail-fast after `{name}` failed"),
            Stop::Builtin(name) => format!("the built-in test `{name}` failed"),
            Stop::SelfProtect(why) => format!("self-protection: {why}"),
            Stop::Signal(code) => format!("shutdown requested ({})", signal_words(*code)),
        }
    }
}

pub(super) fn signal_words(code: i32) -> String {
    match code {
        crate::exit::SIGTERM => "SIGTERM, exit 143".into(),
        crate::exit::SIGINT => "SIGINT, exit 130".into(),
        crate::exit::SIGHUP => "SIGHUP, exit 129".into(),
        crate::exit::DEADLINE => "run deadline, exit 142".into(),
        c => format!("exit {c}"),
    }
}

/// Resource limits of one test, capped at the runner's own hard limits
/// (only root may raise a hard limit).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rlimits {
    entries: [Option<(Resource, u64, u64)>; 4],
}

impl Rlimits {
    /// Asks the spawner to set the limits in the child before exec.
    pub(super) fn apply(&self, spec: &mut Spec<'_>) {
        for (res, soft, hard) in self.entries.iter().flatten() {
            spec.rlimit(*res, *soft, *hard);
        }
    }

    pub(super) fn describe(&self) -> String {
        let parts: Vec<String> = self
            .entries
            .iter()
            .flatten()
            .map(|(res, soft, _)| match res {
                Resource::RLIMIT_AS => format!("address space {}", report::human_bytes(*soft)),
                Resource::RLIMIT_CPU => format!("CPU {soft}s"),
                Resource::RLIMIT_NOFILE => format!("open files {soft}"),
                Resource::RLIMIT_NPROC => format!("processes {soft}"),
                other => format!("{other:?} {soft}"),
            })
            .collect();
        if parts.is_empty() {
            "no limits".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The runner's hard limits, read once.
#[derive(Clone, Copy, Debug)]
pub(super) struct HardLimits {
    address_space: u64,
    cpu: u64,
    nofile: u64,
    nproc: u64,
}

impl HardLimits {
    pub(super) fn read() -> HardLimits {
        let hard = |r| getrlimit(r).map_or(libc::RLIM_INFINITY, |(_, h)| h);
        HardLimits {
            address_space: hard(Resource::RLIMIT_AS),
            cpu: hard(Resource::RLIMIT_CPU),
            nofile: hard(Resource::RLIMIT_NOFILE),
            nproc: hard(Resource::RLIMIT_NPROC),
        }
    }

    pub(super) fn for_test(&self, memory: Option<u64>, suite: &Suite) -> Rlimits {
        let o = &suite.options;
        let cap = |res, want: Option<u64>, extra: u64, hard: u64| {
            want.map(|w| (res, w.min(hard), w.saturating_add(extra).min(hard)))
        };
        // CPU: SIGXCPU at the soft limit, SIGKILL one second later.
        let cpu = o
            .test_cpu
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        Rlimits {
            entries: [
                cap(Resource::RLIMIT_AS, memory, 0, self.address_space),
                cap(Resource::RLIMIT_CPU, cpu, 1, self.cpu),
                cap(Resource::RLIMIT_NOFILE, o.test_nofile, 0, self.nofile),
                cap(Resource::RLIMIT_NPROC, o.test_nproc, 0, self.nproc),
            ],
        }
    }
}

/// A test that has been started and not yet completed.
pub(super) struct Running {
    pub(super) idx: usize,
    pub(super) child: spawn::Child,
    pub(super) started: Instant,
    pub(super) started_at: SystemTime,
    pub(super) timeout: Duration,
    pub(super) deadline: Instant,
    pub(super) state: UnitState,
    /// One message per output stream when it reaches end-of-file.
    pub(super) readers_done: mpsc::Receiver<super::output::StreamEnd>,
}

/// Why a test's process group got SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// Its own timeout passed.
    TimedOut,
    /// The suite stopped (cancel, fail-fast, self-protection).
    Stopped,
}

/// Where a running test is in its end, as nextest's units are: the
/// escalation whose SIGKILL follows belongs to the terminating state alone,
/// so a test cannot be "killed" without having been terminated first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UnitState {
    /// Before its deadline, no signal sent.
    Running,
    /// SIGTERM went to its group for `why`; `end` sends SIGKILL when due.
    Terminating { why: Ending, end: Escalation },
    /// SIGKILL went to its group after the grace.
    Killed { why: Ending },
}

impl UnitState {
    /// The next time the runner must act on this test (None: only its exit).
    pub(super) fn next_timer(self, deadline: Instant) -> Option<Instant> {
        match self {
            UnitState::Running => Some(deadline),
            UnitState::Terminating { end, .. } => end.deadline(),
            UnitState::Killed { .. } => None,
        }
    }

    /// Why it was ended, if it was.
    pub(super) fn ending(self) -> Option<Ending> {
        match self {
            UnitState::Running => None,
            UnitState::Terminating { why, .. } | UnitState::Killed { why } => Some(why),
        }
    }
}
