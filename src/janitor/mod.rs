//! The janitor (SPEC section 5): reaps apps left by dead runs, never a live
//! run's app or a long-lived one, and tidies what dead runs left in the
//! state directory.
//!
//! Claim before act: every side effect on an app or a lock file happens
//! while holding that lock. A held lock means a live run: skip. An acquired
//! lock means the owner is dead: tear the app down *holding* the lock, so a
//! new run for that domain blocks until the reap is done, and two janitors
//! reap each orphan exactly once. Probes never wait on a lock.

pub mod plan;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{self, Env};
use crate::ext::abra::Abra;
use crate::ext::docker::Docker;
use crate::ext::{Bound, Tools};
use crate::lock::backend::{AppLocks, Attempt, LockSettings};
use crate::lock::flock::{file_age, TryLock};
use crate::lock::{self, Kind, OwnerRecord};
use crate::phase::Phase;
use crate::rundir::{self, RunDir, RunRecord};
use crate::say;
use crate::sys::latch::Latch;
use crate::teardown::{self, App};
use plan::{Decision, Gate, Mark, Probe};

/// Everything a sweep needs, validated.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub state_dir: PathBuf,
    pub abra_home: PathBuf,
    pub tools: Tools,
    pub server: String,
    pub gate: Gate,
    pub max_age: Duration,
    pub retention: Duration,
    pub dry_run: bool,
    pub teardown_timeout: Duration,
    pub grace: Duration,
    /// The app-domain lock backend the probes go through.
    pub locks: LockSettings,
    /// The metrics file a sweep rewrites (CCCI_METRICS_FILE).
    pub outputs: crate::views::Outputs,
}

impl Settings {
    /// The janitor's settings read by `config` ([`config::janitor`]), with
    /// the external programs and the outputs.
    pub(crate) fn from_env(
        state_dir: &Path,
        server: &str,
        teardown_timeout: Duration,
        dry_run: bool,
        env: &Env,
    ) -> Result<Settings> {
        let c = config::janitor::settings(env, server, &crate::sys::procfs::hostname())?;
        Ok(Settings {
            state_dir: state_dir.to_path_buf(),
            abra_home: c.abra_home,
            tools: Tools::from_env(env),
            server: c.server,
            gate: c.gate,
            max_age: c.max_age,
            retention: c.retention,
            dry_run,
            teardown_timeout,
            grace: Duration::from_secs(10),
            locks: c.locks,
            outputs: crate::views::Outputs::from_env(env)?,
        })
    }
}

/// One sweep's summary (`janitor --json` prints one per sweep on stdout).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Summary {
    /// Apps matching RUN_APP_RE and carrying cc-ci-run's marker.
    pub candidates: usize,
    /// Apps matching RUN_APP_RE without the marker: not created by
    /// cc-ci-run, left alone (never probed).
    pub unmarked: Vec<String>,
    /// Candidates whose lock a live run holds.
    pub skipped_live: usize,
    /// Orphans torn down.
    pub reaped: Vec<String>,
    /// Orphans whose teardown failed (left for the next sweep).
    pub failed: Vec<String>,
    /// Entries that could not be handled (a planted symlink at a lock path,
    /// an unreadable lock or tree): named in the log, skipped, the sweep
    /// went on. `kind:name`.
    pub bad_entries: Vec<String>,
    /// Run directories whose run.json does not parse: kept for an
    /// operator, never removed.
    pub unreadable_records: Vec<String>,
    /// Orphans a --dry-run would reap.
    pub would_reap: Vec<String>,
    /// Locks held longer than CCCI_LOCK_MAX_AGE (kind:name), never stolen.
    pub flagged: Vec<String>,
    /// Free app lock files with no app, removed.
    pub tidied_locks: usize,
    /// Run trees and run locks of dead runs, removed.
    pub tidied_runs: usize,
    /// Finished run records past CCCI_RECORD_RETENTION, removed.
    pub pruned_records: usize,
    pub dry_run: bool,
}

fn names_in(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter_map(|n| n.strip_suffix(suffix).map(String::from))
        .filter(|n| !n.is_empty())
        .collect();
    v.sort();
    v
}

