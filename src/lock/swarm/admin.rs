//! What the operator's lock commands do with the swarm backend: `locks`
//! lists the lease objects, `unlock` removes an expired lease by its ID
//! (a run lock, always a flock, is the flock backend's to unlock), the
//! janitor's tidy removes expired leases of apps that are gone, and the
//! rounds of `__lock-stress`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::client::{say_clock_skew, Swarm};
use super::lease::{now_ms, object_name, timestamp_ms, unix_ms, LockObject};
use crate::config::locks::LockSettings;
use crate::exit::{self, Failure};
use crate::lock::backend::{open_oracle, Acquired, AppLocks, Stress, SwarmLockReport, Unlock};
use crate::lock::{flock, Kind, OwnerRecord, Wait};
use crate::say;

/// `locks`: the host's clock against the engine's (a warning past half
/// the margin), then every lock object on the swarm.
pub(crate) fn list(settings: &LockSettings, max_age: Duration) -> Result<Vec<SwarmLockReport>> {
    say_clock_skew(settings)?;
    Ok(swarm_reports(
        &Swarm::new(settings.docker_host.as_deref()).list()?,
        settings.lease.margin,
        max_age,
        SystemTime::now(),
    ))
}

/// The swarm's lock objects as `locks` reports them (pure but for `now`).
pub fn swarm_reports(
    objects: &[LockObject],
    margin: Duration,
    max_age: Duration,
    now: SystemTime,
) -> Vec<SwarmLockReport> {
    let now_ms = unix_ms(now);
    objects
        .iter()
        .map(|o| {
            let l = o.lease.as_ref();
            let age = l
                .and_then(|l| crate::log::parse_timestamp(&l.started))
                .map(|t| now.duration_since(t).unwrap_or_default());
            let state = match l {
                None => "unknown",
                Some(l) if l.expired(now_ms, margin) => "expired",
                Some(_) => "held",
            };
            SwarmLockReport {
                domain: l.map_or(o.name.clone(), |l| l.domain.clone()),
                object: o.name.clone(),
                id: o.id.clone(),
                version: o.version,
                state,
                host: l.map(|l| l.host.clone()),
                run_id: l.map(|l| l.run_id.clone()),
                pid: l.map(|l| l.pid),
                started: l.map(|l| l.started.clone()),
                expires: l.map(|l| timestamp_ms(l.expires_ms)),
                expires_in_secs: l.map(|l| (l.expires_ms as i64 - now_ms as i64).div_euclid(1000)),
                renewals: l.map(|l| l.renewals),
                age_secs: age.map(|a| a.as_secs()),
                over_max_age: state == "held" && age.is_some_and(|a| a > max_age),
            }
        })
        .collect()
}

/// `unlock NAME`: a swarm lock when NAME is an app domain and no run lock
/// is meant (`--kind app`, or no run lock file of that name); any other,
/// the lock file's (a run lock is a flock whatever the backend).
pub(crate) fn unlock(
    state_dir: &Path,
    settings: &LockSettings,
    request: &Unlock<'_>,
) -> Result<i32> {
    if request.kind != Some(Kind::Run)
        && crate::config::names::validate_name(Kind::App, request.name).is_ok()
        && (request.kind == Some(Kind::App)
            || std::fs::symlink_metadata(flock::lock_path(state_dir, Kind::Run, request.name))
                .is_err())
    {
        return unlock_lease(state_dir, settings, request);
    }
    flock::admin::unlock(state_dir, request)
}

/// `unlock DOMAIN` of a swarm lock: an expired lease is removed by
/// its ID; a live one is refused (or, with --terminate and a holder on
/// this host, its run is asked to stop and its release waited for).
fn unlock_lease(state_dir: &Path, settings: &LockSettings, request: &Unlock<'_>) -> Result<i32> {
    let swarm = Swarm::new(settings.docker_host.as_deref());
    let name = object_name(request.name);
    let what = format!("swarm lock `{}` (object {name})", request.name);
    let Some(obj) = swarm.inspect(&name)? else {
        return Err(Failure::with_code(
            exit::TESTS_FAILED,
            format!("unlock: there is no swarm lock for `{}`", request.name),
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
        timestamp_ms(lease.expires_ms)
    );
    if !request.terminate {
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
        crate::units::human(request.wait)
    );
    let deadline = Instant::now() + request.wait;
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
                        crate::units::human(request.wait)
                    ),
                ))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Swarm locks whose lease ran out (past the take-over margin) and whose
