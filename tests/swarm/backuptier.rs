//! The backup tier on a real swarm (SPEC section 3 step 8): the example
//! recipe's marker written on its data volume at install (PUT /data over
//! 127.0.0.1), overwritten in the backup tier, back after `abra app
//! restore` (the stand-in's `docker cp` of the path backupbot's label
//! names): green; with the stand-in's restore doing nothing, red in the
//! restore tier.

use crate::engine::*;
use crate::support::*;

fn steps(host: &SwarmHost, domain: &str) -> Vec<String> {
    host.calls()
        .into_iter()
        .filter(|c| c["result"] == "ok" && c["prog"] == "abra" && c["domain"] == domain)
        .map(|c| c["step"].as_str().unwrap().to_string())
        .collect()
}

const ALL_STEPS: [&str; 7] = [
    "new",
    "deploy",
    "deploy-chaos",
    "backup",
    "restore",
    "undeploy",
    "rm",
];

#[test]
fn data_written_at_install_changed_in_the_backup_tier_is_back_after_restore() {
    let d = domain_for("backuptier-green", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let out = host
        .run_cmd(&d, &[])
        .env("CCCI_RUN_ID", "bt-green")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(steps(&host, &d), ALL_STEPS, "{log}");
    let marker = format!("ccci-example marker of {d} (run bt-green)");
    for needle in [
        format!("marker written into the data volume: {marker}"),
        "the backup holds the marker".to_string(),
        "marker overwritten on the data volume: the restore must bring it back".to_string(),
        format!("the marker came back from backup and restore: {marker}"),
        "tests backup: 1 passed, 0 failed".to_string(),
    ] {
        assert!(log.contains(&needle), "want {needle:?} in: {log}");
    }
    // What the stand-in's backup copied out of the container's /data.
    let kept = std::fs::read_to_string(host.fake.join(format!("backups/{d}/data/marker")))
        .unwrap_or_default();
    assert_eq!(kept, marker);
    let rec = host.record("bt-green");
    assert_eq!(
        rec["tiers"],
        serde_json::json!(["install", "upgrade", "backup", "restore"])
    );
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
}

#[test]
fn a_restore_that_does_nothing_is_red_in_the_restore_tier() {
    let d = domain_for("backuptier-noop", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let out = host
        .run_cmd(&d, &[])
        .env("CCCI_RUN_ID", "bt-noop")
        .env("CCCI_FAKE_ABRA_NOOP", "restore")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    assert_eq!(steps(&host, &d), ALL_STEPS, "{log}");
    let rec = host.record("bt-noop");
    assert_eq!(rec["verdict"], "failed", "{rec}");
    assert_eq!(rec["failed_phase"], "test-restore", "{rec}");
    assert!(
        log.lines().any(|l| l.contains("20-restored.sh")
            && l.contains("after restore, want")
            && l.contains("changed after the backup")),
        "{log}"
    );
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
}
