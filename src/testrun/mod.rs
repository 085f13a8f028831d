//! The recipe test runner of SPEC section 6: `cc-ci-run test`, and the
//! library entry point the `run` lifecycle calls once per tier.
//!
//! - `meta`: a test file's header (pure);
//! - `select`: filters, dependency order and the ready queue (pure);
//! - `exec`: running the tests (processes, limits, timeouts, leaks);
//! - `cap`: the head-and-tail rule of a test's output (pure);
//! - `checkpoint`: progress for `--resume`, a journal appended per passed test;
//! - `protect`: host CPU and memory thresholds (`--self-protect`);
//! - `containers`: removal of the containers tests labelled;
//! - `report`: summary table, `report.json`;
//! - `junit`: `junit.xml` per tier and the run's merged one.
//!
//! This file discovers test files, validates the options into a [`Plan`]
//! (everything that can be wrong with the input is found here, before any
//! test starts: exit 2), and prints `--list`.

pub mod cap;
pub mod cases;
pub mod checkpoint;
pub(crate) mod containers;
pub(crate) mod exec;
pub mod junit;
pub mod meta;
pub mod protect;
pub mod report;
pub mod select;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::TestOptions;
use crate::config::names;
use crate::exit::Failure;
use crate::sys::latch::Latch;
use meta::{Level, Meta, Tier};
use select::{Filter, Item, LeftOut, Scheduler};

/// One suite: the tests under `paths` for one tier of one run.
#[derive(Clone, Debug)]
pub(crate) struct Suite {
    /// Test files, or directories searched recursively for executable files.
    pub paths: Vec<PathBuf>,
    /// How reports name a test under a root of `paths` (junit.xml's `file`):
    /// `(root, shown)` shows `root/x.sh` as `shown/x.sh`. A run stages the
    /// recipe's tests inside its tree (deleted afterwards) and shows them as
    /// `tests`; a root not listed is shown as given.
    pub shown_as: Vec<(PathBuf, String)>,
    /// The recipe under test (junit.xml's classname is `<recipe>.<tier>`);
    /// None standalone.
    pub recipe: Option<String>,
    /// The tier (install, upgrade, backup, restore); None: every test.
    pub tier: Option<String>,
    /// Names the checkpoint and the container label (`cc-ci.run=<run-id>`).
    pub run_id: String,
    /// The ref under test: a checkpoint of another ref is not resumed.
    pub git_ref: String,
    /// Where `report.json`, `junit.xml`, the checkpoint and the output go.
    pub report_dir: PathBuf,
    /// Extra environment for the tests (CCCI_APP_DOMAIN and the like); it
    /// wins over the runner's own CCCI_* variables.
    pub env: Vec<(String, String)>,
    /// SIGTERM → SIGKILL grace for a test's process group.
    pub grace: Duration,
    pub options: TestOptions,
    /// Where the runner finds the host's docker and /proc.
    pub host: Host,
    /// A stop by a signal (a cancel, the run deadline, the wrapper's death)
    /// leaves the labelled containers to the caller, which must remove
    /// them ([`containers::Removal`]) when [`SuiteOutcome::containers_left`]
    /// says so. `run` sets it: its teardown starts at once and removes them
    /// beside the app's undeploy. `test` alone does not (nothing after it
    /// would).
    pub leave_containers_on_signal: bool,
    /// Built-in tests the caller already ran (`run`'s floor), reported
    /// first and counted like the others; when one failed, none of the
    /// suite's own tests is started (each is skipped, saying why).
    pub builtin: Vec<report::TestReport>,
}

/// What the runner reads of the host, from the injected environment (so a
/// test can point it at a stand-in): the engine for the end-of-suite
/// container cleanup (the `DOCKER_HOST` that `ext::Tools::from_env` resolved,
/// else the default socket; None: no socket there), and the
/// directory self-protection reads `stat` and `meminfo` from
/// (`CCCI_SELF_PROTECT_PROC_DIR`, else /proc).
#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub docker: Option<crate::ext::docker::Docker>,
    pub proc_dir: PathBuf,
}

impl Host {
    pub(crate) fn new(
        tools: &crate::ext::Tools,
        env: &std::collections::HashMap<String, String>,
    ) -> Host {
        Host {
            docker: crate::ext::docker::Docker::reachable(tools.docker_host.as_deref()),
            proc_dir: env
                .get(protect::PROC_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from("/proc"), PathBuf::from),
        }
    }
}

