//! junit.xml that CI tools can use (SPEC section 6), written with
//! quick-junit, the JUnit writer of cargo-nextest: it escapes what XML
//! cannot carry, strips ANSI colour from captured output, and counts
//! `tests`, `failures`, `errors` and `skipped` from the testcases it is
//! given, so the counts cannot drift from what the file holds.
//!
//! # Layout
//!
//! - **Per tier**: `junit.xml` in the tier's report directory (under a run
//!   `<report-dir>/<tier>/junit.xml`; standalone `cc-ci-run test`:
//!   `<report-dir>/junit.xml`): one `<testsuite>` named after the tier (or
//!   `tests` when no tier was given), one `<testcase>` per selected test,
//!   each followed by the cases of the JUnit that test wrote to
//!   `CCCI_JUNIT_OUT` (see [`super::cases`]), one `<testcase>` each named
//!   `<test file>::<case>`.
//! - **Per run**: `<report-dir>/junit.xml` (default
//!   `runs/<run-id>/report/junit.xml`), written by `run` on every path once
//!   the verdict is known: every tier's testsuite as its own file holds it,
//!   and, when the run is red for a reason no test's testcase shows (every
//!   verdict but failed tests: fetch, static checks, deploy, convergence,
//!   backup, teardown, the deadline, a cancel, self-protection, a run in
//!   which no test ran), a testsuite `run` with one testcase
//!   `phase: <failed phase>` carrying `<error>`.
//!
//! # Names
//!
//! `classname` is what Jenkins and GitLab key a test's history on, so it
//! never holds the run id (new every build): under a run it is
//! `<recipe>.<tier>` (`example.install`), and `<recipe>.run` for the phase
//! testcase; standalone (no recipe is known) it is the tier, or `tests`.
//! `file` is the test's path as the recipe's authors know it: under a run
//! `tests/<name>` for the recipe's own tests and `tests/<recipe>/<name>` for
//! the CI repository's (never the staged copy inside the run tree, which is
//! deleted after the run); standalone, the path under the root as it was
//! given on the command line.
//!
//! # Failure or error
//!
//! - `<failure>`: the test ran and failed (non-zero exit, killed by a
//!   signal, timed out). Its message is the reason (`exit 1`, `timed out
//!   after 30s`); its text the exit status or signal and the last
//!   [`STDERR_LINES`] lines of its stderr.
//! - `<error>`: something other than the test's own verdict ended it: the
//!   test could not start (a failed test without an exit status), it was
//!   cancelled (terminated because the suite stopped: fail-fast, a signal,
//!   the deadline, self-protection), or the run failed in a phase.
//! - `<skipped>`: never started (a failed dependency, a stop before it
//!   began, passed earlier and resumed).
//!
//! # Reruns
//!
//! A test rerun after failing (`--retries`, the header's `retries`) keeps
//! its earlier attempts as children of its testcase, as nextest and Maven
//! Surefire write them: under a passed (flaky) testcase as
//! `<flakyFailure>`, under a failed one as `<rerunFailure>` (`...Error` for
//! an attempt that could not start), each with its time, timestamp,
//! message, type, a `<stackTrace>` holding what [`failure_text`] says of
//! it, and the tail of its output. With `--flaky-fails` a flaky test is a
//! `<failure type="flaky">` whose earlier attempts stay `<flakyFailure>`:
//! the test did pass, and the run is red because it was asked to be.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use quick_junit::{FlakyOrRerun, NonSuccessKind, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::cases::{CaseReport, CaseResult};
use super::meta::Tier;
use super::report::{Attempt, Outcome, Report, Tails, TestReport};
use crate::rundir::RunRecord;
use crate::verdict::Verdict;

/// Writes a tier's `junit.xml` (testcases of class `classname`) into
/// `dir`, replaced atomically; a failed write (a full disk) leaves no
/// temporary file.
pub fn write_tier(
    dir: &Path,
    report: &Report,
    classname: &str,
    tails: &dyn Fn(&TestReport) -> Tails,
) -> Result<()> {
    let xml = tier_xml(report, classname, tails)?;
    crate::rundir::write_output(&dir.join("junit.xml"), xml.as_bytes())
}

/// How many lines of a failed test's stderr its `<failure>` text quotes
/// (the whole 16 KiB tail is in `<system-err>`).
pub const STDERR_LINES: usize = 20;
/// How many lines of the run log the phase testcase's `<error>` quotes.
pub const LOG_LINES: usize = 30;
/// How much of the run log is read for those lines.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The root element's name in every file.
const REPORT_NAME: &str = "cc-ci-run";

