//! The floor (SPEC section 3 step 9) end to end: the real binary, real
//! git, the stand-in abra and docker, the bundled example recipe, and a
//! stand-in app: an HTTP server on 127.0.0.1 in this test process (the
//! stand-in swarm's apps serve nothing). `CCCI_APP_URL_TEMPLATE` points
//! the floor at it; every fixture run has `CCCI_FLOOR=off` but these.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// A stand-in app on 127.0.0.1: answers every request with `status` and
/// sends each request line on the returned channel.
fn serve(status: u16) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} Stand-in\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tx.send(first.trim_end().to_string());
        }
    });
    (port, rx)
}

/// A port on 127.0.0.1 nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes the CI repository's ccci.toml of the example recipe.
fn settings(f: &Fixture, text: &str) {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ccci.toml"), text).unwrap();
}

/// `run --pr 1 ARGS` with the floor on (the fixture's CCCI_FLOOR removed)
/// and the app URL at 127.0.0.1:PORT.
fn floor_run(f: &Fixture, run_id: &str, port: u16, args: &[&str]) -> std::process::Command {
    let mut all = vec!["--pr", "1"];
    all.extend_from_slice(args);
    let mut c = f.run_cmd(&all);
    c.env_remove("CCCI_FLOOR")
        .env("CCCI_RUN_ID", run_id)
        .env("CCCI_APP_URL_TEMPLATE", format!("http://127.0.0.1:{port}/"));
    c
}

fn junit(f: &Fixture, run_id: &str) -> String {
    std::fs::read_to_string(f.state.join(format!("runs/{run_id}/report/junit.xml"))).unwrap()
}

fn report_dir(f: &Fixture, run_id: &str, tier: &str) -> PathBuf {
    f.state.join(format!("runs/{run_id}/report/{tier}"))
}

/// The floor's testcase in a tier's report.json.
fn floor_case(f: &Fixture, run_id: &str, tier: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(report_dir(f, run_id, tier).join("report.json")).unwrap();
    let rep: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = rep["tests"][0].clone();
    assert_eq!(first["name"], "floor", "{rep}");
    first
}