/// How a suite ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SuiteOutcome {
    /// 0 all passed, 1 a test failed, 42 self-protection, 130/143 (or the
    /// funnel's code) when stopped by a signal.
    pub exit_code: i32,
    pub passed: usize,
    pub failed: usize,
    /// Tests that failed and then passed on a rerun (counted in `passed`,
    /// or in `failed` with `--flaky-fails`).
    pub flaky: usize,
    /// Skipped, cancelled, and passed earlier (resume).
    pub skipped: usize,
    /// The tests' own cases (`CCCI_JUNIT_OUT`, see [`cases`]).
    pub cases_passed: usize,
    pub cases_failed: usize,
    pub cases_skipped: usize,
    /// Tests the filters selected (0: nothing was tested).
    pub selected: usize,
    /// Test files discovered before the filters.
    pub discovered: usize,
    /// The labelled containers are the caller's to remove (see
    /// [`Suite::leave_containers_on_signal`]).
    pub containers_left: bool,
}

/// Every test option that can be wrong, checked without discovering or
/// running anything (pure): `run` calls it before its first external
/// command, `test` before its first test.
pub(crate) fn validate_options(options: &TestOptions) -> Result<()> {
    filter_for(None, options)?;
    workers_for(options, 1)?;
    check_limits(options)?;
    for tag in &options.tags {
        let t = tag.trim();
        if !t.is_empty() && !names::is_tag(t) {
            return Err(Failure::usage(format!(
                "invalid --tag {t:?}: a tag {}",
                names::TAG_RULE
            )));
        }
    }
    Ok(())
}

/// The filters of a suite in words, for the message that says why nothing
/// ran: `tier install, --tag typo` (or `no filter`).
pub(crate) fn describe_filters(tier: Option<&str>, options: &TestOptions) -> String {
    let mut parts = Vec::new();
    if let Some(t) = tier.filter(|t| !t.is_empty()) {
        parts.push(format!("tier {t}"));
    }
    if let Some(l) = options.level.as_deref().filter(|l| !l.is_empty()) {
        parts.push(format!("--level {l}"));
    }
    let tags: Vec<&str> = options
        .tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    if !tags.is_empty() {
        parts.push(format!("--tag {}", tags.join(",")));
    }
    if !options.slow {
        parts.push("slow tests left out (no --slow)".to_string());
    }
    if parts.is_empty() {
        "no filter".to_string()
    } else {
        parts.join(", ")
    }
}

/// What an empty selection means under `--no-tests` (pure): Some(exit
/// code) with whether to warn, or None when tests ran.
pub(crate) fn no_tests_outcome(
    policy: crate::cli::NoTests,
    tests_ran: usize,
) -> Option<(i32, bool)> {
    use crate::cli::NoTests;
    if tests_ran > 0 {
        return None;
    }
    Some(match policy {
        NoTests::Fail => (crate::exit::TESTS_FAILED, false),
        NoTests::Warn => (crate::exit::OK, true),
        NoTests::Pass => (crate::exit::OK, false),
    })
}

/// A discovered test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// The file name: what `depends-on`, the checkpoint and reports use.
    pub name: String,
    pub path: PathBuf,
    /// The path reports show (see [`Suite::shown_as`]).
    pub file: String,
    pub meta: Meta,
}

/// Runs `suite` and reports. Stops early, with the funnel's code, when
/// `cancel` is set. Must be called from a thread that lives as long as the
/// process (the main thread): the tests' PDEATHSIG fires when the thread
/// that spawned them ends.
pub(crate) fn run_suite(suite: &Suite, cancel: Option<&Latch>) -> Result<SuiteOutcome> {
    let plan = plan(suite)?;
    exec::run(suite, plan, cancel)
}

/// A validated suite: the selected tests and how to run them.
#[derive(Debug)]
pub(crate) struct Plan {
    pub tier: Option<Tier>,
    /// Selected tests; scheduler indices are positions in this list.
    pub tests: Vec<TestCase>,
    pub scheduler: Scheduler,
    pub left_out: Vec<(TestCase, LeftOut)>,
    /// How many tests may run at once.
    pub workers: usize,
}

