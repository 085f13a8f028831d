//! Convergence means the deployed version runs (SPEC section 3 step 8), on
//! the real swarm: upgrades to pull requests of the example recipe whose
//! new task never starts, starts slowly, or starts and crashes. Each pull
//! request is a real commit of the test's recipe repository
//! (`refs/pull/N/head`, made from pull request 1's head) whose compose file
//! changes the app service.

use std::path::Path;
use std::process::Command;

use crate::engine::*;
use crate::support::*;

/// Pushes a pull request `n` to the host's upstream recipe repository:
/// pull request 1's head with `edit` applied to compose.yml and the
/// `tests` files added. Returns its sha.
pub(crate) fn push_pr(
    host: &SwarmHost,
    n: u32,
    edit: impl Fn(&str) -> String,
    tests: &[(&str, &str)],
) -> String {
    let upstream = host.tmp.path().join("recipe/upstream.git");
    let work = host.tmp.path().join(format!("pr-{n}"));
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=ccci test",
                "-c",
                "user.email=t@ccci.invalid",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(
        host.tmp.path(),
        &[
            "clone",
            "-q",
            upstream.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["fetch", "-q", "origin", "refs/pull/1/head"]);
    git(&work, &["checkout", "-q", "FETCH_HEAD"]);
    let compose = work.join("compose.yml");
    let before = std::fs::read_to_string(&compose).unwrap();
    let after = edit(&before);
    assert_ne!(before, after, "the pull request changes the compose file");
    std::fs::write(&compose, after).unwrap();
    for (name, body) in tests {
        let path = work.join("tests").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", &format!("pull request {n}")]);
    git(
        &work,
        &["push", "-q", "origin", &format!("HEAD:refs/pull/{n}/head")],
    );
    git(&work, &["rev-parse", "HEAD"])
}

/// Adds lines to the app service's block right after its image line.
pub(crate) fn after_image(compose: &str, lines: &str) -> String {
    let mut out = String::new();
    for l in compose.lines() {
        out.push_str(l);
        out.push('\n');
        if l.trim_start().starts_with("image: ccci-example:") {
            out.push_str(lines);
        }
    }
    out
}

/// Adds `VAR=VALUE` to the app service's environment list.
pub(crate) fn with_env(compose: &str, var: &str) -> String {
    compose.replacen(
        "      - DOMAIN\n",
        &format!("      - DOMAIN\n      - {var}\n"),
        1,
    )
}

/// `run --recipe example --pr N --domain D`
pub(crate) fn run_pr(host: &SwarmHost, domain: &str, n: u32, run_id: &str) -> (i32, String) {
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
        .env("CCCI_RUN_ID", run_id)
        .output()
        .unwrap();
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn assert_torn_down(host: &SwarmHost, domain: &str, run_id: &str) {
    let left = leftovers(host, domain);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    assert!(host.lock_free("apps", domain), "app lock held");
    assert!(host.lock_free("runs", run_id), "run lock held");
    assert!(host.tree_gone(run_id), "run tree left");
}

#[test]
fn upgrade_to_a_pr_whose_new_container_never_starts_fails_with_exit_3_and_is_torn_down() {
    let d = domain_for("conv-never", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    push_pr(
        &host,
        2,
        |c| after_image(c, "    entrypoint: [\"/nonexistent\"]\n"),
        &[],
    );
    let (code, log) = run_pr(&host, &d, 2, "never");
    assert_eq!(code, 3, "{log}");
    let stack = stack_of(&d);
    for needle in [
        "upgrade tier: convergence failed".to_string(),
        format!("service {stack}_app: update paused"),
        "last task error: starting container failed".to_string(),
        "/nonexistent".to_string(),
    ] {
        assert!(log.contains(&needle), "the error names {needle:?}: {log}");
    }
    assert_torn_down(&host, &d, "never");
}

#[test]
fn upgrade_that_the_engine_pauses_fails_with_exit_3() {
    // The new task starts, listens, and exits 1 after 300 ms: within the
    // update's monitor period (1 s), so the engine pauses the update.
    let d = domain_for("conv-pause", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    push_pr(&host, 3, |c| with_env(c, "EXIT_AFTER_MS=300"), &[]);
    let (code, log) = run_pr(&host, &d, 3, "pause");
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains(&format!("service {}_app: update paused", stack_of(&d))),
        "{log}"
    );
    assert!(
        log.contains("last task error: task: non-zero exit (1)"),
        "{log}"
    );
    assert_torn_down(&host, &d, "pause");
}

/// The upgrade tier's first test (`00-answers.sh` sorts before the
/// recipe's `00-deployed.sh`, whose checks retry until the wanted version
/// answers): five GETs of `/`, each retried only while nothing listens,
/// every answer appended to `$CCCI_EXAMPLE_READY_DIR/answers`; any answer
/// that is not the pull request's version fails it.
const ANSWERS_TEST: &str = r#"#!/bin/sh
# level: system
# tier: upgrade
# timeout: 60s
set -eu
lib="$(dirname "$0")/example_app.py"
out="${CCCI_EXAMPLE_READY_DIR:?}/answers"
i=0
while [ "$i" -lt 5 ]; do
  python3 "$lib" get / >>"$out"
  i=$((i + 1))
done
cat "$out"
if grep -v '^ccci-example 2\.0\.0-pr$' "$out" >&2; then
  echo "an answer above is not the pull request's version" >&2
  exit 1
fi
"#;

#[test]
fn upgrade_tests_of_a_slow_starting_version_see_the_new_version_never_the_old() {
    // The new server sleeps 3 s before it listens: its task is running,
    // and the update completes, before it answers. The old one answers
    // until the engine stops it.
    let d = domain_for("conv-slow", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    push_pr(
        &host,
        4,
        |c| with_env(c, "START_DELAY_MS=3000"),
        &[("00-answers.sh", ANSWERS_TEST)],
    );
    let (code, log) = run_pr(&host, &d, 4, "slow");
    let answers = std::fs::read_to_string(host.ready.join("answers")).unwrap_or_default();
    assert_eq!(code, 0, "answers: {answers}\n{log}");
    let got: Vec<&str> = answers.lines().collect();
    assert_eq!(got, ["ccci-example 2.0.0-pr"; 5], "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("converged in") && l.contains("(update completed)")),
        "{log}"
    );
    assert_torn_down(&host, &d, "slow");
}

/// One service per form public recipes' compose files take that the
/// engine's inspected template shows with defaults its tasks lack: a
/// restart policy left unset (with a grace period), a grace period left
/// unset (with a restart policy), resources, placement, a healthcheck
/// with a start period, a config, a secret, a network alias. Every one
/// runs the pull request's image; only the config's file is borrowed
/// from the recipe (its README).
const FORM_SERVICES: &str = r#"  norestart:
    image: ccci-example:2.0.0-pr
    stop_grace_period: 20s
  nograce:
    image: ccci-example:2.0.0-pr
    deploy:
      restart_policy:
        condition: on-failure
  resources:
    image: ccci-example:2.0.0-pr
    deploy:
      resources:
        limits:
          cpus: "0.25"
          memory: 32M
        reservations:
          memory: 8M
  placement:
    image: ccci-example:2.0.0-pr
    deploy:
      placement:
        constraints:
          - node.role == manager
        max_replicas_per_node: 1
  healthcheck:
    image: ccci-example:2.0.0-pr
    healthcheck:
      test: ["CMD", "/server", "--version"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 10s
  configs:
    image: ccci-example:2.0.0-pr
    configs:
      - source: form_conf
        target: /form.conf
  secrets:
    image: ccci-example:2.0.0-pr
    secrets:
      - api_key
  aliases:
    image: ccci-example:2.0.0-pr
    networks:
      backend:
        aliases:
          - db-alias

configs:
  form_conf:
    file: ./README.md
    name: ${STACK_NAME}_form_conf_v1

networks:
  backend:

"#;

/// The forms' services added to the compose file, before its top-level
/// `secrets:`.
fn with_form_services(compose: &str) -> String {
    assert!(compose.contains("\nsecrets:\n"), "{compose}");
    compose.replacen("\nsecrets:\n", &format!("\n{FORM_SERVICES}secrets:\n"), 1)
}

/// A cc-ci-run test (install tier) that saves the engine's own clock for
/// the stack: `docker inspect --type task` of every task to `tasks.json`,
/// and the stack's container events so far (`start`, `health_status`) to
/// `events.jsonl`, in `$CCCI_EXAMPLE_READY_DIR`.
fn save_engine_clock(host: &SwarmHost, stack: &str) {
    let dir = host.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = script(
        &dir,
        "50-engine-clock.sh",
        &format!(
            r#"#!/bin/sh
# tier: install
# timeout: 60s
set -eu
out="${{CCCI_EXAMPLE_READY_DIR:?}}"
services=$(docker service ls -q --filter label=com.docker.stack.namespace={stack})
docker inspect --type task $(docker service ps -q --no-trunc $services) >"$out/tasks.json"
# To the nanosecond: a whole-second --until drops the events of the
# current second, such as the healthcheck's `healthy` right before the
# convergence these tests follow.
now=$(date +%s)
docker events --since $((now - 600)) --until "$(date +%s.%N)" --filter type=container \
  --filter label=com.docker.stack.namespace={stack} --format '{{{{json .}}}}' >"$out/events.jsonl"
"#
        ),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn nanos(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128
}

#[test]
fn services_of_every_form_converge_once_their_tasks_run() {
    // A quick run (one deploy of the pull request, its install tier) of a
    // stack whose services take each form. Compared leaf by leaf with the
    // CLI's template, the services with no restart policy never "run the
    // current spec" and the wait runs to its bound (60 s, exit 3).
    let d = domain_for("conv-forms", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let stack = stack_of(&d);
    push_pr(&host, 5, with_form_services, &[]);
    save_engine_clock(&host, &stack);
    let out = host
        .cmd()
        .args([
            "run", "--recipe", "example", "--pr", "5", "--domain", &d, "--quick",
        ])
        .env("CCCI_RUN_ID", "forms")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 0, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(&format!("stack {stack} converged in")))
        .unwrap_or_else(|| panic!("no convergence line: {log}"));
    let converged_at = cc_ci_run::log::parse_timestamp(line.split(' ').next().unwrap())
        .unwrap_or_else(|| panic!("no timestamp: {line}"));
    let forms = [
        "app",
        "norestart",
        "nograce",
        "resources",
        "placement",
        "healthcheck",
        "configs",
        "secrets",
        "aliases",
    ];
    for f in forms {
        assert!(line.contains(&format!("{stack}_{f} 1/1")), "{f}: {line}");
    }

    // The engine's clock: when each service's task started running, by
    // its container's events (`health_status: healthy` for the one with
    // a healthcheck: swarm reports its task running only then), and by
    // the task's own `Status.Timestamp` (when the manager recorded it).
    let ready = &host.ready;
    let events = std::fs::read_to_string(ready.join("events.jsonl")).unwrap();
    let tasks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ready.join("tasks.json")).unwrap()).unwrap();
    let mut figures = Vec::new();
    for f in forms {
        let service = format!("{stack}_{f}");
        let want = if f == "healthcheck" {
            "health_status: healthy"
        } else {
            "start"
        };
        let mine: Vec<serde_json::Value> = events
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["Actor"]["Attributes"]["com.docker.swarm.service.name"] == *service)
            .collect();
        let running_event = mine
            .iter()
            .filter(|e| e["Action"] == want)
            .map(|e| e["timeNano"].as_i64().unwrap() as i128)
            .max()
            .unwrap_or_else(|| panic!("{service}: no {want} event: {events}"));
        // Its running task: the one whose container those events are of.
        let task_running = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["Status"]["State"] == "running")
            .filter(|t| {
                let cid = &t["Status"]["ContainerStatus"]["ContainerID"];
                mine.iter().any(|e| e["Actor"]["ID"] == *cid)
            })
            .filter_map(|t| cc_ci_run::log::parse_timestamp(t["Status"]["Timestamp"].as_str()?))
            .max()
            .unwrap_or_else(|| panic!("{service}: no running task: {tasks}"));
        let converged = nanos(converged_at);
        // Correctness: the wait ended after this service's task ran, never
        // before (the log's clock and the engine's are this host's).
        assert!(
            converged >= running_event,
            "{service}: converged {} ms before its task ran",
            (running_event - converged) / 1_000_000
        );
        figures.push(format!(
            "{f}: {} ms after its {want} event, {} ms after the task's running timestamp",
            (converged - running_event) / 1_000_000,
            (converged - nanos(task_running)) / 1_000_000
        ));
    }
    eprintln!(
        "convergence timing (the log's 'converged' line vs the engine):\n  {}",
        figures.join("\n  ")
    );
    assert_torn_down(&host, &d, "forms");
}

/// An image of a test's own, `ccci-example:2.0.0-pr-KIND-PID`: the
/// example server plus `KIND` (tests/swarm/images/KIND.c) as its entry
/// point, both static, FROM scratch (`once`: exits 1 on its first start
/// and runs from the second on; `dies`: serves, then exits 3 some seconds
/// after each start). Removed on drop.
pub(crate) struct OwnImage(pub(crate) String);

impl OwnImage {
    pub(crate) fn build(tmp: &Path, kind: &str) -> OwnImage {
        let tag = format!("ccci-example:2.0.0-pr-{kind}-{}", std::process::id());
        let ctx = tmp.join(format!("{kind}-image"));
        std::fs::create_dir_all(&ctx).unwrap();
        let cc = |out: &str, src: &Path, extra: &[&str]| {
            let st = Command::new("gcc")
                .args(["-static", "-O2", "-Wall", "-Wextra", "-o"])
                .arg(ctx.join(out))
                .args(extra)
                .arg(src)
                .status()
                .unwrap();
            assert!(st.success(), "gcc {out}");
        };
        // The server answers with its image's tag, as the example's do
        // (the recipe's 00-deployed.sh checks that).
        let version = tag.rsplit(':').next().unwrap();
        cc(
            "server",
            &repo().join("examples/recipe/image/server.c"),
            &[&format!("-DVERSION=\"{version}\"")],
        );
        cc(
            kind,
            &repo().join(format!("tests/swarm/images/{kind}.c")),
            &[],
        );
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY server /server\nCOPY {kind} /{kind}\nENTRYPOINT [\"/{kind}\"]\n"),
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .arg(&ctx)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OwnImage(tag)
    }
}

impl Drop for OwnImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", &self.0])
            .output();
    }
}

#[test]
fn upgrade_whose_app_exits_once_then_runs_is_green_with_a_warning() {
    // The new task exits 1 at once (within the update's 1 s monitor): the
    // engine pauses the update, restarts the task 5 s later, and from then
    // on it runs. Judged by what runs: green after the stability window,
    // with the pause in the log and the record.
    let d = domain_for("conv-once", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let image = OwnImage::build(host.tmp.path(), "once");
    // The pull request's own test of its image (pull request 1's wants
    // the 2.0.0-pr tag).
    let image_test = format!(
        "#!/bin/sh\n# tier: upgrade\n# timeout: 30s\nset -eu\nlib=\"$(dirname \"$0\")/example_app.py\"\npython3 \"$lib\" serves {}\n",
        image.0.rsplit(':').next().unwrap()
    );
    push_pr(
        &host,
        6,
        |c| {
            c.replace(
                "image: ccci-example:2.0.0-pr",
                &format!("image: {}", image.0),
            )
        },
        &[("30-pr-image.sh", &image_test)],
    );
    let out = host
        .cmd()
        .args(["run", "--recipe", "example", "--pr", "6", "--domain", &d])
        .env("CCCI_RUN_ID", "once")
        .env("CCCI_STABLE_FOR", "5s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 0, "{log}");
    let stack = stack_of(&d);
    assert!(
        log.contains(&format!(
            "warning: upgrade tier: service {stack}_app: update paused"
        )),
        "{log}"
    );
    assert!(log.contains("(the stability window)"), "{log}");
    let record = host.record("once");
    let warnings = record["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{record}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("upgrade tier: service {stack}_app: update paused")),
        "{record}"
    );
    assert_torn_down(&host, &d, "once");
}

#[test]
fn install_tier_crash_loop_fails_with_exit_3_after_three_exits_not_at_the_bound() {
    // A quick run deploys the pull request in the install tier, whose app
    // cannot start (its entry point does not exist); the engine retries
    // it every 5 s (restart policy on-failure). No update status: only the
    // exits say it loops.
    let d = domain_for("conv-loop", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let stack = stack_of(&d);
    push_pr(
        &host,
        7,
        |c| after_image(c, "    entrypoint: [\"/nonexistent\"]\n"),
        &[],
    );
    // The engine's clock for the first attempt: the container events
    // (a container that cannot start sends `create`, never `die`).
    let dies = host.tmp.path().join("dies.jsonl");
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            &format!("label=com.docker.stack.namespace={stack}"),
            "--format",
            "{{json .}}",
        ])
        .stdout(std::fs::File::create(&dies).unwrap())
        .spawn()
        .unwrap();
    let out = host
        .cmd()
        .args([
            "run", "--recipe", "example", "--pr", "7", "--domain", &d, "--quick",
        ])
        .env("CCCI_RUN_ID", "loop")
        .output()
        .unwrap();
    let _ = events.kill();
    let _ = events.wait();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 3, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("install tier: convergence failed"))
        .unwrap_or_else(|| panic!("{log}"));
    for needle in [
        format!("service {stack}_app: crash loop: the current spec's tasks exited 3 times (last: exit code"),
        "last task error: starting container failed".to_string(),
        "/nonexistent".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?}: {line}");
    }
    let verdict = cc_ci_run::log::parse_timestamp(line.split(' ').next().unwrap())
        .unwrap_or_else(|| panic!("no timestamp: {line}"));
    let first_die = std::fs::read_to_string(&dies)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["Action"] == "create"
                && e["Actor"]["Attributes"]["com.docker.swarm.service.name"]
                    == *format!("{stack}_app")
        })
        .filter_map(|e| e["timeNano"].as_i64())
        .min()
        .unwrap_or_else(|| panic!("no die event of the app"));
    let took = (nanos(verdict) - first_die as i128) / 1_000_000;
    eprintln!("crash loop: first attempt (its container's create event; it fails at once) to verdict {took} ms");
    // Correctness, not speed: the verdict came after the first exit and
    // well inside the 60 s bound.
    assert!(took > 0 && took < 50_000, "{took} ms");
    assert_torn_down(&host, &d, "loop");
}

