//! The raw command line: clap structs only. The flags of `run` and `test`
//! (and the state directory) can also be set from a `CCCI_*` environment
//! variable (`--help` shows `[env: ...]`); the view commands' flags, `exec`,
//! `unlock`, the janitor's switches, `test --list`, `summary`, `comment`
//! (but its `--timeout`) and `--host-settings` have none: above all,
//! nothing in the environment names the forge `comment` sends its token
//! to. Validation beyond the shape of a value happens in `config`
//! (pure, unit-tested).
//!
//! Switches read from the environment accept what `CCCI_SKIP_FETCH` does
//! (`1/true/yes/on`, `0/false/no/off`, [`crate::config::switch`]): a
//! `!testme --quick` bridge sends `CCCI_QUICK=1`, which clap's default
//! (`true`/`false` only) rejects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::lock::Kind;
use crate::units::{parse_duration, parse_size};

/// cc-ci-run: the guarded harness of a Co-op Cloud recipe CI.
#[derive(Debug, Parser)]
#[command(
    name = "cc-ci-run",
    version,
    about,
    propagate_version = true,
    after_help = crate::manual::after_help(),
    after_long_help = crate::manual::after_long_help()
)]
pub struct Cli {
    /// Where locks, run trees, run records and logs live (outside any Drone workspace).
    #[arg(
        long,
        global = true,
        env = "CCCI_STATE_DIR",
        default_value = "/var/lib/cc-ci-run"
    )]
    pub state_dir: PathBuf,

    /// The host's settings file (default /etc/cc-ci-run/host.env, when it
    /// exists): the host-owned settings no environment may change. No
    /// variable sets this, so a build's parameters cannot move it.
    #[arg(long, global = true, value_name = "FILE")]
    pub host_settings: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Test one recipe: deploy a throwaway app, run its tests per tier, tear it down.
    Run(RunArgs),
    /// Run any command under the guarded wrapper (setsid, signal forwarding, no leftovers).
    Exec(ExecArgs),
    /// Run a recipe's tests against an already deployed app.
    Test(TestArgs),
    /// Reap apps left behind by dead runs (one sweep, or --watch).
    Janitor(JanitorArgs),
    /// Show every lock: domain or run, held or free, holder, owner record, age.
    Locks(LocksArgs),
    /// Remove a free (stale) lock file; with --terminate, stop a live holder first.
    Unlock(UnlockArgs),
    /// Show the runs known on this host from their run records.
    Status(StatusArgs),
    /// Print a run's log from the state directory (also after its tree is gone).
    Logs(LogsArgs),
    /// Finished runs, newest first: verdicts, failed phases, lock waits, who waited for whom.
    History(HistoryArgs),
    /// Write a self-contained HTML page of recent runs: one row per app domain, one bar per run.
    Timeline(TimelineArgs),
    /// Print a recipe's effective settings (ccci.toml) and where each value came from.
    Settings(SettingsArgs),
    /// Print a finished run's summary from its record and reports (text or markdown).
    Summary(SummaryArgs),
    /// Post a run's markdown summary as a pull-request comment through the forge's API.
    Comment(CommentArgs),
    /// Print a shell completion script for SHELL on stdout.
    Completions(CompletionsArgs),
    /// Print a man page (roff) on stdout, generated from these definitions.
    Man(ManArgs),
    /// The harness half of `run` (started by the wrapper; not for direct use).
    #[command(name = "__harness", hide = true)]
    Harness(HarnessArgs),
    /// Diagnostic: take a lock, print `held`, hold it until stdin closes.
    #[command(name = "__hold-lock", hide = true)]
    HoldLock(HoldLockArgs),
    /// Test support: acquire and release one lock in a loop, logging to an oracle file.
    #[command(name = "__lock-stress", hide = true)]
    LockStress(LockStressArgs),
    /// Benchmark: median nanoseconds of acquire + release of an uncontended app lock.
    #[command(name = "__bench-lock", hide = true)]
    BenchLock(BenchLockArgs),
    /// Benchmark and test support: a run's fetch step (run tree, ref under test checked out) into DEST.
    #[command(name = "__run-tree", hide = true)]
    RunTree(RunTreeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Recipe to test (a lowercase DNS label).
    #[arg(long, env = "CCCI_RECIPE", allow_hyphen_values = true)]
    pub recipe: Option<String>,
    /// Git ref or sha of the recipe to test (default: the recipe's default branch).
    #[arg(long = "ref", env = "CCCI_REF", allow_hyphen_values = true)]
    pub git_ref: Option<String>,
    /// Pull request number: its head (`refs/pull/N/head`) is tested.
    #[arg(long, env = "CCCI_PR", allow_hyphen_values = true)]
    pub pr: Option<String>,
    /// abra server name to deploy to.
    #[arg(long, env = "CCCI_SERVER", default_value = "default")]
    pub server: String,
    /// App domain (default `{recipe}-{lane}.{CCCI_DOMAIN_SUFFIX}`).
    #[arg(long, env = "CCCI_DOMAIN", allow_hyphen_values = true)]
    pub domain: Option<String>,
    /// Base of the install tier: latest-release, last-green or a version tag
    /// [default: the recipe's ccci.toml `base`, else latest-release].
    #[arg(long, env = "CCCI_BASE", allow_hyphen_values = true)]
    pub base: Option<String>,
    /// One deploy of the ref under test, install-tier tests, teardown.
    #[arg(long, env = "CCCI_QUICK", value_parser = parse_switch)]
    pub quick: bool,
    /// Run deadline (SIGALRM, exit 142); waiting for the app lock counts.
    #[arg(long, env = "CCCI_TIMEOUT", default_value = "50m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bound of the teardown, independent of the run deadline.
    #[arg(long, env = "CCCI_TEARDOWN_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub teardown_timeout: Duration,
    /// Bound of each convergence wait after a deploy [default: the
    /// recipe's ccci.toml `converge_timeout`, else its timeout label
    /// coop-cloud.${STACK_NAME}.timeout, else 5m]. Given, it wins over both.
    #[arg(long, env = "CCCI_CONVERGE_TIMEOUT", value_parser = parse_duration)]
    pub converge_timeout: Option<Duration>,
    /// After a paused update, how long the current spec's tasks must run
    /// before the service counts as settled (a start-up hiccup).
    #[arg(long, env = "CCCI_STABLE_FOR", default_value = "10s", value_parser = parse_duration)]
    pub stable_for: Duration,
    /// Grace between SIGTERM and SIGKILL for leftover processes.
    #[arg(long, env = "CCCI_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    #[command(flatten)]
    pub tests: TestOptions,
}

