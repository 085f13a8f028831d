//! The backup and restore tiers (SPEC section 3): run when the recipe
//! supports them, each step bounded.

use std::time::Duration;

use anyhow::Result;

use super::{infra, recipe, Run};
use crate::config;
use crate::exit::{self, Failure};
use crate::ext::docker::watch;
use crate::phase::Phase;
use crate::testrun::meta::Tier;

impl Run {
    /// Whether the backup/restore tier runs, decided from what is
    /// deployed (SPEC section 3 step 8): the labels the engine holds on the
    /// stack's services once the last deploy converged, which are the
    /// recipe's `deploy.labels` as docker interpolated them.
    pub(super) fn backup_tier(&self) -> Result<recipe::BackupTier> {
        let services = self
            .docker
            .stack_labels(&self.cfg.stack, &self.bound())
            .map_err(infra("failed to read the deployed services' labels"))?;
        Ok(recipe::backup_tier(&services))
    }

    /// `abra app backup create`; the backup tier's tests follow it.
    pub(super) fn backup(&mut self) -> Result<()> {
        self.check_shutdown()?;
        self.set_phase(Phase::Backup);
        let b = self.bound();
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.abra
            .backup(&self.cfg.domain, &b)
            .map_err(|e| self.backup_step_failed(e))
    }

    /// `abra app restore` and the convergence wait after it; the restore
    /// tier's tests follow it.
    pub(super) fn restore(&mut self) -> Result<()> {
        self.check_shutdown()?;
        self.set_phase(Phase::Restore);
        let b = self.bound();
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.abra
            .restore(&self.cfg.domain, &b)
            .map_err(|e| self.backup_step_failed(e))?;
        let bound = self
            .record
            .converge_bound
            .as_ref()
            .map_or(config::DEFAULT_CONVERGE_TIMEOUT, |c| {
                Duration::from_secs(c.seconds)
            });
        self.converge(Tier::Restore, None, None, bound)
    }

    /// A failed backup or restore step: the version under test's failure
    /// (exit 1) when the watch, which spans these steps, saw it exit (a
    /// step that copies from or to the app's container fails once the
    /// container is gone: the exit is the cause, and is named first);
    /// else the infrastructure's (exit 3).
    pub(super) fn backup_step_failed(&self, e: anyhow::Error) -> anyhow::Error {
        if self.funnel.requested().is_some() {
            // Cancelled: the teardown goes first, without a look.
            return infra("backup/restore tier failed")(e);
        }
        let (exits, _) = self.watched("backup/restore");
        match watch::reason(&exits) {
            Some(why) => e.context(Failure::of(
                exit::TESTS_FAILED,
                format!("backup/restore tier failed: the version under test exited while watched (from the last tier's convergence to this step): {why}; the step"),
            )),
            None => infra("backup/restore tier failed")(e),
        }
    }
}
