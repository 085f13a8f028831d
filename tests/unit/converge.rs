//! The convergence decision (SPEC section 3 step 8) on JSON shaped like
//! Docker 20.10's: `docker service inspect` (with the defaults the daemon
//! inserts into the task template) and `docker inspect --type task` (the
//! task's own spec, without them), as captured on the real swarm during a
//! rolling update of the example recipe.

use cc_ci_run::ext::docker::converge::*;
use serde_json::{json, Value};

const SID: &str = "p8mp7a41wbrlkj74lnsc8g7xh";

/// A task's spec for `image`, as the engine stores it in the task.
fn task_spec(image: &str, env: Option<&[&str]>) -> Value {
    let mut spec = json!({
        "ContainerSpec": {
            "Image": image,
            "Labels": {"com.docker.stack.namespace": "cx"},
            "Privileges": {"CredentialSpec": null, "SELinuxContext": null},
            "Isolation": "default"
        },
        "Resources": {},
        "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 0},
        "Placement": {},
        "Networks": [{"Target": "n2ndfm5p2hxc37ydhqoz5l6fa", "Aliases": ["app"]}],
        "ForceUpdate": 0
    });
    if let Some(env) = env {
        spec["ContainerSpec"]["Env"] = json!(env);
    }
    spec
}

/// The same spec as `docker service inspect` prints it: the daemon's
/// defaults filled in (InsertDefaults).
fn template(image: &str, env: Option<&[&str]>) -> Value {
    let mut t = task_spec(image, env);
    let c = &mut t["ContainerSpec"];
    c["Privileges"]["NoNewPrivileges"] = json!(false);
    c["StopGracePeriod"] = json!(10_000_000_000u64);
    c["DNSConfig"] = json!({});
    t["RestartPolicy"]["Delay"] = json!(5_000_000_000u64);
    t["Runtime"] = json!("container");
    t
}

fn service_json(template: Value, replicas: u64, update: Option<Value>) -> String {
    let mut s = json!({
        "ID": SID,
        "Version": {"Index": 15},
        "CreatedAt": "2026-12-06T02:08:43.659159364Z",
        "UpdatedAt": "2026-12-06T02:08:43.660432202Z",
        "Spec": {
            "Name": "cx_app",
            "Labels": {"com.docker.stack.image": "ccci-example:1.1.0", "com.docker.stack.namespace": "cx"},
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": replicas}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 1_000_000_000u64, "MaxFailureRatio": 0, "Order": "stop-first"},
            "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 28911, "PublishMode": "host"}]}
        },
        "Endpoint": {"Spec": {"Mode": "vip"}}
    });
    if let Some(u) = update {
        s["UpdateStatus"] = u;
    }
    json!([s]).to_string()
}

fn update(state: &str, message: &str) -> Value {
    let mut u =
        json!({"State": state, "StartedAt": "2026-12-06T02:09:23.917442040Z", "Message": message});
    if state != "updating" {
        u["CompletedAt"] = json!("2026-12-06T02:09:29.652189911Z");
    }
    u
}

struct T<'a> {
    id: &'a str,
    spec: Value,
    state: &'a str,
    desired: &'a str,
    err: Option<&'a str>,
    at: &'a str,
}

fn tasks_json(tasks: &[T]) -> String {
    let v: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let mut status = json!({
                "Timestamp": t.at,
                "State": t.state,
                "Message": t.state,
                "PortStatus": {}
            });
            if let Some(e) = t.err {
                status["Err"] = json!(e);
            }
            if t.state == "failed" || t.state == "complete" {
                status["ContainerStatus"] = json!({
                    "ContainerID": "c0ffee",
                    "PID": 0,
                    "ExitCode": if t.state == "failed" { 1 } else { 0 }
                });
            }
            json!({
                "ID": t.id,
                "Version": {"Index": 21},
                "CreatedAt": "2026-12-06T02:08:43.659742147Z",
                "UpdatedAt": t.at,
                "Labels": {},
                "Spec": t.spec,
                "ServiceID": SID,
                "Slot": 1,
                "NodeID": "blq9gjuhk5s7q0y7fky0dcm0b",
                "Status": status,
                "DesiredState": t.desired,
                "NetworksAttachments": []
            })
        })
        .collect();
    Value::Array(v).to_string()
}