#[test]
fn a_recipe_with_no_tests_of_its_own_is_green_by_the_floor_in_every_tier() {
    let f = Fixture::new();
    let (port, hits) = serve(200);
    // `--tag` selects none of the example's tests: the floor alone.
    let out = floor_run(&f, "flooronly", port, &["--tag", "no-such-tag"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = f.record("flooronly");
    let tiers: Vec<&str> = rec["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["install", "upgrade", "backup", "restore"], "{rec}");
    for t in rec["tests"].as_array().unwrap() {
        assert_eq!(t["floor"], "passed", "{rec}");
        assert_eq!(t["passed"], 1, "{rec}");
        assert_eq!(t["own"], 0, "{rec}");
        let tier = t["tier"].as_str().unwrap();
        assert_eq!(floor_case(&f, "flooronly", tier)["result"], "passed");
    }
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert_eq!(summary.matches("floor only").count(), 4, "{summary}");
    let junit = junit(&f, "flooronly");
    assert_eq!(junit.matches("name=\"floor\"").count(), 4, "{junit}");
    // The app was asked for CCCI_APP_URL, once per tier at least.
    let asked: Vec<String> = hits.try_iter().collect();
    assert!(asked.len() >= 4, "{asked:?}");
    assert!(asked.iter().all(|r| r == "GET / HTTP/1.1"), "{asked:?}");

    // Without the floor the same run proves nothing: no tests, no green.
    let out = floor_run(&f, "nofloor", port, &["--tag", "no-such-tag"])
        .env("CCCI_FLOOR", "off")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    assert!(log.contains("no test ran in any tier"), "{log}");
}

#[test]
fn an_app_that_never_answers_is_red_before_its_tests_with_the_floors_reason() {
    let f = Fixture::new();
    settings(&f, "ready_timeout = 2\n");
    let port = closed_port();
    let out = floor_run(&f, "floordead", port, &["--quick"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let rec = f.record("floordead");
    assert_eq!(rec["verdict"], "failed", "{rec}");
    assert_eq!(rec["failed_phase"], "test-install", "{rec}");
    assert_eq!(rec["tests"][0]["floor"], "failed", "{rec}");
    assert_eq!(rec["tests"][0]["failed"], 1, "{rec}");
    let case = floor_case(&f, "floordead", "install");
    assert_eq!(case["result"], "failed");
    let reason = case["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("GET http://127.0.0.1:{port}/")) && reason.contains("no answer"),
        "{reason}"
    );
    assert!(
        reason.to_lowercase().contains("connection refused")
            || reason.contains("ConnectionFailed")
            || reason.contains("connection failed"),
        "{reason}"
    );
    // The recipe's own tests never started: skipped, saying why.
    let text = std::fs::read_to_string(report_dir(&f, "floordead", "install").join("report.json"))
        .unwrap();
    let rep: serde_json::Value = serde_json::from_str(&text).unwrap();
    let own: Vec<&serde_json::Value> = rep["tests"].as_array().unwrap().iter().skip(1).collect();
    assert!(!own.is_empty(), "{rep}");
    for t in own {
        assert_eq!(t["result"], "skipped", "{rep}");
        assert!(
            t["reason"].as_str().unwrap().contains("`floor` failed"),
            "{rep}"
        );
    }
    assert_eq!(rep["stopped"], "floor", "{rep}");
    let junit = junit(&f, "floordead");
    assert!(junit.contains("floor: GET http://127.0.0.1"), "{junit}");
    assert!(log.contains("install tier: floor failed"), "{log}");
    // The record and the summary carry the floor's reason.
    let why = reason.strip_prefix("floor: ").unwrap();
    assert_eq!(rec["tests"][0]["floor_reason"], why, "{rec}");
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert!(
        summary.contains(&format!("floor failed, install: {why}")),
        "{summary}"
    );
    // Torn down as ever.
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn floor_off_by_ccci_floor_or_the_recipes_setting_runs_the_tests_alone() {
    let f = Fixture::new();
    let port = closed_port();
    let out = floor_run(&f, "offenv", port, &["--quick"])
        .env("CCCI_FLOOR", "off")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = f.record("offenv");
    assert_eq!(rec["tests"][0]["floor"], "off (CCCI_FLOOR=off)", "{rec}");
    let text =
        std::fs::read_to_string(report_dir(&f, "offenv", "install").join("report.json")).unwrap();
    assert!(!text.contains("\"name\": \"floor\""), "{text}");

    settings(&f, "floor = false\nready_timeout = 2\n");
    let out = floor_run(&f, "offtoml", port, &["--quick"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = f.record("offtoml");
    let floor = rec["tests"][0]["floor"].as_str().unwrap();
    assert!(floor.starts_with("off (floor = false ("), "{rec}");
    assert!(floor.contains("ci-tests/example/ccci.toml:1"), "{rec}");

    // CCCI_FLOOR=on wins over the recipe's `floor = false`.
    let out = floor_run(&f, "onwins", port, &["--quick"])
        .env("CCCI_FLOOR", "on")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    assert_eq!(f.record("onwins")["tests"][0]["floor"], "failed");
}

#[test]
fn the_ready_probe_asks_a_tcp_port_or_a_path_for_its_statuses() {
    let f = Fixture::new();
    let (port, _hits) = serve(200);
    // tcp: the URL's port is closed, the probe's answers.
    settings(&f, &format!("ready_probe = \"tcp {port}\"\n"));
    let out = floor_run(&f, "probetcp", closed_port(), &["--quick"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(
        floor_case(&f, "probetcp", "install")["path"],
        format!("TCP connect to 127.0.0.1:{port}")
    );

    // http PATH STATUS: 418 is what this app answers when healthy; the
    // path goes to the app URL's origin (its own path is dropped).
    let (teapot, hits) = serve(418);
    settings(&f, "ready_probe = \"http /health 418\"\n");
    let mut c = floor_run(&f, "probe418", teapot, &["--quick"]);
    c.env(
        "CCCI_APP_URL_TEMPLATE",
        format!("http://127.0.0.1:{teapot}/app/"),
    );
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let asked: Vec<String> = hits.try_iter().collect();
    assert_eq!(
        asked.first().map(String::as_str),
        Some("GET /health HTTP/1.1")
    );

    // Without the status the probe expects 2xx or 3xx: 418 is red, and
    // the reason is the last status.
    settings(&f, "ready_probe = \"http /health\"\nready_timeout = 2\n");
    let out = floor_run(&f, "probe2xx", teapot, &["--quick"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let reason = floor_case(&f, "probe2xx", "install")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("last answer: HTTP 418"), "{reason}");
}

#[test]
fn an_unresolvable_host_says_how_to_point_the_template_or_turn_the_floor_off() {
    let f = Fixture::new();
    settings(&f, "ready_timeout = 2\n");
    let mut c = floor_run(&f, "nodns", 1, &["--quick"]);
    // `.invalid` never resolves (RFC 2606).
    c.env("CCCI_APP_URL_TEMPLATE", "https://{domain}.invalid/");
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let reason = floor_case(&f, "nodns", "install")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    for want in [
        "does not resolve",
        "CCCI_APP_URL_TEMPLATE",
        "CCCI_FLOOR=off",
        "floor = false",
    ] {
        assert!(reason.contains(want), "{want}: {reason}");
    }
}

#[test]
fn a_bad_ccci_floor_exits_2_before_any_abra_call() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "badfloor")
        .env("CCCI_FLOOR", "maybe")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{log}");
    assert!(
        log.contains("CCCI_FLOOR") && log.contains("\"maybe\""),
        "{log}"
    );
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    assert!(!f.state.join("runs/badfloor").exists());
}

#[test]
fn a_cancelled_run_does_not_sit_in_the_floor() {
    let f = Fixture::new();
    settings(&f, "ready_timeout = \"10m\"\n");
    // The app answers 503: the floor retries for ten minutes.
    let (port, hits) = serve(503);
    let mut child = floor_run(&f, "floorcancel", port, &["--quick"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // In the floor: the app has been asked.
    let first = hits.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(first, "GET / HTTP/1.1");
    let sent = Instant::now();
    send(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let rc = wait_exit(&mut child);
    assert_eq!(rc, 143);
    // Out of the floor at once; the rest is the teardown.
    let rec = f.record("floorcancel");
    assert_eq!(rec["verdict"], "cancelled", "{rec}");
    assert_eq!(rec["failed_phase"], "test-install", "{rec}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "{:?}",
        sent.elapsed()
    );
}
