//! Teardown and the janitor pass (SPEC section 3 step 9): the app undeployed
//! and removed on every path, within its own bound; then the lock released
//! and dead runs' apps reaped.

use std::time::Instant;

use super::Run;
use crate::config::Env;
use crate::ext::Bound;
use crate::lock::backend::AppLock;
use crate::phase::Phase;
use crate::say;
use crate::teardown;
use crate::testrun::containers::Removal;

impl Run {
    pub(super) fn teardown_bound(&self) -> Bound<'static> {
        Bound::until(
            Instant::now() + self.cfg.bounds.teardown_timeout,
            self.cfg.bounds.grace,
        )
    }

    /// Teardown if this run holds the app lock; true when it is clean (or
    /// there was nothing of ours to tear down). The containers a stopped
    /// suite left (SPEC section 6) are removed on a thread of their own
    /// once the app's undeploy has been issued, beside the wait for the
    /// engine (or, when the teardown ends before that, right after it),
    /// and waited for before the app lock is released.
    pub(super) fn teardown_phase(&mut self) -> bool {
        let docker = self.host.docker.clone();
        let grace = self.cfg.bounds.grace;
        let mut label = self.containers_left.take();
        // The removal's docker calls end with the teardown's bound.
        let until = Instant::now() + self.cfg.bounds.teardown_timeout;
        let Some(held) = self.app_lock.take() else {
            // No app lock, no test ran: nothing can be left; if it were,
            // it is removed all the same.
            if let Some(l) = label {
                Removal::start(docker, l, grace, until).finish();
            }
            return true;
        };
        self.set_phase(Phase::Teardown);
        let mut removal: Option<Removal> = None;
        let (ok, held) = self.tear_down_app(held, || {
            removal = label
                .take()
                .map(|l| Removal::start(docker.clone(), l, grace, until));
        });
        if let Some(l) = label {
            removal = Some(Removal::start(docker, l, grace, until));
        }
        if let Some(r) = removal {
            r.finish();
        }
        if let Some(held) = held {
            if let Err(e) = self.release_app_lock(held) {
                say!("warning: {e:#}");
            }
        }
        ok
    }

    /// The app's teardown under `held` (`beside` as in
    /// [`teardown::teardown_beside`]): true when clean, and the lock the
    /// caller is to release (None when a lost lock could not be claimed
    /// again).
    pub(super) fn tear_down_app(
        &mut self,
        mut held: Box<dyn AppLock>,
        beside: impl FnOnce(),
    ) -> (bool, Option<Box<dyn AppLock>>) {
        if let Some(env_file) = self.foreign_app() {
            say!(
                "teardown: the app at {} was not created by cc-ci-run ({} has no marker): left alone",
                self.cfg.domain,
                env_file.display()
            );
            return (true, Some(held));
        }
        if let Some(why) = held.lost() {
            // Releasing the lost lock removes nothing (its object is gone or
            // another's): it only stops its renewals.
            if let Err(e) = self.release_app_lock(held) {
                say!("warning: {e:#}");
            }
            match self.reclaim(&why) {
                Some(h) => held = h,
                None => return (false, None),
            }
        }
        if let Err(e) = held.may_mutate() {
            say!("{e:#}: the app is left to the next holder's pre-clean (or the janitor)");
            return (false, Some(held));
        }
        let b = self.teardown_bound();
        let ok = match teardown::teardown_beside(
            &self.abra,
            &self.docker,
            self.app(),
            &b,
            &*held,
            beside,
        ) {
            Ok(()) => true,
            Err(e) => {
                say!("teardown failed: {e:#}");
                say!(
                    "the app {} is left for the janitor (its lock is released now)",
                    self.cfg.domain
                );
                false
            }
        };
        if let Some(why) = held.lost() {
            say!(
                "the app lock of {} was lost during teardown: {why}",
                self.cfg.domain
            );
        }
        (ok, Some(held))
    }

    /// SPEC section 3 step 11: one janitor sweep; never changes the exit code.
    pub(super) fn janitor_pass(&self, env: &Env) {
        if self.funnel.requested().is_some() {
            return;
        }
        if let Err(e) = crate::janitor::sweep_after_run(
            &self.dir.state_dir,
            &self.cfg.server,
            self.cfg.bounds.teardown_timeout,
            env,
        ) {
            say!("janitor pass failed (exit code unchanged): {e:#}");
        }
    }
}