/// Discovers, parses, filters and orders; every input error is exit 2.
pub(crate) fn plan(suite: &Suite) -> Result<Plan> {
    let filter = filter_for(suite.tier.as_deref(), &suite.options)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = workers_for(&suite.options, cores)?;
    check_limits(&suite.options)?;
    let found = discover(&suite.paths, &suite.shown_as)?;
    if let Some((a, b)) = select::duplicate_names(&found) {
        return Err(Failure::usage(format!(
            "two tests are named `{}` ({} and {}): depends-on, the checkpoint and the reports name tests by file name",
            a.name,
            a.path.display(),
            b.path.display()
        )));
    }
    for (test, dep) in select::unknown_dependencies(&found) {
        crate::say!(
            "warning: {test}: depends-on `{dep}` names no discovered test; it orders nothing"
        );
    }
    let sel = select::select(&found, &filter);
    let tests: Vec<TestCase> = sel.chosen.iter().map(|&i| found[i].clone()).collect();
    let items: Vec<Item> = tests.iter().map(Item::of).collect();
    let scheduler = Scheduler::new(&items).map_err(|e| Failure::usage(e.to_string()))?;
    let left_out = sel
        .left_out
        .into_iter()
        .map(|(i, why)| (found[i].clone(), why))
        .collect();
    Ok(Plan {
        tier: filter.tier,
        tests,
        scheduler,
        left_out,
        workers,
    })
}

/// The selection filter of the options (pure; bad values are exit 2).
pub fn filter_for(tier: Option<&str>, options: &TestOptions) -> Result<Filter> {
    let tier = tier
        .filter(|t| !t.is_empty())
        .map(|t| {
            Tier::parse(t)
                .ok_or_else(|| Failure::usage(format!("tier `{t}` is not one of {}", Tier::NAMES)))
        })
        .transpose()?;
    let level = options
        .level
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(|l| {
            Level::parse(l).ok_or_else(|| {
                Failure::usage(format!(
                    "--level `{l}` is not one of unit, integration, system"
                ))
            })
        })
        .transpose()?;
    let tags: Vec<String> = options
        .tags
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    Ok(Filter {
        tier,
        level,
        tags,
        slow: options.slow,
    })
}

/// How many tests run at once: 1 unless `--parallel`; then `--max-workers`
/// or cores − 1, at least 1 (pure).
pub fn workers_for(options: &TestOptions, cores: usize) -> Result<usize> {
    match (options.parallel, options.max_workers) {
        (_, Some(0)) => Err(Failure::usage("--max-workers must be at least 1")),
        (false, _) => Ok(1),
        (true, Some(n)) => Ok(n),
        (true, None) => Ok(cores.saturating_sub(1).max(1)),
    }
}

fn check_limits(options: &TestOptions) -> Result<()> {
    for (flag, v) in [
        ("--cpu-limit", options.cpu_limit),
        ("--mem-limit", options.mem_limit),
    ] {
        if !(v > 0.0 && v <= 100.0) {
            return Err(Failure::usage(format!(
                "{flag} {v} is not a percentage of the host in (0, 100]"
            )));
        }
    }
    for (flag, v) in [
        ("--test-nofile", options.test_nofile),
        ("--test-nproc", options.test_nproc),
        ("--test-memory", options.test_memory),
    ] {
        if v == Some(0) {
            return Err(Failure::usage(format!("{flag} must be more than 0")));
        }
    }
    if !(cap::MIN_LIMIT..=cap::MAX_LIMIT).contains(&options.test_output_limit) {
        return Err(Failure::usage(format!(
            "--test-output-limit {} is out of range: it must be from {} to {} (half of it per stream is held in memory while a test runs)",
            options.test_output_limit,
            report::human_bytes(cap::MIN_LIMIT),
            report::human_bytes(cap::MAX_LIMIT)
        )));
    }
    if options.log_limit < crate::log::MIN_LOG_LIMIT {
        return Err(Failure::usage(format!(
            "--log-limit {} is too small: it must be at least {}",
            options.log_limit,
            report::human_bytes(crate::log::MIN_LOG_LIMIT)
        )));
    }
    if options.test_timeout.is_zero() {
        return Err(Failure::usage("--test-timeout must be longer than 0"));
    }
    if options.test_cpu.is_some_and(|d| d.as_secs() == 0) {
        return Err(Failure::usage("--test-cpu must be at least 1s"));
    }
    Ok(())
}

