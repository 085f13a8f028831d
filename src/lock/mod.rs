//! Locks (SPEC sections 4 and 11): what every backend shares (the kinds
//! of lock, the owner record, the outcome of an attempt, how a blocking
//! acquisition waits), the backend interface ([`backend`]) and its two
//! authorities: the host's kernel ([`flock`], lock files under the state
//! directory, the default and always the run lock's) and the swarm's raft
//! store ([`swarm`]). [`LockSettings::open`] picks the app-domain lock's
//! backend from the settings; no caller chooses one.

pub mod backend;
pub mod flock;
pub mod report;
pub mod swarm;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::locks::{Backend, LockSettings};
use crate::config::names::Name;
use crate::sys::latch::Latch;

impl LockSettings {
    /// The backend these settings choose.
    pub fn open(&self, state_dir: &Path) -> Box<dyn backend::AppLocks> {
        match self.backend {
            Backend::Flock => Box::new(flock::FlockLocks {
                state_dir: state_dir.to_path_buf(),
                kind: Kind::App,
            }),
            Backend::Swarm => Box::new(swarm::SwarmLocks::new(self, state_dir)),
        }
    }
}

/// The run locks of a state directory: a flock whatever the backend, since
/// a run id is one host's and no other host shares it.
pub fn run_locks(state_dir: &Path) -> Box<dyn backend::AppLocks> {
    Box::new(flock::FlockLocks {
        state_dir: state_dir.to_path_buf(),
        kind: Kind::Run,
    })
}

/// The lock settings of the process environment (the default host id is
/// this host's name).
pub fn settings_from_process() -> Result<LockSettings> {
    crate::config::locks::settings(
        &crate::config::process_env(),
        &crate::sys::procfs::hostname(),
    )
}

/// What a lock protects: an app domain on the swarm, or a run id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `locks/apps/<domain>.lock`: held from the first deploy step to the last teardown step.
    App,
    /// `locks/runs/<run-id>.lock`: held for the whole run; a duplicate run exits 75.
    Run,
}

impl Kind {
    /// The directory under `locks/` that holds this kind's lock files.
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            Kind::App => "apps",
            Kind::Run => "runs",
        }
    }

    /// The name of a lock of this kind, as messages call it.
    pub fn field(self) -> &'static str {
        Name::from(self).field()
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Run => "run",
        }
    }
}

/// Who holds a lock, written by the holder into the locked file as one line
/// of JSON. Readers read it without taking the lock, so it is informational:
/// the kernel (`/proc/locks`) says who really holds a lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OwnerRecord {
    /// The holder's run id (`drone-<build>`, `manual-<pid>`, ...).
    pub run_id: String,
    /// The holder's pid (for a run: its harness).
    pub pid: i32,
    /// The host name of the holder.
    pub host: String,
    /// The holder's working directory.
    pub cwd: String,
    /// When the record was made (RFC 3339 UTC), normally just before acquiring.
    pub started: String,
    /// Which kind of lock this record was written into.
    pub kind: Kind,
    /// What the holder is; written only for a janitor, so a run's record
    /// keeps its documented form (and a record without it is a run's).
    #[serde(default, skip_serializing_if = "Role::is_run")]
    pub role: Role,
}

/// What kind of process holds a lock. A run waits out a janitor that holds
/// its run lock for a moment (to tidy the run's directory) instead of
/// taking it for a duplicate run.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Run,
    Janitor,
}

impl Role {
    fn is_run(&self) -> bool {
        *self == Role::Run
    }
}

impl OwnerRecord {
    /// A janitor's record (`janitor-<pid>` in the run id field), stamped now.
    pub fn for_janitor(kind: Kind) -> OwnerRecord {
        OwnerRecord {
            role: Role::Janitor,
            ..OwnerRecord::for_self(&format!("janitor-{}", std::process::id()), kind)
        }
    }

    /// A record for this process, stamped now.
    pub fn for_self(run_id: &str, kind: Kind) -> OwnerRecord {
        OwnerRecord {
            role: Role::Run,
            run_id: run_id.to_string(),
            pid: std::process::id() as i32,
            host: crate::sys::procfs::hostname(),
            cwd: std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            started: crate::log::timestamp(SystemTime::now()),
            kind,
        }
    }

    /// `run drone-7 (pid 1234 on host ci1, since 2024-05-01T10:00:00.000Z)`.
    pub fn describe(&self) -> String {
        format!(
            "run {} (pid {} on host {}, since {})",
            self.run_id, self.pid, self.host, self.started
        )
    }
}

/// Describes a holder from its owner record, which may be missing (a lock
/// taken by util-linux `flock(1)` has none).
pub(crate) fn describe_owner(owner: Option<&OwnerRecord>) -> String {
    match owner {
        Some(o) => o.describe(),
        None => "a holder that wrote no owner record".to_string(),
    }
}

/// Parses an owner record as a holder wrote it. Tolerates what a reader
/// without the lock can see: trailing bytes of an older, longer record
/// (between the holder's write and its truncate). Empty or invalid: None.
pub fn parse_owner(text: &str) -> Option<OwnerRecord> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<OwnerRecord>()
        .next()?
        .ok()
}

/// A non-blocking attempt on a lock, for every backend: the lock, or what
/// is known of whoever holds it.
#[derive(Debug)]
pub enum Attempt<H, B> {
    Acquired(H),
    Busy(B),
}

/// A blocking acquisition, for every backend: the lock, or why the wait
/// ended without it.
#[derive(Debug)]
pub enum Acquired<H> {
    Acquired(H),
    /// The deadline passed first.
    TimedOut,
    /// The cancel latch was set first (shutdown requested).
    Cancelled,
}

/// How a blocking acquisition waits, the same for every backend: until
/// `deadline` (None: as long as it takes) or until `cancel` is set, calling
/// `progress` with the holder's owner record and the time waited so far
/// once when the lock is first found busy, then every `progress_every`
/// (zero: only once).
pub struct Wait<'a> {
    pub deadline: Option<Instant>,
    pub cancel: Option<&'a Latch>,
    pub progress_every: Duration,
    pub progress: &'a mut dyn FnMut(Option<&OwnerRecord>, Duration),
}

impl From<Kind> for Name {
    fn from(kind: Kind) -> Name {
        match kind {
            Kind::App => Name::AppDomain,
            Kind::Run => Name::RunId,
        }
    }
}
