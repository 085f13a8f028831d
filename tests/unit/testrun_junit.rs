//! junit.xml rendering (pure): classnames that survive a new build, `file`
//! as the recipe names a test, failure text with the exit status and the
//! stderr tail, errors that count real errors, the run's merged file with
//! a phase testcase when the run is red outside the tests; and the writes
//! (a temporary directory, no process): tiers read back into the merged
//! file, no temporary file left when its write fails.

use std::path::Path;

use cc_ci_run::phase::Phase;
use cc_ci_run::rundir::{PhaseSpan, RunRecord, TierTests};
use cc_ci_run::testrun::junit as render;
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::testrun::report::{Attempt, Outcome, Report, Tails, TestReport};
use cc_ci_run::testrun::shown_path;
use cc_ci_run::verdict::Verdict;

use crate::junit::{read, Doc};
use crate::testrun_report::{report, test};

fn no_tails(_: &TestReport) -> Tails {
    Tails::default()
}

fn render_tier(r: &Report, classname: &str, tails: &dyn Fn(&TestReport) -> Tails) -> Doc {
    read(&render::tier_xml(r, classname, tails).unwrap())
}

/// 25 numbered stderr lines: `err-01` .. `err-25`.
fn stderr_25() -> String {
    (1..=25).map(|i| format!("err-{i:02}\n")).collect()
}

#[test]
fn classname_is_recipe_and_tier_and_never_the_run_id() {
    let cn = render::classname(Some("example"), Some(Tier::Install));
    assert_eq!(cn, "example.install");
    let mut docs = Vec::new();
    for run_id in ["drone-coop-cloud-example-7", "drone-coop-cloud-example-8"] {
        let mut r = report(vec![
            test("00-deployed.sh", Outcome::Passed, None),
            test("10-upgraded.sh", Outcome::Failed, Some("exit 1")),
        ]);
        r.run_id = run_id.into();
        docs.push(render_tier(&r, &cn, &no_tails));
    }
    for doc in &docs {
        for c in &doc.cases {
            assert_eq!(c.classname, "example.install", "{c:?}");
            assert!(!c.classname.contains("drone"), "{c:?}");
            assert_eq!(c.suite, "install");
        }
    }
    assert_eq!(docs[0], docs[1], "two builds give the same testcases");
}

#[test]
fn standalone_classname_is_the_tier_or_tests() {
    assert_eq!(render::classname(None, Some(Tier::Upgrade)), "upgrade");
    assert_eq!(render::classname(None, None), "tests");
    assert_eq!(render::classname(Some(""), None), "tests");
    assert_eq!(render::run_classname("example"), "example.run");
}

#[test]
fn file_names_the_test_as_the_recipe_does() {
    let r = report(vec![test("00-deployed.sh", Outcome::Passed, None)]);
    let doc = render_tier(&r, "example.install", &no_tails);
    assert_eq!(doc.case("00-deployed.sh").file, "tests/00-deployed.sh");
    // The staged copy inside the run tree is shown under the recipe's name.
    let staged = Path::new("/state/runs/drone-x-1/work/recipe-tests");
    assert_eq!(
        shown_path(staged, Some("tests"), &staged.join("sub/01-http.sh")),
        "tests/sub/01-http.sh"
    );
    let ci = Path::new("/srv/ci/tests/example");
    assert_eq!(
        shown_path(ci, Some("tests/example"), &ci.join("smoke.sh")),
        "tests/example/smoke.sh"
    );
    // Standalone: under the root as given; a file given by name is itself.
    assert_eq!(
        shown_path(Path::new("tests"), None, Path::new("tests/a.sh")),
        "tests/a.sh"
    );
    assert_eq!(
        shown_path(Path::new("t/a.sh"), None, Path::new("t/a.sh")),
        "t/a.sh"
    );
}

#[test]
fn failure_text_holds_the_exit_status_and_the_last_stderr_lines() {
    let r = report(vec![test("bad", Outcome::Failed, Some("exit 1"))]);
    let doc = render_tier(&r, "example.install", &|_| Tails {
        stdout: "out\n".into(),
        stderr: stderr_25(),
        attempts: vec![],
    });
    let c = doc.case("bad");
    assert_eq!((c.kind.as_str(), c.message.as_str()), ("failure", "exit 1"));
    assert!(c.text.starts_with("exit 1\n"), "{}", c.text);
    let quoted: Vec<&str> = c.text.lines().filter(|l| l.starts_with("err-")).collect();
    let want: Vec<String> = (6..=25).map(|i| format!("err-{i:02}")).collect();
    assert_eq!(quoted, want, "the last {} lines", render::STDERR_LINES);
}

