//! Teardown finishes what the engine leaves behind (issue 20): an undeploy
//! that leaves the stack's network for good (moby/moby#31068) and/or a
//! container no task owns (CCCI_FAKE_UNDEPLOY_LEAVES) is finished by the
//! run, its pre-clean and the janitor, and nothing outside the stack's
//! namespace label is touched. Against the old teardown these runs waited
//! out their bound and exited 4, and every janitor sweep failed.

use std::process::Command;

use crate::support::*;

const DOMAIN: &str = "example-pr1.ci.localhost";
const STACK: &str = "example-pr1_ci_localhost";

/// `docker ARGS` through the stand-in, on `f`'s fake swarm.
fn fake_docker(f: &Fixture, args: &[&str]) -> std::process::Output {
    Command::new(fake_dir().join("docker"))
        .args(args)
        .env("CCCI_FAKE_STATE", &f.fake)
        .env("PATH", test_path())
        .output()
        .unwrap()
}

/// `abra ARGS` (the stand-in) with the canonical ABRA_DIR.
fn fake_abra(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(fake_dir().join("abra"))
        .args(args)
        .env("ABRA_DIR", &f.abra_home)
        .env("CCCI_FAKE_STATE", &f.fake)
        .env("PATH", test_path())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Containers standing outside the stack: one of another stack whose name
/// and label extend ours, one with no label but our name prefix. Returns
/// their ids.
fn plant_bystanders(f: &Fixture) -> Vec<String> {
    let other = format!("com.docker.stack.namespace={STACK}_2");
    let mut ids = Vec::new();
    for args in [
        vec![
            "run",
            "-d",
            "--name",
            "example-pr1_ci_localhost_2_app",
            "--label",
            &other,
            "ccci-example:1.0.0",
        ],
        vec![
            "run",
            "-d",
            "--name",
            "example-pr1_ci_localhost_app.1.plain",
            "ccci-example:1.0.0",
        ],
    ] {
        let out = fake_docker(f, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    ids
}

fn removal_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("left by the engine after undeploy") && l.ends_with(": removed"))
        .collect()
}

#[test]
fn run_whose_undeploy_leaves_a_network_and_an_unowned_container_exits_0_and_leaves_nothing() {
    let f = Fixture::new();
    let bystanders = plant_bystanders(&f);
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "left")
        .env("CCCI_FAKE_UNDEPLOY_LEAVES", "network,container")
        .env("CCCI_JANITOR", "off")
        .env("CCCI_TEARDOWN_TIMEOUT", "10s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    // The undeploy itself failed (as `docker stack rm` does), after
    // removing the services; teardown went on.
    assert!(
        log.contains("reported an error but no service of stack"),
        "{log}"
    );
    let removed = removal_lines(&log);
    assert_eq!(removed.len(), 2, "one container, one network: {log}");
    assert!(
        removed[0].contains(&format!("container {STACK}_app.1.")),
        "{log}"
    );
    assert!(
        removed[1].contains(&format!("network {STACK}_default")),
        "{log}"
    );
    assert!(log.contains("complete in"), "{log}");
    // Only the bystanders are left, untouched.
    let left = f.leftovers();
    let want: Vec<String> = bystanders
        .iter()
        .map(|id| format!("containers/{id}.json"))
        .collect();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(left_sorted, want_sorted, "{log}");
    assert!(f.lock_free("apps", DOMAIN));
    assert!(f.tree_gone("left"));
    assert_eq!(f.record("left")["exit_code"], 0);
}

#[test]
fn network_left_in_use_by_a_shutting_down_task_is_removed_after_a_backoff() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "busy")
        .env("CCCI_FAKE_UNDEPLOY_LEAVES", "network")
        .env("CCCI_FAKE_DOCKER_NETWORK_IN_USE", "2")
        .env("CCCI_JANITOR", "off")
        .env("CCCI_TEARDOWN_TIMEOUT", "10s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(
        log.matches("is in use by task").count() >= 2,
        "two refusals, each logged: {log}"
    );
    assert!(log.contains("still in use, retrying in"), "{log}");
    let removed = removal_lines(&log);
    assert_eq!(removed.len(), 1, "{log}");
    assert!(removed[0].contains(&format!("network {STACK}_default")));
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn janitor_reaps_an_orphan_whose_undeploy_left_a_network_and_a_container_in_one_sweep() {
    let f = Fixture::new();
    let domain = "example-pr9.ci.localhost";
    deploy_outside(domain, |a| fake_abra(&f, a, &[]));
    mark_created_by_a_run(&f.abra_home, domain);
    // A run's teardown undeployed it and died: the engine kept the network
    // and a container, the services are gone (so a sweep skips the undeploy).
    let out = fake_abra(
        &f,
        &["app", "undeploy", domain, "-n"],
        &[("CCCI_FAKE_UNDEPLOY_LEAVES", "network,container")],
    );
    assert_eq!(code(out.status), 1, "docker stack rm fails: {out:?}");
    let sweep = || {
        f.cmd()
            .args(["janitor", "--json"])
            // The janitor's grace is 10 s, at most half the bound: room
            // for the removals after it on a loaded machine.
            .env("CCCI_TEARDOWN_TIMEOUT", "30s")
            .output()
            .unwrap()
    };
    let out = sweep();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([domain]), "{log}");
    assert_eq!(removal_lines(&log).len(), 2, "{log}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    // The next sweep finds nothing.
    let out = sweep();
    assert_eq!(code(out.status), 0);
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["candidates"], 0, "{sum}");
    assert_eq!(sum["reaped"], serde_json::json!([]));
    assert_eq!(sum["failed"], serde_json::json!([]));
}

#[test]
fn preclean_finishes_an_orphan_that_the_engine_left_half_removed() {
    let f = Fixture::new();
    deploy_outside(DOMAIN, |a| fake_abra(&f, a, &[]));
    mark_created_by_a_run(&f.abra_home, DOMAIN);
    let out = fake_abra(
        &f,
        &["app", "undeploy", DOMAIN, "-n"],
        &[("CCCI_FAKE_UNDEPLOY_LEAVES", "container")],
    );
    assert!(out.status.success(), "no network left, no error: {out:?}");
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "after")
        .env("CCCI_JANITOR", "off")
        .env("CCCI_TEARDOWN_TIMEOUT", "10s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(log.contains("tearing it down first"), "{log}");
    assert_eq!(removal_lines(&log).len(), 1, "{log}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}
