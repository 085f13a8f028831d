//! Every command's entry point: one function per command in this module or
//! a file of its own; [`dispatch`] calls it, and `main` maps the result to
//! an exit code.

pub mod comment;
pub(crate) mod diag;
pub mod history;
pub(crate) mod janitor;
pub mod locks;
pub(crate) mod run;
pub(crate) mod run_tree;
pub(crate) mod status;
pub(crate) mod timeline;
pub mod unlock;

use std::process::Command;

use anyhow::{Context, Result};
use clap::CommandFactory;
use nix::unistd::Pid;

use crate::cli::{self, Cli};
use crate::lifetime::{self, WrapOptions};
use crate::testrun;

/// Whether a command checks the environment for misspelt variables
/// first: those an operator or a pipeline calls do; the harness was
/// checked by its wrapper, and the diagnostics and generators read none.
/// No wildcard: a new command must say.
fn checks_variables(command: &cli::Command) -> bool {
    use cli::Command as C;
    match command {
        C::Harness(_)
        | C::HoldLock(_)
        | C::LockStress(_)
        | C::BenchLock(_)
        | C::RunTree(_)
        | C::Completions(_)
        | C::Man(_) => false,
        C::Exec(_)
        | C::Locks(_)
        | C::Unlock(_)
        | C::Test(_)
        | C::Run(_)
        | C::Janitor(_)
        | C::Status(_)
        | C::History(_)
        | C::Timeline(_)
        | C::Logs(_)
        | C::Settings(_)
        | C::Summary(_)
        | C::Comment(_) => true,
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn dispatch(cli: Cli, start_ppid: Pid) -> Result<i32> {
    if checks_variables(&cli.command) {
        check_variables(&crate::config::process_env())?;
    }
    match cli.command {
        cli::Command::Exec(args) => exec(args, start_ppid),
        cli::Command::Locks(args) => locks::locks(&cli.state_dir, args),
        cli::Command::Unlock(args) => unlock::unlock(&cli.state_dir, args),
        cli::Command::HoldLock(args) => diag::hold_lock(&cli.state_dir, args),
        cli::Command::LockStress(args) => diag::lock_stress(&cli.state_dir, args),
        cli::Command::BenchLock(args) => diag::bench_lock(&cli.state_dir, args),
        cli::Command::RunTree(args) => run_tree::run_tree(&args),
        cli::Command::Test(args) => test(args),
        cli::Command::Run(args) => run::run(args, &cli.state_dir, start_ppid),
        cli::Command::Harness(args) => run::harness(args),
        cli::Command::Janitor(args) => {
            janitor::janitor(args, &cli.state_dir, &crate::config::process_env())
        }
        cli::Command::Status(args) => status::status(&cli.state_dir, args.json, args.watch),
        cli::Command::History(args) => history::command(&cli.state_dir, &args),
        cli::Command::Timeline(args) => timeline::timeline(&cli.state_dir, &args),
        cli::Command::Logs(args) => status::logs(&cli.state_dir, &args.run, args.follow),
        cli::Command::Settings(args) => settings(&args),
        cli::Command::Summary(args) => {
            crate::redact::install_from_env(&crate::config::process_env())?;
            comment::summary(&cli.state_dir, &args)
        }
        cli::Command::Comment(args) => {
            crate::redact::install_from_env(&crate::config::process_env())?;
            comment::comment(&cli.state_dir, &args)
        }
        cli::Command::Completions(args) => completions(args),
        cli::Command::Man(args) => man(args),
    }
}

/// The `CCCI_*` variables of `env` that cc-ci-run does not read: a typo
/// of a known one is exit 2 naming both ([`crate::config::Unknown`]); any
/// other is a warning line. `DOCKER_HOST`, when set, must be an address
/// the engine client understands (exit 2 otherwise).
fn check_variables(env: &crate::config::Env) -> Result<()> {
    let known: Vec<&str> = crate::manual::ENVIRONMENT
        .iter()
        .map(|v| v.name)
        .filter(|n| n.starts_with("CCCI_"))
        .collect();
    let unknown = crate::config::unknown_variables(env, &known, &crate::manual::RESERVED_PREFIXES);
    if let Some(host) = env.get("DOCKER_HOST") {
        crate::ext::docker::api::Engine::from_host(Some(host))
            .map_err(|e| crate::exit::Failure::usage(format!("{e:#}")))?;
    }
    for name in &unknown.others {
        crate::say!(
            "warning: {name} is set but cc-ci-run does not read it (`cc-ci-run --help` lists the variables it reads)"
        );
    }
    unknown.refuse_typos()
}

/// `cc-ci-run settings RECIPE`: the effective settings, one key a line
/// with its source; a bad file exits 2 as `run` would.
fn settings(args: &cli::SettingsArgs) -> Result<i32> {
    crate::config::names::check_label("recipe", &args.recipe)?;
    let env = crate::config::process_env();
    let ci_tests = crate::config::ci_tests_dir(&env);
    let own = crate::config::canonical_abra_home(&env)?
        .join("recipes")
        .join(&args.recipe)
        .join("tests")
        .join(crate::settings::FILE);
    let s = crate::settings::effective(&ci_tests, &args.recipe, Some(&own))?;
    println!(
        "# settings of {}: {} over {}",
        args.recipe,
        crate::settings::ci_file(&ci_tests, &args.recipe).display(),
        own.display()
    );
    for line in s.lines() {
        println!("{line}");
    }
    Ok(crate::exit::OK)
}

/// A command's result as the process's exit code, its error printed.
pub fn exit_code(result: Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        // Output to a closed pipe (`cc-ci-run status | head`) ends quietly,
        // as `ls` does: the reader has what it wanted.
        Err(e) if crate::exit::is_broken_pipe(&e) => crate::exit::OK,
        Err(e) => {
            crate::say!("error: {e:#}");
            crate::exit::code_for(&e)
        }
    }
}

/// `exec` on its own parse path (`cli::exec_fast`): the exit code when the
/// command line is `exec` in one of its common forms, None for every other
/// line (clap reads those). What `main` and `dispatch` do for `exec` is
/// done here in the same order: the host's settings, the environment's
/// check, the wrapper.
pub fn exec_fast(start_ppid: Pid) -> Option<i32> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != "exec" {
        return None;
    }
    let rest: Vec<std::ffi::OsString> = argv.collect();
    // Nothing is decided before the host's settings are in the environment
    // (they may set CCCI_GRACE); `--host-settings` is not a fast form, so
    // the default file is the one.
    if let Err(e) = crate::host::apply(None) {
        return Some(exit_code(Err(e)));
    }
    let args = cli::exec_fast(&rest, std::env::var_os("CCCI_GRACE").as_deref())?;
    Some(exit_code(
        check_variables(&crate::config::process_env()).and_then(|()| exec(args, start_ppid)),
    ))
}

