//! Green means tested, on a host as a real one feeds it: run ids of many
//! repositories with Drone's per-repository build numbers, a duplicate
//! named by its live holder (also a plain `flock(1)`), filters that select
//! nothing, and apps the janitor must not touch because cc-ci-run did not
//! create them (SPEC sections 3, 5 and 6).

use std::process::{Command, Stdio};

use crate::support::*;

/// `run --quick` as Drone builds `build` of `repo` (a push: no pull request).
fn drone_run(f: &Fixture, repo: &str, build: &str, extra: &[&str]) -> Command {
    let mut args = vec!["--quick"];
    args.extend(extra);
    let mut c = f.run_cmd(&args);
    c.env("DRONE_BUILD_NUMBER", build)
        .env("DRONE_REPO", repo)
        .env("DRONE_BUILD_EVENT", "push");
    c
}

/// The owner record of a run lock, as `locks` reads it.
fn run_lock_owner(f: &Fixture, run_id: &str) -> serde_json::Value {
    let path = f.state.join("locks/runs").join(format!("{run_id}.lock"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap()
}

#[test]
fn two_repositories_with_the_same_build_number_get_two_ids_and_both_pass() {
    let f = Fixture::new();
    // Both at once: with one id per build number the second would exit 75
    // (or, later, overwrite the first's record).
    let a = drone_run(&f, "coop-cloud/example", "7", &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = drone_run(
        &f,
        "alice/Example_Recipe",
        "7",
        &["--domain", "example-alice7.ci.localhost"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(a.status), 0, "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(code(b.status), 0, "{}", String::from_utf8_lossy(&b.stderr));
    let (ra, rb) = (
        f.record("drone-coop-cloud-example-7"),
        f.record("drone-alice-example-recipe-7"),
    );
    assert_eq!(ra["exit_code"], 0);
    assert_eq!(rb["exit_code"], 0);
    assert_eq!(ra["domain"], "example-b7.ci.localhost");
    assert_eq!(rb["domain"], "example-alice7.ci.localhost");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn the_same_repository_and_build_twice_is_75_naming_the_live_holder() {
    let f = Fixture::new();
    let id = "drone-coop-cloud-example-8";
    let mut first = drone_run(&f, "coop-cloud/example", "8", &[])
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnPanic(vec![first.id() as i32]);
    wait_for_file(&f.ready.join("test-install"));
    let holder = run_lock_owner(&f, id);
    let out = drone_run(
        &f,
        "coop-cloud/example",
        "8",
        &["--domain", "example-dup8.ci.localhost"],
    )
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 75, "{log}");
    assert!(
        log.contains(&format!("pid {}", holder["pid"])) && log.contains(&format!("run {id}")),
        "the duplicate names the live harness: {log}"
    );
    send(first.id() as i32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut first), 143);
    guard.0.clear();
    assert!(
        !f.calls()
            .iter()
            .any(|c| c["domain"] == "example-dup8.ci.localhost"),
        "the duplicate reached the stand-ins"
    );

    // A holder that wrote no owner record: util-linux flock(1), as an
    // operator keeping builds off would. `locks` finds its pid in the
    // kernel; so does the duplicate message.
    let lock = f.state.join("locks/runs").join(format!("{id}.lock"));
    std::fs::write(&lock, b"").unwrap();
    let flock = hold_with_flock(&lock);
    let flock_pid = flock.id();
    let out = drone_run(&f, "coop-cloud/example", "8", &[])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    release_flock(flock);
    assert_eq!(code(out.status), 75, "{log}");
    assert!(
        log.contains(&format!("pid {flock_pid} `flock")) && log.contains("no owner record"),
        "the duplicate names the flock(1) holder by its pid: {log}"
    );
}

#[test]
fn a_run_whose_filters_select_no_test_is_red_unless_told_otherwise() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1", "--quick", "--tag", "nosuchtag"])
        .env("CCCI_RUN_ID", "notests")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    assert!(
        log.contains("no test ran") && log.contains("--tag nosuchtag"),
        "the failure names the filter: {log}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert_eq!(f.record("notests")["exit_code"], 1);
    for (policy, warns) in [("warn", true), ("pass", false)] {
        let out = f
            .run_cmd(&[
                "--pr",
                "1",
                "--quick",
                "--tag",
                "nosuchtag",
                "--no-tests",
                policy,
            ])
            .env("CCCI_RUN_ID", "notests")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 0, "--no-tests {policy}: {log}");
        assert_eq!(log.contains("warning: no test ran"), warns, "{log}");
    }
    // The same filters through the environment, as a !testme bridge sends them.
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "notests")
        .env("CCCI_TEST_TAGS", "nosuchtag")
        .output()
        .unwrap();
    assert_eq!(code(out.status), 1);
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// `abra app new` + deploy outside cc-ci-run: an operator's app, no marker.
fn operator_app(f: &Fixture, domain: &str) {
    deploy_outside(domain, |a| f.abra(a));
}

fn env_file(f: &Fixture, domain: &str) -> std::path::PathBuf {
    f.abra_home
        .join("servers/default")
        .join(format!("{domain}.env"))
}

#[test]
fn apps_not_created_by_cc_ci_run_are_reported_and_never_touched() {
    let f = Fixture::new();
    // Matches the default RUN_APP_RE (the template's own shape), and a
    // production app that only a loose pattern matches.
    let lookalike = "example-b9.ci.localhost";
    let prod = "shop.example.org";
    operator_app(&f, lookalike);
    operator_app(&f, prod);
    let before: Vec<String> = [lookalike, prod]
        .iter()
        .map(|d| std::fs::read_to_string(env_file(&f, d)).unwrap())
        .collect();

    // A sweep with the default gate: the look-alike is reported, not probed.
    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["candidates"], 0, "{err}");
    assert_eq!(sum["unmarked"], serde_json::json!([lookalike]));
    assert!(err.contains("was not created by cc-ci-run"), "{err}");
    assert!(
        !f.state
            .join("locks/apps")
            .join(format!("{lookalike}.lock"))
            .exists(),
        "an unmarked app was probed"
    );

    // An ordinary run with a loose (but anchored) pattern: its janitor pass
    // reports both and touches neither; the run itself is green.
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "loose")
        .env("CCCI_RUN_APP_RE", "^.*$")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(
        log.contains(&format!(
            "{prod} matches CCCI_RUN_APP_RE but was not created by cc-ci-run"
        )),
        "{log}"
    );

    // A run pointed at the operator's domain stops before touching it.
    let out = f
        .run_cmd(&["--quick", "--domain", lookalike])
        .env("CCCI_RUN_ID", "collide")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{log}");
    assert!(log.contains("did not create"), "{log}");

    for (d, text) in [lookalike, prod].iter().zip(&before) {
        assert_eq!(
            &std::fs::read_to_string(env_file(&f, d)).unwrap(),
            text,
            "{d} was changed"
        );
        assert!(
            !f.calls().iter().any(|c| c["domain"] == *d
                && ["undeploy", "rm"].contains(&c["step"].as_str().unwrap_or(""))),
            "{d} was torn down"
        );
    }

    // A marked orphan beside them is reaped as before.
    let orphan = "example-b10.ci.localhost";
    operator_app(&f, orphan);
    mark_created_by_a_run(&f.abra_home, orphan);
    let out = f
        .cmd()
        .args(["janitor", "--json"])
        .env("CCCI_RUN_APP_RE", "^.*$")
        .output()
        .unwrap();
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(out.status), 0);
    assert_eq!(sum["reaped"], serde_json::json!([orphan]));
    assert!(!env_file(&f, orphan).exists());
    assert!(env_file(&f, lookalike).exists() && env_file(&f, prod).exists());
}

#[test]
fn a_run_marks_the_app_it_creates() {
    let f = Fixture::new();
    let mut run = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "marks")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnPanic(vec![run.id() as i32]);
    wait_for_file(&f.ready.join("test-install"));
    let text = std::fs::read_to_string(env_file(&f, "example-pr1.ci.localhost")).unwrap();
    let marker =
        cc_ci_run::ext::abra::marker::find(&text).expect("the env file carries the marker");
    assert_eq!(marker.run_id, "marks");
    send(run.id() as i32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut run), 143);
    guard.0.clear();
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}
