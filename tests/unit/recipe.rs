use cc_ci_run::ext::docker::labels::ServiceLabels;
use cc_ci_run::run::recipe::*;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn env_sample_parsing_strips_quotes_and_comments() {
    let e = parse_env("# c\nTYPE=example\nCOMPOSE_FILE=\"compose.yml:compose.smtp.yml\"\nX='y' \nexport Z=1 # note\nQ=\"true\"  # on\n");
    assert_eq!(e["TYPE"], "example");
    assert_eq!(e["COMPOSE_FILE"], "compose.yml:compose.smtp.yml");
    assert_eq!(e["X"], "y");
    assert_eq!(e["Z"], "1");
    assert_eq!(e["Q"], "true");
}

#[test]
fn an_unreadable_env_file_is_a_static_check_failure_naming_file_and_line() {
    let err = read_env(Path::new(".env.sample"), "A=1\nB=\"open\n").unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&err), 1);
    let msg = format!("{err:#}");
    assert!(
        msg.contains(".env.sample") && msg.contains("line 2") && msg.contains("unterminated"),
        "{msg}"
    );
}

#[test]
fn abra_sh_exports_are_read() {
    let e = abra_sh_exports("#!/usr/bin/env bash\n# export NO=1\nexport APP_ENTRYPOINT_VERSION=v3\nexport NGINX_CONF_VERSION=\"v2\"\nfile_env() {\n  export X\n}\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e["APP_ENTRYPOINT_VERSION"], "v3");
    assert_eq!(e["NGINX_CONF_VERSION"], "v2");
}

#[test]
fn set_env_replaces_or_appends() {
    assert_eq!(
        set_env("A=1\nLETS_ENCRYPT_ENV=production\n", "LETS_ENCRYPT_ENV", ""),
        "A=1\nLETS_ENCRYPT_ENV=\n"
    );
    assert_eq!(set_env("A=1\n", "B", "2"), "A=1\nB=2\n");
    // the last definition wins for abra: a later one must not undo the change
    assert_eq!(
        set_env("L=prod\nA=1\nexport L=staging\n", "L", ""),
        "L=\nA=1\n"
    );
}

fn vars(text: &str) -> BTreeMap<String, String> {
    deploy_vars(&parse_env(text), &BTreeMap::new(), "app_example_test")
}

#[test]
fn deploy_labels_are_service_labels_and_labels_are_container_labels() {
    let text = "version: '3.8'\nservices:\n  app:\n    image: nginx:1.25.3\n    deploy:\n      labels:\n        - backupbot.backup=true\n        - coop-cloud.${STACK_NAME}.version=1.0.0\n  db:\n    image: postgres@sha256:abcd\n    labels:\n      backupbot.backup: \"true\"\n";
    let s = parse_compose(Path::new("compose.yml"), text, &vars("")).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].labels["backupbot.backup"], "true");
    assert_eq!(s[0].labels["coop-cloud.app_example_test.version"], "1.0.0");
    assert!(!s[1].labels.contains_key("backupbot.backup"), "{s:?}");
    assert_eq!(s[1].container_labels["backupbot.backup"], "true");
}

#[test]
fn merge_keys_are_applied_then_values_interpolated() {
    let text = "x-backup: &backup\n  backupbot.backup: ${ENABLE_BACKUPS:-false}\n  backupbot.backup.path: /data\nservices:\n  app:\n    image: nginx:1.25.3\n    deploy:\n      labels:\n        <<: *backup\n        traefik.enable: \"true\"\n";
    let s = parse_compose(
        Path::new("compose.yml"),
        text,
        &vars("ENABLE_BACKUPS=\"true\"  # on\n"),
    )
    .unwrap();
    assert_eq!(s[0].labels["backupbot.backup"], "true", "{s:?}");
    assert_eq!(s[0].labels["backupbot.backup.path"], "/data");
    assert!(!s[0].labels.contains_key("<<"));
}