/// The `classname` of a tier's testcases (see the module header).
pub fn classname(recipe: Option<&str>, tier: Option<Tier>) -> String {
    let suite = suite_name(tier);
    match recipe.filter(|r| !r.is_empty()) {
        Some(r) => format!("{r}.{suite}"),
        None => suite.to_string(),
    }
}

/// The `<testsuite>` name of a tier: the tier, or `tests` for all.
pub(crate) fn suite_name(tier: Option<Tier>) -> &'static str {
    tier.map(Tier::as_str).unwrap_or("tests")
}

/// The `classname` of the phase testcase of a run of `recipe`.
pub fn run_classname(recipe: &str) -> String {
    format!("{recipe}.run")
}

/// The last `n` lines of `text` (without a trailing empty line).
pub fn last_lines(text: &str, n: usize) -> &str {
    let text = text.trim_end_matches(['\n', '\r']);
    if n == 0 {
        return "";
    }
    match text.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// The text of a failed test's `<failure>`: how it ended (exit status or
/// signal, and the timeout when it timed out), then the last lines of its
/// stderr.
pub(crate) fn failure_text(t: &TestReport, stderr: &str) -> String {
    attempt_text(&Attempt::of(t), stderr)
}

fn attempt_text(t: &Attempt, stderr: &str) -> String {
    let status = t.status.as_deref().unwrap_or("no exit status");
    let mut text = match (t.result, t.reason.as_deref()) {
        (Outcome::TimedOut, Some(why)) => format!("{why} ({status})"),
        (_, Some(why)) if t.status.is_none() => why.to_string(),
        _ => status.to_string(),
    };
    let tail = last_lines(stderr, STDERR_LINES);
    if tail.is_empty() {
        text.push_str("\nstderr was empty");
    } else {
        let what = t.stderr.as_deref().unwrap_or("stderr");
        text.push_str(&format!(
            "\nlast {STDERR_LINES} lines of stderr ({what}):\n{tail}"
        ));
    }
    text
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn timestamp(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

/// An earlier attempt as a `<flakyFailure>`/`<rerunFailure>` (see the
/// module header).
fn rerun(a: &Attempt, tails: &Tails) -> TestRerun {
    let kind = if a.status.is_none() {
        NonSuccessKind::Error
    } else {
        NonSuccessKind::Failure
    };
    let mut r = TestRerun::new(kind);
    r.set_message(a.reason.clone().unwrap_or_default())
        .set_type(a.result.as_str())
        .set_stack_trace(attempt_text(a, &tails.stderr))
        .set_time(millis(a.duration_ms));
    if let Some(ts) = a.started.as_deref().and_then(timestamp) {
        r.set_timestamp(ts);
    }
    if !tails.stdout.is_empty() {
        r.set_system_out(tails.stdout.as_str());
    }
    if !tails.stderr.is_empty() {
        r.set_system_err(tails.stderr.as_str());
    }
    if !a.leaked_pids.is_empty() {
        let note = format!("leaked processes killed: {:?}", a.leaked_pids);
        let err = match &r.system_err {
            Some(err) => format!("{}\n{note}", err.as_str()),
            None => note,
        };
        r.set_system_err(err);
    }
    r
}

/// One test's `<testcase>` (see the module header for failure and error).
pub fn test_case(t: &TestReport, classname: &str, tails: &Tails) -> TestCase {
    let reason = t.reason.clone().unwrap_or_default();
    let mut status = match t.result {
        Outcome::Passed => TestCaseStatus::success(),
        // Passed on a rerun, red because of --flaky-fails.
        Outcome::Failed if t.flaky => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(reason.clone())
                .set_type("flaky")
                .set_description(reason);
            s.set_rerun_kind(FlakyOrRerun::Flaky);
            s
        }
        Outcome::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(reason);
            s
        }
        // No exit status: it never ran (`could not start: ...`).
        Outcome::Failed if t.status.is_none() => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(reason.clone())
                .set_type("not-started")
                .set_description(reason);
            s
        }
        Outcome::Cancelled => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            let status = t.status.as_deref().unwrap_or("no exit status");
            s.set_message(reason.clone())
                .set_type("cancelled")
                .set_description(format!(
                    "{reason} ({status})\n{}",
                    last_lines(&tails.stderr, STDERR_LINES)
                ));
            s
        }
        Outcome::Failed | Outcome::TimedOut => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(reason)
                .set_type(t.result.as_str())
                .set_description(failure_text(t, &tails.stderr));
            s
        }
    };
    let none = Tails::default();
    status.add_reruns(
        t.failed_attempts
            .iter()
            .enumerate()
            .map(|(k, a)| rerun(a, tails.attempts.get(k).unwrap_or(&none))),
    );
    let ran = t.started.is_some() && t.status.is_some();
    let mut case = TestCase::new(t.name.as_str(), status);
    case.set_classname(classname);
    case.extra.insert("file".into(), t.file.as_str().into());
    if ran {
        case.set_time(millis(t.duration_ms));
    }
    if let Some(ts) = t.started.as_deref().and_then(timestamp) {
        case.set_timestamp(ts);
    }
    if ran && t.result != Outcome::Passed {
        if !tails.stdout.is_empty() {
            case.set_system_out(tails.stdout.as_str());
        }
        if !tails.stderr.is_empty() {
            case.set_system_err(tails.stderr.as_str());
        }
    }
    attach(&mut case, &t.artifacts);
    if t.leaky {
        let note = format!("leaked processes killed: {:?}", t.leaked_pids);
        match &case.system_err {
            Some(err) => {
                let joined = format!("{}\n{note}", err.as_str());
                case.set_system_err(joined);
            }
            None => {
                case.set_system_err(note);
            }
        }
    }
    case
}

