//! The `run` lifecycle end to end: the real binary, real git, the stand-in
//! abra and docker, the bundled example recipe.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::*;

const PR_DOMAIN: &str = "example-pr1.ci.localhost";

fn steps_for(f: &Fixture, domain: &str) -> Vec<String> {
    f.ok_steps()
        .into_iter()
        .filter(|(_, d)| d == domain)
        .map(|(s, _)| s)
        .collect()
}

fn assert_clean(f: &Fixture, run_id: &str, domain: &str) {
    assert!(
        f.leftovers().is_empty(),
        "left on the fake swarm: {:?}",
        f.leftovers()
    );
    assert!(
        f.lock_free("apps", domain),
        "app lock of {domain} still held"
    );
    assert!(
        f.lock_free("runs", run_id),
        "run lock of {run_id} still held"
    );
    assert!(f.tree_gone(run_id), "run tree of {run_id} still there");
    assert!(
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty(),
        "processes of the run are left"
    );
}

#[test]
fn green_run_deploys_base_upgrades_to_pr_head_backs_up_and_tears_down() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "green")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        [
            "new",
            "deploy",
            "deploy-chaos",
            "backup",
            "restore",
            "undeploy",
            "rm"
        ],
        "{log}"
    );
    // The install tier deployed the latest release before the PR head.
    let deploy = f
        .calls()
        .into_iter()
        .find(|c| c["step"] == "deploy" && c["result"] == "ok")
        .unwrap();
    assert!(deploy["argv"].to_string().contains("1.1.0+1.0"), "{deploy}");
    // The example's label is `backupbot.backup=${ENABLE_BACKUPS:-true}`, as
    // real recipes write it, and its env file leaves ENABLE_BACKUPS unset:
    // the raw text is not `true`, the label the engine holds is.
    assert!(
        log.contains(
            "backup/restore tier: backupbot.backup=true on deployed service example-pr1_ci_localhost_app"
        ),
        "{log}"
    );
    let rec = f.record("green");
    assert_eq!(rec["exit_code"], 0);
    assert_eq!(rec["phase"], "finished");
    assert_eq!(rec["base_version"], "1.1.0+1.0");
    assert_eq!(
        rec["tiers"],
        serde_json::json!(["install", "upgrade", "backup", "restore"])
    );
    assert!(f.state.join("runs/green/run.log").exists());
    assert!(
        f.state
            .join("runs/green/report/install/report.json")
            .exists(),
        "report kept after the tree"
    );
    assert_clean(&f, "green", PR_DOMAIN);
}

#[test]
fn backups_off_in_the_apps_env_file_skip_the_backup_tier_and_the_log_says_why() {
    // A recipe whose .env.sample ships ENABLE_BACKUPS=false: `app new`
    // copies it into the app's env file, so the deployed label is false.
    let f = Fixture::with_recipe_args(&["--sample-env", "ENABLE_BACKUPS=false"]);
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "nobackup")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        ["new", "deploy", "deploy-chaos", "undeploy", "rm"],
        "{log}"
    );
    assert!(
        log.contains(
            "backup/restore tier skipped: backupbot.backup=false on deployed service example-pr1_ci_localhost_app"
        ),
        "{log}"
    );
    let rec = f.record("nobackup");
    assert_eq!(rec["tiers"], serde_json::json!(["install", "upgrade"]));
    assert_eq!(rec["tiers_skipped"][0]["tier"], "backup");
    assert!(
        rec["tiers_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("backupbot.backup=false on deployed service"),
        "{rec}"
    );
    assert!(
        log.contains("tier backup not run: backup/restore tier skipped"),
        "{log}"
    );
    assert_clean(&f, "nobackup", PR_DOMAIN);
}

#[test]
fn red_run_exits_1_and_still_tears_down() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "red")
        .env("CCCI_EXAMPLE_FAIL", "upgrade")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        ["new", "deploy", "deploy-chaos", "undeploy", "rm"]
    );
    assert_eq!(f.record("red")["exit_code"], 1);
    assert_clean(&f, "red", PR_DOMAIN);
}

