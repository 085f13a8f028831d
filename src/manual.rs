//! The reference tables of `--help` and the man page: EXIT STATUS,
//! ENVIRONMENT and FILES, written once here. `--help` shows them after the
//! options (`-h` the exit codes only), `cc-ci-run man` renders them as
//! roff sections, so the two cannot drift; a unit test greps the source for
//! every `CCCI_*`/`DRONE_*` variable and fails when one is missing here.

use std::fmt::Write as _;

use crate::exit;

/// Exit codes (SPEC section 2), from the constants `exit` defines.
pub const EXIT_STATUS: &[(i32, &str)] = &[
    (exit::OK, "tests passed, teardown clean"),
    (
        exit::TESTS_FAILED,
        "tests failed (or a static check of the recipe)",
    ),
    (exit::USAGE, "bad input or usage: nothing was touched"),
    (
        exit::INFRA,
        "infrastructure failure (fetch, deploy, convergence, engine, state directory)",
    ),
    (
        exit::TEARDOWN_FAILED,
        "tests passed but teardown failed: the app is left for the janitor",
    ),
    (
        exit::SELF_PROTECT,
        "the test runner's self-protection stopped the run",
    ),
    (
        exit::NOT_EXECUTABLE,
        "exec only: CMD could not be executed (the shell's code)",
    ),
    (
        exit::NOT_FOUND,
        "exec only: CMD was not found (the shell's code)",
    ),
    (
        exit::DUPLICATE_RUN,
        "another run with the same run id is active",
    ),
    (exit::SIGHUP, "cancelled by SIGHUP"),
    (exit::SIGINT, "cancelled by SIGINT"),
    (
        exit::DEADLINE,
        "the run deadline (--timeout, SIGALRM) passed",
    ),
    (
        exit::SIGTERM,
        "cancelled by SIGTERM (also: Drone's SIGKILL of the step)",
    ),
];

/// Prefixes of variables left to the stand-ins, the example recipe and the
/// project's own test tooling (tests/fake, scripts/make-example-recipe.sh,
/// .ci/run): cc-ci-run never reads them, and its check of the environment
/// does not report them.
pub const RESERVED_PREFIXES: [&str; 3] = ["CCCI_FAKE_", "CCCI_EXAMPLE_", "CCCI_DEV_"];

/// What a build may set in its environment whatever the host file says:
/// which recipe and revision, the pull request, the quick lane, the base
/// of the upgrade tier and the test selection. Every other variable
/// `--help` lists (the timeouts, the limits, the programs, the state, the
/// engine) is host-owned.
pub const BUILD_SETTABLE: &[&str] = &[
    "CCCI_RECIPE",
    "CCCI_REF",
    "CCCI_PR",
    "CCCI_QUICK",
    "CCCI_BASE",
    "CCCI_TIER",
    "CCCI_TEST_LEVEL",
    "CCCI_TEST_TAGS",
    "CCCI_TEST_SLOW",
    "CCCI_TEST_PARALLEL",
    "CCCI_MAX_WORKERS",
    "CCCI_FAIL_FAST",
    "CCCI_RETRIES",
    "CCCI_FLAKY_FAILS",
    "CCCI_VERBOSE",
    // The forge token of `comment`, from a Drone secret in the step's
    // environment: it decides as whom the comment is posted, never where
    // (`--forge` or DRONE_REPO_LINK do).
    "CCCI_FORGE_TOKEN",
];

/// Variables of other programs that decide where a run's work goes: the
/// engine docker talks to and the credentials it pulls with. Host-owned
/// like the `CCCI_*` ones.
pub const HOST_OWNED_OTHERS: &[&str] = &["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"];

/// The default column of the variables cc-ci-run sets for the tests it
/// runs (and does not read).
pub const SET_FOR_TESTS: &str = "(set)";

/// One variable: its name, its default (or `-`) and what it does.
pub struct EnvVar {
    pub name: &'static str,
    pub default: &'static str,
    pub what: &'static str,
}

const fn v(name: &'static str, default: &'static str, what: &'static str) -> EnvVar {
    EnvVar {
        name,
        default,
        what,
    }
}