/// A tier's `<testsuite>`: its tests in the report's (planned) order.
pub fn tier_suite(
    report: &Report,
    classname: &str,
    tails: &dyn Fn(&TestReport) -> Tails,
) -> TestSuite {
    let mut suite = TestSuite::new(suite_name(report.tier));
    suite.set_time(millis(report.duration_ms));
    if let Some(ts) = timestamp(&report.started) {
        suite.set_timestamp(ts);
    }
    suite.add_property(("run_id", report.run_id.as_str()));
    suite.add_property(("ref", report.git_ref.as_str()));
    if let Some(why) = &report.stop_reason {
        suite.add_property(("stopped", why.as_str()));
    }
    for t in &report.tests {
        suite.add_test_case(test_case(t, classname, &tails(t)));
        suite.add_test_cases(t.cases.iter().map(|c| own_case(t, c, classname)));
    }
    suite
}

/// A case of a test's own JUnit (`CCCI_JUNIT_OUT`) as a testcase of its
/// own, right after the test's: named `<test file>::<case>`, of the tier's
/// classname, with the case's message and text.
pub fn own_case(t: &TestReport, c: &CaseReport, classname: &str) -> TestCase {
    let non_success = |kind: NonSuccessKind, ty: &str| {
        let mut s = TestCaseStatus::non_success(kind);
        s.set_message(c.message.clone().unwrap_or_default())
            .set_type(ty)
            .set_description(c.text.as_str());
        s
    };
    let status = match c.result {
        CaseResult::Passed => TestCaseStatus::success(),
        CaseResult::Failed => non_success(NonSuccessKind::Failure, "failure"),
        CaseResult::Error => non_success(NonSuccessKind::Error, "error"),
        CaseResult::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(c.message.clone().unwrap_or_default());
            s
        }
    };
    let mut case = TestCase::new(c.name.as_str(), status);
    case.set_classname(classname);
    case.extra.insert("file".into(), t.file.as_str().into());
    if let Some(ms) = c.duration_ms {
        case.set_time(millis(ms));
    }
    // A failing case's screenshot is among the files its test left.
    if c.result.is_failure() {
        attach(&mut case, &t.artifacts);
    }
    case
}

/// `[[ATTACHMENT|path]]` lines for `files` at the end of the testcase's
/// `system-out`, where GitLab and Jenkins' attachments plugin read them.
fn attach(case: &mut TestCase, files: &[String]) {
    if files.is_empty() {
        return;
    }
    let mut out = case
        .system_out
        .as_ref()
        .map(|o| format!("{}\n", o.as_str().trim_end_matches('\n')))
        .unwrap_or_default();
    for f in files {
        out.push_str(&format!("[[ATTACHMENT|{f}]]\n"));
    }
    case.set_system_out(out);
}

/// A tier's junit.xml.
pub fn tier_xml(
    report: &Report,
    classname: &str,
    tails: &dyn Fn(&TestReport) -> Tails,
) -> Result<String> {
    let mut out = quick_junit::Report::new(REPORT_NAME);
    out.set_time(millis(report.duration_ms));
    out.add_test_suite(tier_suite(report, classname, tails));
    out.to_string()
        .context("failed to render the tier's junit.xml")
}

