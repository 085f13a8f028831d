//! The run record and the run's junit.xml as the phases go: the banner, each
//! phase's start, the record saved after each, the merged report at the end.

use std::path::Path;
use std::time::Instant;

use super::Run;
use crate::config;
use crate::phase::Phase;
use crate::rundir;
use crate::say;
use crate::testrun;

impl Run {
    /// The first line of the run's log: what ran, where, with which settings.
    pub(super) fn banner(&self, state_dir: &Path) {
        say!(
            "cc-ci-run {} on host {}: run {} of {} ({}), state directory {}, {} lock backend, deadline {}, teardown bound {}, convergence bound {}",
            env!("CARGO_PKG_VERSION"),
            self.record.host,
            self.cfg.run_id,
            self.cfg.recipe,
            self.record.git_ref,
            state_dir.display(),
            self.locks.backend().as_str(),
            crate::units::human(self.cfg.bounds.timeout),
            crate::units::human(self.cfg.bounds.teardown_timeout),
            match self.cfg.bounds.converge_timeout {
                Some(d) => format!(
                    "{} (given by --converge-timeout/CCCI_CONVERGE_TIMEOUT; it wins over the recipe's timeout label)",
                    crate::units::human(d)
                ),
                None => format!(
                    "the recipe's ccci.toml converge_timeout, else its timeout label coop-cloud.{}.timeout, else {} (the default)",
                    self.cfg.stack,
                    crate::units::human(config::DEFAULT_CONVERGE_TIMEOUT)
                ),
            },
        );
    }

    /// The run's merged junit.xml (SPEC section 6), on every path once the
    /// verdict is known; a failed write is said and never changes it.
    pub(super) fn write_junit(&mut self, code: i32, error: Option<&anyhow::Error>) {
        let dir = self.tests.report_dir.clone();
        let dir = dir.unwrap_or_else(|| self.dir.report());
        let error = error.map(|e| format!("{e:#}"));
        let log = self.dir.log();
        match testrun::junit::write_run(&dir, &self.record, code, error, &log) {
            Ok(path) => self.record.junit = Some(path.display().to_string()),
            Err(e) => say!("warning: could not write the run's junit.xml: {e:#}"),
        }
    }

    pub(super) fn set_phase(&mut self, phase: Phase) {
        let now = crate::log::timestamp(std::time::SystemTime::now());
        if let Some(last) = self.record.phases.last_mut() {
            if last.ended.is_none() {
                last.ended = Some(now.clone());
                last.duration_ms = Some(self.phase_started.elapsed().as_millis() as u64);
            }
        }
        self.phase_started = Instant::now();
        if phase != Phase::Finished {
            self.record.phases.push(rundir::PhaseSpan {
                name: phase,
                started: now.clone(),
                ended: None,
                duration_ms: None,
            });
        }
        self.record.phase = phase;
        self.record.updated = now;
        self.save_record();
        say!("phase: {phase}");
    }

    /// Writes the run record atomically; a failure (a full disk) is said
    /// once and never changes the verdict.
    pub(super) fn save_record(&mut self) {
        match self.record.save(&self.dir.record()) {
            Ok(()) => self.record_warned = false,
            Err(e) if !self.record_warned => {
                self.record_warned = true;
                crate::log::write_failed(
                    &format!(
                        "the run record {} (the verdict is kept)",
                        self.dir.record().display()
                    ),
                    &e,
                );
            }
            Err(_) => {}
        }
    }
}
