//! The app-domain lock behind one interface, with two authorities (SPEC
//! sections 4 and 11): the host's kernel (`flock`, the default) or the
//! swarm's raft store (`CCCI_LOCK_BACKEND=swarm`, for several runner hosts
//! feeding one swarm).
//!
//! The run, the janitor, `locks`, `unlock` and the lock diagnostics reach
//! the app-domain lock only through [`AppLocks`]: acquiring, listing,
//! unlocking, the janitor's tidy and the stress rounds are each backend's
//! own, and no caller asks which backend it has. The run lock stays a
//! flock whatever the backend: it guards one host's run id, which no other
//! host shares.
//!
//! Choosing the backend is configuration, parsed by `config::locks`
//! without touching anything (a bad value is exit 2 naming the variable);
//! [`LockSettings::open`] opens the one it names. A swarm backend
//! that cannot reach the engine fails with exit 3: it never falls back to
//! flock, because a silent fallback on one host re-opens exactly the double
//! hold the swarm backend exists to close.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::lock::Wait;
use crate::lock::{self, Kind, OwnerRecord};

pub use crate::config::locks::{Backend, Lease, LockSettings, DEFAULT_LEASE, MARGIN_MIN};

/// What a lease means to the swarm protocol.
impl Lease {
    /// How long one engine call of the lock may take: half of what is
    /// left of a lease when its renewal falls due, so a hung call is given
    /// up while the lease still stands.
    pub fn call_bound(&self) -> Duration {
        (self.lease.saturating_sub(self.renew_every) / 2).max(Duration::from_millis(1))
    }

    /// How long one renewal call (inspect, update) may take: at most the
    /// call bound and half the margin, so a renewal a holder heard answered
    /// was applied before any taker could judge the lease dead.
    pub fn renew_bound(&self) -> Duration {
        self.call_bound()
            .min(self.margin / 2)
            .max(Duration::from_millis(1))
    }

    /// The lease a holder must have left to count as holding (after its
    /// create, and before each mutating step): one call bound.
    pub fn safety(&self) -> Duration {
        self.call_bound()
    }
}

/// Who holds a busy lock, as well as the backend knows.
#[derive(Clone, Debug, Default)]
pub struct Busy {
    /// The holder's owner record (a swarm lock's labels are read as one).
    pub owner: Option<OwnerRecord>,
    /// How long it has been held, when known.
    pub age: Option<Duration>,
}

/// A non-blocking attempt on an app-domain lock.
pub type Attempt = lock::Attempt<Box<dyn AppLock>, Busy>;

/// A blocking acquisition of an app-domain lock.
pub type Acquired = lock::Acquired<Box<dyn AppLock>>;

/// Called when a held lock is lost behind its holder's back (a swarm lease
/// that could not be renewed, or whose object was deleted or changed).
pub type OnLost = Box<dyn Fn(&str) + Send + 'static>;

/// A held app-domain lock; dropping it releases it.
pub trait AppLock {
    /// Why the lock was lost, once it has been (never, for flock).
    fn lost(&self) -> Option<String>;
    /// Fails (exit 3) when a mutating step (deploy, undeploy, app rm,
    /// backup, restore, reap) must not start: the lock was lost, or its
    /// lease has less than the safety allowance left. Always Ok for flock.
    fn may_mutate(&self) -> Result<()>;
    /// [`AppLock::may_mutate`], and the authority confirms the lock is
    /// still ours (the swarm object read back by its ID). For checks, not
    /// for every step: it costs an engine call.
    fn confirm_held(&self) -> Result<()> {
        self.may_mutate()
    }
    /// The holder before us, if it died holding the lock.
    fn previous_owner(&self) -> Option<OwnerRecord>;
    /// Releases the lock and says whether that went cleanly.
    fn release(self: Box<Self>) -> Result<()>;
    /// Releases the lock and removes what stood for it (a flock's file; a
    /// swarm lock's object is removed by any release).
    fn remove(self: Box<Self>) -> Result<()>;
}

/// The app-domain locks of one backend.
pub trait AppLocks {
    fn backend(&self) -> Backend;
    /// Checks a run may use this backend at all (the swarm's: this host's
    /// clock within the take-over margin of the engine's; exit 3 past it).
    fn preflight(&self) -> Result<()> {
        Ok(())
    }
    /// One attempt, no waiting (the janitor's probe).
    fn try_acquire(&self, domain: &str, owner: &OwnerRecord, on_lost: OnLost) -> Result<Attempt>;
    /// Waits for the lock until `deadline` or `cancel`; `progress` is called
    /// with the holder when it is first found busy, then every
    /// `progress_every` (zero: only once).
    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        wait: Wait<'_>,
        on_lost: OnLost,
    ) -> Result<Acquired>;
    /// `locks`: this backend's own lock objects, beyond the lock files
    /// that `lock::report` reads whatever the backend (the run locks, and
    /// the flock backend's app locks). None: the lock files are all there
    /// is (flock).
    fn list(&self, max_age: Duration) -> Result<Option<Vec<SwarmLockReport>>>;
    /// `unlock`: removes a free lock, or with `terminate` stops its live
    /// holder on this host first; returns the exit code. A run lock is a
    /// flock whatever the backend.
    fn unlock(&self, request: &Unlock<'_>) -> Result<i32>;
    /// The janitor's tidy: this backend's expired locks whose domain
    /// `orphaned` says has no app, removed (or, `dry_run`, only named);
    /// returns how many were removed. Lock files are tidied by the janitor
    /// under their flock, whatever the backend: nothing more here (flock).
    fn tidy(&self, orphaned: &dyn Fn(&str) -> bool, dry_run: bool) -> Result<usize>;
    /// `__lock-stress`: rounds of acquire, enter, exit and release against
    /// an O_APPEND oracle file; returns the summary line it prints.
    fn stress(&self, request: &Stress<'_>) -> Result<String>;
}

/// What `unlock` is asked, from its command line.
#[derive(Clone, Copy, Debug)]
pub struct Unlock<'a> {
    pub name: &'a str,
    /// `--kind`: None, whichever kind of lock `name` is.
    pub kind: Option<Kind>,
    pub terminate: bool,
    /// How long `terminate` waits for the holder to let go.
    pub wait: Duration,
}

/// What `__lock-stress` is asked, from its command line.
#[derive(Clone, Copy, Debug)]
pub struct Stress<'a> {
    pub name: &'a str,
    pub iterations: u64,
    /// The oracle file every stress process appends its lines to.
    pub oracle: &'a Path,
    /// Race lock-file removal instead of holding (flock only).
    pub unlocker: bool,
    /// How long a holder stays inside (the lease backends).
    pub hold: Duration,
}

/// The oracle file every stress process appends its `enter`/`exit` lines
/// to: O_APPEND, so lines of several processes never overwrite each other
/// and their order is the order the kernel wrote them in.
pub(crate) fn open_oracle(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("failed to open oracle file {}", path.display()))
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
