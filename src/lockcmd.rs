//! The lock commands: `locks` (what is held, by whom, for how long) and
//! `unlock` (remove a free lock file, or stop its live holder first), plus
//! the hidden diagnostics `__hold-lock`, `__lock-stress` and `__bench-lock`.
//!
//! `locks` never takes a lock: probing would make a run that tries its run
//! lock at that moment see it busy and exit 75. It reads the kernel's view
//! ([`crate::lockholder`]) and the owner records. `unlock` does take the
//! lock, because only a holder may unlink a lock file (see [`crate::lock`]).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::cli::{BenchLockArgs, HoldLockArgs, LockStressArgs, LocksArgs, UnlockArgs};
use crate::exit::{self, Failure};
use crate::lock::{self, Acquire, Kind, OwnerRecord, TryLock, TryPath};
use crate::lockholder::{self, FileId, Holder};
use crate::say;

/// The environment variable that sets how long a lock may be held before
/// `locks` (and the janitor) flag it.
pub const MAX_AGE_VAR: &str = "CCCI_LOCK_MAX_AGE";
/// Its default: longer than any run's deadline plus teardown.
pub const MAX_AGE_DEFAULT: Duration = Duration::from_secs(2 * 3600);

/// `CCCI_LOCK_MAX_AGE` from its raw value (None: unset). A bad value is exit
/// 2 naming the variable.
pub fn max_age(value: Option<&str>) -> Result<Duration> {
    match value {
        None => Ok(MAX_AGE_DEFAULT),
        Some(v) => crate::units::parse_duration(v)
            .map_err(|e| Failure::usage(format!("{MAX_AGE_VAR}: {e}"))),
    }
}

fn max_age_from_env() -> Result<Duration> {
    match std::env::var(MAX_AGE_VAR) {
        Ok(v) => max_age(Some(&v)),
        Err(std::env::VarError::NotPresent) => max_age(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::usage(format!(
            "{MAX_AGE_VAR}: the value is not valid UTF-8"
        ))),
    }
}

/// Whether a lock is held, according to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Held,
    Free,
}

/// What `cc-ci-run locks --json` prints on stdout: one object,
/// `{"max_age_secs": N, "locks": [LockReport, ...]}`, app locks first, then
/// run locks, each sorted by name. Stable fields of every lock:
///
/// - `name` (string): the app domain or run id.
/// - `kind` (`"app"` | `"run"`).
/// - `path` (string): the lock file.
/// - `state` (`"held"` | `"free"`): the kernel's answer, not the record's.
/// - `holder_pid` (number | null): the live process that holds the lock,
///   from `/proc/locks` confirmed or corrected through `/proc/PID/fdinfo`.
///   null when free, or when held by a process this user cannot see.
/// - `taker_pid` (number | null): the pid `/proc/locks` names, the process
///   that took the lock; it may have exited while `holder_pid` keeps the
///   lock (a shell's `flock -x 9`). null when free.
/// - `owner` (object | null): the owner record in the file (`run_id`,
///   `pid`, `host`, `cwd`, `started`, `kind`). null when there is none: a
///   `flock(1)` holder, or a lock released cleanly (which clears it). A
///   record in a free lock was left by a holder that died.
/// - `owner_matches` (bool): the record's pid is `holder_pid`; false on a
///   held lock means the record is stale or missing.
/// - `since` (string | null): RFC 3339 UTC. Held: when the lock was taken,
///   as well as it is known (when the holder wrote its record, else when
///   the holder process started). Free: when the file was last written.
/// - `age_secs` (number | null): whole seconds from `since` to now.
/// - `over_max_age` (bool): held for longer than `CCCI_LOCK_MAX_AGE`.
#[derive(Clone, Debug, Serialize)]
pub struct LockReport {
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
    pub state: State,
    pub holder_pid: Option<i32>,
    pub taker_pid: Option<i32>,
    pub owner: Option<OwnerRecord>,
    pub owner_matches: bool,
    pub since: Option<String>,
    pub age_secs: Option<u64>,
    pub over_max_age: bool,
}

#[derive(Debug, Serialize)]
struct LocksJson<'a> {
    max_age_secs: u64,
    locks: &'a [LockReport],
}

