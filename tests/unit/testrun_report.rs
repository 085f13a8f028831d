//! Checkpoint matching and its journal's reading, self-protection
//! decisions and the summary table (pure; the journal round trip uses a
//! temporary directory, no process). JUnit rendering is in `testrun_junit.rs`.

use std::path::Path;

use cc_ci_run::testrun::checkpoint::{self, decide, Checkpoint, Resume};
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::testrun::protect::{
    cpu_percent, judge, mem_percent, parse_stat, Limits, Verdict, CPU_SUSTAIN,
};
use cc_ci_run::testrun::report::{human_bytes, summary_lines, Outcome, Report, TestReport};

fn cp(run: &str, r: &str, tier: Option<&str>) -> Checkpoint {
    Checkpoint {
        run_id: run.into(),
        git_ref: r.into(),
        tier: tier.map(String::from),
        passed: vec!["a".into(), "b".into()],
        updated: String::new(),
    }
}

#[test]
fn checkpoint_of_same_run_ref_and_tier_is_resumed() {
    assert_eq!(
        decide(
            &cp("drone-7", "abc", Some("install")),
            "drone-7",
            "abc",
            Some("install")
        ),
        Resume::Use(vec!["a".into(), "b".into()])
    );
}

#[test]
fn checkpoint_of_another_ref_run_or_tier_is_ignored_with_the_reason() {
    let c = cp("drone-7", "abc", None);
    match decide(&c, "drone-7", "def", None) {
        Resume::Ignore(why) => assert!(why.contains("ref `abc`"), "{why}"),
        other => panic!("{other:?}"),
    }
    match decide(&c, "drone-8", "abc", None) {
        Resume::Ignore(why) => assert!(why.contains("run `drone-7`"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(&c, "drone-7", "abc", Some("upgrade")),
        Resume::Ignore(_)
    ));
}

#[test]
fn journal_round_trips_and_is_started_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint::path(dir.path(), Some("install"));
    assert!(path.ends_with("checkpoint-install.jsonl"));
    assert_eq!(checkpoint::load(dir.path(), Some("install")).unwrap(), None);
    let c = cp("r", "x", Some("install"));
    let mut j = checkpoint::Journal::create(dir.path(), &c).unwrap();
    j.passed("c").unwrap();
    j.passed("a").unwrap();
    j.sync().unwrap();
    let l = checkpoint::load(dir.path(), Some("install"))
        .unwrap()
        .unwrap();
    assert_eq!(l.path, path);
    assert_eq!(l.notes, Vec::<String>::new());
    assert_eq!(
        l.checkpoint.passed,
        ["a", "b", "c"],
        "a listed twice counts once"
    );
    assert_eq!(
        (l.checkpoint.run_id.as_str(), l.checkpoint.git_ref.as_str()),
        ("r", "x")
    );
    assert!(
        !l.checkpoint.updated.is_empty(),
        "the header says when it started"
    );
    // One line per test after the header.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1 + 2 + 2, "{text}");
    assert!(text.ends_with("{\"passed\":\"a\"}\n"), "{text}");
    // A new attempt starts afresh with what it took over.
    let mut c2 = cp("r", "x", Some("install"));
    c2.passed = vec!["a".into()];
    drop(checkpoint::Journal::create(dir.path(), &c2).unwrap());
    let l = checkpoint::load(dir.path(), Some("install"))
        .unwrap()
        .unwrap();
    assert_eq!(l.checkpoint.passed, ["a"]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
    std::fs::write(&path, "{not json\n").unwrap();
    assert!(checkpoint::load(dir.path(), Some("install")).is_err());
}

fn journal_text(lines: &[&str]) -> String {
    let mut t = checkpoint::render(&cp("r", "x", None))
        .map(|b| String::from_utf8(b).unwrap())
        .unwrap();
    for l in lines {
        t.push_str(l);
    }
    t
}

#[test]
fn a_torn_last_line_is_ignored_with_a_note_not_an_error() {
    // A write cut short by a host crash: the line has no newline.
    let p = checkpoint::parse(&journal_text(&["{\"passed\":\"c\"}\n", "{\"passed\":\"d"])).unwrap();
    assert_eq!(p.checkpoint.passed, ["a", "b", "c"]);
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(p.notes[0].contains("torn"), "{:?}", p.notes);
    // Zeros the file system left after a crash, with no newline: torn too.
    let p = checkpoint::parse(&journal_text(&["\0\0\0\0"])).unwrap();
    assert_eq!(p.checkpoint.passed, ["a", "b"]);
    assert!(p.notes[0].contains("4 byte(s)"), "{:?}", p.notes);
    // A whole journal has no note.
    let p = checkpoint::parse(&journal_text(&[])).unwrap();
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

#[test]
fn a_damaged_line_is_ignored_with_a_note_and_the_rest_is_used() {
    let p = checkpoint::parse(&journal_text(&["garbage\n", "{\"passed\":\"c\"}\n"])).unwrap();
    assert_eq!(p.checkpoint.passed, ["a", "b", "c"]);
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].contains("line 4"), "{:?}", p.notes);
}

