use cc_ci_run::cli::{Cli, Command};
use cc_ci_run::config::{self, Env};
use cc_ci_run::exit;
use cc_ci_run::run;
use clap::Parser;

fn run_args(extra: &[&str]) -> cc_ci_run::cli::RunArgs {
    let mut argv = vec!["cc-ci-run", "run"];
    argv.extend(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Run(a) => a,
        _ => unreachable!(),
    }
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn code_of(r: anyhow::Result<config::RunConfig>) -> i32 {
    exit::code_for(&r.unwrap_err())
}

#[test]
fn manual_run_gets_manual_id_and_m_lane() {
    let c = run::run_config(&run_args(&["--recipe", "example"]), &env(&[]), 4242).unwrap();
    assert_eq!(c.run_id, "manual-4242");
    assert_eq!(c.domain, "example-m4242.ci.localhost");
    assert_eq!(c.stack, "example-m4242_ci_localhost");
    assert_eq!(
        c.base, None,
        "no --base: the settings or the latest release decide"
    );
}

#[test]
fn drone_build_gets_drone_id_and_pr_lane() {
    let e = env(&[
        ("DRONE_BUILD_NUMBER", "17"),
        ("DRONE_REPO", "coop-cloud/gitea"),
        ("DRONE_PULL_REQUEST", "3"),
        ("CCCI_DOMAIN_SUFFIX", "ci.coopcloud.tech"),
    ]);
    let c = run::run_config(&run_args(&["--recipe", "gitea"]), &e, 1).unwrap();
    assert_eq!(c.run_id, "drone-coop-cloud-gitea-17");
    assert_eq!(c.pr, Some(3));
    assert_eq!(c.domain, "gitea-pr3.ci.coopcloud.tech");
    let c = run::run_config(
        &run_args(&["--recipe", "gitea"]),
        &env(&[
            ("DRONE_BUILD_NUMBER", "17"),
            ("DRONE_REPO", "coop-cloud/gitea"),
        ]),
        1,
    )
    .unwrap();
    assert_eq!(c.domain, "gitea-b17.ci.localhost");
}

#[test]
fn drone_run_ids_differ_between_repositories_and_repeat_within_one() {
    // Drone numbers builds per repository: build 7 of two recipes.
    let a = config::drone_run_id("coop-cloud/gitea", 7);
    let b = config::drone_run_id("coop-cloud/matrix-synapse", 7);
    assert_eq!(a, "drone-coop-cloud-gitea-7");
    assert_eq!(b, "drone-coop-cloud-matrix-synapse-7");
    assert_ne!(a, b);
    assert_eq!(a, config::drone_run_id("coop-cloud/gitea", 7));
    // Runs of other characters become one '-'; case folds.
    assert_eq!(
        config::drone_run_id("Coop_Cloud/My..Recipe", 12),
        "drone-coop-cloud-my-recipe-12"
    );
    // Long names: cut, then 8 hex of the SHA-256 of the whole DRONE_REPO,
    // so two long names with the same start still differ.
    let long1 = format!("coop-cloud/{}-one", "x".repeat(80));
    let long2 = format!("coop-cloud/{}-two", "x".repeat(80));
    let (i1, i2) = (
        config::drone_run_id(&long1, 123456),
        config::drone_run_id(&long2, 123456),
    );
    assert_ne!(i1, i2);
    for id in [&i1, &i2] {
        assert!(id.len() <= 63, "{id}");
        assert!(id.ends_with("-123456"), "{id}");
        cc_ci_run::config::names::check_run_id(id).unwrap();
    }
    assert_eq!(i1, config::drone_run_id(&long1, 123456));
    // The longest build number still fits.
    let id = config::drone_run_id(&long1, 999_999_999_999_999_999);
    assert!(id.len() <= 63, "{id}");
    cc_ci_run::config::names::check_run_id(&id).unwrap();
}

#[test]
fn a_drone_build_without_drone_repo_is_refused() {
    let r = run::run_config(
        &run_args(&["--recipe", "gitea"]),
        &env(&[("DRONE_BUILD_NUMBER", "17")]),
        1,
    );
    assert_eq!(code_of(r), 2);
    for bad in ["a b/c", "x\u{7}/y", "///", "ä/ö"] {
        let r = run::run_config(
            &run_args(&["--recipe", "gitea"]),
            &env(&[("DRONE_BUILD_NUMBER", "17"), ("DRONE_REPO", bad)]),
            1,
        );
        assert_eq!(code_of(r), 2, "{bad:?}");
    }
}

#[test]
fn state_dir_rule_names_what_to_fix() {
    use config::{state_dir_rule, DirFacts};
    use std::path::Path;
    let ok = DirFacts {
        is_dir: true,
        uid: 1000,
        mode: 0o40755,
    };
    assert!(state_dir_rule(Path::new("/var/lib/cc-ci-run"), Some(ok), 1000).is_ok());
    assert!(state_dir_rule(Path::new("/var/lib/cc-ci-run"), None, 1000).is_ok());
    // Root-owned is fine for any user.
    let root = DirFacts { uid: 0, ..ok };
    assert!(state_dir_rule(Path::new("/srv/ccci"), Some(root), 1000).is_ok());
    let msg = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());
    assert!(msg(state_dir_rule(Path::new("state"), Some(ok), 1000)).contains("absolute"));
    assert!(msg(state_dir_rule(Path::new("./x/../y"), None, 1000)).contains("absolute"));
    let other = DirFacts { uid: 1001, ..ok };
    assert!(msg(state_dir_rule(Path::new("/s"), Some(other), 1000)).contains("uid 1001"));
    for mode in [0o40775, 0o40757, 0o41777] {
        let w = DirFacts { mode, ..ok };
        assert!(
            msg(state_dir_rule(Path::new("/s"), Some(w), 1000)).contains("chmod go-w"),
            "{mode:o}"
        );
    }
    let file = DirFacts {
        is_dir: false,
        ..ok
    };
    assert!(msg(state_dir_rule(Path::new("/s"), Some(file), 1000)).contains("directory"));
}

