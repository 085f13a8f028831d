//! The lock protocol: acquire (create, read back), take-over by the
//! engine's clock, the held lock and its release.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use super::admin;
use super::client::{boot_now, judge_skew, EngineTime, Swarm};
use super::hold::{locked, HoldState};
use super::lease::{now_ms, object_name, timestamp_ms, LeaseInfo, LockObject};
use super::renew::Renewer;
use super::watch::{Watch, Woke};
use crate::exit::Failure;
use crate::lock::backend::{
    AppLock, AppLocks, Attempt, Backend, Busy, Lease, LockSettings, OnLost, Stress,
    SwarmLockReport, Unlock,
};
use crate::lock::{Kind, OwnerRecord};
use crate::say;
use crate::sys::latch::Latch;
use crate::sys::wait::{self, sleep_until, Backoff};

/// The swarm backend.
pub struct SwarmLocks {
    swarm: Swarm,
    host_id: String,
    lease: Lease,
    /// The settings it was opened with, and the state directory (whose
    /// run locks and run records `unlock` reads).
    settings: LockSettings,
    state_dir: PathBuf,
}

/// A lease we created and read back: its object, its labels, and the boot
/// time its create was sent (the lease runs from there).
struct Claim {
    id: String,
    info: LeaseInfo,
    sent: Duration,
}

