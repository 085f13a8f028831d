//! Calling external programs (`abra`, `git`): where they are found, and one
//! bounded, cancellable way to run them; and the engine's client
//! ([`docker`], over its API: no program is spawned for it).
//!
//! Each call runs in its own process group (see `sys::spawn`), bounded by the
//! phase's deadline and interruptible by the funnel's latch. A command that
//! the latch stopped returns [`Interrupted`], which the lifecycle turns into
//! the funnel's exit code rather than an infrastructure failure.

pub mod abra;
pub mod docker;
pub mod git;

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::sys::latch::Latch;
use crate::sys::spawn;
use crate::sys::spawn::{Output, Ran};
use crate::sys::wait;

/// Where the external programs are (CCCI_ABRA, CCCI_GIT, else PATH) and
/// the engine (DOCKER_HOST); read by [`Tools::from_env`].
#[derive(Clone, Debug)]
pub(crate) struct Tools {
    pub abra: OsString,
    pub git: OsString,
    /// The docker CLI a recipe's tests are given (`CCCI_DOCKER`).
    pub docker: OsString,
    /// The engine (`DOCKER_HOST`; None: the default socket).
    pub docker_host: Option<String>,
}

impl Tools {
    /// Where the external programs are (`CCCI_ABRA` and `CCCI_GIT`, else
    /// `abra` and `git` found on PATH when started; `CCCI_DOCKER`, else
    /// `docker`, for the recipe's tests), and the engine (`DOCKER_HOST`).
    pub(crate) fn from_env(env: &crate::config::Env) -> Tools {
        let pick = |key: &str, default: &str| -> OsString {
            env.get(key)
                .filter(|v| !v.is_empty())
                .map(OsString::from)
                .unwrap_or_else(|| OsString::from(default))
        };
        Tools {
            abra: pick("CCCI_ABRA", "abra"),
            git: pick("CCCI_GIT", "git"),
            docker: pick("CCCI_DOCKER", "docker"),
            docker_host: crate::config::docker_host(env),
        }
    }
}

/// The bound of a command: the phase's deadline and the shutdown latch (none
/// during teardown, which signals do not interrupt).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound<'a> {
    pub cancel: Option<&'a Latch>,
    pub deadline: Option<Instant>,
    pub grace: Duration,
}

/// The least time a single engine query inside a bounded wait is given.
pub(crate) const QUERY_MIN: Duration = Duration::from_secs(10);

impl<'a> Bound<'a> {
    /// A bound with only a deadline: teardown's.
    pub(crate) fn until(deadline: Instant, grace: Duration) -> Bound<'static> {
        Bound {
            cancel: None,
            deadline: Some(deadline),
            grace,
        }
    }

    /// The bound of one query inside a wait: the same latch, and a deadline
    /// of at least [`QUERY_MIN`] from now, so a poll that starts just before
    /// the wait's deadline reports the state it saw ("did not converge")
    /// instead of a query cut short.
    pub(crate) fn for_query(&self) -> Bound<'a> {
        let floor = Instant::now() + QUERY_MIN;
        Bound {
            cancel: self.cancel,
            deadline: Some(self.deadline.map_or(floor, |d| d.max(floor))),
            grace: self.grace,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps for `d` or until the latch is set or the deadline passes;
    /// true when the latch cut it short.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        wait::sleep_until(wait::until(d, self.deadline), self.cancel)
    }
}

/// A command was stopped by the shutdown latch (a signal or the deadline).
#[derive(Debug)]
pub(crate) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a shutdown request")
    }
}

impl std::error::Error for Interrupted {}

/// Whether an error chain says the shutdown latch interrupted the work.
pub(crate) fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<Interrupted>().is_some())
}

/// Runs `cmd` within `bound`; `what` names it in errors.
pub(crate) fn run(cmd: &mut Command, what: &str, bound: &Bound) -> Result<Output> {
    let started = Instant::now();
    match spawn::run_captured(cmd, bound.cancel, bound.deadline, bound.grace)? {
        Ran::Done(out) => Ok(out),
        Ran::Cancelled => {
            Err(anyhow::Error::new(Interrupted).context(format!("{what} was stopped")))
        }
        Ran::TimedOut => bail!(
            "{what} did not finish within its bound ({})",
            crate::units::human(started.elapsed())
        ),
    }
}

/// Like [`run`], and a non-zero exit is an error carrying the command's stderr.
pub(crate) fn run_ok(cmd: &mut Command, what: &str, bound: &Bound) -> Result<Output> {
    check_ok(run(cmd, what, bound)?, what)
}

/// A finished command's output, or an error carrying its stderr when it
/// exited non-zero.
pub(crate) fn check_ok(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            tail(&out.stderr, &out.stdout)
        );
    }
    Ok(out)
}

/// The last lines of a command's output, for an error message.
pub(crate) fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(5);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "no output".to_string()
    } else {
        t
    }
}