/// What the run's merged file needs besides the tiers' testsuites.
#[derive(Clone, Debug)]
pub struct RunOutcome<'a> {
    /// Recipe, run id, verdict, failed phase, phases and tiers.
    pub record: &'a RunRecord,
    /// The run's exit code.
    pub exit_code: i32,
    /// The error that ended the phases, when one did (`{:#}` of it).
    pub error: Option<String>,
    /// The log file, as the error text names it.
    pub log: String,
    /// The last lines of the log.
    pub log_tail: String,
}

/// Whether the phase testcase is needed: the run is red and no testcase
/// of its tiers shows why (only failed tests are shown by their own
/// testcases; a cancel also gets one, so a dashboard names the phase).
pub fn needs_phase_case(verdict: Option<Verdict>, tiers: &[TestSuite]) -> bool {
    match verdict {
        None | Some(Verdict::Passed) => false,
        Some(Verdict::Failed) => tiers.iter().all(|s| s.failures == 0),
        Some(_) => true,
    }
}

/// The line that says why the run is red: the signal, the deadline,
/// teardown, or the error that ended the phases.
pub(crate) fn phase_error_line(exit_code: i32, error: Option<&str>) -> String {
    use crate::exit;
    let signal = |name: &str| format!("the step was cancelled ({name}, exit {exit_code})");
    match exit_code {
        exit::SIGTERM => signal("SIGTERM"),
        exit::SIGINT => signal("SIGINT"),
        exit::SIGHUP => signal("SIGHUP"),
        exit::DEADLINE => format!("the run deadline (--timeout) passed (exit {exit_code})"),
        exit::TEARDOWN_FAILED => {
            format!("teardown did not finish: the app is left for the janitor (exit {exit_code})")
        }
        exit::SELF_PROTECT => {
            format!("self-protection stopped the tests (exit {exit_code})")
        }
        _ => match error.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => e.to_string(),
            None => format!("no test failed; the log lines below say why (exit {exit_code})"),
        },
    }
}

/// The phase testcase of a red run (see the module header).
pub fn phase_case(outcome: &RunOutcome) -> TestCase {
    let r = outcome.record;
    let phase = r
        .failed_phase
        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let verdict = r.verdict.map_or("unknown", Verdict::as_str);
    let line = phase_error_line(outcome.exit_code, outcome.error.as_deref());
    let message = format!("{verdict} in phase {phase}: {line}");
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    let tail = last_lines(&outcome.log_tail, LOG_LINES);
    status
        .set_message(message.as_str())
        .set_type(verdict)
        .set_description(format!(
            "{message}\nlast {LOG_LINES} lines of the run log ({}):\n{tail}",
            outcome.log
        ));
    let mut case = TestCase::new(format!("phase: {phase}"), status);
    case.set_classname(run_classname(&r.recipe));
    // The phase's own span: the last time the run entered it. Its time is
    // the monotonic duration the record keeps, else the wall-clock span; a
    // phase still open (teardown, when it failed) has none yet.
    let span = r
        .failed_phase
        .and_then(|phase| r.phases.iter().rev().find(|p| p.name == phase));
    if let Some(span) = span {
        let start = timestamp(&span.started);
        if let Some(start) = start {
            case.set_timestamp(start);
        }
        let end = span.ended.as_deref().and_then(timestamp);
        let wall = start.zip(end).and_then(|(s, e)| (e - s).to_std().ok());
        if let Some(d) = span.duration_ms.map(millis).or(wall) {
            case.set_time(d);
        }
    }
    case
}

/// The run's merged report: `tiers` in order, then the phase testcase when
/// [`needs_phase_case`] says so.
pub fn run_report(outcome: &RunOutcome, tiers: Vec<TestSuite>) -> quick_junit::Report {
    let r = outcome.record;
    let mut out = quick_junit::Report::new(REPORT_NAME);
    if let Some(ts) = timestamp(&r.started) {
        out.set_timestamp(ts);
    }
    let phase = needs_phase_case(r.verdict, &tiers).then(|| phase_case(outcome));
    let mut tiers = tiers;
    attach_artifacts(&mut tiers, &r.artifacts);
    out.add_test_suites(tiers);
    if let Some(case) = phase {
        let mut suite = TestSuite::new("run");
        suite.add_property(("run_id", r.run_id.as_str()));
        suite.add_property(("ref", r.sha.as_deref().unwrap_or(r.git_ref.as_str())));
        suite.add_property(("verdict", r.verdict.map_or("unknown", Verdict::as_str)));
        if let Some(t) = case.timestamp {
            suite.set_timestamp(t);
        }
        if let Some(d) = case.time {
            suite.set_time(d);
        }
        suite.add_test_case(case);
        out.add_test_suite(suite);
    }
    out
}

