//! The `run` lifecycle of SPEC section 3, phase by phase, teardown always.
//!
//! [`wrapper`] is what Drone's `sh` starts: it validates every input (exit 2
//! with nothing touched), then re-executes itself as the harness in a new
//! session and waits (see `lifetime`). [`harness`] installs the lifetime
//! guards as its very first act, takes the run lock, and drives the phases.
//! Whatever ends the phases — a verdict, an error, a signal, the deadline,
//! the wrapper's death — teardown follows, with its own bound, and nothing
//! interrupts it once begun.

pub(crate) mod fetch;
pub mod floor;
pub mod interpolate;
pub(crate) mod phase;
pub mod recipe;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::unistd::Pid;

use crate::cli::{self, Cli, HarnessArgs, RunArgs};
use crate::config::{self, Base, Env, RunConfig};
use crate::exit::{self, Failure};
use crate::ext::abra::{marker, Abra};
use crate::ext::docker::events::Events;
use crate::ext::docker::watch::{self, Watch};
use crate::ext::docker::Docker;
use crate::ext::git::Repo;
use crate::ext::{self, Bound, Interrupted, Tools};
use crate::lifetime::{self, Funnel, WrapOptions};
use crate::lock::backend::{self, AppLock, AppLocks, Attempt};
use crate::lock::{self, Kind, OwnerRecord, Role, TryLock};
use crate::run::phase::Phase;
use crate::rundir::{self, RunDir, RunRecord};
use crate::say;
use crate::settings::Settings;
use crate::teardown::{self, App};
use crate::testrun;
use crate::testrun::containers::Removal;
use crate::testrun::meta::Tier;

/// How often a run waiting for an app lock says who holds it.
const LOCK_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// `cc-ci-run run`: validate, then wrap the harness.
pub(crate) fn wrapper(args: RunArgs, state_dir: &Path, start_ppid: Pid) -> Result<i32> {
    let env = config::process_env();
    let cfg = validate(&args, state_dir, &env)?;
    crate::log::set_tag(&cfg.run_id);
    let exe = std::env::current_exe().context("failed to find the cc-ci-run executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__harness")
        .arg("--wrapper-pid")
        .arg(std::process::id().to_string())
        .arg("--")
        .args(std::env::args_os().skip(1));
    lifetime::wrap(
        cmd,
        &WrapOptions {
            start_ppid,
            // The harness needs its grace to stop a phase plus its whole
            // teardown bound before the wrapper may give up on it.
            kill_after: cfg.grace * 2 + cfg.teardown_timeout + Duration::from_secs(30),
            grace: cfg.grace,
            timeout: None,
        },
    )
}

/// Every input `run` reads, checked before the first `git`, `abra` or
/// `docker` call and before anything is written (SPEC section 3): the
/// flags and Drone's variables, the state directory, the abra directory,
/// the lock settings and the janitor's settings (a RUN_APP_RE that cannot
/// be used would fail the janitor pass of every run, or worse, select an
/// operator's apps).
pub(crate) fn validate(args: &RunArgs, state_dir: &Path, env: &Env) -> Result<RunConfig> {
    crate::config::check_state_dir(state_dir)?;
    let cfg = config::run_config(args, env, std::process::id())?;
    // The CI repository's settings of the recipe are read now; the
    // recipe's own are at the tested ref, read once it is fetched (before
    // any abra call).
    crate::settings::load(&crate::settings::ci_file(&cfg.ci_tests_dir, &cfg.recipe))?;
    config::canonical_abra_home(env)?;
    crate::config::locks::settings(env, &crate::sys::procfs::hostname())?;
    crate::views::Outputs::from_env(env)?;
    crate::redact::add(crate::redact::from_env(env)?.0);
    if crate::janitor::enabled(env)? {
        crate::janitor::Settings::from_env(
            state_dir,
            &args.server,
            args.teardown_timeout,
            false,
            env,
        )?;
    }
    Ok(cfg)
}

