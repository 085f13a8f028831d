//! Convergence means the deployed version runs (SPEC section 3 step 8),
//! against the file-backed stand-in: its redeploys are rolling updates in
//! which the old task keeps running for a while (UpdateStatus null first,
//! then `updating`) before the new one runs and the update completes
//! (tests/fake/README.md). A harness that counts running replicas calls
//! that "converged" and tests the old version; these runs must not.

use crate::support::*;

const PR_DOMAIN: &str = "example-pr1.ci.localhost";
const STACK: &str = "example-pr1_ci_localhost";

/// A cc-ci-run test of the example recipe (CCCI_CI_TESTS) for the upgrade
/// tier that writes the image of every running task container of the
/// stack to `answers`, once, without waiting for a wanted one, and fails
/// when any is not the pull request's image.
fn record_running_images(f: &Fixture, answers: &std::path::Path) {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = script(
        &dir,
        "50-runs-the-new-task.sh",
        &format!(
            r#"#!/bin/sh
# tier: upgrade
# timeout: 30s
set -eu
images=$(docker ps --filter label=com.docker.stack.namespace={STACK} --format '{{{{.Image}}}}')
printf '%s\n' "$images" >>'{answers}'
[ -n "$images" ] || {{ echo "no running task container" >&2; exit 1; }}
for i in $images; do
  [ "$i" = ccci-example:2.0.0-pr ] || {{ echo "a task of $i is running, not the pull request's" >&2; exit 1; }}
done
"#,
            answers = answers.display()
        ),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn upgrade_tier_tests_see_the_new_task_never_the_old_one() {
    let f = Fixture::new();
    let answers = f.tmp.path().join("answers");
    record_running_images(&f, &answers);
    // The old task serves for the first 1.5 s after the chaos deploy: long
    // enough that a replica count would let the tests in while it runs.
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "conv-new")
        .env("CCCI_FAKE_ABRA_CONVERGE_MS", "3000")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let seen = std::fs::read_to_string(&answers).unwrap_or_default();
    assert_eq!(code(out.status), 0, "images seen: {seen}\n{log}");
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["ccci-example:2.0.0-pr"],
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("stack {STACK} converged in"))
                && l.contains("(update completed)")),
        "the wait and the completed update are logged: {log}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn upgrade_whose_new_task_cannot_start_fails_the_tier_with_exit_3_and_is_torn_down() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "conv-paused")
        .env("CCCI_FAKE_ABRA_CONVERGE_MS", "800")
        .env(
            "CCCI_FAKE_ABRA_CRASHLOOP",
            format!("deploy-chaos@{PR_DOMAIN}"),
        )
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{log}");
    for needle in [
        "upgrade tier: convergence failed",
        &format!("service {STACK}_app: update paused"),
        "update paused due to failure or early termination of task",
        "last task error: starting container failed",
    ] {
        assert!(log.contains(needle), "the error names {needle:?}: {log}");
    }
    assert_eq!(f.record("conv-paused")["exit_code"], 3);
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn redeploy_that_changes_only_labels_converges_without_an_update_status() {
    let f = Fixture::new();
    // Base 1.1.0+1.0 and the ref main, the same compose file: the chaos
    // redeploy changes abra's labels only, so no task is replaced and the
    // engine reports no update at all.
    let out = f
        .run_cmd(&["--ref", "main", "--base", "1.1.0+1.0"])
        .env("CCCI_RUN_ID", "conv-labels")
        .env("CCCI_FAKE_ABRA_CONVERGE_MS", "300")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let upgrade = log
        .lines()
        .skip_while(|l| !l.contains("phase: upgrade-converge"))
        .find(|l| l.contains("converged in"))
        .unwrap_or_else(|| panic!("no convergence line after the upgrade: {log}"));
    assert!(
        upgrade.contains("_app 1/1") && !upgrade.contains("update"),
        "{upgrade}"
    );
}