/// Every variable cc-ci-run reads (and the ones it sets for the tests it
/// runs, last). Flags with an environment fallback are named here too.
pub const ENVIRONMENT: &[EnvVar] = &[
    v(
        "CCCI_STATE_DIR",
        "/var/lib/cc-ci-run",
        "locks, run trees, run records, logs, reports (--state-dir)",
    ),
    v(
        "CCCI_ABRA_HOME",
        "-",
        "the host's canonical abra directory (else ABRA_DIR); required by run and janitor",
    ),
    v("ABRA_DIR", "-", "read when CCCI_ABRA_HOME is unset"),
    v("CCCI_RECIPE", "-", "run --recipe"),
    v("CCCI_REF", "-", "run/test --ref"),
    v(
        "CCCI_PR",
        "-",
        "run --pr: the pull request whose head is tested",
    ),
    v("CCCI_SERVER", "default", "abra server (run, janitor)"),
    v("CCCI_DOMAIN", "template", "run --domain"),
    v(
        "CCCI_DOMAIN_SUFFIX",
        "ci.localhost",
        "suffix of the app domain template",
    ),
    v(
        "CCCI_BASE",
        "ccci.toml base, else latest-release",
        "run --base",
    ),
    v("CCCI_QUICK", "off", "run --quick"),
    v(
        "CCCI_RUN_ID",
        "drone-REPO-BUILD",
        "run id (run, test --run-id); also set for tests",
    ),
    v("CCCI_TIMEOUT", "50m", "run deadline"),
    v(
        "CCCI_TEARDOWN_TIMEOUT",
        "5m",
        "teardown bound (run, janitor)",
    ),
    v(
        "CCCI_CONVERGE_TIMEOUT",
        "ccci.toml converge_timeout, else the recipe's timeout label, else 5m",
        "each convergence wait; given, it wins over both",
    ),
    v(
        "CCCI_STABLE_FOR",
        "10s",
        "after a paused update, how long the new tasks must run",
    ),
    v("CCCI_GRACE", "10s", "SIGTERM to SIGKILL grace"),
    v(
        "CCCI_SKIP_FETCH",
        "off",
        "stage the canonical checkout as it is",
    ),
    v(
        "CCCI_CI_TESTS",
        "tests",
        "the CI repository's per-recipe tests directory (and RECIPE/ccci.toml)",
    ),
    v("CCCI_ABRA", "abra", "the abra program"),
    v(
        "CCCI_DOCKER",
        "docker",
        "the docker program a run gives its tests (cc-ci-run itself talks to the engine's API on DOCKER_HOST)",
    ),
    v("CCCI_GIT", "git", "the git program"),
    v(
        "CCCI_CURL",
        "curl",
        "the curl program (comment posts through it)",
    ),
    v(
        "CCCI_FORGE_TOKEN",
        "-",
        "comment: the forge's API token (a Drone secret; never printed)",
    ),
    v("CCCI_FORGE_TIMEOUT", "30s", "comment --timeout"),
    v(
        "CCCI_RUN_APP_RE",
        "template",
        "apps the janitor may reap (anchored regex)",
    ),
    v(
        "CCCI_PROTECTED_APPS",
        "-",
        "comma list the janitor never touches",
    ),
    v("CCCI_JANITOR", "on", "off: no janitor sweeps"),
    v("CCCI_JANITOR_INTERVAL", "5m", "janitor --watch interval"),
    v("CCCI_LOCK_MAX_AGE", "2h", "locks held longer are flagged"),
    v(
        "CCCI_RECORD_RETENTION",
        "336h",
        "finished run records older are pruned",
    ),
    v(
        "CCCI_LOCK_BACKEND",
        "flock",
        "flock or swarm: who arbitrates app-domain locks",
    ),
    v(
        "CCCI_HOST_ID",
        "host name",
        "this host's name in swarm lock labels",
    ),
    v("CCCI_LOCK_LEASE", "30s", "swarm lock lease"),
    v("CCCI_LOCK_RENEW", "lease/3", "swarm lock renewal interval"),
    v("CCCI_LOCK_MARGIN", "lease/3", "swarm lock take-over margin"),
    v(
        "CCCI_METRICS_FILE",
        "-",
        "Prometheus text file rewritten after every run and sweep (absolute, *.prom)",
    ),
    v(
        "CCCI_TIMELINE_FILE",
        "-",
        "HTML timeline page rewritten after every run (absolute)",
    ),
    v("CCCI_TIER", "all", "test --tier; also set for tests"),
    v("CCCI_TEST_LEVEL", "-", "--level"),
    v("CCCI_TEST_TAGS", "-", "--tag, comma list"),
    v("CCCI_TEST_SLOW", "off", "--slow"),
    v("CCCI_TEST_PARALLEL", "off", "--parallel"),
    v("CCCI_MAX_WORKERS", "cores-1", "--max-workers"),
    v("CCCI_FAIL_FAST", "off", "--fail-fast"),
    v(
        "CCCI_RETRIES",
        "0",
        "--retries (a test header's retries wins)",
    ),
    v("CCCI_FLAKY_FAILS", "off", "--flaky-fails"),
    v("CCCI_VERBOSE", "off", "--verbose"),
    v("CCCI_RESUME", "off", "--resume"),
    v("CCCI_REPORT_DIR", "-", "--report-dir"),
    v("CCCI_TEST_TIMEOUT", "10m", "--test-timeout"),
    v("CCCI_TEST_MEMORY", "-", "--test-memory"),
    v("CCCI_TEST_CPU", "-", "--test-cpu"),
    v("CCCI_TEST_NOFILE", "-", "--test-nofile"),
    v("CCCI_TEST_NPROC", "-", "--test-nproc"),
    v(
        "CCCI_TEST_OUTPUT_LIMIT",
        "1M",
        "--test-output-limit (per test stream: its captured file, its lines on stderr and in the log)",
    ),
    v(
        "CCCI_LOG_LIMIT",
        "16M",
        "--log-limit (run.log, or runner.log of test)",
    ),
    v("CCCI_SELF_PROTECT", "off", "--self-protect"),
    v(
        "CCCI_SELF_PROTECT_PROC_DIR",
        "/proc",
        "where self-protection reads host load (tests only)",
    ),
    v("CCCI_CPU_LIMIT", "95", "--cpu-limit"),
    v("CCCI_MEM_LIMIT", "90", "--mem-limit"),
    v("CCCI_NO_TESTS", "fail", "--no-tests"),
    v("DRONE_REPO", "-", "with DRONE_BUILD_NUMBER, the run id"),
    v("DRONE_BUILD_NUMBER", "-", "with DRONE_REPO, the run id"),
    v(
        "DRONE_BUILD_EVENT",
        "-",
        "custom: DRONE_COMMIT_SHA is not the recipe's",
    ),
    v("DRONE_PULL_REQUEST", "-", "default of --pr"),
    v("DRONE_COMMIT_SHA", "-", "default of --ref"),
    v(
        "DRONE_REPO_LINK",
        "-",
        "comment: the forge's base URL is this without /DRONE_REPO",
    ),
    v(
        "CCCI_REDACT",
        "-",
        "secrets hidden as *** in the output: variable names, /file paths",
    ),
    v(
        "CCCI_APP_URL_TEMPLATE",
        "https://{domain}/",
        "the app's base URL the tests get; {domain} is replaced",
    ),
    v(
        "CCCI_FLOOR",
        "the recipe's ccci.toml floor, else on",
        "the floor: on or off; given, it wins over the recipe's floor",
    ),
    v("CCCI_APP_DOMAIN", SET_FOR_TESTS, "for tests: the app under test"),
    v(
        "CCCI_APP_URL",
        SET_FOR_TESTS,
        "for tests: the app's base URL (CCCI_APP_URL_TEMPLATE)",
    ),
    v(
        "CCCI_BASE_VERSION",
        SET_FOR_TESTS,
        "for tests: the release the install tier deployed (empty: none)",
    ),
    v(
        "CCCI_TESTED_SHA",
        SET_FOR_TESTS,
        "for tests: the commit under test",
    ),
    v(
        "CCCI_ARTIFACTS",
        SET_FOR_TESTS,
        "for tests: a directory whose files are kept with the reports",
    ),
    v(
        "CCCI_JUNIT_OUT",
        SET_FOR_TESTS,
        "for tests: where JUnit of their own cases goes (pytest --junitxml)",
    ),
    v("CCCI_STACK", SET_FOR_TESTS, "for tests: its stack name"),
    v(
        "CCCI_CONTAINER_LABEL",
        SET_FOR_TESTS,
        "for tests: label for containers they start",
    ),
    v(
        "CCCI_TEST_NAME",
        SET_FOR_TESTS,
        "for tests: the test's name",
    ),
    v(
        "CCCI_TEST_SUITE",
        SET_FOR_TESTS,
        "for tests: marks the suite's processes",
    ),
];