/// How much of a file the header parser reads: headers are at the top.
const HEADER_BYTES: u64 = 64 * 1024;

/// How reports show `file`, found under `root` (pure): `shown` (or the
/// root as given) followed by the path below the root.
pub fn shown_path(root: &Path, shown: Option<&str>, file: &Path) -> String {
    let base = shown.map_or_else(|| root.to_path_buf(), PathBuf::from);
    match file.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => base.display().to_string(),
        Ok(rel) => base.join(rel).display().to_string(),
        Err(_) => file.display().to_string(),
    }
}

/// The executable files under `paths` (a file given by name must be
/// executable; directories are searched recursively, in name order,
/// leaving out hidden entries and non-executable files such as helpers
/// and fixtures), each with its parsed header and the path reports show
/// (`shown_as`, see [`Suite::shown_as`]).
pub(crate) fn discover(paths: &[PathBuf], shown_as: &[(PathBuf, String)]) -> Result<Vec<TestCase>> {
    let mut out = Vec::new();
    for root in paths {
        let shown = shown_as
            .iter()
            .find(|(r, _)| r == root)
            .map(|(_, s)| s.as_str());
        let load_shown = |file: &Path| -> Result<TestCase> {
            let mut case = load(file)?;
            case.file = shown_path(root, shown, file);
            Ok(case)
        };
        let meta = std::fs::metadata(root)
            .map_err(|e| Failure::usage(format!("test path {}: {e}", root.display())))?;
        if meta.is_file() {
            if !is_executable(&meta) {
                return Err(Failure::usage(format!(
                    "test file {} is not executable (chmod +x it)",
                    root.display()
                )));
            }
            out.push(load_shown(root)?);
            continue;
        }
        let walk = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            let entry = entry
                .with_context(|| format!("failed to read test directory {}", root.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let md = entry
                .metadata()
                .with_context(|| format!("failed to stat {}", entry.path().display()))?;
            if is_executable(&md) {
                out.push(load_shown(entry.path())?);
            }
        }
    }
    Ok(out)
}

fn is_executable(md: &std::fs::Metadata) -> bool {
    md.is_file() && md.permissions().mode() & 0o111 != 0
}

/// Reads one test file's header; a malformed one is exit 2 naming the file
/// and the line.
pub(crate) fn load(path: &Path) -> Result<TestCase> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::usage(format!("test path {} has no file name", path.display())))?;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_BYTES).read_to_end(&mut head))
        .with_context(|| format!("failed to read test file {}", path.display()))?;
    let text = String::from_utf8_lossy(&head);
    let meta = meta::parse_header(&text)
        .map_err(|e| Failure::usage(format!("{}:{}: {}", path.display(), e.line, e.message)))?;
    let file = path.display().to_string();
    let path = std::path::absolute(path)
        .with_context(|| format!("failed to resolve {}", path.display()))?;
    Ok(TestCase {
        name,
        path,
        file,
        meta,
    })
}

/// What `--list` prints: the tests in the order a sequential run starts
/// them, one per line, with their metadata.
pub(crate) fn render_list(plan: &Plan, options: &TestOptions) -> String {
    let header = [
        "TEST",
        "LEVEL",
        "TIERS",
        "TAGS",
        "PRIORITY",
        "TIMEOUT",
        "MEMORY",
        "RETRIES",
        "DEPENDS-ON",
        "PATH",
    ];
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for i in plan.scheduler.planned_order() {
        let t = &plan.tests[i];
        let m = &t.meta;
        let tiers = if m.tiers.is_empty() {
            "all".to_string()
        } else {
            m.tiers
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(vec![
            t.name.clone(),
            dash(m.level.map(|l| l.to_string()).unwrap_or_default()),
            tiers,
            dash(m.tags.join(",")),
            m.priority.to_string(),
            crate::units::human(m.timeout.unwrap_or(options.test_timeout)),
            dash(
                m.memory
                    .or(options.test_memory)
                    .map(report::human_bytes)
                    .unwrap_or_default(),
            ),
            m.retries.unwrap_or(options.retries).to_string(),
            dash(m.depends_on.join(",")),
            t.path.display().to_string(),
        ]);
    }
    crate::table::render(&rows)
}