/// domain has no app (`orphaned`: the gate matches it and it is not
/// listed): removed by their ID, as a take-over would. An object without
/// our lease labels is left.
pub(crate) fn tidy(
    settings: &LockSettings,
    orphaned: &dyn Fn(&str) -> bool,
    dry_run: bool,
) -> Result<usize> {
    let swarm = Swarm::new(settings.docker_host.as_deref());
    let mut removed = 0;
    for obj in swarm.list()? {
        let Some(lease) = obj.lease.as_ref() else {
            continue;
        };
        if !orphaned(&lease.domain) || !swarm.dead(&obj, &settings.lease)? {
            continue;
        }
        if dry_run {
            say!(
                "janitor (dry run): would remove the expired swarm lock of {} (ID {})",
                lease.domain,
                obj.id
            );
            continue;
        }
        if swarm.remove_id(&obj.id)? {
            say!(
                "janitor: removed the expired swarm lock of {} (ID {}, left by {})",
                lease.domain,
                obj.id,
                lease.owner().describe()
            );
            removed += 1;
        }
    }
    Ok(removed)
}

/// `__lock-stress` through the swarm backend (`locks`): waits,
/// holds, writes `enter`/`exit` to the oracle, releases; `--unlocker` is
/// the flock backend's file-removal race and has no meaning here.
pub(crate) fn stress(
    locks: &dyn AppLocks,
    settings: &LockSettings,
    request: &Stress<'_>,
) -> Result<String> {
    if request.unlocker {
        return Err(Failure::usage(
            "__lock-stress --unlocker races lock-file removal: only with CCCI_LOCK_BACKEND=flock",
        ));
    }
    let mut oracle = open_oracle(request.oracle)?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut waited) = (0u64, 0u64);
    for i in 0..request.iterations {
        let mut was_busy = false;
        let wait = Wait {
            deadline: None,
            cancel: None,
            progress_every: Duration::ZERO,
            progress: &mut |_, _| was_busy = true,
        };
        let on_lost = Box::new(|why: &str| say!("lost the lock: {why}"));
        let held = match locks.acquire(request.name, &owner, wait, on_lost)? {
            Acquired::Acquired(h) => h,
            _ => continue,
        };
        acquired += 1;
        waited += u64::from(was_busy);
        let host = &settings.host_id;
        // Entering is a mutating step: only with the lease standing.
        held.may_mutate()
            .with_context(|| format!("round {i}: acquired, but may not enter"))?;
        write_line(&mut oracle, &format!("enter {host}:{pid} {i}"))?;
        // Inside, the holder acts as a run does: every step first asks
        // whether it may still mutate. Once refused (the lease lost or
        // nearly spent) it leaves at once, saying so in the oracle.
        let until = Instant::now() + request.hold;
        while Instant::now() < until {
            std::thread::sleep(HOLD_STEP.min(until.saturating_duration_since(Instant::now())));
            if let Err(e) = held.may_mutate() {
                write_line(&mut oracle, &format!("exit {host}:{pid} {i} lost"))?;
                return Err(e.context(format!("round {i}: left the lock while inside")));
            }
        }
        // The object must still be ours as we leave: a holder that was
        // taken over while inside fails loudly, never exits 0.
        held.confirm_held()
            .with_context(|| format!("round {i}: the lock was not ours at exit"))?;
        write_line(&mut oracle, &format!("exit {host}:{pid} {i}"))?;
        if let Some(why) = held.lost() {
            return Err(Failure::infra(format!(
                "round {i}: the lock was lost while held: {why}"
            )));
        }
        held.release()?;
    }
    Ok(format!("acquired {acquired} waited {waited}"))
}

/// How often a `__lock-stress` holder inside asks whether it may still
/// mutate (a run asks before each step; its steps are seconds apart).
const HOLD_STEP: Duration = Duration::from_millis(20);

/// One oracle line of the swarm backend, with the wall-clock Unix
/// milliseconds it was written at as its last field (the tests' timing
/// tables; the order of the lines is the kernel's O_APPEND order).
fn write_line(oracle: &mut std::fs::File, line: &str) -> Result<()> {
    let ms = now_ms();
    oracle
        .write_all(format!("{line} @{ms}\n").as_bytes())
        .context("failed to write to the oracle file")
}