#[test]
fn a_timed_out_test_says_so_and_a_signal_is_named() {
    let mut t = test("slow", Outcome::TimedOut, Some("timed out after 2s"));
    t.status = Some("killed by SIGTERM".into());
    let mut k = test("oom", Outcome::Failed, Some("killed by SIGKILL"));
    k.status = Some("killed by SIGKILL".into());
    let doc = render_tier(&report(vec![t, k]), "x.install", &|_| Tails {
        stdout: String::new(),
        stderr: "waiting for http\n".into(),
        attempts: vec![],
    });
    let slow = doc.case("slow");
    assert_eq!(slow.kind, "failure");
    assert_eq!(slow.ty, "timed-out");
    assert!(
        slow.text
            .starts_with("timed out after 2s (killed by SIGTERM)\n"),
        "{}",
        slow.text
    );
    assert!(slow.text.contains("waiting for http"), "{}", slow.text);
    assert!(doc.case("oom").text.starts_with("killed by SIGKILL"));
}

#[test]
fn errors_count_unstarted_and_cancelled_tests_not_failures() {
    let mut unstarted = test("nostart", Outcome::Failed, Some("could not start: ENOENT"));
    unstarted.status = None;
    unstarted.exit_code = None;
    let mut cancelled = test(
        "hung",
        Outcome::Cancelled,
        Some("terminated: shutdown requested (SIGTERM, exit 143)"),
    );
    cancelled.status = Some("killed by SIGTERM".into());
    let doc = render_tier(
        &report(vec![
            test("ok", Outcome::Passed, None),
            test("bad", Outcome::Failed, Some("exit 1")),
            unstarted,
            cancelled,
            test("never", Outcome::Skipped, Some("not started: shutdown")),
        ]),
        "example.install",
        &no_tails,
    );
    assert_eq!(
        (
            doc.totals.tests,
            doc.totals.failures,
            doc.totals.errors,
            doc.totals.skipped
        ),
        (5, 1, 2, 1)
    );
    assert_eq!(doc.case("nostart").kind, "error");
    assert_eq!(doc.case("nostart").message, "could not start: ENOENT");
    assert_eq!(doc.case("hung").kind, "error");
    assert_eq!(doc.case("hung").ty, "cancelled");
    assert_eq!(doc.case("never").kind, "skipped");
}