#[test]
fn quick_lane_deploys_the_ref_once() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "quick")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        steps_for(&f, PR_DOMAIN),
        ["new", "deploy-chaos", "undeploy", "rm"]
    );
    assert_clean(&f, "quick", PR_DOMAIN);
}

#[test]
fn wrong_or_dirty_chaos_version_fails_the_upgrade_tier() {
    for label in ["deadbeef", "DIRTY"] {
        let f = Fixture::new();
        // A dirty label is the real HEAD prefix plus `+U`: compute it from the PR head.
        let label = if label == "DIRTY" {
            let sha = std::process::Command::new("git")
                .arg("-C")
                .arg(f.tmp.path().join("recipe/upstream.git"))
                .args(["rev-parse", "refs/pull/1/head"])
                .output()
                .unwrap();
            format!("{}+U", &String::from_utf8_lossy(&sha.stdout)[..8])
        } else {
            label.to_string()
        };
        let out = f
            .run_cmd(&["--pr", "1"])
            .env("CCCI_RUN_ID", "chaos")
            .env("CCCI_FAKE_ABRA_CHAOS_LABEL", &label)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 1, "label {label}: {log}");
        assert!(log.contains("chaos-version"), "{log}");
        assert_clean(&f, "chaos", PR_DOMAIN);
    }
}

