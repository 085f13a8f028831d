//! The backup tier (SPEC section 3 step 8): tests declared `tier: backup`
//! run after `abra app backup create` and before `abra app restore`. The
//! example recipe writes a marker on its data volume at install
//! (00-deployed.sh), overwrites it in the backup tier
//! (15-changed-after-backup.sh) and checks at restore that it came back
//! (20-restored.sh); the stand-in abra's backup and restore copy the paths
//! backupbot's labels name, so only a restore that copies the backup back
//! turns the run green.

use crate::support::*;

const PR_DOMAIN: &str = "example-pr1.ci.localhost";

fn steps_for(f: &Fixture, domain: &str) -> Vec<String> {
    f.ok_steps()
        .into_iter()
        .filter(|(_, d)| d == domain)
        .map(|(s, _)| s)
        .collect()
}

/// The record's phase names, in order.
fn phases(rec: &serde_json::Value) -> Vec<String> {
    rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// The record's tests entry of `tier`.
fn tier<'a>(rec: &'a serde_json::Value, tier: &str) -> &'a serde_json::Value {
    rec["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == tier)
        .unwrap_or_else(|| panic!("no tests of tier {tier}: {rec}"))
}

#[test]
fn backup_tier_runs_between_backup_and_restore_and_the_data_comes_back() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bt-green")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        [
            "new",
            "deploy",
            "deploy-chaos",
            "backup",
            "restore",
            "undeploy",
            "rm"
        ],
        "{log}"
    );
    let rec = f.record("bt-green");
    assert_eq!(
        rec["tiers"],
        serde_json::json!(["install", "upgrade", "backup", "restore"])
    );
    // The backup tier's tests ran after the backup and before the restore.
    let p = phases(&rec);
    let at = |name: &str| {
        p.iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no phase {name}: {p:?}"))
    };
    assert!(
        at("backup") < at("test-backup")
            && at("test-backup") < at("restore")
            && at("restore") < at("test-restore"),
        "{p:?}"
    );
    assert_eq!(tier(&rec, "backup")["passed"], 1, "{rec}");
    assert_eq!(tier(&rec, "backup")["failed"], 0, "{rec}");
    // The data proof, as the example's tests said it.
    let marker = format!("ccci-example marker of {PR_DOMAIN} (run bt-green)");
    for needle in [
        format!("marker written into the data volume: {marker}"),
        "the backup holds the marker".to_string(),
        "marker overwritten on the data volume: the restore must bring it back".to_string(),
        format!("the marker came back from backup and restore: {marker}"),
    ] {
        assert!(log.contains(&needle), "want {needle:?} in: {log}");
    }
    // In the reports like the other tiers: its own JUnit, classname
    // example.backup, and the merged file; the summary counts it.
    let junit =
        std::fs::read_to_string(f.state.join("runs/bt-green/report/backup/junit.xml")).unwrap();
    assert!(
        junit.contains("classname=\"example.backup\"")
            && junit.contains("15-changed-after-backup.sh"),
        "{junit}"
    );
    let merged = std::fs::read_to_string(f.state.join("runs/bt-green/report/junit.xml")).unwrap();
    assert!(merged.contains("classname=\"example.backup\""), "{merged}");
    for needle in [
        "tests backup: 1 passed, 0 failed, 0 skipped".to_string(),
        // The watch spans the backup tier too (none of the app's tasks
        // exited).
        "restarts while watched, backup: example-pr1_ci_localhost_app 0".to_string(),
    ] {
        assert!(log.contains(&needle), "want {needle:?} in: {log}");
    }
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn a_restore_that_restores_nothing_is_red_in_the_restore_tier_naming_the_test() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bt-noop")
        .env("CCCI_FAKE_ABRA_NOOP", "restore")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    // abra said it restored: only the data says otherwise.
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        [
            "new",
            "deploy",
            "deploy-chaos",
            "backup",
            "restore",
            "undeploy",
            "rm"
        ],
        "{log}"
    );
    let rec = f.record("bt-noop");
    assert_eq!(rec["verdict"], "failed", "{rec}");
    assert_eq!(rec["failed_phase"], "test-restore", "{rec}");
    assert_eq!(tier(&rec, "backup")["failed"], 0, "{rec}");
    assert_eq!(tier(&rec, "restore")["failed"], 1, "{rec}");
    assert!(
        log.lines().any(|l| l.contains("20-restored.sh")
            && l.contains("the restore did not bring the backup back")),
        "{log}"
    );
    let junit = std::fs::read_to_string(f.state.join("runs/bt-noop/report/junit.xml")).unwrap();
    assert!(
        junit.contains("20-restored.sh") && junit.contains("<failure"),
        "{junit}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn a_red_backup_tier_stops_the_run_before_the_restore() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bt-red")
        .env("CCCI_EXAMPLE_FAIL", "backup")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    // No restore after a red backup tier: straight to the teardown.
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        ["new", "deploy", "deploy-chaos", "backup", "undeploy", "rm"],
        "{log}"
    );
    let rec = f.record("bt-red");
    assert_eq!(rec["verdict"], "failed", "{rec}");
    assert_eq!(rec["failed_phase"], "test-backup", "{rec}");
    assert_eq!(
        rec["tiers"],
        serde_json::json!(["install", "upgrade", "backup"])
    );
    assert_eq!(tier(&rec, "backup")["failed"], 1, "{rec}");
    assert!(
        log.contains("failing on purpose: CCCI_EXAMPLE_FAIL=backup (tier backup)"),
        "{log}"
    );
    assert!(log.contains("backup tier: 1 test(s) failed"), "{log}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn an_empty_backup_is_red_in_the_backup_tier() {
    // A backup that keeps nothing (CCCI_FAKE_ABRA_NOOP=backup: the
    // stand-in's backupbot found nothing to copy): the example's backup
    // tier test finds no marker in it.
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bt-empty")
        .env("CCCI_FAKE_ABRA_NOOP", "backup")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let rec = f.record("bt-empty");
    assert_eq!(rec["failed_phase"], "test-backup", "{rec}");
    assert!(log.contains("the backup holds no marker"), "{log}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn the_watch_spans_the_backup_tier_an_exit_there_turns_it_red() {
    // The app's tasks of the upgrade exit once FILE exists (the stand-in's
    // CCCI_FAKE_ABRA_DIE_ON=deploy-chaos@FILE); a CI test of the backup
    // tier touches it and sees the task fail, and passes: the watch begun
    // at the upgrade's convergence turns the backup tier red.
    let f = Fixture::new();
    let die = f.tmp.path().join("die-in-backup-tier");
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = script(
        &dir,
        "50-app-dies.sh",
        &format!(
            r#"#!/bin/sh
# tier: backup
# timeout: 30s
set -eu
touch '{file}'
docker inspect --type task $(docker service ps -q --no-trunc example-pr1_ci_localhost_app) | grep -q '"ExitCode": 1'
"#,
            file = die.display()
        ),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bt-watch")
        .env(
            "CCCI_FAKE_ABRA_DIE_ON",
            format!("deploy-chaos@{}", die.display()),
        )
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    assert!(
        log.contains("backup tier: the version under test exited while watched"),
        "{log}"
    );
    let rec = f.record("bt-watch");
    assert_eq!(rec["failed_phase"], "test-backup", "{rec}");
    let backup = tier(&rec, "backup");
    assert_eq!(backup["failed"], 0, "its tests passed: {rec}");
    assert_eq!(backup["watch"][0]["restarts"], 1, "{rec}");
    // The upgrade tier's watch saw nothing: the exit is the backup tier's.
    assert_eq!(tier(&rec, "upgrade")["watch"][0]["restarts"], 0, "{rec}");
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        ["new", "deploy", "deploy-chaos", "backup", "undeploy", "rm"],
        "{log}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}
