//! The watch through a tier's tests (SPEC section 3 step 8): which
//! `docker events` lines are an exit of the stack's tasks, and how the
//! exits are told (the reason of a red tier, restarts per service, the
//! JUnit testcase `watch:SERVICE`).

use std::time::{Duration, SystemTime};

use cc_ci_run::ext::docker::watch::{exit_of, reason, restarts, Exit};
use cc_ci_run::rundir::{TierTests, Watched};
use cc_ci_run::testrun::junit::watch_suite;

const STACK: &str = "example-b1_ci_localhost";

/// A container event as Docker 20.10 prints it with `--format '{{json
/// .}}'`: the container's labels (a swarm task's carry the stack's
/// namespace and the swarm's task and service names) among the actor's
/// attributes, `exitCode` on `die` (moby daemon/monitor.go).
fn event(action: &str, stack: &str, task: bool, code: &str) -> String {
    let task_labels = if task {
        format!(
            r#""com.docker.swarm.node.id":"n0","com.docker.swarm.service.id":"s1","com.docker.swarm.service.name":"{stack}_app","com.docker.swarm.task":"","com.docker.swarm.task.id":"t1abc","com.docker.swarm.task.name":"{stack}_app.1.t1abc","#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"status":"{action}","id":"c0ffee","from":"ccci-example:2.0.0-pr","Type":"container","Action":"{action}","Actor":{{"ID":"c0ffee","Attributes":{{"com.docker.stack.namespace":"{stack}",{task_labels}"exitCode":"{code}","image":"ccci-example:2.0.0-pr","name":"{stack}_app.1.t1abc"}}}},"scope":"local","time":1765076400,"timeNano":1765076400123456789}}"#
    )
}

#[test]
fn a_die_of_a_task_container_of_the_stack_is_an_exit_with_its_code_and_time() {
    let x = exit_of(&event("die", STACK, true, "3"), STACK).unwrap();
    assert_eq!(x.service, format!("{STACK}_app"));
    assert_eq!(x.task, "t1abc");
    assert_eq!(x.container, "c0ffee");
    assert_eq!(x.exit_code, Some(3));
    assert_eq!(
        x.at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(1_765_076_400_123_456_789))
    );
    assert_eq!(
        x.describe(),
        "exit code 3 at 2025-12-07T03:00:00.123Z (task t1abc)"
    );
}

#[test]
fn other_lines_are_no_exit() {
    // A test's `docker exec` ending, a start, another stack (also one
    // whose name has this one's as a prefix), a container beside the app
    // that is no swarm task, a line that is no JSON.
    for line in [
        event("exec_die", STACK, true, "0"),
        event("start", STACK, true, "0"),
        event("die", &format!("{STACK}_2"), true, "1"),
        event("die", STACK, false, "1"),
        "not json".to_string(),
    ] {
        assert_eq!(exit_of(&line, STACK), None, "{line}");
    }
}

fn exit(service: &str, task: &str, code: i64, secs: u64) -> Exit {
    Exit {
        service: service.into(),
        task: task.into(),
        container: task.into(),
        exit_code: Some(code),
        at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
    }
}

#[test]
fn the_reason_names_each_service_its_restarts_and_its_last_exit() {
    assert_eq!(reason(&[]), None);
    let exits = [
        exit("s_app", "t2", 3, 20),
        exit("s_app", "t1", 1, 10),
        exit("s_db", "t3", 137, 15),
    ];
    assert_eq!(
        reason(&exits).unwrap(),
        "service s_app exited 2 time(s) while watched (restarts: 2; last: exit code 3 at 1970-01-01T00:00:20.000Z (task t2)); \
         service s_db exited 1 time(s) while watched (restarts: 1; last: exit code 137 at 1970-01-01T00:00:15.000Z (task t3))"
    );
    let by = restarts(&["s_app".into(), "s_db".into(), "s_web".into()], &exits);
    assert_eq!(
        by.into_iter().collect::<Vec<_>>(),
        [("s_app".into(), 2), ("s_db".into(), 1), ("s_web".into(), 0)]
    );
}

#[test]
fn junit_has_a_watch_testcase_per_service_failing_when_it_restarted() {
    let t = TierTests {
        tier: "upgrade".into(),
        watch: vec![
            Watched {
                service: format!("{STACK}_app"),
                restarts: 2,
                exits: vec![
                    "exit code 3 at T (task t1)".into(),
                    "exit code 3 at U (task t2)".into(),
                ],
            },
            Watched {
                service: format!("{STACK}_db"),
                restarts: 0,
                exits: vec![],
            },
        ],
        ..TierTests::default()
    };
    let suite = watch_suite("example", STACK, &t);
    assert_eq!(suite.name.as_str(), "watch-upgrade");
    assert_eq!(suite.tests, 2);
    assert_eq!(suite.failures, 1);
    let names: Vec<&str> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
    // The recipe's service names: the same testcases in every build.
    assert_eq!(names, ["watch:app", "watch:db"]);
}
