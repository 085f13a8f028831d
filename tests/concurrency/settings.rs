//! Per-recipe settings (SPEC section 3b) end to end: the real binary, real
//! git, the stand-in abra and docker, the bundled example recipe, a
//! `ccci.toml` in the CI repository's tests of the recipe.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const PR_DOMAIN: &str = "example-pr1.ci.localhost";

/// The CI repository's directory of the example recipe's tests.
fn ci_dir(f: &Fixture) -> PathBuf {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CI test for the install and upgrade tiers that appends the app's env
/// file lines for `vars` (or `VAR=<unset>`) to `answers`, prefixed with
/// the tier: what abra's deploy of that tier read.
fn record_env_file(dir: &Path, answers: &Path, vars: &[&str]) {
    let path = script(
        dir,
        "50-env-file.sh",
        &format!(
            r#"#!/bin/sh
# tier: install, upgrade
# timeout: 30s
set -eu
env_file="$ABRA_DIR/servers/$CCCI_SERVER/$CCCI_APP_DOMAIN.env"
for v in {vars}; do
  line=$(grep "^$v=" "$env_file" || echo "$v=<unset>")
  printf '%s %s\n' "$CCCI_TIER" "$line" >>'{answers}'
done
"#,
            vars = vars.join(" "),
            answers = answers.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn settings_keys_change_base_env_upgrade_env_overlays_and_the_convergence_bound() {
    let f = Fixture::new();
    let dir = ci_dir(&f);
    // The overlay turns the backup label off, as a CI-only compose file
    // of a recipe whose backups cannot run on the CI host would: seen
    // deployed, the backup tier is skipped for that reason.
    std::fs::write(
        dir.join("compose.ci.yml"),
        "version: \"3.8\"\nservices:\n  app:\n    deploy:\n      labels:\n        backupbot.backup: \"false\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ccci.toml"),
        r#"# settings of the example recipe
converge_timeout = "7m"
base = "1.0.0+1.0"
overlays = ["compose.ci.yml"]

[env]
SANDBOX_DOMAIN = "sandbox.example-pr1.ci.localhost"

[upgrade_env]
NEW_IN_UPGRADE = "a value # not a comment"
"#,
    )
    .unwrap();
    let answers = f.tmp.path().join("answers");
    record_env_file(
        &dir,
        &answers,
        &["SANDBOX_DOMAIN", "NEW_IN_UPGRADE", "COMPOSE_FILE"],
    );
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "settings")
        // No explicit bound: the setting's applies.
        .env_remove("CCCI_CONVERGE_TIMEOUT")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = f.record("settings");
    // base: the first release, not the latest before the head.
    assert_eq!(rec["base_version"], "1.0.0+1.0", "{log}");
    let deploy = f
        .calls()
        .into_iter()
        .find(|c| c["step"] == "deploy" && c["result"] == "ok")
        .unwrap();
    assert!(deploy["argv"].to_string().contains("1.0.0+1.0"), "{deploy}");
    // converge_timeout: over the recipe's timeout label (120).
    assert_eq!(rec["converge_bound"]["seconds"], 420, "{rec}");
    let source = rec["converge_bound"]["source"].as_str().unwrap();
    assert!(
        source.contains("converge_timeout in") && source.contains("ci-tests/example/ccci.toml:2"),
        "{source}"
    );
    // env before the install, upgrade_env before the upgrade only; the
    // overlay in COMPOSE_FILE from the install on.
    let seen = std::fs::read_to_string(&answers).unwrap();
    assert_eq!(
        seen,
        "install SANDBOX_DOMAIN='sandbox.example-pr1.ci.localhost'\n\
         install NEW_IN_UPGRADE=<unset>\n\
         install COMPOSE_FILE='compose.yml:ccci-overlay-compose.ci.yml'\n\
         upgrade SANDBOX_DOMAIN='sandbox.example-pr1.ci.localhost'\n\
         upgrade NEW_IN_UPGRADE='a value # not a comment'\n\
         upgrade COMPOSE_FILE='compose.yml:ccci-overlay-compose.ci.yml'\n",
        "{log}"
    );
    // The overlay was deployed (its label turned the backups off), and the
    // upgrade tier's chaos-version check passed: the copy left the
    // checkout clean (no `+U`).
    assert!(
        log.contains("backup/restore tier skipped: backupbot.backup=false on deployed service"),
        "{log}"
    );
    assert!(log.contains("upgrade tier: chaos deploy of"), "{log}");
    assert!(!log.contains("+U"), "{log}");
    assert_eq!(rec["tiers"], serde_json::json!(["install", "upgrade"]));
}

#[test]
fn settings_not_applicable_tiers_are_skipped_with_their_reason() {
    let f = Fixture::new();
    let dir = ci_dir(&f);
    std::fs::write(
        dir.join("ccci.toml"),
        "converge_timeout = 600\n\n[not_applicable]\nupgrade = \"the first release is broken\"\nbackup = \"no data worth keeping\"\n",
    )
    .unwrap();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "na")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let steps: Vec<String> = f
        .ok_steps()
        .into_iter()
        .filter(|(_, d)| d == PR_DOMAIN)
        .map(|(s, _)| s)
        .collect();
    // The install tier deploys the ref under test itself (chaos); no
    // upgrade, backup or restore.
    assert_eq!(steps, ["new", "deploy-chaos", "undeploy", "rm"], "{log}");
    let rec = f.record("na");
    assert_eq!(rec["tiers"], serde_json::json!(["install"]));
    let skipped = rec["tiers_skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{rec}");
    assert_eq!(skipped[0]["tier"], "upgrade");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not applicable (")
            && skipped[0]["reason"]
                .as_str()
                .unwrap()
                .contains("the first release is broken"),
        "{rec}"
    );
    assert_eq!(skipped[1]["tier"], "backup");
    assert!(
        skipped[1]["reason"]
            .as_str()
            .unwrap()
            .contains("no data worth keeping"),
        "{rec}"
    );
    // The summary shows both reasons.
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert!(summary.contains("the first release is broken"), "{summary}");
    assert!(summary.contains("no data worth keeping"), "{summary}");
    // An explicit bound (the fixture's CCCI_CONVERGE_TIMEOUT=10s) wins
    // over the setting.
    assert_eq!(rec["converge_bound"]["seconds"], 10, "{rec}");
    assert!(
        rec["converge_bound"]["source"]
            .as_str()
            .unwrap()
            .contains("--converge-timeout/CCCI_CONVERGE_TIMEOUT"),
        "{rec}"
    );
}

/// A bad settings file ends the run with exit 2 naming file, line and key,
/// before any abra call; `file_in_recipe`: the file is the recipe's own
/// `tests/ccci.toml` (read at the tested ref) rather than the CI's.
fn bad_settings_exit_2_before_abra(text: &str, expect: &[&str], file_in_recipe: bool) {
    let f = Fixture::new();
    if file_in_recipe {
        // The pull request's head carries the bad file.
        let work = f.tmp.path().join("pr-work");
        let upstream = f.tmp.path().join("recipe/upstream.git");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let w = work.to_str().unwrap();
        git(&["clone", "-q", upstream.to_str().unwrap(), w]);
        git(&["-C", w, "fetch", "-q", "origin", "refs/pull/1/head"]);
        git(&["-C", w, "checkout", "-q", "FETCH_HEAD"]);
        std::fs::create_dir_all(work.join("tests")).unwrap();
        std::fs::write(work.join("tests/ccci.toml"), text).unwrap();
        git(&["-C", w, "add", "tests/ccci.toml"]);
        git(&["-C", w, "commit", "-q", "-m", "settings"]);
        git(&[
            "-C",
            w,
            "push",
            "-q",
            "-f",
            "origin",
            "HEAD:refs/pull/1/head",
        ]);
    } else {
        std::fs::write(ci_dir(&f).join("ccci.toml"), text).unwrap();
    }
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "bad")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{log}");
    for e in expect {
        assert!(log.contains(e), "expected {e:?} in:\n{log}");
    }
    let abra_calls: Vec<_> = f
        .calls()
        .into_iter()
        .filter(|c| c["prog"] == "abra")
        .collect();
    assert!(
        abra_calls.is_empty(),
        "abra was called: {abra_calls:?}\n{log}"
    );
}

