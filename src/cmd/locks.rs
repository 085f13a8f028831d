//! The lock commands: `locks` (what is held, by whom, for how long) and
//! `unlock` (remove a free lock file, or stop its live holder first), plus
//! the hidden diagnostics `__hold-lock`, `__lock-stress` and `__bench-lock`.
//!
//! `locks` never takes a lock: probing would make a run that tries its run
//! lock at that moment see it busy and exit 75. It reads the kernel's view
//! ([`crate::lock::holder`]) and the owner records. `unlock` does take the
//! lock, because only a holder may unlink a lock file (see [`crate::lock`]).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::cli::{BenchLockArgs, HoldLockArgs, LockStressArgs, LocksArgs, UnlockArgs};
use crate::exit::{self, Failure};
use crate::lock::backend::{self, Attempt, Backend, LockSettings};
use crate::lock::holder::{self, Holder};
use crate::lock::report::{collect, LockReport, State};
use crate::lock::swarm::{self, Swarm};
use crate::lock::{self, Acquire, Kind, OwnerRecord, TryLock};
use crate::say;
use crate::table::{self, Align};

#[derive(Debug, Serialize)]
struct LocksJson<'a> {
    max_age_secs: u64,
    /// `flock` or `swarm`: which authority arbitrates app-domain locks.
    backend: &'static str,
    locks: &'a [LockReport],
    /// With the swarm backend: every lock object on the swarm (null with flock).
    swarm_locks: Option<&'a [SwarmLockReport]>,
}

/// One swarm lock (`locks --json`, `swarm_locks`, sorted by object name).
/// Stable fields:
///
/// - `domain` (string): the app domain (from its label; the object name for
///   an object without our labels).
/// - `object` (string): the config's name; `id` (string): its ID, which
///   is what release and take-over delete.
/// - `version` (number): the engine's version index of the object.
/// - `state` (`"held"` | `"expired"` | `"unknown"`): held while the lease
///   has not run out past the take-over margin; unknown for an object
///   whose labels are not a lease.
/// - `host`, `run_id` (string | null), `pid` (number | null): the holder.
/// - `started`, `expires` (string | null): RFC 3339 UTC.
/// - `expires_in_secs` (number | null): seconds until the lease expires
///   (negative: expired that long ago).
/// - `renewals` (number | null): how often the holder renewed the lease.
/// - `age_secs` (number | null), `over_max_age` (bool): as for flock locks.
#[derive(Clone, Debug, Serialize)]
pub struct SwarmLockReport {
    pub domain: String,
    pub object: String,
    pub id: String,
    pub version: u64,
    pub state: &'static str,
    pub host: Option<String>,
    pub run_id: Option<String>,
    pub pid: Option<i32>,
    pub started: Option<String>,
    pub expires: Option<String>,
    pub expires_in_secs: Option<i64>,
    pub renewals: Option<u64>,
    pub age_secs: Option<u64>,
    pub over_max_age: bool,
}

/// The swarm's lock objects as `locks` reports them (pure but for `now`).
pub fn swarm_reports(
    objects: &[swarm::LockObject],
    margin: Duration,
    max_age: Duration,
    now: SystemTime,
) -> Vec<SwarmLockReport> {
    let now_ms = swarm::unix_ms(now);
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
                expires: l.map(|l| swarm::timestamp_ms(l.expires_ms)),
                expires_in_secs: l.map(|l| (l.expires_ms as i64 - now_ms as i64).div_euclid(1000)),
                renewals: l.map(|l| l.renewals),
                age_secs: age.map(|a| a.as_secs()),
                over_max_age: state == "held" && age.is_some_and(|a| a > max_age),
            }
        })
        .collect()
}

