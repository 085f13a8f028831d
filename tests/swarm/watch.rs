//! Watched through its tests (SPEC section 3 step 8), on the real swarm:
//! a version that serves, passes the update monitor and then dies some
//! seconds after each start is red in the tier whose tests it dies
//! under, though they pass; a version that keeps running through 20 s of
//! tests is green with no restart recorded.

use crate::converge::{assert_torn_down, push_pr, with_env, OwnImage};
use crate::engine::*;
use crate::support::*;

/// How long after each start the dying version exits (past the example's
/// 1 s update monitor), and how long the tests take (longer).
const DIES_AFTER: u64 = 6;
const TESTS_TAKE: u64 = 14;

/// A test of tiers `tiers` that passes after `secs` seconds.
fn slow_test(tiers: &str, secs: u64) -> String {
    format!("#!/bin/sh\n# tier: {tiers}\n# timeout: 60s\nset -eu\nsleep {secs}\n")
}

/// Pushes pull request `n`: the app on the dying image, and tests of the
/// install and upgrade tiers that take longer than it lives.
fn push_dying_pr(host: &SwarmHost, n: u32, image: &OwnImage) {
    let image_test = format!(
        "#!/bin/sh\n# tier: upgrade\n# timeout: 30s\nset -eu\nlib=\"$(dirname \"$0\")/example_app.py\"\npython3 \"$lib\" serves {}\n",
        image.0.rsplit(':').next().unwrap()
    );
    push_pr(
        host,
        n,
        |c| {
            with_env(
                &c.replace(
                    "image: ccci-example:2.0.0-pr",
                    &format!("image: {}", image.0),
                ),
                &format!("DIES_AFTER={DIES_AFTER}"),
            )
        },
        &[
            ("40-slow.sh", &slow_test("install, upgrade", TESTS_TAKE)),
            // Pull request 1's own test of its image, for this tag (as
            // converge.rs's once test does).
            ("30-pr-image.sh", &image_test),
        ],
    );
}

fn run(host: &SwarmHost, domain: &str, n: u32, run_id: &str, extra: &[&str]) -> (i32, String) {
    let out = host
        .cmd()
        .args([
            "run",
            "--recipe",
            "example",
            "--pr",
            &n.to_string(),
            "--domain",
            domain,
        ])
        .args(extra)
        .env("CCCI_RUN_ID", run_id)
        .output()
        .unwrap();
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run is red in `tier`'s test phase, its tests passed, and the
/// reason names the app service, its exit code 3 and a restart.
fn assert_red_by_the_watch(
    host: &SwarmHost,
    domain: &str,
    run_id: &str,
    tier: &str,
    code: i32,
    log: &str,
) {
    let stack = stack_of(domain);
    assert_eq!(code, 1, "{log}");
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "{tier} tier: the version under test exited while watched"
            ))
        })
        .unwrap_or_else(|| panic!("{log}"));
    for needle in [
        format!("service {stack}_app exited"),
        "exit code 3 at ".to_string(),
        "restarts: ".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?}: {line}");
    }
    let record = host.record(run_id);
    assert_eq!(record["failed_phase"], format!("test-{tier}"), "{record}");
    let t = record["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == tier)
        .cloned()
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(t["failed"], 0, "the tier's tests passed: {record}");
    let app = t["watch"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["service"] == format!("{stack}_app"))
        .cloned()
        .unwrap_or_else(|| panic!("{record}"));
    assert!(app["restarts"].as_u64().unwrap() >= 1, "{record}");
}

