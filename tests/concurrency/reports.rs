//! junit.xml as CI tools read it, from the real binary (SPEC section 6):
//! classnames that stay the same from one build to the next, a failure
//! that quotes the test's stderr, the per-tier and merged files under a
//! run (also with `--report-dir`), a run red in its static checks, and
//! `cc-ci-run test` standalone. Every file is read with quick-xml, and with
//! junitparser too when `CCCI_DEV_JUNIT_PYTHON` names its python (`.ci/run`).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::*;

/// `run --quick` as Drone builds `build` of coop-cloud/example.
fn build(f: &Fixture, number: &str, extra: &[&str]) -> Command {
    let mut args = vec!["--quick"];
    args.extend(extra);
    let mut c = f.run_cmd(&args);
    c.env("DRONE_BUILD_NUMBER", number)
        .env("DRONE_REPO", "coop-cloud/example")
        .env("DRONE_BUILD_EVENT", "push")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn exit_of(mut c: Command) -> i32 {
    let out = c.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    code(out.status)
}

#[test]
fn classname_is_the_same_in_two_builds_and_a_failure_quotes_the_tests_stderr() {
    let f = Fixture::new();
    let d = f.tmp.path().join("reports-7");
    let mut first = build(&f, "7", &["--report-dir", d.to_str().unwrap()]);
    first.env("CCCI_EXAMPLE_FAIL", "install");
    assert_eq!(exit_of(first), 1);
    let mut second = build(&f, "8", &[]);
    second.env("CCCI_EXAMPLE_FAIL", "install");
    assert_eq!(exit_of(second), 1);

    // --report-dir D: the tier's file in D/install, the merged one in D.
    let tier7 = crate::junit::check(&d.join("install/junit.xml"));
    let run7 = crate::junit::check(&d.join("junit.xml"));
    let run8_dir = f.state.join("runs/drone-coop-cloud-example-8/report");
    let run8 = crate::junit::check(&run8_dir.join("junit.xml"));
    assert!(run8_dir.join("install/junit.xml").is_file());
    for doc in [&tier7, &run7, &run8] {
        let t = doc.case("00-deployed.sh");
        assert_eq!(t.classname, "example.install", "never the run id");
        assert_eq!(t.file, "tests/00-deployed.sh", "the recipe's path");
        assert_eq!((t.kind.as_str(), t.message.as_str()), ("failure", "exit 1"));
        assert!(t.text.starts_with("exit 1\n"), "{}", t.text);
        assert!(
            t.text
                .contains("failing on purpose: CCCI_EXAMPLE_FAIL=install (tier install)"),
            "the stderr tail: {}",
            t.text
        );
        assert_eq!((doc.totals.failures, doc.totals.errors), (1, 0));
    }
    // The failing test explains the red run: no phase testcase.
    assert!(run8.cases.iter().all(|c| !c.name.starts_with("phase:")));
    assert_eq!(run7.cases, run8.cases, "two builds, the same testcases");
}

#[test]
fn a_green_run_merges_every_tiers_testcases() {
    let f = Fixture::new();
    // Not --quick: install, upgrade and restore tiers.
    let c = f.run_cmd(&["--pr", "1"]);
    let mut c = c;
    c.env("CCCI_RUN_ID", "green")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    assert_eq!(exit_of(c), 0);
    let rec = f.record("green");
    let report = f.state.join("runs/green/report");
    let merged = crate::junit::check(&report.join("junit.xml"));
    let mut from_tiers = Vec::new();
    for tier in rec["tests"].as_array().unwrap() {
        let name = tier["tier"].as_str().unwrap();
        let doc = crate::junit::check(&report.join(name).join("junit.xml"));
        assert!(!doc.cases.is_empty(), "tier {name} ran tests");
        assert!(doc
            .cases
            .iter()
            .all(|c| c.classname == format!("example.{name}") && c.kind == "passed"));
        from_tiers.extend(doc.cases);
    }
    assert!(rec["tests"].as_array().unwrap().len() >= 2, "{rec}");
    // Besides the tiers' own: each tier's watch of the app, passed.
    let (watch, tests): (Vec<_>, Vec<_>) = merged
        .cases
        .iter()
        .cloned()
        .partition(|c| c.suite.starts_with("watch-"));
    assert_eq!(tests, from_tiers);
    let tiers = rec["tests"].as_array().unwrap();
    assert_eq!(watch.len(), tiers.len(), "{watch:?}");
    for (w, t) in watch.iter().zip(tiers) {
        assert_eq!(w.name, "watch:app");
        assert_eq!(w.suite, format!("watch-{}", t["tier"].as_str().unwrap()));
        assert_eq!(w.kind, "passed");
    }
    assert_eq!(merged.totals.tests, from_tiers.len() + watch.len());
    assert_eq!((merged.totals.failures, merged.totals.errors), (0, 0));
}

/// A branch `broken` of the recipe whose `.env.sample` is gone: the static
/// checks of a run of it fail.
fn push_broken_branch(f: &Fixture) {
    let repo = f.abra_home.join("recipes/example");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["checkout", "-q", "-b", "broken"]);
    git(&["rm", "-q", ".env.sample"]);
    git(&["commit", "-q", "-m", "lose .env.sample"]);
    git(&["push", "-q", "origin", "broken"]);
    git(&["checkout", "-q", "-"]);
}

