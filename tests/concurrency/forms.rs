//! Recipes shaped like the public Co-op Cloud ones (tests/forms), each a
//! full pull-request run with the file-backed stand-ins; and the env-file
//! table run against the stand-in abra's reader (the unit target runs it
//! against cc-ci-run's).

use std::process::Command;

use crate::support::*;

const PR_DOMAIN: &str = "example-pr1.ci.localhost";
const STACK: &str = "example-pr1_ci_localhost";

#[test]
fn env_file_table_reads_the_same_in_the_stand_in_abra() {
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/data/envfile_cases.json")).unwrap(),
    )
    .unwrap();
    let dir = tempdir();
    let files: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = dir.path().join(format!("{i}.env"));
            std::fs::write(&p, c["text"].as_str().unwrap()).unwrap();
            p
        })
        .collect();
    let out = Command::new("python3")
        .args(["-m", "ccci_fake.appenv"])
        .args(&files)
        .env("PYTHONPATH", fake_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    let mut failed = Vec::new();
    for (c, got) in cases.iter().zip(&lines) {
        let ok = match c.get("error") {
            Some(want) => got["error"]
                .as_str()
                .is_some_and(|e| e.contains(want.as_str().unwrap())),
            None => {
                got["vars"] == c["vars"]
                    && c.get("modifiers").is_none_or(|m| got["modifiers"] == *m)
            }
        };
        if !ok {
            failed.push(format!("{}: got {got}, want {c}", c["name"]));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn steps(f: &Fixture) -> Vec<String> {
    f.ok_steps()
        .into_iter()
        .filter(|(_, d)| d == PR_DOMAIN)
        .map(|(s, _)| s)
        .collect()
}

/// A full `run --pr 1` of the example recipe in `form`: exit code, log, record.
fn run_form(form: &str, extra_env: &[(&str, &str)]) -> (Fixture, i32, String, serde_json::Value) {
    let f = Fixture::with_recipe_args(&["--form", form]);
    let mut c = f.run_cmd(&["--pr", "1"]);
    c.env("CCCI_RUN_ID", form);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let rec = f.record(form);
    assert!(f.leftovers().is_empty(), "left: {:?}", f.leftovers());
    (f, code(out.status), log, rec)
}

const ALL_TIERS: [&str; 7] = [
    "new",
    "deploy",
    "deploy-chaos",
    "backup",
    "restore",
    "undeploy",
    "rm",
];

#[test]
fn self_extending_compose_file_with_two_overlays_runs_every_tier() {
    let (f, code, log, rec) = run_form("overlays", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(steps(&f), ALL_TIERS, "{log}");
    assert!(
        log.contains(&format!(
            "backupbot.backup=true on deployed service {STACK}_db"
        )),
        "{log}"
    );
    assert_eq!(
        rec["tiers"],
        serde_json::json!(["install", "upgrade", "backup", "restore"])
    );
}

/// The form runs every tier, the backup tier because the app service's
/// deployed label reads `true`.
fn runs_the_backup_tier_on_the_app_label(form: &str) {
    let (f, code, log, rec) = run_form(form, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(steps(&f), ALL_TIERS, "{log}");
    assert!(
        log.contains(&format!(
            "backup/restore tier: backupbot.backup=true on deployed service {STACK}_app"
        )),
        "{log}"
    );
    assert_eq!(rec["tiers_skipped"], serde_json::json!([]));
}

#[test]
fn a_quoted_value_with_a_comment_enables_the_backup_tier() {
    runs_the_backup_tier_on_the_app_label("quoted-comment");
}

#[test]
fn a_backup_label_reached_through_a_merge_key_enables_the_backup_tier() {
    runs_the_backup_tier_on_the_app_label("merge-key");
}

#[test]
fn a_container_label_alone_skips_the_backup_tier_green() {
    let (f, code, log, rec) = run_form("container-label", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        steps(&f),
        ["new", "deploy", "deploy-chaos", "undeploy", "rm"],
        "{log}"
    );
    let why =
        "backup/restore tier skipped: no deployed service carries a backupbot.backup deploy label";
    assert!(log.contains(why), "{log}");
    assert_eq!(rec["tiers_skipped"][0]["tier"], "backup");
    assert!(
        rec["tiers_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with(why),
        "{rec}"
    );
}

#[test]
fn the_timeout_label_is_the_convergence_bound_unless_one_is_given() {
    let mut c = Fixture::with_recipe_args(&["--form", "timeout"]);
    let label = format!("the recipe's label coop-cloud.{STACK}.timeout=90 on service app");
    {
        let f = &mut c;
        let out = f
            .run_cmd(&["--pr", "1"])
            .env_remove("CCCI_CONVERGE_TIMEOUT")
            .env("CCCI_RUN_ID", "label")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 0, "{log}");
        assert!(log.contains(&format!(" from {label}")), "{log}");
        assert!(
            log.contains(
                "convergence bound the recipe's ccci.toml converge_timeout, else its timeout label"
            ),
            "{log}"
        );
        let rec = f.record("label");
        assert_eq!(rec["converge_bound"]["seconds"], 90, "{rec}");
        assert_eq!(rec["converge_bound"]["source"], label.as_str(), "{rec}");
    }
    let out = c
        .run_cmd(&["--pr", "1", "--converge-timeout", "45s"])
        .env_remove("CCCI_CONVERGE_TIMEOUT")
        .env("CCCI_RUN_ID", "given")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = c.record("given");
    assert_eq!(rec["converge_bound"]["seconds"], 45, "{rec}");
    assert_eq!(
        rec["converge_bound"]["source"], "--converge-timeout/CCCI_CONVERGE_TIMEOUT",
        "{rec}"
    );
}

#[test]
fn a_required_variable_missing_is_exit_1_before_any_deploy_naming_it_and_the_file() {
    let (f, code, log, rec) = run_form("required", &[]);
    assert_eq!(code, 1, "{log}");
    assert!(steps(&f).is_empty(), "nothing deployed: {:?}", steps(&f));
    assert!(
        log.contains("compose.yml")
            && log.contains("required variable ADMIN_EMAIL is missing a value: set ADMIN_EMAIL in the app env file"),
        "{log}"
    );
    assert_eq!(rec["failed_phase"], "checks", "{rec}");
}

#[test]
fn a_healthcheck_with_start_period_and_the_external_proxy_network_run_green() {
    let (f, code, log, _) = run_form("health-proxy", &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(steps(&f), ALL_TIERS, "{log}");
}