#[test]
fn settings_typo_in_a_key_exits_2_before_any_abra_call() {
    bad_settings_exit_2_before_abra(
        "base = \"1.0.0+1.0\"\nconverge_timout = 900\n",
        &[
            "ci-tests/example/ccci.toml:2: unknown key \"converge_timout\": did you mean \"converge_timeout\"?",
        ],
        false,
    );
}

#[test]
fn settings_bad_value_exits_2_before_any_abra_call() {
    bad_settings_exit_2_before_abra(
        "floor = true\nready_probe = \"http /health 99\"\n",
        &["ci-tests/example/ccci.toml:2: key ready_probe: must be \"http PATH"],
        false,
    );
}

#[test]
fn settings_bad_value_in_the_recipes_own_file_exits_2_before_any_abra_call() {
    bad_settings_exit_2_before_abra(
        "\n[not_applicable]\nbackup = 3\n",
        &["tests/ccci.toml (at the tested ref):3: key not_applicable.backup: must be a string"],
        true,
    );
}

#[test]
fn settings_command_prints_each_value_and_its_source() {
    let f = Fixture::new();
    std::fs::write(ci_dir(&f).join("ccci.toml"), "converge_timeout = 900\n").unwrap();
    let own = f.abra_home.join("recipes/example/tests/ccci.toml");
    std::fs::write(&own, "converge_timeout = 60\nfloor = false\n").unwrap();
    let out = f.cmd().args(["settings", "example"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        code(out.status),
        0,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("converge_timeout = 15m00s  # from "),
        "{text}"
    );
    assert!(text.contains("ci-tests/example/ccci.toml:1"), "{text}");
    assert!(
        text.contains(&format!("floor = false  # from {}:2", own.display())),
        "{text}"
    );
    std::fs::write(&own, "flor = false\n").unwrap();
    let out = f.cmd().args(["settings", "example"]).output().unwrap();
    assert_eq!(code(out.status), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"floor\""));
}

