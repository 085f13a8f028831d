//! `cc-ci-run unlock`: removes a free lock file, or with `--terminate`
//! stops its live holder on this host first; a swarm lease is removed by
//! its ID once the engine's clock says it is dead. It takes the lock,
//! because only a holder may unlink a lock file (see [`crate::lock`]).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::UnlockArgs;
use crate::exit::{self, Failure};
use crate::lock::backend::{Backend, LockSettings};
use crate::lock::holder::{self, Holder};
use crate::lock::swarm::{self, Swarm};
use crate::lock::{self, Acquire, Kind, OwnerRecord, TryLock};
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
        match crate::names::validate_name(kind, name) {
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

/// `cc-ci-run unlock NAME [--terminate [--wait D]]`.
pub(crate) fn unlock(state_dir: &Path, args: UnlockArgs) -> Result<i32> {
    crate::log::set_tag("unlock");
    let settings = crate::config::locks::settings_from_process()?;
    if settings.backend == Backend::Swarm
        && args.kind != Some(Kind::Run)
        && crate::names::validate_name(Kind::App, &args.name).is_ok()
        && (args.kind == Some(Kind::App)
            || std::fs::symlink_metadata(lock::lock_path(state_dir, Kind::Run, &args.name))
                .is_err())
    {
        return unlock_swarm(state_dir, &settings, &args);
    }
    // Validation first, and lookups only: a bad name touches nothing, not
    // even the lock directories.
    let kind = resolve_kind(&args.name, args.kind, |k| {
        std::fs::symlink_metadata(lock::lock_path(state_dir, k, &args.name)).is_ok()
    })?;
    let path = lock::lock_path(state_dir, kind, &args.name);
    let what = format!("{} lock `{}`", kind.as_str(), args.name);
    match lock::try_lock_existing(&path).with_context(|| format!("failed to lock {what}"))? {
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
            if !args.terminate {
                return Err(Failure::with_code(
                    exit::TESTS_FAILED,
                    format!("{what} is held by {who}; not removing it (--terminate asks the holder run to stop)"),
                ));
            }
            let pid = confirmed_holder(holder, record.as_ref(), &what)?;
            terminate_and_remove(&path, pid, &what, args.wait)
        }
    }
}

/// `unlock DOMAIN` with the swarm backend: an expired lease is removed by
/// its ID; a live one is refused (or, with --terminate and a holder on
/// this host, its run is asked to stop and its release waited for).
fn unlock_swarm(state_dir: &Path, settings: &LockSettings, args: &UnlockArgs) -> Result<i32> {
    let swarm = Swarm::new(settings.docker_host.as_deref());
    let name = swarm::object_name(&args.name);
    let what = format!("swarm lock `{}` (object {name})", args.name);
    let Some(obj) = swarm.inspect(&name)? else {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("unlock: there is no swarm lock for `{}`", args.name),
        ));
    };
    let Some(lease) = obj.lease.clone() else {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("{what} (ID {}) carries no lease labels: not a cc-ci-run lock; remove it by hand if it is stale", obj.id),
        ));
    };
    if swarm.dead(&obj, &settings.lease)? {
        if swarm.remove_id(&obj.id)? {
            say!(
                "removed expired {what}, ID {}, left by {}",
                obj.id,
                lease.owner().describe()
            );
        } else {
            say!("{what} ID {} was already gone", obj.id);
        }
        return Ok(exit::OK);
    }
    let holder = format!(
        "{} (lease expires {})",
        lease.owner().describe(),
        swarm::timestamp_ms(lease.expires_ms)
    );
    if !args.terminate {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("{what} has a live lease: held by {holder}; not removing it (--terminate asks a holder run on this host to stop)"),
        ));
    }
    if lease.host != settings.host_id {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("{what}: not terminating the holder: it runs on host {} (this is {}); stop it there", lease.host, settings.host_id),
        ));
    }
    if crate::sys::procfs::process_started(lease.pid).is_none() {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!(
                "{what}: its holder pid {} is not running here; the lease expires by itself",
                lease.pid
            ),
        ));
    }
    // The pid must be that run's live harness on this host, as its own
    // run record says: a SIGTERM to a recycled pid could stop anything.
    let record = crate::rundir::RunRecord::load(
        &crate::rundir::RunDir::new(state_dir, &lease.run_id).record(),
    )
    .ok();
    if !record
        .as_ref()
        .is_some_and(|r| r.pid == lease.pid && r.finished.is_none())
    {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!(
                "{what}: not terminating pid {}: no unfinished run record of run {} names it in this state directory",
                lease.pid, lease.run_id
            ),
        ));
    }
    kill(Pid::from_raw(lease.pid), Signal::SIGTERM).with_context(|| {
        format!(
            "failed to send SIGTERM to pid {}, holder of {what}",
            lease.pid
        )
    })?;
    say!(
        "sent SIGTERM to pid {}, holder of {what}; waiting up to {} for its teardown",
        lease.pid,
        crate::units::human(args.wait)
    );
    let deadline = Instant::now() + args.wait;
    loop {
        match swarm.inspect(&obj.id)? {
            None => {
                say!("pid {} released {what}", lease.pid);
                return Ok(exit::OK);
            }
            Some(_) if Instant::now() >= deadline => {
                return Err(Failure::with_code(
                    exit::TESTS_FAILED,
                    format!(
                        "{what} is still held after {}; not removing it",
                        crate::units::human(args.wait)
                    ),
                ))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn remove_free(held: lock::Held, what: &str) -> Result<i32> {
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
                lock::describe_owner(owner)
            );
        }
    };
    let deadline = Some(Instant::now() + wait);
    match lock::acquire_path(path, deadline, None, Duration::from_secs(30), &mut progress)
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