/// The human listing of the swarm locks (pure).
pub fn swarm_table(reports: &[SwarmLockReport]) -> String {
    if reports.is_empty() {
        return "no swarm locks\n".to_string();
    }
    let mut rows = vec![["DOMAIN", "STATE", "ID", "EXPIRES", "HOLDER"]
        .map(String::from)
        .to_vec()];
    for r in reports {
        let expires = r.expires_in_secs.map_or("-".to_string(), |s| {
            if s >= 0 {
                format!("in {s}s")
            } else {
                format!("{}s ago", -s)
            }
        });
        let mut holder = match (&r.run_id, &r.host, r.pid) {
            (Some(run), Some(host), Some(pid)) => format!(
                "run {run} (pid {pid} on host {host}, since {}, {} renewal(s))",
                r.started.as_deref().unwrap_or("?"),
                r.renewals.unwrap_or(0)
            ),
            _ => "not a cc-ci-run lease (no lease labels)".to_string(),
        };
        if r.over_max_age {
            holder.push_str("  [held longer than CCCI_LOCK_MAX_AGE]");
        }
        rows.push(vec![
            r.domain.clone(),
            r.state.to_string(),
            r.id.clone(),
            expires,
            holder,
        ]);
    }
    table::render_aligned(
        &rows,
        &[Align::Left, Align::Left, Align::Left, Align::Right],
    )
}

pub(crate) fn locks(state_dir: &Path, args: LocksArgs) -> Result<i32> {
    crate::log::set_tag("locks");
    let max_age = crate::config::lock_max_age(&crate::config::process_env())?;
    let settings = crate::config::locks::settings_from_process()?;
    let reports = collect(state_dir, max_age)?;
    swarm::say_clock_skew(&settings)?;
    let swarm = match settings.backend {
        Backend::Flock => None,
        Backend::Swarm => Some(swarm_reports(
            &Swarm::new(&settings.docker).list()?,
            settings.lease.margin,
            max_age,
            SystemTime::now(),
        )),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&LocksJson {
            max_age_secs: max_age.as_secs(),
            backend: settings.backend.as_str(),
            locks: &reports,
            swarm_locks: swarm.as_deref(),
        })
        .context("failed to encode the lock list")?;
        writeln!(std::io::stdout().lock(), "{json}").context("failed to write the lock list")?;
    } else {
        let mut text = table(&reports);
        if let Some(sw) = &swarm {
            text.push_str(&swarm_table(sw));
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("failed to write the lock list")?;
    }
    for r in swarm.iter().flatten().filter(|r| r.over_max_age) {
        say!(
            "warning: swarm lock `{}` held for {} by run {} on host {}, longer than CCCI_LOCK_MAX_AGE ({})",
            r.domain,
            crate::units::human(Duration::from_secs(r.age_secs.unwrap_or(0))),
            r.run_id.as_deref().unwrap_or("?"),
            r.host.as_deref().unwrap_or("?"),
            crate::units::human(max_age)
        );
    }
    for r in reports.iter().filter(|r| r.over_max_age) {
        say!(
            "warning: {} lock `{}` held for {} by pid {}, longer than CCCI_LOCK_MAX_AGE ({})",
            r.kind.as_str(),
            r.name,
            crate::units::human(Duration::from_secs(r.age_secs.unwrap_or(0))),
            r.holder_pid.map_or("?".to_string(), |p| p.to_string()),
            crate::units::human(max_age)
        );
    }
    Ok(exit::OK)
}

/// The human listing of `locks`, one line per lock (pure).
pub fn table(reports: &[LockReport]) -> String {
    if reports.is_empty() {
        return "no locks\n".to_string();
    }
    let mut rows = vec![["KIND", "NAME", "STATE", "PID", "AGE", "OWNER"]
        .map(String::from)
        .to_vec()];
    for r in reports {
        let pid = table::dash(r.holder_pid.map(|p| p.to_string()));
        let age = table::dash(
            r.age_secs
                .map(|a| crate::units::human(Duration::from_secs(a))),
        );
        let mut owner = match (&r.owner, r.state, r.owner_matches) {
            (None, State::Held, _) => "no owner record".to_string(),
            (None, State::Free, _) => "-".to_string(),
            (Some(o), State::Held, true) => o.describe(),
            (Some(o), State::Held, false) => format!("stale record: {}", o.describe()),
            (Some(o), State::Free, _) => format!("left by dead holder: {}", o.describe()),
        };
        if r.over_max_age {
            owner.push_str("  [held longer than CCCI_LOCK_MAX_AGE]");
        }
        let state = match r.state {
            State::Held => "held",
            State::Free => "free",
        };
        rows.push(vec![
            r.kind.as_str().to_string(),
            r.name.clone(),
            state.to_string(),
            pid,
            age,
            owner,
        ]);
    }
    let right = [
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
    ];
    table::render_aligned(&rows, &right)
}

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
    let swarm = Swarm::new(&settings.docker);
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

