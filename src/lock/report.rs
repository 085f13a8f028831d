//! What the flock locks of a state directory look like right now, for
//! `locks` and the metrics: each lock file's state by the kernel's view
//! ([`super::flock::holder`]), its holder and owner record, and how long it has
//! been held. Read-only: nothing here takes a lock (a probe would make a
//! run that tries its run lock at that moment see it busy).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use super::flock::holder::{self, FileId, Holder};
use super::{Kind, OwnerRecord};
use crate::say;

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

/// Every lock file under the state directory, with the kernel's view of it.
pub(crate) fn collect(state_dir: &Path, max_age: Duration) -> Result<Vec<LockReport>> {
    let mut files: Vec<(Kind, String, PathBuf, std::fs::Metadata)> = Vec::new();
    for kind in [Kind::App, Kind::Run] {
        let dir = super::flock::lock_dir(state_dir, kind);
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
    let views = holder::inspect(&ids);
    let now = SystemTime::now();
    let reports = files
        .into_iter()
        .zip(views)
        .map(|((kind, name, path, meta), view)| {
            let owner = super::flock::read_owner(&path);
            let (state, holder_pid) = match view.holder {
                Holder::Free => (State::Free, None),
                Holder::Held { pid } => (State::Held, pid),
            };
            let owner_matches = holder_pid.is_some() && owner.as_ref().map(|o| o.pid) == holder_pid;
            let written = SystemTime::UNIX_EPOCH
                + Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec().max(0) as u32);
            let since = match (state, owner_matches) {
                (State::Free, _) | (State::Held, true) => Some(written),
                (State::Held, false) => holder_pid.and_then(crate::sys::procfs::process_started),
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
