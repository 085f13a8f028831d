use cc_ci_run::run::recipe::*;
use std::path::Path;

#[test]
fn env_sample_parsing_strips_quotes_and_comments() {
    let e = parse_env("# c\nTYPE=example\nCOMPOSE_FILE=\"compose.yml:compose.smtp.yml\"\nX='y' \nexport Z=1 # note\n");
    assert_eq!(e["TYPE"], "example");
    assert_eq!(e["COMPOSE_FILE"], "compose.yml:compose.smtp.yml");
    assert_eq!(e["X"], "y");
    assert_eq!(e["Z"], "1");
}

#[test]
fn set_env_replaces_or_appends() {
    assert_eq!(
        set_env("A=1\nLETS_ENCRYPT_ENV=production\n", "LETS_ENCRYPT_ENV", ""),
        "A=1\nLETS_ENCRYPT_ENV=\n"
    );
    assert_eq!(set_env("A=1\n", "B", "2"), "A=1\nB=2\n");
}

#[test]
fn compose_services_images_and_backup_labels() {
    let text = "version: '3.8'\nservices:\n  app:\n    image: nginx:1.25.3\n    deploy:\n      labels:\n        - backupbot.backup=true\n        - coop-cloud.${STACK_NAME}.version=1.0.0\n  db:\n    image: postgres@sha256:abcd\n    labels:\n      backupbot.backup: \"false\"\n";
    let s = parse_compose(Path::new("compose.yml"), text).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].labels["backupbot.backup"], "true");
    assert_eq!(s[1].labels["backupbot.backup"], "false");
}

#[test]
fn broken_compose_is_a_static_check_failure_naming_the_file() {
    let err = parse_compose(Path::new("compose.yml"), "services: [\n").unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&err), 1);
    assert!(format!("{err:#}").contains("compose.yml"));
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

fn service(name: &str, image: Option<&str>, labels: &[(&str, &str)]) -> Service {
    Service {
        name: name.into(),
        image: image.map(String::from),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn app_env(text: &str) -> std::collections::BTreeMap<String, String> {
    deploy_vars(text, "app_example_test")
}

const REAL_LABEL: &str = "${ENABLE_BACKUPS:-true}";

#[test]
fn backup_tier_runs_when_the_interpolated_label_is_true() {
    let s = [service("app", None, &[("backupbot.backup", REAL_LABEL)])];
    let t = backup_tier(&s, &app_env("TYPE=example\n"), "the app's env file").unwrap();
    assert!(t.run, "{t:?}");
    assert_eq!(
        t.reason,
        "backup/restore tier: backupbot.backup=${ENABLE_BACKUPS:-true} is \"true\" \
         with the app's env file (ENABLE_BACKUPS not set), on service app"
    );
    // set but empty: `:-` takes the default too
    let t = backup_tier(&s, &app_env("ENABLE_BACKUPS=\n"), "the app's env file").unwrap();
    assert!(t.run, "{t:?}");
    let t = backup_tier(&s, &app_env("ENABLE_BACKUPS=true\n"), "the app's env file").unwrap();
    assert!(t.run, "{t:?}");
}

#[test]
fn backup_tier_is_skipped_naming_the_label_its_text_value_and_source() {
    let s = [service("app", None, &[("backupbot.backup", REAL_LABEL)])];
    let t = backup_tier(&s, &app_env("ENABLE_BACKUPS=false\n"), "the app's env file").unwrap();
    assert!(!t.run);
    assert_eq!(
        t.reason,
        "backup/restore tier skipped: backupbot.backup=${ENABLE_BACKUPS:-true} is \"false\" \
         with the app's env file (ENABLE_BACKUPS=false), on service app"
    );
}

#[test]
fn backup_tier_runs_when_any_service_declares_it() {
    let s = [
        service("app", None, &[("backupbot.backup", "false")]),
        service("db", None, &[("backupbot.backup", "${DB_BACKUPS:-true}")]),
        service("cache", None, &[]),
    ];
    let t = backup_tier(&s, &app_env(""), "the app's env file").unwrap();
    assert!(t.run);
    assert!(t.reason.contains("on service db"), "{}", t.reason);
    let t = backup_tier(&s, &app_env("DB_BACKUPS=no\n"), "the app's env file").unwrap();
    assert!(!t.run);
    assert_eq!(
        t.reason,
        "backup/restore tier skipped: backupbot.backup=false, on service app; \
         backupbot.backup=${DB_BACKUPS:-true} is \"no\" with the app's env file \
         (DB_BACKUPS=no), on service db"
    );
}

#[test]
fn backup_tier_without_any_label_is_skipped_and_says_so() {
    let s = [service("app", None, &[("backupbot.backup.path", "/data")])];
    let t = backup_tier(&s, &app_env(""), "the app's env file").unwrap();
    assert!(!t.run);
    assert_eq!(
        t.reason,
        "backup/restore tier skipped: no service of the recipe has a backupbot.backup label"
    );
}

#[test]
fn a_backup_label_that_does_not_interpolate_is_a_recipe_failure() {
    let s = [service(
        "app",
        None,
        &[("backupbot.backup", "${ENABLE_BACKUPS:?say yes or no}")],
    )];
    let err = backup_tier(&s, &app_env(""), "the app's env file").unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&err), 1);
    let msg = format!("{err:#}");
    assert!(
        msg.contains("service app")
            && msg.contains("required variable ENABLE_BACKUPS is missing a value: say yes or no"),
        "{msg}"
    );
}

#[test]
fn deploy_vars_are_the_env_file_plus_stack_name() {
    let v = deploy_vars("A=1\n", "s_t");
    assert_eq!(v["A"], "1");
    assert_eq!(v["STACK_NAME"], "s_t");
    // abra uses an env file's STACK_NAME as the stack name
    assert_eq!(deploy_vars("STACK_NAME=own\n", "s_t")["STACK_NAME"], "own");
}

#[test]
fn images_are_checked_as_interpolated_with_the_env_sample() {
    let f = Path::new("compose.yml");
    let sample = parse_env("VERSION=1.2.3\nEMPTY=\n");
    let ok = service("app", Some("nginx:${VERSION}"), &[]);
    assert_eq!(
        sampled_image(f, &ok, &sample).unwrap(),
        Some("nginx:1.2.3".into())
    );
    let dflt = service("app", Some("nginx:${EMPTY:-1.25}"), &[]);
    assert_eq!(
        sampled_image(f, &dflt, &sample).unwrap(),
        Some("nginx:1.25".into())
    );
    assert_eq!(
        sampled_image(f, &service("x", None, &[]), &sample).unwrap(),
        None
    );
    for (image, needle) in [
        ("nginx:${NOPE}", "(\"nginx:\" with .env.sample's values)"),
        ("nginx:${EMPTY:-latest}", "must be pinned"),
        ("nginx:${VERSION", "column 7"),
        (
            "nginx:${NOPE:?pin it}",
            "required variable NOPE is missing a value: pin it",
        ),
    ] {
        let err = sampled_image(f, &service("app", Some(image), &[]), &sample).unwrap_err();
        assert_eq!(cc_ci_run::exit::code_for(&err), 1, "{image}");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("compose.yml") && msg.contains("service app") && msg.contains(needle),
            "{image}: {msg}"
        );
    }
}