#[test]
fn bad_input_exits_2_and_touches_nothing() {
    let f = Fixture::new();
    let long = "a".repeat(64);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (vec!["--recipe", "../x"], vec![]),
        (vec!["--recipe", "a/b"], vec![]),
        (vec!["--recipe", "a b"], vec![]),
        (vec!["--recipe", "a;touch /tmp/x"], vec![]),
        (vec!["--recipe", "Example"], vec![]),
        (vec!["--recipe", &long], vec![]),
        (vec!["--recipe", ""], vec![]),
        (vec!["--recipe", "exämple"], vec![]),
        (vec!["--recipe", "example", "--domain", "../../etc"], vec![]),
        (vec!["--recipe", "example", "--domain", "a b.c"], vec![]),
        (vec!["--recipe", "example", "--ref", "a..b"], vec![]),
        (vec!["--recipe", "example", "--ref", "x`id`"], vec![]),
        (vec!["--recipe", "example", "--pr", "1/2"], vec![]),
        (vec!["--recipe", "example", "--pr", "-1"], vec![]),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_RUN_ID", "../../x")],
        ),
        (vec!["--recipe", "example"], vec![("CCCI_RUN_ID", "Run")]),
        (
            vec!["--recipe", "example"],
            vec![("DRONE_PULL_REQUEST", "x")],
        ),
        (
            vec!["--recipe", "example", "--timeout", "5 minutes"],
            vec![],
        ),
        // The lock settings: a bad backend, host id or lease is refused
        // before any lock (file or swarm object) exists.
        (
            vec!["--recipe", "example"],
            vec![("CCCI_LOCK_BACKEND", "etcd")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_LOCK_BACKEND", "swarm"), ("CCCI_HOST_ID", "a/b")],
        ),
        (
            vec!["--recipe", "example"],
            vec![
                ("CCCI_LOCK_BACKEND", "swarm"),
                ("CCCI_LOCK_LEASE", "10s"),
                ("CCCI_LOCK_RENEW", "6s"),
            ],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_LOCK_MARGIN", "soon")],
        ),
        // Every flag of `run`, the test options included: refused before
        // `app new`, not after a deploy and a convergence wait.
        (vec!["--recipe", "example", "--timeout", "0"], vec![]),
        (
            vec!["--recipe", "example", "--teardown-timeout", "0"],
            vec![],
        ),
        (
            vec!["--recipe", "example", "--converge-timeout", "0s"],
            vec![],
        ),
        (vec!["--recipe", "example", "--grace", "x"], vec![]),
        (vec!["--recipe", "example", "--base", "../x"], vec![]),
        (vec!["--recipe", "example", "--server", "a/b"], vec![]),
        (
            vec!["--recipe", "example", "--level", "bogus", "--quick"],
            vec![],
        ),
        (vec!["--recipe", "example", "--test-nproc", "0"], vec![]),
        (vec!["--recipe", "example", "--test-nofile", "0"], vec![]),
        (vec!["--recipe", "example", "--test-memory", "lots"], vec![]),
        (vec!["--recipe", "example", "--test-timeout", "0"], vec![]),
        (vec!["--recipe", "example", "--test-cpu", "0"], vec![]),
        // What a pull request's output may leave (SPEC section 1).
        (
            vec!["--recipe", "example", "--test-output-limit", "1"],
            vec![],
        ),
        (
            vec!["--recipe", "example", "--test-output-limit", "2T"],
            vec![],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_TEST_OUTPUT_LIMIT", "1MB")],
        ),
        (vec!["--recipe", "example", "--log-limit", "1K"], vec![]),
        (vec!["--recipe", "example"], vec![("CCCI_LOG_LIMIT", "big")]),
        (
            vec![
                "--recipe",
                "example",
                "--cpu-limit",
                "150",
                "--self-protect",
            ],
            vec![],
        ),
        (vec!["--recipe", "example", "--mem-limit", "150"], vec![]),
        (
            vec!["--recipe", "example", "--max-workers", "0", "--parallel"],
            vec![],
        ),
        (vec!["--recipe", "example", "--tag", "a b"], vec![]),
        (vec!["--recipe", "example", "--no-tests", "maybe"], vec![]),
        (vec!["--recipe", "example", "--bogus-flag"], vec![]),
        // The variables `run` reads.
        (vec!["--recipe", "example"], vec![("CCCI_RUN_APP_RE", "(")]),
        (vec!["--recipe", "example"], vec![("CCCI_RUN_APP_RE", ".*")]),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_RUN_APP_RE", "^example-.*|prod$")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_RUN_APP_RE", "(?m)^x$")],
        ),
        (
            vec!["--recipe", "example"],
            vec![
                ("CCCI_RUN_APP_RE", "^.*$"),
                ("CCCI_PROTECTED_APPS", "shop.example.org"),
            ],
        ),
        (vec!["--recipe", "example"], vec![("CCCI_JANITOR", "maybe")]),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_LOCK_MAX_AGE", "forever")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_RECORD_RETENTION", "1 week")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_SKIP_FETCH", "perhaps")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_DOMAIN_SUFFIX", "-bad-.x")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_TEST_LEVEL", "bogus")],
        ),
        (vec!["--recipe", "example"], vec![("CCCI_QUICK", "maybe")]),
        // Not one of the switch words, though clap's boolish parser took it.
        (vec!["--recipe", "example"], vec![("CCCI_QUICK", "y")]),
        (
            vec!["--recipe", "example"],
            vec![("DRONE_BUILD_NUMBER", "12a")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("DRONE_BUILD_NUMBER", "12")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("DRONE_BUILD_NUMBER", "12"), ("DRONE_REPO", "a b/c")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("DRONE_COMMIT_SHA", "abc;rm")],
        ),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_STATE_DIR", "state")],
        ),
        // A misspelt variable would leave the default its operator meant
        // to change: refused, naming it and what it is close to.
        (
            vec!["--recipe", "example"],
            vec![("CCCI_TEST_TIMOUT", "30m")],
        ),
        (vec!["--recipe", "example"], vec![("CCCI_RETRIE", "2")]),
        (
            vec!["--recipe", "example"],
            vec![("CCCI_LOCK_BACKEN", "swarm")],
        ),
    ];
    for (args, env) in cases {
        let mut c = f.cmd();
        c.arg("run").args(&args);
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 2, "{args:?} {env:?}: {err}");
        // The message names the field: the flag, or the variable.
        let needle = match env.last().copied() {
            Some(("CCCI_TEST_LEVEL", _)) => "level",
            Some(("CCCI_QUICK", _)) => "quick",
            Some(("CCCI_TEST_OUTPUT_LIMIT", _)) => "test-output-limit",
            Some(("CCCI_LOG_LIMIT", _)) => "log-limit",
            Some(("CCCI_PROTECTED_APPS", _)) => "CCCI_RUN_APP_RE",
            Some(("DRONE_BUILD_NUMBER", "12")) => "DRONE_REPO",
            Some(("CCCI_RUN_ID", _)) => "run id",
            Some(("CCCI_TEST_TIMOUT", _)) => "CCCI_TEST_TIMOUT (did you mean CCCI_TEST_TIMEOUT?)",
            Some(("CCCI_RETRIE", _)) => "CCCI_RETRIE (did you mean CCCI_RETRIES?)",
            Some((k, _)) => k,
            None => args
                .iter()
                .skip(2)
                .find(|a| a.starts_with("--"))
                .map(|a| a.trim_start_matches("--"))
                .unwrap_or("recipe"),
        };
        assert!(
            err.contains(needle),
            "{args:?} {env:?}: the message does not name {needle}: {err}"
        );
    }
    let created: Vec<_> = std::fs::read_dir(&f.state).unwrap().collect();
    assert!(
        created.is_empty(),
        "bad input created {created:?} under the state dir"
    );
    assert!(f.calls().is_empty(), "bad input reached the stand-ins");
}

