//! What teardown reads before it removes a stack's leftovers itself: the
//! labels from `inspect` (the exact namespace value, never a prefix) and the
//! engine's errors (gone, in use).

use cc_ci_run::ext::docker::{says_gone, says_in_use};
use cc_ci_run::teardown::leftovers::*;

#[test]
fn container_inspect_gives_labels_state_and_a_name_without_slash() {
    // As docker 20.10 prints it (fields trimmed).
    let text = r#"[{"Id":"4f85cc7f86f6ac547e0fc360308ca0b4c4df0f42b4833040b1c4761b8f60ca4b","Name":"/s_c","State":{"Status":"running"},"Config":{"Labels":{"com.docker.stack.namespace":"example_com","x":"y"}}}]"#;
    let v = parse_inspect(Kind::Container, text).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "s_c");
    assert_eq!(v[0].state, "running");
    assert!(v[0].of_stack("example_com"));
    // A prefix, an extension, or another stack's value is not this stack.
    assert!(!v[0].of_stack("example"));
    assert!(!v[0].of_stack("example_com_2"));
    assert!(!v[0].of_stack(""));
}

#[test]
fn null_or_missing_labels_belong_to_no_stack() {
    let c = r#"[{"Id":"a","Name":"/plain","State":{"Status":"exited"},"Config":{"Labels":null}}]"#;
    let v = parse_inspect(Kind::Container, c).unwrap();
    assert!(v[0].labels.is_empty());
    assert!(!v[0].of_stack("a"));
    let n = r#"[{"Name":"s_default","Id":"b9d8","Labels":{},"Scope":"local"},{"Name":"x","Id":"c1","Labels":null}]"#;
    let v = parse_inspect(Kind::Network, n).unwrap();
    assert_eq!(v.len(), 2);
    assert!(!v[0].of_stack("s"));
    assert!(!v[1].of_stack("s"));
}

#[test]
fn network_inspect_gives_the_namespace_label() {
    let n = r#"[{"Name":"s_default","Id":"b9d8","Labels":{"com.docker.stack.namespace":"s"}}]"#;
    let v = parse_inspect(Kind::Network, n).unwrap();
    assert!(v[0].of_stack("s"));
    assert_eq!(v[0].state, "");
}

#[test]
fn gone_objects_and_garbage() {
    assert!(parse_inspect(Kind::Network, "[]").unwrap().is_empty());
    assert!(parse_inspect(Kind::Container, "not json").is_err());
    assert!(parse_inspect(Kind::Network, "{}").is_err());
}

#[test]
fn engine_errors_are_told_apart() {
    // Messages of docker 20.10, as measured on the real engine.
    assert!(says_gone(
        "Error response from daemon: No such container: nosuchc123"
    ));
    assert!(says_gone(
        "Error response from daemon: network nosuchnet123 not found\nexit status 1"
    ));
    let in_use = [
        "Error response from daemon: rpc error: code = FailedPrecondition desc = network n2nd is in use by task k9oq",
        "Error response from daemon: error while removing network: network s_left id b9d8 has active endpoints",
        "Error response from daemon: removal of container 4f85 is already in progress",
    ];
    for m in in_use {
        assert!(says_in_use(m), "{m}");
        assert!(!says_gone(m), "{m}");
    }
    assert!(!says_in_use(
        "Error response from daemon: permission denied"
    ));
    assert!(!says_gone("Error response from daemon: permission denied"));
}