#[test]
fn junit_is_well_formed_even_with_hostile_output() {
    let r = report(vec![
        test("ok", Outcome::Passed, None),
        test("b<a>d", Outcome::Failed, Some("exit 1 & \"more\"")),
        test("slow", Outcome::TimedOut, Some("timed out after 1s")),
        test(
            "never",
            Outcome::Skipped,
            Some("depends on `b<a>d`, which failed"),
        ),
    ]);
    let doc = render_tier(&r, "e.install", &|_t: &TestReport| Tails {
        stdout: "]]> <tag> &amp; \u{7}bell\n".into(),
        stderr: "\u{1b}[31mred\u{1b}[0m <x/> & \u{fffe}\n".into(),
        attempts: vec![],
    });
    assert_eq!(
        doc.cases
            .iter()
            .map(|c| (c.name.as_str(), c.kind.as_str(), c.message.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("ok", "passed", ""),
            ("b<a>d", "failure", "exit 1 & \"more\""),
            ("slow", "failure", "timed out after 1s"),
            ("never", "skipped", "depends on `b<a>d`, which failed"),
        ]
    );
    // ANSI colour is stripped, markup kept as text.
    assert!(doc.case("b<a>d").text.contains("red <x/> &"));
    assert!(!doc.case("b<a>d").text.contains('\u{1b}'));
}

/// A finished phase on 2026-01-01 from `start` to `end` (UTC times).
fn span(name: &str, start: &str, end: &str) -> PhaseSpan {
    PhaseSpan {
        name: Phase::parse(name).unwrap(),
        started: format!("2026-01-01T{start}Z"),
        ended: Some(format!("2026-01-01T{end}Z")),
        ..PhaseSpan::default()
    }
}

fn record(verdict: &str, failed_phase: Option<&str>) -> RunRecord {
    RunRecord {
        run_id: "drone-coop-cloud-example-9".into(),
        recipe: "example".into(),
        git_ref: "refs/pull/1/head".into(),
        sha: Some("abc1234".into()),
        started: "2026-01-01T00:00:00.000Z".into(),
        verdict: Some(Verdict::parse(verdict).unwrap()),
        failed_phase: failed_phase.map(|p| Phase::parse(p).unwrap()),
        phases: vec![
            span("fetch", "00:00:00.000", "00:00:01.000"),
            span("install-converge", "00:00:05.000", "00:00:15.500"),
        ],
        ..RunRecord::default()
    }
}

fn install_suite(results: &[(&str, Outcome)]) -> quick_junit::TestSuite {
    let tests = results
        .iter()
        .map(|(n, o)| test(n, *o, (*o != Outcome::Passed).then_some("exit 1")))
        .collect();
    render::tier_suite(&report(tests), "example.install", &no_tails)
}

fn merged(
    rec: &RunRecord,
    code: i32,
    error: Option<&str>,
    tiers: Vec<quick_junit::TestSuite>,
) -> Doc {
    let log_tail: String = (1..=40).map(|i| format!("log line {i}\n")).collect();
    let outcome = render::RunOutcome {
        record: rec,
        exit_code: code,
        error: error.map(String::from),
        log: "/state/runs/x/run.log".into(),
        log_tail,
    };
    read(&render::run_report(&outcome, tiers).to_string().unwrap())
}

#[test]
fn a_green_run_merges_every_tier_and_adds_no_phase_case() {
    let mut upgrade = install_suite(&[("10-upgraded.sh", Outcome::Passed)]);
    upgrade.name = "upgrade".into();
    let doc = merged(
        &record("passed", None),
        0,
        None,
        vec![
            install_suite(&[("00-deployed.sh", Outcome::Passed)]),
            upgrade,
        ],
    );
    assert_eq!(doc.totals.tests, 2);
    assert_eq!((doc.totals.failures, doc.totals.errors), (0, 0));
    assert!(doc.cases.iter().all(|c| !c.name.starts_with("phase:")));
}

#[test]
fn a_run_red_in_a_phase_gets_a_phase_error_with_the_error_line_and_the_log_tail() {
    let rec = record("infra", Some("install-converge"));
    let doc = merged(
        &rec,
        3,
        Some("install tier: convergence failed: service app: task exited (1)"),
        vec![],
    );
    assert_eq!((doc.totals.tests, doc.totals.errors), (1, 1));
    let c = doc.case("phase: install-converge");
    assert_eq!(c.classname, "example.run");
    assert_eq!(c.suite, "run");
    assert_eq!(c.kind, "error");
    assert_eq!(c.ty, "infra");
    assert_eq!(
        c.message,
        "infra in phase install-converge: install tier: convergence failed: service app: task exited (1)"
    );
    assert!(c.text.contains("run.log"), "{}", c.text);
    let logged: Vec<&str> = c
        .text
        .lines()
        .filter(|l| l.starts_with("log line"))
        .collect();
    assert_eq!(logged.len(), render::LOG_LINES);
    assert_eq!(logged.last(), Some(&"log line 40"));
}

#[test]
fn tests_that_failed_explain_the_run_and_need_no_phase_case() {
    let tiers = vec![install_suite(&[
        ("00-deployed.sh", Outcome::Failed),
        ("01-http.sh", Outcome::Passed),
    ])];
    let doc = merged(&record("failed", Some("test-install")), 1, None, tiers);
    assert_eq!((doc.totals.failures, doc.totals.errors), (1, 0));
    assert!(doc.cases.iter().all(|c| !c.name.starts_with("phase:")));
}

#[test]
fn a_failed_run_without_a_failing_testcase_still_shows_red() {
    // No test selected in any tier, or the upgrade's chaos-version label:
    // the verdict is `failed` and no testcase of a tier says so.
    let doc = merged(
        &record("failed", Some("upgrade-converge")),
        1,
        Some("upgrade tier failed: label coop-cloud.example.chaos-version=\"\": not set"),
        vec![install_suite(&[("00-deployed.sh", Outcome::Passed)])],
    );
    assert_eq!(doc.totals.errors, 1);
    assert!(doc
        .case("phase: upgrade-converge")
        .message
        .contains("chaos-version"));
    assert!(render::needs_phase_case(Some(Verdict::Failed), &[]));
    assert!(!render::needs_phase_case(Some(Verdict::Passed), &[]));
    assert!(!render::needs_phase_case(None, &[]));
}

#[test]
fn cancel_deadline_and_teardown_are_named_in_the_phase_error() {
    let cases = [
        (
            "cancelled",
            "fetch",
            143,
            "the step was cancelled (SIGTERM, exit 143)",
        ),
        (
            "cancelled",
            "lock",
            130,
            "the step was cancelled (SIGINT, exit 130)",
        ),
        (
            "deadline",
            "install",
            142,
            "the run deadline (--timeout) passed (exit 142)",
        ),
        (
            "teardown-failed",
            "teardown",
            4,
            "teardown did not finish: the app is left for the janitor (exit 4)",
        ),
    ];
    for (verdict, phase, code, line) in cases {
        // The interruption's own error text is not the reason.
        let doc = merged(
            &record(verdict, Some(phase)),
            code,
            Some("interrupted"),
            vec![],
        );
        let c = doc.case(&format!("phase: {phase}"));
        assert_eq!(c.kind, "error");
        assert_eq!(c.message, format!("{verdict} in phase {phase}: {line}"));
    }
    // A cancel while tests ran: the cancelled test is an error and so is
    // the phase.
    let mut tier = install_suite(&[("00-deployed.sh", Outcome::Passed)]);
    let mut hung = test(
        "01-hang.sh",
        Outcome::Cancelled,
        Some("terminated: shutdown"),
    );
    hung.status = Some("killed by SIGTERM".into());
    tier.add_test_case(render::test_case(
        &hung,
        "example.install",
        &Tails::default(),
    ));
    let doc = merged(
        &record("cancelled", Some("test-install")),
        143,
        None,
        vec![tier],
    );
    assert_eq!((doc.totals.tests, doc.totals.errors), (3, 2));
    assert_eq!(doc.case("phase: test-install").kind, "error");
}

#[test]
fn the_phase_case_takes_its_time_from_the_phase_span() {
    let rec = record("infra", Some("install-converge"));
    let outcome = render::RunOutcome {
        record: &rec,
        exit_code: 3,
        error: None,
        log: String::new(),
        log_tail: String::new(),
    };
    let case = render::phase_case(&outcome);
    assert_eq!(case.time, Some(std::time::Duration::from_millis(10_500)));
    // The monotonic duration wins over the wall clock when the record has it.
    let mut rec = record("infra", Some("install-converge"));
    rec.phases[1].duration_ms = Some(10_000);
    let outcome = render::RunOutcome {
        record: &rec,
        ..outcome
    };
    let case = render::phase_case(&outcome);
    assert_eq!(case.time, Some(std::time::Duration::from_millis(10_000)));
}

#[test]
fn last_lines_takes_the_tail_without_a_trailing_empty_line() {
    assert_eq!(render::last_lines("a\nb\nc\n", 2), "b\nc");
    assert_eq!(render::last_lines("a\nb\n", 5), "a\nb");
    assert_eq!(render::last_lines("", 3), "");
    assert_eq!(render::last_lines("a\n", 0), "");
}

#[test]
fn the_merged_file_reads_the_tiers_back_and_marks_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let install = dir.path().join("install");
    std::fs::create_dir_all(&install).unwrap();
    let r = report(vec![test(
        "00-deployed.sh",
        Outcome::Failed,
        Some("exit 1"),
    )]);
    let xml = render::tier_xml(&r, "example.install", &|_| Tails {
        stdout: String::new(),
        stderr: "failing on purpose\n".into(),
        attempts: vec![],
    })
    .unwrap();
    std::fs::write(install.join("junit.xml"), xml.as_bytes()).unwrap();
    let mut rec = record("failed", Some("test-install"));
    rec.tests = vec![
        TierTests {
            tier: "install".into(),
            report_dir: install.display().to_string(),
            ..TierTests::default()
        },
        TierTests {
            tier: "upgrade".into(),
            report_dir: dir.path().join("upgrade").display().to_string(),
            ..TierTests::default()
        },
    ];
    let log = dir.path().join("run.log");
    std::fs::write(&log, "phase: test-install\n").unwrap();
    let path = render::write_run(dir.path(), &rec, 1, None, &log).unwrap();
    assert_eq!(path, dir.path().join("junit.xml"));
    let doc = crate::junit::check(&path);
    let deployed = doc.case("00-deployed.sh");
    assert_eq!(deployed.classname, "example.install");
    assert_eq!(deployed.file, "tests/00-deployed.sh");
    assert!(deployed.text.contains("failing on purpose"));
    let lost = doc.case("report: upgrade");
    assert_eq!(lost.kind, "error");
    assert_eq!(lost.classname, "example.upgrade");
    // The tier's failure explains the verdict: no phase testcase.
    assert!(doc.cases.iter().all(|c| !c.name.starts_with("phase:")));
    assert_eq!((doc.totals.failures, doc.totals.errors), (1, 1));
}

