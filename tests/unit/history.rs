use std::time::SystemTime;

use cc_ci_run::cli::{Cli, Command, HistoryArgs};
use cc_ci_run::cmd::history::{select, table, Filter};
use cc_ci_run::log::parse_timestamp;
use cc_ci_run::phase::Phase;
use cc_ci_run::rundir::{LockTimes, RunRecord};
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::verdict::Verdict;
use clap::Parser;

fn args(extra: &[&str]) -> HistoryArgs {
    let mut argv = vec!["cc-ci-run", "history"];
    argv.extend(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::History(a) => a,
        _ => unreachable!(),
    }
}

/// A finished run that asked for `domain`'s lock at second `req`, got it
/// at `acq` and gave it back at `rel` (seconds after midnight).
fn run(
    id: &str,
    recipe: &str,
    domain: &str,
    verdict: &str,
    req: u32,
    acq: u32,
    rel: u32,
) -> RunRecord {
    let t = |s: u32| format!("2026-12-01T10:{:02}:{:02}.000Z", s / 60, s % 60);
    RunRecord {
        run_id: id.into(),
        recipe: recipe.into(),
        domain: domain.into(),
        started: t(req.saturating_sub(1)),
        finished: Some(t(rel + 1)),
        exit_code: Some(if verdict == "passed" { 0 } else { 1 }),
        verdict: Some(Verdict::parse(verdict).unwrap()),
        failed_phase: (verdict != "passed").then_some(Phase::Test(Tier::Install)),
        lock: Some(LockTimes {
            domain: domain.into(),
            backend: "flock".into(),
            requested: t(req),
            acquired: Some(t(acq)),
            released: Some(t(rel)),
            wait_ms: Some(u64::from(acq - req) * 1000),
        }),
        ..RunRecord::default()
    }
}

fn records() -> Vec<RunRecord> {
    vec![
        run(
            "a-1",
            "gitea",
            "gitea-pr1.ci.localhost",
            "passed",
            10,
            10,
            100,
        ),
        // Asked while a-1 held the domain: waited behind it.
        run(
            "a-2",
            "gitea",
            "gitea-pr1.ci.localhost",
            "failed",
            20,
            100,
            160,
        ),
        run(
            "b-1",
            "matrix",
            "matrix-b3.ci.localhost",
            "cancelled",
            30,
            30,
            50,
        ),
    ]
}

#[test]
fn history_lists_newest_first_and_names_whom_a_run_waited_for() {
    let all = select(&records(), &Filter::default());
    let ids: Vec<&str> = all.iter().map(|e| e.run_id.as_str()).collect();
    assert_eq!(ids, ["b-1", "a-2", "a-1"]);
    let a2 = &all[1];
    assert_eq!(a2.waited_for.as_deref(), Some("a-1"));
    assert_eq!(a2.lock_wait_ms, Some(80_000));
    assert_eq!(a2.duration_ms, Some(142_000));
    assert_eq!(all[0].waited_for, None);
    assert_eq!(all[2].waited_for, None);
    let text = table(&all);
    assert!(
        text.lines().next().unwrap().contains("WAITED FOR"),
        "{text}"
    );
    assert!(text.lines().nth(2).unwrap().contains("a-1"), "{text}");
}

#[test]
fn history_filters_by_domain_recipe_verdict_and_age() {
    let recs = records();
    let now = parse_timestamp("2026-12-01T10:03:00.000Z").unwrap();
    let pick = |a: &[&str]| -> Vec<String> {
        select(&recs, &Filter::new(&args(a), now).unwrap())
            .into_iter()
            .map(|e| e.run_id)
            .collect()
    };
    assert_eq!(
        pick(&["--domain", "gitea-pr1.ci.localhost"]),
        ["a-2", "a-1"]
    );
    assert_eq!(pick(&["--recipe", "matrix"]), ["b-1"]);
    assert_eq!(pick(&["--verdict", "failed"]), ["a-2"]);
    // Started within the last 2m50s: a-1 started at 10:00:09.
    assert_eq!(pick(&["--since", "170s"]), ["b-1", "a-2"]);
    // A waiting run's blocker is found even when the filter hides it.
    let only = select(
        &recs,
        &Filter::new(&args(&["--verdict", "failed"]), now).unwrap(),
    );
    assert_eq!(only[0].waited_for.as_deref(), Some("a-1"));
    // Unfinished runs are not history.
    let mut live = recs.clone();
    live[0].finished = None;
    assert_eq!(select(&live, &Filter::default()).len(), 2);
}

#[test]
fn history_refuses_bad_filters_naming_them() {
    let now = SystemTime::now();
    // A verdict is one of clap's values: a bad one is clap's usage error
    // (exit 2) naming the flag and every verdict.
    let e = Cli::try_parse_from(["cc-ci-run", "history", "--verdict", "green"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--verdict"), "{e}");
    assert!(e.to_string().contains("teardown-failed"), "{e}");
    for (a, field) in [
        (vec!["--domain", "Bad_Domain"], "--domain"),
        (vec!["--recipe", "a/b"], "--recipe"),
    ] {
        let e = Filter::new(&args(&a), now).unwrap_err();
        assert_eq!(cc_ci_run::exit::code_for(&e), 2);
        assert!(format!("{e:#}").contains(field), "{e:#}");
    }
    assert!(Cli::try_parse_from(["cc-ci-run", "history", "--since", "yesterday"]).is_err());
}