/// The state directory's layout (SPEC sections 1, 3, 4).
pub const FILES: &[(&str, &str)] = &[
    (
        "STATE/locks/apps/DOMAIN.lock",
        "an app domain's lock (flock; owner record inside)",
    ),
    (
        "STATE/locks/runs/RUN.lock",
        "a run's lock: held while the run lives",
    ),
    (
        "STATE/runs/RUN/run.json",
        "the run record (atomic rewrite at every phase)",
    ),
    ("STATE/runs/RUN/run.log", "the run's log"),
    (
        "STATE/runs/RUN/report/",
        "report.json and junit.xml per tier, and the merged junit.xml",
    ),
    (
        "STATE/runs/RUN/report/TIER/cases/TEST/junit.xml",
        "the JUnit a test wrote to CCCI_JUNIT_OUT (its cases are merged)",
    ),
    (
        "STATE/runs/RUN/report/artifacts/TIER/",
        "files the tier's tests left in CCCI_ARTIFACTS",
    ),
    (
        "STATE/runs/RUN/abra/, work/",
        "the run tree (ABRA_DIR, scratch), removed when the run ends",
    ),
    (
        "/etc/cc-ci-run/host.env",
        "the host's settings (--host-settings): host-owned settings no environment may change",
    ),
    (
        "STATE/metrics.json, metrics.lock",
        "the metrics counters' tally and its lock",
    ),
];

