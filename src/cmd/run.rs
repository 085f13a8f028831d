//! `cc-ci-run run` and the harness it wraps (SPEC sections 2 and 3).
//!
//! [`run`] is what Drone's `sh` starts: it validates every input (exit 2
//! with nothing touched), then re-executes itself as the harness in a new
//! session and waits (`lifetime::wrap`). [`harness`] installs the lifetime
//! guards as its very first act, reads the wrapper's arguments again, and
//! hands the run to [`crate::run::start`].

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::unistd::Pid;

use crate::cli::{self, Cli, HarnessArgs, RunArgs};
use crate::config::{self, Env, RunConfig};
use crate::lifetime::{self, WrapOptions};

/// `cc-ci-run run`: validate, then wrap the harness.
pub(crate) fn run(args: RunArgs, state_dir: &Path, start_ppid: Pid) -> Result<i32> {
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
            kill_after: cfg.bounds.grace * 2
                + cfg.bounds.teardown_timeout
                + Duration::from_secs(30),
            grace: cfg.bounds.grace,
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
    let cfg = crate::run::run_config(args, env, std::process::id())?;
    // The CI repository's settings of the recipe are read now; the
    // recipe's own are at the tested ref, read once it is fetched (before
    // any abra call).
    crate::settings::load(&crate::settings::ci_file(&cfg.ci_tests_dir, &cfg.recipe))?;
    config::canonical_abra_home(env)?;
    config::locks::settings(env, &crate::sys::procfs::hostname())?;
    crate::views::Outputs::from_env(env)?;
    crate::redact::add(crate::redact::from_env(env)?.0);
    if config::janitor::enabled(env)? {
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
    let cfg = crate::run::run_config(&run_args, &env, args.wrapper_pid as u32)?;
    crate::run::start(
        cfg,
        run_args.tests,
        &cli.state_dir,
        &env,
        funnel,
        args.wrapper_pid,
    )
}