fn old(state: &str, desired: &str) -> T<'static> {
    T {
        id: "k9oqsculyexfrjtf17rv86tbc",
        spec: task_spec("ccci-example:1.1.0", None),
        state: if state == "running" {
            "running"
        } else {
            "shutdown"
        },
        desired: if desired == "running" {
            "running"
        } else {
            "shutdown"
        },
        err: None,
        at: "2026-12-06T02:08:44.600795034Z",
    }
}

fn new(state: &'static str, err: Option<&'static str>, at: &'static str) -> T<'static> {
    T {
        id: "j49xg0aq2w3n8bmd1tn4srv6v",
        spec: task_spec("ccci-example:2.0.0-pr", None),
        state,
        desired: if err.is_some() { "shutdown" } else { "running" },
        err,
        at,
    }
}

fn decide(service: &str, tasks: &str) -> Settle {
    let s = parse_services(service).unwrap();
    let t = parse_tasks(tasks).unwrap();
    settle_stack(&s, &t)
}

fn waiting(s: &Settle) -> &str {
    match s {
        Settle::Waiting(w) => w,
        other => panic!("expected waiting, got {other:?}"),
    }
}

fn failed(s: &Settle) -> &str {
    match s {
        Settle::Failed(w) => w,
        other => panic!("expected failed, got {other:?}"),
    }
}

const NO_ENTRYPOINT: &str = "starting container failed: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown";

#[test]
fn a_task_spec_equals_its_template_despite_the_defaults_the_daemon_inserts() {
    assert!(same_spec(
        &task_spec("ccci-example:1.1.0", None),
        &template("ccci-example:1.1.0", None)
    ));
    // A real change in either direction is a different spec: a new image,
    // an added environment variable (START_DELAY_MS), a removed one.
    let env: &[&str] = &["START_DELAY_MS=3000"];
    assert!(!same_spec(
        &task_spec("ccci-example:1.1.0", None),
        &template("ccci-example:2.0.0-pr", None)
    ));
    assert!(!same_spec(
        &task_spec("ccci-example:1.1.0", None),
        &template("ccci-example:1.1.0", Some(env))
    ));
    assert!(!same_spec(
        &task_spec("ccci-example:1.1.0", Some(env)),
        &template("ccci-example:1.1.0", None)
    ));
    // A default the daemon inserts is equal only at its default value.
    let mut t = template("ccci-example:1.1.0", None);
    t["ContainerSpec"]["StopGracePeriod"] = json!(30_000_000_000u64);
    assert!(!same_spec(&task_spec("ccci-example:1.1.0", None), &t));
}

#[test]
fn first_deploy_without_update_status_settles_on_its_running_task() {
    let svc = service_json(template("ccci-example:1.1.0", None), 1, None);
    let running = tasks_json(&[old("running", "running")]);
    match decide(&svc, &running) {
        Settle::Settled(s) => assert_eq!(s, "cx_app 1/1"),
        other => panic!("{other:?}"),
    }
    let mut pending = old("running", "running");
    pending.state = "pending";
    let w = decide(&svc, &tasks_json(&[pending])).clone();
    assert!(
        waiting(&w).contains("cx_app: 0/1 running the current spec"),
        "{w:?}"
    );
    assert!(
        matches!(decide(&svc, "[]"), Settle::Waiting(_)),
        "no task yet"
    );
}

#[test]
fn updating_while_the_old_task_still_runs_is_not_settled() {
    // Measured: 30-45 ms after `docker stack deploy` the old task serves,
    // 1/1 replicas, UpdateStatus updating, the new task not yet placed.
    let svc = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update("updating", "update in progress")),
    );
    let mut pending = new("pending", None, "2026-12-06T02:09:24.000000000Z");
    pending.desired = "ready";
    let w = decide(&svc, &tasks_json(&[pending, old("running", "shutdown")]));
    assert!(
        waiting(&w).contains("1 task(s) of a previous spec still running"),
        "{w:?}"
    );
}

