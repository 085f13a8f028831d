//! The app-domain lock behind one interface, with two authorities (SPEC
//! sections 4 and 11): the host's kernel (`flock`, the default) or the
//! swarm's raft store (`CCCI_LOCK_BACKEND=swarm`, for several runner hosts
//! feeding one swarm).
//!
//! The run, the janitor, `locks`, `unlock` and the lock diagnostics reach
//! the app-domain lock only through [`AppLocks`]. The run lock stays a
//! flock whatever the backend: it guards one host's run id, which no other
//! host shares.
//!
//! Choosing the backend is configuration, parsed by `config::locks`
//! without touching anything (a bad value is exit 2 naming the variable).
//! A swarm backend
//! that cannot reach the engine fails with exit 3: it never falls back to
//! flock, because a silent fallback on one host re-opens exactly the double
//! hold the swarm backend exists to close.

use std::time::Duration;

use anyhow::Result;

use crate::lock::Wait;
use crate::lock::{self, Kind, OwnerRecord};

/// Which authority arbitrates app-domain locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `flock` on `locks/apps/<domain>.lock`: one host's kernel.
    Flock,
    /// A lease object in the swarm's raft store: every host of one swarm.
    Swarm,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Flock => "flock",
            Backend::Swarm => "swarm",
        }
    }
}

/// The lease of a swarm lock: how long a holder's claim lasts without
/// renewal, how often the holder renews it, and how long past its expiry
/// another host still waits before taking it over (the allowance for clock
/// skew between hosts and for a renewal in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub lease: Duration,
    pub renew_every: Duration,
    pub margin: Duration,
}

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

/// The default lease: a crashed holder blocks its domain for at most
/// lease + margin (40 s); a live one renews three times per lease, so two
/// renewals may fail in a row before it gives up.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest take-over margin: renewals are bounded by half of it.
pub const MARGIN_MIN: Duration = Duration::from_millis(200);

/// Validated lock settings (from `CCCI_LOCK_BACKEND`, `CCCI_HOST_ID`,
/// `CCCI_LOCK_LEASE`, `CCCI_LOCK_RENEW`, `CCCI_LOCK_MARGIN`, `DOCKER_HOST`).
#[derive(Clone, Debug)]
pub struct LockSettings {
    pub backend: Backend,
    /// This runner host's id in swarm lock labels (default: the host name).
    pub host_id: String,
    pub lease: Lease,
    /// The engine (`DOCKER_HOST`; None: the default socket).
    pub docker_host: Option<String>,
}

impl LockSettings {
    /// The backend these settings choose.
    pub fn open(&self, state_dir: &std::path::Path) -> Box<dyn AppLocks> {
        match self.backend {
            Backend::Flock => Box::new(FlockLocks {
                state_dir: state_dir.to_path_buf(),
                kind: Kind::App,
            }),
            Backend::Swarm => Box::new(crate::lock::swarm::SwarmLocks::new(self)),
        }
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
}

/// The flock backend: [`crate::lock`] as it is. `kind` is [`Kind::App`]
/// for the app-domain locks; the run lock (always a flock) can use the
/// same interface with [`Kind::Run`].
pub struct FlockLocks {
    pub state_dir: std::path::PathBuf,
    pub kind: Kind,
}

struct FlockLock(lock::Held);

impl AppLock for FlockLock {
    fn lost(&self) -> Option<String> {
        // The kernel never takes a flock away from a live holder.
        None
    }
    fn may_mutate(&self) -> Result<()> {
        Ok(())
    }
    fn previous_owner(&self) -> Option<OwnerRecord> {
        self.0.previous_owner().cloned()
    }
    fn release(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
    fn remove(self: Box<Self>) -> Result<()> {
        self.0.remove()
    }
}

/// How long ago a lock file was last written (what a flock lock's age is
/// taken from when its owner record says nothing better).
pub fn file_age(path: &std::path::Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    std::time::SystemTime::now().duration_since(m).ok()
}

impl AppLocks for FlockLocks {
    fn backend(&self) -> Backend {
        Backend::Flock
    }

    fn try_acquire(&self, domain: &str, owner: &OwnerRecord, _: OnLost) -> Result<Attempt> {
        // The age from the open's own fstat: no second stat per probe.
        Ok(
            match lock::try_acquire_dated(&self.state_dir, self.kind, domain, owner)? {
                lock::Attempt::Acquired(h) => Attempt::Acquired(Box::new(FlockLock(h))),
                lock::Attempt::Busy((owner, mtime)) => Attempt::Busy(Busy {
                    owner,
                    age: mtime.and_then(|m| std::time::SystemTime::now().duration_since(m).ok()),
                }),
            },
        )
    }

    fn acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        wait: Wait<'_>,
        _: OnLost,
    ) -> Result<Acquired> {
        Ok(
            match lock::acquire(&self.state_dir, self.kind, domain, owner, wait)? {
                lock::Acquire::Acquired(h) => Acquired::Acquired(Box::new(FlockLock(h))),
                lock::Acquire::TimedOut => Acquired::TimedOut,
                lock::Acquire::Cancelled => Acquired::Cancelled,
            },
        )
    }
}