/// `cc-ci-run exec -- CMD...`: the guarded replacement for
/// `setsid CMD & PID=$!; trap 'kill -TERM -- -$PID' TERM EXIT; wait $PID`.
pub(crate) fn exec(args: cli::ExecArgs, start_ppid: Pid) -> Result<i32> {
    crate::log::set_tag("exec");
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| crate::exit::Failure::usage("exec: CMD is required after --"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    lifetime::wrap(
        cmd,
        &WrapOptions {
            start_ppid,
            kill_after: args.grace,
            grace: args.grace,
            timeout: args.timeout,
        },
    )
}

/// `cc-ci-run completions SHELL`: the completion script, generated from the
/// clap definitions (hidden subcommands stay hidden).
pub(crate) fn completions(args: cli::CompletionsArgs) -> Result<i32> {
    let full = Cli::command();
    // The fish and powershell generators offer hidden subcommands too, and
    // clap cannot remove one: the command is rebuilt from the visible parts.
    let mut cmd = clap::Command::new("cc-ci-run")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned())
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cc-ci-run", &mut script);
    write_stdout(&script, "completion script")
}

/// `cc-ci-run man [COMMAND]`: the man page (roff) of the binary, or of one
/// subcommand, generated from the clap definitions. The main page lists the
/// subcommands as `cc-ci-run-COMMAND(1)`, so a package installs one page each.
pub(crate) fn man(args: cli::ManArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    // Building names the subcommands as the main page refers to them
    // (`cc-ci-run-run`) and copies the global flags into each.
    cmd.build();
    let page_of = match args.command.as_deref() {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name).filter(|c| !c.is_hide_set()) {
            Some(sub) => sub.clone(),
            None => {
                let known: Vec<&str> = cmd
                    .get_subcommands()
                    .filter(|c| !c.is_hide_set())
                    .map(|c| c.get_name())
                    .collect();
                return Err(crate::exit::Failure::usage(format!(
                    "man: no command `{name}` (one of: {})",
                    known.join(", ")
                )));
            }
        },
    };
    let main_page = args.command.is_none();
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(page_of);
    if main_page {
        // The main page's EXIT STATUS, ENVIRONMENT and FILES come from the
        // tables `--help` prints (crate::manual), in place of the generic
        // EXTRA section clap_mangen would make of the same text.
        man.render_title(&mut page)
            .and_then(|()| man.render_name_section(&mut page))
            .and_then(|()| man.render_synopsis_section(&mut page))
            .and_then(|()| man.render_description_section(&mut page))
            .and_then(|()| man.render_options_section(&mut page))
            .and_then(|()| man.render_subcommands_section(&mut page))
            .and_then(|()| {
                std::io::Write::write_all(&mut page, crate::manual::man_sections().as_bytes())
            })
            .and_then(|()| man.render_version_section(&mut page))
    } else {
        man.render(&mut page)
    }
    .context("failed to render the man page")?;
    write_stdout(&page, "man page")
}

