//! The event-driven waits under faults (issue 18), on the real swarm: the
//! teardown's `docker events` stream killed mid-wait, events that happen
//! before the stream is live, and an engine that answers slowly. cc-ci-run
//! talks to the engine through a `docker` in front of the real one
//! (CCCI_DOCKER) that records each `events` stream it starts; the stand-in
//! abra keeps using the real one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::*;
use crate::support::*;

/// The `docker` in front of the real one: `slow` seconds before every call;
/// an `events` call takes the next directory `events.N/`, writes its pid
/// there (cc-ci-run starts it as the leader of its own process group),
/// sleeps `events_delay` seconds, writes when it went live (ns since the
/// epoch) and copies the stream into `out`.
struct Wrapper {
    path: PathBuf,
    dir: PathBuf,
}

impl Wrapper {
    fn new(host: &SwarmHost, slow: Option<&str>, events_delay: Option<&str>) -> Wrapper {
        let dir = host.tmp.path().join("docker-wrapper");
        std::fs::create_dir_all(&dir).unwrap();
        let real = Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap();
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        assert!(!real.is_empty(), "no docker on PATH");
        let body = format!(
            "#!/bin/sh\n\
             dir='{dir}'\n\
             {slow}\
             if [ \"$1\" = events ]; then\n\
             \tn=1\n\
             \twhile ! mkdir \"$dir/events.$n\" 2>/dev/null; do n=$((n + 1)); done\n\
             \techo $$ >\"$dir/events.$n/pid.tmp\"\n\
             \tmv \"$dir/events.$n/pid.tmp\" \"$dir/events.$n/pid\"\n\
             \t{delay}\n\
             \tdate +%s%N >\"$dir/events.$n/live\"\n\
             \t'{real}' \"$@\" | tee \"$dir/events.$n/out\"\n\
             \texit\n\
             fi\n\
             exec '{real}' \"$@\"\n",
            dir = dir.display(),
            slow = slow.map(|s| format!("sleep {s}\n")).unwrap_or_default(),
            delay = events_delay
                .map(|s| format!("sleep {s}"))
                .unwrap_or_else(|| ":".to_string()),
        );
        let path = script(host.tmp.path(), "docker", &body);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Wrapper { path, dir }
    }

    fn stream(&self, n: u32) -> PathBuf {
        self.dir.join(format!("events.{n}"))
    }

    /// How many streams were started.
    fn streams(&self) -> u32 {
        (1..).take_while(|n| self.stream(*n).exists()).count() as u32
    }

    /// Every stream's process group is gone: killed and reaped, nothing of
    /// it (the shell, the CLI, tee) left behind.
    fn assert_all_gone(&self) {
        for n in 1..=self.streams() {
            let Ok(text) = std::fs::read_to_string(self.stream(n).join("pid")) else {
                continue;
            };
            let pgid: i32 = text.trim().parse().unwrap();
            let members = group_members(pgid);
            assert!(
                members.is_empty(),
                "events stream {n} (group {pgid}) outlived the run: {members:?}"
            );
        }
    }
}

/// The pids whose process group is `pgid` (from /proc/PID/stat).
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split
        // after its closing parenthesis.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
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
/// wrapper started is gone.
fn assert_nothing_left(host: &SwarmHost, d: &str, w: &Wrapper, log: &str) {
    let left = leftovers(host, d);
    assert!(left.is_empty(), "left on the swarm: {left:?}\n{log}");
    w.assert_all_gone();
}

#[test]
fn teardown_whose_event_stream_is_killed_mid_wait_polls_instead_and_leaves_nothing() {
    let d = domain_for("waits-killed", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let w = Wrapper::new(&host, None, None);
    let err = host.tmp.path().join("run.err");
    let mut child = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_DOCKER", &w.path)
        .env("CCCI_RUN_ID", "waits-killed")
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // A --quick run starts two streams: the install's convergence, then
    // the teardown's (before its undeploy).
    let pgid = read_pid(&w.stream(2).join("pid"));
    // Mid-wait: the undeploy removed the services; the containers take
    // the engine's reaper seconds more.
    wait_until("the stack's services removed", || {
        stack_objects(&["service", "ls"], &stack).is_empty()
    });
    assert!(
        !stack_objects(&["ps", "-a"], &stack).is_empty(),
        "the stack's containers went before the stream could be killed mid-wait: {}",
        run_log(&err)
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
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
    assert!(
        log.contains(&format!(
            "docker events of stack {stack} ended (killed by SIGKILL): polling"
        )),
        "the teardown wait should say that its stream ended and it polls: {log}"
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
    assert_nothing_left(&host, &d, &w, &log);
}

#[test]
fn teardown_wait_hears_the_events_that_came_before_its_stream_was_live() {
    let d = domain_for("waits-replay", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    // Each stream goes live 2 s after cc-ci-run subscribed: the undeploy's
    // first events (the service removed, ~0.1 s after it) come before that.
    let w = Wrapper::new(&host, None, Some("2"));
    let out = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_DOCKER", &w.path)
        .env("CCCI_RUN_ID", "waits-replay")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{log}");
    let teardown = w.stream(2);
    let live: u128 = std::fs::read_to_string(teardown.join("live"))
        .unwrap_or_else(|e| panic!("the teardown's stream never went live ({e}): {log}"))
        .trim()
        .parse()
        .unwrap();
    let stream = std::fs::read_to_string(teardown.join("out")).unwrap();
    let replayed: Vec<&str> = stream
        .lines()
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
        "the stream should replay the service's removal, which came before it was live: {stream}\n{log}"
    );
    assert!(
        !log.contains(&format!("docker events of stack {stack} ended")),
        "{log}"
    );
    assert_nothing_left(&host, &d, &w, &log);
}

#[test]
fn waits_on_an_engine_that_answers_slowly_keep_their_streams_and_leave_nothing() {
    let d = domain_for("waits-slow", 0);
    let stack = stack_of(&d);
    let host = SwarmHost::new(vec![d.clone()]);
    let w = Wrapper::new(&host, Some("0.3"), None);
    let out = host
        .run_cmd(&d, &["--quick"])
        .env("CCCI_DOCKER", &w.path)
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
    assert_eq!(
        w.streams(),
        2,
        "one stream for the convergence wait and one for the teardown: {log}"
    );
    // A slow answer is not a broken stream.
    assert!(
        !log.contains(&format!("docker events of stack {stack} ended")),
        "{log}"
    );
    assert_nothing_left(&host, &d, &w, &log);
}
