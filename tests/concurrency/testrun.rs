//! The recipe test runner (`cc-ci-run test`) driven as a real process over
//! fixture test scripts in temporary directories: timeouts, leaks, rlimits,
//! parallelism, resume after SIGKILL, fail-fast, filters, dependencies,
//! containers, signals, self-protection and the reports. Tests synchronise
//! on files the fixture scripts write, never on sleeps alone.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::support::{self, alive, code, read_pid, wait_until};

/// A fixture: a temporary directory with `tests/` for the scripts,
/// `report/` for the runner's reports and `fake/` for the stand-in docker
/// and engine.
struct Fixture {
    engine: support::StandInEngine,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = support::tempdir();
        let f = Fixture {
            engine: support::StandInEngine::start(dir.path(), &dir.path().join("fake")),
            dir,
        };
        std::fs::create_dir_all(f.tests()).unwrap();
        f
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn tests(&self) -> PathBuf {
        self.path().join("tests")
    }

    fn report(&self) -> PathBuf {
        self.path().join("report")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Writes an executable bash test: `header` lines, then `body`.
    fn test(&self, name: &str, header: &str, body: &str) {
        let path = self.tests().join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{header}\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `cc-ci-run test` on the fixture's tests, with the stand-in docker
    /// (for the tests) and engine (for the runner).
    fn runner(&self, args: &[&str]) -> Command {
        let mut c = support::ccci();
        c.current_dir(self.path())
            .env("DIR", self.path())
            .env("CCCI_DOCKER", docker())
            .env("CCCI_FAKE_STATE", self.path().join("fake"))
            .env("DOCKER_HOST", &self.engine.host)
            .args(["test", "--grace", "1s", "--report-dir"])
            .arg(self.report())
            .args(args)
            .arg(self.tests());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.runner(args).output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.runner(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn report_json(&self) -> Value {
        let text = std::fs::read_to_string(self.report().join("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// name → test object of report.json.
    fn results(&self) -> HashMap<String, Value> {
        self.report_json()["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
            .collect()
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// `docker ps -aq --filter label=cc-ci.run=RUN` against the stand-in.
    fn containers(&self, run_id: &str) -> Vec<String> {
        let out = Command::new(docker())
            .env("CCCI_FAKE_STATE", self.path().join("fake"))
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=cc-ci.run={run_id}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

fn docker() -> PathBuf {
    support::fake_dir().join("docker")
}

fn result(results: &HashMap<String, Value>, name: &str) -> String {
    results[name]["result"].as_str().unwrap().to_string()
}

fn reason(results: &HashMap<String, Value>, name: &str) -> String {
    results[name]["reason"].as_str().unwrap_or("").to_string()
}

fn stderr_of(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{err}");
    (code(out.status), err)
}

/// A test body that appends `start NAME` and `end NAME` around `work`.
fn recorded(work: &str) -> String {
    format!("echo \"start $CCCI_TEST_NAME\" >> \"$DIR/events\"\n{work}\necho \"end $CCCI_TEST_NAME\" >> \"$DIR/events\"")
}

/// (max tests running at once, how many starts found another test running).
fn overlap(events: &[String]) -> (usize, usize) {
    let mut running = 0usize;
    let mut max = 0;
    let mut overlapping_starts = 0;
    for e in events {
        if e.starts_with("start ") {
            if running > 0 {
                overlapping_starts += 1;
            }
            running += 1;
            max = max.max(running);
        } else {
            running -= 1;
        }
    }
    (max, overlapping_starts)
}

#[test]
fn timeout_sends_sigterm_then_sigkill_after_the_grace_to_a_test_ignoring_sigterm() {
    let f = Fixture::new();
    f.test(
        "stubborn",
        "# timeout: 1s",
        "trap '' TERM\necho $$ > \"$DIR/stubborn.pid\"\nwhile :; do sleep 0.05; done",
    );
    let out = f.run(&[]);
    assert_eq!(code(out.status), 1);
    let pid = read_pid(&f.file("stubborn.pid"));
    assert!(!alive(pid), "the stubborn test is gone");
    let r = f.results();
    assert_eq!(result(&r, "stubborn"), "timed-out");
    assert!(
        reason(&r, "stubborn").contains("killed after the grace"),
        "{}",
        reason(&r, "stubborn")
    );
    assert_eq!(r["stubborn"]["status"], "killed by SIGKILL");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SIGTERM to its process group")
            && log.contains("SIGKILL to its process group")
    );
}

#[test]
fn leaky_test_is_marked_and_nothing_of_it_survives_the_runner() {
    let f = Fixture::new();
    f.test(
        "leaky",
        "",
        "sleep 300 &\necho $! > \"$DIR/bg.pid\"\n\
         setsid -f bash -c 'echo $$ > \"$DIR/d.tmp\"; mv \"$DIR/d.tmp\" \"$DIR/daemon.pid\"; exec sleep 300'\n\
         while [ ! -f \"$DIR/daemon.pid\" ]; do sleep 0.01; done",
    );
    f.test("tidy", "", "sleep 0.1 &\nwait");
    let out = f.run(&["--parallel", "--max-workers", "2"]);
    assert_eq!(code(out.status), 0, "a leak is reported, not a failure");
    let bg = read_pid(&f.file("bg.pid"));
    let daemon = read_pid(&f.file("daemon.pid"));
    assert!(!alive(bg), "background job in the test's group was killed");
    assert!(
        !alive(daemon),
        "setsid daemon re-parented to the runner was killed"
    );
    let r = f.results();
    assert_eq!(result(&r, "leaky"), "passed");
    assert_eq!(r["leaky"]["leaky"], true);
    let leaked: Vec<i64> = r["leaky"]["leaked_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(
        leaked.contains(&(bg as i64)) && leaked.contains(&(daemon as i64)),
        "{leaked:?}"
    );
    assert_eq!(r["tidy"]["leaky"], false, "the other test is not blamed");
}

#[test]
fn rlimits_fail_the_tests_that_pass_them_and_only_those() {
    let f = Fixture::new();
    // 100 MB string in a 64 MiB address space.
    f.test(
        "hog",
        "# memory: 64M",
        "s=$(printf '%*s' 100000000 '')\necho survived",
    );
    f.test(
        "modest",
        "# memory: 64M",
        "s=$(printf '%*s' 1000000 '')\necho fine",
    );
    f.test(
        "fd-hog",
        "",
        "for i in $(seq 1 64); do exec {fd}</dev/null || exit 1; done\necho survived",
    );
    f.test("few-fds", "", "exec {fd}</dev/null\necho fine");
    let out = f.run(&["--test-nofile", "32"]);
    assert_eq!(code(out.status), 1);
    let r = f.results();
    assert_eq!(result(&r, "hog"), "failed");
    assert_eq!(result(&r, "fd-hog"), "failed");
    assert_eq!(result(&r, "modest"), "passed");
    assert_eq!(result(&r, "few-fds"), "passed");
    let hog_err = std::fs::read_to_string(f.report().join("output/hog.stderr")).unwrap();
    assert!(hog_err.contains("allocate"), "{hog_err}");
    assert!(r["modest"]["peak_rss_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn two_workers_run_eight_tests_two_at_a_time() {
    let f = Fixture::new();
    for i in 0..8 {
        f.test(&format!("t{i}"), "", &recorded("sleep 1"));
    }
    let out = f.run(&["--parallel", "--max-workers", "2"]);
    assert_eq!(code(out.status), 0);
    let events = f.lines("events");
    assert_eq!(events.len(), 16, "{events:?}");
    let (max, overlapping) = overlap(&events);
    assert_eq!(max, 2, "never more than two at once: {events:?}");
    // Four waves of two: every second start finds its partner running.
    assert!(overlapping >= 4, "tests ran two at a time: {events:?}");
    assert_eq!(f.report_json()["workers"], 2);
    assert_eq!(f.report_json()["passed"], 8);
}

#[test]
fn sequential_by_default_one_test_at_a_time() {
    let f = Fixture::new();
    for i in 0..3 {
        f.test(&format!("s{i}"), "", &recorded("sleep 0.2"));
    }
    assert_eq!(code(f.run(&[]).status), 0);
    assert_eq!(overlap(&f.lines("events")).0, 1);
}

#[test]
fn resume_after_sigkill_runs_only_what_had_not_passed() {
    let f = Fixture::new();
    let log = "echo \"$CCCI_TEST_NAME\" >> \"$DIR/ran\"";
    f.test("a", "", log);
    f.test(
        "b",
        "",
        &format!(
            "{log}\nif [ -f \"$DIR/block\" ]; then echo $$ > \"$DIR/b.pid\"; while :; do sleep 0.05; done; fi"
        ),
    );
    f.test("c", "", log);
    f.test("d", "", log);
    std::fs::write(f.file("block"), "").unwrap();
    let args = ["--run-id", "resume-1", "--ref", "abc"];
    let mut first = f.spawn(&args);
    let b = read_pid(&f.file("b.pid"));
    // The journal has a's line before the runner says that a passed.
    let cp = f.report().join("checkpoint.jsonl");
    wait_until("a in the checkpoint", || {
        std::fs::read_to_string(&cp).is_ok_and(|t| t.contains("\"a\""))
    });
    first.kill().unwrap(); // SIGKILL, as Drone does
    first.wait().unwrap();
    wait_until("b to die of the runner's death (PDEATHSIG)", || !alive(b));
    assert_eq!(f.lines("ran"), ["a", "b"]);

    std::fs::remove_file(f.file("block")).unwrap();
    let out = f.run(&["--resume", "--run-id", "resume-1", "--ref", "abc"]);
    assert_eq!(code(out.status), 0);
    assert_eq!(
        f.lines("ran"),
        ["a", "b", "b", "c", "d"],
        "a is not run again"
    );
    let r = f.results();
    assert_eq!(result(&r, "a"), "skipped");
    assert!(reason(&r, "a").contains("passed earlier"));
    assert_eq!(result(&r, "d"), "passed");

    // A checkpoint of another ref is ignored: everything runs.
    let out = f.run(&["--resume", "--run-id", "resume-1", "--ref", "def"]);
    assert_eq!(code(out.status), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignored"));
    assert_eq!(f.lines("ran").len(), 9);
}

/// Issue #30: the checkpoint coalesced its writes over 50 ms, so a runner
/// SIGKILLed just after a test passed lost the pass and `--resume` ran the
/// test again. 200 times: the runner is SIGKILLed the moment it announces a
/// pass (the killer reads its stderr and kills on the line, microseconds
/// later), then resumed. A test announced as passed in attempt P must never
/// run in a later attempt. Each test appends `NAME ATTEMPT TIME` itself, so
/// the count of runs is the tests' own, and TIME (the test's last act)
/// gives the delay from the test's end to the kill.
#[test]
fn sigkill_right_after_a_pass_never_reruns_it_on_resume() {
    use std::io::BufRead;
    const KILLS: usize = 200;
    let f = Fixture::new();
    // A test may pass unannounced before a kill lands (the next one runs
    // meanwhile): when an attempt finds every test passed, more are added.
    let mut tests = 0;
    let mut add_tests = |n: usize| {
        for _ in 0..n {
            f.test(
                &format!("t{tests:03}"),
                "",
                "echo \"$CCCI_TEST_NAME $ATTEMPT $EPOCHREALTIME\" >> \"$DIR/ran\"",
            );
            tests += 1;
        }
    };
    add_tests(KILLS);
    let mut added = 0;
    let args = ["--resume", "--run-id", "jkill", "--ref", "abc"];
    let mut announced: HashMap<String, usize> = HashMap::new();
    let mut killed_at: HashMap<usize, f64> = HashMap::new();
    // From the announcement's timestamp (whole milliseconds, taken just
    // before the line is written) to the kill: the real delay is at most
    // this and at least this less 1 ms.
    let mut after_line: Vec<f64> = Vec::new();
    let mut attempt = 0;
    while announced.len() < KILLS {
        attempt += 1;
        let mut child = f
            .runner(&args)
            .env("ATTEMPT", attempt.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let name = loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                break None;
            }
            if let Some(name) = passed_in(&line) {
                child.kill().unwrap(); // SIGKILL
                let now = epoch_now();
                killed_at.insert(attempt, now);
                after_line.push((now - stamp_of(&line)) * 1e6);
                break Some(name);
            }
            log.push_str(&line);
        };
        let status = child.wait().unwrap();
        let Some(name) = name else {
            // Every test had passed: the runner ended by itself.
            assert_eq!(code(status), 0, "attempt {attempt}:\n{log}");
            assert!(log.contains("already passed"), "{log}");
            added += 10;
            assert!(added <= KILLS, "runs pass unannounced too often:\n{log}");
            add_tests(10);
            continue;
        };
        if let Some(before) = announced.insert(name.clone(), attempt) {
            panic!("{name} was announced as passed in attempts {before} and {attempt}");
        }
    }

    // A last attempt runs the rest and never one announced earlier.
    let out = f
        .runner(&args)
        .env("ATTEMPT", (attempt + 1).to_string())
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut runs: HashMap<String, Vec<usize>> = HashMap::new();
    let mut delays = Vec::new();
    for line in f.lines("ran") {
        let mut w = line.split(' ');
        let (Some(name), Some(attempt), Some(at)) = (w.next(), w.next(), w.next()) else {
            panic!("a torn line in ran: {line:?}");
        };
        let attempt: usize = attempt.parse().unwrap();
        runs.entry(name.to_string()).or_default().push(attempt);
        if announced.get(name) == Some(&attempt) {
            delays.push((killed_at[&attempt] - at.parse::<f64>().unwrap()) * 1e6);
        }
    }
    let rerun: Vec<String> = announced
        .iter()
        .filter(|(name, p)| runs[*name].iter().any(|a| a > p))
        .map(|(name, p)| format!("{name} (passed in attempt {p}, ran in {:?})", runs[name]))
        .collect();
    assert!(
        rerun.is_empty(),
        "run again after their pass was announced: {rerun:#?}"
    );
    assert_eq!(runs.len(), tests, "every test ran");
    let r = f.results();
    assert!(r
        .values()
        .all(|t| t["result"] == "passed" || t["result"] == "skipped"));
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "median {:.0} us, 90th percentile {:.0} us, max {:.0} us",
            v[v.len() / 2],
            v[v.len() * 9 / 10],
            v[v.len() - 1]
        )
    };
    eprintln!(
        "{KILLS} kills; from the announcement's millisecond to the SIGKILL: {}; \
         from a test's last write: {}; tests run twice (killed before their pass was \
         announced): {}; attempts that found every test passed: {}",
        spread(&mut after_line),
        spread(&mut delays),
        runs.values().filter(|a| a.len() > 1).count(),
        added / 10
    );
}

/// The epoch seconds of a log line's leading `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn stamp_of(line: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| line[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs as f64 + n(20..23) as f64 / 1000.0
}

/// The test name in the runner's announcement `... NAME: passed in ...`.
fn passed_in(line: &str) -> Option<String> {
    let (head, _) = line.split_once(": passed in ")?;
    let name = head.rsplit_once("] ").map_or(head, |(_, n)| n);
    Some(name.to_string())
}

/// Now as seconds since the epoch (bash's `$EPOCHREALTIME`).
fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn resume_ignores_a_torn_last_line_and_reads_an_earlier_releases_checkpoint() {
    let f = Fixture::new();
    for t in ["a", "b", "c"] {
        f.test(t, "", "echo \"$CCCI_TEST_NAME\" >> \"$DIR/ran\"");
    }
    // The JSON checkpoint an earlier release wrote (a runner upgraded
    // between two attempts of one build): a passed, so it is not run.
    std::fs::create_dir_all(f.report()).unwrap();
    std::fs::write(
        f.report().join("checkpoint.json"),
        r#"{"run_id": "up", "ref": "abc", "tier": null, "passed": ["a"], "updated": ""}"#,
    )
    .unwrap();
    let out = f.run(&["--resume", "--run-id", "up", "--ref", "abc"]);
    assert_eq!(code(out.status), 0);
    assert_eq!(f.lines("ran"), ["b", "c"]);
    assert!(
        !f.report().join("checkpoint.json").exists(),
        "the journal took its place"
    );
    let journal = f.report().join("checkpoint.jsonl");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        4
    );

    // A host crash cut the last line short: a note, and the tests whose
    // lines are whole are not run again; the line it cut runs again.
    let text = std::fs::read_to_string(&journal).unwrap();
    let cut = &text[..text.len() - 4];
    std::fs::write(&journal, cut).unwrap();
    let out = f.run(&["--resume", "--ref", "abc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(err.contains("its last line is torn"), "{err}");
    assert!(err.contains("2 test(s) already passed in run up"), "{err}");
    assert_eq!(f.lines("ran"), ["b", "c", "c"]);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.ends_with("{\"passed\":\"c\"}\n"),
        "no line after a torn one: {text}"
    );
}

#[test]
fn fail_fast_skips_the_rest_after_the_first_failure() {
    let f = Fixture::new();
    f.test("a", "# priority: 3", &recorded(""));
    f.test("b", "# priority: 2", &recorded("exit 1"));
    f.test("c", "# priority: 1", &recorded(""));
    f.test("d", "", &recorded(""));
    let out = f.run(&["--fail-fast"]);
    assert_eq!(code(out.status), 1);
    assert_eq!(f.lines("events"), ["start a", "end a", "start b"]);
    let r = f.results();
    assert_eq!(result(&r, "c"), "skipped");
    assert!(
        reason(&r, "c").contains("fail-fast after `b` failed"),
        "{}",
        reason(&r, "c")
    );
    assert_eq!(f.report_json()["stopped"], "fail-fast");
}

#[test]
fn fail_fast_terminates_running_tests_in_parallel() {
    let f = Fixture::new();
    f.test(
        "long",
        "# priority: 9",
        // Written whole, then renamed: `bad` waits for the file to exist,
        // and fail-fast could stop `long` between the shell creating the
        // file and writing the pid into it.
        "echo $$ > \"$DIR/long.tmp\"\nmv \"$DIR/long.tmp\" \"$DIR/long.pid\"\nsleep 300",
    );
    f.test(
        "bad",
        "# priority: 5",
        "while [ ! -f \"$DIR/long.pid\" ]; do sleep 0.01; done\nexit 1",
    );
    f.test("later", "", "echo ran > \"$DIR/later\"");
    let out = f.run(&["--fail-fast", "--parallel", "--max-workers", "2"]);
    assert_eq!(code(out.status), 1);
    let long = read_pid(&f.file("long.pid"));
    assert!(!alive(long));
    let r = f.results();
    assert_eq!(result(&r, "bad"), "failed");
    assert_eq!(result(&r, "long"), "cancelled");
    assert_eq!(result(&r, "later"), "skipped");
    assert!(!f.file("later").exists());
}

#[test]
fn list_prints_the_selection_in_order_with_metadata_and_runs_nothing() {
    let f = Fixture::new();
    let touch = "touch \"$DIR/ran-$CCCI_TEST_NAME\"";
    f.test(
        "web",
        "# level: integration\n# tier: install\n# tags: http\n# priority: 2",
        touch,
    );
    f.test(
        "db",
        "# level: integration\n# tier: restore\n# tags: db",
        touch,
    );
    f.test(
        "big",
        "# level: system\n# tags: slow, http\n# timeout: 5m\n# memory: 512M",
        touch,
    );
    f.test("unit", "# level: unit\n# depends-on: web", touch);
    std::fs::write(f.tests().join("helper.sh"), "not executable, not a test").unwrap();
    let list = |args: &[&str]| -> Vec<String> {
        let out = f.run(&[&["--list"], args].concat());
        assert_eq!(code(out.status), 0);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        list(&[]),
        ["web", "db", "unit"],
        "slow left out, priority first, helper not a test"
    );
    assert_eq!(list(&["--slow"]), ["web", "big", "db", "unit"]);
    assert_eq!(list(&["--tier", "install"]), ["web", "unit"]);
    assert_eq!(list(&["--level", "integration"]), ["web", "db"]);
    assert_eq!(list(&["--tag", "http", "--slow"]), ["web", "big"]);
    let out = f.run(&["--list", "--slow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let big = text.lines().find(|l| l.starts_with("big")).unwrap();
    for want in ["system", "slow,http", "5m00s", "512.0M"] {
        assert!(big.contains(want), "{big}");
    }
    assert!(std::fs::read_dir(f.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("ran-")));
    assert!(!f.report().exists(), "--list writes nothing");
}

#[test]
fn depends_on_orders_and_a_failed_dependency_skips_its_dependents() {
    let f = Fixture::new();
    f.test("setup", "", &recorded("exit 1"));
    f.test(
        "uses-setup",
        "# priority: 9\n# depends-on: setup",
        &recorded(""),
    );
    f.test("deeper", "# depends-on: uses-setup", &recorded(""));
    f.test("first", "# priority: 5", &recorded(""));
    f.test("ghost-dep", "# depends-on: ghost", &recorded(""));
    f.test(
        "after-upgrade-only",
        "# depends-on: upgrade-only",
        &recorded(""),
    );
    f.test("upgrade-only", "# tier: upgrade", &recorded(""));
    let out = f.run(&["--tier", "install"]);
    assert_eq!(code(out.status), 1);
    let starts: Vec<String> = f
        .lines("events")
        .into_iter()
        .filter_map(|e| e.strip_prefix("start ").map(String::from))
        .collect();
    assert_eq!(
        starts,
        ["first", "after-upgrade-only", "ghost-dep", "setup"]
    );
    let order: Vec<String> = f.report_json()["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "first",
            "after-upgrade-only",
            "ghost-dep",
            "setup",
            "uses-setup",
            "deeper"
        ],
        "report.json lists the tests in planned order"
    );
    let r = f.results();
    assert_eq!(result(&r, "uses-setup"), "skipped");
    assert_eq!(reason(&r, "uses-setup"), "depends on `setup`, which failed");
    assert_eq!(
        reason(&r, "deeper"),
        "depends on `uses-setup`, which was skipped"
    );
    assert_eq!(
        result(&r, "after-upgrade-only"),
        "passed",
        "dependency outside the selection"
    );
    assert!(!r.contains_key("upgrade-only"));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("depends-on `ghost` names no discovered test"));
    // The JUnit file says the same, and parses.
    let xml = std::fs::read_to_string(f.report().join("junit.xml")).unwrap();
    let cases = crate::junit::parse_junit(&xml);
    let kinds: HashMap<String, String> = cases.into_iter().map(|(n, k, _)| (n, k)).collect();
    assert_eq!(kinds["setup"], "failure");
    assert_eq!(kinds["deeper"], "skipped");
    assert_eq!(kinds["first"], "passed");
}

#[test]
fn malformed_header_is_exit_2_naming_file_and_line_and_runs_nothing() {
    let f = Fixture::new();
    f.test("good", "", "touch \"$DIR/ran\"");
    f.test("typo", "# level: unit\n# timout: 5m", "true");
    let out = f.run(&[]);
    assert_eq!(code(out.status), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tests/typo:3: unknown header key `timout`"),
        "{err}"
    );
    assert!(!f.file("ran").exists());
}

#[test]
fn dependency_cycle_and_bad_options_are_exit_2() {
    let f = Fixture::new();
    f.test("x", "# depends-on: y", "true");
    f.test("y", "# depends-on: x", "true");
    let out = f.run(&[]);
    assert_eq!(code(out.status), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("depends-on cycle"));
    let g = Fixture::new();
    g.test("ok", "", "true");
    for bad in [
        &["--tier", "deploy"][..],
        &["--level", "huge"],
        &["--run-id", "Bad/Id"],
    ] {
        assert_eq!(code(g.run(bad).status), 2, "{bad:?}");
    }
}

#[test]
fn junit_stays_well_formed_with_hostile_output() {
    let f = Fixture::new();
    f.test(
        "noisy",
        "",
        "printf ']]> <b>&amp; \\x1b[31mred\\x07 \\xff\\xfe\\n'\nprintf 'err <x/>\\n' >&2\nexit 3",
    );
    assert_eq!(code(f.run(&[]).status), 1);
    let xml = std::fs::read_to_string(f.report().join("junit.xml")).unwrap();
    let cases = crate::junit::parse_junit(&xml);
    assert_eq!(
        cases,
        [(
            "noisy".to_string(),
            "failure".to_string(),
            "exit 3".to_string()
        )]
    );
    assert!(xml.contains("&lt;b&gt;"));
}

fn container_test(f: &Fixture, name: &str, after: &str) {
    f.test(
        name,
        "",
        &format!(
            "\"$CCCI_DOCKER\" run -d --label \"$CCCI_CONTAINER_LABEL\" img sleep 300 > /dev/null || exit 9\n{after}"
        ),
    );
}

#[test]
fn labelled_containers_are_removed_when_tests_pass_and_when_they_fail() {
    for (after, want) in [("exit 0", 0), ("exit 1", 1)] {
        let f = Fixture::new();
        // Another run's container must survive.
        let other = Command::new(docker())
            .env("CCCI_FAKE_STATE", f.path().join("fake"))
            .args(["run", "-d", "--label", "cc-ci.run=other", "img"])
            .output()
            .unwrap();
        assert!(other.status.success());
        container_test(&f, "c1", after);
        container_test(&f, "c2", "true");
        let out = f.run(&["--run-id", "ctr"]);
        assert_eq!(code(out.status), want);
        assert!(
            f.containers("ctr").is_empty(),
            "{after}: labelled containers removed"
        );
        assert_eq!(
            f.containers("other").len(),
            1,
            "another run's container is kept"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("removed 2 container(s)"));
    }
}

#[test]
fn sigterm_stops_the_suite_terminates_the_test_removes_containers_and_exits_143() {
    let f = Fixture::new();
    container_test(&f, "a-hold", "echo $$ > \"$DIR/hold.pid\"\nsleep 300");
    f.test("z-never", "", "touch \"$DIR/never\"");
    let runner = f.spawn(&["--run-id", "sig"]);
    let hold = read_pid(&f.file("hold.pid"));
    assert_eq!(f.containers("sig").len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (rc, err) = stderr_of(runner);
    assert_eq!(rc, 143);
    assert!(err.contains("shutdown requested"), "{err}");
    assert!(!alive(hold));
    assert!(f.containers("sig").is_empty());
    assert!(!f.file("never").exists());
    let r = f.results();
    assert_eq!(result(&r, "a-hold"), "cancelled");
    assert_eq!(result(&r, "z-never"), "skipped");
    assert_eq!(f.report_json()["exit_code"], 143);
}

#[test]
fn sigint_stops_the_suite_with_exit_130() {
    let f = Fixture::new();
    f.test("hold", "", "echo $$ > \"$DIR/hold.pid\"\nsleep 300");
    let runner = f.spawn(&[]);
    let hold = read_pid(&f.file("hold.pid"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (rc, _) = stderr_of(runner);
    assert_eq!(rc, 130);
    assert!(!alive(hold));
}

fn meminfo(used_percent: u64) -> String {
    let total = 1_000_000u64;
    format!(
        "MemTotal:       {total} kB\nMemFree:        1000 kB\nMemAvailable:   {} kB\n",
        total - total * used_percent / 100
    )
}

#[test]
fn self_protection_checkpoints_stops_and_exits_42_then_resume_finishes() {
    let f = Fixture::new();
    let proc_dir = f.file("proc");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("stat"), "cpu  1 0 1 100 0 0 0 0 0 0\n").unwrap();
    std::fs::write(proc_dir.join("meminfo"), meminfo(50)).unwrap();
    // `a` pushes the (fixture) host past the memory limit.
    f.test(
        "a",
        "# priority: 2",
        &format!(
            "echo a >> \"$DIR/ran\"\nprintf '{}' > \"$DIR/proc/meminfo\"",
            meminfo(95).replace('\n', "\\n")
        ),
    );
    f.test("b", "", "echo b >> \"$DIR/ran\"");
    let mut cmd = f.runner(&["--self-protect", "--mem-limit", "90", "--run-id", "prot"]);
    cmd.env("CCCI_SELF_PROTECT_PROC_DIR", &proc_dir);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(code(out.status), 42);
    assert!(
        err.contains("self-protection: host memory 95.0% used"),
        "{err}"
    );
    assert_eq!(f.lines("ran"), ["a"]);
    let r = f.results();
    assert_eq!(result(&r, "b"), "skipped");
    assert_eq!(f.report_json()["stopped"], "self-protect");
    let cp = cc_ci_run::testrun::checkpoint::load(&f.report(), None)
        .unwrap()
        .unwrap();
    assert_eq!(cp.checkpoint.passed, ["a"]);

    std::fs::write(proc_dir.join("meminfo"), meminfo(50)).unwrap();
    let mut cmd = f.runner(&["--self-protect", "--mem-limit", "90", "--resume"]);
    cmd.env("CCCI_SELF_PROTECT_PROC_DIR", &proc_dir);
    let out = cmd.output().unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        f.lines("ran"),
        ["a", "b"],
        "--resume adopts the checkpoint's run id"
    );
}

#[test]
fn a_suite_that_selects_no_test_fails_naming_the_filters_unless_told_otherwise() {
    let f = Fixture::new();
    f.test("restore-only", "# tier: restore\n# tags: http", "true");
    // No tests, no green: the default is fail, naming what left nothing.
    for args in [
        vec!["--tier", "install"],
        vec!["--tag", "nosuchtag"],
        vec!["--level", "unit"],
    ] {
        let out = f.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 1, "{args:?}: {err}");
        assert!(err.contains("no test ran"), "{err}");
        assert!(
            err.contains(args[1]),
            "the message names the filter {args:?}: {err}"
        );
        assert_eq!(f.report_json()["passed"], 0);
    }
    let out = f.run(&["--tag", "nosuchtag", "--no-tests", "warn"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(err.contains("warning: no test ran"), "{err}");
    let out = f.run(&["--tag", "nosuchtag", "--no-tests", "pass"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(!err.contains("warning: no test ran"), "{err}");
    // A filter that selects the test runs it: exit 0, one passed.
    let out = f.run(&["--tag", "http"]);
    assert_eq!(code(out.status), 0);
    assert_eq!(f.report_json()["passed"], 1);
}

#[test]
fn tests_get_the_container_label_and_run_id_and_no_runner_descriptors() {
    let f = Fixture::new();
    f.test(
        "env",
        "",
        "echo \"$CCCI_CONTAINER_LABEL $CCCI_RUN_ID $CCCI_TIER\" > \"$DIR/env\"\n\
         for fd in /proc/$$/fd/*; do echo \"${fd##*/} $(readlink \"$fd\")\"; done > \"$DIR/fds\"",
    );
    assert_eq!(
        code(f.run(&["--run-id", "envy", "--tier", "upgrade"]).status),
        0
    );
    assert_eq!(f.lines("env"), ["cc-ci.run=envy envy upgrade"]);
    let fds = f.lines("fds");
    for line in &fds {
        for bad in ["pidfd", "/report", "runner.log", "checkpoint"] {
            assert!(
                !line.contains(bad),
                "a runner descriptor reached the test: {fds:?}"
            );
        }
    }
    // stdout, stderr and bash's saved copy of stdout for the redirection;
    // a leaked latch or output pipe would add more.
    let pipes = fds.iter().filter(|l| l.contains("pipe:")).count();
    assert!(pipes <= 3, "{fds:?}");
}

/// The suite's environment is built once and each test's own variables
/// override it: a CCCI_RUN_ID or CCCI_TEST_NAME the runner itself was
/// given reaches the test once, with the runner's value for the test; and
/// the test starts with nothing blocked and SIGPIPE at its default action
/// (the runner, a Rust program, ignores it), its limits as asked.
#[test]
fn each_test_gets_its_variables_once_a_clean_signal_state_and_its_limits() {
    let f = Fixture::new();
    f.test(
        "probe",
        "",
        "tr '\\0' '\\n' < /proc/$$/environ | grep -E '^CCCI_(RUN_ID|TEST_NAME)=' > \"$DIR/vars\"\n\
         grep -E '^Max (open files|cpu time)' /proc/$$/limits > \"$DIR/limits\"\n\
         exec grep -E '^Sig(Blk|Ign)' /proc/self/status > \"$DIR/signals\"",
    );
    let out = f
        .runner(&[
            "--run-id",
            "inner",
            "--test-nofile",
            "40",
            "--test-cpu",
            "30s",
        ])
        .env("CCCI_RUN_ID", "outer")
        .env("CCCI_TEST_NAME", "outer")
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut vars = f.lines("vars");
    vars.sort();
    assert_eq!(vars, ["CCCI_RUN_ID=inner", "CCCI_TEST_NAME=probe"]);
    let signals = f.lines("signals");
    assert_eq!(signals[0], "SigBlk:\t0000000000000000", "{signals:?}");
    let ignored = u64::from_str_radix(signals[1].trim_start_matches("SigIgn:\t"), 16).unwrap();
    // Only SIGPIPE is ours to judge: what the runner's own parent ignored
    // stays ignored across exec, as it should.
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{signals:?}");
    let limits: Vec<Vec<String>> = f
        .lines("limits")
        .iter()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(limits[0][3..5], ["30", "31"], "{limits:?}");
    assert_eq!(limits[1][3..5], ["40", "40"], "{limits:?}");
}

#[test]
fn cpu_limit_ends_a_busy_test_with_sigxcpu() {
    let f = Fixture::new();
    f.test("spin", "", "while :; do :; done");
    f.test("idle", "", "true");
    let out = f.run(&["--test-cpu", "1s"]);
    assert_eq!(code(out.status), 1);
    let r = f.results();
    assert_eq!(result(&r, "spin"), "failed");
    assert_eq!(r["spin"]["status"], "killed by SIGXCPU");
    let cpu = r["spin"]["cpu_ms"].as_u64().unwrap();
    // The kernel sends SIGXCPU on its own clock (the scheduler's exact
    // runtime, checked at a tick); wait4's utime+stime is sampled and
    // scaled, and on a loaded or virtualised host it has come out below
    // 900 ms for a 1 s limit. What matters here is that the CPU was spent
    // and accounted, not the last tenth of it (an idle test reads ~0).
    assert!(
        cpu >= 500,
        "SIGXCPU after {cpu} ms of CPU by wait4's account"
    );
    assert_eq!(result(&r, "idle"), "passed");
}

#[test]
fn an_absent_or_failing_engine_is_logged_and_never_changes_the_verdict() {
    // No engine at DOCKER_HOST, and an engine whose container listing fails.
    for (host, fail) in [(Some(support::NO_ENGINE), ""), (None, "docker-ps")] {
        let f = Fixture::new();
        f.test("ok", "", "true");
        let mut cmd = f.runner(&[]);
        cmd.env("CCCI_FAKE_ABRA_FAIL", fail);
        if let Some(h) = host {
            cmd.env("DOCKER_HOST", h);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 0, "{host:?} {fail}: {err}");
        assert!(
            err.contains("container cleanup") && err.contains("(not fatal)"),
            "{err}"
        );
    }
}

/// A test body that counts its attempts in `$DIR/NAME.count` and fails
/// (exit 1, with a line on stderr) on the attempts before `pass_on`
/// (0: never passes). Each attempt prints its number on stdout.
fn attempts_body(pass_on: u32) -> String {
    format!(
        "n=$(( $(cat \"$DIR/$CCCI_TEST_NAME.count\" 2>/dev/null || echo 0) + 1 ))\n\
         echo $n > \"$DIR/$CCCI_TEST_NAME.count\"\n\
         echo \"attempt $n\"\n\
         if [ {pass_on} -eq 0 ] || [ $n -lt {pass_on} ]; then echo \"failing on attempt $n\" >&2; exit 1; fi"
    )
}

fn count_of(f: &Fixture, name: &str) -> u32 {
    std::fs::read_to_string(f.file(&format!("{name}.count")))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// (tag, type) of each rerun element of a testcase.
fn reruns(doc: &crate::junit::Doc, name: &str) -> Vec<(String, String)> {
    doc.case(name)
        .reruns
        .iter()
        .map(|r| (r.tag.clone(), r.ty.clone()))
        .collect()
}

#[test]
fn a_test_that_fails_once_then_passes_with_retries_is_flaky_and_the_run_green() {
    let f = Fixture::new();
    f.test("flaky", "", &attempts_body(2));
    f.test("steady", "", "true");
    let out = f.run(&["--retries", "2"]);
    assert_eq!(code(out.status), 0, "a flaky test keeps the run green");
    assert_eq!(count_of(&f, "flaky"), 2, "one rerun, then it passed");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("flaky: attempt 1 of 3 failed; running it again"),
        "{log}"
    );
    assert!(
        log.contains("2 passed, 0 failed, 0 skipped, 1 flaky"),
        "{log}"
    );
    assert!(log.contains("passed, flaky (2 attempts)"), "{log}");

    let rep = f.report_json();
    assert_eq!(
        (rep["passed"].as_u64(), rep["flaky"].as_u64()),
        (Some(2), Some(1))
    );
    let r = f.results();
    assert_eq!(result(&r, "flaky"), "passed");
    assert_eq!(
        (
            r["flaky"]["flaky"].as_bool(),
            r["flaky"]["attempts"].as_u64()
        ),
        (Some(true), Some(2))
    );
    assert_eq!(
        (
            r["steady"]["flaky"].as_bool(),
            r["steady"]["attempts"].as_u64()
        ),
        (Some(false), Some(1))
    );
    let earlier = r["flaky"]["failed_attempts"].as_array().unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0]["result"], "failed");
    assert_eq!(earlier[0]["status"], "exit 1");
    // Each attempt's output is kept apart.
    let first = earlier[0]["stdout"].as_str().unwrap();
    assert_eq!(first, "output/flaky.attempt-1.stdout");
    let read = |rel: &str| std::fs::read_to_string(f.report().join(rel)).unwrap();
    assert_eq!(read(first), "attempt 1\n");
    assert_eq!(
        read("output/flaky.attempt-1.stderr"),
        "failing on attempt 1\n"
    );
    assert_eq!(read(r["flaky"]["stdout"].as_str().unwrap()), "attempt 2\n");

    let doc = crate::junit::check(&f.report().join("junit.xml"));
    assert_eq!(doc.case("flaky").kind, "passed");
    assert_eq!(
        reruns(&doc, "flaky"),
        [("flakyFailure".into(), "failed".into())]
    );
    assert!(doc.case("steady").reruns.is_empty());
    assert_eq!((doc.totals.failures, doc.totals.errors), (0, 0));
    let xml = std::fs::read_to_string(f.report().join("junit.xml")).unwrap();
    assert!(
        xml.contains("failing on attempt 1"),
        "the failed attempt's stderr is in the file: {xml}"
    );
}

#[test]
fn flaky_fails_makes_a_flaky_test_fail_the_run() {
    let f = Fixture::new();
    f.test("flaky", "", &attempts_body(2));
    let out = f.run(&["--retries", "2", "--flaky-fails"]);
    assert_eq!(code(out.status), 1);
    assert_eq!(count_of(&f, "flaky"), 2, "the rerun still ran and passed");
    let rep = f.report_json();
    assert_eq!(
        (rep["failed"].as_u64(), rep["flaky"].as_u64()),
        (Some(1), Some(1))
    );
    let r = f.results();
    assert_eq!(result(&r, "flaky"), "failed");
    assert!(
        reason(&r, "flaky").contains("--flaky-fails"),
        "{}",
        reason(&r, "flaky")
    );
    let doc = crate::junit::check(&f.report().join("junit.xml"));
    assert_eq!(
        (
            doc.case("flaky").kind.as_str(),
            doc.case("flaky").ty.as_str()
        ),
        ("failure", "flaky")
    );
    assert_eq!(
        reruns(&doc, "flaky"),
        [("flakyFailure".into(), "failed".into())]
    );
}

#[test]
fn a_test_that_always_fails_is_rerun_exactly_n_times_and_the_header_wins() {
    let f = Fixture::new();
    f.test("broken", "", &attempts_body(0));
    // The header's count wins over --retries, both ways.
    f.test("once-more", "# retries: 1", &attempts_body(0));
    f.test("never-again", "# retries: 0", &attempts_body(0));
    let out = f.run(&["--retries", "3"]);
    assert_eq!(code(out.status), 1);
    assert_eq!(count_of(&f, "broken"), 4, "1 run + 3 reruns");
    assert_eq!(count_of(&f, "once-more"), 2);
    assert_eq!(count_of(&f, "never-again"), 1);
    let rep = f.report_json();
    assert_eq!(
        (rep["failed"].as_u64(), rep["flaky"].as_u64()),
        (Some(3), Some(0))
    );
    let r = f.results();
    assert_eq!(r["broken"]["attempts"].as_u64(), Some(4));
    assert_eq!(r["broken"]["failed_attempts"].as_array().unwrap().len(), 3);
    assert_eq!(r["broken"]["retries"].as_u64(), Some(3));
    assert_eq!(r["once-more"]["retries"].as_u64(), Some(1));
    let doc = crate::junit::check(&f.report().join("junit.xml"));
    assert_eq!(doc.case("broken").kind, "failure");
    assert_eq!(
        reruns(&doc, "broken"),
        vec![("rerunFailure".to_string(), "failed".to_string()); 3]
    );
    assert_eq!(reruns(&doc, "once-more").len(), 1);
    assert!(doc.case("never-again").reruns.is_empty());
}

#[test]
fn a_timed_out_leaky_attempt_is_retried_and_its_leak_reported_with_the_rerun_s() {
    let f = Fixture::new();
    // Every attempt leaves a setsid daemon behind; the first then hangs
    // past its timeout, the second passes.
    f.test(
        "hangs-once",
        "# timeout: 1s",
        "n=$(( $(cat \"$DIR/n\" 2>/dev/null || echo 0) + 1 )); echo $n > \"$DIR/n\"\n\
         setsid -f bash -c \"echo \\$\\$ > '$DIR/d$n.tmp'; mv '$DIR/d$n.tmp' '$DIR/daemon$n.pid'; exec sleep 300\"\n\
         while [ ! -f \"$DIR/daemon$n.pid\" ]; do sleep 0.01; done\n\
         if [ $n -eq 1 ]; then exec sleep 300; fi",
    );
    let out = f.run(&["--retries", "1"]);
    assert_eq!(code(out.status), 0);
    let (d1, d2) = (
        read_pid(&f.file("daemon1.pid")),
        read_pid(&f.file("daemon2.pid")),
    );
    assert!(
        !alive(d1) && !alive(d2),
        "both attempts' leftovers were ended"
    );
    let r = f.results();
    let t = &r["hangs-once"];
    assert_eq!(
        (t["result"].as_str(), t["flaky"].as_bool()),
        (Some("passed"), Some(true))
    );
    let first = &t["failed_attempts"][0];
    assert_eq!(first["result"], "timed-out");
    let pids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_i64().unwrap())
            .collect()
    };
    assert!(pids(&first["leaked_pids"]).contains(&(d1 as i64)));
    let all = pids(&t["leaked_pids"]);
    assert!(
        all.contains(&(d1 as i64)) && all.contains(&(d2 as i64)),
        "{all:?}"
    );
    assert_eq!(t["leaky"], true);
    let doc = crate::junit::check(&f.report().join("junit.xml"));
    assert_eq!(
        reruns(&doc, "hangs-once"),
        [("flakyFailure".into(), "timed-out".into())]
    );
}

#[test]
fn bad_retries_are_exit_2_naming_the_field() {
    let f = Fixture::new();
    f.test("a", "", "touch \"$DIR/ran\"");
    for bad in ["-1", "x", "101"] {
        let out = f.run(&[&format!("--retries={bad}")]);
        assert_eq!(code(out.status), 2, "--retries {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--retries"), "{err}");
    }
    f.test("b", "# retries: many", "true");
    let out = f.run(&[]);
    assert_eq!(code(out.status), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retries `many`") && err.contains("tests/b:2:"),
        "{err}"
    );
    assert!(!f.file("ran").exists(), "nothing ran");
}

#[test]
fn a_stop_during_a_rerun_cancels_it_and_no_further_attempt_starts() {
    let f = Fixture::new();
    // Attempt 1 fails; attempt 2 announces itself (whole, by a rename)
    // and holds until the runner is stopped.
    f.test(
        "flaky",
        "",
        "n=$(( $(cat \"$DIR/n\" 2>/dev/null || echo 0) + 1 )); echo $n > \"$DIR/n\"\n\
         [ $n -ge 2 ] || exit 1\n\
         echo $$ > \"$DIR/h.tmp\"; mv \"$DIR/h.tmp\" \"$DIR/hold.pid\"\nexec sleep 300",
    );
    let runner = f.spawn(&["--retries", "5"]);
    let hold = read_pid(&f.file("hold.pid"));
    support::send(runner.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let (rc, _) = stderr_of(runner);
    assert_eq!(rc, 143);
    assert!(!alive(hold));
    assert_eq!(f.lines("n"), ["2"], "no third attempt after the stop");
    let r = f.results();
    assert_eq!(result(&r, "flaky"), "cancelled");
    assert_eq!(r["flaky"]["attempts"].as_u64(), Some(2));
    assert_eq!(r["flaky"]["failed_attempts"][0]["status"], "exit 1");
    assert_eq!(r["flaky"]["flaky"], false);
}

#[test]
fn fail_fast_waits_for_the_last_attempt() {
    let f = Fixture::new();
    f.test("a", "# priority: 2", &attempts_body(2));
    f.test("b", "# priority: 1", "touch \"$DIR/b-ran\"");
    let out = f.run(&["--fail-fast", "--retries", "1"]);
    assert_eq!(
        code(out.status),
        0,
        "a failed attempt that is rerun stops nothing"
    );
    assert!(f.file("b-ran").exists());
    assert_eq!(f.report_json()["stopped"], Value::Null);
}

/// The runner's threads while `pid` runs (from /proc, so a thread that has
/// just ended is not counted).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn output_of_parallel_tests_goes_through_one_pump_not_threads_per_test() {
    // Four tests run at once, each printing a line on both streams and then
    // holding until `go` exists. While all four hold, the runner's thread
    // count is measured: the suite's threads (main, signal funnel, output
    // pump) and nothing per test; reader threads
    // per test would add two for each running test.
    let f = Fixture::new();
    for i in 0..4 {
        f.test(
            &format!("p{i}"),
            "",
            &format!(
                "echo out-{i}; echo err-{i} >&2; touch \"$DIR/ready-{i}\"\n\
                 while [ ! -e \"$DIR/go\" ]; do sleep 0.01; done; echo after-{i}"
            ),
        );
    }
    let runner = f.spawn(&["--parallel", "--max-workers", "4"]);
    for i in 0..4 {
        support::wait_for_file(&f.file(&format!("ready-{i}")));
    }
    let during = threads(runner.id());
    std::fs::write(f.file("go"), "").unwrap();
    let (rc, err) = stderr_of(runner);
    assert_eq!(rc, 0, "{err}");
    assert!(
        during <= 3,
        "{during} runner threads with four tests running: one output pump for the suite, none per test"
    );
    // Every stream still reaches its own file, whole, and the log.
    for i in 0..4 {
        let out = std::fs::read_to_string(f.report().join(format!("output/p{i}.stdout"))).unwrap();
        let errs = std::fs::read_to_string(f.report().join(format!("output/p{i}.stderr"))).unwrap();
        assert_eq!(out, format!("out-{i}\nafter-{i}\n"));
        assert_eq!(errs, format!("err-{i}\n"));
        assert!(err.contains(&format!("[p{i}] out-{i}")), "{err}");
        assert!(err.contains(&format!("[p{i} stderr] err-{i}")), "{err}");
    }
}
