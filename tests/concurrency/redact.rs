//! Secrets out of the output (SPEC section 3 step 9), on the real binary with
//! the stand-in abra: the secret `abra app new -S` generates and prints, and
//! the values CCCI_REDACT names (a variable and a file), printed by a test on
//! its stdout and stderr, appear in no file the run wrote (state directory,
//! report directory, timeline page and metrics file: every file walked) nor
//! on its stderr; a value shorter than 8 characters stays; a failing `app
//! new` that printed its secrets is redacted too.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

/// A CI test of the example recipe that prints the app's generated secret
/// (read from the stand-in's store, as a real test reads it from the
/// container) and the operator's secrets, on stdout and stderr, then fails
/// when `fail` (so its output is quoted in the JUnit failure text).
fn leaky_test(f: &Fixture, fail: bool) {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let body = format!(
        "#!/bin/sh\n# tier: install\n\
         for s in \"$CCCI_FAKE_STATE\"/secrets/\"$CCCI_STACK\"_api_key_*.json; do\n\
           python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[\"data\"]; print(\"generated: \" + v); print(\"generated on stderr: \" + v, file=sys.stderr)' \"$s\"\n\
         done\n\
         printf 'token: %s\\n' \"$CCCI_TEST_TOKEN\"\n\
         printf 'token on stderr: %s\\n' \"$CCCI_TEST_TOKEN\" >&2\n\
         printf 'key file: '; cat \"$CCCI_TEST_KEY_FILE\"\n\
         printf 'short: %s\\n' \"$CCCI_TEST_SHORT\"\n\
         {}\n",
        if fail { "exit 1" } else { "exit 0" }
    );
    let path = script(&dir, "50-leaks.sh", &body);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const TOKEN: &str = "tok-3f9a7c1e5b2d4680";
const KEY: &str = "key-file-c0ffee-8badf00d";
const SHORT: &str = "pw1234";

/// The run, with CCCI_REDACT naming a variable and a file; its stderr.
fn run(f: &Fixture, run_id: &str, report_dir: &Path, extra: &[(&str, &str)]) -> (i32, String) {
    let key_file = f.tmp.path().join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let pages = f.tmp.path().join("pages");
    std::fs::create_dir_all(&pages).unwrap();
    let mut c = f.run_cmd(&["--quick", "--report-dir", report_dir.to_str().unwrap()]);
    c.env("CCCI_ABRA", tee_abra(f))
        .env("CCCI_TIMELINE_FILE", pages.join("timeline.html"))
        .env("CCCI_METRICS_FILE", pages.join("ccci.prom"))
        .env("CCCI_RUN_ID", run_id)
        .env("CCCI_TEST_TOKEN", TOKEN)
        .env("CCCI_TEST_KEY_FILE", &key_file)
        .env("CCCI_TEST_SHORT", SHORT)
        .env(
            "CCCI_REDACT",
            format!("CCCI_TEST_TOKEN, {},CCCI_TEST_SHORT", key_file.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (code(out.status), stderr)
}

/// What follows `generated: ` on each line the leaky test printed.
fn generated_in(stderr_or_file: &str) -> Vec<String> {
    stderr_or_file
        .lines()
        .filter_map(|l| l.split("generated: ").nth(1))
        .map(|v| v.trim().to_string())
        .collect()
}

/// Every file under `dirs`, with its content (lossy).
fn files_under(dirs: &[&Path]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in dirs {
        for e in walkdir::WalkDir::new(d).into_iter().filter_map(Result::ok) {
            if e.file_type().is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                out.push((
                    e.path().display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
    }
    out
}

fn assert_nowhere(value: &str, stderr: &str, files: &[(String, String)]) {
    assert!(!stderr.contains(value), "{value} is on stderr:\n{stderr}");
    for (path, text) in files {
        assert!(!text.contains(value), "{value} is in {path}");
    }
}

/// Puts a tee in front of the stand-in abra (CCCI_ABRA): everything it
/// prints on stdout is also appended to `abra.stdout` outside the state
/// directory, the test's record of the secrets `app new -S` printed.
fn tee_abra(f: &Fixture) -> std::path::PathBuf {
    let body = format!(
        "#!/bin/sh\nout=$(mktemp)\n{} \"$@\" >\"$out\"\nrc=$?\ncat \"$out\" >>{}\ncat \"$out\"\nrm -f \"$out\"\nexit $rc\n",
        fake_dir().join("abra").display(),
        f.tmp.path().join("abra.stdout").display()
    );
    let path = script(f.tmp.path(), "abra-tee", &body);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The values of the secrets tables the stand-in printed (`│ ID │ VALUE │`).
fn secret_values(f: &Fixture) -> Vec<String> {
    let text = std::fs::read_to_string(f.tmp.path().join("abra.stdout")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("│ ") && !l.contains(" NAME "))
        .filter_map(|l| l.split('│').nth(2))
        .map(|v| v.trim().to_string())
        .collect()
}

fn check_run(fail: bool) {
    let f = Fixture::new();
    leaky_test(&f, fail);
    let reports = f.tmp.path().join("reports");
    let (code, stderr) = run(&f, "redact", &reports, &[]);
    assert_eq!(code, if fail { 1 } else { 0 }, "{stderr}");
    let generated = secret_values(&f);
    assert_eq!(generated.len(), 1, "the example recipe has one secret");
    assert!(generated[0].len() >= 8);
    assert_eq!(generated_in(&stderr), ["***"], "the test printed it");
    let files = files_under(&[&f.state, &reports, &f.tmp.path().join("pages")]);
    // The run wrote its log, record, reports, JUnit, the timeline page and
    // the metrics (the walk is not empty).
    for want in [
        "run.log",
        "run.json",
        "junit.xml",
        "50-leaks.sh.stdout",
        "timeline.html",
        "ccci.prom",
    ] {
        assert!(
            files.iter().any(|(p, _)| p.ends_with(want)),
            "no {want} among {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
    for v in generated.iter().map(String::as_str).chain([TOKEN, KEY]) {
        assert_nowhere(v, &stderr, &files);
    }
    // What the test printed is there, with `***` in the secrets' place.
    assert!(stderr.contains("generated: ***"), "{stderr}");
    assert!(stderr.contains("token on stderr: ***"), "{stderr}");
    assert!(stderr.contains("key file: ***"), "{stderr}");
    let captured = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p.starts_with(reports.to_str().unwrap()) && p.ends_with(name))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no {name} in the reports"))
    };
    assert!(captured("50-leaks.sh.stdout").contains("token: ***"));
    assert!(captured("50-leaks.sh.stderr").contains("generated on stderr: ***"));
    // A value under 8 characters is not hidden, and the run said so.
    assert!(stderr.contains(&format!("short: {SHORT}")), "{stderr}");
    let warning = "CCCI_REDACT: the value of CCCI_TEST_SHORT is shorter than 8 characters";
    assert!(stderr.contains(warning), "{stderr}");
    let log = files.iter().find(|(p, _)| p.ends_with("run.log")).unwrap();
    assert!(log.1.contains(warning), "the log has the warning too");
    if fail {
        let junit = captured("junit.xml");
        assert!(
            junit.contains("token on stderr: ***"),
            "the failure text: {junit}"
        );
    }
}

#[test]
fn secrets_generated_by_app_new_and_named_by_ccci_redact_are_in_no_file_the_run_wrote() {
    check_run(false);
}

#[test]
fn a_failing_test_that_prints_secrets_has_them_hidden_in_its_junit_failure_text() {
    check_run(true);
}

#[test]
fn a_failing_app_new_that_printed_its_secrets_has_them_hidden() {
    let f = Fixture::new();
    let reports = f.tmp.path().join("reports");
    let (code, stderr) = run(
        &f,
        "redact-new",
        &reports,
        &[("CCCI_FAKE_ABRA_FAIL", "new-secrets")],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("failed after generating its secrets"),
        "{stderr}"
    );
    let calls = f.calls();
    assert!(calls
        .iter()
        .any(|c| c["step"] == "new" && c["result"] == "fail"));
    assert_eq!(
        f.leftovers(),
        Vec::<String>::new(),
        "what it made is torn down"
    );
    // The failed call's output was read for secrets before its error was
    // raised (and logged): the line saying so comes before the error's.
    let learned = stderr
        .find("1 generated secret(s) hidden from the output")
        .expect("the secret was learned from the failed call");
    let failed = stderr.find("failed after generating its secrets").unwrap();
    assert!(learned < failed, "{stderr}");
    let generated = secret_values(&f);
    assert_eq!(generated.len(), 1, "app new printed the example's secret");
    let files = files_under(&[&f.state, &reports, &f.tmp.path().join("pages")]);
    assert!(files.iter().any(|(p, _)| p.ends_with("run.log")));
    assert_nowhere(&generated[0], &stderr, &files);
}

#[test]
fn a_ccci_redact_file_that_cannot_be_read_is_exit_2_before_anything() {
    let f = Fixture::new();
    for (spec, want) in [
        ("/nonexistent/secret", "the file cannot be read"),
        ("TOKEN,not a name", "must be a comma list of variable names"),
    ] {
        let out = f
            .run_cmd(&["--quick"])
            .env("CCCI_RUN_ID", "redact-bad")
            .env("CCCI_REDACT", spec)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 2, "{stderr}");
        assert!(stderr.contains("CCCI_REDACT"), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(f.calls().is_empty(), "no abra call");
        assert!(!f.state.join("runs").join("redact-bad").exists());
    }
}

#[test]
fn the_standalone_test_runner_hides_ccci_redact_values_too() {
    let tmp = tempdir();
    let tests = tmp.path().join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    let report = tmp.path().join("report");
    // Around the token, enough output that the pump reads it in several
    // chunks. The test fails, so its output is quoted in the JUnit.
    let path = script(
        &tests,
        "10-prints-token.sh",
        "#!/bin/sh\nseq 1 3000\necho \"token=$TOKEN\"\nseq 1 3000 >&2\necho \"token on stderr=$TOKEN\" >&2\nexit 1\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A line longer than a log piece (8 KiB) with the token across the
    // piece's end: its newline is written only once the pump has read the
    // token (the captured file holds what comes before it), so the pump
    // must cut a piece of the unfinished line.
    let path = script(
        &tests,
        "20-long-line.sh",
        "#!/bin/sh\nprintf '%8187s' '' | tr ' ' x\nprintf '%s' \"$TOKEN\"\n\
         n=0\nwhile [ \"$(stat -c %s \"$OUT\" 2>/dev/null || echo 0)\" -lt 8187 ] && [ $n -lt 2000 ]; do n=$((n+1)); sleep 0.01; done\n\
         printf 'yyyy\\n'\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ccci()
        .current_dir(tmp.path())
        .env("CCCI_DOCKER", fake_dir().join("docker"))
        .env("CCCI_FAKE_STATE", tmp.path().join("fake"))
        .env("TOKEN", TOKEN)
        .env("OUT", report.join("output/20-long-line.sh.stdout"))
        .env("CCCI_REDACT", "TOKEN")
        .args(["test", "--grace", "1s", "--report-dir"])
        .arg(&report)
        .arg(&tests)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{stderr}");
    assert!(stderr.contains("token=***"), "{stderr}");
    let files = files_under(&[&report]);
    assert!(files
        .iter()
        .any(|(p, t)| p.ends_with("junit.xml") && t.contains("token on stderr=***")));
    // Not even a half of it: a log piece was not cut inside the token.
    let half = TOKEN.len() / 2;
    for part in [TOKEN, &TOKEN[..half], &TOKEN[half..]] {
        assert_nowhere(part, &stderr, &files);
    }
}
