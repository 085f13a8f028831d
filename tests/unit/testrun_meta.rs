//! Test file headers (SPEC section 6): every key, the header's extent, and
//! malformed headers as errors that name the line.

use std::time::Duration;

use cc_ci_run::testrun::meta::{parse_header, Level, Meta, Tier};

fn err_line(text: &str) -> (usize, String) {
    let e = parse_header(text).expect_err("header must be rejected");
    (e.line, e.message)
}

#[test]
fn spec_example_header_parses_every_key() {
    let text = "#!/bin/sh\n# level: integration\n# tier: install, upgrade\n# tags: http, slow\n# timeout: 2m\n# memory: 512M\n# priority: -3\n# depends-on: setup, login\n# retries: 2\necho hi\n";
    let m = parse_header(text).unwrap();
    assert_eq!(
        m,
        Meta {
            level: Some(Level::Integration),
            tiers: vec![Tier::Install, Tier::Upgrade],
            tags: vec!["http".into(), "slow".into()],
            timeout: Some(Duration::from_secs(120)),
            memory: Some(512 << 20),
            priority: -3,
            depends_on: vec!["setup".into(), "login".into()],
            retries: Some(2),
        }
    );
    assert!(m.runs_in(Tier::Install) && !m.runs_in(Tier::Restore));
}

#[test]
fn no_header_means_defaults_and_every_tier() {
    let m = parse_header("#!/bin/sh\necho hi\n").unwrap();
    assert_eq!(m, Meta::default());
    assert!(Tier::ALL.iter().all(|t| m.runs_in(*t)));
    assert_eq!(parse_header("").unwrap(), Meta::default());
}

#[test]
fn double_slash_comments_and_blank_lines_are_part_of_the_header() {
    let m = parse_header("#!/usr/bin/env node\n\n// level: unit\n\n// tags: js\nconsole.log(1)\n")
        .unwrap();
    assert_eq!(m.level, Some(Level::Unit));
    assert_eq!(m.tags, vec!["js".to_string()]);
}

#[test]
fn prose_comments_in_the_header_are_left_alone() {
    let text = "#!/bin/bash\n# -*- mode: sh -*-\n# Checks that the app answers on http://localhost\n# shellcheck disable=SC2034\n#\n# level: system\n";
    assert_eq!(parse_header(text).unwrap().level, Some(Level::System));
}

#[test]
fn header_ends_at_the_first_code_line() {
    // `# timeout: nonsense` after code is not metadata, so not an error.
    let m = parse_header("#!/bin/sh\n# level: unit\nset -e\n# timeout: nonsense\n# bogus: 1\n")
        .unwrap();
    assert_eq!(m.level, Some(Level::Unit));
    assert_eq!(m.timeout, None);
}

#[test]
fn unknown_key_is_an_error_naming_the_line() {
    let (line, msg) = err_line("#!/bin/sh\n# level: unit\n# timout: 5m\n");
    assert_eq!(line, 3);
    assert!(msg.contains("unknown header key `timout`"), "{msg}");
    assert!(msg.contains("depends-on"), "lists the known keys: {msg}");
}

#[test]
fn upper_case_key_is_an_error_that_says_keys_are_lower_case() {
    let (line, msg) = err_line("# Timeout: 5m\n");
    assert_eq!(line, 1);
    assert!(
        msg.contains("lower-case") && msg.contains("`timeout`"),
        "{msg}"
    );
}

#[test]
fn bad_values_are_errors_naming_the_line() {
    let cases = [
        ("# level: huge\n", "level `huge`"),
        ("# tier: install, deploy\n", "tier `deploy`"),
        ("# tier:\n", "has no value"),
        ("# tags: a,,b\n", "empty item"),
        ("# tags: a b\n", "whitespace"),
        ("# tags: a/b\n", "tag `a/b`"),
        ("# timeout: 5 minutes\n", "timeout"),
        ("# timeout: 0\n", "longer than 0"),
        ("# memory: 1.5G\n", "memory"),
        ("# memory: 0\n", "more than 0"),
        ("# priority: high\n", "priority `high`"),
        ("# depends-on: ../other\n", "without directory"),
    ];
    for (text, want) in cases {
        let full = format!("#!/bin/sh\n# A prose line.\n{text}");
        let (line, msg) = err_line(&full);
        assert_eq!(line, 3, "{text:?}");
        assert!(msg.contains(want), "{text:?}: {msg}");
    }
}

#[test]
fn a_key_set_twice_is_an_error_naming_both_lines() {
    let (line, msg) = err_line("# level: unit\n# tags: a\n# level: system\n");
    assert_eq!(line, 3);
    assert!(msg.contains("set twice") && msg.contains("line 1"), "{msg}");
}

#[test]
fn urls_and_windows_paths_are_not_keys() {
    assert_eq!(
        parse_header("# see http://example.org\n# c:\\x\n").unwrap(),
        Meta::default()
    );
    // `word:` directly followed by text is not a key either.
    assert_eq!(parse_header("# note:this\n").unwrap(), Meta::default());
}

#[test]
fn retries_is_a_whole_number_up_to_the_bound() {
    let m = parse_header("#!/bin/sh\n# retries: 0\n").unwrap();
    assert_eq!(m.retries, Some(0), "0 is set, not the default");
    assert_eq!(parse_header("#!/bin/sh\n").unwrap().retries, None);
    let (line, msg) = err_line("#!/bin/sh\n# retries: -1\n");
    assert_eq!(line, 2);
    assert!(msg.contains("retries `-1` is not a whole number"), "{msg}");
    let (_, msg) = err_line("# retries: 101\n");
    assert!(msg.contains("more than 100"), "{msg}");
}

#[test]
fn backup_is_a_tier_of_its_own_between_upgrade_and_restore() {
    let m = parse_header("#!/bin/sh\n# tier: backup\n").unwrap();
    assert_eq!(m.tiers, vec![Tier::Backup]);
    assert!(m.runs_in(Tier::Backup) && !m.runs_in(Tier::Restore));
    assert_eq!(
        Tier::ALL,
        [Tier::Install, Tier::Upgrade, Tier::Backup, Tier::Restore]
    );
    // A test with no tier header runs after every tier, the backup tier too.
    assert!(parse_header("#!/bin/sh\n").unwrap().runs_in(Tier::Backup));
    let (line, msg) = err_line("#!/bin/sh\n# tier: backups\n");
    assert_eq!(line, 2);
    assert!(
        msg.contains("tier `backups` is not one of install, upgrade, backup, restore"),
        "{msg}"
    );
}