#[test]
fn a_failed_write_of_the_merged_file_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // The rename cannot replace a directory: the write fails at its end.
    std::fs::create_dir(dir.path().join("junit.xml")).unwrap();
    let rec = record("infra", Some("fetch"));
    let log = dir.path().join("no-such.log");
    let err = render::write_run(dir.path(), &rec, 3, None, &log).unwrap_err();
    assert!(format!("{err:#}").contains("junit.xml"), "{err:#}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["junit.xml"], "only the directory is left");
    // Where it can be written, it is, with the phase and no log lines.
    let ok = dir.path().join("ok");
    let path = render::write_run(&ok, &rec, 3, None, &log).unwrap();
    assert_eq!(
        crate::junit::check(&path).case("phase: fetch").kind,
        "error"
    );
    assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 1);
}

/// A failed attempt of `t`, with its output kept under `attempt-K`.
fn failed_attempt(t: &TestReport, k: u32, status: Option<&str>) -> Attempt {
    let mut a = Attempt::of(t);
    a.result = Outcome::Failed;
    a.status = status.map(String::from);
    a.reason = Some(status.map_or("could not start: no such file".into(), String::from));
    a.stderr = Some(format!("output/{}.attempt-{k}.stderr", t.name));
    a
}

#[test]
fn earlier_attempts_are_flaky_under_a_pass_and_reruns_under_a_failure() {
    let mut flaky = test("flaky", Outcome::Passed, None);
    flaky.flaky = true;
    flaky.attempts = 2;
    flaky.failed_attempts = vec![failed_attempt(&flaky, 1, Some("exit 3"))];
    let mut broken = test("broken", Outcome::Failed, Some("exit 1"));
    broken.attempts = 3;
    // The first attempt could not start: an error, not a failure.
    broken.failed_attempts = vec![
        failed_attempt(&broken, 1, None),
        failed_attempt(&broken, 2, Some("exit 1")),
    ];
    let mut r = report(vec![flaky, broken]);
    r.flaky = 1;
    let tails = |t: &TestReport| Tails {
        stdout: String::new(),
        stderr: format!("{} last attempt\n", t.name),
        attempts: (1..=t.failed_attempts.len())
            .map(|k| Tails {
                stdout: String::new(),
                stderr: format!("{} attempt {k} said why\n", t.name),
                attempts: vec![],
            })
            .collect(),
    };
    let xml = render::tier_xml(&r, "example.install", &tails).unwrap();
    let doc = read(&xml);
    let tags = |name: &str| -> Vec<(String, String)> {
        doc.case(name)
            .reruns
            .iter()
            .map(|x| (x.tag.clone(), x.message.clone()))
            .collect()
    };
    assert_eq!(doc.case("flaky").kind, "passed");
    assert_eq!(tags("flaky"), [("flakyFailure".into(), "exit 3".into())]);
    assert_eq!(doc.case("broken").kind, "failure");
    assert_eq!(
        tags("broken"),
        [
            ("rerunError".into(), "could not start: no such file".into()),
            ("rerunFailure".into(), "exit 1".into())
        ]
    );
    // Each attempt carries its own stderr, not the last attempt's.
    for k in 1..=2 {
        assert!(
            xml.contains(&format!("broken attempt {k} said why")),
            "{xml}"
        );
    }
    assert!(xml.contains("flaky attempt 1 said why"), "{xml}");
    // The flaky pass counts as a pass; the reruns count nothing.
    assert_eq!(
        (doc.totals.tests, doc.totals.failures, doc.totals.errors),
        (2, 1, 0)
    );
}
