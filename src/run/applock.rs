//! The run lock and the app-domain lock (SPEC section 3 step 4): taken before
//! the first mutating step, renewed or reclaimed while held, released after
//! the teardown.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{infra, Run};
use crate::exit;
use crate::ext::Interrupted;
use crate::lifetime::Funnel;
use crate::lock::backend::{self, AppLock, Attempt};
use crate::lock::flock::TryLock;
use crate::lock::{self, Kind, OwnerRecord, Role};
use crate::rundir;
use crate::say;

/// How often a run waiting for an app lock says who holds it.
pub(super) const LOCK_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The run lock, or None (after saying who holds it) when another run with
/// this id is active. A janitor tidying run directories holds a run lock for
/// a moment; that is not a duplicate run, so its hold is waited out briefly.
pub(super) fn take_run_lock(
    state_dir: &Path,
    run_id: &str,
    owner: &OwnerRecord,
    funnel: &Funnel,
) -> Result<Option<lock::flock::Held>> {
    match lock::flock::try_acquire(state_dir, Kind::Run, run_id, owner)? {
        TryLock::Acquired(h) => Ok(Some(h)),
        TryLock::Busy(Some(holder)) if holder.role == Role::Janitor => {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut quiet = |_: Option<&OwnerRecord>, _: Duration| {};
            let wait = lock::Wait {
                deadline: Some(deadline),
                cancel: Some(funnel.latch()),
                progress_every: Duration::ZERO,
                progress: &mut quiet,
            };
            match lock::flock::acquire(state_dir, Kind::Run, run_id, owner, wait)? {
                lock::flock::Acquire::Acquired(h) => Ok(Some(h)),
                _ => {
                    say!("the run lock of {run_id} is held by a janitor that did not let go: not starting");
                    Ok(None)
                }
            }
        }
        TryLock::Busy(holder) => {
            let path = lock::flock::lock_path(state_dir, Kind::Run, run_id);
            let who = crate::lock::flock::holder::describe_holder(&path, holder.as_ref());
            say!("another run with id {run_id} is active ({who}): not starting a duplicate");
            Ok(None)
        }
    }
}

impl Run {
    pub(super) fn lock_app(&mut self) -> Result<()> {
        self.locks.preflight()?;
        let owner = OwnerRecord::for_self(&self.cfg.run_id, Kind::App);
        let domain = self.cfg.domain.clone();
        let mut progress = |holder: Option<&OwnerRecord>, waited: Duration| match holder {
            Some(h) => say!(
                "waiting {} for app {domain}: held by run {} (pid {} on {}) since {}",
                crate::units::human(waited),
                h.run_id,
                h.pid,
                h.host,
                h.started
            ),
            None => say!(
                "waiting {} for app {domain}: held by a process without an owner record",
                crate::units::human(waited)
            ),
        };
        let requested = std::time::SystemTime::now();
        self.record.lock = Some(rundir::LockTimes {
            domain: self.cfg.domain.clone(),
            backend: self.locks.backend().as_str().to_string(),
            requested: crate::log::timestamp(requested),
            ..rundir::LockTimes::default()
        });
        self.save_record();
        let acquired = self
            .locks
            .acquire(
                &self.cfg.domain,
                &owner,
                lock::Wait {
                    deadline: None,
                    cancel: Some(self.funnel.latch()),
                    progress_every: LOCK_PROGRESS_EVERY,
                    progress: &mut progress,
                },
                self.on_lost(),
            )
            .map_err(infra("failed to take the app lock"));
        let now = std::time::SystemTime::now();
        if let Some(l) = self.record.lock.as_mut() {
            l.wait_ms = Some(
                now.duration_since(requested)
                    .unwrap_or_default()
                    .as_millis() as u64,
            );
            if matches!(acquired, Ok(backend::Acquired::Acquired(_))) {
                l.acquired = Some(crate::log::timestamp(now));
            }
        }
        self.save_record();
        match acquired? {
            backend::Acquired::Acquired(h) => {
                say!(
                    "holding the app lock for {} ({} backend)",
                    self.cfg.domain,
                    self.locks.backend().as_str()
                );
                self.app_lock = Some(h);
                Ok(())
            }
            backend::Acquired::Cancelled | backend::Acquired::TimedOut => {
                Err(anyhow::Error::new(Interrupted).context("waiting for the app lock was stopped"))
            }
        }
    }

    /// What a lost lease does: stop the run's work and tear down, exit 3.
    pub(super) fn on_lost(&self) -> backend::OnLost {
        let funnel = self.funnel;
        let domain = self.cfg.domain.clone();
        Box::new(move |why: &str| {
            funnel.request(
                exit::INFRA,
                &format!("lost the app lock of {domain}: {why}"),
            );
        })
    }

    /// A lock lost behind our back is claimed again before teardown touches
    /// the app: if another holder has it now, the app is its business (its
    /// pre-clean tears down what we left) and tearing down here could
    /// destroy its fresh deploy.
    pub(super) fn reclaim(&mut self, why: &str) -> Option<Box<dyn AppLock>> {
        say!(
            "the app lock of {} was lost ({why}): claiming it again before teardown",
            self.cfg.domain
        );
        let owner = OwnerRecord::for_self(&self.cfg.run_id, Kind::App);
        let quiet: backend::OnLost = Box::new(|why: &str| {
            say!("the re-claimed app lock was lost too: {why}");
        });
        match self.locks.try_acquire(&self.cfg.domain, &owner, quiet) {
            Ok(Attempt::Acquired(h)) => {
                say!(
                    "re-claimed the app lock of {}: tearing down under it",
                    self.cfg.domain
                );
                Some(h)
            }
            Ok(Attempt::Busy(b)) => {
                say!(
                    "the app lock of {} is held by {} now: not tearing down its app; its pre-clean (or the janitor) removes what this run left",
                    self.cfg.domain,
                    lock::describe_owner(b.owner.as_ref())
                );
                None
            }
            Err(e) => {
                say!("could not claim the app lock again ({e:#}): not tearing down without it; the janitor reaps the app");
                None
            }
        }
    }

    /// Releases the app lock, stamping the record's release time first: a
    /// waiting run may acquire the instant it is released, and the record
    /// must never show two holders at once (`history`, the timeline).
    pub(super) fn release_app_lock(&mut self, held: Box<dyn AppLock>) -> Result<()> {
        if let Some(l) = self.record.lock.as_mut().filter(|l| l.acquired.is_some()) {
            l.released = Some(crate::log::timestamp(std::time::SystemTime::now()));
        }
        held.release()
    }
}