#[test]
fn null_update_status_right_after_deploy_with_the_old_task_running_is_not_settled() {
    // swarmkit resets UpdateStatus to null when the spec changes, before
    // its updater starts: replicas met and no update status, old task.
    let svc = service_json(template("ccci-example:2.0.0-pr", None), 1, None);
    let w = decide(&svc, &tasks_json(&[old("running", "running")]));
    assert!(waiting(&w).contains("previous spec"), "{w:?}");
}

#[test]
fn label_only_redeploy_settles_with_no_update_status() {
    // The same task template (labels are on the service), no task replaced,
    // UpdateStatus dropped by the engine.
    let svc = service_json(template("ccci-example:1.1.0", None), 1, None);
    assert!(matches!(
        decide(&svc, &tasks_json(&[old("running", "running")])),
        Settle::Settled(_)
    ));
}

#[test]
fn updating_with_the_new_task_running_waits_for_completed() {
    let svc = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update("updating", "update in progress")),
    );
    let tasks = tasks_json(&[
        new("running", None, "2026-12-06T02:09:28.600000000Z"),
        old("shutdown", "shutdown"),
    ]);
    let w = decide(&svc, &tasks);
    assert!(waiting(&w).contains("update updating"), "{w:?}");
    let done = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update("completed", "update completed")),
    );
    match decide(&done, &tasks) {
        Settle::Settled(s) => assert_eq!(s, "cx_app 1/1 (update completed)"),
        other => panic!("{other:?}"),
    }
    let services = parse_services(&done).unwrap();
    let deployed = cc_ci_run::log::parse_timestamp("2026-12-06T02:09:23.900Z").unwrap();
    let took = engine_update_time(&services, deployed).unwrap();
    assert_eq!(
        took.as_millis(),
        5735,
        "StartedAt → CompletedAt (milliseconds)"
    );
    // An update that started before the deploy (seen by a restore tier's
    // wait after the upgrade's) is not this deploy's.
    let later = cc_ci_run::log::parse_timestamp("2026-12-06T02:09:40.000Z").unwrap();
    assert_eq!(engine_update_time(&services, later), None);
}

#[test]
fn paused_update_fails_at_once_naming_service_message_and_last_task_error() {
    let svc = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update(
            "paused",
            "update paused due to failure or early termination of task fot2x",
        )),
    );
    let mut newer = new(
        "failed",
        Some("task: non-zero exit (1)"),
        "2026-12-06T02:09:34.000000000Z",
    );
    newer.id = "litl0000000000000000000000";
    let tasks = tasks_json(&[
        new(
            "failed",
            Some(NO_ENTRYPOINT),
            "2026-12-06T02:09:28.500000000Z",
        ),
        newer,
        old("shutdown", "shutdown"),
    ]);
    let f = decide(&svc, &tasks);
    let why = failed(&f);
    assert!(why.starts_with("service cx_app: update paused: update paused due to failure or early termination of task fot2x"), "{why}");
    assert!(
        why.contains("last task error: task: non-zero exit (1) (task litl"),
        "the newest error: {why}"
    );
}

/// Decides at `now` with exits counted from `since` and a 10 s window.
fn decide_at(service: &str, tasks: &str, since: Option<&str>, now: &str) -> Settle {
    let s = parse_services(service).unwrap();
    let t = parse_tasks(tasks).unwrap();
    let at = |x: &str| cc_ci_run::log::parse_timestamp(x).unwrap();
    let clock = Clock {
        since: since.map(at),
        now: at(now),
        stable_for: std::time::Duration::from_secs(10),
    };
    settle_stack_at(&s, &t, &clock)
}