/// The files a tier's tests left in `CCCI_ARTIFACTS` (kept under
/// `report/artifacts/<tier>/`), on that tier's suite: one `artifact`
/// property each, and the `[[ATTACHMENT|path]]` lines of its system-out
/// that Jenkins' JUnit attachments plugin reads.
fn attach_artifacts(suites: &mut [TestSuite], artifacts: &[String]) {
    for suite in suites.iter_mut() {
        let dir = format!("/artifacts/{}/", suite.name.as_str());
        let mine: Vec<&String> = artifacts.iter().filter(|a| a.contains(&dir)).collect();
        if mine.is_empty() || suite.system_out.is_some() {
            continue;
        }
        let mut lines = String::new();
        for a in &mine {
            suite.add_property(("artifact", a.as_str()));
            lines.push_str(&format!("[[ATTACHMENT|{a}]]\n"));
        }
        suite.set_system_out(lines);
    }
}

/// A tier whose junit.xml cannot be read back: an `<error>` in its place,
/// so the merged file is never green by omission.
fn unreadable_tier(recipe: &str, tier: &str, path: &Path, why: &anyhow::Error) -> TestSuite {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_message(format!("the {tier} tier's junit.xml could not be read"))
        .set_type("report")
        .set_description(format!("{}: {why:#}", path.display()));
    let mut case = TestCase::new(format!("report: {tier}"), status);
    case.set_classname(format!("{recipe}.{tier}"));
    let mut suite = TestSuite::new(tier);
    suite.add_test_case(case);
    suite
}

/// A tier's watch (SPEC section 3 step 8): a testcase `watch:SERVICE` per
/// service watched (the recipe's name of it, without the stack's: the
/// same testcase in every build), with a `<failure>` when its tasks
/// exited.
pub fn watch_suite(recipe: &str, stack: &str, t: &crate::rundir::TierTests) -> TestSuite {
    let mut suite = TestSuite::new(format!("watch-{}", t.tier));
    for w in &t.watch {
        let status = if w.restarts == 0 {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "{} exited {} time(s) while the {} tier was watched",
                w.service, w.restarts, t.tier
            ))
            .set_type("watch")
            .set_description(w.exits.join("\n"));
            s
        };
        let short = w
            .service
            .strip_prefix(stack)
            .and_then(|r| r.strip_prefix('_'))
            .unwrap_or(&w.service);
        let mut case = TestCase::new(format!("watch:{short}"), status);
        case.set_classname(format!("{recipe}.{}", t.tier));
        suite.add_test_case(case);
    }
    suite
}

fn read_tier(path: &Path) -> Result<Vec<TestSuite>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let report = quick_junit::Report::deserialize_from_str(&text)
        .with_context(|| format!("failed to parse {}", path.display()))?;
    Ok(report.test_suites)
}

/// The last [`LOG_TAIL_BYTES`] of the run log (empty when unreadable:
/// the error's message still says why).
fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > LOG_TAIL_BYTES {
        let _ = f.seek(std::io::SeekFrom::Start(len - LOG_TAIL_BYTES));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Writes the run's merged junit.xml into `report_dir` from the tiers'
/// files (as the record lists them) and returns its path.
pub fn write_run(
    report_dir: &Path,
    record: &RunRecord,
    exit_code: i32,
    error: Option<String>,
    log: &Path,
) -> Result<PathBuf> {
    let mut tiers = Vec::new();
    for t in &record.tests {
        let path = Path::new(&t.report_dir).join("junit.xml");
        match read_tier(&path) {
            Ok(suites) => tiers.extend(suites),
            Err(e) => tiers.push(unreadable_tier(&record.recipe, &t.tier, &path, &e)),
        }
        if !t.watch.is_empty() {
            tiers.push(watch_suite(&record.recipe, &record.stack, t));
        }
    }
    let outcome = RunOutcome {
        record,
        exit_code,
        error,
        log: log.display().to_string(),
        log_tail: log_tail(log),
    };
    let xml = run_report(&outcome, tiers)
        .to_string()
        .context("failed to render the run's junit.xml")?;
    crate::rundir::mkdirs(report_dir)?;
    let path = report_dir.join("junit.xml");
    // Atomic, and no temporary file is left when it fails (a full disk).
    crate::rundir::write_output(&path, xml.as_bytes())?;
    Ok(path)
}
