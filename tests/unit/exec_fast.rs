//! `cli::exec_fast`, the `exec` hot path's own reading of its command line,
//! held against clap's: wherever it answers, clap gives the same arguments;
//! where clap refuses a line or asks for help, it does not answer.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use cc_ci_run::cli::{exec_fast, Cli, Command, ExecArgs};
use clap::Parser;

fn words(line: &[&str]) -> Vec<OsString> {
    line.iter().map(OsString::from).collect()
}

/// What clap makes of `cc-ci-run exec LINE` with `CCCI_GRACE` as given.
/// clap reads the variable from the process environment: the tests that
/// set it hold a lock so that no two change it at once.
fn clap_exec(line: &[OsString], grace_env: Option<&str>) -> Option<ExecArgs> {
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ENV.lock().unwrap_or_else(|e| e.into_inner());
    match grace_env {
        Some(v) => std::env::set_var("CCCI_GRACE", v),
        None => std::env::remove_var("CCCI_GRACE"),
    }
    let mut argv = vec![OsString::from("cc-ci-run"), OsString::from("exec")];
    argv.extend(line.iter().cloned());
    let parsed = Cli::try_parse_from(argv);
    std::env::remove_var("CCCI_GRACE");
    match parsed.ok()?.command {
        Command::Exec(a) => Some(a),
        _ => None,
    }
}

fn agree(line: &[OsString], grace_env: Option<&str>) -> Option<ExecArgs> {
    let fast = exec_fast(line, grace_env.map(std::ffi::OsStr::new));
    if let Some(f) = &fast {
        let slow = clap_exec(line, grace_env);
        assert_eq!(
            Some(f),
            slow.as_ref(),
            "exec {line:?} (CCCI_GRACE={grace_env:?}): the fast path read it otherwise than clap"
        );
    }
    fast
}

#[test]
fn the_common_forms_are_read_as_clap_reads_them() {
    let s = Duration::from_secs;
    // The line, CCCI_GRACE, then what clap reads: grace, timeout, command.
    type Case<'a> = (
        &'a [&'a str],
        Option<&'a str>,
        Duration,
        Option<Duration>,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (&["--", "true"], None, s(10), None, &["true"]),
        (&["true"], None, s(10), None, &["true"]),
        (
            &["sh", "-c", "exit 3"],
            None,
            s(10),
            None,
            &["sh", "-c", "exit 3"],
        ),
        (
            &["--grace", "2s", "--", "sleep", "1"],
            None,
            s(2),
            None,
            &["sleep", "1"],
        ),
        (
            &["--grace=500ms", "true"],
            None,
            Duration::from_millis(500),
            None,
            &["true"],
        ),
        (
            &["--timeout", "1m", "--grace", "3", "--", "x"],
            None,
            s(3),
            Some(s(60)),
            &["x"],
        ),
        (
            &["--timeout=5s", "--", "--grace", "1s"],
            None,
            s(10),
            Some(s(5)),
            &["--grace", "1s"],
        ),
        (&["--", "true"], Some("7s"), s(7), None, &["true"]),
        (
            &["--grace", "1s", "true"],
            Some("7s"),
            s(1),
            None,
            &["true"],
        ),
        (
            &["true", "--grace", "1s"],
            None,
            s(10),
            None,
            &["true", "--grace", "1s"],
        ),
        (
            &["env", "--", "-x"],
            None,
            s(10),
            None,
            &["env", "--", "-x"],
        ),
        (&["--", "--", "true"], None, s(10), None, &["--", "true"]),
    ];
    for (line, env, grace, timeout, command) in cases {
        let got = agree(&words(line), *env)
            .unwrap_or_else(|| panic!("exec {line:?}: the fast path did not answer"));
        assert_eq!(
            got,
            ExecArgs {
                grace: *grace,
                timeout: *timeout,
                command: command.iter().map(|c| c.to_string()).collect(),
            },
            "exec {line:?}"
        );
    }
}

#[test]
fn every_other_line_is_left_to_clap() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["--"], None),
        (&["--help"], None),
        (&["-h"], None),
        (&["--grace"], None),
        (&["--grace", "1s"], None),
        (&["--grace", "soon", "true"], None),
        (&["--grace=", "true"], None),
        (&["--grace", "1s", "--grace", "2s", "true"], None),
        (&["--timeout", "-1s", "true"], None),
        (&["--state-dir", "/tmp/x", "true"], None),
        (&["--host-settings=/etc/x", "--", "true"], None),
        (&["--gr", "1s", "true"], None),
        (&["-x", "true"], None),
        (&["-", "true"], None),
        (&["true"], Some("")),
        (&["true"], Some("later")),
    ];
    for (line, env) in cases {
        assert_eq!(
            agree(&words(line), *env),
            None,
            "exec {line:?} (CCCI_GRACE={env:?}) is clap's to read"
        );
    }
    // A word that is not UTF-8 (clap refuses it for a String).
    let mut line = words(&["--"]);
    line.push(OsString::from_vec(vec![b'a', 0xff]));
    assert_eq!(agree(&line, None), None);
    assert!(clap_exec(&line, None).is_none(), "clap refuses it too");
}