/// The harness: guards first, then the run.
pub(crate) fn harness(args: HarnessArgs) -> Result<i32> {
    let funnel = lifetime::install_harness_guards(Some(Pid::from_raw(args.wrapper_pid)))?;
    let cli = Cli::try_parse_from(std::iter::once("cc-ci-run".to_string()).chain(args.args))
        .context("the harness could not parse the wrapper's arguments")?;
    let cli::Command::Run(run_args) = cli.command else {
        bail!("the harness only runs `run`");
    };
    let env = config::process_env();
    let cfg = config::run_config(&run_args, &env, args.wrapper_pid as u32)?;
    crate::log::set_tag(&cfg.run_id);
    // Before the first line of the run: the operator's secrets are hidden
    // from every line of it (the wrapper checked them already); what hides
    // nothing is said after the banner, so the log has it too.
    let (secrets, redact_warnings) = crate::redact::from_env(&env)?;
    crate::redact::add(&secrets);
    lifetime::arm_deadline(cfg.timeout)?;
    let abra_home = config::canonical_abra_home(&env)?;
    let outputs = crate::views::Outputs::from_env(&env)?;
    let locks =
        crate::config::locks::settings(&env, &crate::sys::procfs::hostname())?.open(&cli.state_dir);

    let owner = OwnerRecord::for_self(&cfg.run_id, Kind::Run);
    let run_lock = match take_run_lock(&cli.state_dir, &cfg.run_id, &owner, funnel)? {
        Some(h) => h,
        None => return Ok(exit::DUPLICATE_RUN),
    };
    let dir = RunDir::new(&cli.state_dir, &cfg.run_id);
    // A tree left by a dead run with the same id (its run lock is free, we
    // hold it now) is removed before reuse.
    dir.remove_tree()?;
    rundir::mkdirs(&dir.root)?;
    if let Err(e) = crate::log::set_file(&dir.log(), cfg.tests.log_limit) {
        let what = format!("the log file {}", dir.log().display());
        crate::log::write_failed(&what, &anyhow::Error::from(e));
    }
    let mut run = Run::new(cfg, dir, abra_home, &env, locks, funnel, args.wrapper_pid);
    run.banner(&cli.state_dir);
    for w in redact_warnings {
        say!("{w}");
    }
    let code = run.execute();
    crate::views::metrics::after_run(&cli.state_dir, &run.record, &outputs);
    drop(run_lock);
    run.janitor_pass(&env);
    // The last lines a run prints: what an operator reads first.
    for line in rundir::summary_lines(&run.record) {
        say!("{line}");
    }
    crate::log::close_file();
    Ok(code)
}

/// The run lock, or None (after saying who holds it) when another run with
/// this id is active. A janitor tidying run directories holds a run lock for
/// a moment; that is not a duplicate run, so its hold is waited out briefly.
fn take_run_lock(
    state_dir: &Path,
    run_id: &str,
    owner: &OwnerRecord,
    funnel: &Funnel,
) -> Result<Option<lock::Held>> {
    match lock::try_acquire(state_dir, Kind::Run, run_id, owner)? {
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
            match lock::acquire(state_dir, Kind::Run, run_id, owner, wait)? {
                lock::Acquire::Acquired(h) => Ok(Some(h)),
                _ => {
                    say!("the run lock of {run_id} is held by a janitor that did not let go: not starting");
                    Ok(None)
                }
            }
        }
        TryLock::Busy(holder) => {
            let path = lock::lock_path(state_dir, Kind::Run, run_id);
            let who = crate::lock::holder::describe_holder(&path, holder.as_ref());
            say!("another run with id {run_id} is active ({who}): not starting a duplicate");
            Ok(None)
        }
    }
}

/// Marks an error of a phase as an infrastructure failure (exit 3). An
/// error caused by a shutdown request gets the funnel's code instead: the
/// funnel's request wins in `Run::execute`.
fn infra(what: &str) -> impl Fn(anyhow::Error) -> anyhow::Error + Copy + '_ {
    move |e| e.context(Failure::of(exit::INFRA, what))
}

/// The prefix of an overlay's copy in the run's checkout.
const OVERLAY_PREFIX: &str = "ccci-overlay-";

/// `text` (an env file) with `vars` set, each single-quoted (abra's
/// godotenv reader takes a single-quoted value literally; the settings
/// refuse a value with a quote or a line break).
fn with_vars(text: &str, vars: &crate::settings::Vars) -> String {
    vars.iter().fold(text.to_string(), |t, (k, v)| {
        recipe::set_env(&t, k, &format!("'{v}'"))
    })
}

