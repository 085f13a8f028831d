//! The event-driven waits under faults (issue 18), on the real swarm: the
//! teardown's event stream (`GET /events`) closed mid-wait, events that
//! happen before the stream is live, and an engine that answers slowly.
//! cc-ci-run talks to the engine through a proxy the test owns
//! (`DOCKER_HOST`, [`crate::proxy`]) that records each event stream it
//! opens and injects the fault; the stand-in abra and the recipe's tests
//! keep using the real docker CLI on the real engine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::*;
use crate::proxy::{self, Action, Call, End, Proxy};
use crate::support::*;

/// The proxy in front of the engine: `slow` before every call of
/// cc-ci-run; each event stream answered at once by the proxy and
/// subscribed on the engine only `events_delay` later (the run believes
/// it live while the engine does not know of it yet).
fn engine_proxy(host: &SwarmHost, slow: Option<Duration>, events_delay: Option<Duration>) -> Proxy {
    Proxy::start(host.tmp.path(), "engine", move |r| {
        if !r.ccci() {
            return Action::pass();
        }
        match (r.route() == "/events", events_delay, slow) {
            (true, Some(d), _) => Action::delay(d).early_head(),
            (_, _, Some(d)) => Action::delay(d),
            _ => Action::pass(),
        }
    })
}

/// The run `cmd` through `proxy` (abra and the tests on the real engine).
fn through(mut cmd: Command, proxy: &Proxy, host: &SwarmHost) -> Command {
    proxy::through(&mut cmd, proxy, host.tmp.path());
    cmd
}

/// cc-ci-run's event streams, in the order it opened them.
fn streams(calls: &[Call]) -> Vec<Call> {
    calls.iter().filter(|c| c.is_events()).cloned().collect()
}

/// Every event stream the run opened has ended: closed by the run (or
/// killed by the test), none left open behind it.
fn assert_all_gone(proxy: &Proxy, log: &str) {
    let calls = proxy.wait_for("every event stream closed", BOUND, |calls| {
        streams(calls)
            .iter()
            .all(|c| c.ended.is_some())
            .then(|| calls.to_vec())
    });
    for c in streams(&calls) {
        let how = c.ended.map(|(_, e)| e);
        assert!(
            matches!(how, Some(End::Client | End::Killed)),
            "event stream #{} ended {how:?}, not closed by the run: {}\n{log}",
            c.n,
            proxy::summary(&calls)
        );
    }
}

/// The log line's own time (`2026-01-02T03:04:05.678Z ...`).
fn line_time(line: &str) -> SystemTime {
    let ts = line.split(' ').next().unwrap();
    let v: Vec<u64> = ts
        .trim_end_matches('Z')
        .split(['-', 'T', ':', '.'])
        .map(|p| p.parse().unwrap())
        .collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = (v[0] as i64, v[1] as i64, v[2] as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146097 + doe - 719468) as u64;
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(days * 86400 + v[3] * 3600 + v[4] * 60 + v[5])
        + Duration::from_millis(v[6])
}

fn run_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn stack_objects(kind: &[&str], stack: &str) -> Vec<String> {
    let label = format!("label=com.docker.stack.namespace={stack}");
    let mut args = kind.to_vec();
    args.extend(["-q", "--filter", &label]);
    docker(&args)
}

/// Nothing of `d`'s stack is left on the swarm, and every stream the
/// run opened is closed.
fn assert_nothing_left(host: &SwarmHost, d: &str, proxy: &Proxy, log: &str) {
    let left = leftovers(host, d);
    assert!(left.is_empty(), "left on the swarm: {left:?}\n{log}");
    assert_all_gone(proxy, log);
}

/// The line the wait logs when its stream ended and it polls instead.
fn polling_line<'a>(log: &'a str, stack: &str) -> Option<&'a str> {
    log.lines().find(|l| {
        l.contains(&format!("docker events of stack {stack} ")) && l.contains(": polling")
    })
}

