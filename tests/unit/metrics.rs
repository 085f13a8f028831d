//! The metrics file's rendering and tally (pure), checked with the strict
//! text-format checker; and the CCCI_METRICS_FILE rule.

use std::time::SystemTime;

use cc_ci_run::config::Env;
use cc_ci_run::rundir::{LockTimes, RunRecord};
use cc_ci_run::verdict::Verdict;
use cc_ci_run::views::metrics::{file_from_env, render, HeldLocks, Tally};

use crate::promtext::{check, get, promtool_accepts};

fn rec(id: &str, recipe: &str, verdict: &str, finished: &str, wait_ms: u64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        recipe: recipe.into(),
        domain: format!("{id}.ci.localhost"),
        started: "2026-12-01T10:00:00.000Z".into(),
        finished: Some(finished.into()),
        verdict: Some(Verdict::parse(verdict).unwrap()),
        lock: Some(LockTimes {
            domain: format!("{id}.ci.localhost"),
            backend: "flock".into(),
            requested: "2026-12-01T10:00:00.000Z".into(),
            wait_ms: Some(wait_ms),
            ..LockTimes::default()
        }),
        ..RunRecord::default()
    }
}

#[test]
fn counts_per_recipe_and_verdict_with_last_run_and_waits() {
    let t = Tally::seed(&[
        rec("a", "gitea", "passed", "2026-12-01T10:01:00.000Z", 0),
        rec("b", "gitea", "failed", "2026-12-01T10:03:00.000Z", 1500),
        rec("c", "gitea", "passed", "2026-12-01T10:02:00.000Z", 500),
        rec("d", "wiki", "cancelled", "2026-12-01T10:00:30.000Z", 0),
    ]);
    let text = render(
        &t,
        HeldLocks {
            held: 2,
            oldest_age_secs: 42,
        },
    );
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        get(&s, r#"ccci_runs_total{recipe="gitea",verdict="passed"}"#),
        Some(2.0)
    );
    assert_eq!(
        get(&s, r#"ccci_runs_total{recipe="gitea",verdict="failed"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(&s, r#"ccci_runs_total{recipe="wiki",verdict="cancelled"}"#),
        Some(1.0)
    );
    // The last run is the latest finished (b at 10:03, 3 minutes), not the last listed.
    assert_eq!(
        get(&s, r#"ccci_last_run_duration_seconds{recipe="gitea"}"#),
        Some(180.0)
    );
    assert_eq!(
        get(&s, r#"ccci_last_run_passed{recipe="gitea"}"#),
        Some(0.0)
    );
    assert_eq!(
        get(&s, r#"ccci_lock_wait_seconds_count{recipe="gitea"}"#),
        Some(3.0)
    );
    assert_eq!(
        get(&s, r#"ccci_lock_wait_seconds_sum{recipe="gitea"}"#),
        Some(2.0)
    );
    assert_eq!(get(&s, "ccci_app_locks_held{}"), Some(2.0));
    assert_eq!(get(&s, "ccci_app_lock_oldest_age_seconds{}"), Some(42.0));
}

#[test]
fn labels_are_recipe_and_verdict_only_never_a_run_id_or_domain() {
    let t = Tally::seed(&[rec(
        "run-77",
        "gitea",
        "passed",
        "2026-12-01T10:01:00.000Z",
        0,
    )]);
    let text = render(&t, HeldLocks::default());
    assert!(!text.contains("run-77"), "{text}");
    for (key, _) in check(&text).unwrap() {
        let labels = key.split_once('{').unwrap().1.trim_end_matches('}');
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let name = pair.split_once('=').unwrap().0;
            assert!(
                ["recipe", "verdict"].contains(&name),
                "label {name} in {key}"
            );
        }
    }
}

#[test]
fn sweeps_add_up_and_a_running_record_is_not_counted() {
    let mut running = rec("r", "gitea", "passed", "x", 0);
    running.finished = None;
    let mut t = Tally::seed(&[running]);
    assert!(t.runs.is_empty());
    t.add_sweep(2, 1, SystemTime::UNIX_EPOCH);
    t.add_sweep(1, 0, SystemTime::UNIX_EPOCH);
    let s = check(&render(&t, HeldLocks::default())).unwrap();
    assert_eq!(get(&s, "ccci_janitor_sweeps_total{}"), Some(2.0));
    assert_eq!(get(&s, "ccci_janitor_reaped_total{}"), Some(3.0));
    assert_eq!(get(&s, "ccci_janitor_reap_failures_total{}"), Some(1.0));
}

#[test]
fn an_empty_tally_is_a_valid_file() {
    check(&render(&Tally::default(), HeldLocks::default())).unwrap();
}

#[test]
fn label_values_are_escaped() {
    let t = Tally::seed(&[rec(
        "a",
        "we\"ird\\re\ncipe",
        "passed",
        "2026-12-01T10:01:00.000Z",
        0,
    )]);
    let s = check(&render(&t, HeldLocks::default())).unwrap();
    assert!(get(
        &s,
        "ccci_runs_total{recipe=\"we\"ird\\re\ncipe\",verdict=\"passed\"}"
    )
    .is_some());
}

#[test]
fn the_checker_refuses_what_the_format_does_not_allow() {
    for bad in [
        "x 1",                          // no final newline
        "x{a=\"1\"} 1\nx{a=\"1\"} 2\n", // duplicate series
        "x{a=1} 1\n",                   // unquoted value
        "# TYPE x counter\nx -1\n",     // negative counter
        "x 1\ny 1\nx{a=\"2\"} 1\n",     // family split
        "x one\n",                      // bad value
        "9x 1\n",                       // bad name
        "x 1\n\n",                      // blank line
        "x 1\n# TYPE x gauge\n",        // TYPE after samples
    ] {
        assert!(check(bad).is_err(), "accepted {bad:?}");
    }
}

fn env(v: &str) -> Env {
    [("CCCI_METRICS_FILE".to_string(), v.to_string())].into()
}

#[test]
fn metrics_file_must_be_an_absolute_prom_file_in_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ccci.prom");
    assert_eq!(file_from_env(&env(ok.to_str().unwrap())).unwrap(), Some(ok));
    assert_eq!(file_from_env(&env("")).unwrap(), None);
    for (bad, rule) in [
        ("ccci.prom".to_string(), "absolute"),
        (dir.path().display().to_string(), "directory"),
        (dir.path().join("x.txt").display().to_string(), ".prom"),
        (
            dir.path().join("no/x.prom").display().to_string(),
            "does not exist",
        ),
    ] {
        let e = file_from_env(&env(&bad)).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("CCCI_METRICS_FILE") && msg.contains(rule),
            "{msg}"
        );
        assert_eq!(cc_ci_run::exit::code_for(&e), 2);
    }
}

#[test]
fn runs_of_every_verdict_render_a_file_promtool_accepts() {
    let verdicts = Verdict::ALL.map(Verdict::as_str);
    let records: Vec<RunRecord> = verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| rec(&format!("r{i}"), "gitea", v, "2026-12-01T10:01:00.000Z", 10))
        .collect();
    let mut t = Tally::seed(&records);
    t.add_sweep(3, 1, SystemTime::now());
    let text = render(&t, HeldLocks::default());
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for v in verdicts {
        let key = format!(r#"ccci_runs_total{{recipe="gitea",verdict="{v}"}}"#);
        assert_eq!(get(&s, &key), Some(1.0), "{key}");
    }
    promtool_accepts(&text);
}
