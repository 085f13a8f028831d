//! What a suite produced, for humans and machines: the summary table at the
//! end of the log, `report.json` and `junit.xml` in the report directory.
//! Rendering is pure ([`summary_lines`], and `super::junit` for the JUnit
//! file); [`write`] only puts the rendered text into files (each replaced
//! atomically, so a CI that picks up the report while a resumed attempt
//! rewrites it never reads half of one).
//!
//! # `report.json`
//!
//! Stable fields (new fields may be added; none is renamed or removed):
//!
//! | field | meaning |
//! |---|---|
//! | `run_id`, `ref` | the run and the ref under test (`ref` may be empty standalone) |
//! | `tier` | the tier the suite ran for, or null for all |
//! | `started`, `finished` | RFC 3339 UTC |
//! | `duration_ms` | wall time of the suite |
//! | `exit_code` | 0 all passed, 1 a test failed, 42 self-protection, 130/143 signal |
//! | `stopped` | null, or why the suite stopped early: `fail-fast`, `self-protect`, `signal`, `floor` (the built-in floor test failed: no test of the tier started) |
//! | `stop_reason` | null, or the stop in words (the threshold, the signal) |
//! | `workers` | how many tests ran at once at most |
//! | `passed`, `failed`, `skipped` | counts; `failed` includes timed out, `skipped` includes cancelled |
//! | `cases_passed`, `cases_failed`, `cases_skipped` | the tests' own cases (`CCCI_JUNIT_OUT`); `cases_failed` includes errors |
//! | `flaky` | tests that failed, then passed on a rerun (in `passed`, or in `failed` with `--flaky-fails`) |
//! | `leaked_unattributed` | pids of leftover processes no test could be named for |
//! | `tests` | one object per selected test, in planned order: |
//! | `tests[].name`, `path` | file name (the test's name) and its path on this host |
//! | `tests[].file` | its path as the recipe names it (`tests/NAME`, `tests/RECIPE/NAME` from the CI repository; standalone: under the root as given), junit.xml's `file` |
//! | `tests[].result` | `passed`, `failed`, `timed-out`, `cancelled` (stopped by fail-fast, a signal or self-protection while running), `skipped` (never started) |
//! | `tests[].reason` | why it was skipped or cancelled, or what failed (null when passed) |
//! | `tests[].status` | `exit N` or `killed by SIGNAL` (null if it never ran) |
//! | `tests[].exit_code` | the exit code, or 128+signal (null if it never ran) |
//! | `tests[].leaky` | processes of the test outlived it and were killed |
//! | `tests[].leaked_pids` | their pids |
//! | `tests[].started` | RFC 3339 UTC, null if it never ran |
//! | `tests[].duration_ms` | wall time from start to exit |
//! | `tests[].peak_rss_bytes`, `cpu_ms` | from wait4: peak RSS of the test or any process it waited for, user+system CPU |
//! | `tests[].stdout`, `stderr` | captured output, relative to the report directory |
//! | `tests[].stdout_bytes`, `stderr_bytes` | bytes the test wrote to each (null if it never ran); past `--test-output-limit` the captured file keeps its first and last halves of the limit and a line saying how many bytes were dropped |
//! | `tests[].level`, `tiers`, `tags`, `priority`, `depends_on`, `timeout_ms`, `memory_bytes`, `retries` | the metadata in force |
//! | `tests[].attempts` | how many times it ran (0 if it never started; 1 + reruns) |
//! | `tests[].flaky` | it failed, then passed on a rerun |
//! | `tests[].cases` | the cases of the JUnit the test wrote to `CCCI_JUNIT_OUT`, in file order: `name` (`FILE::CASE`), `result` (`passed`, `failed`, `error`, `skipped`), `message`, `duration_ms` |
//! | `tests[].junit` | that file, relative to the report directory (null when it wrote none) |
//! | `tests[].artifacts` | files it left in `CCCI_ARTIFACTS` (written while it ran, not claimed by a test that ended before it), absolute paths |
//! | `tests[].failed_attempts` | the attempts before the last that failed, oldest first: `result`, `reason`, `status`, `exit_code`, `started`, `duration_ms`, `leaked_pids`, `stdout`, `stderr`, `stdout_bytes`, `stderr_bytes` (each attempt's output is kept as `output/NAME.attempt-K.stdout`) |
//!
//! A test's own fields (`result`, `status`, `duration_ms`, `stdout`, ...)
//! describe its last attempt; `leaky` and `leaked_pids` cover every
//! attempt, since a leak is worth knowing whichever attempt made it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::cases::CaseReport;
use super::meta::{Level, Tier};
use crate::units::human;

