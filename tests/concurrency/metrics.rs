//! The metrics file (SPEC section 7) as real runs and janitor sweeps write
//! it: it parses after runs of different verdicts, its counters only grow,
//! concurrent writers lose no increment, a reader never sees half a file,
//! and a bad CCCI_METRICS_FILE is refused before anything is touched.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::promtext::{check, get};
use crate::support::*;

fn samples(path: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(path).expect("the metrics file exists");
    check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Every counter in `after` is at least what it was in `before`.
fn only_grew(before: &[(String, f64)], after: &[(String, f64)]) {
    for (k, v) in before {
        if k.contains("_total") || k.contains("_count") || k.contains("_sum") {
            let now = get(after, k).unwrap_or_else(|| panic!("{k} vanished"));
            assert!(now >= *v, "{k} went from {v} to {now}");
        }
    }
}

#[test]
fn runs_of_two_verdicts_and_a_sweep_write_a_file_that_parses_and_only_grows() {
    let f = Fixture::new();
    let dir = f.tmp.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let prom = dir.join("ccci.prom");
    let ok = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_METRICS_FILE", &prom)
        .env("CCCI_RUN_ID", "m-pass")
        .output()
        .unwrap();
    assert_eq!(
        code(ok.status),
        0,
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let first = samples(&prom);
    crate::promtext::promtool_accepts(&std::fs::read_to_string(&prom).unwrap());
    let passed = r#"ccci_runs_total{recipe="example",verdict="passed"}"#;
    assert_eq!(get(&first, passed), Some(1.0));
    // The run's own janitor pass swept once after it.
    assert!(get(&first, "ccci_janitor_sweeps_total{}").unwrap() >= 1.0);
    assert_eq!(get(&first, "ccci_app_locks_held{}"), Some(0.0));

    let red = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_METRICS_FILE", &prom)
        .env("CCCI_RUN_ID", "m-failed")
        .env("CCCI_EXAMPLE_FAIL", "install")
        .output()
        .unwrap();
    assert_eq!(
        code(red.status),
        1,
        "{}",
        String::from_utf8_lossy(&red.stderr)
    );
    let second = samples(&prom);
    crate::promtext::promtool_accepts(&std::fs::read_to_string(&prom).unwrap());
    only_grew(&first, &second);
    assert_eq!(get(&second, passed), Some(1.0));
    assert_eq!(
        get(
            &second,
            r#"ccci_runs_total{recipe="example",verdict="failed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        get(&second, r#"ccci_last_run_passed{recipe="example"}"#),
        Some(0.0)
    );

    let sweeps = get(&second, "ccci_janitor_sweeps_total{}").unwrap();
    let j = f
        .cmd()
        .arg("janitor")
        .env("CCCI_METRICS_FILE", &prom)
        .output()
        .unwrap();
    assert_eq!(code(j.status), 0, "{}", String::from_utf8_lossy(&j.stderr));
    let third = samples(&prom);
    only_grew(&second, &third);
    assert_eq!(
        get(&third, "ccci_janitor_sweeps_total{}"),
        Some(sweeps + 1.0)
    );
    // Nothing but the file itself in the collector's directory: no
    // temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("ccci.prom")]);
}

#[test]
fn a_reader_never_sees_half_a_file_and_concurrent_sweeps_lose_no_count() {
    let f = Fixture::new();
    let prom = f.tmp.path().join("ccci.prom");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (prom, stop) = (prom.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_to_string(&prom) {
                    Ok(text) => {
                        check(&text).unwrap_or_else(|e| panic!("a torn file: {e}\n{text}"));
                        assert!(
                            text.contains("ccci_janitor_last_sweep_timestamp_seconds "),
                            "the file's end is missing:\n{text}"
                        );
                        reads += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("{e}"),
                }
            }
            reads
        })
    };
    // Two janitors at a time, 25 rounds: 50 rewrites, racing pairwise on
    // the tally.
    for _ in 0..25 {
        let pair: Vec<_> = (0..2)
            .map(|_| {
                f.cmd()
                    .arg("janitor")
                    .env("CCCI_METRICS_FILE", &prom)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in pair {
            let out = c.wait_with_output().unwrap();
            assert_eq!(
                code(out.status),
                0,
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(reads > 0, "the reader never read the file");
    let s = samples(&prom);
    assert_eq!(get(&s, "ccci_janitor_sweeps_total{}"), Some(50.0));
}

#[test]
fn a_bad_metrics_file_is_exit_2_naming_the_variable_and_nothing_is_touched() {
    let f = Fixture::new();
    for bad in [
        "relative.prom".to_string(),
        f.tmp.path().display().to_string(),
    ] {
        let out = f
            .run_cmd(&["--pr", "1", "--quick"])
            .env("CCCI_METRICS_FILE", &bad)
            .output()
            .unwrap();
        assert_eq!(code(out.status), 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("CCCI_METRICS_FILE"));
        let j = f
            .cmd()
            .arg("janitor")
            .env("CCCI_METRICS_FILE", &bad)
            .output()
            .unwrap();
        assert_eq!(code(j.status), 2);
        assert!(String::from_utf8_lossy(&j.stderr).contains("CCCI_METRICS_FILE"));
    }
    assert!(!f.state.join("runs").exists(), "a run started");
    assert!(f.calls().is_empty(), "abra was called");
}