impl SwarmLocks {
    pub fn new(settings: &LockSettings, state_dir: &Path) -> SwarmLocks {
        SwarmLocks {
            swarm: Swarm::new(settings.docker_host.as_deref()).bounded(settings.lease.call_bound()),
            host_id: settings.host_id.clone(),
            lease: settings.lease,
            settings: settings.clone(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    fn lease_for(&self, domain: &str, owner: &OwnerRecord) -> LeaseInfo {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        LeaseInfo {
            domain: domain.to_string(),
            host: self.host_id.clone(),
            run_id: owner.run_id.clone(),
            pid: owner.pid,
            started: crate::log::timestamp(SystemTime::now()),
            expires_ms: now_ms() + self.lease.lease.as_millis() as u64,
            lease_ms: self.lease.lease.as_millis() as u64,
            margin_ms: self.lease.margin.as_millis() as u64,
            token: format!("{}-{}-{nanos:x}", self.host_id, std::process::id()),
            renewals: 0,
        }
    }

    /// One step of acquiring: create; on a busy name, take a lease that
    /// the engine's clock says is dead over by its ID (then the caller
    /// tries again at once).
    fn attempt(&self, domain: &str, owner: &OwnerRecord, warned: &mut bool) -> Result<Step> {
        let name = object_name(domain);
        let info = self.lease_for(domain, owner);
        let data = serde_json::to_vec(owner).context("failed to encode the owner record")?;
        // The lease runs from the moment the create is sent: the engine
        // commits it later, so a holder never believes longer than the
        // object's UpdatedAt + lease.
        let sent = boot_now();
        let sent_ms = now_ms();
        match self.swarm.create(&name, &info, &data) {
            Ok(Some(id)) => return self.confirm(id, info, sent, sent_ms, warned),
            Ok(None) => {}
            Err(e) => {
                // A create whose answer was lost may still have happened:
                // the token says whether the object there is ours.
                if let Ok(Some(o)) = self.swarm.inspect(&name) {
                    if o.lease.as_ref().is_some_and(|l| l.token == info.token) {
                        say!(
                            "the create of the lock object {} of {domain} gave no answer ({e:#}), but the object there is ours: checking its lease from the create's send time",
                            o.id
                        );
                        return self.confirm(o.id, info, sent, sent_ms, warned);
                    }
                }
                return Err(e);
            }
        }
        // The engine's time first, the object second: a renewal that lands
        // after this time shows in the inspect, so a lease judged dead was
        // not renewed by an answer its holder heard in time.
        let now = self.swarm.engine_now()?;
        self.warn_skew(&now, warned);
        let Some(obj) = self.swarm.inspect(&name)? else {
            // Released (or taken over) between our create and our look.
            return Ok(Step::Again);
        };
        let Some(lease) = obj.lease.clone() else {
            return Ok(Step::Busy(Busy::default(), Box::new(obj), None));
        };
        let due = obj.takeover_in(now.engine_ms, &self.lease);
        if lease.domain == domain && due == Some(Duration::ZERO) {
            if self.swarm.remove_id(&obj.id)? {
                say!(
                    "the app lock of {domain} had a dead lease ({}, last written {} by the engine's clock, {} before the engine's now): removed lock object {} to take it over",
                    lease.owner().describe(),
                    obj.updated_ms.map_or("?".into(), timestamp_ms),
                    crate::units::human(Duration::from_millis(
                        now.engine_ms.saturating_sub(obj.updated_ms.unwrap_or(now.engine_ms))
                    )),
                    obj.id
                );
            }
            return Ok(Step::Again);
        }
        let age = started_age(&lease.started);
        Ok(Step::Busy(
            Busy {
                owner: Some(lease.owner()),
                age,
            },
            Box::new(obj),
            due,
        ))
    }

    /// Warns (once per acquire) about a host clock off the engine's by
    /// more than half the margin. The lock itself does not rest on the
    /// host's clock (expiry is the engine's, a holder's lease its boot
    /// clock's), so it warns; a run refuses past the margin
    /// ([`AppLocks::preflight`]).
    fn warn_skew(&self, now: &EngineTime, warned: &mut bool) {
        if *warned {
            return;
        }
        if let Some((_, text)) = judge_skew(now.skew_ms(), self.lease.margin) {
            say!("warning: {text}");
            *warned = true;
        }
    }

    /// The create answered: read the object back by its ID and count it
    /// held only if it is still ours with more than the safety allowance of
    /// its lease left by our boot clock. A create whose answer came too
    /// late (a slow engine, or this process stopped right after it) is
    /// removed by its ID, never used.
    fn confirm(
        &self,
        id: String,
        info: LeaseInfo,
        sent: Duration,
        sent_ms: u64,
        warned: &mut bool,
    ) -> Result<Step> {
        let obj = self.swarm.inspect(&id)?;
        let answered_ms = now_ms();
        let Some(obj) = obj.filter(|o| o.lease.as_ref().is_some_and(|l| l.token == info.token))
        else {
            say!(
                "the lock object {id} of {} we created is gone already (taken over while our create's answer was on its way): trying again",
                info.domain
            );
            return Ok(Step::Again);
        };
        let end = sent + self.lease.lease;
        let left = end.saturating_sub(boot_now());
        if left <= self.lease.safety() {
            say!(
                "the create of the lock object {id} of {} answered with only {} of its lease left (the safety allowance is {}): removing it and trying again",
                info.domain,
                crate::units::human(left),
                crate::units::human(self.lease.safety())
            );
            self.swarm.remove_id(&id)?;
            return Ok(Step::Again);
        }
        if let Some(updated) = obj.updated_ms {
            // The create's UpdatedAt is the engine's clock between our
            // send and the read-back's answer: the skew, for free.
            let now = EngineTime {
                engine_ms: updated,
                sent_ms,
                answered_ms,
            };
            self.warn_skew(&now, warned);
        }
        Ok(Step::Created(Claim { id, info, sent }))
    }

    fn hold(&self, claim: Claim, on_lost: OnLost) -> SwarmLock {
        let state = Arc::new(Mutex::new(HoldState {
            lost: None,
            end: claim.sent + self.lease.lease,
        }));
        let renewer = Renewer::start(
            self.swarm.docker.clone(),
            claim.id.clone(),
            claim.info.clone(),
            claim.sent,
            self.lease,
            Arc::clone(&state),
            on_lost,
        );
        SwarmLock {
            swarm: self.swarm.clone(),
            id: claim.id,
            domain: claim.info.domain.clone(),
            token: claim.info.token.clone(),
            lease: self.lease,
            state,
            renewer,
            done: false,
        }
    }
}

fn started_age(started: &str) -> Option<Duration> {
    let t = crate::log::parse_timestamp(started)?;
    SystemTime::now().duration_since(t).ok()
}

enum Step {
    Created(Claim),
    Again,
    /// Busy; with how long until the engine's clock lets us take it over.
    Busy(Busy, Box<LockObject>, Option<Duration>),
}

/// How many engine calls in a row may fail while waiting before the
/// waiter gives up (exit 3), and for how long at least: a swarm whose
/// leader died or was cut off answers nothing about configs (the calls
/// hang past their bound, or say the swarm has no leader) until the
/// others elect a new one, after one raft election timeout (swarmkit: 10
/// ticks of 1 s, randomised up to twice that). A waiter holds nothing, so
/// it waits through three of them.
const WAIT_FAILURES: u32 = 4;
const WAIT_FAILURE_SPAN: Duration = Duration::from_secs(60);
/// How long a waiter without an event watch sleeps between attempts: from
/// 50 ms doubling to this.
const POLL_MAX: Duration = Duration::from_millis(250);
/// How long a waiter with an event watch sleeps at most between attempts:
/// the backstop for an event the engine did not deliver.
const WATCH_BACKSTOP: Duration = Duration::from_secs(2);

impl AppLocks for SwarmLocks {
    fn backend(&self) -> Backend {
        Backend::Swarm
    }

    fn list(&self, max_age: Duration) -> Result<Option<Vec<SwarmLockReport>>> {
        admin::list(&self.settings, max_age).map(Some)
    }

    fn unlock(&self, request: &Unlock<'_>) -> Result<i32> {
        admin::unlock(&self.state_dir, &self.settings, request)
    }

    fn tidy(&self, orphaned: &dyn Fn(&str) -> bool, dry_run: bool) -> Result<usize> {
        admin::tidy(&self.settings, orphaned, dry_run)
    }

    fn stress(&self, request: &Stress<'_>) -> Result<String> {
        admin::stress(self, &self.settings, request)
    }

    fn preflight(&self) -> Result<()> {
        let now = self.swarm.engine_now()?;
        match judge_skew(now.skew_ms(), self.lease.margin) {
            None => Ok(()),
            Some((true, text)) => Err(Failure::infra(format!(
                "refusing to run with the swarm lock backend: {text}"
            ))),
            Some((false, text)) => {
                say!("warning: {text}");
                Ok(())
            }
        }
    }

    fn try_acquire(&self, domain: &str, owner: &OwnerRecord, on_lost: OnLost) -> Result<Attempt> {
        crate::config::names::validate_name(Kind::App, domain)?;
        let mut warned = false;
        // A take-over ends in `Again`; a few rounds settle any race.
        for _ in 0..5 {
            match self.attempt(domain, owner, &mut warned)? {
                Step::Created(claim) => {
                    return Ok(Attempt::Acquired(Box::new(self.hold(claim, on_lost))))
                }
                Step::Again => continue,
                Step::Busy(b, _, _) => return Ok(Attempt::Busy(b)),
            }
        }
        Ok(Attempt::Busy(Busy::default()))
    }

    fn acquire(
        &self,
        domain: &str,
        owner: &OwnerRecord,
        wait: crate::lock::Wait<'_>,
        on_lost: OnLost,
    ) -> Result<crate::lock::backend::Acquired> {
        let crate::lock::Wait {
            deadline,
            cancel,
            progress_every,
            progress,
        } = wait;
        use crate::lock::backend::Acquired;
        crate::config::names::validate_name(Kind::App, domain)?;
        let started = Instant::now();
        let mut reported: Option<(String, Instant)> = None;
        let mut pause = Backoff::new(Duration::from_millis(50), POLL_MAX);
        let mut watch: Option<Watch> = None;
        let mut watch_failed = false;
        let mut warned = false;
        let mut failures = 0u32;
        let mut failing_since: Option<Instant> = None;
        loop {
            if cancel.is_some_and(Latch::is_set) {
                return Ok(Acquired::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Acquired::TimedOut);
            }
            let attempted = SystemTime::now();
            let step = match self.attempt(domain, owner, &mut warned) {
                Ok(step) => {
                    failures = 0;
                    failing_since = None;
                    step
                }
                // A waiter outlives failed calls (an engine slow past the
                // call bound under load, a swarm electing a new leader):
                // none of them changed what it holds, which is nothing.
                // It gives up after WAIT_FAILURES in a row spanning
                // WAIT_FAILURE_SPAN.
                Err(e)
                    if failures + 1 < WAIT_FAILURES
                        || failing_since.is_some_and(|t| t.elapsed() < WAIT_FAILURE_SPAN) =>
                {
                    failures += 1;
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    say!(
                        "warning: {e:#}; trying again (failing for {}, giving up after {} of failures)",
                        crate::units::human(since.elapsed()),
                        crate::units::human(WAIT_FAILURE_SPAN)
                    );
                    let until = Instant::now() + self.lease.call_bound().min(POLL_MAX * 4);
                    if sleep_until(until, cancel) {
                        return Ok(Acquired::Cancelled);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (busy, obj, due) = match step {
                Step::Created(claim) => {
                    return Ok(Acquired::Acquired(Box::new(self.hold(claim, on_lost))))
                }
                Step::Again => continue,
                Step::Busy(b, o, due) => (b, o, due),
            };
            // Report when first found busy, when the holder changes, and
            // every `progress_every`.
            let due_report = match &reported {
                None => true,
                Some((id, _)) if *id != obj.id => true,
                Some((_, at)) => !progress_every.is_zero() && at.elapsed() >= progress_every,
            };
            if due_report {
                progress(busy.owner.as_ref(), started.elapsed());
                reported = Some((obj.id.clone(), Instant::now()));
            }
            if watch.is_none() && !watch_failed {
                watch = Watch::start(&self.swarm.docker, &obj.name, attempted);
                watch_failed = watch.is_none();
            }
            if let Some(w) = watch.as_mut() {
                // A dead holder sends no event: wake when the engine's
                // clock lets its lease be taken over, and at the backstop
                // whatever happens.
                let mut wait = WATCH_BACKSTOP;
                if let Some(d) = due {
                    wait = wait.min(d + Duration::from_millis(20));
                }
                let mut until = Instant::now() + wait;
                if let Some(d) = deadline {
                    until = until.min(d);
                }
                match w.wait(cancel, until) {
                    Woke::Again => {}
                    Woke::Cancelled => return Ok(Acquired::Cancelled),
                    Woke::Closed => {
                        watch = None;
                        watch_failed = true;
                    }
                }
                continue;
            }
            if sleep_until(wait::until(pause.delay(), deadline), cancel) {
                return Ok(Acquired::Cancelled);
            }
            pause.double();
        }
    }
}

/// A held swarm lock. Dropping it stops the renewals and removes the
/// object by ID (best effort: an object we cannot remove expires).
pub struct SwarmLock {
    swarm: Swarm,
    id: String,
    domain: String,
    token: String,
    lease: Lease,
    state: Arc<Mutex<HoldState>>,
    renewer: Option<Renewer>,
    done: bool,
}

impl SwarmLock {
    fn finish(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(r) = self.renewer.take() {
            r.stop();
        }
        let lost = locked(&self.state).lost.clone();
        if lost.as_ref().is_some_and(|l| l.foreign) {
            say!(
                "not removing the lock object {} of {}: someone else wrote it",
                self.id,
                self.domain
            );
            return Ok(());
        }
        match self.swarm.remove_id(&self.id) {
            Ok(true) => Ok(()),
            Ok(false) if lost.is_some() => Ok(()),
            Ok(false) => {
                say!(
                    "the lock object {} of {} was already gone at release",
                    self.id,
                    self.domain
                );
                Ok(())
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "failed to release the swarm lock of {} (object {}); it expires with its lease",
                    self.domain, self.id
                )
            }),
        }
    }
}

impl AppLock for SwarmLock {
    fn lost(&self) -> Option<String> {
        locked(&self.state).lost.as_ref().map(|l| l.why.clone())
    }
    fn may_mutate(&self) -> Result<()> {
        let (lost, end) = {
            let s = locked(&self.state);
            (s.lost.clone(), s.end)
        };
        if let Some(l) = lost {
            return Err(Failure::infra(format!(
                "the app lock of {} was lost ({}): not touching the app",
                self.domain, l.why
            )));
        }
        let left = end.saturating_sub(boot_now());
        if left <= self.lease.safety() {
            return Err(Failure::infra(format!(
                "the lease of the app lock of {} has {} left, under the safety allowance of {} (its renewals are failing): not touching the app",
                self.domain,
                crate::units::human(left),
                crate::units::human(self.lease.safety())
            )));
        }
        Ok(())
    }
    fn confirm_held(&self) -> Result<()> {
        self.may_mutate()?;
        let theirs = self.swarm.inspect(&self.id)?;
        if theirs
            .as_ref()
            .and_then(|o| o.lease.as_ref())
            .is_some_and(|l| l.token == self.token)
        {
            return Ok(());
        }
        Err(Failure::infra(format!(
            "the lock object {} of {} is no longer ours ({}) though its lease was not known lost",
            self.id,
            self.domain,
            if theirs.is_some() {
                "its labels changed"
            } else {
                "it is gone"
            }
        )))
    }
    fn previous_owner(&self) -> Option<OwnerRecord> {
        None
    }
    fn release(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
    fn remove(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl Drop for SwarmLock {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            say!("warning: {e:#}");
        }
    }
}
