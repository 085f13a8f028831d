//! The floor (SPEC section 3 step 9) on the real swarm: the example
//! recipe's app, published in host mode on a port this test picks (the
//! recipe's `ccci.toml` writes it into the app's env file as `APP_PORT`),
//! asked by the floor at `http://127.0.0.1:PORT/`. With none of the
//! recipe's own tests selected, the floor alone decides the run.

use std::net::TcpListener;

use crate::engine::*;
use crate::support::*;

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The CI repository's settings of the example: the app's port, and
/// `extra` lines.
fn settings(host: &SwarmHost, port: u16, extra: &str) {
    let dir = host.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ccci.toml"),
        format!("{extra}\n[env]\nAPP_PORT = \"{port}\"\n"),
    )
    .unwrap();
}

fn assert_gone(host: &SwarmHost, domain: &str) {
    let stack = stack_of(domain);
    let out = std::process::Command::new("docker")
        .args([
            "service",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.stack.namespace={stack}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "services of {stack} left"
    );
    assert!(host.lock_free("apps", domain));
}

#[test]
fn a_recipe_with_no_tests_is_green_by_the_floor_on_the_swarm() {
    let d = domain_for("floor-green", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let port = free_port();
    settings(&host, port, "");
    let out = host
        .run_cmd(&d, &["--tag", "no-such-tag"])
        .env_remove("CCCI_FLOOR")
        .env("CCCI_RUN_ID", "floorgreen")
        .env("CCCI_APP_URL_TEMPLATE", format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let rec = host.record("floorgreen");
    let tests = rec["tests"].as_array().unwrap();
    let tiers: Vec<&str> = tests.iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["install", "upgrade", "backup", "restore"], "{rec}");
    for t in tests {
        assert_eq!(t["floor"], "passed", "{rec}");
        assert_eq!(t["own"], 0, "{rec}");
    }
    // The example's server answered the floor itself.
    assert!(log.contains("floor passed: HTTP 200 OK"), "{log}");
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert_eq!(summary.matches("floor only").count(), 4, "{summary}");
    assert_gone(&host, &d);
}

#[test]
fn the_same_recipe_whose_app_never_answers_is_red_with_the_floors_reason_on_the_swarm() {
    let d = domain_for("floor-red", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let port = free_port();
    // A CI-only overlay: the task runs (and converges) but its server
    // never listens.
    let dir = host.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.silent.yml"),
        "version: \"3.8\"\nservices:\n  app:\n    environment:\n      - START_DELAY_MS=3600000\n",
    )
    .unwrap();
    settings(
        &host,
        port,
        "ready_timeout = 5\noverlays = [\"compose.silent.yml\"]",
    );
    let out = host
        .run_cmd(&d, &["--quick", "--tag", "no-such-tag"])
        .env_remove("CCCI_FLOOR")
        .env("CCCI_RUN_ID", "floorred")
        .env("CCCI_APP_URL_TEMPLATE", format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let rec = host.record("floorred");
    assert_eq!(rec["verdict"], "failed", "{rec}");
    assert_eq!(rec["failed_phase"], "test-install", "{rec}");
    assert_eq!(rec["tests"][0]["floor"], "failed", "{rec}");
    let reason = log
        .lines()
        .find(|l| l.contains("install tier: floor failed:"))
        .unwrap_or_else(|| panic!("no floor failure in {log}"));
    assert!(
        reason.contains(&format!("GET http://127.0.0.1:{port}/")) && reason.contains("no answer"),
        "{reason}"
    );
    let junit = std::fs::read_to_string(host.state.join("runs/floorred/report/junit.xml")).unwrap();
    assert!(junit.contains("floor: GET http://127.0.0.1"), "{junit}");
    assert_gone(&host, &d);
}