/// `__hold-lock KIND NAME [CMD...]`: see [`HoldLockArgs`].
pub(crate) fn hold_lock(state_dir: &Path, args: HoldLockArgs) -> Result<i32> {
    crate::log::set_tag("hold-lock");
    crate::names::validate_name(args.kind, &args.name)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("manual-{}", std::process::id()));
    crate::names::validate_name(Kind::Run, &run_id)?;
    let owner = OwnerRecord::for_self(&run_id, args.kind);
    let what = format!("{} lock `{}`", args.kind.as_str(), args.name);
    // An app lock goes through the configured backend; a run lock is
    // always a flock.
    let locks: Box<dyn backend::AppLocks> = match args.kind {
        Kind::App => crate::config::locks::settings_from_process()?.open(state_dir),
        Kind::Run => Box::new(backend::FlockLocks {
            state_dir: state_dir.to_path_buf(),
            kind: Kind::Run,
        }),
    };
    hold(locks.as_ref(), &args, &owner, &what)
}

/// Starts CMD (if any) with plain std::process::Command, which closes
/// nothing for us: the child shows whether our lock descriptors really are
/// close-on-exec. Prints `child PID`.
fn start_child(command: &[String], out: &mut impl Write) -> Result<Option<std::process::Child>> {
    let Some((program, rest)) = command.split_first() else {
        return Ok(None);
    };
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {program}"))?;
    writeln!(out, "child {}", child.id()).context("failed to write to stdout")?;
    out.flush().context("failed to write to stdout")?;
    Ok(Some(child))
}