pub use crate::outcome::Outcome;

/// An attempt of a test that failed and was run again (SPEC section 6).
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub result: Outcome,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub exit_code: Option<i32>,
    pub started: Option<String>,
    pub duration_ms: u64,
    pub leaked_pids: Vec<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
}

impl Attempt {
    /// The attempt part of a test's report (its last attempt so far).
    pub fn of(t: &TestReport) -> Attempt {
        Attempt {
            result: t.result,
            reason: t.reason.clone(),
            status: t.status.clone(),
            exit_code: t.exit_code,
            started: t.started.clone(),
            duration_ms: t.duration_ms,
            leaked_pids: t.leaked_pids.clone(),
            stdout: t.stdout.clone(),
            stderr: t.stderr.clone(),
            stdout_bytes: t.stdout_bytes,
            stderr_bytes: t.stderr_bytes,
        }
    }
}

/// One test's line in `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct TestReport {
    pub name: String,
    pub path: String,
    pub file: String,
    pub result: Outcome,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub exit_code: Option<i32>,
    pub leaky: bool,
    pub leaked_pids: Vec<i32>,
    pub started: Option<String>,
    pub duration_ms: u64,
    pub peak_rss_bytes: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// Bytes the test wrote to each stream (the captured file keeps at
    /// most `--test-output-limit` of them, head and tail).
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    pub level: Option<Level>,
    pub tiers: Vec<Tier>,
    pub tags: Vec<String>,
    pub priority: i64,
    pub depends_on: Vec<String>,
    pub timeout_ms: u64,
    pub memory_bytes: Option<u64>,
    /// Reruns allowed after a failure.
    pub retries: u32,
    pub attempts: u32,
    pub flaky: bool,
    pub failed_attempts: Vec<Attempt>,
    /// The cases of the JUnit it wrote to `CCCI_JUNIT_OUT`, in file order
    /// (empty when it wrote none).
    pub cases: Vec<CaseReport>,
    /// That file, relative to the report directory (null when none).
    pub junit: Option<String>,
    /// Files it left in `CCCI_ARTIFACTS` (those written while it ran and
    /// not claimed by a test that ended before it), absolute paths.
    pub artifacts: Vec<String>,
}

impl TestReport {
    /// A report of the test `name` (at `path`, from `file`) that has not
    /// run: skipped, no attempt, nothing measured, no header's settings.
    /// Callers fill what they know with struct update syntax.
    pub(crate) fn named(name: &str, path: String, file: String) -> TestReport {
        TestReport {
            name: name.to_string(),
            path,
            file,
            result: Outcome::Skipped,
            reason: None,
            status: None,
            exit_code: None,
            leaky: false,
            leaked_pids: Vec::new(),
            started: None,
            duration_ms: 0,
            peak_rss_bytes: None,
            cpu_ms: None,
            stdout: None,
            stderr: None,
            stdout_bytes: None,
            stderr_bytes: None,
            level: None,
            tiers: Vec::new(),
            tags: Vec::new(),
            priority: 0,
            depends_on: Vec::new(),
            timeout_ms: 0,
            memory_bytes: None,
            retries: 0,
            attempts: 0,
            flaky: false,
            failed_attempts: Vec::new(),
            cases: Vec::new(),
            junit: None,
            artifacts: Vec::new(),
        }
    }
}

/// The whole suite, as `report.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run_id: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub tier: Option<Tier>,
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
    pub exit_code: i32,
    pub stopped: Option<&'static str>,
    pub stop_reason: Option<String>,
    pub workers: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub flaky: usize,
    /// The tests' own cases (`CCCI_JUNIT_OUT`): passed, failed (with
    /// errors), skipped.
    pub cases_passed: usize,
    pub cases_failed: usize,
    pub cases_skipped: usize,
    pub leaked_unattributed: Vec<i32>,
    pub tests: Vec<TestReport>,
}

/// Counts (passed, failed, skipped) as the verdict sees them.
pub(crate) fn counts(tests: &[TestReport]) -> (usize, usize, usize) {
    let passed = tests.iter().filter(|t| t.result == Outcome::Passed).count();
    let failed = tests.iter().filter(|t| t.result.is_failure()).count();
    (passed, failed, tests.len() - passed - failed)
}

/// `12.3M`-style sizes for the summary.
pub fn human_bytes(n: u64) -> String {
    crate::units::human_bytes(n)
}