#[test]
fn zero_bounds_and_bad_test_options_are_refused_before_anything_runs() {
    for args in [
        vec!["--timeout", "0"],
        vec!["--teardown-timeout", "0s"],
        vec!["--converge-timeout", "0"],
        vec!["--level", "bogus"],
        vec!["--test-nproc", "0"],
        vec!["--test-nofile", "0"],
        vec!["--test-memory", "0"],
        vec!["--test-timeout", "0"],
        vec!["--test-cpu", "500ms"],
        vec!["--cpu-limit", "150", "--self-protect"],
        vec!["--mem-limit", "0"],
        vec!["--parallel", "--max-workers", "0"],
        vec!["--tag", "a b"],
    ] {
        let mut all = vec!["--recipe", "example"];
        all.extend(&args);
        assert_eq!(
            code_of(run::run_config(&run_args(&all), &env(&[]), 1)),
            2,
            "{args:?}"
        );
    }
}

#[test]
fn stack_name_is_truncated_like_abra() {
    let d = "a-very-long-recipe-name-pr12345.some.long.ci.suffix.example.org";
    let s = config::stack_name(d);
    assert_eq!(s.len(), 45);
    assert!(d.replace('.', "_").starts_with(&s));
}

#[test]
fn bad_input_is_exit_2_naming_the_field() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--recipe", "../etc"], &[], "recipe"),
        (&["--recipe", "a/b"], &[], "recipe"),
        (&["--recipe", "Upper"], &[], "recipe"),
        (&["--recipe", "a b"], &[], "recipe"),
        (&["--recipe", "a;rm"], &[], "recipe"),
        (&["--recipe", ""], &[], "recipe"),
        (&["--recipe", "ü"], &[], "recipe"),
        (&["--recipe", &"x".repeat(64)], &[], "recipe"),
        (&["--recipe", "ok", "--domain", "a..b"], &[], "domain"),
        (&["--recipe", "ok", "--domain", "nodot"], &[], "domain"),
        (&["--recipe", "ok", "--domain", "x/y.z"], &[], "domain"),
        (&["--recipe", "ok", "--ref", "../x"], &[], "ref"),
        (&["--recipe", "ok", "--ref=-rf"], &[], "ref"),
        (&["--recipe", "ok", "--ref", "a b"], &[], "ref"),
        (&["--recipe", "ok", "--ref", "$(id)"], &[], "ref"),
        (&["--recipe", "ok", "--pr", "1a"], &[], "pr"),
        (&["--recipe", "ok", "--pr", "01"], &[], "pr"),
        (&["--recipe", "ok", "--pr", ""], &[], "pr"),
        (&["--recipe", "ok"], &[("CCCI_RUN_ID", "../x")], "run id"),
        (&["--recipe", "ok"], &[("CCCI_RUN_ID", "Abc")], "run id"),
        (
            &["--recipe", "ok"],
            &[("DRONE_BUILD_NUMBER", "1;x")],
            "DRONE_BUILD_NUMBER",
        ),
        (&["--recipe", "ok", "--base", "../1.0"], &[], "base"),
        (&["--recipe", "ok", "--server", "a/b"], &[], "server"),
        (
            &["--recipe", "ok"],
            &[("CCCI_SKIP_FETCH", "maybe")],
            "CCCI_SKIP_FETCH",
        ),
    ];
    for (args, e, field) in cases {
        let r = run::run_config(&run_args(args), &env(e), 1);
        let msg = format!(
            "{:#}",
            r.as_ref()
                .err()
                .unwrap_or_else(|| panic!("{args:?} {e:?} must fail"))
        );
        assert!(
            msg.contains(field),
            "{args:?}: message {msg:?} must name {field}"
        );
        assert_eq!(code_of(r), 2, "{args:?}");
    }
}

#[test]
fn refs_with_slashes_and_shas_are_fine() {
    for r in [
        "main",
        "feature/x",
        "1.0.0+2.3",
        "refs/heads/main",
        "0123abcd",
        "v1.2.3",
    ] {
        config::names::check_ref("ref", r).unwrap();
    }
}

