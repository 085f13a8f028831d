//! A tier's tests (SPEC section 3 step 8): the test runner against the
//! deployed app, the watch on the stack, the artifacts kept.

use std::path::Path;

use anyhow::Result;

use super::{Run, Verdict};
use crate::exit::{self, Failure};
use crate::ext::docker::watch;
use crate::ext::Interrupted;
use crate::phase::Phase;
use crate::rundir;
use crate::say;
use crate::testrun;
use crate::testrun::meta::Tier;
use crate::testrun::report::Outcome;

impl Run {
    /// Runs the tier's tests; Some(verdict) ends the run early.
    pub(super) fn test_tier(&mut self, tier: Tier) -> Result<Option<Verdict>> {
        self.check_shutdown()?;
        self.set_phase(Phase::Test(tier));
        self.record.tiers.push(tier);
        let mut paths = Vec::new();
        let staged = self.dir.work().join("recipe-tests");
        if staged.is_dir() {
            paths.push(staged.clone());
        }
        let ci = self.cfg.ci_tests_dir.join(&self.cfg.recipe);
        if ci.is_dir() {
            paths.push(ci.clone());
        }
        // Reports name tests as their authors know them, not by the staged
        // copy that is deleted with the run tree.
        let shown_as = vec![
            (staged, "tests".to_string()),
            (ci, format!("tests/{}", self.cfg.recipe)),
        ];
        let label = format!("cc-ci.run={}", self.cfg.run_id);
        let reports = self
            .tests
            .report_dir
            .clone()
            .unwrap_or_else(|| self.dir.report());
        // Kept with the reports (they outlive the run tree); one directory
        // per tier, beside the tiers' report directories.
        let artifacts = reports.join("artifacts").join(tier.as_str());
        rundir::mkdirs(&artifacts)?;
        let env = vec![
            ("CCCI_APP_URL".to_string(), self.cfg.app_url.clone()),
            (
                "CCCI_BASE_VERSION".to_string(),
                self.record.base_version.clone().unwrap_or_default(),
            ),
            (
                "CCCI_TESTED_SHA".to_string(),
                self.sha.clone().unwrap_or_default(),
            ),
            (
                "CCCI_ARTIFACTS".to_string(),
                artifacts.display().to_string(),
            ),
            ("CCCI_APP_DOMAIN".to_string(), self.cfg.domain.clone()),
            ("CCCI_STACK".to_string(), self.cfg.stack.clone()),
            ("CCCI_TIER".to_string(), tier.to_string()),
            ("CCCI_RECIPE".to_string(), self.cfg.recipe.clone()),
            ("CCCI_SERVER".to_string(), self.cfg.server.clone()),
            ("CCCI_RUN_ID".to_string(), self.cfg.run_id.clone()),
            ("CCCI_CONTAINER_LABEL".to_string(), label.clone()),
            // The docker CLI the host gives its tests (cc-ci-run itself
            // talks to the engine's API).
            (
                "CCCI_DOCKER".to_string(),
                self.tools.docker.to_string_lossy().into_owned(),
            ),
            (
                "ABRA_DIR".to_string(),
                self.dir.abra_dir().display().to_string(),
            ),
        ];
        let tier_reports = self
            .tests
            .report_dir
            .clone()
            .unwrap_or_else(|| self.dir.report())
            .join(tier.as_str());
        let builtin = self.floor(tier, &tier_reports)?.into_iter().collect();
        let suite = testrun::Suite {
            paths,
            shown_as,
            recipe: Some(self.cfg.recipe.clone()),
            tier: Some(tier.to_string()),
            run_id: self.cfg.run_id.clone(),
            git_ref: self.sha.clone().unwrap_or_default(),
            report_dir: tier_reports,
            env,
            grace: self.cfg.bounds.grace,
            options: self.tests.clone(),
            host: self.host.clone(),
            // On a cancel the teardown starts without waiting for docker:
            // it removes the containers beside the app (teardown_phase).
            leave_containers_on_signal: true,
            builtin,
        };
        let outcome = testrun::run_suite(&suite, Some(self.funnel.latch()));
        self.keep_artifacts(&artifacts);
        let outcome = outcome?;
        if outcome.containers_left {
            self.containers_left = Some(label);
        }
        // The floor is a test like the others: a recipe with no tests of
        // its own whose app serves is green by the floor alone.
        let floor_result = suite.builtin.first().map(|t| t.result);
        self.tests_selected += outcome.selected + suite.builtin.len();
        // What the watch saw from the tier's convergence to now (a suite
        // stopped by a signal goes straight to the teardown: no look).
        let (exits, services) = if outcome.exit_code < 128 {
            self.watched(tier.as_str())
        } else {
            (Vec::new(), Vec::new())
        };
        let watched = watch::restarts(&services, &exits)
            .into_iter()
            .map(|(service, restarts)| rundir::Watched {
                exits: exits
                    .iter()
                    .filter(|x| x.service == service)
                    .map(watch::Exit::describe)
                    .collect(),
                service,
                restarts,
            })
            .collect();
        self.record.tests.push(rundir::TierTests {
            tier: tier.to_string(),
            passed: outcome.passed,
            failed: outcome.failed,
            skipped: outcome.skipped,
            flaky: outcome.flaky,
            cases_passed: outcome.cases_passed,
            cases_failed: outcome.cases_failed,
            cases_skipped: outcome.cases_skipped,
            report_dir: suite.report_dir.display().to_string(),
            floor: floor_result
                .map(rundir::Floor::Ran)
                .or_else(|| self.floor_off().map(rundir::Floor::Off)),
            floor_reason: suite
                .builtin
                .first()
                .filter(|t| t.result.is_failure())
                .and_then(|t| t.reason.as_deref())
                .map(|r| r.strip_prefix("floor: ").unwrap_or(r).to_string()),
            own: outcome.selected,
            watch: watched,
        });
        // A suite stopped by a signal is followed at once by the teardown
        // phase, whose record write carries these counts: writing (and
        // fsyncing) the record here too would only delay the teardown.
        if outcome.exit_code < 128 {
            self.save_record();
        }
        if outcome.selected == 0 && outcome.exit_code == 0 && floor_result.is_some() {
            say!(
                "{tier} tier: floor only: no test of the recipe's own selected (filters: {}; {} test file(s) found)",
                testrun::describe_filters(Some(tier.as_str()), &self.tests),
                outcome.discovered
            );
        } else if outcome.selected == 0 && outcome.exit_code == 0 {
            say!(
                "warning: {tier} tier: no test selected (filters: {}; {} test file(s) found)",
                testrun::describe_filters(Some(tier.as_str()), &self.tests),
                outcome.discovered
            );
        }
        let watch_red = watch::reason(&exits).map(|why| {
            format!("{tier} tier: the version under test exited while watched (from its convergence to the end of its tests): {why}")
        });
        if tier == Tier::Restore {
            self.watch = None;
        }
        match outcome.exit_code {
            0 => match watch_red {
                // Red even though its tests passed (SPEC section 3 step 8).
                Some(why) => Err(Failure::with_code(exit::TESTS_FAILED, why)),
                None => Ok(None),
            },
            exit::SELF_PROTECT => Ok(Some(Verdict::SelfProtect)),
            c if c >= 128 => Err(anyhow::Error::new(Interrupted).context("tests were stopped")),
            _ => {
                if let Some(why) = &watch_red {
                    say!("{why}");
                }
                if floor_result == Some(Outcome::Failed) {
                    say!("{tier} tier: the floor failed: the app does not answer; the tier's own tests were not started");
                } else {
                    say!("{tier} tier: {} test(s) failed", outcome.failed);
                }
                Ok(Some(Verdict::TestsFailed))
            }
        }
    }

