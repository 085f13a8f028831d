//! The EXIT STATUS, ENVIRONMENT and FILES tables cannot drift: every
//! `CCCI_*`/`DRONE_*` variable named in the source is listed (and nothing
//! listed is gone from it), every exit code constant is listed, and `--help`
//! and the man page both carry them.

use std::collections::BTreeSet;

use cc_ci_run::cli::Cli;
use cc_ci_run::manual::{man_sections, ENVIRONMENT, EXIT_STATUS};
use clap::CommandFactory;

/// Every `"CCCI_…"` / `"DRONE_…"` string literal in `src/` except the
/// table's own file: what the code reads (env lookups, clap `env =`) and
/// what it sets for the tests it runs.
fn variables_in_source() -> BTreeSet<String> {
    let re = regex::Regex::new(r#""((?:CCCI|DRONE)_[A-Z0-9_]+)""#).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeSet::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let p = entry.path();
        if p.extension().is_none_or(|e| e != "rs") || p.ends_with("manual.rs") {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        for c in re.captures_iter(&text) {
            found.insert(c[1].to_string());
        }
    }
    found
}

#[test]
fn every_variable_the_source_names_is_in_the_environment_table() {
    let listed: BTreeSet<String> = ENVIRONMENT.iter().map(|e| e.name.to_string()).collect();
    let used = variables_in_source();
    assert!(used.len() > 40, "the grep found too little: {used:?}");
    let missing: Vec<_> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "not in manual::ENVIRONMENT: {missing:?}"
    );
    let stale: Vec<_> = listed
        .iter()
        .filter(|n| n.starts_with("CCCI_") || n.starts_with("DRONE_"))
        .filter(|n| !used.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "listed but no longer in the source: {stale:?}"
    );
}

#[test]
fn every_exit_code_constant_is_listed() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/exit.rs"),
    )
    .unwrap();
    let consts = regex::Regex::new(r"pub const ([A-Z_]+): i32").unwrap();
    let names: Vec<String> = consts
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let manual = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/manual.rs"),
    )
    .unwrap();
    for n in names {
        assert!(
            manual.contains(&format!("exit::{n},")),
            "exit::{n} not in EXIT_STATUS"
        );
    }
    let codes: BTreeSet<i32> = EXIT_STATUS.iter().map(|e| e.0).collect();
    assert_eq!(codes.len(), EXIT_STATUS.len(), "a code listed twice");
}

#[test]
fn help_and_man_page_carry_the_same_tables() {
    let long = Cli::command().render_long_help().to_string();
    let short = Cli::command().render_help().to_string();
    let man = man_sections();
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(man.contains(section), "{section} missing");
    }
    for (code, what) in EXIT_STATUS {
        assert!(
            short.contains(&format!("{code:>3}  {what}")),
            "-h lacks {code}"
        );
        assert!(long.contains(what));
        assert!(man.contains(&format!("\\fB{code}\\fR")));
    }
    for e in ENVIRONMENT {
        assert!(long.contains(e.name), "--help lacks {}", e.name);
        assert!(
            man.contains(&e.name.replace('-', "\\-")),
            "man lacks {}",
            e.name
        );
    }
    assert!(long.contains("STATE/runs/RUN/run.json") && man.contains("STATE/runs/RUN/run.json"));
}

#[test]
fn the_build_settable_list_names_only_variables_cc_ci_run_reads() {
    use cc_ci_run::manual::{BUILD_SETTABLE, ENVIRONMENT};
    for name in BUILD_SETTABLE {
        assert!(
            ENVIRONMENT.iter().any(|v| v.name == *name),
            "{name} is build-settable but not in the environment table"
        );
    }
}

#[test]
fn host_owned_settings_are_the_ones_that_decide_what_runs_and_where() {
    use cc_ci_run::host::host_owned;
    for name in [
        "CCCI_STATE_DIR",
        "CCCI_ABRA",
        "CCCI_DOCKER",
        "CCCI_GIT",
        "CCCI_ABRA_HOME",
        "CCCI_RUN_APP_RE",
        "CCCI_LOCK_BACKEND",
        "CCCI_DOMAIN",
        "CCCI_TIMEOUT",
        "CCCI_TEST_MEMORY",
        "CCCI_SKIP_FETCH",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
    ] {
        assert!(host_owned(name), "{name}");
    }
    // A build's own choices, the variables cc-ci-run sets for its tests,
    // and names it does not read are not.
    for name in [
        "CCCI_QUICK",
        "CCCI_REF",
        "CCCI_PR",
        "CCCI_TEST_TAGS",
        "CCCI_APP_DOMAIN",
        "CCCI_TEST_NAME",
        "CCCI_FAKE_STATE",
        "HOME",
    ] {
        assert!(!host_owned(name), "{name}");
    }
}

#[test]
fn the_host_file_reads_as_the_module_writes_it() {
    use cc_ci_run::host::{conflicts, parse};
    let file = std::path::Path::new("/etc/cc-ci-run/host.env");
    let s = parse(
        "# comment\n\nCCCI_RUN_APP_RE='^a,b:c$'\nCCCI_SERVER=default\n",
        file,
    )
    .unwrap();
    assert_eq!(s["CCCI_RUN_APP_RE"], "^a,b:c$");
    assert_eq!(s["CCCI_SERVER"], "default");
    for (bad, says) in [
        ("CCCI_SERVER", "host.env:1: not NAME='VALUE'"),
        ("CCCI_SERVER=\"x\"", "unquoted value"),
        ("CCCI_SERVER='x", "a quoted value"),
        ("HOME='/root'", "HOME is not a setting"),
    ] {
        let e = format!("{:#}", parse(bad, file).unwrap_err());
        assert!(e.contains(says), "{bad}: {e}");
    }
    let env: std::collections::BTreeMap<String, String> = [
        ("CCCI_SERVER", "default"),
        ("CCCI_ABRA", "/tmp/evil"),
        ("CCCI_QUICK", "1"),
        ("PATH", "/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let bad = conflicts(&s, &env);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("CCCI_ABRA=/tmp/evil"), "{bad:?}");
}
