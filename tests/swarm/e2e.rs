//! The product on a real swarm: the README's manual run, the three tiers,
//! a red run, the fault matrix's main cells, concurrent runs with an
//! oracle, the janitor's reaping, and a crash-looping deploy.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::engine::*;
use crate::support::*;

fn steps(host: &SwarmHost, domain: &str) -> Vec<String> {
    host.calls()
        .into_iter()
        .filter(|c| c["result"] == "ok" && c["prog"] == "abra" && c["domain"] == domain)
        .map(|c| c["step"].as_str().unwrap().to_string())
        .collect()
}

fn assert_nothing_left(host: &SwarmHost, domain: &str, run_id: &str) {
    let left = leftovers(host, domain);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    assert!(host.lock_free("apps", domain), "app lock held");
    assert!(host.lock_free("runs", run_id), "run lock held");
    assert!(host.tree_gone(run_id), "run tree left");
}

/// A CI test (`CCCI_CI_TESTS/example/`) that prints the `backupbot.backup`
/// label the engine's app service carries, after the upgrade: what docker
/// made of `${ENABLE_BACKUPS:-true}`, to compare with the run's decision.
fn add_label_probe(host: &SwarmHost) {
    let dir = host.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let probe = script(
        &dir,
        "50-backup-label.sh",
        "#!/bin/sh\n# tier: upgrade\nset -eu\n\
         v=$(\"${CCCI_DOCKER:-docker}\" service inspect \"${CCCI_STACK}_app\" \\\n\
           --format '{{index .Spec.Labels \"backupbot.backup\"}}')\n\
         echo \"the engine's ${CCCI_STACK}_app carries backupbot.backup=$v\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn green_run_proves_the_three_tiers_on_the_swarm_and_leaves_nothing() {
    let d = domain_for("green", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    add_label_probe(&host);
    let out = host
        .run_cmd(&d, &[])
        .env("CCCI_RUN_ID", "green")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    // One app new, the base release, the chaos upgrade, backup, restore, one teardown.
    assert_eq!(
        steps(&host, &d),
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
    // The recipe's own tests checked over HTTP on 127.0.0.1: version 1.1.0
    // served after install, 2.0.0-pr after the upgrade, the marker written
    // in the volume read back after backup and restore.
    for needle in [
        "1.1.0",
        "2.0.0-pr",
        "the marker came back from backup and restore",
    ] {
        assert!(
            log.contains(needle),
            "the tests' output should mention {needle}: {log}"
        );
    }
    // The label is `${ENABLE_BACKUPS:-true}` with ENABLE_BACKUPS unset:
    // docker deployed `true`, and the run read it so.
    let stack = stack_of(&d);
    for needle in [
        format!("the engine's {stack}_app carries backupbot.backup=true"),
        format!("backup/restore tier: backupbot.backup=true on deployed service {stack}_app"),
    ] {
        assert!(log.contains(&needle), "want {needle:?} in: {log}");
    }
    let upstream = host.tmp.path().join("recipe/upstream.git");
    let sha = Command::new("git")
        .arg("-C")
        .arg(&upstream)
        .args(["rev-parse", "refs/pull/1/head"])
        .output()
        .unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_string();
    let label_line = log
        .lines()
        .find(|l| l.contains("chaos-version="))
        .expect("the upgrade tier logs the label");
    let label = label_line
        .rsplit("chaos-version=")
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert!(
        sha.starts_with(label) && !label.contains('+'),
        "label {label} vs {sha}"
    );
    assert_eq!(host.record("green")["exit_code"], 0);
    assert_nothing_left(&host, &d, "green");
}

#[test]
fn backups_off_in_the_apps_env_file_skip_the_backup_tier_on_the_swarm() {
    // .env.sample ships ENABLE_BACKUPS=false; `app new` copies it into the
    // app's env file, docker substitutes it into the label.
    let d = domain_for("nobackup", 0);
    let host =
        SwarmHost::with_recipe_args(vec![d.clone()], &["--sample-env", "ENABLE_BACKUPS=false"]);
    add_label_probe(&host);
    let out = host
        .run_cmd(&d, &[])
        .env("CCCI_RUN_ID", "nobackup")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert_eq!(
        steps(&host, &d),
        ["new", "deploy", "deploy-chaos", "undeploy", "rm"],
        "{log}"
    );
    let stack = stack_of(&d);
    for needle in [
        format!("the engine's {stack}_app carries backupbot.backup=false"),
        format!(
            "backup/restore tier skipped: backupbot.backup=false on deployed service {stack}_app"
        ),
    ] {
        assert!(log.contains(&needle), "want {needle:?} in: {log}");
    }
    assert_eq!(
        host.record("nobackup")["tiers"],
        serde_json::json!(["install", "upgrade"])
    );
    assert_nothing_left(&host, &d, "nobackup");
}

#[test]
fn red_run_exits_1_and_leaves_nothing() {
    let d = domain_for("red", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let out = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_RUN_ID", "red")
        .env("CCCI_EXAMPLE_FAIL", "install")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_left(&host, &d, "red");
}

#[test]
fn crash_looping_service_fails_the_deploy_tier_with_exit_3_and_is_torn_down() {
    let d = domain_for("crash", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let out = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_RUN_ID", "crash")
        .env("CCCI_FAKE_ABRA_CRASHLOOP", &d)
        // A bound the crash loop must not wait for: the third exit of the
        // current spec's tasks ends the wait (SPEC section 3 step 8).
        .env("CCCI_CONVERGE_TIMEOUT", "5m")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{log}");
    assert!(
        log.contains("crash loop: the current spec's tasks exited 3 times"),
        "{log}"
    );
    assert!(!log.contains("did not converge"), "{log}");
    assert_nothing_left(&host, &d, "crash");
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    KillShInDeploy,
    KillShInTests,
    KillShInTeardown,
    SigTermInTests,
    DeadlineInTests,
    HangInUndeploy,
}

/// The app-domain lock backend a fault cell runs with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Flock,
    Swarm,
}

/// The swarm lock object of a domain, if there is one.
fn swarm_lock_left(domain: &str) -> bool {
    let name = cc_ci_run::lock::swarm::object_name(domain);
    !docker(&["config", "ls", "-q", "--filter", &format!("name={name}")]).is_empty()
}

fn run_cell(cell: Cell, i: u32, backend: Backend) -> Result<String, String> {
    let d = match backend {
        Backend::Flock => domain_for("faults", i),
        Backend::Swarm => domain_for("faults-swarm-lock", i),
    };
    let host = SwarmHost::new(vec![d.clone()]);
    let run_id = "fault";
    let mut c = host.run_cmd(&d, &["--quick"]);
    c.env("CCCI_RUN_ID", run_id)
        .stderr(Stdio::null())
        .stdout(Stdio::null());
    let mut janitor = host.cmd();
    if backend == Backend::Swarm {
        for cmd in [&mut c, &mut janitor] {
            cmd.env("CCCI_LOCK_BACKEND", "swarm")
                .env("CCCI_HOST_ID", "fault-host")
                .env("CCCI_LOCK_LEASE", "6s")
                .env("CCCI_LOCK_RENEW", "2s")
                .env("CCCI_LOCK_MARGIN", "2s");
        }
    }
    let expect = match cell {
        Cell::KillShInDeploy => {
            c.env("CCCI_FAKE_ABRA_HANG", "deploy-chaos");
            143
        }
        Cell::KillShInTests | Cell::SigTermInTests => {
            c.env("CCCI_EXAMPLE_HANG", "install");
            143
        }
        Cell::DeadlineInTests => {
            // Below the example tests' own 30 s timeout, above the time to reach them.
            c.env("CCCI_EXAMPLE_HANG", "install")
                .args(["--timeout", "20s"]);
            142
        }
        Cell::KillShInTeardown | Cell::HangInUndeploy => {
            c.env("CCCI_FAKE_ABRA_HANG", "undeploy")
                .env("CCCI_TEARDOWN_TIMEOUT", "5s");
            4
        }
    };
    let wait_paused = |host: &SwarmHost| match cell {
        Cell::KillShInDeploy => {
            host.wait_hang("deploy-chaos");
        }
        Cell::KillShInTests | Cell::SigTermInTests => {
            wait_for_file(&host.ready.join("test-install"))
        }
        _ => {
            host.wait_hang("undeploy");
        }
    };
    let seen = match cell {
        Cell::KillShInDeploy | Cell::KillShInTests | Cell::KillShInTeardown => {
            let mut sh = spawn_as_drone_step(&c, host.tmp.path());
            wait_paused(&host);
            kill(Pid::from_raw(sh.id() as i32), Signal::SIGKILL).unwrap();
            sh.wait().unwrap();
            wait_until("the run record's finish", || {
                std::fs::read_to_string(host.state.join("runs/fault/run.json"))
                    .is_ok_and(|t| t.contains("\"finished\": \""))
            });
            host.record(run_id)["exit_code"].as_i64().unwrap_or(-1) as i32
        }
        Cell::SigTermInTests => {
            let mut child = c.spawn().unwrap();
            wait_paused(&host);
            kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
            code(child.wait().unwrap())
        }
        Cell::DeadlineInTests | Cell::HangInUndeploy => code(c.spawn().unwrap().wait().unwrap()),
    };
    wait_until("no process of the run", || {
        procs_with_env("CCCI_FAKE_STATE", &host.fake).is_empty()
    });
    let mut problems = Vec::new();
    if seen != expect {
        problems.push(format!("exit {seen}, expected {expect}"));
    }
    let mut note = "nothing left";
    if expect == 4 {
        // Teardown was made to fail: the run says so; a janitor sweep reaps it.
        if leftovers(&host, &d).is_empty() {
            problems.push("teardown failed but nothing was left?".into());
        }
        // Only this cell's domain: a janitor here never tidies the swarm
        // locks of the tests running beside it.
        let out = janitor
            .env_remove("CCCI_JANITOR")
            .env("CCCI_RUN_APP_RE", format!("^{}$", d.replace('.', "\\.")))
            .arg("janitor")
            .output()
            .unwrap();
        if code(out.status) != 0 {
            problems.push(format!(
                "janitor exit {}: {}",
                code(out.status),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        note = "left, then reaped by the janitor";
    }
    let left = leftovers(&host, &d);
    if !left.is_empty() {
        problems.push(format!("left on the swarm: {left:?}"));
    }
    if !host.lock_free("apps", &d) || !host.lock_free("runs", run_id) {
        problems.push("a lock is held".into());
    }
    if swarm_lock_left(&d) {
        problems.push("a swarm lock object is left".into());
        let _ = Command::new("docker")
            .args(["config", "rm", &cc_ci_run::lock::swarm::object_name(&d)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if !host.tree_gone(run_id) {
        problems.push("run tree left".into());
    }
    if problems.is_empty() {
        Ok(format!("exit {seen}, {note}, locks free, tree gone"))
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn fault_matrix_on_the_real_swarm() {
    fault_matrix(Backend::Flock);
}

#[test]
fn fault_matrix_on_the_real_swarm_with_the_swarm_lock_backend() {
    fault_matrix(Backend::Swarm);
}

fn fault_matrix(backend: Backend) {
    let cells = [
        Cell::KillShInDeploy,
        Cell::KillShInTests,
        Cell::KillShInTeardown,
        Cell::SigTermInTests,
        Cell::DeadlineInTests,
        Cell::HangInUndeploy,
    ];
    let results: Vec<(Cell, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    let r = std::panic::catch_unwind(|| run_cell(*c, i as u32, backend))
                        .unwrap_or_else(|_| Err("panicked".into()));
                    (*c, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut table = format!("\nfault matrix on the real swarm, {backend:?} lock backend\n");
    let mut failed = 0;
    for (c, r) in &results {
        match r {
            Ok(t) => table += &format!("{:<18} ok    {t}\n", format!("{c:?}")),
            Err(e) => {
                failed += 1;
                table += &format!("{:<18} FAIL  {e}\n", format!("{c:?}"));
            }
        }
    }
    println!("{table}");
    eprintln!("{table}");
    assert_eq!(failed, 0, "{table}");
}

#[test]
fn six_concurrent_runs_over_two_domains_never_deploy_one_domain_twice() {
    let domains = [domain_for("six", 0), domain_for("six", 1)];
    let host = SwarmHost::new(domains.to_vec());
    let children: Vec<_> = (0..6)
        .map(|i| {
            host.run_cmd(&domains[i % 2], &["--quick"])
                .env("CCCI_RUN_ID", format!("six-{i}"))
                .env("CCCI_TIMEOUT", "15m")
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Oracle from the engine itself: while the runs go, `docker events`
    // records every service create and remove of the two stacks.
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=service",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for (i, mut c) in children.into_iter().enumerate() {
        assert_eq!(code(c.wait().unwrap()), 0, "run six-{i}");
    }
    let _ = events.kill();
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for d in &domains {
        let svc = format!("{}_app", stack_of(d));
        let mut live = 0;
        for line in text.lines().filter(|l| l.ends_with(&format!(" {svc}"))) {
            if line.starts_with("create") {
                live += 1;
                assert!(live <= 1, "two stacks of {d} at once: {text}");
            } else if line.starts_with("remove") {
                live -= 1;
            }
        }
        // And from the stand-in's log: hold intervals per run never overlap.
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for rid in (0..6).map(|i| format!("six-{i}")) {
            let ts: Vec<u64> = host
                .calls()
                .iter()
                .filter(|c| c["domain"] == d.as_str() && c["run_id"] == rid.as_str())
                .map(|c| c["ts"].as_u64().unwrap())
                .collect();
            if let (Some(a), Some(b)) = (ts.iter().min(), ts.iter().max()) {
                spans.push((*a, *b));
            }
        }
        spans.sort();
        assert_eq!(spans.len(), 3, "{d}");
        for w in spans.windows(2) {
            assert!(w[0].1 < w[1].0, "{d}: two runs held it at once");
        }
        assert!(leftovers(&host, d).is_empty());
    }
}

#[test]
fn janitor_reaps_an_orphan_stack_with_its_volumes_and_spares_live_and_protected_ones() {
    let (orphan, live, protected) = (
        domain_for("jan", 0),
        domain_for("jan", 1),
        "example-keep.ci.localhost".to_string(),
    );
    let host = SwarmHost::new(vec![orphan.clone(), live.clone(), protected.clone()]);
    // The orphan: a run SIGKILLed (wrapper and harness) during its tests.
    let ready_o = host.tmp.path().join("ready-o");
    std::fs::create_dir_all(&ready_o).unwrap();
    let mut dead = host
        .run_cmd(&orphan, &["--quick"])
        .env("CCCI_RUN_ID", "dead")
        .env("CCCI_EXAMPLE_HANG", "install")
        .env("CCCI_EXAMPLE_READY_DIR", &ready_o)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&ready_o.join("test-install"));
    let harness = host.record("dead")["pid"].as_i64().unwrap() as i32;
    kill(Pid::from_raw(harness), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(dead.id() as i32), Signal::SIGKILL).unwrap();
    dead.wait().unwrap();
    wait_until("the dead run's processes gone", || exited_whole(harness));
    // A live run paused in its tests.
    let mut running = host
        .run_cmd(&live, &["--quick"])
        .env("CCCI_RUN_ID", "live")
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&host.ready.join("test-install"));
    // A protected, long-lived app outside the template.
    deploy_outside(&protected, |a| host.abra(a));
    let orphan_volumes = leftovers(&host, &orphan)
        .into_iter()
        .filter(|l| l.starts_with("volume"))
        .count();
    assert!(orphan_volumes > 0, "the orphan has a volume to reap");
    let out = host
        .cmd()
        .env_remove("CCCI_JANITOR")
        .env("CCCI_PROTECTED_APPS", &protected)
        .args(["janitor", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([orphan]));
    assert_eq!(sum["skipped_live"], 1);
    assert!(
        leftovers(&host, &orphan).is_empty(),
        "{:?}",
        leftovers(&host, &orphan)
    );
    assert!(
        !leftovers(&host, &live).is_empty(),
        "the live run's stack was touched"
    );
    assert!(
        leftovers(&host, &protected)
            .iter()
            .any(|l| l.starts_with("stack")),
        "the protected stack was touched"
    );
    kill(Pid::from_raw(running.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(code(running.wait().unwrap()), 143);
    assert!(leftovers(&host, &live).is_empty());
}

#[test]
fn a_loose_pattern_never_reaps_an_app_cc_ci_run_did_not_create() {
    let (foreign, orphan, runner) = (
        domain_for("loose", 0),
        domain_for("loose", 1),
        domain_for("loose", 2),
    );
    let host = SwarmHost::new(vec![foreign.clone(), orphan.clone(), runner.clone()]);
    // Loose, but anchored: every `example-b<prefix>N` of this test.
    let number = foreign
        .trim_start_matches("example-b")
        .trim_end_matches(".ci.localhost");
    let gate = format!(
        r"^example-b{}[0-9]\.ci\.localhost$",
        &number[..number.len() - 1]
    );
    deploy_outside(&foreign, |a| host.abra(a));
    // An orphan as a dead run leaves it: the marker in its env file.
    deploy_outside(&orphan, |a| host.abra(a));
    mark_created_by_a_run(&host.abra_home, &orphan);

    let out = host
        .cmd()
        .env_remove("CCCI_JANITOR")
        .env("CCCI_RUN_APP_RE", &gate)
        .args(["janitor", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([orphan]), "{err}");
    assert_eq!(sum["unmarked"], serde_json::json!([foreign]), "{err}");
    assert!(
        leftovers(&host, &orphan).is_empty(),
        "{:?}",
        leftovers(&host, &orphan)
    );
    let foreign_left = leftovers(&host, &foreign);
    assert!(
        foreign_left.iter().any(|l| l.starts_with("stack"))
            && foreign_left.iter().any(|l| l.starts_with("volume")),
        "the foreign app was touched: {foreign_left:?}"
    );
    assert!(!host
        .state
        .join("locks/apps")
        .join(format!("{foreign}.lock"))
        .exists());

    // A run's janitor pass with the same pattern: green, foreign untouched.
    let out = host
        .run_cmd(&runner, &["--quick"])
        .env("CCCI_RUN_ID", "loose")
        .env_remove("CCCI_JANITOR")
        .env("CCCI_RUN_APP_RE", &gate)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(
        log.contains(&format!(
            "{foreign} matches CCCI_RUN_APP_RE but was not created by cc-ci-run"
        )),
        "{log}"
    );
    assert_nothing_left(&host, &runner, "loose");
    assert_eq!(
        leftovers(&host, &foreign),
        foreign_left,
        "the run's janitor pass touched it"
    );
    assert!(
        !steps(&host, &foreign)
            .iter()
            .any(|s| s == "undeploy" || s == "rm"),
        "{:?}",
        steps(&host, &foreign)
    );
}