fn exit_at(id: &'static str, at: &'static str) -> T<'static> {
    T {
        id,
        ..new("failed", Some("task: non-zero exit (1)"), at)
    }
}

#[test]
fn a_paused_update_whose_current_spec_then_runs_for_the_window_is_settled_with_a_warning() {
    // The app exits once on its first start (its database was not up),
    // the update pauses, the engine restarts the task and it runs.
    let svc = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update(
            "paused",
            "update paused due to failure or early termination of task fot2x",
        )),
    );
    let tasks = tasks_json(&[
        exit_at(
            "fot2x000000000000000000000",
            "2026-12-06T02:09:30.000000000Z",
        ),
        new("running", None, "2026-12-06T02:09:36.000000000Z"),
        old("shutdown", "shutdown"),
    ]);
    let since = Some("2026-12-06T02:09:23.000000000Z");
    // Up 4 s of the 10 s window: not yet.
    let w = decide_at(&svc, &tasks, since, "2026-12-06T02:09:40.000000000Z");
    assert!(
        waiting(&w).contains("up 4.0 s of the 10.0 s stability window"),
        "{w:?}"
    );
    // Up 10 s: settled, with the warning naming the service and the pause.
    match decide_at(&svc, &tasks, since, "2026-12-06T02:09:46.000000000Z") {
        Settle::Recovered(summary, warning) => {
            assert!(summary.contains("cx_app 1/1 (update paused"), "{summary}");
            assert!(
                warning.starts_with("service cx_app: update paused: update paused due to failure"),
                "{warning}"
            );
            assert!(warning.contains("ran for 10.0 s"), "{warning}");
        }
        other => panic!("expected recovered, got {other:?}"),
    }
    // A later wait (the restore tier's, which deploys nothing) still sees
    // the paused state the engine keeps: settled, but no second warning.
    let later = Some("2026-12-06T02:09:50.000000000Z");
    let v = decide_at(&svc, &tasks, later, "2026-12-06T02:10:00.000000000Z");
    assert!(
        matches!(&v, Settle::Settled(s) if s.contains("(update paused")),
        "{v:?}"
    );
    // Between the exit and the restart (the restart delay), a task of the
    // current spec is on its way: wait, do not fail.
    let restarting = tasks_json(&[
        exit_at(
            "fot2x000000000000000000000",
            "2026-12-06T02:09:30.000000000Z",
        ),
        T {
            id: "rdy00000000000000000000000",
            ..new("ready", None, "2026-12-06T02:09:30.100000000Z")
        },
    ]);
    let w = decide_at(&svc, &restarting, since, "2026-12-06T02:09:31.000000000Z");
    assert!(waiting(&w).contains("being restarted"), "{w:?}");
    assert!(
        waiting(&w).contains("last task error: task: non-zero exit (1)"),
        "{w:?}"
    );
}