#[test]
fn a_ccci_variable_no_version_reads_is_a_warning_and_the_run_goes_on() {
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--quick"])
        .env("CCCI_SITE_NOTE", "set by another tool")
        .env("CCCI_FAKE_SOMETHING", "the stand-ins' own")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(
        err.contains("warning: CCCI_SITE_NOTE is set but cc-ci-run does not read it"),
        "{err}"
    );
    assert!(
        !err.contains("CCCI_FAKE_SOMETHING"),
        "reserved for the stand-ins: {err}"
    );
}

#[test]
fn an_unsafe_state_directory_is_exit_2_saying_what_to_fix() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    // Relative: it would land in the Drone workspace (the cwd).
    let cwd = f.tmp.path().join("workspace");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = f
        .run_cmd(&["--quick"])
        .current_dir(&cwd)
        .env("CCCI_STATE_DIR", "ccci-state")
        .env("CCCI_FAKE_LOG_READS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{err}");
    assert!(err.contains("absolute"), "{err}");
    assert!(
        std::fs::read_dir(&cwd).unwrap().next().is_none(),
        "wrote into the workspace"
    );

    // World-writable and owned by another user: anyone could plant locks.
    let shared = f.tmp.path().join("shared-state");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let other_uid = nix::unistd::geteuid().as_raw() + 4242;
    let chowned =
        nix::unistd::chown(&shared, Some(nix::unistd::Uid::from_raw(other_uid)), None).is_ok();
    let out = f
        .run_cmd(&["--quick"])
        .env("CCCI_STATE_DIR", &shared)
        .env("CCCI_FAKE_LOG_READS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{err}");
    if chowned {
        assert!(err.contains(&format!("uid {other_uid}")), "{err}");
    } else {
        assert!(err.contains("chmod go-w"), "{err}");
    }
    assert!(
        std::fs::read_dir(&shared).unwrap().next().is_none(),
        "wrote into {}",
        shared.display()
    );
    // Ours, but group-writable.
    let grp = f.tmp.path().join("group-state");
    std::fs::create_dir_all(&grp).unwrap();
    std::fs::set_permissions(&grp, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = f
        .run_cmd(&["--quick"])
        .env("CCCI_STATE_DIR", &grp)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    assert!(std::fs::read_dir(&grp).unwrap().next().is_none());
    assert!(
        f.calls().is_empty(),
        "bad input reached the stand-ins: {:?}",
        f.calls()
    );
}

#[test]
fn missing_abra_home_under_drone_is_exit_2_naming_the_variable() {
    let f = Fixture::new();
    let home = f.tmp.path().join("drone-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = f
        .run_cmd(&["--pr", "1"])
        .env_remove("CCCI_ABRA_HOME")
        .env("HOME", &home)
        .env("DRONE_BUILD_NUMBER", "5")
        .env("DRONE_REPO", "coop-cloud/example")
        .output()
        .unwrap();
    assert_eq!(code(out.status), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CCCI_ABRA_HOME"));
    assert!(std::fs::read_dir(&f.state).unwrap().next().is_none());
}

#[test]
fn duplicate_run_id_exits_75_naming_the_holder() {
    let f = Fixture::new();
    let mut first = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "dup")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&f.ready.join("test-install"));
    let out = f
        .run_cmd(&["--pr", "2"])
        .env("CCCI_RUN_ID", "dup")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 75, "{log}");
    assert!(log.contains("pid"), "{log}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(code(first.wait().unwrap()), 143);
    assert_clean(&f, "dup", PR_DOMAIN);
    assert_eq!(
        steps_for(&f, "example-pr2.ci.localhost"),
        Vec::<String>::new(),
        "the duplicate deployed nothing"
    );
}