/// Both generators write into a buffer first: written straight to stdout,
/// a closed pipe (`cc-ci-run man | head`) would make them panic.
fn write_stdout(bytes: &[u8], what: &str) -> Result<i32> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("failed to write the {what} to stdout"))?;
    Ok(crate::exit::OK)
}

/// `cc-ci-run test [PATHS]`: the recipe test runner on its own, against an
/// already deployed app (SPEC section 6).
pub(crate) fn test(args: cli::TestArgs) -> Result<i32> {
    // First act: the funnel turns SIGTERM/SIGINT into a clean stop of the
    // suite (tests terminated with the escalation, containers removed).
    let funnel = lifetime::install_harness_guards(None)?;
    let report_dir = args
        .tests
        .report_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("ccci-report"));
    let tier = args.tier.clone().filter(|t| !t.is_empty());
    let run_id = match args.run_id.clone().filter(|r| !r.is_empty()) {
        Some(id) => id,
        // --resume without --run-id continues the run of the checkpoint.
        None if args.tests.resume => {
            match testrun::checkpoint::load(&report_dir, tier.as_deref()) {
                Ok(Some(l)) => l.checkpoint.run_id,
                _ => format!("manual-{}", std::process::id()),
            }
        }
        None => format!("manual-{}", std::process::id()),
    };
    crate::config::names::check_run_id(&run_id)?;
    testrun::validate_options(&args.tests)?;
    crate::log::set_tag(&run_id);
    let env = crate::config::process_env();
    crate::redact::install_from_env(&env)?;
    let paths = if args.paths.is_empty() {
        vec![std::path::PathBuf::from("tests")]
    } else {
        args.paths.clone()
    };
    let suite = testrun::Suite {
        paths,
        // Standalone: tests are shown under their roots as given, and
        // classname is the tier (or `tests`): no recipe is known.
        shown_as: Vec::new(),
        recipe: None,
        tier,
        run_id,
        git_ref: args.git_ref.clone().unwrap_or_default(),
        report_dir,
        env: Vec::new(),
        grace: args.grace,
        options: args.tests.clone(),
        host: testrun::Host::new(&crate::ext::Tools::from_env(&env), &env),
        // Nothing follows a standalone suite: it removes them itself.
        leave_containers_on_signal: false,
        builtin: Vec::new(),
    };
    if args.list {
        let plan = testrun::plan(&suite)?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(testrun::render_list(&plan, &suite.options).as_bytes())
            .and_then(|()| out.flush())
            .context("failed to write the test list")?;
        for (t, why) in &plan.left_out {
            crate::say!("left out: {} ({why})", t.name);
        }
        crate::say!(
            "{} test(s) would run, {} left out",
            plan.tests.len(),
            plan.left_out.len()
        );
        return Ok(crate::exit::OK);
    }
    std::fs::create_dir_all(&suite.report_dir).with_context(|| {
        format!(
            "failed to create report directory {}",
            suite.report_dir.display()
        )
    })?;
    let log = suite.report_dir.join("runner.log");
    if let Err(e) = crate::log::set_file(&log, suite.options.log_limit) {
        let what = format!("the log file {}", log.display());
        crate::log::write_failed(&what, &anyhow::Error::from(e));
    }
    let outcome = testrun::run_suite(&suite, Some(funnel.latch()));
    // Whatever happened, nothing the tests started outlives us.
    let left = crate::sys::kill::sweep_descendants(suite.grace);
    if left > 0 {
        crate::say!("ended {left} leftover descendant process(es)");
    }
    let outcome = outcome?;
    if outcome.exit_code == crate::exit::OK {
        if let Some((code, warn)) =
            testrun::no_tests_outcome(suite.options.no_tests, outcome.selected)
        {
            let why = format!(
                "no test ran: the filters ({}) left none of the {} test file(s) found under {}",
                testrun::describe_filters(suite.tier.as_deref(), &suite.options),
                outcome.discovered,
                suite
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if code != crate::exit::OK {
                crate::say!(
                    "{why} (--no-tests fail; --no-tests warn or pass accepts an empty suite)"
                );
            } else if warn {
                crate::say!("warning: {why} (--no-tests warn)");
            }
            return Ok(code);
        }
    }
    Ok(outcome.exit_code)
}