#[test]
fn a_required_variable_missing_names_the_variable_the_file_and_the_place() {
    let text = "services:\n  app:\n    image: nginx:1.25.3\n    environment:\n      - SECRET=${ADMIN_EMAIL:?set ADMIN_EMAIL}\n";
    let err = parse_compose(Path::new("compose.yml"), text, &vars("")).unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&err), 1);
    let msg = format!("{err:#}");
    assert!(
        msg.contains("compose.yml")
            && msg.contains("services.app.environment[0]")
            && msg.contains("required variable ADMIN_EMAIL is missing a value: set ADMIN_EMAIL"),
        "{msg}"
    );
    // `?` (no colon) accepts an empty value
    assert!(parse_compose(
        Path::new("c.yml"),
        &text.replace(":?", "?"),
        &vars("ADMIN_EMAIL=\n")
    )
    .is_ok());
}

#[test]
fn broken_compose_is_a_static_check_failure_naming_the_file() {
    let err = parse_compose(Path::new("compose.yml"), "services: [\n", &vars("")).unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&err), 1);
    assert!(format!("{err:#}").contains("compose.yml"));
}

#[test]
fn compose_files_come_from_the_env_files_compose_file_and_merge_by_service() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("compose.yml"), "services:\n  app:\n    image: nginx:1.25.3\n    deploy:\n      labels: [\"coop-cloud.${STACK_NAME}.timeout=${TIMEOUT:-120}\"]\n").unwrap();
    std::fs::write(d.path().join("compose.db.yml"), "services:\n  app:\n    deploy:\n      labels:\n        backupbot.backup: \"${ENABLE_BACKUPS:-true}\"\n  db:\n    image: postgres:16.1\n").unwrap();
    let env = parse_env("COMPOSE_FILE=\"compose.yml\"\nCOMPOSE_FILE=\"$COMPOSE_FILE:compose.db.yml\"\nTIMEOUT=900\n");
    let v = deploy_vars(&env, &BTreeMap::new(), "s_t");
    let c = read_compose(d.path(), Path::new("app.env"), &env, &v).unwrap();
    assert_eq!(c.files.len(), 2);
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services[0].labels["backupbot.backup"], "true");
    let (bound, said) = timeout_label(&c, "s_t").unwrap().unwrap();
    assert_eq!(bound, std::time::Duration::from_secs(900));
    assert!(
        said.contains("coop-cloud.s_t.timeout=900 on service app"),
        "{said}"
    );
    assert!(timeout_label(&c, "other").is_none());
}

#[test]
fn pinned_images() {
    for ok in ["nginx:1.25", "registry:5000/a/b:1.0", "x@sha256:ab"] {
        assert!(image_pinned(ok), "{ok}");
    }
    for no in [
        "nginx",
        "nginx:latest",
        "registry:5000/a/b",
        "img:${VERSION}",
    ] {
        assert!(!image_pinned(no), "{no}");
    }
}

#[test]
fn latest_release_before_the_ref() {
    let merged: Vec<String> = ["1.0.0+1.0", "1.1.0+1.0", "1.10.0+2", "junk"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(latest_release_before(&merged, &[]), Some("1.10.0+2".into()));
    assert_eq!(
        latest_release_before(&merged, &["1.10.0+2".into()]),
        Some("1.1.0+1.0".into())
    );
    assert_eq!(latest_release_before(&[], &[]), None);
}

#[test]
fn chaos_version_label_must_be_a_clean_prefix() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    assert!(check_chaos_version("01234567", sha).is_ok());
    assert!(check_chaos_version("0123456789ab", sha).is_ok());
    assert!(check_chaos_version("01234567+U", sha).is_err());
    assert!(check_chaos_version("fedcba98", sha).is_err());
    assert!(check_chaos_version("", sha).is_err());
}

fn deployed(name: &str, labels: &[(&str, &str)], container: &[(&str, &str)]) -> ServiceLabels {
    let m = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ServiceLabels {
        name: name.into(),
        labels: m(labels),
        container_labels: m(container),
    }
}