#[test]
fn three_exits_of_the_current_spec_are_a_crash_loop_at_once_install_tier_included() {
    // A first deploy (no update status): the engine restarts the task
    // after each exit; three exits since the deploy end the wait.
    let svc = service_json(template("ccci-example:2.0.0-pr", None), 1, None);
    let since = Some("2026-12-06T02:09:23.000000000Z");
    let now = "2026-12-06T02:09:50.000000000Z";
    let two = tasks_json(&[
        exit_at(
            "ex1a0000000000000000000000",
            "2026-12-06T02:09:30.000000000Z",
        ),
        exit_at(
            "ex2a0000000000000000000000",
            "2026-12-06T02:09:36.000000000Z",
        ),
        new("starting", None, "2026-12-06T02:09:41.000000000Z"),
    ]);
    assert!(waiting(&decide_at(&svc, &two, since, now)).contains("0/1"));
    let three = tasks_json(&[
        exit_at(
            "ex1a0000000000000000000000",
            "2026-12-06T02:09:30.000000000Z",
        ),
        exit_at(
            "ex2a0000000000000000000000",
            "2026-12-06T02:09:36.000000000Z",
        ),
        exit_at(
            "ex3a0000000000000000000000",
            "2026-12-06T02:09:42.000000000Z",
        ),
        new("starting", None, "2026-12-06T02:09:47.000000000Z"),
    ]);
    let f = decide_at(&svc, &three, since, now);
    let why = failed(&f);
    assert!(
        why.starts_with("service cx_app: crash loop: the current spec's tasks exited 3 times (last: exit code 1, task ex3a"),
        "{why}"
    );
    assert!(
        why.contains("last task error: task: non-zero exit (1)"),
        "{why}"
    );
    // Exits before the deploy the wait follows do not count.
    let later = Some("2026-12-06T02:09:33.000000000Z");
    assert!(matches!(
        decide_at(&svc, &three, later, now),
        Settle::Waiting(_)
    ));
    // Nor do exits of a previous spec.
    let mut stale = three.replace("ccci-example:2.0.0-pr", "ccci-example:1.1.0");
    stale = stale.replace("\"starting\"", "\"shutdown\"");
    assert!(matches!(
        decide_at(&svc, &stale, since, now),
        Settle::Waiting(_)
    ));
    // With a paused update, the message keeps the update's.
    let paused = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update(
            "paused",
            "update paused due to failure or early termination of task ex1a",
        )),
    );
    let why = failed(&decide_at(&paused, &three, since, now)).to_string();
    assert!(
        why.starts_with("service cx_app: update paused: update paused due to failure or early termination of task ex1a; crash loop: "),
        "{why}"
    );
}

#[test]
fn rollback_states_fail_at_once() {
    for state in ["rollback_started", "rollback_paused", "rollback_completed"] {
        let svc = service_json(
            template("ccci-example:2.0.0-pr", None),
            1,
            Some(update(
                state,
                "update rolled back due to failure or early termination of task x",
            )),
        );
        // rollback_completed runs the old spec again, all tasks healthy.
        let f = decide(&svc, &tasks_json(&[old("running", "running")]));
        assert!(
            failed(&f).contains(&format!(
                "service cx_app: update {state}: update rolled back"
            )),
            "{f:?}"
        );
    }
}

#[test]
fn crash_loop_on_first_deploy_waits_and_names_the_last_task_error() {
    let svc = service_json(template("ccci-example:2.0.0-pr", None), 1, None);
    let tasks = tasks_json(&[
        new(
            "failed",
            Some(NO_ENTRYPOINT),
            "2026-12-06T02:09:28.500000000Z",
        ),
        T {
            id: "ss8w0000000000000000000000",
            ..new("starting", None, "2026-12-06T02:09:34.000000000Z")
        },
    ]);
    let w = decide(&svc, &tasks);
    let why = waiting(&w);
    assert!(
        why.contains("cx_app: 0/1 running the current spec"),
        "{why}"
    );
    assert!(
        why.contains("last task error: starting container failed"),
        "{why}"
    );
}

#[test]
fn the_desired_count_must_be_met_exactly() {
    let svc = service_json(template("ccci-example:1.1.0", None), 2, None);
    let one = tasks_json(&[old("running", "running")]);
    assert!(waiting(&decide(&svc, &one)).contains("1/2"));
    let mut second = old("running", "running");
    second.id = "second000000000000000000000";
    let two = tasks_json(&[old("running", "running"), second]);
    assert!(matches!(decide(&svc, &two), Settle::Settled(_)));
    let scaled_down = service_json(template("ccci-example:1.1.0", None), 1, None);
    assert!(waiting(&decide(&scaled_down, &two)).contains("2/1"));
}

