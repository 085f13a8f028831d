//! Which `docker events` lines a wait on one stack looks again for, and the
//! replay time of its subscription.

use std::time::{Duration, SystemTime};

use cc_ci_run::ext::docker::events::{relevance, since_arg, Relevance};

const STACK: &str = "example-b1_ci_localhost";

fn container(action: &str, stack: &str) -> String {
    format!(
        r#"{{"status":"{action}","id":"abc","Type":"container","Action":"{action}","Actor":{{"ID":"abc","Attributes":{{"com.docker.stack.namespace":"{stack}","name":"{stack}_app.1.xyz"}}}},"scope":"local","time":1,"timeNano":1000}}"#
    )
}

fn named(kind: &str, action: &str, name: &str) -> String {
    format!(
        r#"{{"Type":"{kind}","Action":"{action}","Actor":{{"ID":"n1","Attributes":{{"name":"{name}"}}}},"scope":"swarm","time":1,"timeNano":1000}}"#
    )
}

#[test]
fn a_container_of_the_stack_is_recognised_by_its_namespace_label() {
    assert_eq!(
        relevance(&container("start", STACK), STACK),
        Relevance::Changed
    );
    assert_eq!(
        relevance(&container("destroy", STACK), STACK),
        Relevance::Changed
    );
    assert_eq!(
        relevance(&container("create", STACK), STACK),
        Relevance::Reshaped
    );
}

#[test]
fn another_stack_whose_name_extends_ours_is_not_ours() {
    let other = format!("{STACK}x");
    assert_eq!(
        relevance(&container("start", &other), STACK),
        Relevance::Other
    );
    assert_eq!(
        relevance(&named("service", "remove", &format!("{other}_app")), STACK),
        Relevance::Other
    );
    assert_eq!(
        relevance(&named("network", "destroy", "unrelated_default"), STACK),
        Relevance::Other
    );
}

#[test]
fn services_and_networks_are_recognised_by_their_names() {
    let app = format!("{STACK}_app");
    let net = format!("{STACK}_default");
    assert_eq!(
        relevance(&named("service", "update", &app), STACK),
        Relevance::Changed
    );
    assert_eq!(
        relevance(&named("network", "destroy", &net), STACK),
        Relevance::Changed
    );
    // What a wait knew of the stack's objects no longer holds.
    assert_eq!(
        relevance(&named("service", "remove", &app), STACK),
        Relevance::Reshaped
    );
    assert_eq!(
        relevance(&named("service", "create", &app), STACK),
        Relevance::Reshaped
    );
    assert_eq!(
        relevance(&named("network", "create", &net), STACK),
        Relevance::Reshaped
    );
}

#[test]
fn a_line_that_does_not_parse_makes_the_wait_look_again_and_forget() {
    assert_eq!(relevance("not json", STACK), Relevance::Reshaped);
}

#[test]
fn the_replay_starts_a_second_before_the_subscription() {
    let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000);
    assert_eq!(since_arg(at), "1699999999.250000000");
}

#[test]
fn a_tasks_container_start_and_end_are_read_from_its_events() {
    use cc_ci_run::ext::docker::events::task_started;
    let ev = |action: &str, task: Option<&str>| {
        let task = task.map_or(String::new(), |t| {
            format!(r#","com.docker.swarm.task.id":"{t}""#)
        });
        format!(
            r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"c0ffee","Attributes":{{"com.docker.stack.namespace":"{STACK}"{task}}}}},"timeNano":1}}"#
        )
    };
    assert_eq!(
        task_started(&ev("start", Some("t1"))),
        Some(("t1".to_string(), Some("c0ffee".to_string())))
    );
    for end in ["die", "kill", "oom", "stop", "destroy"] {
        assert_eq!(
            task_started(&ev(end, Some("t1"))),
            Some(("t1".to_string(), None)),
            "{end}"
        );
    }
    // Not a task's container, or not its start or end.
    assert_eq!(task_started(&ev("start", None)), None);
    assert_eq!(
        task_started(&ev("health_status: healthy", Some("t1"))),
        None
    );
    assert_eq!(task_started(&named("service", "update", "x_app")), None);
    assert_eq!(task_started("not json"), None);
}

#[test]
fn a_started_task_counts_as_running_only_when_its_container_runs() {
    use cc_ci_run::ext::docker::converge::{count_started, Task};
    let task = |id: &str, state: &str, desired: &str| Task {
        id: id.into(),
        service_id: "s".into(),
        spec: serde_json::Value::Null,
        state: state.into(),
        desired_state: desired.into(),
        err: String::new(),
        at: None,
        exit_code: None,
    };
    let mut tasks = vec![
        task("a", "starting", "running"),
        task("b", "assigned", "running"),
        task("c", "starting", "running"),
        task("d", "starting", "shutdown"),
        task("e", "failed", "running"),
        task("f", "starting", "running"),
    ];
    let started: std::collections::HashMap<String, String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|t| (t.to_string(), format!("ctr-{t}")))
        .collect();
    // c's container does not run (or is not yet healthy).
    count_started(&mut tasks, &started, |c| c != "ctr-c");
    let states: Vec<&str> = tasks.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(
        states,
        ["running", "running", "starting", "starting", "failed", "starting"]
    );
}