#[test]
fn a_signal_during_teardown_does_not_abort_it() {
    let f = Fixture::new();
    let mut run = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "td")
        .env("CCCI_FAKE_ABRA_HANG", "rm")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Teardown is under way once the stand-in's rm hangs; signal it there.
    let hung = f.wait_hang("rm");
    let wrapper = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(wrapper, nix::sys::signal::Signal::SIGTERM).unwrap();
    nix::sys::signal::kill(wrapper, nix::sys::signal::Signal::SIGINT).unwrap();
    // The stand-in stays hung until the teardown bound; the run waits for it
    // rather than aborting: kill the hung rm so teardown's retry can finish.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        alive(hung),
        "the hung teardown step must not be aborted by the signal"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hung),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let c = code(run.wait().unwrap());
    // rm was killed, so teardown failed: the verdict (0) becomes 4, never 143.
    assert_eq!(c, 4);
    assert_eq!(f.record("td")["exit_code"], 4);
    assert!(f.lock_free("apps", PR_DOMAIN));
    assert!(f.tree_gone("td"));
}

/// A CI test of the recipe (install tier) that starts a container with the
/// run's label and then hangs; returns the file it touches once the
/// container runs.
fn container_then_hang(f: &Fixture) -> std::path::PathBuf {
    let ci = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&ci).unwrap();
    let started = f.ready.join("container-started");
    let test = script(
        &ci,
        "05-container.sh",
        &format!(
            "#!/bin/sh\n# tier: install\n# priority: 100\n\
             docker run -d --label \"$CCCI_CONTAINER_LABEL\" img sleep 300 > /dev/null || exit 9\n\
             touch '{}'\nexec sleep 300\n",
            started.display()
        ),
    );
    std::fs::set_permissions(&test, std::fs::Permissions::from_mode(0o755)).unwrap();
    started
}