/// `exec --grace`'s default.
const EXEC_GRACE: &str = "10s";

#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// Grace between SIGTERM and SIGKILL.
    #[arg(long, env = "CCCI_GRACE", default_value = EXEC_GRACE, value_parser = parse_duration)]
    pub grace: Duration,
    /// Deadline: SIGTERM to the command's group, exit 142.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `exec`'s own reading of its common command lines, for the hot path of
/// every guarded command (`cc-ci-run exec -- CMD`): building clap's whole
/// command tree costs more than the rest of the wrapper's start. `args` are
/// the words after `exec`, `grace_env` the value of `CCCI_GRACE`.
///
/// It only ever agrees with clap: it answers for `--grace D`, `--grace=D`,
/// `--timeout D`, `--timeout=D` (each at most once), an optional `--`, then
/// the command; anything else (`--help`, a global option, an unknown or
/// repeated option, a value clap would refuse, a word that is not UTF-8, no
/// command, an empty or bad `CCCI_GRACE`) is None, and the caller hands
/// the line to clap, which gives the answer or the error it always gave.
/// `tests/unit/cli.rs` holds it against clap on a table of lines.
pub fn exec_fast(
    args: &[std::ffi::OsString],
    grace_env: Option<&std::ffi::OsStr>,
) -> Option<ExecArgs> {
    let mut grace = None;
    let mut timeout = None;
    let mut i = 0;
    while i < args.len() {
        let word = args[i].to_str()?;
        if word == "--" {
            i += 1;
            break;
        }
        if !word.starts_with('-') {
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, v),
            None => {
                i += 1;
                (word, args.get(i)?.to_str()?)
            }
        };
        // clap reads a value that starts with `-` as the next option.
        if value.starts_with('-') || value.is_empty() {
            return None;
        }
        let slot = match name {
            "--grace" => &mut grace,
            "--timeout" => &mut timeout,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(parse_duration(value).ok()?);
        i += 1;
    }
    let command = args[i..]
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()?;
    if command.is_empty() {
        return None;
    }
    let grace = match (grace, grace_env) {
        (Some(g), _) => g,
        (None, Some(v)) => parse_duration(v.to_str().filter(|v| !v.is_empty())?).ok()?,
        (None, None) => parse_duration(EXEC_GRACE).ok()?,
    };
    Some(ExecArgs {
        grace,
        timeout,
        command,
    })
}