#[test]
fn backup_tier_runs_when_a_deployed_service_carries_backupbot_backup_true() {
    let s = [
        deployed("s_app", &[("backupbot.backup", "false")], &[]),
        deployed("s_db", &[("backupbot.backup", "true")], &[]),
    ];
    let t = backup_tier(&s);
    assert!(t.run, "{t:?}");
    assert_eq!(
        t.reason,
        "backup/restore tier: backupbot.backup=true on deployed service s_db"
    );
}

#[test]
fn backup_tier_is_skipped_naming_the_deployed_value() {
    let t = backup_tier(&[deployed("s_app", &[("backupbot.backup", "false")], &[])]);
    assert!(!t.run);
    assert_eq!(
        t.reason,
        "backup/restore tier skipped: backupbot.backup=false on deployed service s_app"
    );
    // a quoted value the reader failed to unquote would be `"true"`: not enabled
    assert!(!backup_tier(&[deployed("s_app", &[("backupbot.backup", "\"true\"")], &[])]).run);
}

#[test]
fn a_container_label_does_not_run_the_backup_tier_and_the_reason_says_so() {
    let t = backup_tier(&[deployed("s_app", &[], &[("backupbot.backup", "true")])]);
    assert!(!t.run);
    assert_eq!(
        t.reason,
        "backup/restore tier skipped: no deployed service carries a backupbot.backup deploy label \
         (service s_app has backupbot.backup=true as a container label (`labels:`), which backupbot \
         does not read (it reads deploy.labels))"
    );
}

#[test]
fn deploy_vars_are_the_env_file_abra_sh_and_stack_name() {
    let sh = abra_sh_exports("export A=sh\nexport C_VERSION=v2\n");
    let v = deploy_vars(&parse_env("A=1\nB=2\n"), &sh, "s_t");
    assert_eq!(
        v["A"], "sh",
        "abra merges abra.sh's exports over the env file"
    );
    assert_eq!(v["B"], "2");
    assert_eq!(v["C_VERSION"], "v2");
    assert_eq!(v["STACK_NAME"], "s_t");
    // abra uses an env file's STACK_NAME as the stack name
    assert_eq!(
        deploy_vars(&parse_env("STACK_NAME=own\n"), &BTreeMap::new(), "s_t")["STACK_NAME"],
        "own"
    );
}

#[test]
fn images_are_checked_pinned_as_interpolated() {
    let f = [std::path::PathBuf::from("compose.yml")];
    let parse = |image: &str, env: &str| {
        let text = format!("services:\n  app:\n    image: \"{image}\"\n");
        parse_compose(&f[0], &text, &vars(env)).map(|s| s[0].clone())
    };
    assert_eq!(
        pinned_image(&f, &parse("nginx:${VERSION}", "VERSION=1.2.3").unwrap()).unwrap(),
        Some("nginx:1.2.3".into())
    );
    assert_eq!(
        pinned_image(&f, &parse("nginx:${EMPTY:-1.25}", "EMPTY=").unwrap()).unwrap(),
        Some("nginx:1.25".into())
    );
    for (image, needle) in [
        ("nginx:${NOPE}", "(\"nginx:\" with .env.sample's values)"),
        ("nginx:${EMPTY:-latest}", "must be pinned"),
    ] {
        let err = pinned_image(&f, &parse(image, "").unwrap()).unwrap_err();
        assert_eq!(cc_ci_run::exit::code_for(&err), 1, "{image}");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("compose.yml") && msg.contains("service app") && msg.contains(needle),
            "{image}: {msg}"
        );
    }
    for (image, needle) in [
        ("nginx:${VERSION", "column 7"),
        (
            "nginx:${NOPE:?pin it}",
            "required variable NOPE is missing a value: pin it",
        ),
    ] {
        let err = parse(image, "").unwrap_err();
        assert_eq!(cc_ci_run::exit::code_for(&err), 1, "{image}");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("compose.yml")
                && msg.contains("services.app.image")
                && msg.contains(needle),
            "{image}: {msg}"
        );
    }
}