/// The labelled containers of a cancelled run's tests (SPEC section 6,
/// "removed on every path") go with its teardown: a CI test of the recipe
/// starts one and hangs; the run is stopped (the Drone step's `sh`
/// SIGKILLed, or SIGINT to the harness); afterwards the container is gone,
/// the exit code is the signal's, the teardown ran once, and the container
/// removal came after the teardown's start and its undeploy (issue #18: the
/// runner no longer makes the teardown wait for its `docker ps`), within
/// the teardown phase (before the app lock's release).
#[test]
fn a_cancelled_runs_test_containers_are_removed_with_its_teardown_and_the_exit_code_stays() {
    for (stop, want) in [("kill-sh", 143), ("sigint", 130)] {
        let f = Fixture::new();
        let started = container_then_hang(&f);
        let run_id = format!("ctr-{stop}");
        let mut c = f.run_cmd(&["--pr", "1", "--quick"]);
        c.env("CCCI_RUN_ID", &run_id)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let labelled = || {
            let out = std::process::Command::new(fake_dir().join("docker"))
                .env("CCCI_FAKE_STATE", &f.fake)
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label=cc-ci.run={run_id}"))
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .count()
        };
        let code_seen = if stop == "kill-sh" {
            let mut sh = spawn_as_drone_step(&c, f.tmp.path());
            wait_for_file(&started);
            assert_eq!(labelled(), 1, "the test's container runs");
            kill(Pid::from_raw(sh.id() as i32), Signal::SIGKILL).unwrap();
            sh.wait().unwrap();
            wait_until("the run record's exit code", || {
                std::fs::read_to_string(f.state.join("runs").join(&run_id).join("run.json"))
                    .is_ok_and(|t| t.contains("\"finished\": \""))
            });
            wait_until("no process of the run", || {
                procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
            });
            f.record(&run_id)["exit_code"].as_i64().unwrap_or(-1) as i32
        } else {
            let mut run = c.spawn().unwrap();
            wait_for_file(&started);
            assert_eq!(labelled(), 1, "the test's container runs");
            let harness = f.record(&run_id)["pid"].as_i64().unwrap() as i32;
            kill(Pid::from_raw(harness), Signal::SIGINT).unwrap();
            code(run.wait().unwrap())
        };
        assert_eq!(code_seen, want, "{stop}: exit code");
        assert_eq!(f.record(&run_id)["exit_code"], want, "{stop}: record");
        assert_eq!(f.record(&run_id)["verdict"], "cancelled", "{stop}");
        assert_eq!(labelled(), 0, "{stop}: the test's container is removed");
        assert_clean(&f, &run_id, PR_DOMAIN);
        let log =
            std::fs::read_to_string(f.state.join("runs").join(&run_id).join("run.log")).unwrap();
        let at = |needle: &str| {
            log.find(needle)
                .unwrap_or_else(|| panic!("{stop}: no `{needle}` in the log:\n{log}"))
        };
        assert_eq!(
            log.matches(&format!("teardown of {PR_DOMAIN} (stack"))
                .count(),
            1,
            "{stop}: one teardown"
        );
        let undeploys = steps_for(&f, PR_DOMAIN)
            .iter()
            .filter(|s| *s == "undeploy")
            .count();
        assert_eq!(undeploys, 1, "{stop}: one undeploy");
        let removing = at(&format!(
            "removing 1 container(s) labelled cc-ci.run={run_id}"
        ));
        assert!(
            at("phase: teardown") < at("$ abra app undeploy") && at("$ abra app undeploy") < removing,
            "{stop}: the teardown starts, and issues the undeploy, before the containers are removed:\n{log}"
        );
        assert!(
            removing < at("phase: cleanup"),
            "{stop}: the containers are removed within the teardown phase:\n{log}"
        );
    }
}