#[test]
fn a_run_red_in_its_static_checks_writes_the_merged_junit_naming_the_phase() {
    let f = Fixture::new();
    push_broken_branch(&f);
    let mut c = f.run_cmd(&["--ref", "broken", "--quick"]);
    c.env("CCCI_RUN_ID", "broken")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let status = exit_of(c);
    assert_ne!(status, 0);
    let rec = f.record("broken");
    assert_eq!(rec["failed_phase"], "checks", "{rec}");
    let doc = crate::junit::check(&f.state.join("runs/broken/report/junit.xml"));
    assert_eq!(doc.cases.len(), 1, "{:#?}", doc.cases);
    let c = doc.case("phase: checks");
    assert_eq!(
        (c.kind.as_str(), c.classname.as_str()),
        ("error", "example.run")
    );
    let verdict = rec["verdict"].as_str().unwrap();
    assert!(
        c.message
            .starts_with(&format!("{verdict} in phase checks: ")),
        "{}",
        c.message
    );
    assert!(c.message.contains(".env.sample"), "the rule: {}", c.message);
    assert!(c.text.contains("run.log"), "{}", c.text);
    assert_eq!(
        (doc.totals.tests, doc.totals.failures, doc.totals.errors),
        (1, 0, 1)
    );
}

#[test]
fn standalone_test_names_the_class_after_the_tier_and_the_file_as_given() {
    let dir = tempdir();
    let tests = dir.path().join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    for (name, body) in [
        ("ok.sh", "#!/bin/sh\nexit 0\n"),
        (
            "bad.sh",
            "#!/bin/sh\nfor i in $(seq 1 30); do echo \"line-$i\" >&2; done\nexit 7\n",
        ),
    ] {
        let path = script(&tests, name, body);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (tier, class) in [(None, "tests"), (Some("upgrade"), "upgrade")] {
        let report = dir.path().join(format!("report-{class}"));
        let mut c = ccci();
        c.current_dir(dir.path())
            .args(["test", "--report-dir"])
            .arg(&report);
        if let Some(t) = tier {
            c.args(["--tier", t]);
        }
        c.arg("tests");
        assert_eq!(exit_of(c), 1);
        let doc = crate::junit::check(&report.join("junit.xml"));
        let bad = doc.case("bad.sh");
        assert_eq!(bad.classname, class);
        assert_eq!(bad.file, "tests/bad.sh");
        assert!(bad.text.starts_with("exit 7\n"), "{}", bad.text);
        assert!(bad.text.contains("line-30") && bad.text.contains("line-11"));
        assert!(!bad.text.contains("line-10\n"), "only the last 20 lines");
        assert_eq!(doc.case("ok.sh").kind, "passed");
    }
}

#[test]
fn a_run_with_a_flaky_test_is_green_and_its_record_and_merged_junit_say_so() {
    let f = Fixture::new();
    // A CI-repository test of the recipe that fails on its first attempt.
    let ci = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&ci).unwrap();
    let count = f.tmp.path().join("flaky.count");
    let test = ci.join("50-flaky.sh");
    std::fs::write(
        &test,
        format!(
            "#!/bin/sh\nn=$(( $(cat '{c}' 2>/dev/null || echo 0) + 1 )); echo $n > '{c}'\n\
             [ $n -ge 2 ] || {{ echo 'flaked' >&2; exit 1; }}\n",
            c = count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&test, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = build(&f, "9", &["--retries", "1"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    assert_eq!(code(out.status), 0, "flaky is green without --flaky-fails");
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "2");
    let rec = f.record("drone-coop-cloud-example-9");
    assert_eq!(rec["tests"][0]["flaky"], 1, "{rec}");
    assert!(
        log.contains(", 1 flaky ("),
        "the run's summary names it: {log}"
    );
    let merged = crate::junit::check(
        &f.state
            .join("runs/drone-coop-cloud-example-9/report/junit.xml"),
    );
    let case = merged.case("50-flaky.sh");
    assert_eq!(case.kind, "passed");
    assert_eq!(case.reruns.len(), 1);
    assert_eq!(case.reruns[0].tag, "flakyFailure");
}