/// Whether an app's env file carries cc-ci-run's marker. One open, the
/// reads and a close: no stat for a size hint (env files are small), and
/// O_NONBLOCK so that a FIFO swapped in after the listing cannot hang the
/// sweep. Bytes that are not UTF-8 do not hide a marker line.
fn mark_of(dir: &Path, domain: &str) -> Mark {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{domain}.env"));
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let mut text = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => return Ok(text),
                Ok(n) => text.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    };
    match read() {
        Ok(bytes) => {
            if crate::ext::abra::marker::find(&String::from_utf8_lossy(&bytes)).is_some() {
                Mark::Marked
            } else {
                Mark::Unmarked
            }
        }
        Err(e) => Mark::Unreadable(format!("failed to read {}: {e}", path.display())),
    }
}

/// One sweep. `stop` (the funnel's latch under --watch) is checked between
/// apps, never during a reap: a reap that has begun finishes under its lock.
pub(crate) fn sweep(s: &Settings, stop: Option<&Latch>) -> Result<Summary> {
    let owner = OwnerRecord::for_janitor(Kind::App);
    let abra = Abra::new(&s.tools.abra, &s.abra_home, "janitor");
    let docker = Docker::new(s.tools.docker_host.as_deref());
    // The server's env-file directory, read here rather than through
    // `abra app ls`: the domains are all the sweep takes from a listing
    // (the server is the one swept; the recipe is not used), and the
    // marker check reads each matching env file anyway. A process start
    // of abra was most of a sweep's cost (SPEC section 8).
    let listed = crate::ext::abra::list_server_apps(&s.abra_home, &s.server)
        .context("failed to list apps")?;
    let apps = &listed.domains;
    let dir = crate::ext::abra::server_dir(&s.abra_home, &s.server);
    let found = plan::candidates(apps, &s.gate, |domain| mark_of(&dir, domain));
    let mut sum = Summary {
        candidates: found.marked.len(),
        dry_run: s.dry_run,
        ..Summary::default()
    };
    // An odd entry of an app the gate does not match is none of the
    // janitor's business (as that app would never be probed).
    for (domain, why) in listed.odd.iter().filter(|(d, _)| s.gate.matches(d)) {
        say!(
            "janitor: skipping {}: {why}",
            dir.join(format!("{domain}.env")).display()
        );
        sum.bad_entries.push(format!("env:{domain}.env"));
    }
    for app in found.unmarked {
        say!(
            "janitor: {app} matches CCCI_RUN_APP_RE but was not created by cc-ci-run (no marker in its env file): left alone"
        );
        sum.unmarked.push(app.to_string());
    }
    for (app, why) in found.unreadable {
        say!("janitor: skipping {app}: its env file cannot be read, so its marker cannot be checked: {why}");
        sum.bad_entries.push(format!("env:{app}.env"));
    }
    let stopped = || stop.is_some_and(Latch::is_set);
    let locks = s.locks.open(&s.state_dir);
    for domain in found.marked {
        if stopped() {
            say!("janitor: stop requested, not starting another reap");
            break;
        }
        if let Err(e) = crate::config::names::validate_name(Kind::App, domain) {
            say!("janitor: skipping {domain:?}: {e:#}");
            continue;
        }
        if let Err(e) = visit(s, domain, locks.as_ref(), &owner, &abra, &docker, &mut sum) {
            say!("janitor: skipping {domain}: {e:#}");
            sum.bad_entries.push(format!("app:{domain}"));
        }
    }
    if !stopped() {
        tidy(s, apps, locks.as_ref(), &owner, &mut sum);
    }
    say!(
        "janitor: {} candidate(s), {} live, {} reaped, {} failed, {} flagged, {} not created by cc-ci-run{}",
        sum.candidates,
        sum.skipped_live,
        sum.reaped.len(),
        sum.failed.len(),
        sum.flagged.len(),
        sum.unmarked.len(),
        if s.dry_run {
            format!(", {} would be reaped (dry run)", sum.would_reap.len())
        } else {
            String::new()
        }
    );
    crate::views::metrics::after_sweep(
        &s.state_dir,
        &s.outputs,
        sum.reaped.len(),
        sum.failed.len(),
        s.dry_run,
    );
    Ok(sum)
}