/// After a cancel the teardown removes the tests' containers, and a docker
/// that hangs there is bounded by the teardown's bound, not by the test
/// runner's own 60 s per call: the run ends within its teardown timeout
/// (the wrapper's allowance is counted from it), says the cleanup did not
/// finish, and still tears the app down.
#[test]
fn a_hung_container_cleanup_after_a_cancel_ends_with_the_teardown_bound() {
    let f = Fixture::new();
    let started = container_then_hang(&f);
    let run_id = "ctr-hang";
    let mut run = f
        .run_cmd(&["--pr", "1", "--quick", "--teardown-timeout", "5s"])
        .env("CCCI_RUN_ID", run_id)
        // Only the listing of this run's test containers hangs.
        .env(
            "CCCI_FAKE_ABRA_HANG",
            format!("docker-ps@cc-ci.run={run_id}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&started);
    let t0 = std::time::Instant::now();
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(code(run.wait().unwrap()), 143);
    let took = t0.elapsed();
    let log = std::fs::read_to_string(f.state.join("runs").join(run_id).join("run.log")).unwrap();
    // The runner's own bound is 60 s a call: far beyond 5 s and the grace.
    assert!(
        took < std::time::Duration::from_secs(40),
        "the run took {took:?} after the cancel:\n{log}"
    );
    assert!(
        log.contains("container cleanup for label cc-ci.run=ctr-hang failed (not fatal)")
            && log.contains("did not answer within the call's bound"),
        "{log}"
    );
    assert!(
        log.contains(&format!("teardown of {PR_DOMAIN} complete")),
        "the app is torn down all the same:\n{log}"
    );
    wait_until("no process of the run", || {
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
    });
}

/// Per-domain hold intervals from the stand-ins' call log: for each
/// (domain, run id), the first and last timestamp of that run's calls.
fn hold_intervals(f: &Fixture) -> std::collections::BTreeMap<(String, String), (u64, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for c in f.calls() {
        let (Some(d), Some(r), Some(ts)) =
            (c["domain"].as_str(), c["run_id"].as_str(), c["ts"].as_u64())
        else {
            continue;
        };
        if d.is_empty() || r.is_empty() {
            continue;
        }
        let e = m.entry((d.to_string(), r.to_string())).or_insert((ts, ts));
        e.0 = e.0.min(ts);
        e.1 = e.1.max(ts);
    }
    m
}

#[test]
fn sixteen_concurrent_runs_over_four_domains_never_share_a_domain() {
    let f = Fixture::new();
    let children: Vec<_> = (0..16)
        .map(|i| {
            let domain = format!("example-b{}.ci.localhost", i % 4);
            f.run_cmd(&["--pr", "1", "--quick", "--domain", &domain])
                .env("CCCI_RUN_ID", format!("c{i}"))
                .env("CCCI_JANITOR", "off")
                .env("CCCI_TIMEOUT", "10m")
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, mut c) in children.into_iter().enumerate() {
        assert_eq!(code(c.wait().unwrap()), 0, "run c{i}");
    }
    let intervals = hold_intervals(&f);
    for d in 0..4 {
        let domain = format!("example-b{d}.ci.localhost");
        let mut spans: Vec<(u64, u64, String)> = intervals
            .iter()
            .filter(|((dd, _), _)| *dd == domain)
            .map(|((_, r), (a, b))| (*a, *b, r.clone()))
            .collect();
        spans.sort();
        assert_eq!(spans.len(), 4, "{domain}: four runs deployed it: {spans:?}");
        for w in spans.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "{domain}: runs {} and {} overlapped: {spans:?}",
                w[0].2,
                w[1].2
            );
        }
        assert_eq!(
            steps_for(&f, &domain).iter().filter(|s| *s == "rm").count(),
            4
        );
    }
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn second_testme_for_the_same_pr_waits_visibly_then_deploys_after_teardown() {
    let f = Fixture::new();
    let mut first = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "first")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&f.ready.join("test-install"));
    let mut second = f
        .run_cmd(&["--pr", "1"])
        .env("CCCI_RUN_ID", "second")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = f.state.join("runs/second/run.log");
    wait_until("the second run says who holds the app lock", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("held by run first"))
    });
    assert!(
        !f.calls()
            .iter()
            .any(|c| c["run_id"] == "second" && c["step"] == "new"),
        "the second run deployed while the first held the domain"
    );
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(code(first.wait().unwrap()), 143);
    assert_eq!(code(second.wait().unwrap()), 0);
    let iv = hold_intervals(&f);
    let a = iv[&(PR_DOMAIN.to_string(), "first".to_string())];
    let b = iv[&(PR_DOMAIN.to_string(), "second".to_string())];
    assert!(
        a.1 < b.0,
        "the second run touched the app before the first's teardown ended"
    );
    assert_clean(&f, "second", PR_DOMAIN);
}