/// Copies the settings' overlays into the run's own checkout (abra joins
/// every `COMPOSE_FILE` entry to the recipe's directory, so a file outside
/// it cannot be named) as `ccci-overlay-<name>`, and lists that pattern in
/// the checkout's `.git/info/exclude`: the tree stays clean for git's
/// status, which is how abra decides the chaos-version's `+U`. The copies
/// are untracked, so moving the checkout to the ref under test keeps them.
/// Returns the `COMPOSE_FILE` entries.
fn stage_overlays(checkout: &Path, overlays: &[PathBuf]) -> Result<Vec<String>> {
    let exclude = checkout.join(".git").join("info").join("exclude");
    let pattern = format!("/{OVERLAY_PREFIX}*");
    let old = match std::fs::read_to_string(&exclude) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("failed to read {}", exclude.display()))
            )
        }
    };
    if !old.lines().any(|l| l == pattern) {
        if let Some(dir) = exclude.parent() {
            rundir::mkdirs(dir)?;
        }
        let mut text = old;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&pattern);
        text.push('\n');
        rundir::write_atomic(&exclude, text.as_bytes())
            .with_context(|| format!("failed to write {}", exclude.display()))?;
    }
    let mut names = Vec::new();
    for src in overlays {
        let base = src
            .file_name()
            .with_context(|| format!("overlay {} has no file name", src.display()))?;
        let name = format!("{OVERLAY_PREFIX}{}", base.to_string_lossy());
        std::fs::copy(src, checkout.join(&name)).with_context(|| {
            format!(
                "failed to copy overlay {} into the run's checkout",
                src.display()
            )
        })?;
        names.push(name);
    }
    Ok(names)
}