#[test]
fn tests_get_the_app_url_versions_and_an_artifacts_directory_kept_with_the_reports() {
    let f = Fixture::new();
    let dir = ci_dir(&f);
    let answers = f.tmp.path().join("answers");
    let path = script(
        &dir,
        "60-env.sh",
        &format!(
            r#"#!/bin/sh
# tier: install, upgrade
# timeout: 30s
set -eu
printf '%s url=%s base=%s sha=%s\n' "$CCCI_TIER" "$CCCI_APP_URL" "$CCCI_BASE_VERSION" "$CCCI_TESTED_SHA" >>'{answers}'
[ -d "$CCCI_ARTIFACTS" ]
[ "$CCCI_TIER" = upgrade ] && echo "a screenshot" >"$CCCI_ARTIFACTS/shot.txt"
exit 0
"#,
            answers = answers.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "testenv")
        .env("CCCI_APP_URL_TEMPLATE", "http://127.0.0.1:9/{domain}/")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = f.record("testenv");
    let sha = rec["sha"].as_str().unwrap();
    assert_eq!(sha.len(), 40, "{rec}");
    let seen = std::fs::read_to_string(&answers).unwrap();
    assert_eq!(
        seen,
        format!(
            "install url=http://127.0.0.1:9/{PR_DOMAIN}/ base=1.1.0+1.0 sha={sha}\n\
             upgrade url=http://127.0.0.1:9/{PR_DOMAIN}/ base=1.1.0+1.0 sha={sha}\n"
        ),
        "{log}"
    );
    // The upgrade tier's file is kept after the run tree is gone, listed
    // in the record and the summary; the install tier's empty directory
    // is not left behind.
    let kept = f
        .state
        .join("runs/testenv/report/artifacts/upgrade/shot.txt");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "a screenshot\n");
    assert!(!f
        .state
        .join("runs/testenv/report/artifacts/install")
        .exists());
    assert_eq!(
        rec["artifacts"],
        serde_json::json!([kept.display().to_string()])
    );
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert!(
        summary.contains(&format!("artifacts: {}", kept.display())),
        "{summary}"
    );
    // Attached in the merged JUnit report, on the upgrade tier's suite.
    let junit = std::fs::read_to_string(f.state.join("runs/testenv/report/junit.xml")).unwrap();
    let upgrade = junit
        .split("<testsuite ")
        .find(|s| s.starts_with("name=\"upgrade\""))
        .unwrap_or_else(|| panic!("no upgrade suite in {junit}"));
    assert!(
        upgrade.contains(&format!("[[ATTACHMENT|{}]]", kept.display())),
        "{junit}"
    );
    assert!(
        upgrade.contains(&format!("name=\"artifact\" value=\"{}\"", kept.display())),
        "{junit}"
    );
    let install = junit
        .split("<testsuite ")
        .find(|s| s.starts_with("name=\"install\""))
        .unwrap_or_else(|| panic!("no install suite in {junit}"));
    assert!(!install.contains("ATTACHMENT"), "{junit}");
}

#[test]
fn a_bad_app_url_template_exits_2_before_anything() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "badurl")
        .env("CCCI_APP_URL_TEMPLATE", "https://{domian}/")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{log}");
    assert!(log.contains("CCCI_APP_URL_TEMPLATE"), "{log}");
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    assert!(!f.state.join("runs/badurl").exists());
}