/// `cc-ci-run locks [--json]`.
pub fn locks(state_dir: &Path, args: LocksArgs) -> Result<i32> {
    crate::log::set_tag("locks");
    let max_age = max_age_from_env()?;
    let reports = collect(state_dir, max_age)?;
    if args.json {
        let json = serde_json::to_string_pretty(&LocksJson {
            max_age_secs: max_age.as_secs(),
            locks: &reports,
        })
        .context("failed to encode the lock list")?;
        println!("{json}");
    } else {
        print!("{}", table(&reports));
    }
    for r in reports.iter().filter(|r| r.over_max_age) {
        say!(
            "warning: {} lock `{}` held for {} by pid {}, longer than {MAX_AGE_VAR} ({})",
            r.kind.as_str(),
            r.name,
            crate::units::human(Duration::from_secs(r.age_secs.unwrap_or(0))),
            r.holder_pid.map_or("?".to_string(), |p| p.to_string()),
            crate::units::human(max_age)
        );
    }
    Ok(exit::OK)
}

/// Every lock file under the state directory, with the kernel's view of it.
pub fn collect(state_dir: &Path, max_age: Duration) -> Result<Vec<LockReport>> {
    let mut files: Vec<(Kind, String, PathBuf, std::fs::Metadata)> = Vec::new();
    for kind in [Kind::App, Kind::Run] {
        let dir = lock::lock_dir(state_dir, kind);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to list {}", dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                continue;
            };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue; // removed while we listed
            };
            if !meta.is_file() {
                say!(
                    "warning: {} is not a regular file (a planted symlink?); it is not a lock and is ignored",
                    path.display()
                );
                continue;
            }
            found.push((kind, name.to_string(), path, meta));
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        files.extend(found);
    }
    let ids: Vec<FileId> = files.iter().map(|f| FileId::of(&f.3)).collect();
    let views = lockholder::inspect(&ids);
    let now = SystemTime::now();
    let reports = files
        .into_iter()
        .zip(views)
        .map(|((kind, name, path, meta), view)| {
            let owner = lock::read_owner(&path);
            let (state, holder_pid) = match view.holder {
                Holder::Free => (State::Free, None),
                Holder::Held { pid } => (State::Held, pid),
            };
            let owner_matches = holder_pid.is_some() && owner.as_ref().map(|o| o.pid) == holder_pid;
            let written = SystemTime::UNIX_EPOCH
                + Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec().max(0) as u32);
            let since = match (state, owner_matches) {
                (State::Free, _) | (State::Held, true) => Some(written),
                (State::Held, false) => holder_pid.and_then(lockholder::process_started),
            };
            let age = since.map(|s| now.duration_since(s).unwrap_or_default());
            LockReport {
                name,
                kind,
                path,
                state,
                holder_pid,
                taker_pid: if state == State::Held {
                    view.taker
                } else {
                    None
                },
                owner,
                owner_matches,
                since: since.map(crate::log::timestamp),
                age_secs: age.map(|a| a.as_secs()),
                over_max_age: state == State::Held && age.is_some_and(|a| a > max_age),
            }
        })
        .collect();
    Ok(reports)
}

