//! Removal of the containers a suite's tests started. Every test gets
//! `CCCI_CONTAINER_LABEL` (`cc-ci.run=<run-id>`) to put on any container it
//! runs; at the end of the suite, on every path (pass, fail, a stop), the
//! runner removes every container that carries it:
//! `docker ps -aq --filter label=…`, then `docker rm -f …`, then a second
//! `ps` to confirm. docker is `CCCI_DOCKER` or `docker` on PATH. A docker
//! that is absent, fails or hangs (each call is bounded) is logged and never
//! fails the suite: the verdict is the tests', and the janitor finds what a
//! dead engine kept.
//!
//! A suite stopped by a signal under `run` leaves the removal to the run's
//! teardown (see [`Removal`]): the `docker ps` is a process start (with
//! the stand-in, a Python start), and on a cancel every millisecond before
//! the teardown starts is a millisecond the app stays on the swarm.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;

use crate::say;
use crate::sys::spawn::{Isolation, Waited};
use crate::sys::{kill, spawn};

/// The label tests put on their containers.
pub(crate) fn label(run_id: &str) -> String {
    format!("cc-ci.run={run_id}")
}

/// How long one docker call may take before it is terminated.
const CALL_BOUND: Duration = Duration::from_secs(60);

/// `CCCI_DOCKER`, else `docker` on PATH; None when neither is there.
pub(crate) fn docker_program(env: &std::collections::HashMap<String, String>) -> Option<PathBuf> {
    if let Some(p) = env.get("CCCI_DOCKER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// Says how a removal went; a failure is never fatal (see the header).
pub(crate) fn say_removed(label: &str, removed: &Result<usize>) {
    match removed {
        Ok(0) => {}
        Ok(k) => say!("removed {k} container(s) labelled {label}"),
        Err(e) => say!("container cleanup for label {label} failed (not fatal): {e:#}"),
    }
}

/// A removal of the containers labelled `label` on a thread of its own, so
/// that the run's teardown of the app goes on beside it. [`Removal::finish`]
/// waits for it; the run calls it before it releases the app lock, so the
/// order of SPEC section 3 (teardown, then the lock) holds for the
/// containers too.
///
/// The docker calls are spawned by that thread with PDEATHSIG, which fires
/// when the spawning *thread* ends: harmless here, because the thread waits
/// for each call (or ends it, at its bound) before it returns.
pub(crate) struct Removal {
    label: String,
    thread: Option<std::thread::JoinHandle<Result<usize>>>,
}

impl Removal {
    /// Starts the removal, each docker call bounded by `until` (the
    /// teardown's deadline, so a hung engine cannot hold the run past the
    /// wrapper's allowance; at least `grace` from now); if no thread can be
    /// started, removes them here.
    pub(crate) fn start(
        docker: Option<PathBuf>,
        label: String,
        grace: Duration,
        until: Instant,
    ) -> Removal {
        let until = until.max(Instant::now() + grace);
        let (d, l) = (docker.clone(), label.clone());
        let started = std::thread::Builder::new()
            .name("container-removal".into())
            .spawn(move || remove_labelled(d.as_ref(), &l, grace, Some(until)));
        let thread = match started {
            Ok(t) => Some(t),
            Err(e) => {
                say!("could not start a thread for the container cleanup ({e}): removing them now");
                say_removed(
                    &label,
                    &remove_labelled(docker.as_ref(), &label, grace, Some(until)),
                );
                None
            }
        };
        Removal { label, thread }
    }

    /// Waits for the removal and says how it went.
    pub(crate) fn finish(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let removed = t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the container cleanup thread panicked")));
            say_removed(&self.label, &removed);
        }
    }
}

impl Drop for Removal {
    /// A removal is never abandoned: an early return still waits for it.
    fn drop(&mut self) {
        self.join();
    }
}

/// Removes every container labelled `label`; returns how many were removed.
/// Each docker call is bounded by [`CALL_BOUND`], and by `until` if given.
pub(crate) fn remove_labelled(
    docker: Option<&PathBuf>,
    label: &str,
    grace: Duration,
    until: Option<Instant>,
) -> Result<usize> {
    let Some(docker) = docker else {
        bail!("docker not found (set CCCI_DOCKER or put docker on PATH)");
    };
    let filter = format!("label={label}");
    let ids = list(docker, &filter, grace, until)?;
    if ids.is_empty() {
        return Ok(0);
    }
    say!(
        "removing {} container(s) labelled {label}: {}",
        ids.len(),
        ids.join(" ")
    );
    let mut args = vec!["rm".to_string(), "-f".to_string()];
    args.extend(ids.iter().cloned());
    let (ok, _, err) = call(docker, &args, grace, until)?;
    let left = list(docker, &filter, grace, until)?;
    if !left.is_empty() {
        bail!(
            "{} container(s) labelled {label} are still there after `docker rm -f` ({}): {}",
            left.len(),
            left.join(" "),
            err.trim()
        );
    }
    if !ok {
        say!("docker rm -f reported: {}", err.trim());
    }
    Ok(ids.len())
}

fn list(
    docker: &PathBuf,
    filter: &str,
    grace: Duration,
    until: Option<Instant>,
) -> Result<Vec<String>> {
    let args = ["ps", "-aq", "--filter", filter].map(String::from);
    let (ok, out, err) = call(docker, &args, grace, until)?;
    if !ok {
        bail!("docker ps -aq --filter {filter} failed: {}", err.trim());
    }
    Ok(out
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>())
}

/// Runs docker with captured output, bounded by [`CALL_BOUND`] and `until`:
/// (success, stdout, stderr).
fn call(
    docker: &PathBuf,
    args: &[String],
    grace: Duration,
    until: Option<Instant>,
) -> Result<(bool, String, String)> {
    let started = Instant::now();
    let deadline = until.map_or(started + CALL_BOUND, |u| u.min(started + CALL_BOUND));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut cmd = Command::new(docker);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let spawned = spawn::spawn(&mut cmd, Isolation::Group);
    // Our copies of the write ends go with the Command, so the readers see
    // end-of-file when docker (and anything it left) is done.
    drop(cmd);
    let mut child = spawned.with_context(|| format!("failed to run {}", docker.display()))?;
    let out = std::thread::spawn(move || slurp(out_r));
    let err = std::thread::spawn(move || slurp(err_r));
    let waited = child.wait(None, Some(deadline))?;
    // Anything docker left in its group would hold the pipes open: the
    // leader (on a timeout) and every member get the one escalation.
    if waited == Waited::Exited {
        kill::kill_group_members(child.pid, grace);
    } else {
        child.terminate(grace)?;
    }
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if waited != Waited::Exited {
        bail!(
            "`{} {}` did not finish within {}",
            docker.display(),
            args.join(" "),
            crate::units::human(deadline.saturating_duration_since(started))
        );
    }
    let ok = child.status().is_some_and(|s| s.success());
    Ok((ok, out, err))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("failed to create a pipe")
}

fn slurp(fd: OwnedFd) -> String {
    let mut buf = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
