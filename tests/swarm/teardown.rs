//! Teardown finishes what the engine leaves behind (issue 20), on the real
//! swarm: a bridge network and standalone containers carrying a stack's
//! namespace label, one container running and attached, so `docker stack
//! rm` cannot remove the network ("has active endpoints") and fails, as
//! it does when a network is still in use by a task (moby/moby#31068).
//! Objects of another stack (whose name extends ours) and objects without
//! the label, attached the same way, must never be touched.

use std::process::{Command, Stdio};

use crate::engine::*;
use crate::support::*;

/// What a test planted (or lets a recipe test plant), by name: removed on
/// every path when dropped, containers first (they hold the networks).
struct Planted {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Planted {
    /// The names of what [`plant_cmds`] makes for `stack` and of the
    /// bystanders [`plant_bystanders`] makes beside it.
    fn for_stack(stack: &str) -> Planted {
        Planted {
            containers: ["left_run", "left_stopped", "x_run", "plain_run"]
                .iter()
                .map(|s| format!("{stack}_{s}"))
                .chain([format!("{stack}x_run")])
                .collect(),
            networks: vec![
                format!("{stack}_left"),
                format!("{stack}x_net"),
                format!("{stack}_plain"),
            ],
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for n in &self.networks {
            let _ = Command::new("docker")
                .args(["network", "rm", n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Shell commands that plant what the engine would leave of `stack`: a
/// labelled bridge network, a running labelled container attached to it,
/// and a stopped (created, never started) labelled container on it.
fn plant_cmds(stack: &str) -> String {
    let label = format!("com.docker.stack.namespace={stack}");
    format!(
        "docker network create --label {label} {stack}_left\n\
         docker run -d --name {stack}_left_run --label {label} --network {stack}_left ccci-example:1.0.0\n\
         docker create --name {stack}_left_stopped --label {label} --network {stack}_left ccci-example:1.0.0\n"
    )
}

/// Another stack's network and container (its name and label extend ours:
/// a prefix match would take them), and an unlabelled network and
/// container named with our prefix; each container runs, attached.
fn plant_bystanders(stack: &str) {
    let other = format!("{stack}x");
    let cmds = format!(
        "set -e\n\
         docker network create --label com.docker.stack.namespace={other} {other}_net\n\
         docker run -d --name {other}_run --label com.docker.stack.namespace={other} --network {other}_net ccci-example:1.0.0\n\
         docker run -d --name {stack}_x_run --label com.docker.stack.namespace={other} --network {other}_net ccci-example:1.0.0\n\
         docker network create {stack}_plain\n\
         docker run -d --name {stack}_plain_run --network {stack}_plain ccci-example:1.0.0\n"
    );
    let out = Command::new("sh").arg("-c").arg(&cmds).output().unwrap();
    assert!(
        out.status.success(),
        "planting the bystanders failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bystanders are all there, running, with the labels they were given.
fn assert_bystanders_untouched(stack: &str) {
    let other = format!("{stack}x");
    for (c, label) in [
        (format!("{other}_run"), other.as_str()),
        (format!("{stack}_x_run"), other.as_str()),
        (format!("{stack}_plain_run"), ""),
    ] {
        let got = docker(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Status}} {{index .Config.Labels \"com.docker.stack.namespace\"}}",
            &c,
        ]);
        // `index` of a missing key prints the map's zero value: nothing.
        let want = format!("running {label}").trim().to_string();
        assert_eq!(got, [want], "bystander container {c}");
    }
    for n in [format!("{other}_net"), format!("{stack}_plain")] {
        assert_eq!(
            docker(&["network", "inspect", "--format", "{{.Name}}", &n]),
            std::slice::from_ref(&n),
            "bystander network {n}"
        );
    }
}

fn removal_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("left by the engine after undeploy") && l.ends_with(": removed"))
        .map(String::from)
        .collect()
}

fn assert_names_removed(log: &str, stack: &str) {
    let removed = removal_lines(log);
    for what in [
        format!("container {stack}_left_run "),
        format!("container {stack}_left_stopped "),
        format!("network {stack}_left "),
    ] {
        assert!(
            removed.iter().any(|l| l.contains(&what)),
            "the log should name {what:?} as removed: {log}"
        );
    }
    // Anything else removed is the stack's own task container, when the
    // engine's reaper was slower than the grace (~6 s measured).
    for l in &removed {
        assert!(
            [
                format!("container {stack}_left_"),
                format!("container {stack}_app."),
                format!("network {stack}_left "),
                format!("network {stack}_default "),
            ]
            .iter()
            .any(|w| l.contains(w)),
            "removed something not of the stack: {l}"
        );
    }
}

#[test]
fn run_whose_recipe_test_plants_engine_leftovers_exits_0_and_teardown_removes_them() {
    let d = domain_for("teardown-leftovers", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let _planted = Planted::for_stack(&stack);
    plant_bystanders(&stack);
    // A recipe test of the run's CI tests directory plants the leftovers
    // while the app is deployed, as the engine would leave them.
    let dir = host.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let test = script(
        &dir,
        "50-plant-leftovers.sh",
        &format!(
            "#!/bin/sh\n# tier: install\n# timeout: 60s\nset -eu\n\
             test \"$CCCI_STACK\" = {stack}\n{}",
            plant_cmds(&stack)
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&test, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_RUN_ID", "leftovers")
        // The default grace, so the engine's reaper has its chance at the
        // stack's own task container first, as in production.
        .env("CCCI_GRACE", "10s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(
        log.contains("50-plant-leftovers.sh"),
        "the planting test ran: {log}"
    );
    assert_names_removed(&log, &stack);
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}\n{log}");
    assert!(host.lock_free("apps", &d) && host.lock_free("runs", "leftovers"));
    assert_bystanders_untouched(&stack);
}

#[test]
fn janitor_reaps_an_orphan_with_engine_leftovers_in_one_sweep_and_the_next_finds_nothing() {
    let d = domain_for("teardown-janitor", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let _planted = Planted::for_stack(&stack);
    plant_bystanders(&stack);
    deploy_outside(&d, |a| host.abra(a));
    mark_created_by_a_run(&host.abra_home, &d);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{}", plant_cmds(&stack)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep = || {
        host.cmd()
            .env_remove("CCCI_JANITOR")
            .env("CCCI_RUN_APP_RE", format!("^{}$", d.replace('.', "\\.")))
            .args(["janitor", "--json"])
            .output()
            .unwrap()
    };
    let out = sweep();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([d]), "{log}");
    assert_names_removed(&log, &stack);
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}\n{log}");
    let out = sweep();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["candidates"], 0, "{log}");
    assert_eq!(sum["reaped"], serde_json::json!([]));
    assert_bystanders_untouched(&stack);
}