/// A cc-ci-run test of the example recipe for the install and upgrade
/// tiers that saves what the engine (the stand-in) says of the stack's app
/// service: `docker service inspect` to `$dir/TIER.service.json` and
/// `docker inspect --type task` of its tasks to `$dir/TIER.tasks.json`.
fn save_engine_views(f: &Fixture, dir: &std::path::Path) {
    let tests = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&tests).unwrap();
    let path = script(
        &tests,
        "50-engine-views.sh",
        &format!(
            r#"#!/bin/sh
# tier: install, upgrade
# timeout: 30s
set -eu
docker service inspect {STACK}_app >'{dir}/'"$CCCI_TIER"'.service.json'
docker inspect --type task $(docker service ps -q --no-trunc {STACK}_app) >'{dir}/'"$CCCI_TIER"'.tasks.json'
"#,
            dir = dir.display()
        ),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn a_service_with_no_restart_policy_converges_on_install_and_upgrade() {
    // The stand-in deploys the app as a compose service with no restart
    // policy: its tasks carry no RestartPolicy while `service inspect`
    // shows the engine's whole default one. Compared leaf by leaf, no task
    // is ever "of the current spec" and each wait runs to its bound (10 s
    // here, exit 3).
    let f = Fixture::new();
    let views = f.tmp.path().join("views");
    std::fs::create_dir_all(&views).unwrap();
    save_engine_views(&f, &views);
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "conv-norestart")
        .env("CCCI_FAKE_ABRA_CONVERGE_MS", "300")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let waits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("stack {STACK} converged in")))
        .collect();
    // install, upgrade (and restore, when it redeploys): each settled
    assert!(waits.len() >= 2, "{log}");
    assert!(waits[0].ends_with("_app 1/1"), "install: {}", waits[0]);
    assert!(
        waits[1].contains("(update completed)"),
        "upgrade: {}",
        waits[1]
    );
    assert!(!log.contains("did not converge"), "{log}");
    // The form is the one that matters: what the tests saw on the stack.
    for tier in ["install", "upgrade"] {
        let read = |what: &str| -> serde_json::Value {
            let p = views.join(format!("{tier}.{what}.json"));
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}\n{log}", p.display()));
            serde_json::from_str(&text).unwrap()
        };
        let service = read("service");
        let tasks = read("tasks");
        assert_eq!(
            service[0]["Spec"]["TaskTemplate"]["RestartPolicy"],
            serde_json::json!({"Condition": "any", "Delay": 5_000_000_000u64, "MaxAttempts": 0}),
            "{tier}: the CLI shows the default policy"
        );
        let running: Vec<&serde_json::Value> = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["Status"]["State"] == "running")
            .collect();
        assert_eq!(running.len(), 1, "{tier}: {tasks}");
        assert!(
            running[0]["Spec"].get("RestartPolicy").is_none(),
            "{tier}: the task carries none: {}",
            running[0]["Spec"]
        );
    }
}

/// A cc-ci-run test of the example recipe for `tiers` that passes after
/// touching `file` (the stand-in's CCCI_FAKE_ABRA_DIE_ON: the app's task
/// exits 1 then) and seeing the app's task fail, so that the exit falls
/// between the tier's convergence and the end of its tests.
fn kill_the_app_during_tests(f: &Fixture, tiers: &str, file: &std::path::Path) {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = script(
        &dir,
        "50-app-dies.sh",
        &format!(
            r#"#!/bin/sh
# tier: {tiers}
# timeout: 30s
set -eu
touch '{file}'
docker inspect --type task $(docker service ps -q --no-trunc {STACK}_app) | grep -q '"ExitCode": 1'
"#,
            file = file.display()
        ),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn app_that_exits_during_the_install_tier_tests_is_red_though_they_pass() {
    let f = Fixture::new();
    let die = f.tmp.path().join("die-now");
    kill_the_app_during_tests(&f, "install", &die);
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "watch-dies")
        .env("CCCI_FAKE_ABRA_DIE_ON", die.display().to_string())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("install tier: the version under test exited while watched"))
        .unwrap_or_else(|| panic!("{log}"));
    for needle in [
        format!("service {STACK}_app exited 1 time(s)"),
        "restarts: 1".to_string(),
        "exit code 1 at 20".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?}: {line}");
    }
    let record = f.record("watch-dies");
    assert_eq!(record["failed_phase"], "test-install", "{record}");
    let tier = &record["tests"][0];
    assert_eq!(tier["failed"], 0, "its tests passed: {record}");
    assert!(tier["passed"].as_u64().unwrap() >= 1, "{record}");
    assert_eq!(tier["watch"][0]["service"], format!("{STACK}_app"));
    assert_eq!(tier["watch"][0]["restarts"], 1, "{record}");
    let junit = std::fs::read_to_string(record["junit"].as_str().unwrap()).unwrap();
    assert!(
        junit.contains("name=\"watch:app\"")
            && junit.contains("exited 1 time(s) while the install tier was watched"),
        "{junit}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn app_that_never_exits_is_green_with_no_restart_recorded() {
    let f = Fixture::new();
    // The knob is armed but its file never appears: the same run, green.
    let die = f.tmp.path().join("never");
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "watch-good")
        .env("CCCI_FAKE_ABRA_DIE_ON", die.display().to_string())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let record = f.record("watch-good");
    let watch = record["tests"][0]["watch"].as_array().cloned().unwrap();
    assert!(!watch.is_empty(), "{record}");
    assert!(watch.iter().all(|w| w["restarts"] == 0), "{record}");
    assert!(
        log.contains(&format!("restarts while watched, install: {STACK}_app 0")),
        "{log}"
    );
}
