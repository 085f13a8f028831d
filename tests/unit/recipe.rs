use cc_ci_run::recipe::*;
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
