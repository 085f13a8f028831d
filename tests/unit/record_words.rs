//! The words of a run record (phase, tier, verdict, the floor) as types:
//! each reads back what it writes, and a record as earlier releases wrote
//! it reads and writes back unchanged.

use cc_ci_run::exit;
use cc_ci_run::phase::Phase;
use cc_ci_run::rundir::RunRecord;
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::verdict::Verdict;

fn every_phase() -> Vec<Phase> {
    let mut all = vec![
        Phase::Started,
        Phase::Fetch,
        Phase::Checks,
        Phase::Prepare,
        Phase::Lock,
        Phase::Preclean,
        Phase::Install,
        Phase::Upgrade,
        Phase::Backup,
        Phase::Restore,
        Phase::Teardown,
        Phase::Cleanup,
        Phase::Finished,
        Phase::Abandoned,
    ];
    for t in Tier::ALL {
        all.push(Phase::Converge(t));
        all.push(Phase::Test(t));
    }
    all
}

#[test]
fn every_phase_reads_back_from_its_name_and_other_words_do_not() {
    for p in every_phase() {
        let name = p.to_string();
        assert_eq!(Phase::parse(&name), Some(p), "{name}");
        assert_eq!(serde_json::to_value(p).unwrap(), name.as_str());
        assert_eq!(
            serde_json::from_value::<Phase>(name.as_str().into()).unwrap(),
            p
        );
    }
    assert_eq!(
        Phase::Converge(Tier::Install).to_string(),
        "install-converge"
    );
    assert_eq!(Phase::Test(Tier::Upgrade).to_string(), "test-upgrade");
    for bad in ["", "deploy", "test-", "-converge", "test-deploy", "Started"] {
        assert_eq!(Phase::parse(bad), None, "{bad:?}");
        assert!(
            serde_json::from_value::<Phase>(bad.into()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn verdicts_are_written_and_read_as_their_words() {
    for v in Verdict::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        assert_eq!(
            serde_json::from_value::<Verdict>(v.as_str().into()).unwrap(),
            v
        );
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
        assert_eq!(v.to_string(), v.as_str());
        // `history --verdict` takes the same word.
        let value = clap::ValueEnum::to_possible_value(&v).unwrap();
        assert_eq!(value.get_name(), v.as_str());
    }
    assert_eq!(
        <Verdict as clap::ValueEnum>::value_variants(),
        Verdict::ALL.as_slice()
    );
    assert_eq!(Verdict::parse("green"), None);
    let words: Vec<&str> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(
        words,
        [
            "passed",
            "failed",
            "bad-input",
            "infra",
            "teardown-failed",
            "self-protect",
            "duplicate",
            "cancelled",
            "deadline"
        ]
    );
}

#[test]
fn the_verdict_of_each_exit_code() {
    for (code, v) in [
        (exit::OK, Verdict::Passed),
        (exit::TESTS_FAILED, Verdict::Failed),
        (exit::USAGE, Verdict::BadInput),
        (exit::TEARDOWN_FAILED, Verdict::TeardownFailed),
        (exit::SELF_PROTECT, Verdict::SelfProtect),
        (exit::DUPLICATE_RUN, Verdict::Duplicate),
        (exit::SIGHUP, Verdict::Cancelled),
        (exit::SIGINT, Verdict::Cancelled),
        (exit::SIGTERM, Verdict::Cancelled),
        (exit::DEADLINE, Verdict::Deadline),
        (exit::INFRA, Verdict::Infra),
        (exit::NOT_FOUND, Verdict::Infra),
    ] {
        assert_eq!(Verdict::of_exit(code), v, "exit {code}");
    }
}

/// A record the janitor marked abandoned, as the string-typed record wrote
/// it: it reads, and writes back the same JSON.
#[test]
fn a_record_of_an_earlier_release_reads_and_writes_back_unchanged() {
    let text = r#"{
  "run_id": "r1",
  "recipe": "example",
  "git_ref": "main",
  "sha": null,
  "pr": null,
  "domain": "example-r1.ci.localhost",
  "stack": "example-r1_ci_localhost",
  "pid": 10,
  "wrapper_pid": 9,
  "host": "ci1",
  "phase": "abandoned",
  "started": "2026-12-01T10:00:00.000Z",
  "updated": "2026-12-01T10:01:00.000Z",
  "finished": "2026-12-01T10:02:00.000Z",
  "exit_code": 5,
  "base_version": null,
  "tested_version": null,
  "tiers": [
    "install",
    "upgrade"
  ],
  "verdict": "teardown-failed",
  "failed_phase": "test-upgrade",
  "phases": [
    {
      "name": "started",
      "started": "2026-12-01T10:00:00.000Z",
      "ended": "2026-12-01T10:00:00.100Z",
      "duration_ms": 100
    },
    {
      "name": "install-converge",
      "started": "2026-12-01T10:00:00.100Z",
      "ended": "2026-12-01T10:00:30.000Z",
      "duration_ms": 29900
    },
    {
      "name": "test-upgrade",
      "started": "2026-12-01T10:00:30.000Z",
      "ended": null,
      "duration_ms": null
    }
  ],
  "lock": null,
  "tests": [],
  "log": null,
  "junit": null,
  "tiers_skipped": [],
  "converge_bound": null,
  "artifacts": []
}"#;
    let r: RunRecord = serde_json::from_str(text).unwrap();
    assert_eq!(r.phase, Phase::Abandoned);
    assert_eq!(r.failed_phase, Some(Phase::Test(Tier::Upgrade)));
    assert_eq!(r.tiers, [Tier::Install, Tier::Upgrade]);
    assert_eq!(r.verdict, Some(Verdict::TeardownFailed));
    assert_eq!(r.phases[1].name, Phase::Converge(Tier::Install));
    assert_eq!(serde_json::to_string_pretty(&r).unwrap(), text);
}

#[test]
fn the_floor_of_a_tier_is_written_and_read_as_its_word() {
    use cc_ci_run::outcome::Outcome;
    use cc_ci_run::rundir::Floor;
    let cases = [
        (Floor::Ran(Outcome::Passed), "\"passed\""),
        (Floor::Ran(Outcome::Failed), "\"failed\""),
        (Floor::Ran(Outcome::TimedOut), "\"timed-out\""),
        (
            Floor::Off("CCCI_FLOOR=off".into()),
            "\"off (CCCI_FLOOR=off)\"",
        ),
        // The reason may hold parentheses of its own.
        (
            Floor::Off("floor = false (tests/ccci.toml)".into()),
            "\"off (floor = false (tests/ccci.toml))\"",
        ),
    ];
    for (floor, word) in cases {
        assert_eq!(serde_json::to_string(&floor).unwrap(), word);
        assert_eq!(serde_json::from_str::<Floor>(word).unwrap(), floor);
    }
    for bad in ["\"green\"", "\"off\"", "\"off (x\"", "\"\""] {
        assert!(serde_json::from_str::<Floor>(bad).is_err(), "{bad}");
    }
}
