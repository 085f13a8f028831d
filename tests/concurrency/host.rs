//! Host-owned settings (SPEC section 7): with the host's settings file in
//! place, a step environment that changes a host-owned setting (as a
//! build's parameters would) is exit 2 naming it, before anything is
//! touched; the build-settable ones (`CCCI_QUICK`) run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{ccci, code, script, Fixture};

/// The host's settings file, as the NixOS module writes it
/// (`NAME='VALUE'`), with the fixture's host-owned values: the same ones
/// the runner's environment file gives every step.
fn host_file(f: &Fixture) -> PathBuf {
    let file = f.tmp.path().join("host.env");
    let ci_tests = f.tmp.path().join("ci-tests");
    let lines = [
        ("CCCI_STATE_DIR", f.state.as_path()),
        ("CCCI_ABRA_HOME", f.abra_home.as_path()),
        ("CCCI_CI_TESTS", ci_tests.as_path()),
        ("CCCI_GRACE", Path::new("2s")),
        ("CCCI_TEARDOWN_TIMEOUT", Path::new("20s")),
        ("CCCI_CONVERGE_TIMEOUT", Path::new("10s")),
        ("CCCI_FLOOR", Path::new("off")),
        ("DOCKER_HOST", Path::new(&f.engine.host)),
    ];
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{k}='{}'\n", v.display()))
        .collect();
    std::fs::write(&file, format!("# written by the NixOS module\n{text}")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    file
}

#[test]
fn a_step_environment_changing_a_host_owned_setting_is_refused_before_anything_is_touched() {
    let f = Fixture::new();
    let file = host_file(&f);
    let moved = f.tmp.path().join("x");
    let marker = f.tmp.path().join("evil-ran");
    let evil = script(
        f.tmp.path(),
        "evil",
        &format!("touch {}\nexit 0\n", marker.display()),
    );
    for (name, value) in [
        ("CCCI_STATE_DIR", moved.as_path()),
        ("CCCI_ABRA", evil.as_path()),
    ] {
        let out = f
            .cmd()
            .arg("--host-settings")
            .arg(&file)
            .args(["run", "--recipe", "example", "--pr", "1"])
            .env(name, value)
            .env("DRONE_REPO", "recipes/example")
            .env("DRONE_BUILD_NUMBER", "7")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 2, "{name}: {err}");
        assert!(
            err.contains(&format!("{name}={}", value.display())),
            "{err}"
        );
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(
            std::fs::read_dir(&f.state).unwrap().next().is_none(),
            "{name}: the state directory was written"
        );
        assert!(!moved.exists(), "{name}: the other state directory exists");
        assert!(!marker.exists(), "{name}: the build's abra ran");
        assert!(f.calls().is_empty(), "{name}: {:?}", f.calls());
    }

    // The same value as the host's is no change (the runner's environment
    // file repeats the host's settings); a build-settable one runs.
    let out = f
        .cmd()
        .arg("--host-settings")
        .arg(&file)
        .args(["run", "--recipe", "example", "--pr", "1"])
        .env("CCCI_STATE_DIR", &f.state)
        .env("CCCI_QUICK", "1")
        .env("DRONE_REPO", "recipes/example")
        .env("DRONE_BUILD_NUMBER", "8")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert_eq!(f.record("drone-recipes-example-8")["exit_code"], 0);
    let steps: Vec<String> = f.ok_steps().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        steps,
        ["new", "deploy-chaos", "undeploy", "rm"],
        "quick lane"
    );
}

#[test]
fn the_host_file_gives_a_bare_environment_the_hosts_settings() {
    // `sudo -u cc-ci-run cc-ci-run status`: sudo leaves no CCCI_* variable,
    // and the host's file still names the state directory.
    let f = Fixture::new();
    let file = host_file(&f);
    let out = f
        .cmd()
        .arg("--host-settings")
        .arg(&file)
        .args(["run", "--recipe", "example", "--pr", "1", "--quick"])
        .env_remove("CCCI_STATE_DIR")
        .env_remove("CCCI_ABRA_HOME")
        .env("DRONE_REPO", "recipes/example")
        .env("DRONE_BUILD_NUMBER", "9")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // sudo leaves no DOCKER_HOST either: the file names the engine.
    let status = ccci()
        .env_remove("DOCKER_HOST")
        .arg("--host-settings")
        .arg(&file)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(status.status), 0, "{status:?}");
    let runs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        runs.to_string().contains("drone-recipes-example-9"),
        "{runs:#}"
    );
    // Without the file the same bare command has no state directory.
    let bare = ccci()
        .args(["--state-dir", "/nonexistent/ccci-state", "status"])
        .output()
        .unwrap();
    assert_eq!(code(bare.status), 3);
}

#[test]
fn a_bad_host_file_is_exit_2_naming_it_and_the_rule() {
    let f = Fixture::new();
    let file = host_file(&f);
    let run = |file: &Path| {
        let out = f
            .cmd()
            .arg("--host-settings")
            .arg(file)
            .args(["run", "--recipe", "example", "--pr", "1"])
            .output()
            .unwrap();
        (
            code(out.status),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (c, err) = run(&file);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("chmod go-w"), "{err}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    for (bad, says) in [
        ("CCCI_STATE_DIRR='/x'\n", "CCCI_STATE_DIRR is not a setting"),
        ("CCCI_ABRA='/a'b'\n", "CCCI_ABRA: a quoted value"),
        ("CCCI_STATE_DIR='/y'\n", "CCCI_STATE_DIR is set twice"),
    ] {
        std::fs::write(&file, format!("{text}{bad}")).unwrap();
        let (c, err) = run(&file);
        assert_eq!(c, 2, "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
    let (c, err) = run(&f.tmp.path().join("no-such.env"));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("no-such.env"), "{err}");
    assert!(std::fs::read_dir(&f.state).unwrap().next().is_none());
    assert!(f.calls().is_empty(), "{:?}", f.calls());
}