/// Options of the recipe test runner, shared by `run` and `test`.
#[derive(Debug, Args, Clone, Default)]
pub struct TestOptions {
    /// Only tests of this level (unit, integration, system).
    #[arg(long, env = "CCCI_TEST_LEVEL")]
    pub level: Option<String>,
    /// Only tests carrying this tag (repeatable: any of them).
    #[arg(long = "tag", env = "CCCI_TEST_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Include tests tagged `slow` (left out by default).
    #[arg(long, env = "CCCI_TEST_SLOW", value_parser = parse_switch)]
    pub slow: bool,
    /// Run tests in parallel.
    #[arg(long, env = "CCCI_TEST_PARALLEL", value_parser = parse_switch)]
    pub parallel: bool,
    /// Parallel workers (default: cores - 1, at least 1).
    #[arg(long, env = "CCCI_MAX_WORKERS")]
    pub max_workers: Option<usize>,
    /// Stop scheduling after the first failure and terminate running tests.
    #[arg(long, env = "CCCI_FAIL_FAST", value_parser = parse_switch)]
    pub fail_fast: bool,
    /// Rerun a failed test up to N times (a test header's `retries` wins);
    /// one that fails and then passes is flaky: reported, still green.
    #[arg(long, env = "CCCI_RETRIES", default_value_t = 0, value_parser = parse_retries)]
    pub retries: u32,
    /// A flaky test (failed, then passed on a rerun) fails the run.
    #[arg(long, env = "CCCI_FLAKY_FAILS", value_parser = parse_switch)]
    pub flaky_fails: bool,
    /// Log each test's pid, timeout and resource limits as it starts (test
    /// output is always streamed live, prefixed with the test's name).
    #[arg(long, env = "CCCI_VERBOSE", value_parser = parse_switch)]
    pub verbose: bool,
    /// Skip tests that already passed for the same run id and ref.
    #[arg(long, env = "CCCI_RESUME", value_parser = parse_switch)]
    pub resume: bool,
    /// Where report.json, junit.xml and the captured output go.
    #[arg(long, env = "CCCI_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Default per-test timeout (a test header's `timeout` wins).
    #[arg(long, env = "CCCI_TEST_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub test_timeout: Duration,
    /// Default per-test address-space limit (a header's `memory` wins).
    #[arg(long, env = "CCCI_TEST_MEMORY", value_parser = parse_size)]
    pub test_memory: Option<u64>,
    /// What each test stream (stdout, stderr) may leave in its captured
    /// file, on stderr and in the log: past it, the first and last halves
    /// are kept with a line saying how many bytes were dropped.
    #[arg(long, env = "CCCI_TEST_OUTPUT_LIMIT", default_value = "1M", value_parser = parse_size)]
    pub test_output_limit: u64,
    /// What the log file may hold: `run.log` of a run, `runner.log` of
    /// `test`. Past it, its first half and its newest lines are kept.
    #[arg(long, env = "CCCI_LOG_LIMIT", default_value = "16M", value_parser = parse_size)]
    pub log_limit: u64,
    /// Per-test CPU seconds limit (RLIMIT_CPU).
    #[arg(long, env = "CCCI_TEST_CPU", value_parser = parse_duration)]
    pub test_cpu: Option<Duration>,
    /// Per-test open files limit (RLIMIT_NOFILE).
    #[arg(long, env = "CCCI_TEST_NOFILE")]
    pub test_nofile: Option<u64>,
    /// Per-test processes limit (RLIMIT_NPROC, counted per user by the kernel).
    #[arg(long, env = "CCCI_TEST_NPROC")]
    pub test_nproc: Option<u64>,
    /// Sample host CPU and memory; past a threshold, checkpoint and exit 42.
    #[arg(long, env = "CCCI_SELF_PROTECT", value_parser = parse_switch)]
    pub self_protect: bool,
    /// Host CPU busy percentage that trips self-protection.
    #[arg(long, env = "CCCI_CPU_LIMIT", default_value_t = 95.0)]
    pub cpu_limit: f64,
    /// Host memory used percentage that trips self-protection.
    #[arg(long, env = "CCCI_MEM_LIMIT", default_value_t = 90.0)]
    pub mem_limit: f64,
    /// What a run (or a `test` invocation) in which no test ran means:
    /// fail (exit 1, the default), warn (a warning line, exit 0) or pass.
    #[arg(long, env = "CCCI_NO_TESTS", value_enum, default_value_t = NoTests::Fail)]
    pub no_tests: NoTests,
}

