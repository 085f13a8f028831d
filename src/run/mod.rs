//! The `run` lifecycle of SPEC section 3, phase by phase, teardown always.
//!
//! `cmd::run` is what Drone's `sh` starts: it validates every input (exit 2
//! with nothing touched), then re-executes itself as the harness in a new
//! session and waits (see `lifetime`). The harness installs the lifetime
//! guards as its very first act, then [`start`] takes the run lock and
//! drives the phases. Each phase group is a file of its own (`stage`,
//! `applock`, `deploy`, `tier`, `backup`, `down`, with the record's
//! upkeep in `record`); [`Run`] holds the state they share.
//! Whatever ends the phases — a verdict, an error, a signal, the deadline,
//! the wrapper's death — teardown follows, with its own bound, and nothing
//! interrupts it once begun.

mod applock;
mod backup;
mod deploy;
mod down;
pub(crate) mod fetch;
pub mod floor;
pub mod interpolate;
pub mod recipe;
mod record;
mod stage;
mod tier;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{RunArgs, TestOptions};
use crate::config::{self, Env, RunConfig};
use crate::exit::{self, Failure};
use crate::ext::abra::Abra;
use crate::ext::docker::watch::Watch;
use crate::ext::docker::Docker;
use crate::ext::{self, Bound, Interrupted, Tools};
use crate::lifetime::{self, Funnel};
use crate::lock::backend::{AppLock, AppLocks};
use crate::lock::{Kind, OwnerRecord};
use crate::phase::Phase;
use crate::rundir::{self, RunDir, RunRecord};
use crate::say;
use crate::settings::Settings;
use crate::testrun;
use crate::testrun::meta::Tier;
use applock::take_run_lock;

/// `run`'s command line and the environment → a validated run config
/// ([`config::run_config`], with the test runner's rules for the test
/// options). `pid` is the wrapper's pid.
pub fn run_config(args: &RunArgs, env: &Env, pid: u32) -> Result<RunConfig> {
    let input = config::RunInput {
        recipe: args.recipe.clone(),
        git_ref: args.git_ref.clone(),
        pr: args.pr.clone(),
        server: args.server.clone(),
        domain: args.domain.clone(),
        base: args.base.clone(),
        quick: args.quick,
        bounds: config::RunBounds {
            timeout: args.timeout,
            teardown_timeout: args.teardown_timeout,
            converge_timeout: args.converge_timeout,
            stable_for: args.stable_for,
            grace: args.grace,
        },
    };
    config::run_config(&input, env, pid, || testrun::validate_options(&args.tests))
}

/// The run itself, once the harness's guards are in place and its
/// inputs read (`cmd::run::harness`): the run lock, the run tree, the
/// phases, teardown always, the metrics, the janitor pass and the summary.
/// Returns the run's exit code.
pub(crate) fn start(
    cfg: RunConfig,
    tests: TestOptions,
    state_dir: &Path,
    env: &Env,
    funnel: &'static Funnel,
    wrapper_pid: i32,
) -> Result<i32> {
    crate::log::set_tag(&cfg.run_id);
    // Before the first line of the run: the operator's secrets are hidden
    // from every line of it (the wrapper checked them already); what hides
    // nothing is said after the banner, so the log has it too.
    let (secrets, redact_warnings) = crate::redact::from_env(env)?;
    crate::redact::add(&secrets);
    lifetime::arm_deadline(cfg.bounds.timeout)?;
    let abra_home = config::canonical_abra_home(env)?;
    let outputs = crate::views::Outputs::from_env(env)?;
    let locks = config::locks::settings(env, &crate::sys::procfs::hostname())?.open(state_dir);

    let owner = OwnerRecord::for_self(&cfg.run_id, Kind::Run);
    let run_lock = match take_run_lock(state_dir, &cfg.run_id, &owner, funnel)? {
        Some(h) => h,
        None => return Ok(exit::DUPLICATE_RUN),
    };
    let dir = RunDir::new(state_dir, &cfg.run_id);
    // A tree left by a dead run with the same id (its run lock is free, we
    // hold it now) is removed before reuse.
    dir.remove_tree()?;
    rundir::mkdirs(&dir.root)?;
    if let Err(e) = crate::log::set_file(&dir.log(), tests.log_limit) {
        let what = format!("the log file {}", dir.log().display());
        crate::log::write_failed(&what, &anyhow::Error::from(e));
    }
    let mut run = Run::new(cfg, tests, dir, abra_home, env, locks, funnel, wrapper_pid);
    run.banner(state_dir);
    for w in redact_warnings {
        say!("{w}");
    }
    let code = run.execute();
    crate::views::metrics::after_run(state_dir, &run.record, &outputs);
    drop(run_lock);
    run.janitor_pass(env);
    // The last lines a run prints: what an operator reads first.
    for line in rundir::summary_lines(&run.record) {
        say!("{line}");
    }
    crate::log::close_file();
    Ok(code)
}