/// Holds until stdin closes (or a signal ends us: the kernel releases a
/// flock, a swarm lease expires), then ends the child.
fn hold_until_stdin_closes(child: Option<&mut std::process::Child>) {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    if let Some(c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Takes the lock as a run does (or tries once), prints `held`, holds it
/// until stdin closes.
fn hold(
    locks: &dyn backend::AppLocks,
    args: &HoldLockArgs,
    owner: &OwnerRecord,
    what: &str,
) -> Result<i32> {
    let shown = what.to_string();
    let on_lost = move || -> backend::OnLost {
        let shown = shown.clone();
        Box::new(move |why: &str| say!("lost {shown}: {why}"))
    };
    let held = if args.try_only {
        match locks.try_acquire(&args.name, owner, on_lost())? {
            Attempt::Acquired(h) => h,
            Attempt::Busy(b) => {
                return Err(Failure::with_code(
                    exit::DUPLICATE_RUN,
                    format!(
                        "{what} is held by {}",
                        lock::describe_owner(b.owner.as_ref())
                    ),
                ))
            }
        }
    } else {
        let deadline = args.wait.map(|w| Instant::now() + w);
        let mut progress = |holder: Option<&OwnerRecord>, waited: Duration| {
            say!(
                "waiting for {what} ({} so far): held by {}",
                crate::units::human(waited),
                lock::describe_owner(holder)
            );
        };
        let wait = lock::Wait {
            deadline,
            cancel: None,
            progress_every: args.progress,
            progress: &mut progress,
        };
        match locks.acquire(&args.name, owner, wait, on_lost())? {
            backend::Acquired::Acquired(h) => h,
            _ => {
                return Err(Failure::with_code(
                    exit::TESTS_FAILED,
                    format!("gave up waiting for {what}"),
                ))
            }
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "held").context("failed to write to stdout")?;
    out.flush().context("failed to write to stdout")?;
    let mut child = start_child(&args.command, &mut out)?;
    drop(out);
    hold_until_stdin_closes(child.as_mut());
    let lost = held.lost();
    held.release()?;
    match lost {
        Some(why) => say!("{what} had been lost ({why})"),
        None => say!("released {what}"),
    }
    Ok(exit::OK)
}

/// `__lock-stress NAME --iterations N --oracle FILE [--unlocker]`: see
/// [`LockStressArgs`]. Prints `acquired A busy B absent C` on stdout.
pub(crate) fn lock_stress(state_dir: &Path, args: LockStressArgs) -> Result<i32> {
    crate::log::set_tag("lock-stress");
    crate::names::validate_name(Kind::App, &args.name)?;
    let settings = crate::config::locks::settings_from_process()?;
    if settings.backend == Backend::Swarm {
        return lock_stress_backend(state_dir, &settings, &args);
    }
    let path = lock::lock_path(state_dir, Kind::App, &args.name);
    let mut oracle = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.oracle)
        .with_context(|| format!("failed to open oracle file {}", args.oracle.display()))?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut busy, mut absent) = (0u64, 0u64, 0u64);
    for i in 0..args.iterations {
        let held = if args.unlocker {
            match lock::try_lock_existing(&path)? {
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
            let wait = lock::Wait {
                deadline: None,
                cancel: None,
                progress_every: Duration::ZERO,
                progress: &mut |_, _| {},
            };
            match lock::acquire(state_dir, Kind::App, &args.name, &owner, wait)? {
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
        if args.unlocker || i % 3 == 0 {
            held.remove()?;
        } else {
            drop(held);
        }
    }
    println!("acquired {acquired} busy {busy} absent {absent}");
    Ok(exit::OK)
}

/// `__lock-stress` through the configured backend (the swarm's): waits,
/// holds, writes `enter`/`exit` to the oracle, releases; `--unlocker` is
/// the flock backend's file-removal race and has no meaning here.
fn lock_stress_backend(
    state_dir: &Path,
    settings: &LockSettings,
    args: &LockStressArgs,
) -> Result<i32> {
    if args.unlocker {
        return Err(Failure::usage(
            "__lock-stress --unlocker races lock-file removal: only with CCCI_LOCK_BACKEND=flock",
        ));
    }
    let locks = settings.open(state_dir);
    let mut oracle = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.oracle)
        .with_context(|| format!("failed to open oracle file {}", args.oracle.display()))?;
    let pid = std::process::id();
    let owner = OwnerRecord::for_self(&format!("stress-{pid}"), Kind::App);
    let (mut acquired, mut waited) = (0u64, 0u64);
    for i in 0..args.iterations {
        let mut was_busy = false;
        let wait = lock::Wait {
            deadline: None,
            cancel: None,
            progress_every: Duration::ZERO,
            progress: &mut |_, _| was_busy = true,
        };
        let on_lost = Box::new(|why: &str| say!("lost the lock: {why}"));
        let held = match locks.acquire(&args.name, &owner, wait, on_lost)? {
            backend::Acquired::Acquired(h) => h,
            _ => continue,
        };
        acquired += 1;
        waited += u64::from(was_busy);
        let host = &settings.host_id;
        // Entering is a mutating step: only with the lease standing.
        held.may_mutate()
            .with_context(|| format!("round {i}: acquired, but may not enter"))?;
        oracle
            .write_all(format!("enter {host}:{pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        if !args.hold.is_zero() {
            std::thread::sleep(args.hold);
        }
        // The object must still be ours as we leave: a holder that was
        // taken over while inside fails loudly, never exits 0.
        held.confirm_held()
            .with_context(|| format!("round {i}: the lock was not ours at exit"))?;
        oracle
            .write_all(format!("exit {host}:{pid} {i}\n").as_bytes())
            .context("failed to write to the oracle file")?;
        if let Some(why) = held.lost() {
            return Err(Failure::infra(format!(
                "round {i}: the lock was lost while held: {why}"
            )));
        }
        held.release()?;
    }
    println!("acquired {acquired} waited {waited}");
    Ok(exit::OK)
}

/// `__bench-lock N`: N rounds of try-acquire + release of one uncontended
/// app lock (open, flock, inode re-check, owner record, truncate, close);
/// prints the median in nanoseconds.
pub(crate) fn bench_lock(state_dir: &Path, args: BenchLockArgs) -> Result<i32> {
    let name = args.name.as_deref().unwrap_or("bench.lock.invalid");
    let owner = OwnerRecord::for_self("bench", Kind::App);
    let locks = crate::config::locks::settings_from_process()?.open(state_dir);
    let mut samples = Vec::with_capacity(args.iterations.max(1));
    for _ in 0..args.iterations.max(1) {
        let t = Instant::now();
        match locks.try_acquire(name, &owner, Box::new(|_: &str| {}))? {
            Attempt::Acquired(held) => held.release()?,
            Attempt::Busy(_) => {
                return Err(Failure::infra(format!(
                    "the benchmark lock `{name}` is held by someone else"
                )))
            }
        }
        samples.push(t.elapsed().as_nanos());
    }
    samples.sort_unstable();
    println!("{}", samples[samples.len() / 2]);
    Ok(exit::OK)
}
