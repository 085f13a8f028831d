//! What the operator's lock commands do with the flock backend: `unlock`
//! of a lock file, and the rounds of `__lock-stress`. Only a holder
//! unlinks a lock file (see [`super`]): `unlock` takes the lock first.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::holder::{self, Holder};
use super::{acquire, acquire_path, lock_path, try_lock_existing, Acquire, Held, TryLock};
use crate::exit::{self, Failure};
use crate::lock::backend::{open_oracle, Stress, Unlock};
use crate::lock::{describe_owner, Kind, OwnerRecord, Wait};
use crate::say;

/// Which lock directory a name given to `unlock` refers to, given which
/// kinds it is valid for and which of those have a lock file (pure).
pub fn resolve_kind(
    name: &str,
    requested: Option<Kind>,
    exists: impl Fn(Kind) -> bool,
) -> Result<Kind> {
    let kinds: Vec<Kind> = requested.map_or(vec![Kind::App, Kind::Run], |k| vec![k]);
    let mut errors = Vec::new();
    let mut valid = Vec::new();
    for kind in kinds {
        match crate::config::names::validate_name(kind, name) {
            Ok(()) => valid.push(kind),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if valid.is_empty() {
        return Err(Failure::usage(format!(
            "unlock: NAME must be an app domain or a run id: {}",
            errors.join("; ")
        )));
    }
    let present: Vec<Kind> = valid.iter().copied().filter(|k| exists(*k)).collect();
    match present[..] {
        [kind] => Ok(kind),
        [] => Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("unlock: there is no lock named `{name}`"),
        )),
        _ => Err(Failure::usage(format!(
            "unlock: both an app lock and a run lock are named `{name}`: pass --kind app or --kind run"
        ))),
    }
}

/// `unlock NAME` of a lock file: an app lock or a run lock, whichever
/// `NAME` is (or `--kind` says).
pub(crate) fn unlock(state_dir: &Path, request: &Unlock<'_>) -> Result<i32> {
    // Validation first, and lookups only: a bad name touches nothing, not
    // even the lock directories.
    let kind = resolve_kind(request.name, request.kind, |k| {
        std::fs::symlink_metadata(lock_path(state_dir, k, request.name)).is_ok()
    })?;
    let path = lock_path(state_dir, kind, request.name);
    let what = format!("{} lock `{}`", kind.as_str(), request.name);
    match try_lock_existing(&path).with_context(|| format!("failed to lock {what}"))? {
        None => {
            say!("{what} is already gone");
            Ok(exit::OK)
        }
        Some(TryLock::Acquired(held)) => remove_free(held, &what),
        Some(TryLock::Busy(record)) => {
            let holder = holder::inspect_path(&path).and_then(|v| match v.holder {
                Holder::Held { pid } => pid,
                Holder::Free => None,
            });
            let who = holder_text(holder, record.as_ref());
            if !request.terminate {
                return Err(Failure::with_code(
                    exit::TESTS_FAILED,
                    format!("{what} is held by {who}; not removing it (--terminate asks the holder run to stop)"),
                ));
            }
            let pid = confirmed_holder(holder, record.as_ref(), &what)?;
            terminate_and_remove(&path, pid, &what, request.wait)
        }
    }
}

fn remove_free(held: Held, what: &str) -> Result<i32> {
    let last = held.previous_owner().map(OwnerRecord::describe);
    let shown = held.path().display().to_string();
    held.remove()
        .with_context(|| format!("failed to remove {what}"))?;
    match last {
        Some(last) => say!("removed free {what} ({shown}), left by dead holder {last}"),
        None => say!("removed free {what} ({shown})"),
    }
    Ok(exit::OK)
}

fn holder_text(pid: Option<i32>, record: Option<&OwnerRecord>) -> String {
    let shown = pid.map_or("a process this user cannot see".to_string(), |p| {
        format!("pid {p}")
    });
    match record {
        Some(r) if Some(r.pid) == pid => format!("{shown}: {}", r.describe()),
        Some(r) => format!(
            "{shown} (the owner record names another process: {})",
            r.describe()
        ),
        None => format!("{shown} (no owner record: not a cc-ci-run run?)"),
    }
}