#[test]
fn a_stack_fails_when_one_service_fails_and_waits_with_no_services() {
    let a = parse_services(&service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update("paused", "paused")),
    ))
    .unwrap();
    let mut b = parse_services(&service_json(template("x:1", None), 1, None)).unwrap();
    b[0].id = "other".into();
    b[0].name = "cx_db".into();
    let services: Vec<Service> = a.into_iter().chain(b).collect();
    assert!(matches!(settle_stack(&services, &[]), Settle::Failed(_)));
    assert!(matches!(settle_stack(&[], &[]), Settle::Waiting(_)));
}

#[test]
fn unexpected_engine_output_is_an_error() {
    assert!(parse_services("not json").is_err());
    assert!(parse_tasks("{\"ID\": 1}").is_err());
    assert!(parse_services("[]").unwrap().is_empty());
}

/// Captured on the real one-node swarm (Docker 20.10.24, CLI 28.2.2): one
/// `docker stack deploy` of a service per form, then `docker service
/// inspect` of each (the CLI's view: defaults inserted) and `docker
/// inspect --type task` of its running task. Only the grace-period form
/// sets a restart policy (`condition: on-failure`), as only some public
/// recipes do.
const CAPTURED: &[(&str, &str, &str)] = &[
    (
        "no restart policy",
        include_str!("data/converge/no_restart_policy.service.json"),
        include_str!("data/converge/no_restart_policy.task.json"),
    ),
    (
        "a grace period",
        include_str!("data/converge/grace_period.service.json"),
        include_str!("data/converge/grace_period.task.json"),
    ),
    (
        "resources",
        include_str!("data/converge/resources.service.json"),
        include_str!("data/converge/resources.task.json"),
    ),
    (
        "placement",
        include_str!("data/converge/placement.service.json"),
        include_str!("data/converge/placement.task.json"),
    ),
    (
        "a healthcheck",
        include_str!("data/converge/healthcheck.service.json"),
        include_str!("data/converge/healthcheck.task.json"),
    ),
    (
        "configs and secrets",
        include_str!("data/converge/configs_secrets.service.json"),
        include_str!("data/converge/configs_secrets.task.json"),
    ),
    (
        "network aliases",
        include_str!("data/converge/network_aliases.service.json"),
        include_str!("data/converge/network_aliases.task.json"),
    ),
];

fn captured(form: &str) -> (Service, Task) {
    let (_, svc, task) = CAPTURED.iter().find(|(f, _, _)| *f == form).unwrap();
    let mut s = parse_services(svc).unwrap();
    let mut t = parse_tasks(task).unwrap();
    assert_eq!((s.len(), t.len()), (1, 1), "{form}");
    (s.remove(0), t.remove(0))
}

#[test]
fn each_captured_form_settles_on_its_running_task() {
    for (form, _, _) in CAPTURED {
        let (svc, task) = captured(form);
        assert_eq!(task.state, "running", "{form}");
        assert!(same_spec(&task.spec, &svc.template), "{form}");
        let verdict = settle_stack(&[svc], &[task]);
        assert!(matches!(verdict, Settle::Settled(_)), "{form}: {verdict:?}");
    }
}

#[test]
fn a_task_with_no_restart_policy_is_shown_as_the_engine_fills_it_in() {
    // The service's template (CLI) has the whole default policy; the task
    // has none. Interpolated, the task shows exactly that object.
    let (svc, task) = captured("no restart policy");
    assert!(task.spec.get("RestartPolicy").is_none());
    let shown = as_service_shows(&task.spec);
    assert_eq!(shown["RestartPolicy"], svc.template["RestartPolicy"]);
    assert_eq!(
        shown["RestartPolicy"],
        json!({"Condition": "any", "Delay": 5_000_000_000u64, "MaxAttempts": 0})
    );
    assert_eq!(
        shown["ContainerSpec"]["StopGracePeriod"],
        json!(10_000_000_000u64)
    );
    assert_eq!(shown["Runtime"], json!("container"));
    // A set policy keeps its condition and only gains the default delay.
    let (svc, task) = captured("a grace period");
    let shown = as_service_shows(&task.spec);
    assert_eq!(shown["RestartPolicy"], svc.template["RestartPolicy"]);
    assert_eq!(shown["RestartPolicy"]["Condition"], json!("on-failure"));
    // The compose file's own grace period is never replaced by the default.
    assert_eq!(
        shown["ContainerSpec"]["StopGracePeriod"],
        task.spec["ContainerSpec"]["StopGracePeriod"]
    );
    assert_ne!(
        shown["ContainerSpec"]["StopGracePeriod"],
        json!(10_000_000_000u64)
    );
}