#[test]
fn upgrade_whose_app_never_recovers_from_its_first_exit_fails_with_exit_3_before_the_bound() {
    // The same image and recipe as the once test above, but the app
    // cannot write its marker (DATA_DIR names no directory in the image):
    // every start is its first, and exits at once. The engine pauses the
    // update and keeps restarting the task; the current spec never runs.
    // Red (exit 3, a failed deploy of the upgrade tier), never green with
    // a warning, and long before the convergence bound.
    let d = domain_for("conv-never-once", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let image = OwnImage::build(host.tmp.path(), "once");
    push_pr(
        &host,
        11,
        |c| {
            with_env(
                &c.replace(
                    "image: ccci-example:2.0.0-pr",
                    &format!("image: {}", image.0),
                ),
                "DATA_DIR=/nonexistent",
            )
        },
        &[],
    );
    let out = host
        .cmd()
        .args(["run", "--recipe", "example", "--pr", "11", "--domain", &d])
        .env("CCCI_RUN_ID", "never-once")
        .env("CCCI_STABLE_FOR", "5s")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 3, "{log}");
    let stack = stack_of(&d);
    let line = log
        .lines()
        .find(|l| l.contains("upgrade tier: convergence failed"))
        .unwrap_or_else(|| panic!("{log}"));
    for needle in [
        format!("service {stack}_app: update paused"),
        "last task error: task: non-zero exit (2)".to_string(),
    ] {
        assert!(line.contains(&needle), "{needle:?}: {line}");
    }
    eprintln!("{line}");
    assert!(!log.contains("taken as a start-up hiccup"), "{log}");
    let record = host.record("never-once");
    assert_eq!(record["failed_phase"], "upgrade-converge", "{record}");
    assert!(
        record["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{record}"
    );
    // Not at the bound (60 s on this host): the wait's own span.
    let waited = record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "upgrade-converge")
        .and_then(|p| p["duration_ms"].as_u64())
        .unwrap_or_else(|| panic!("{record}"));
    eprintln!("never recovers: the upgrade's convergence wait failed after {waited} ms");
    assert!(waited < 45_000, "{waited} ms: {record}");
    assert_torn_down(&host, &d, "never-once");
}