/// One run's state between phases.
struct Run {
    cfg: RunConfig,
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
    fn new(
        cfg: RunConfig,
        dir: RunDir,
        abra_home: PathBuf,
        env: &Env,
        locks: Box<dyn AppLocks>,
        funnel: &'static Funnel,
        wrapper_pid: i32,
    ) -> Run {
        let tools = crate::config::tools(env);
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
            phase: "started".into(),
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

    /// The first line of the run's log: what ran, where, with which settings.
    fn banner(&self, state_dir: &Path) {
        say!(
            "cc-ci-run {} on host {}: run {} of {} ({}), state directory {}, {} lock backend, deadline {}, teardown bound {}, convergence bound {}",
            env!("CARGO_PKG_VERSION"),
            self.record.host,
            self.cfg.run_id,
            self.cfg.recipe,
            self.record.git_ref,
            state_dir.display(),
            self.locks.backend().as_str(),
            crate::units::human(self.cfg.timeout),
            crate::units::human(self.cfg.teardown_timeout),
            match self.cfg.converge_timeout {
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

    /// The whole run: phases, teardown, records. Returns the exit code.
    fn execute(&mut self) -> i32 {
        self.set_phase(Phase::Started);
        let verdict = self.phases();
        // The watch ends with the last tier's tests (or whatever ended the
        // phases): the teardown's own exits are not the version's.
        self.watch = None;
        // Where the verdict was decided: the phase the run was in when the
        // phases ended (a failure, a signal, the deadline, or the last test).
        let decided_in = self.record.phase.clone();
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
        self.record.verdict = Some(rundir::verdict_of(code).to_string());
        if code != exit::OK && before_teardown == exit::OK {
            self.record.reason = Some(
                "the teardown failed: the app is left for the janitor (the log says why)".into(),
            );
        }
        self.record.failed_phase = match code {
            exit::OK => None,
            _ if before_teardown == exit::OK => Some("teardown".to_string()),
            _ => Some(decided_in),
        };
        self.write_junit(code, verdict.as_ref().err());
        self.set_phase(Phase::Cleanup);
        let left = crate::sys::kill::sweep_descendants(self.cfg.grace);
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

    /// The run's merged junit.xml (SPEC section 6), on every path once the
    /// verdict is known; a failed write is said and never changes it.
    fn write_junit(&mut self, code: i32, error: Option<&anyhow::Error>) {
        let dir = self.cfg.tests.report_dir.clone();
        let dir = dir.unwrap_or_else(|| self.dir.report());
        let error = error.map(|e| format!("{e:#}"));
        let log = self.dir.log();
        match testrun::junit::write_run(&dir, &self.record, code, error, &log) {
            Ok(path) => self.record.junit = Some(path.display().to_string()),
            Err(e) => say!("warning: could not write the run's junit.xml: {e:#}"),
        }
    }

    fn set_phase(&mut self, phase: Phase) {
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
                name: phase.to_string(),
                started: now.clone(),
                ended: None,
                duration_ms: None,
            });
        }
        self.record.phase = phase.to_string();
        self.record.updated = now;
        self.save_record();
        say!("phase: {phase}");
    }

    /// Writes the run record atomically; a failure (a full disk) is said
    /// once and never changes the verdict.
    fn save_record(&mut self) {
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

    /// The bound of a phase's commands: the funnel's latch (signals and the
    /// run deadline set it), no deadline of its own.
    fn bound(&self) -> Bound<'static> {
        Bound {
            cancel: Some(self.funnel.latch()),
            deadline: None,
            grace: self.cfg.grace,
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
                tier: "upgrade".into(),
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
                    tier: "backup".into(),
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

    /// Per-run ABRA_DIR (servers and catalogue linked to the canonical
    /// ones), then the recipe checkout from the canonical repository.
    fn stage_recipe(&mut self) -> Result<Repo> {
        let abra_dir = self.dir.abra_dir();
        rundir::mkdirs(&abra_dir.join("recipes"))?;
        for name in ["servers", "catalogue"] {
            let target = self.abra_home.join(name);
            if name == "servers" || target.exists() {
                rundir::ensure_symlink(&target, &abra_dir.join(name)).map_err(|e| {
                    e.context(Failure::of(
                        exit::USAGE,
                        "the run's ABRA_DIR cannot be set up",
                    ))
                })?;
            }
        }
        say!("ABRA_DIR={}", abra_dir.display());
        let canonical = self.abra_home.join("recipes").join(&self.cfg.recipe);
        if !canonical.join(".git").exists() {
            return Err(Failure::infra(format!(
                "the canonical recipe checkout {} is missing: fetch the recipe there first (abra recipe fetch {})",
                canonical.display(),
                self.cfg.recipe
            )));
        }
        let b = self.bound();
        let dest = self.dir.recipe_checkout(&self.cfg.recipe);
        if self.cfg.skip_fetch {
            say!("CCCI_SKIP_FETCH=1: staging the canonical checkout as it is, no network");
        }
        let fetched = fetch::fetch(
            &fetch::Request {
                git: &self.tools.git,
                canonical: &canonical,
                dest: &dest,
                abra_dir: &abra_dir,
                root: &self.dir.state_dir,
                skip_fetch: self.cfg.skip_fetch,
                pr: self.cfg.pr,
                git_ref: self.cfg.git_ref.as_deref(),
                shown_ref: &self.record.git_ref,
                git_only: false,
            },
            &b,
        )?;
        let (repo, sha) = (fetched.repo, fetched.sha);
        say!(
            "recipe {} at {sha} ({})",
            self.cfg.recipe,
            self.record.git_ref
        );
        self.tags = fetched.tags;
        self.record.tested_version = self
            .tags
            .1
            .iter()
            .filter(|t| recipe::parse_version(t).is_some())
            .max()
            .cloned();
        self.record.sha = Some(sha.clone());
        self.sha = Some(sha);
        Ok(repo)
    }

    /// Copies the ref under test's `tests/` aside: the checkout moves to the
    /// base release for the install tier, but every tier runs the tests of
    /// the ref under test.
    fn stage_tests(&self, checkout: &Path) -> Result<()> {
        let src = checkout.join("tests");
        let dest = self.dir.work().join("recipe-tests");
        if !src.is_dir() {
            return Ok(());
        }
        rundir::mkdirs(&dest)?;
        for entry in walkdir::WalkDir::new(&src).follow_links(false) {
            let entry = entry.context("failed to read the recipe's tests")?;
            let rel = entry
                .path()
                .strip_prefix(&src)
                .context("walkdir left its root")?;
            let to = dest.join(rel);
            if entry.file_type().is_dir() {
                rundir::mkdirs(&to)?;
            } else if entry.file_type().is_file() {
                std::fs::copy(entry.path(), &to)
                    .with_context(|| format!("failed to stage test {}", entry.path().display()))?;
            }
        }
        Ok(())
    }

    /// The recipe's settings (SPEC section 3b): the CI repository's
    /// ccci.toml over the one in the tested ref's `tests/` (its staged
    /// copy), every key validated; a bad file is exit 2 before any abra
    /// call.
    fn read_settings(&mut self) -> Result<()> {
        let own = self
            .dir
            .work()
            .join("recipe-tests")
            .join(crate::settings::FILE);
        let staged = own.display().to_string();
        self.settings =
            crate::settings::effective(&self.cfg.ci_tests_dir, &self.cfg.recipe, Some(&own))
                .map_err(|e| {
                    // The staged copy is deleted with the run tree: name
                    // the file as the recipe's author knows it.
                    let msg =
                        format!("{e:#}").replace(&staged, "tests/ccci.toml (at the tested ref)");
                    Failure::usage(msg)
                })?;
        for line in self.settings.lines() {
            if !line.ends_with("# from default") {
                say!("setting {}", line.replace(&staged, "tests/ccci.toml"));
            }
        }
        Ok(())
    }

    /// Where a setting came from, as the run says it.
    fn settings_origin<'a>(
        &'a self,
        pick: impl Fn(&'a Settings) -> Option<&'a crate::settings::Origin>,
    ) -> String {
        let own = self.dir.work().join("recipe-tests");
        match pick(&self.settings) {
            Some(o) if o.file.starts_with(&own) => format!("tests/ccci.toml:{}", o.line),
            Some(o) => o.to_string(),
            None => "ccci.toml".to_string(),
        }
    }

    fn base_version(&self, repo: &Repo) -> Result<Option<String>> {
        let (merged, at) = &self.tags;
        let latest = || recipe::latest_release_before(merged, at);
        let base = match (&self.cfg.base, &self.settings.base) {
            (Some(b), _) => b.clone(),
            (None, Some(s)) => {
                say!(
                    "base from {}",
                    self.settings_origin(|s| s.base.as_ref().map(|v| &v.from))
                );
                s.value.clone()
            }
            (None, None) => Base::LatestRelease,
        };
        Ok(match &base {
            Base::LatestRelease => latest(),
            Base::Version(v) => {
                if !merged.contains(v)
                    && repo
                        .resolve(&format!("refs/tags/{v}"), &self.bound())?
                        .is_none()
                {
                    return Err(Failure::usage(format!(
                        "invalid base {v:?}: no such release tag in the recipe"
                    )));
                }
                Some(v.clone())
            }
            Base::LastGreen => {
                // A state directory that cannot be read has no green run
                // to offer: the latest release is the base then.
                let green = rundir::load_records(&self.dir.state_dir)
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find(|r| {
                        r.recipe == self.cfg.recipe
                            && r.exit_code == Some(0)
                            && r.tested_version.is_some()
                    })
                    .and_then(|r| r.tested_version);
                match green {
                    Some(v) => Some(v),
                    None => {
                        say!(
                            "no green run of a release of {} on record: using the latest release",
                            self.cfg.recipe
                        );
                        latest()
                    }
                }
            }
        })
    }

    fn lock_app(&mut self) -> Result<()> {
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
    fn on_lost(&self) -> backend::OnLost {
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
    fn reclaim(&mut self, why: &str) -> Option<Box<dyn AppLock>> {
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

    fn app(&self) -> App<'_> {
        App {
            server: &self.cfg.server,
            domain: &self.cfg.domain,
            stack: &self.cfg.stack,
        }
    }

    fn teardown_bound(&self) -> Bound<'static> {
        Bound::until(Instant::now() + self.cfg.teardown_timeout, self.cfg.grace)
    }

    fn preclean(&mut self) -> Result<()> {
        let b = self.teardown_bound();
        // An app that cc-ci-run did not create is never torn down: a
        // `--domain` that names an operator's app stops the run instead.
        if let Some(env_file) = self.foreign_app() {
            return Err(Failure::infra(format!(
                "an app that cc-ci-run did not create exists at {} ({} has no `{}` line): not touching it; remove it or test on another domain",
                self.cfg.domain,
                env_file.display(),
                marker::PREFIX.trim_end()
            )));
        }
        if teardown::present(&self.abra, &self.docker, self.app(), &b)? {
            say!(
                "an app is already deployed at {}: an orphan of a dead run, tearing it down first",
                self.cfg.domain
            );
            let lock = self
                .app_lock
                .as_deref()
                .context("pre-clean without the app lock")?;
            lock.may_mutate()?;
            teardown::teardown(&self.abra, &self.docker, self.app(), &b, lock)
                .map_err(infra("pre-clean of an orphan failed"))?;
        }
        Ok(())
    }

    /// The env file of an app at our domain that this run did not create
    /// and that carries no marker: an operator's app, never touched. (An
    /// app this run created is ours even if the run stopped before it could
    /// write the marker.)
    fn foreign_app(&self) -> Option<PathBuf> {
        if self.app_news > 0 {
            return None;
        }
        let env_file = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        match std::fs::read_to_string(&env_file) {
            Ok(text) if marker::find(&text).is_none() => Some(env_file),
            _ => None,
        }
    }

    /// Right after `app new`, in one atomic write: the ownership marker the
    /// janitor requires before it may reap the app (SPEC section 5), no
    /// certificates for test apps, the settings' `env` and `overlays`
    /// (SPEC section 3b; the overlays copied into the checkout first).
    fn prepare_env_file(&self, repo: &Repo) -> Result<()> {
        let path = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let line = marker::line(
            &self.cfg.run_id,
            &crate::sys::procfs::hostname(),
            &crate::log::timestamp(std::time::SystemTime::now()),
        );
        let mut text = recipe::set_env(&text, "LETS_ENCRYPT_ENV", "");
        if let Some(env) = &self.settings.env {
            text = with_vars(&text, &env.value);
        }
        if let Some(overlays) = &self.settings.overlays {
            let names = stage_overlays(repo.dir(), &overlays.value)?;
            let current = recipe::parse_env(&text)
                .get("COMPOSE_FILE")
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| "compose.yml".to_string());
            let list = std::iter::once(current)
                .chain(names)
                .collect::<Vec<_>>()
                .join(":");
            say!("COMPOSE_FILE={list} (overlays from ccci.toml)");
            text = recipe::set_env(&text, "COMPOSE_FILE", &format!("'{list}'"));
        }
        rundir::write_atomic(&path, marker::with_marker(&text, &line).as_bytes())
            .with_context(|| format!("failed to mark {} as created by this run", path.display()))
    }

    fn install(&mut self, repo: &Repo, base: &Option<String>) -> Result<()> {
        self.set_phase(Phase::Install);
        let b = self.bound();
        let infra = infra("install tier: deploy failed");
        self.app_news += 1;
        self.abra
            .app_new(
                &self.cfg.recipe,
                base.as_deref(),
                &self.cfg.server,
                &self.cfg.domain,
                base.is_none(),
                &b,
            )
            .map_err(infra)?;
        self.prepare_env_file(repo).map_err(infra)?;
        let bound = self.read_for_deploy(repo)?;
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.deploys += 1;
        let deployed_at = std::time::SystemTime::now();
        // Subscribed before the deploy, so that the wait hears all it does.
        let events = self.docker.subscribe(&self.cfg.stack, deployed_at);
        self.abra
            .deploy(&self.cfg.domain, base.as_deref(), base.is_none(), false, &b)
            .map_err(infra)?;
        self.converge(Tier::Install, Some(deployed_at), events, bound)
    }

    /// Before a deploy: the compose files it will use (the `COMPOSE_FILE`
    /// of the app's env file, at the checkout as it now is) read as docker
    /// reads them with the values abra gives it, so that a `${VAR:?msg}`
    /// with VAR missing fails here (exit 1, naming the variable and the
    /// file) and not in the deploy; and the convergence bound that applies
    /// to that deploy (SPEC section 3a), said and recorded.
    fn read_for_deploy(&mut self, repo: &Repo) -> Result<Duration> {
        let env_file = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
        let (env, vars) = recipe::values_for(repo.dir(), &env_file, &self.cfg.stack)?;
        let compose = recipe::read_compose(repo.dir(), &env_file, &env, &vars)?;
        // The operator's explicit bound, then the recipe's ccci.toml (the
        // CI's own knowledge of this recipe), then its timeout label.
        let setting = self.settings.converge_timeout.as_ref().map(|s| {
            (
                s.value,
                format!(
                    "converge_timeout in {}",
                    self.settings_origin(|s| s.converge_timeout.as_ref().map(|v| &v.from))
                ),
            )
        });
        let (bound, source) = match (
            self.cfg.converge_timeout,
            setting,
            recipe::timeout_label(&compose, &self.cfg.stack),
        ) {
            (Some(d), _, _) => (d, "--converge-timeout/CCCI_CONVERGE_TIMEOUT".to_string()),
            (None, Some(set), _) => set,
            (None, None, Some(Ok((d, label)))) => (d, format!("the recipe's label {label}")),
            (None, None, Some(Err(why))) => {
                say!("warning: the recipe's timeout label is not used: {why}");
                (
                    config::DEFAULT_CONVERGE_TIMEOUT,
                    "the default (the recipe's timeout label is not a number)".to_string(),
                )
            }
            (None, None, None) => (
                config::DEFAULT_CONVERGE_TIMEOUT,
                "the default (the recipe sets no timeout label)".to_string(),
            ),
        };
        say!(
            "convergence bound {} from {source}",
            crate::units::human(bound)
        );
        self.record.converge_bound = Some(rundir::ConvergeBound {
            seconds: bound.as_secs(),
            source,
        });
        Ok(bound)
    }

    /// The convergence wait after a tier's deploy (`deployed_at`: when it
    /// began; None when the tier deployed nothing).
    fn converge(
        &mut self,
        tier: Tier,
        deployed_at: Option<std::time::SystemTime>,
        events: Option<Events>,
        bound: Duration,
    ) -> Result<()> {
        self.set_phase(Phase::Converge(tier));
        let b = Bound {
            deadline: Some(Instant::now() + bound),
            ..self.bound()
        };
        let mut c = self
            .docker
            .wait_converged(
                &self.cfg.stack,
                deployed_at,
                events,
                self.cfg.stable_for,
                &b,
            )
            .map_err(infra(&format!("{tier} tier: convergence failed")))?;
        if tier == Tier::Restore && self.watch.is_some() {
            // The watch begun at the last deploy tier's convergence spans
            // the backup, the backup tier's tests, the restore and this
            // wait: they deploy nothing, so an exit here is the version's.
        } else {
            self.watch = None;
            match self.docker.watch(&self.cfg.stack, &mut c) {
                Ok(w) => self.watch = Some(w),
                Err(e) => {
                    say!("warning: {tier} tier: the watch through its tests could not start: {e:#}")
                }
            }
        }
        if let Some(w) = &c.warning {
            say!("warning: {tier} tier: {w}");
            self.record.warnings.push(format!("{tier} tier: {w}"));
        }
        // One line with the wait and the engine's own update time, so both
        // can be read from run.log (scripts/bench-converge.sh does).
        say!(
            "stack {} converged in {:.2} s: {}{}",
            self.cfg.stack,
            c.waited.as_secs_f64(),
            c.summary,
            c.engine_update
                .map(|d| format!(" (engine update {:.2} s)", d.as_secs_f64()))
                .unwrap_or_default()
        );
        Ok(())
    }

    fn upgrade(&mut self, repo: &Repo, sha: &str) -> Result<()> {
        self.set_phase(Phase::Upgrade);
        let b = self.bound();
        let infra = infra("upgrade tier: deploy failed");
        repo.checkout(sha, &b).map_err(infra)?;
        if let Some(vars) = &self.settings.upgrade_env {
            let path = self.abra.env_file(&self.cfg.server, &self.cfg.domain);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read {}", path.display()))
                .map_err(infra)?;
            rundir::write_atomic(&path, with_vars(&text, &vars.value).as_bytes())
                .with_context(|| format!("failed to write upgrade_env into {}", path.display()))
                .map_err(infra)?;
            let names: Vec<&str> = vars.value.iter().map(|(k, _)| k.as_str()).collect();
            say!(
                "upgrade_env written into the app's env file: {}",
                names.join(", ")
            );
        }
        let bound = self.read_for_deploy(repo)?;
        self.app_lock.as_ref().map_or(Ok(()), |l| l.may_mutate())?;
        self.deploys += 1;
        // The install tier's watch ended with its tests: the upgrade
        // replaces its tasks on purpose.
        self.watch = None;
        let deployed_at = std::time::SystemTime::now();
        let events = self.docker.subscribe(&self.cfg.stack, deployed_at);
        self.abra
            .deploy(&self.cfg.domain, None, true, true, &b)
            .map_err(infra)?;
        self.converge(Tier::Upgrade, Some(deployed_at), events, bound)?;
        let labels = self.docker.app_labels(&self.cfg.stack, &b).map_err(infra)?;
        let key = format!("coop-cloud.{}.chaos-version", self.cfg.stack);
        let label = labels.get(&key).map(String::as_str).unwrap_or("");
        recipe::check_chaos_version(label, sha).map_err(|why| {
            Failure::with_code(
                exit::TESTS_FAILED,
                format!("upgrade tier failed: label {key}={label:?}: {why}"),
            )
        })?;
        say!("upgrade tier: chaos deploy of {sha} is running ({key}={label})");
        Ok(())
    }

    /// Whether the backup/restore tier runs, decided from what is
    /// deployed (SPEC section 3 step 8): the labels the engine holds on the
    /// stack's services once the last deploy converged, which are the
    /// recipe's `deploy.labels` as docker interpolated them.
    fn backup_tier(&self) -> Result<recipe::BackupTier> {
        let services = self
            .docker
            .stack_labels(&self.cfg.stack, &self.bound())
            .map_err(infra("failed to read the deployed services' labels"))?;
        Ok(recipe::backup_tier(&services))
    }

    /// `abra app backup create`; the backup tier's tests follow it.
    fn backup(&mut self) -> Result<()> {
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
    fn restore(&mut self) -> Result<()> {
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
    fn backup_step_failed(&self, e: anyhow::Error) -> anyhow::Error {
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

    /// Runs the tier's tests; Some(verdict) ends the run early.
    fn test_tier(&mut self, tier: Tier) -> Result<Option<Verdict>> {
        self.check_shutdown()?;
        self.set_phase(Phase::Test(tier));
        self.record.tiers.push(tier.to_string());
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
            .cfg
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
            .cfg
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
            grace: self.cfg.grace,
            options: self.cfg.tests.clone(),
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
        let floor_result = suite.builtin.first().map(|t| t.result.as_str().to_string());
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
                .clone()
                .or_else(|| self.floor_off().map(|why| format!("off ({why})"))),
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
                testrun::describe_filters(Some(tier.as_str()), &self.cfg.tests),
                outcome.discovered
            );
        } else if outcome.selected == 0 && outcome.exit_code == 0 {
            say!(
                "warning: {tier} tier: no test selected (filters: {}; {} test file(s) found)",
                testrun::describe_filters(Some(tier.as_str()), &self.cfg.tests),
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
                if floor_result.as_deref() == Some("failed") {
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
    fn watched(&self, what: &str) -> (Vec<watch::Exit>, Vec<String>) {
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
    fn keep_artifacts(&mut self, dir: &Path) {
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
    fn no_tests_verdict(&self) -> Option<Verdict> {
        let (code, warn) = testrun::no_tests_outcome(self.cfg.tests.no_tests, self.tests_selected)?;
        let why = format!(
            "no test ran in any tier: the filters ({}) left nothing",
            testrun::describe_filters(None, &self.cfg.tests)
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

    /// Teardown if this run holds the app lock; true when it is clean (or
    /// there was nothing of ours to tear down). The containers a stopped
    /// suite left (SPEC section 6) are removed on a thread of their own
    /// once the app's undeploy has been issued, beside the wait for the
    /// engine (or, when the teardown ends before that, right after it),
    /// and waited for before the app lock is released.
    fn teardown_phase(&mut self) -> bool {
        let docker = self.host.docker.clone();
        let grace = self.cfg.grace;
        let mut label = self.containers_left.take();
        // The removal's docker calls end with the teardown's bound.
        let until = Instant::now() + self.cfg.teardown_timeout;
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
    fn tear_down_app(
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

    /// Releases the app lock, stamping the record's release time first: a
    /// waiting run may acquire the instant it is released, and the record
    /// must never show two holders at once (`history`, the timeline).
    fn release_app_lock(&mut self, held: Box<dyn AppLock>) -> Result<()> {
        if let Some(l) = self.record.lock.as_mut().filter(|l| l.acquired.is_some()) {
            l.released = Some(crate::log::timestamp(std::time::SystemTime::now()));
        }
        held.release()
    }

    /// SPEC section 3 step 11: one janitor sweep; never changes the exit code.
    fn janitor_pass(&self, env: &Env) {
        if self.funnel.requested().is_some() {
            return;
        }
        if let Err(e) = crate::janitor::sweep_after_run(
            &self.dir.state_dir,
            &self.cfg.server,
            self.cfg.teardown_timeout,
            env,
        ) {
            say!("janitor pass failed (exit code unchanged): {e:#}");
        }
    }
}