/// Marks an error of a phase as an infrastructure failure (exit 3). An
/// error caused by a shutdown request gets the funnel's code instead: the
/// funnel's request wins in `Run::execute`.
fn infra(what: &str) -> impl Fn(anyhow::Error) -> anyhow::Error + Copy + '_ {
    move |e| e.context(Failure::of(exit::INFRA, what))
}

/// One run's state between phases.
struct Run {
    cfg: RunConfig,
    /// The test runner's options (`run`'s test flags).
    tests: TestOptions,
    dir: RunDir,
    abra_home: PathBuf,
    tools: Tools,
    funnel: &'static Funnel,
    record: RunRecord,
    abra: Abra,
    docker: Docker,
    /// The app-domain lock's backend (flock, or the swarm for several hosts).
    locks: Box<dyn AppLocks>,
    app_lock: Option<Box<dyn AppLock>>,
    sha: Option<String>,
    /// The recipe's release tags reachable from `sha`, and those on it:
    /// read once in the fetch, for the tested version and the base.
    tags: (Vec<String>, Vec<String>),
    app_news: u32,
    deploys: u32,
    /// Tests the filters selected, over all tiers so far.
    tests_selected: usize,
    /// A failed record write was already said (a full disk says it once).
    record_warned: bool,
    /// When the current phase began (monotonic).
    phase_started: Instant,
    /// docker and /proc for the test runner.
    host: testrun::Host,
    /// The label of the containers a suite stopped by a signal left to the
    /// teardown (SPEC section 6: removed on every path).
    containers_left: Option<String>,
    /// The recipe's ccci.toml settings (SPEC section 3b), once read.
    settings: Settings,
    /// The watch through a tier's tests (SPEC section 3 step 8): from the
    /// tier's convergence to the end of its tests, and from the last
    /// deploy tier's convergence through the backup and restore tiers
    /// (their steps and their tests).
    watch: Option<Watch>,
}

