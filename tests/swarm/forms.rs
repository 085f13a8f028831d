//! Recipes shaped like the public Co-op Cloud ones (tests/forms), each a
//! full pull-request run on the real swarm: docker's own compose loader
//! deploys them, and the run must read them as it does.

use std::process::Command;

use crate::engine::*;
use crate::support::*;

/// A full `run --pr 1` of the example recipe in `form` on the swarm.
fn run_form(form: &str, env: &[(&str, Option<&str>)]) -> (SwarmHost, String, i32, String) {
    let d = domain_for(&format!("form-{form}"), 0);
    let host = SwarmHost::with_recipe_args(vec![d.clone()], &["--form", form]);
    let mut c = host.run_cmd(&d, &[]);
    c.env("CCCI_RUN_ID", form);
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    (host, d, code(out.status), log)
}

fn tiers(host: &SwarmHost, run: &str) -> serde_json::Value {
    host.record(run)["tiers"].clone()
}

const ALL: [&str; 4] = ["install", "upgrade", "backup", "restore"];

#[test]
fn overlays_of_a_self_extending_compose_file_deploy_and_back_up_on_the_swarm() {
    let (host, d, code, log) = run_form("overlays", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(tiers(&host, "overlays"), serde_json::json!(ALL), "{log}");
    let stack = stack_of(&d);
    assert!(
        log.contains(&format!(
            "backupbot.backup=true on deployed service {stack}_db"
        )),
        "{log}"
    );
}

#[test]
fn a_quoted_value_with_a_comment_runs_the_backup_tier_on_the_swarm() {
    let (host, _, code, log) = run_form("quoted-comment", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        tiers(&host, "quoted-comment"),
        serde_json::json!(ALL),
        "{log}"
    );
}

#[test]
fn a_backup_label_reached_through_a_merge_key_runs_the_backup_tier_on_the_swarm() {
    let (host, d, code, log) = run_form("merge-key", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(tiers(&host, "merge-key"), serde_json::json!(ALL), "{log}");
    assert!(
        log.contains(&format!(
            "backupbot.backup=true on deployed service {}_app",
            stack_of(&d)
        )),
        "{log}"
    );
}

#[test]
fn a_container_label_alone_skips_the_backup_tier_on_the_swarm_and_says_so() {
    let (host, d, code, log) = run_form("container-label", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        tiers(&host, "container-label"),
        serde_json::json!(["install", "upgrade"])
    );
    // The engine holds it as a container label: the reason names it.
    let stack = stack_of(&d);
    let why = format!(
        "backup/restore tier skipped: no deployed service carries a backupbot.backup deploy label \
         (service {stack}_app has backupbot.backup=true as a container label"
    );
    assert!(log.contains(&why), "{log}");
    let rec = host.record("container-label");
    assert!(
        rec["tiers_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("container label"),
        "{rec}"
    );
}

#[test]
fn the_timeout_label_bounds_convergence_on_the_swarm() {
    let (host, d, code, log) = run_form("timeout", &[("CCCI_CONVERGE_TIMEOUT", None)]);
    assert_eq!(code, 0, "{log}");
    let rec = host.record("timeout");
    assert_eq!(rec["converge_bound"]["seconds"], 90, "{rec}");
    let label = format!("coop-cloud.{}.timeout=90", stack_of(&d));
    assert!(
        rec["converge_bound"]["source"]
            .as_str()
            .unwrap()
            .contains(&label),
        "{rec}"
    );
}

#[test]
fn a_required_variable_missing_is_exit_1_before_any_deploy_on_the_swarm() {
    let (host, d, code, log) = run_form("required", &[]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("required variable ADMIN_EMAIL is missing a value"),
        "{log}"
    );
    assert!(
        !host
            .calls()
            .iter()
            .any(|c| c["prog"] == "abra" && c["domain"] == d.as_str()),
        "no abra call: {log}"
    );
}

#[test]
fn a_recipe_without_an_enabled_backup_label_is_green_with_the_tier_skipped() {
    let (host, d, code, log) = run_form("no-backup", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        tiers(&host, "no-backup"),
        serde_json::json!(["install", "upgrade"])
    );
    let why = format!(
        "backup/restore tier skipped: backupbot.backup=false on deployed service {}_app",
        stack_of(&d)
    );
    assert!(log.contains(&why), "{log}");
    assert!(
        log.contains(&format!("tier backup not run: {why}")),
        "the summary says it: {log}"
    );
}

/// The external `proxy` network a traefik-fronted recipe joins: created for
/// the test when missing, removed after it only if this test created it.
struct Proxy(bool);

impl Proxy {
    fn ensure() -> Proxy {
        if !docker(&["network", "ls", "-q", "--filter", "name=^proxy$"]).is_empty() {
            return Proxy(false);
        }
        let ok = Command::new("docker")
            .args([
                "network",
                "create",
                "--driver",
                "overlay",
                "--attachable",
                "proxy",
            ])
            .output()
            .unwrap()
            .status
            .success();
        Proxy(ok)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.0 {
            let _ = Command::new("docker")
                .args(["network", "rm", "proxy"])
                .output();
        }
    }
}

#[test]
fn a_healthcheck_with_start_period_and_the_proxy_network_run_green_on_the_swarm() {
    let _proxy = Proxy::ensure();
    let (host, _, code, log) = run_form("health-proxy", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        tiers(&host, "health-proxy"),
        serde_json::json!(ALL),
        "{log}"
    );
}
