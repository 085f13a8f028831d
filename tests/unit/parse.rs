use cc_ci_run::ext::abra::parse::{app_of_env_file, parse_app_ls};
use cc_ci_run::ext::docker::*;

#[test]
fn app_ls_empty_object_and_extra_fields() {
    assert!(parse_app_ls("{}").unwrap().is_empty());
    let text = r#"{"default":{"apps":[{"server":"default","recipe":"example","appName":"example-pr1.ci.localhost","domain":"example-pr1.ci.localhost","status":"","chaos":"","chaosVersion":"","version":"","upgrade":"","newField":"x"}],"appCount":1,"versionCount":0,"unversionedCount":1,"latestCount":0,"upgradeCount":0}}"#;
    let apps = parse_app_ls(text).unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].name(), "example-pr1.ci.localhost");
    assert!(parse_app_ls("not json").is_err());
}

#[test]
fn env_file_names_abra_takes_for_apps() {
    assert_eq!(
        app_of_env_file("example-pr1.ci.localhost.env"),
        Some("example-pr1.ci.localhost")
    );
    for not_an_app in [
        ".env",
        ".example-pr1.ci.localhost.env",
        ".example-pr1.ci.localhost.env.swp",
        "example-pr1.ci.localhost",
        "example-pr1.ci.localhost.env.bak",
        "README.md",
        "",
    ] {
        assert_eq!(app_of_env_file(not_an_app), None, "{not_an_app:?}");
    }
}

#[test]
fn leftovers_display_names_what_is_left() {
    let l = Leftovers {
        volumes: vec!["s_data".into()],
        ..Default::default()
    };
    assert!(l.running_gone());
    assert!(!l.is_empty());
    assert_eq!(l.to_string(), "volumes: s_data");
}