/// `--no-tests`: no tests, no green unless asked (SPEC section 6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NoTests {
    /// Exit 1 naming the filters that left nothing.
    #[default]
    Fail,
    /// A warning line, then exit 0.
    Warn,
    /// Exit 0.
    Pass,
}

#[derive(Debug, Args, Clone)]
pub struct TestArgs {
    /// Test files or directories (default: ./tests).
    pub paths: Vec<PathBuf>,
    /// Print what would run, in order, with metadata, and run nothing.
    #[arg(long)]
    pub list: bool,
    /// Tier whose tests to run (install, upgrade, backup, restore); default all.
    #[arg(long, env = "CCCI_TIER")]
    pub tier: Option<String>,
    /// Run id for the checkpoint and the container label (default `manual-<pid>`).
    #[arg(long, env = "CCCI_RUN_ID")]
    pub run_id: Option<String>,
    /// Ref under test, for checkpoint matching.
    #[arg(long = "ref", env = "CCCI_REF")]
    pub git_ref: Option<String>,
    /// Grace between SIGTERM and SIGKILL of a test's process group.
    #[arg(long, env = "CCCI_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    #[command(flatten)]
    pub tests: TestOptions,
}

#[derive(Debug, Args, Clone)]
pub struct JanitorArgs {
    /// Report what would be done; touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print each sweep's summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Keep sweeping at --interval until SIGTERM.
    #[arg(long)]
    pub watch: bool,
    /// Time between sweeps with --watch.
    #[arg(long, env = "CCCI_JANITOR_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub interval: Duration,
    /// Exit non-zero when a lock is held past CCCI_LOCK_MAX_AGE (monitoring).
    #[arg(long)]
    pub check: bool,
    /// abra server whose apps are swept.
    #[arg(long, env = "CCCI_SERVER", default_value = "default")]
    pub server: String,
    /// Bound of each reap's teardown.
    #[arg(long, env = "CCCI_TEARDOWN_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub teardown_timeout: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct LocksArgs {
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct UnlockArgs {
    /// The app domain or run id whose lock to remove.
    pub name: String,
    /// Which lock NAME is, when both an app lock and a run lock have that name.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Ask a live holder run to stop (SIGTERM to its harness) and wait for its teardown.
    #[arg(long)]
    pub terminate: bool,
    /// How long --terminate waits for the holder to release.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Redraw every 2 s until interrupted.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    /// Only runs of this app domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only runs of this recipe.
    #[arg(long)]
    pub recipe: Option<String>,
    /// Only runs with this verdict.
    #[arg(long, value_enum)]
    pub verdict: Option<crate::verdict::Verdict>,
    /// Only runs started within this long (e.g. 24h).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TimelineArgs {
    /// Runs that ended (or still run) within this long (default 24h).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Write the page to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Draw the newest N runs of the window (default 500); older ones are
    /// counted per app domain under the table.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    /// The run id (as `status` lists it).
    pub run: String,
    /// Follow a live run's log until it finishes; exit with its exit code.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SettingsArgs {
    /// The recipe: `$CCCI_CI_TESTS/RECIPE/ccci.toml` over the recipe's own
    /// `tests/ccci.toml` in its canonical checkout (`$ABRA_DIR/recipes/RECIPE`).
    pub recipe: String,
}

/// What `summary` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// The summary block the run printed last, and its failing tests.
    #[default]
    Text,
    /// What `comment` posts: verdict, tiers, failing tests with their last
    /// lines, restarts, warnings, timings, artifacts.
    Markdown,
}