/// After `-h`: the exit codes.
pub fn after_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (code, what) in EXIT_STATUS {
        let _ = writeln!(s, "  {code:>3}  {what}");
    }
    s.push_str(
        "\n--help also lists the environment and the files; `cc-ci-run man` prints the man page.",
    );
    s
}

/// After `--help`: exit codes, environment, files.
pub fn after_long_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (code, what) in EXIT_STATUS {
        let _ = writeln!(s, "  {code:>3}  {what}");
    }
    s.push_str("\nEnvironment (default in brackets):\n");
    for e in ENVIRONMENT {
        let _ = writeln!(s, "  {} [{}]\n      {}", e.name, e.default, e.what);
    }
    s.push_str(
        "\nWith a host settings file, a build's environment may set only these; \
         every other variable above is the host's (a different value is exit 2):\n  ",
    );
    s.push_str(&BUILD_SETTABLE.join(" "));
    s.push_str("\n  (and DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG are the host's too)\n");
    s.push_str("\nFiles (STATE is the state directory):\n");
    for (path, what) in FILES {
        let _ = writeln!(s, "  {path}\n      {what}");
    }
    s
}

/// Text for a roff line: backslashes escaped, a leading `.` or `'` made
/// literal.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The man page's EXIT STATUS, ENVIRONMENT and FILES sections (roff).
pub fn man_sections() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, what) in EXIT_STATUS {
        let _ = write!(s, ".TP\n\\fB{code}\\fR\n{}\n", roff(what));
    }
    s.push_str(".SH ENVIRONMENT\n");
    for e in ENVIRONMENT {
        let _ = write!(
            s,
            ".TP\n\\fB{}\\fR (default: {})\n{}\n",
            roff(e.name),
            roff(e.default),
            roff(e.what)
        );
    }
    s.push_str(".SH FILES\nSTATE is the state directory (CCCI_STATE_DIR).\n");
    for (path, what) in FILES {
        let _ = write!(s, ".TP\n\\fI{}\\fR\n{}\n", roff(path), roff(what));
    }
    s
}