/// One candidate: probe its lock; a live run's app is skipped, an orphan is
/// reaped holding the lock. An error here is one bad entry, never the end of
/// the sweep.
fn visit(
    s: &Settings,
    domain: &str,
    locks: &dyn AppLocks,
    owner: &OwnerRecord,
    abra: &Abra,
    docker: &Docker,
    sum: &mut Summary,
) -> Result<()> {
    let reaping = domain.to_string();
    let on_lost = Box::new(move |why: &str| {
        say!("janitor: the app lock of {reaping} was lost while reaping it: {why}");
    });
    match locks.try_acquire(domain, owner, on_lost)? {
        Attempt::Busy(busy) => {
            let holder = busy.owner;
            let decision = plan::decide(Probe::Held { age: busy.age }, s.max_age, s.dry_run);
            sum.skipped_live += 1;
            if decision == (Decision::SkipLive { flag: true }) {
                let who = holder
                    .map(|h| format!("run {} pid {}", h.run_id, h.pid))
                    .unwrap_or_default();
                say!("janitor: app lock {domain} held past CCCI_LOCK_MAX_AGE by {who}: flagged, not stolen");
                sum.flagged.push(format!("app:{domain}"));
            }
        }
        Attempt::Acquired(held) => {
            match plan::decide(Probe::Acquired, s.max_age, s.dry_run) {
                Decision::WouldReap => {
                    say!("janitor (dry run): would reap orphan {domain}");
                    sum.would_reap.push(domain.to_string());
                    drop(held);
                }
                _ => {
                    let stack = config::stack_name(domain);
                    let bound = Bound::until(Instant::now() + s.teardown_timeout, s.grace);
                    let target = App {
                        server: &s.server,
                        domain,
                        stack: &stack,
                    };
                    // Re-check under the lock: another janitor (or a
                    // run's pre-clean) may have reaped it since our listing.
                    if !teardown::present(abra, docker, target, &bound)? {
                        say!("janitor: {domain} is already gone (reaped by another sweep)");
                        if let Err(e) = held.remove() {
                            say!("janitor: could not remove the lock file of {domain}: {e:#}");
                        }
                        return Ok(());
                    }
                    say!("janitor: {domain} has no live run: reaping it under its lock");
                    held.may_mutate()?;
                    match teardown::teardown(abra, docker, target, &bound, &*held) {
                        Ok(()) => {
                            sum.reaped.push(domain.to_string());
                            if let Err(e) = held.remove() {
                                say!("janitor: could not remove the lock file of {domain}: {e:#}");
                            }
                        }
                        Err(e) => {
                            say!(
                                "janitor: reaping {domain} failed, left for the next sweep: {e:#}"
                            );
                            sum.failed.push(domain.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Free app lock files with no app, run trees and run locks of dead runs,
/// and run records past retention; each under its lock. A bad entry is
/// named and skipped: the others are still tidied.
fn tidy(
    s: &Settings,
    apps: &[String],
    locks: &dyn AppLocks,
    owner: &OwnerRecord,
    sum: &mut Summary,
) {
    let app_dir = lock::flock::lock_dir(&s.state_dir, Kind::App);
    // Sets, not scans of the lists: with one lock file per app, a lookup
    // in the app list per lock file made the tidy quadratic in the apps.
    let listed: std::collections::HashSet<&str> = apps.iter().map(String::as_str).collect();
    let reaped: std::collections::HashSet<String> = sum.reaped.iter().cloned().collect();
    for domain in names_in(&app_dir, ".lock") {
        if crate::config::names::validate_name(Kind::App, &domain).is_err()
            || !s.gate.matches(&domain)
        {
            continue;
        }
        if listed.contains(domain.as_str()) && !reaped.contains(&domain) {
            continue;
        }
        if let Err(e) = tidy_app_lock(s, &domain, owner, sum) {
            say!("janitor: skipping the lock file of {domain}: {e:#}");
            sum.bad_entries.push(format!("app-lock:{domain}"));
        }
    }
    // The backend's own expired locks (the swarm's leases) of domains the
    // gate matches and that have no app.
    let orphaned = |domain: &str| s.gate.matches(domain) && !listed.contains(domain);
    match locks.tidy(&orphaned, s.dry_run) {
        Ok(removed) => sum.tidied_locks += removed,
        Err(e) => {
            let backend = locks.backend().as_str();
            say!("janitor: tidying expired {backend} locks failed: {e:#}");
            sum.bad_entries.push(format!("{backend}-locks"));
        }
    }
    let runs_dir = s.state_dir.join("runs");
    let Ok(rd) = std::fs::read_dir(&runs_dir) else {
        return;
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    ids.sort();
    for id in ids {
        if crate::config::names::check_run_id(&id).is_err() {
            continue;
        }
        if let Err(e) = tidy_run(s, &id, owner, sum) {
            say!("janitor: skipping run directory {id}: {e:#}");
            sum.bad_entries.push(format!("run:{id}"));
        }
    }
}

/// A free app lock file whose app is gone: removed under its lock.
fn tidy_app_lock(s: &Settings, domain: &str, owner: &OwnerRecord, sum: &mut Summary) -> Result<()> {
    let path = lock::flock::lock_path(&s.state_dir, Kind::App, domain);
    match lock::flock::try_acquire(&s.state_dir, Kind::App, domain, owner)? {
        TryLock::Busy(_) => {
            if file_age(&path).is_some_and(|a| a > s.max_age)
                && !sum.flagged.contains(&format!("app:{domain}"))
            {
                sum.flagged.push(format!("app:{domain}"));
            }
        }
        TryLock::Acquired(held) => {
            // Re-check under the lock: a run may have created the app
            // after our listing and died since.
            let env_file =
                crate::ext::abra::server_dir(&s.abra_home, &s.server).join(format!("{domain}.env"));
            if s.dry_run || env_file.exists() {
                return Ok(());
            }
            held.remove()?;
            sum.tidied_locks += 1;
        }
    }
    Ok(())
}

/// A dead run's directory, under its run lock: its tree removed, an
/// unfinished record marked abandoned, a record past retention pruned. A
/// record that does not parse keeps its directory (log and reports
/// included) for an operator to read: it is reported, never removed.
fn tidy_run(s: &Settings, id: &str, owner: &OwnerRecord, sum: &mut Summary) -> Result<()> {
    let run_owner = OwnerRecord {
        kind: Kind::Run,
        ..owner.clone()
    };
    let lock_path = lock::flock::lock_path(&s.state_dir, Kind::Run, id);
    let held = match lock::flock::try_acquire(&s.state_dir, Kind::Run, id, &run_owner)? {
        TryLock::Busy(_) => {
            if file_age(&lock_path).is_some_and(|a| a > s.max_age) {
                sum.flagged.push(format!("run:{id}"));
            }
            return Ok(());
        }
        TryLock::Acquired(h) => h,
    };
    if s.dry_run {
        return Ok(());
    }
    let dir = RunDir::new(&s.state_dir, id);
    let record = match std::fs::read(dir.record()) {
        Ok(bytes) => match serde_json::from_slice::<RunRecord>(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                say!(
                    "janitor: run {id}: {} does not parse ({e}): its directory is kept for an operator",
                    dir.record().display()
                );
                sum.unreadable_records.push(id.to_string());
                return Ok(());
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read {}", dir.record().display()))
        }
    };
    let had_tree = dir.abra_dir().exists() || dir.work().exists();
    if had_tree {
        dir.remove_tree()?;
    }
    if let Some(mut r) = record.clone().filter(|r| r.finished.is_none()) {
        r.failed_phase = Some(std::mem::replace(&mut r.phase, Phase::Abandoned));
        r.finished = Some(crate::log::timestamp(SystemTime::now()));
        r.save(&dir.record())?;
        say!("janitor: run {id} died without finishing: its record is marked abandoned");
    }
    if had_tree || record.as_ref().is_some_and(|r| r.finished.is_none()) {
        sum.tidied_runs += 1;
    }
    let mtime = std::fs::metadata(dir.record())
        .or_else(|_| std::fs::metadata(dir.log()))
        .and_then(|m| m.modified())
        .ok();
    let expired = mtime.is_some_and(|m| plan::past_retention(m, SystemTime::now(), s.retention));
    // A directory without a record is removed only when it holds no log
    // either (a run that died before its first record): a log is evidence.
    if expired || (record.is_none() && !dir.log().exists()) {
        rundir::remove_inside(&s.state_dir, &dir.root)?;
        if record.is_some() {
            sum.pruned_records += 1;
        }
    }
    held.remove()?;
    Ok(())
}

/// SPEC section 3 step 11: one sweep after a run (CCCI_JANITOR=off: none).
pub(crate) fn sweep_after_run(
    state_dir: &Path,
    server: &str,
    teardown_timeout: Duration,
    env: &Env,
) -> Result<()> {
    if !config::janitor::enabled(env)? {
        return Ok(());
    }
    let s = Settings::from_env(state_dir, server, teardown_timeout, false, env)?;
    sweep(&s, None).map(drop)
}