/// The holder to signal: the pid the kernel names, confirmed by the owner
/// record (same pid, this host). Anything less is refused: a SIGTERM to an
/// unconfirmed pid could stop an unrelated process.
fn confirmed_holder(kernel: Option<i32>, record: Option<&OwnerRecord>, what: &str) -> Result<i32> {
    let refuse = |why: String| {
        Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("{what}: not terminating the holder: {why}"),
        ))
    };
    let Some(pid) = kernel else {
        return refuse("its process is not visible to this user".into());
    };
    let Some(record) = record else {
        return refuse(format!(
            "pid {pid} wrote no owner record (not a cc-ci-run run?)"
        ));
    };
    if record.pid != pid {
        return refuse(format!(
            "the kernel says pid {pid} holds it but the owner record names pid {}",
            record.pid
        ));
    }
    if record.host != crate::sys::procfs::hostname() {
        return refuse(format!("the owner record is from host {}", record.host));
    }
    Ok(pid)
}

fn terminate_and_remove(path: &Path, pid: i32, what: &str, wait: Duration) -> Result<i32> {
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .with_context(|| format!("failed to send SIGTERM to pid {pid}, holder of {what}"))?;
    say!(
        "sent SIGTERM to pid {pid}, holder of {what}; waiting up to {} for its teardown",
        crate::units::human(wait)
    );
    let mut progress = |owner: Option<&OwnerRecord>, waited: Duration| {
        if !waited.is_zero() {
            say!(
                "still waiting for {what} after {}: held by {}",
                crate::units::human(waited),
                describe_owner(owner)
            );
        }
    };
    let deadline = Some(Instant::now() + wait);
    match acquire_path(path, deadline, None, Duration::from_secs(30), &mut progress)
        .with_context(|| format!("failed to lock {what}"))?
    {
        Acquire::Acquired(held) => {
            say!("pid {pid} released {what}");
            remove_free(held, what)
        }
        Acquire::TimedOut => Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!(
                "{what} is still held after {}; not removing it",
                crate::units::human(wait)
            ),
        )),
        Acquire::Cancelled => Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("stopped waiting for {what}"),
        )),
    }
}

/// `__lock-stress` on lock files: rounds of acquire (or, as the unlocker,
/// one attempt on an existing file), enter and exit lines in the oracle,
/// then a release or a removal under the lock.
pub(crate) fn stress(state_dir: &Path, request: &Stress<'_>) -> Result<String> {
    let path = lock_path(state_dir, Kind::App, request.name);
    let mut oracle = open_oracle(request.oracle)?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut busy, mut absent) = (0u64, 0u64, 0u64);
    for i in 0..request.iterations {
        let held = if request.unlocker {
            match try_lock_existing(&path)? {
                Some(TryLock::Acquired(h)) => Some(h),
                Some(TryLock::Busy(_)) => {
                    busy += 1;
                    None
                }
                None => {
                    absent += 1;
                    None
                }
            }
        } else {
            let wait = Wait {
                deadline: None,
                cancel: None,
                progress_every: Duration::ZERO,
                progress: &mut |_, _| {},
            };
            match acquire(state_dir, Kind::App, request.name, &owner, wait)? {
                Acquire::Acquired(h) => Some(h),
                Acquire::TimedOut | Acquire::Cancelled => None,
            }
        };
        let Some(held) = held else { continue };
        acquired += 1;
        // One write per line: with O_APPEND each lands whole, in order.
        oracle
            .write_all(format!("enter {pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        oracle
            .write_all(format!("exit {pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        if request.unlocker || i % 3 == 0 {
            held.remove()?;
        } else {
            drop(held);
        }
    }
    Ok(format!("acquired {acquired} busy {busy} absent {absent}"))
}