#[derive(Debug, Args, Clone)]
pub struct SummaryArgs {
    /// The run id (as `status` lists it) [default: this Drone build's run,
    /// from DRONE_REPO and DRONE_BUILD_NUMBER].
    pub run: Option<String>,
    /// text or markdown.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

#[derive(Debug, Args, Clone)]
pub struct CommentArgs {
    /// The run id [default: this Drone build's run, from DRONE_REPO and
    /// DRONE_BUILD_NUMBER].
    pub run: Option<String>,
    /// The forge's base URL (`https://git.example.org`) [default:
    /// DRONE_REPO_LINK without its trailing `/OWNER/NAME`]. No variable
    /// sets it: a build's parameters must not send the token elsewhere.
    #[arg(long, value_name = "URL")]
    pub forge: Option<String>,
    /// The repository of the pull request, `OWNER/NAME` [default: DRONE_REPO].
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// The pull request [default: DRONE_PULL_REQUEST, else the run's --pr].
    #[arg(long)]
    pub pr: Option<String>,
    /// Bound of the request (curl's --max-time).
    #[arg(long, env = "CCCI_FORGE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the request (URL and body, never the token) instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ManArgs {
    /// The page of this subcommand (`cc-ci-run-COMMAND(1)`) instead of the main page.
    pub command: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct HarnessArgs {
    /// The wrapper's pid: the harness's parent must be this process.
    #[arg(long)]
    pub wrapper_pid: i32,
    /// The wrapper's own arguments (`run ...`), parsed again by the harness.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `__hold-lock`: an operator's diagnostic as much as a test stand-in. It
/// takes a lock exactly as a run does (waiting visibly while it is busy),
/// prints `held` on stdout, and holds it until its stdin closes or it is
/// killed: for example, to keep runs off an app domain during maintenance
/// (`cc-ci-run __hold-lock app DOMAIN`, then Ctrl-D to release).
#[derive(Debug, Args, Clone)]
pub struct HoldLockArgs {
    /// app or run.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The app domain or run id.
    pub name: String,
    /// The run id written into the owner record (default `manual-<pid>`).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Do not wait: if the lock is busy, name the holder and exit 75.
    #[arg(long = "try")]
    pub try_only: bool,
    /// Give up waiting after this long (exit 1).
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// How often to say who holds the lock while waiting.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub progress: Duration,
    /// A command to start while holding the lock (its pid is printed as
    /// `child PID`); it is killed when the lock is released.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `__lock-stress`: races acquirers and unlockers on one app lock; every
/// holder appends `enter` and `exit` lines to the oracle file (O_APPEND), so
/// two holders at once show up as two `enter` lines in a row.
#[derive(Debug, Args, Clone)]
pub struct LockStressArgs {
    /// The app domain whose lock to race on.
    pub name: String,
    /// How many rounds.
    #[arg(long)]
    pub iterations: u64,
    /// The file the holders append to.
    #[arg(long)]
    pub oracle: PathBuf,
    /// Act as `unlock` does (try an existing file, remove it when free)
    /// instead of as a run (wait, hold, release or remove).
    #[arg(long)]
    pub unlocker: bool,
    /// How long to stay inside each round (swarm backend). The holder asks
    /// every 20 ms whether it may still mutate, as a run does before each
    /// step; once refused it writes `exit ... lost` and exits 3.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `__bench-lock N`: prints the median ns of try-acquire + release.
#[derive(Debug, Args, Clone)]
pub struct BenchLockArgs {
    /// How many acquire + release rounds to time.
    pub iterations: usize,
    /// The app domain to lock (default `bench.lock.invalid`).
    #[arg(long)]
    pub name: Option<String>,
}

/// `__run-tree`: the fetch step of a run (SPEC section 3 step 3), with
/// the run's own code, from the canonical recipe repository CANONICAL
/// into DEST; prints one JSON line: the sha checked out, whether the tree
/// was written in process, the tags reachable and the tags on the sha.
#[derive(Debug, Args, Clone)]
pub struct RunTreeArgs {
    /// The canonical recipe repository (`$ABRA_DIR/recipes/NAME`).
    #[arg(long)]
    pub canonical: PathBuf,
    /// Where the run tree goes (must not exist, or be empty).
    #[arg(long)]
    pub dest: PathBuf,
    /// As `run --pr`.
    #[arg(long)]
    pub pr: Option<u32>,
    /// As `run --ref`.
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// As `CCCI_SKIP_FETCH=1`.
    #[arg(long)]
    pub skip_fetch: bool,
    /// git clone and fetch only, as before the in-process tree.
    #[arg(long)]
    pub git_only: bool,
}

/// The most reruns a test may ask for (`--retries` or its header's
/// `retries`): a test that fails a hundred times is broken, not flaky, and
/// a typo (`1000`) would otherwise hold a CI slot for hours.
pub const MAX_RETRIES: u32 = 100;

/// `--retries`: a whole number up to [`MAX_RETRIES`].
fn parse_retries(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number from 0"))?;
    if n > MAX_RETRIES {
        return Err(format!(
            "{n} is more than {MAX_RETRIES} (a test that fails that often is broken, not flaky)"
        ));
    }
    Ok(n)
}

/// A switch set from the environment (`CCCI_QUICK=1`): the one on/off
/// rule of [`crate::config::switch`].
fn parse_switch(text: &str) -> Result<bool, String> {
    crate::config::switch(text).ok_or_else(|| crate::config::SWITCH_RULE.to_string())
}