    /// The exits the watch saw since its last look, and the services it
    /// watches (nothing without a watch). `what` names the tier for a
    /// warning.
    pub(super) fn watched(&self, what: &str) -> (Vec<watch::Exit>, Vec<String>) {
        let Some(w) = self.watch.as_ref() else {
            return (Vec::new(), Vec::new());
        };
        let (mut exits, gap) = w.take();
        if gap {
            // The stream did not cover the whole tier: the engine's own
            // record of its tasks does.
            match self.docker.task_exits(
                &self.cfg.stack,
                w.since(),
                w.judged(),
                &self.bound().for_query(),
            ) {
                Ok(found) => exits = w.merge(exits, found),
                Err(e) => say!(
                    "warning: {what} tier: the watch could not ask the engine for its tasks: {e:#}"
                ),
            }
        }
        (exits, w.services().to_vec())
    }

    /// Lists the files the tier's tests left in `dir` (their
    /// `CCCI_ARTIFACTS`) in the record; an empty directory is removed.
    pub(super) fn keep_artifacts(&mut self, dir: &Path) {
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            match entry {
                Ok(e) if e.file_type().is_file() => found.push(e.path().display().to_string()),
                Ok(_) => {}
                Err(e) => say!(
                    "warning: could not list the artifacts in {}: {e}",
                    dir.display()
                ),
            }
        }
        if found.is_empty() {
            // Only an empty directory goes (remove_dir refuses anything else).
            let _ = std::fs::remove_dir(dir);
            return;
        }
        say!("{} artifact(s) kept in {}", found.len(), dir.display());
        self.record.artifacts.extend(found);
    }

    /// No tests, no green (SPEC section 6): a run in which no tier selected
    /// a test is red unless `--no-tests warn|pass` says otherwise.
    pub(super) fn no_tests_verdict(&self) -> Option<Verdict> {
        let (code, warn) = testrun::no_tests_outcome(self.tests.no_tests, self.tests_selected)?;
        let why = format!(
            "no test ran in any tier: the filters ({}) left nothing",
            testrun::describe_filters(None, &self.tests)
        );
        if code != exit::OK {
            say!("{why}: the run fails (--no-tests fail; --no-tests warn or pass accepts a run without tests)");
            return Some(Verdict::TestsFailed);
        }
        if warn {
            say!("warning: {why} (--no-tests warn: the run stays green)");
        }
        None
    }
}