/// The summary table, one string per line; the last line names `dir`.
pub fn summary_lines(report: &Report, dir: &Path) -> Vec<String> {
    let header = ["TEST", "RESULT", "DURATION", "PEAK RSS", "CPU"];
    let mut rows: Vec<([String; 5], Option<String>)> = Vec::new();
    for t in &report.tests {
        let ran = t.started.is_some();
        let mut result = t.result.as_str().to_string();
        if t.flaky {
            let _ = write!(result, ", flaky ({} attempts)", t.attempts);
        }
        if t.leaky {
            result.push_str(", leaky");
        }
        let dash = || "-".to_string();
        rows.push((
            [
                t.name.clone(),
                result,
                if ran {
                    human(std::time::Duration::from_millis(t.duration_ms))
                } else {
                    dash()
                },
                t.peak_rss_bytes.map(human_bytes).unwrap_or_else(dash),
                t.cpu_ms
                    .map(|ms| human(std::time::Duration::from_millis(ms)))
                    .unwrap_or_else(dash),
            ],
            t.reason.clone(),
        ));
        // Its own cases, indented under it: a failing case is named here,
        // not only in the test's captured output. A suite of hundreds of
        // cases lists those that did not pass, and counts the rest.
        let all = t.cases.len() <= CASE_ROWS;
        let mut unlisted = 0;
        for c in &t.cases {
            if !all && c.result == super::cases::CaseResult::Passed {
                unlisted += 1;
                continue;
            }
            rows.push((
                [
                    format!("  {}", c.name),
                    c.result.as_str().to_string(),
                    c.duration_ms
                        .map(|ms| human(std::time::Duration::from_millis(ms)))
                        .unwrap_or_else(dash),
                    dash(),
                    dash(),
                ],
                c.message.as_deref().map(first_line),
            ));
        }
        if unlisted > 0 {
            rows.push((
                [
                    format!("  ({unlisted} passed cases not listed)"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                None,
            ));
        }
    }
    let mut widths = header.map(str::len);
    for (cells, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt_row = |cells: &[String; 5], note: Option<&str>| {
        let mut line = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{c:<w$}");
        }
        if let Some(n) = note {
            let _ = write!(line, "  ({n})");
        }
        line.trim_end().to_string()
    };
    let mut out = Vec::new();
    let tier = report
        .tier
        .map(|t| format!(" (tier {t})"))
        .unwrap_or_default();
    out.push(format!("summary of run {}{tier}:", report.run_id));
    if !rows.is_empty() {
        out.push(fmt_row(&header.map(String::from), None));
        for (cells, note) in &rows {
            out.push(fmt_row(cells, note.as_deref()));
        }
    }
    let mut verdict = format!(
        "{} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    if report.flaky > 0 {
        let _ = write!(verdict, ", {} flaky", report.flaky);
    }
    if report.tests.iter().any(|t| !t.cases.is_empty()) {
        let _ = write!(
            verdict,
            "; cases: {} passed, {} failed, {} skipped",
            report.cases_passed, report.cases_failed, report.cases_skipped
        );
    }
    if let Some(why) = &report.stop_reason {
        let _ = write!(verdict, "; stopped early: {why}");
    }
    if !report.leaked_unattributed.is_empty() {
        let _ = write!(
            verdict,
            "; {} leftover process(es) killed",
            report.leaked_unattributed.len()
        );
    }
    let _ = write!(verdict, " (exit {})", report.exit_code);
    out.push(verdict);
    out.push(format!("reports: {}", dir.display()));
    out
}

/// The first line of a case's message, at most [`NOTE_CHARS`] characters:
/// the summary is one line per case.
pub(crate) fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(NOTE_CHARS) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

/// A test with at most this many cases has each listed in the summary;
/// one with more has only those that did not pass.
pub const CASE_ROWS: usize = 30;

/// How much of a case's message the summary shows.
const NOTE_CHARS: usize = 120;

/// The captured output tails of a test, for the JUnit `system-out/err`.
#[derive(Clone, Debug, Default)]
pub struct Tails {
    pub stdout: String,
    pub stderr: String,
    /// Those of each failed attempt before the last, oldest first.
    pub attempts: Vec<Tails>,
}

/// Writes `report.json` into `dir`, replaced atomically; a failed write
/// (a full disk) leaves no temporary file. Its `junit.xml` beside it is
/// [`super::junit::write_tier`]'s.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(report).context("failed to encode report.json")?;
    json.push(b'\n');
    crate::rundir::write_output(&dir.join("report.json"), &json)
}