#[test]
fn version_that_dies_during_the_install_tier_tests_is_red() {
    let d = domain_for("watch-inst", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let image = OwnImage::build(host.tmp.path(), "dies");
    push_dying_pr(&host, 8, &image);
    let (code, log) = run(&host, &d, 8, "wdies-i", &["--quick"]);
    assert_red_by_the_watch(&host, &d, "wdies-i", "install", code, &log);
    assert_torn_down(&host, &d, "wdies-i");
}

#[test]
fn version_that_dies_during_the_upgrade_tier_tests_is_red() {
    let d = domain_for("watch-upg", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let image = OwnImage::build(host.tmp.path(), "dies");
    push_dying_pr(&host, 8, &image);
    let (code, log) = run(&host, &d, 8, "wdies-u", &[]);
    assert_red_by_the_watch(&host, &d, "wdies-u", "upgrade", code, &log);
    // The base release keeps running through the same tests: its tier is
    // green, with no restart.
    let record = host.record("wdies-u");
    let install = &record["tests"][0];
    assert_eq!(install["tier"], "install", "{record}");
    assert!(
        install["watch"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["restarts"] == 0),
        "{record}"
    );
    assert_torn_down(&host, &d, "wdies-u");
}

#[test]
fn good_version_whose_tests_take_20_s_is_green_with_no_restart() {
    let d = domain_for("watch-good", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    push_pr(
        &host,
        9,
        |c| with_env(c, "GOOD=1"),
        &[("40-slow.sh", &slow_test("install, upgrade, restore", 20))],
    );
    let (code, log) = run(&host, &d, 9, "wgood", &[]);
    assert_eq!(code, 0, "{log}");
    let record = host.record("wgood");
    // The watch's cost on a good run: each tier's test phase (20 s of
    // tests), for a comparison with a binary without the watch.
    let spans: Vec<String> = record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("test-"))
        .map(|p| format!("{} {} ms", p["name"], p["duration_ms"]))
        .collect();
    eprintln!(
        "watch cost, test phases of a good run: {}",
        spans.join(", ")
    );
    let tiers = record["tests"].as_array().unwrap();
    assert!(tiers.len() >= 2, "{record}");
    for t in tiers {
        let watch = t["watch"].as_array().unwrap();
        assert!(!watch.is_empty(), "{record}");
        assert!(watch.iter().all(|w| w["restarts"] == 0), "{record}");
    }
    assert_torn_down(&host, &d, "wgood");
}

/// How long after each start the version of the backup test dies: past
/// its upgrade tier (convergence and tests take a few seconds) and past
/// its restore tier's tests after the restart the test waits for (the
/// floor and one test).
const DIES_AFTER_BACKUP: u64 = 25;

/// Follows the engine's container events `action` of `image` and creates
/// `file` at the `nth` one (the second `start`: the first task of the
/// version under test died and the engine restarted it; the first `die`:
/// it died). Creates it anyway after two minutes (a run whose app never
/// died then goes on, and the test's asserts say what happened). The
/// events process is killed on drop.
struct OnEvent {
    events: std::process::Child,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OnEvent {
    fn start(
        stack: &str,
        image: &str,
        action: &str,
        nth: usize,
        file: &std::path::Path,
    ) -> OnEvent {
        use std::io::BufRead;
        let mut events = std::process::Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                &format!("event={action}"),
                "--filter",
                &format!("label=com.docker.stack.namespace={stack}"),
                "--format",
                "{{json .}}",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = events.stdout.take().unwrap();
        let (image, file, action) = (image.to_string(), file.to_path_buf(), action.to_string());
        let thread = std::thread::spawn(move || {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let of_image = e["Actor"]["Attributes"]["image"]
                        .as_str()
                        .is_some_and(|i| i.starts_with(&image));
                    let id = e["Actor"]["ID"].as_str().unwrap_or_default().to_string();
                    if of_image && tx.send(id).is_err() {
                        return;
                    }
                }
            });
            let bound = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let mut seen = Vec::new();
            while seen.len() < nth {
                let left = bound.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(id) => seen.push(id),
                    Err(_) => break,
                }
            }
            // A container's `die` comes a moment before `docker ps` stops
            // listing it as running (a copy then still finds it): wait
            // for the engine's list, as the stand-in's steps read it.
            if let Some(id) = seen.last().filter(|_| action == "die") {
                while std::time::Instant::now() < bound
                    && !docker(&[
                        "ps",
                        "-q",
                        "--filter",
                        &format!("id={id}"),
                        "--filter",
                        "status=running",
                    ])
                    .is_empty()
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            std::fs::write(&file, b"").unwrap();
        });
        OnEvent {
            events,
            thread: Some(thread),
        }
    }
}