#[test]
fn a_captured_task_is_stale_once_its_service_changes_what_the_defaults_fill() {
    // A redeploy that gives the service a restart policy, a grace period,
    // other limits, constraints, a healthcheck, a new secret version or
    // another alias is a new spec: the running task is of the previous one.
    let changes: &[(&str, &str, Value)] = &[
        (
            "no restart policy",
            "/RestartPolicy/Condition",
            json!("on-failure"),
        ),
        (
            "no restart policy",
            "/RestartPolicy/Delay",
            json!(1_000_000_000u64),
        ),
        (
            "no restart policy",
            "/ContainerSpec/StopGracePeriod",
            json!(30_000_000_000u64),
        ),
        (
            "a grace period",
            "/ContainerSpec/StopGracePeriod",
            json!(10_000_000_000u64),
        ),
        ("a grace period", "/RestartPolicy/Condition", json!("any")),
        (
            "resources",
            "/Resources/Limits/MemoryBytes",
            json!(134_217_728u64),
        ),
        (
            "placement",
            "/Placement/Constraints/0",
            json!("node.role == worker"),
        ),
        (
            "a healthcheck",
            "/ContainerSpec/Healthcheck/Retries",
            json!(5),
        ),
        (
            "configs and secrets",
            "/ContainerSpec/Secrets/0/SecretName",
            json!("ccvgcap_sec_v2"),
        ),
        (
            "network aliases",
            "/Networks/0/Aliases/0",
            json!("other-alias"),
        ),
    ];
    for (form, pointer, value) in changes {
        let (mut svc, task) = captured(form);
        let slot = svc
            .template
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{form}: no {pointer} in the template"));
        assert_ne!(slot, value, "{form} {pointer}: a change");
        *slot = value.clone();
        assert!(!same_spec(&task.spec, &svc.template), "{form} {pointer}");
        let verdict = settle_stack(&[svc], &[task]);
        assert!(
            matches!(&verdict, Settle::Waiting(w) if w.contains("previous spec")),
            "{form} {pointer}: {verdict:?}"
        );
    }
}

#[test]
fn a_paused_update_waits_briefly_for_the_replacement_of_a_task_that_just_ended() {
    // The look that follows the ended task's own event can come before the
    // orchestrator created its replacement: that is not yet a failure.
    let svc = service_json(
        template("ccci-example:2.0.0-pr", None),
        1,
        Some(update(
            "paused",
            "update paused due to failure or early termination of task fot2x",
        )),
    );
    let tasks = tasks_json(&[
        exit_at(
            "fot2x000000000000000000000",
            "2026-12-06T02:09:30.000000000Z",
        ),
        old("shutdown", "shutdown"),
    ]);
    let since = Some("2026-12-06T02:09:00.000000000Z");
    let soon = decide_at(&svc, &tasks, since, "2026-12-06T02:09:31.000000000Z");
    assert!(
        waiting(&soon).contains("a task of it is being restarted"),
        "{soon:?}"
    );
    // No replacement two seconds on: the update failed.
    let later = decide_at(&svc, &tasks, since, "2026-12-06T02:09:32.500000000Z");
    assert!(
        failed(&later).starts_with("service cx_app: update paused"),
        "{later:?}"
    );
}