#[test]
fn manual_runs_get_their_own_trees_and_never_see_each_others_checkout() {
    let f = Fixture::new();
    let git = |dir: &std::path::Path, args: &[&str]| -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let upstream = f.tmp.path().join("recipe/upstream.git");
    let (ready_a, ready_b) = (f.tmp.path().join("ready-a"), f.tmp.path().join("ready-b"));
    std::fs::create_dir_all(&ready_a).unwrap();
    std::fs::create_dir_all(&ready_b).unwrap();
    let spawn = |args: &[&str], ready: &std::path::Path| {
        f.run_cmd(args)
            .env("CCCI_EXAMPLE_HANG", "install")
            .env("CCCI_EXAMPLE_READY_DIR", ready)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // A tests the pull request (installed at the latest release before it);
    // B tests the first release (no release before it: installed as is).
    let mut a = spawn(&["--pr", "1"], &ready_a);
    let mut b = spawn(&["--ref", "1.0.0+1.0"], &ready_b);
    wait_for_file(&ready_a.join("test-install"));
    wait_for_file(&ready_b.join("test-install"));
    let (ida, idb) = (format!("manual-{}", a.id()), format!("manual-{}", b.id()));
    assert_ne!(ida, idb);
    let checkout = |id: &str| f.state.join("runs").join(id).join("abra/recipes/example");
    assert_eq!(
        git(&checkout(&ida), &["rev-parse", "HEAD"]),
        git(&upstream, &["rev-parse", "1.1.0+1.0^{commit}"])
    );
    assert_eq!(
        git(&checkout(&idb), &["rev-parse", "HEAD"]),
        git(&upstream, &["rev-parse", "1.0.0+1.0^{commit}"])
    );
    // The canonical checkout was never moved: still on its branch, clean.
    let canonical = f.abra_home.join("recipes/example");
    assert_eq!(
        git(&canonical, &["symbolic-ref", "--short", "HEAD"]),
        "main"
    );
    assert_eq!(git(&canonical, &["status", "--porcelain"]), "");
    // The per-run checkouts share the canonical objects instead of copying history.
    assert!(checkout(&ida).join(".git/objects/info/alternates").exists());
    for c in [&mut a, &mut b] {
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(code(c.wait().unwrap()), 143);
    }
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn a_docker_query_that_fails_once_while_the_stack_goes_does_not_abort_teardown() {
    // The engine can fail a `docker ps` while it removes a container it was
    // listing; one failed poll of the teardown's wait must not leak the app.
    let f = Fixture::new();
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "psrace")
        .env("CCCI_FAKE_DOCKER_PS_RACE", "1")
        // Containers linger 3 s after the undeploy, so the teardown's first
        // `docker ps` meets them even on a loaded machine (at the default
        // 300 ms a slow first poll could miss the window).
        .env("CCCI_FAKE_ABRA_LINGER_MS", "3000")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        f.fake.join("ps-race.done").exists(),
        "the race was never injected: {log}"
    );
    assert_eq!(code(out.status), 0, "{log}");
    assert!(
        log.contains("querying what is left of stack") && log.contains("No such container"),
        "{log}"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

#[test]
fn pull_request_with_ref_tests_the_builds_commit_not_the_heads() {
    // Drone's pull-request step passes the build's commit: a push to the
    // pull request after the build started must not change what is tested.
    let f = Fixture::new();
    let upstream = f.tmp.path().join("recipe/upstream.git");
    let rev = |spec: &str| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&upstream)
            .args(["rev-parse", spec])
            .output()
            .unwrap();
        assert!(out.status.success(), "{spec}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let head = rev("refs/pull/1/head");
    let older = rev("refs/pull/1/head~1");
    assert_ne!(head, older);
    let out = f
        .run_cmd(&["--pr", "1", "--ref", &older, "--quick"])
        .env("CCCI_RUN_ID", "prref")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    let record = f.record("prref");
    assert_eq!(record["sha"], older.as_str(), "{record:#}");
    assert_eq!(record["pr"], 1);
    assert_clean(&f, "prref", PR_DOMAIN);
}

/// The record's tested version is the release tag on the commit under
/// test, annotated (as `abra recipe release` writes them) or lightweight
/// (as a maintainer's `git tag` does), and the base is the release before.
#[test]
fn the_tested_version_is_the_release_tag_on_the_commit_annotated_or_lightweight() {
    let f = Fixture::new();
    let upstream = f.tmp.path().join("recipe/upstream.git");
    // Each run green, its record read back.
    let record_of = |id: &str, args: &[&str]| {
        let out = f.run_cmd(args).env("CCCI_RUN_ID", id).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 0, "{log}");
        f.record(id)
    };
    // The annotated release 1.1.0+1.0, run as a ref of its own.
    let rec = record_of("annotated", &["--ref", "1.1.0+1.0", "--quick"]);
    assert_eq!(rec["tested_version"], "1.1.0+1.0");
    // A lightweight tag on the pull request's head, beside a tag that is
    // no release: the release is its version, 1.1.0+1.0 its base.
    for tag in ["1.2.0+1.0", "not-a-release"] {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&upstream)
            .args(["tag", tag, "refs/pull/1/head"])
            .status()
            .unwrap();
        assert!(ok.success(), "git tag {tag}");
    }
    let rec = record_of("lightweight", &["--pr", "1"]);
    assert_eq!(rec["tested_version"], "1.2.0+1.0");
    assert_eq!(rec["base_version"], "1.1.0+1.0");
}