#[test]
fn teardown_whose_event_stream_is_closed_mid_wait_polls_instead_and_leaves_nothing() {
    let d = domain_for("waits-killed", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let proxy = engine_proxy(&host, None, None);
    let err = host.tmp.path().join("run.err");
    let mut child = through(host.run_cmd(&d, &["--quick"]), &proxy, &host)
        .env("CCCI_RUN_ID", "waits-killed")
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // A --quick run opens two streams: the install's convergence, then
    // the teardown's (before its undeploy).
    let teardown = proxy.wait_for("the teardown's event stream live", BOUND, |calls| {
        streams(calls)
            .get(1)
            .filter(|c| c.live.is_some())
            .map(|c| c.n)
    });
    // Mid-wait: the undeploy removed the services; the containers take
    // the engine's reaper seconds more.
    wait_until("the stack's services removed", || {
        stack_objects(&["service", "ls"], &stack).is_empty()
    });
    assert!(
        !stack_objects(&["ps", "-a"], &stack).is_empty(),
        "the stack's containers went before the stream could be closed mid-wait: {}",
        run_log(&err)
    );
    assert!(
        proxy.calls()[teardown].ended.is_none(),
        "the teardown's stream ended before the test closed it: {}",
        proxy::summary(&proxy.calls())
    );
    // The stream dies mid-answer, as a connection to an engine that goes
    // away does: closed both ways, no end of its chunked body.
    proxy.kill(teardown);
    wait_until("the stack's containers and networks gone", || {
        stack_objects(&["ps", "-a"], &stack).is_empty()
            && stack_objects(&["network", "ls"], &stack).is_empty()
    });
    let gone_at = SystemTime::now();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < BOUND, "the run did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = run_log(&err);
    assert_eq!(code(status), 0, "{log}");
    let line = polling_line(&log, &stack).unwrap_or_else(|| {
        panic!("the teardown wait should say that its stream ended and it polls: {log}")
    });
    assert!(
        line.contains("closed the connection"),
        "the stream's end should be the closed connection: {line}"
    );
    assert_eq!(
        proxy.calls()[teardown].ended.map(|(_, e)| e),
        Some(End::Killed),
        "the test's close of the stream is what ended it"
    );
    // The poll's bound is 500 ms; the test's own look at the engine and
    // a loaded host get the rest of the margin.
    let rm = log
        .lines()
        .find(|l| l.contains("$ abra app rm"))
        .unwrap_or_else(|| panic!("no app rm in the log: {log}"));
    let late = line_time(rm)
        .duration_since(gone_at)
        .unwrap_or(Duration::ZERO);
    assert!(
        late < Duration::from_secs(2),
        "the polling teardown noticed the stack gone {late:?} after the test did: {log}"
    );
    assert!(host.lock_free("apps", &d) && host.lock_free("runs", "waits-killed"));
    assert_nothing_left(&host, &d, &proxy, &log);
}

#[test]
fn teardown_wait_hears_the_events_that_came_before_its_stream_was_live() {
    let d = domain_for("waits-replay", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    // Each stream goes live on the engine 2 s after cc-ci-run subscribed
    // (the proxy answered its head at once): the undeploy's first events
    // (the service removed, ~0.1 s after it) come before that.
    let delay = Duration::from_secs(2);
    let proxy = engine_proxy(&host, None, Some(delay));
    let out = through(host.run_cmd(&d, &["--quick"]), &proxy, &host)
        .env("CCCI_RUN_ID", "waits-replay")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let calls = proxy.calls();
    let all = streams(&calls);
    let teardown = all.get(1).unwrap_or_else(|| {
        panic!(
            "no second (teardown) stream: {}\n{log}",
            proxy::summary(&calls)
        )
    });
    assert!(
        teardown.held_for.is_some_and(|h| h >= delay),
        "the teardown's subscription was not held back: {teardown:?}"
    );
    let live: u128 = teardown
        .live
        .unwrap_or_else(|| panic!("the teardown's stream never went live: {teardown:?}\n{log}"))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let stream = teardown.lines();
    let replayed: Vec<&String> = stream
        .iter()
        .filter(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["Type"] == "service"
                && e["Action"] == "remove"
                && e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{stack}_")))
                && e["timeNano"].as_u64().is_some_and(|t| (t as u128) < live)
        })
        .collect();
    assert!(
        !replayed.is_empty(),
        "the stream should replay the service's removal, which came before it was live: {stream:?}\n{log}"
    );
    assert!(polling_line(&log, &stack).is_none(), "{log}");
    assert_nothing_left(&host, &d, &proxy, &log);
}

#[test]
fn waits_on_an_engine_that_answers_slowly_keep_their_streams_and_leave_nothing() {
    let d = domain_for("waits-slow", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let slow = Duration::from_millis(300);
    let proxy = engine_proxy(&host, Some(slow), None);
    let out = through(host.run_cmd(&d, &["--quick"]), &proxy, &host)
        .env("CCCI_RUN_ID", "waits-slow")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    assert!(log.contains(&format!("stack {stack} converged")), "{log}");
    assert!(
        log.contains("teardown of") && log.contains("complete"),
        "{log}"
    );
    let calls = proxy.calls();
    let ours: Vec<&Call> = calls.iter().filter(|c| c.req.ccci()).collect();
    assert!(
        ours.len() > 10
            && ours
                .iter()
                .all(|c| c.held_for.is_some_and(|h| h >= slow) && c.status.is_some()),
        "every engine call of the run should have been answered {slow:?} late: {}",
        proxy::summary(&calls)
    );
    assert_eq!(
        streams(&calls).len(),
        2,
        "one stream for the convergence wait and one for the teardown: {}\n{log}",
        proxy::summary(&calls)
    );
    // A slow answer is not a broken stream.
    assert!(polling_line(&log, &stack).is_none(), "{log}");
    assert_nothing_left(&host, &d, &proxy, &log);
}