/// The verdict of the phases (before teardown).
enum Verdict {
    Passed,
    TestsFailed,
    SelfProtect,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: RunConfig,
        tests: TestOptions,
        dir: RunDir,
        abra_home: PathBuf,
        env: &Env,
        locks: Box<dyn AppLocks>,
        funnel: &'static Funnel,
        wrapper_pid: i32,
    ) -> Run {
        let tools = Tools::from_env(env);
        let now = crate::log::timestamp(std::time::SystemTime::now());
        let record = RunRecord {
            run_id: cfg.run_id.clone(),
            recipe: cfg.recipe.clone(),
            git_ref: match (&cfg.git_ref, cfg.pr) {
                // The build's commit of a pull request (`--pr N --ref SHA`).
                (Some(r), Some(_)) => r.clone(),
                (None, Some(n)) => format!("refs/pull/{n}/head"),
                (Some(r), None) => r.clone(),
                (None, None) => "default branch".to_string(),
            },
            pr: cfg.pr,
            domain: cfg.domain.clone(),
            stack: cfg.stack.clone(),
            pid: std::process::id() as i32,
            wrapper_pid,
            host: crate::sys::procfs::hostname(),
            phase: Phase::Started,
            started: now.clone(),
            updated: now,
            log: Some(dir.log().display().to_string()),
            ..RunRecord::default()
        };
        let abra = Abra::new(&tools.abra, &dir.abra_dir(), &cfg.run_id);
        let docker = Docker::new(tools.docker_host.as_deref());
        let host = testrun::Host::new(&tools, env);
        Run {
            cfg,
            tests,
            dir,
            abra_home,
            tools,
            funnel,
            record,
            abra,
            docker,
            locks,
            app_lock: None,
            sha: None,
            tags: Default::default(),
            app_news: 0,
            deploys: 0,
            tests_selected: 0,
            record_warned: false,
            phase_started: Instant::now(),
            host,
            containers_left: None,
            settings: Settings::default(),
            watch: None,
        }
    }

    /// The whole run: phases, teardown, records. Returns the exit code.
    fn execute(&mut self) -> i32 {
        self.set_phase(Phase::Started);
        let verdict = self.phases();
        // The watch ends with the last tier's tests (or whatever ended the
        // phases): the teardown's own exits are not the version's.
        self.watch = None;
        // Where the verdict was decided: the phase the run was in when the
        // phases ended (a failure, a signal, the deadline, or the last test).
        let decided_in = self.record.phase;
        // From here on signals are logged and ignored: teardown runs whole.
        self.funnel.begin_teardown();
        if let Err(e) = lifetime::disarm_deadline() {
            say!("warning: {e:#}");
        }
        let mut code = match (&verdict, self.funnel.requested()) {
            (_, Some(sig)) => {
                self.record.reason = Some(match sig {
                    exit::DEADLINE => "the run deadline (--timeout) passed".to_string(),
                    _ => format!("cancelled by a signal (exit {sig})"),
                });
                sig
            }
            (Ok(Verdict::Passed), None) => exit::OK,
            (Ok(Verdict::TestsFailed), None) => exit::TESTS_FAILED,
            (Ok(Verdict::SelfProtect), None) => exit::SELF_PROTECT,
            (Err(e), None) => {
                say!("error: {e:#}");
                self.record.reason = Some(format!("{e:#}"));
                exit::code_for(e)
            }
        };
        if let (Err(e), Some(_)) = (&verdict, self.funnel.requested()) {
            if !ext::is_interrupted(e) {
                say!("error while stopping: {e:#}");
            }
        }
        let teardown_ok = self.teardown_phase();
        let before_teardown = code;
        code = exit::with_teardown(code, teardown_ok);
        self.record.verdict = Some(crate::verdict::Verdict::of_exit(code));
        if code != exit::OK && before_teardown == exit::OK {
            self.record.reason = Some(
                "the teardown failed: the app is left for the janitor (the log says why)".into(),
            );
        }
        self.record.failed_phase = match code {
            exit::OK => None,
            _ if before_teardown == exit::OK => Some(Phase::Teardown),
            _ => Some(decided_in),
        };
        self.write_junit(code, verdict.as_ref().err());
        self.set_phase(Phase::Cleanup);
        let left = crate::sys::kill::sweep_descendants(self.cfg.bounds.grace);
        if left > 0 {
            say!("ended {left} leftover process(es) of the run");
        }
        if let Err(e) = self.dir.remove_tree() {
            say!("warning: could not remove the run tree: {e:#}");
        }
        self.record.finished = Some(crate::log::timestamp(std::time::SystemTime::now()));
        self.record.exit_code = Some(code);
        self.set_phase(Phase::Finished);
        say!("run {} finished: exit {code}", self.cfg.run_id);
        code
    }

    /// The bound of a phase's commands: the funnel's latch (signals and the
    /// run deadline set it), no deadline of its own.
    fn bound(&self) -> Bound<'static> {
        Bound {
            cancel: Some(self.funnel.latch()),
            deadline: None,
            grace: self.cfg.bounds.grace,
        }
    }

    fn check_shutdown(&self) -> Result<()> {
        if self.funnel.requested().is_some() {
            return Err(anyhow::Error::new(Interrupted));
        }
        Ok(())
    }

    fn phases(&mut self) -> Result<Verdict> {
        self.check_shutdown()?;
        self.set_phase(Phase::Fetch);
        let repo = self.stage_recipe()?;
        // The tests and settings of the ref under test, before the static
        // checks: a bad ccci.toml is exit 2 whatever else is wrong.
        self.stage_tests(repo.dir())?;
        self.read_settings()?;
        self.check_shutdown()?;
        self.set_phase(Phase::Checks);
        let info = recipe::static_checks(repo.dir(), &self.cfg.stack)?;
        // Whether the images are here is asked now, beside the tests'
        // staging and the base version's lookup, and read in the prepare
        // phase; the pulls, if any, stay there, outside the lock.
        let images = info.images();
        let sha = self
            .sha
            .clone()
            .context("the ref under test was not resolved")?;
        let upgrade_na = self.settings.not_applicable("upgrade").map(str::to_string);
        let base = if self.cfg.quick || upgrade_na.is_some() {
            None
        } else {
            self.base_version(&repo)?
        };
        self.record.base_version = base.clone();
        self.check_shutdown()?;
        self.set_phase(Phase::Prepare);
        for image in &images {
            self.docker
                .ensure_image(image, &self.bound())
                .map_err(|e| {
                    e.context(Failure::of(
                        exit::INFRA,
                        format!("failed to prepare image {image}"),
                    ))
                })?;
        }
        self.check_shutdown()?;
        self.set_phase(Phase::Lock);
        self.lock_app()?;
        self.set_phase(Phase::Preclean);
        self.preclean()?;
        self.install(&repo, &base)?;
        if let Some(v) = self.test_tier(Tier::Install)? {
            return Ok(v);
        }
        if let Some(_base) = base.as_ref() {
            self.upgrade(&repo, &sha)?;
            if let Some(v) = self.test_tier(Tier::Upgrade)? {
                return Ok(v);
            }
        } else if !self.cfg.quick {
            let reason = match &upgrade_na {
                Some(why) => format!(
                    "upgrade tier not applicable ({}): {why}; the install tier deployed the ref itself",
                    self.settings_origin(|s| s.not_applicable.as_ref().map(|v| &v.from))
                ),
                None => "no release before the ref under test: the install tier deployed the ref itself, upgrade tier skipped".to_string(),
            };
            say!("{reason}");
            self.record.tiers_skipped.push(rundir::SkippedTier {
                tier: Tier::Upgrade.to_string(),
                reason,
            });
        }
        if !self.cfg.quick {
            let tier = match self.settings.not_applicable("backup") {
                Some(why) => recipe::BackupTier {
                    run: false,
                    reason: format!(
                        "backup/restore tier not applicable ({}): {why}",
                        self.settings_origin(|s| s.not_applicable.as_ref().map(|v| &v.from))
                    ),
                },
                None => self.backup_tier()?,
            };
            say!("{}", tier.reason);
            if !tier.run {
                self.watch = None;
                self.record.tiers_skipped.push(rundir::SkippedTier {
                    tier: Tier::Backup.to_string(),
                    reason: tier.reason.clone(),
                });
                self.save_record();
            }
            if tier.run {
                // Each tier stops the run at its first red, as the deploy
                // tiers do: after a red backup tier the restore does not
                // run (the teardown removes the app and its backup target).
                self.backup()?;
                if let Some(v) = self.test_tier(Tier::Backup)? {
                    return Ok(v);
                }
                self.restore()?;
                if let Some(v) = self.test_tier(Tier::Restore)? {
                    return Ok(v);
                }
            }
        }
        if let Some(v) = self.no_tests_verdict() {
            return Ok(v);
        }
        let expected_deploys = if base.is_some() { 2 } else { 1 };
        if self.app_news != 1 || self.deploys != expected_deploys {
            bail!(
                "the app must be created once and upgraded in place: {} app new, {} deploys (expected 1 and {expected_deploys})",
                self.app_news,
                self.deploys
            );
        }
        Ok(Verdict::Passed)
    }
}