impl Drop for OnEvent {
    fn drop(&mut self) {
        let _ = self.events.kill();
        let _ = self.events.wait();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pushes pull request `n`: the app on the dying image, dying
/// [`DIES_AFTER_BACKUP`] seconds after each start, and only its own
/// upgrade-tier test of the image (the recipe's tests are short).
fn push_dies_after_upgrade(host: &SwarmHost, n: u32, image: &OwnImage) {
    let image_test = format!(
        "#!/bin/sh\n# tier: upgrade\n# timeout: 30s\nset -eu\nlib=\"$(dirname \"$0\")/example_app.py\"\npython3 \"$lib\" serves {}\n",
        image.0.rsplit(':').next().unwrap()
    );
    push_pr(
        host,
        n,
        |c| {
            with_env(
                &c.replace(
                    "image: ccci-example:2.0.0-pr",
                    &format!("image: {}", image.0),
                ),
                &format!("DIES_AFTER={DIES_AFTER_BACKUP}"),
            )
        },
        &[("30-pr-image.sh", &image_test)],
    );
}

#[test]
fn version_that_dies_after_its_upgrade_tests_is_red_in_the_backup_restore_tier() {
    // The dying version's upgrade tier converges and its tests end before
    // it dies; then `abra app backup create`, and `abra app restore`,
    // which the stand-in starts only once the engine restarted the app
    // (CCCI_FAKE_ABRA_WAIT_FOR, created on the second start event): the
    // death lands in the backup/restore tier's steps, before the restore's
    // convergence. The watch spans them: red in the restore tier, whose
    // tests pass, with the upgrade tier green and no restart in it.
    let d = domain_for("watch-bak", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let stack = stack_of(&d);
    let image = OwnImage::build(host.tmp.path(), "dies");
    push_dies_after_upgrade(&host, 10, &image);
    let restarted = host.tmp.path().join("restarted");
    let follower = OnEvent::start(&stack, &image.0, "start", 2, &restarted);
    let out = host
        .cmd()
        .args(["run", "--recipe", "example", "--pr", "10", "--domain", &d])
        .env("CCCI_RUN_ID", "wdies-b")
        .env(
            "CCCI_FAKE_ABRA_WAIT_FOR",
            format!("restore@{}", restarted.display()),
        )
        .output()
        .unwrap();
    drop(follower);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    // Where the death landed, for the reader of the test's output.
    for l in log.lines().filter(|l| {
        [
            "converged in",
            "watch: service",
            "phase ",
            "backup",
            "restore",
        ]
        .iter()
        .any(|n| l.contains(n))
    }) {
        eprintln!("{l}");
    }
    let record = host.record("wdies-b");
    let upgrade = record["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "upgrade")
        .cloned()
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(upgrade["failed"], 0, "{record}");
    assert!(
        upgrade["watch"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["restarts"] == 0),
        "the upgrade tier's tests ended before the version died: {record}"
    );
    assert_red_by_the_watch(&host, &d, "wdies-b", "restore", code(out.status), &log);
    assert_torn_down(&host, &d, "wdies-b");
}

#[test]
fn restore_step_that_fails_because_the_version_died_is_red_naming_the_exit() {
    // As above, but `abra app restore` starts once the app died (its
    // first `die` event) and finds no running container to copy into
    // (the engine restarts it 5 s later): the step fails because of the
    // version under test. Red (exit 1) naming the service and its exit
    // code first, then the step's error, in the restore phase; not an
    // infrastructure failure (exit 3) that names only the step.
    let d = domain_for("watch-bakstep", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let stack = stack_of(&d);
    let image = OwnImage::build(host.tmp.path(), "dies");
    push_dies_after_upgrade(&host, 12, &image);
    let died = host.tmp.path().join("died");
    let follower = OnEvent::start(&stack, &image.0, "die", 1, &died);
    let out = host
        .cmd()
        .args(["run", "--recipe", "example", "--pr", "12", "--domain", &d])
        .env("CCCI_RUN_ID", "wdies-bs")
        .env(
            "CCCI_FAKE_ABRA_WAIT_FOR",
            format!("restore@{}", died.display()),
        )
        .output()
        .unwrap();
    drop(follower);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 1, "{log}");
    let line = log
        .lines()
        .find(|l| {
            l.contains(
                "error: backup/restore tier failed: the version under test exited while watched",
            )
        })
        .unwrap_or_else(|| panic!("{log}"));
    for needle in [
        format!("service {stack}_app exited"),
        "exit code 3 at ".to_string(),
        "no running container".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?}: {line}");
    }
    eprintln!("{line}");
    let record = host.record("wdies-bs");
    assert_eq!(record["failed_phase"], "restore", "{record}");
    assert_eq!(record["verdict"], "failed", "{record}");
    assert_torn_down(&host, &d, "wdies-bs");
}