#[test]
fn default_run_app_re_matches_exactly_the_template() {
    let re = regex::Regex::new(&config::default_run_app_re("ci.localhost")).unwrap();
    for ok in [
        "example-pr1.ci.localhost",
        "gitea-b17.ci.localhost",
        "a-b-m4242.ci.localhost",
    ] {
        assert!(re.is_match(ok), "{ok}");
    }
    for no in [
        "example.ci.localhost",
        "example-pr1.ci.localhostx",
        "example-pr1xci.localhost",
        "example-prod.ci.localhost",
        "example-pr1.other.org",
        "sub.example-pr1.ci.localhost",
        "example-pr01.ci.localhost",
        "-pr1.ci.localhost",
    ] {
        assert!(!re.is_match(no), "{no}");
    }
}

#[test]
fn custom_build_commit_sha_is_not_the_recipe_ref() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let push = env(&[
        ("DRONE_BUILD_NUMBER", "3"),
        ("DRONE_REPO", "coop-cloud/example"),
        ("DRONE_COMMIT_SHA", sha),
        ("DRONE_BUILD_EVENT", "push"),
    ]);
    let c = run::run_config(&run_args(&["--recipe", "example"]), &push, 1).unwrap();
    assert_eq!(c.git_ref.as_deref(), Some(sha));
    let custom = env(&[
        ("DRONE_BUILD_NUMBER", "3"),
        ("DRONE_REPO", "coop-cloud/example"),
        ("DRONE_COMMIT_SHA", sha),
        ("DRONE_BUILD_EVENT", "custom"),
    ]);
    let c = run::run_config(&run_args(&["--recipe", "example"]), &custom, 1).unwrap();
    assert_eq!(
        c.git_ref, None,
        "a !testme build without CCCI_REF tests the default branch"
    );
}

#[test]
fn one_run_id_rule_everywhere_63_characters_like_a_dns_label() {
    use cc_ci_run::config::names::{check_run_id, validate_name, RUN_ID_MAX};
    use cc_ci_run::lock::Kind;
    assert_eq!(RUN_ID_MAX, 63);
    let longest = "a".repeat(63);
    let over = "a".repeat(64);
    check_run_id(&longest).unwrap();
    validate_name(Kind::Run, &longest).unwrap();
    assert_eq!(exit::code_for(&check_run_id(&over).unwrap_err()), 2);
    assert_eq!(
        exit::code_for(&validate_name(Kind::Run, &over).unwrap_err()),
        2
    );
    // The id a Drone build gets is never longer than what the rule accepts.
    let id = config::drone_run_id(&format!("org/{}", "r".repeat(200)), u64::MAX);
    assert!(id.len() <= RUN_ID_MAX, "{id}");
    check_run_id(&id).unwrap();
}

#[test]
fn a_deploy_domain_needs_two_labels_a_lock_name_may_have_one() {
    use cc_ci_run::config::names::{check_domain, validate_name};
    use cc_ci_run::lock::Kind;
    assert_eq!(
        exit::code_for(&check_domain("domain", "localhost").unwrap_err()),
        2
    );
    check_domain("domain", "app.example.org").unwrap();
    validate_name(Kind::App, "localhost").unwrap();
    validate_name(Kind::App, "app.example.org").unwrap();
}

#[test]
fn app_url_comes_from_the_template_and_a_bad_template_is_exit_2() {
    let mut env = Env::new();
    assert_eq!(
        config::app_url(&env, "example-pr1.ci.localhost").unwrap(),
        "https://example-pr1.ci.localhost/"
    );
    env.insert(
        "CCCI_APP_URL_TEMPLATE".into(),
        "http://127.0.0.1:8443/{domain}/".into(),
    );
    assert_eq!(
        config::app_url(&env, "a.ci.localhost").unwrap(),
        "http://127.0.0.1:8443/a.ci.localhost/"
    );
    for bad in [
        "https://{domian}/",
        "ftp://{domain}/",
        "https://{domain} /",
        "https://",
        "{domain}",
        "https:///{domain}",
        "https://{domain}/\"x\"",
    ] {
        env.insert("CCCI_APP_URL_TEMPLATE".into(), bad.into());
        let e = config::app_url(&env, "a.ci.localhost").expect_err(bad);
        assert_eq!(cc_ci_run::exit::code_for(&e), 2, "{bad}");
        assert!(
            format!("{e:#}").contains("CCCI_APP_URL_TEMPLATE"),
            "{bad}: {e:#}"
        );
    }
}

/// Every switch, in the environment (`CCCI_SKIP_FETCH`, `CCCI_JANITOR`)
/// or read by clap (`CCCI_QUICK`), takes the same words: clap's own
/// boolish parser also took `y`, `t`, `n` and `f`, the janitor took only
/// `on` and `off`.
#[test]
fn every_switch_takes_the_same_words() {
    for (word, on) in [
        ("1", true),
        ("true", true),
        ("YES", true),
        ("On", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("OFF", false),
    ] {
        assert_eq!(config::switch(word), Some(on), "{word}");
    }
    for word in ["y", "t", "n", "f", "2", "maybe", "", " on"] {
        assert_eq!(config::switch(word), None, "{word:?}");
    }
}