#[test]
fn a_journal_without_its_header_or_of_another_format_is_an_error() {
    for text in [
        "",
        "{\"passed\":\"a\"}\n",
        "{\"journal\":2,\"run_id\":\"r\",\"ref\":\"x\",\"tier\":null,\"started\":\"\"}\n",
    ] {
        assert!(checkpoint::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn the_json_checkpoint_of_an_earlier_release_is_read_when_no_journal_exists() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = checkpoint::legacy_path(dir.path(), Some("install"));
    assert!(legacy.ends_with("checkpoint-install.json"));
    let old = cp("r", "x", Some("install"));
    std::fs::write(&legacy, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let l = checkpoint::load(dir.path(), Some("install"))
        .unwrap()
        .unwrap();
    assert_eq!(l.checkpoint, old);
    assert_eq!(l.path, legacy);
    assert!(l.notes[0].contains("earlier release"), "{:?}", l.notes);
    // The journal that takes over removes it.
    drop(checkpoint::Journal::create(dir.path(), &old).unwrap());
    assert!(!legacy.exists());
    let l = checkpoint::load(dir.path(), Some("install"))
        .unwrap()
        .unwrap();
    assert_eq!(l.path, checkpoint::path(dir.path(), Some("install")));
    assert_eq!(l.checkpoint.passed, old.passed);
}

const STAT: &str = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\nintr 1\n";

#[test]
fn cpu_busy_share_between_two_readings() {
    let a = parse_stat(STAT).unwrap();
    assert_eq!((a.busy, a.total), (200, 1000));
    let b = parse_stat("cpu  400 0 200 700 200 0 0 0 0 0\n").unwrap();
    assert_eq!(cpu_percent(a, b), Some(80.0));
    assert_eq!(cpu_percent(a, a), None);
    assert_eq!(parse_stat("intr 5\n"), None);
}

#[test]
fn memory_used_share_from_meminfo() {
    let m = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    250 kB\n";
    assert_eq!(mem_percent(m), Some(75.0));
    assert_eq!(mem_percent("MemTotal: 5 kB\n"), None);
}

#[test]
fn memory_past_the_limit_trips_at_once_cpu_only_when_sustained() {
    let l = Limits {
        cpu: 90.0,
        mem: 80.0,
    };
    assert!(matches!(judge(None, Some(85.0), 0, l).0, Verdict::Trip(w) if w.contains("memory")));
    assert_eq!(judge(Some(50.0), Some(10.0), 0, l), (Verdict::Fine, 0));
    let mut streak = 0;
    for k in 1..CPU_SUSTAIN {
        let (v, s) = judge(Some(95.0), Some(10.0), streak, l);
        assert_eq!((v, s), (Verdict::Fine, k));
        streak = s;
    }
    // No new reading keeps the streak; a calm one resets it.
    assert_eq!(judge(None, None, streak, l).1, streak);
    assert_eq!(judge(Some(10.0), None, streak, l).1, 0);
    assert!(matches!(judge(Some(99.0), None, streak, l).0, Verdict::Trip(w) if w.contains("CPU")));
}

/// A test's report line; a test that ran (not skipped) has an exit status.
pub fn test(name: &str, result: Outcome, reason: Option<&str>) -> TestReport {
    let ran = result != Outcome::Skipped;
    TestReport {
        name: name.into(),
        path: format!("/t/{name}"),
        file: format!("tests/{name}"),
        result,
        reason: reason.map(String::from),
        status: ran.then(|| {
            if result == Outcome::Passed {
                "exit 0".into()
            } else {
                "exit 1".into()
            }
        }),
        exit_code: ran.then_some(i32::from(result != Outcome::Passed)),
        leaky: false,
        leaked_pids: vec![],
        started: (result != Outcome::Skipped).then(|| "2026-01-01T00:00:00.000Z".into()),
        duration_ms: 1500,
        peak_rss_bytes: Some(3 << 20),
        cpu_ms: Some(20),
        stdout: Some(format!("output/{name}.stdout")),
        stderr: Some(format!("output/{name}.stderr")),
        stdout_bytes: ran.then_some(4),
        stderr_bytes: ran.then_some(4),
        level: None,
        tiers: vec![],
        tags: vec![],
        priority: 0,
        depends_on: vec![],
        timeout_ms: 600_000,
        memory_bytes: None,
        retries: 0,
        attempts: u32::from(ran),
        flaky: false,
        failed_attempts: vec![],
        cases: vec![],
        junit: None,
        artifacts: vec![],
    }
}

pub fn report(tests: Vec<TestReport>) -> Report {
    Report {
        run_id: "drone-1".into(),
        git_ref: "abc".into(),
        tier: Some(Tier::Install),
        started: "2026-01-01T00:00:00.000Z".into(),
        finished: "2026-01-01T00:00:01.000Z".into(),
        duration_ms: 1000,
        exit_code: 1,
        stopped: None,
        stop_reason: None,
        workers: 1,
        passed: 1,
        failed: 2,
        skipped: 1,
        flaky: 0,
        cases_passed: 0,
        cases_failed: 0,
        cases_skipped: 0,
        leaked_unattributed: vec![],
        tests,
    }
}

#[test]
fn summary_table_has_a_row_per_test_and_ends_with_the_directory() {
    let mut leaky = test("ok", Outcome::Passed, None);
    leaky.leaky = true;
    let r = report(vec![
        leaky,
        test("bad", Outcome::Failed, Some("exit 1")),
        test(
            "never",
            Outcome::Skipped,
            Some("depends on `bad`, which failed"),
        ),
    ]);
    let lines = summary_lines(&r, Path::new("/var/report"));
    assert_eq!(lines.last().unwrap(), "reports: /var/report");
    assert!(
        lines[1].starts_with("TEST") && lines[1].contains("PEAK RSS") && lines[1].contains("CPU")
    );
    assert!(
        lines[2].contains("passed, leaky")
            && lines[2].contains("1.5s")
            && lines[2].contains("3.0M")
    );
    assert!(lines[4].contains("skipped") && lines[4].contains("(depends on `bad`, which failed)"));
    assert!(lines[lines.len() - 2].starts_with("1 passed, 2 failed, 1 skipped"));
}

#[test]
fn human_sizes() {
    assert_eq!(human_bytes(512), "512B");
    assert_eq!(human_bytes(1536), "1.5K");
    assert_eq!(human_bytes(3 << 30), "3.0G");
}

fn case(
    name: &str,
    result: cc_ci_run::testrun::cases::CaseResult,
) -> cc_ci_run::testrun::cases::CaseReport {
    cc_ci_run::testrun::cases::CaseReport {
        name: format!("tests/suite.py::{name}"),
        result,
        message: (result != cc_ci_run::testrun::cases::CaseResult::Passed)
            .then(|| format!("{name} went wrong\nsecond line")),
        duration_ms: Some(250),
        text: String::new(),
    }
}

#[test]
fn summary_lists_a_tests_cases_under_it_and_only_the_red_ones_of_a_long_suite() {
    use cc_ci_run::testrun::cases::CaseResult;
    use cc_ci_run::testrun::report::CASE_ROWS;
    let mut short = test("short.py", Outcome::Failed, Some("exit 1"));
    short.cases = vec![
        case("test_a", CaseResult::Passed),
        case("test_b", CaseResult::Failed),
        case("test_c", CaseResult::Skipped),
    ];
    let mut long = test("long.py", Outcome::Failed, Some("exit 1"));
    long.cases = (0..CASE_ROWS + 5)
        .map(|i| case(&format!("test_{i}"), CaseResult::Passed))
        .collect();
    long.cases[3] = case("test_3", CaseResult::Error);
    let mut r = report(vec![short, long]);
    (r.cases_passed, r.cases_failed, r.cases_skipped) = (CASE_ROWS + 5, 2, 1);
    let lines = summary_lines(&r, Path::new("/r"));
    let rows: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "tests/suite.py::test_a",
            "tests/suite.py::test_b",
            "tests/suite.py::test_c",
            "tests/suite.py::test_3",
            format!("({}", CASE_ROWS + 4).as_str(),
        ],
        "{lines:#?}"
    );
    let b = lines.iter().find(|l| l.contains("::test_b")).unwrap();
    assert!(
        b.contains("failed") && b.ends_with("(test_b went wrong)"),
        "{b}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "(34 passed cases not listed)"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(&format!(
            "; cases: {} passed, 2 failed, 1 skipped (exit 1)",
            CASE_ROWS + 5
        ))),
        "{lines:#?}"
    );
}