/// The human listing of `locks`, one line per lock (pure).
pub fn table(reports: &[LockReport]) -> String {
    if reports.is_empty() {
        return "no locks\n".to_string();
    }
    let width = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<4}  {:<width$}  {:<5}  {:>7}  {:>8}  OWNER\n",
        "KIND", "NAME", "STATE", "PID", "AGE"
    );
    for r in reports {
        let pid = r.holder_pid.map_or("-".to_string(), |p| p.to_string());
        let age = r.age_secs.map_or("-".to_string(), |a| {
            crate::units::human(Duration::from_secs(a))
        });
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
        out.push_str(&format!(
            "{:<4}  {:<width$}  {state:<5}  {pid:>7}  {age:>8}  {owner}\n",
            r.kind.as_str(),
            r.name
        ));
    }
    out
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
        match lock::validate_name(kind, name) {
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
pub fn unlock(state_dir: &Path, args: UnlockArgs) -> Result<i32> {
    crate::log::set_tag("unlock");
    // Validation first, and lookups only: a bad name touches nothing, not
    // even the lock directories.
    let kind = resolve_kind(&args.name, args.kind, |k| {
        std::fs::symlink_metadata(lock::lock_path(state_dir, k, &args.name)).is_ok()
    })?;
    let path = lock::lock_path(state_dir, kind, &args.name);
    let what = format!("{} lock `{}`", kind.as_str(), args.name);
    match lock::try_lock_existing(&path).with_context(|| format!("failed to lock {what}"))? {
        TryPath::Absent => {
            say!("{what} is already gone");
            Ok(exit::OK)
        }
        TryPath::Acquired(held) => remove_free(held, &what),
        TryPath::Busy(record) => {
            let holder = lockholder::inspect_path(&path).and_then(|v| match v.holder {
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
    if record.host != lock::hostname() {
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
pub fn hold_lock(state_dir: &Path, args: HoldLockArgs) -> Result<i32> {
    crate::log::set_tag("hold-lock");
    lock::validate_name(args.kind, &args.name)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("manual-{}", std::process::id()));
    lock::validate_name(Kind::Run, &run_id)?;
    let owner = OwnerRecord::for_self(&run_id, args.kind);
    let what = format!("{} lock `{}`", args.kind.as_str(), args.name);
    let held = if args.try_only {
        match lock::try_acquire(state_dir, args.kind, &args.name, &owner)? {
            TryLock::Acquired(held) => held,
            TryLock::Busy(record) => {
                return Err(Failure::with_code(
                    exit::DUPLICATE_RUN,
                    format!(
                        "{what} is held by {}",
                        lock::describe_owner(record.as_ref())
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
        match lock::acquire(
            state_dir,
            args.kind,
            &args.name,
            &owner,
            deadline,
            None,
            args.progress,
            &mut progress,
        )? {
            Acquire::Acquired(held) => held,
            Acquire::TimedOut | Acquire::Cancelled => {
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
    // Started with plain std::process::Command, which closes nothing for us:
    // the child shows whether our lock descriptors really are close-on-exec.
    let mut child = match args.command.split_first() {
        Some((program, rest)) => {
            let child = Command::new(program)
                .args(rest)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("failed to start {program}"))?;
            writeln!(out, "child {}", child.id()).context("failed to write to stdout")?;
            out.flush().context("failed to write to stdout")?;
            Some(child)
        }
        None => None,
    };
    drop(out);
    // Hold until stdin closes (or a signal ends us: the kernel releases).
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(held);
    say!("released {what}");
    Ok(exit::OK)
}

/// `__lock-stress NAME --iterations N --oracle FILE [--unlocker]`: see
/// [`LockStressArgs`]. Prints `acquired A busy B absent C` on stdout.
pub fn lock_stress(state_dir: &Path, args: LockStressArgs) -> Result<i32> {
    crate::log::set_tag("lock-stress");
    lock::validate_name(Kind::App, &args.name)?;
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
                TryPath::Acquired(h) => Some(h),
                TryPath::Busy(_) => {
                    busy += 1;
                    None
                }
                TryPath::Absent => {
                    absent += 1;
                    None
                }
            }
        } else {
            match lock::acquire(
                state_dir,
                Kind::App,
                &args.name,
                &owner,
                None,
                None,
                Duration::ZERO,
                &mut |_, _| {},
            )? {
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

/// `__bench-lock N`: N rounds of try-acquire + release of one uncontended
/// app lock (open, flock, inode re-check, owner record, truncate, close);
/// prints the median in nanoseconds.
pub fn bench_lock(state_dir: &Path, args: BenchLockArgs) -> Result<i32> {
    let name = "bench.lock.invalid";
    let owner = OwnerRecord::for_self("bench", Kind::App);
    let mut samples = Vec::with_capacity(args.iterations.max(1));
    for _ in 0..args.iterations.max(1) {
        let t = Instant::now();
        match lock::try_acquire(state_dir, Kind::App, name, &owner)? {
            TryLock::Acquired(held) => drop(held),
            TryLock::Busy(_) => {
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
