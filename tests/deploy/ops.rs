//! The operations side, proved without network: `.drone.yml` read as Drone
//! reads it (one YAML document per pipeline) and checked against the rules
//! its header states; the pull-request step run *as written* through a
//! simulation of Drone's exec runner, to completion and cancelled; every
//! `.nix` file parsed (`scripts/check-nix.sh`); the README's `sh runnable`
//! blocks run as written; `completions` and `man`. Each check also has a
//! test that feeds it a broken copy, so a check that cannot fail is caught.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_norway::Value;

use crate::support::*;

/// Drone's default stage timeout: at it, the runner SIGKILLs the step's sh.
const STAGE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Room left in the stage after the run deadline and the teardown bound:
/// the phase's stop (SIGTERM, `--grace`, SIGKILL), the janitor sweep, the
/// wrapper's own exit.
const STAGE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The recipe pipelines and the Drone event each one runs on.
const RECIPE_PIPELINES: [(&str, &str); 3] = [
    ("recipe-push", "push"),
    ("recipe-pull-request", "pull_request"),
    ("recipe-testme", "custom"),
];

/// The project's own CI pipeline and what its steps must run.
const OWN_PIPELINE: &str = "cc-ci-run";
const OWN_STEPS: [(&str, &str); 5] = [
    ("lint", "scripts/lint.sh"),
    ("unit", "cargo nextest run --profile ci --test unit"),
    (
        "concurrency",
        "cargo nextest run --profile ci --test concurrency",
    ),
    ("deploy", "cargo nextest run --profile ci --test deploy"),
    (
        "nix",
        "cargo nextest run --profile ci --features nix-tests --test nix",
    ),
];

/// Test targets that need a Docker engine (a one-node swarm), which the
/// project's own Docker pipeline does not have: `.ci/run` runs them.
// `multiswarm` needs root, network namespaces and three dockerd of the
// host's engine (.ci/run runs it); a Drone exec step has none of them.
const ENGINE_TARGETS: [&str; 2] = ["swarm", "multiswarm"];

/// The `name` of every `[[test]]` table of Cargo.toml.
fn test_targets() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_test = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if let Some(v) = line.strip_prefix("name = ").filter(|_| in_test) {
            names.push(v.trim_matches('"').to_string());
        }
    }
    assert!(names.len() >= 5, "Cargo.toml's test targets: {names:?}");
    names
}

fn drone_yml() -> String {
    std::fs::read_to_string(repo().join(".drone.yml")).expect("read .drone.yml")
}

/// The documents of a Drone file, in order.
fn documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).map_err(|e| format!("not valid YAML: {e}")))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

fn pipeline<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["name"].as_str() == Some(name))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The commands of every step of a pipeline, in order.
fn step_commands(p: &Value) -> Vec<(String, Vec<String>)> {
    p["steps"]
        .as_sequence()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_string(),
                        strings(&s["commands"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `--flag V` or `--flag=V` in a command line.
fn flag_value(command: &str, flag: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, w)| {
        if *w == flag {
            words.get(i + 1).map(|v| v.trim_matches('"').to_string())
        } else {
            w.strip_prefix(&format!("{flag}="))
                .map(|v| v.trim_matches('"').to_string())
        }
    })
}

/// The rules a recipe step's command follows; problems, or none.
fn check_recipe_command(pipeline: &str, command: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let at = |what: String| format!("{pipeline}: {what}: `{command}`");
    if command.contains("${") {
        problems.push(at(
            "`${...}` is substituted by the Drone server before the step runs (unknown names become empty); write `$NAME`".into(),
        ));
    }
    if command.contains('`') {
        problems.push(at(
            "a backtick runs in the runner's trace line (`echo + \"...\"`) before the command itself".into(),
        ));
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some(pos) = words.iter().position(|w| w.ends_with("cc-ci-run")) else {
        return problems;
    };
    if words[pos] != "cc-ci-run" {
        problems.push(at(
            "call `cc-ci-run` by name, found on PATH (the runner's PATH, the test's stand-ins)"
                .into(),
        ));
    }
    if words[..pos].contains(&"exec") {
        problems.push(at(
            "`exec` replaces the step's sh: its SIGKILL on cancel would no longer reach cc-ci-run as its parent's death".into(),
        ));
    }
    // The bounds below are the run's; `comment` has its own (--timeout).
    if words.get(pos + 1) != Some(&"run") {
        return problems;
    }
    let duration = |flag: &str| {
        flag_value(command, flag).and_then(|v| cc_ci_run::units::parse_duration(&v).ok())
    };
    match (duration("--timeout"), duration("--teardown-timeout")) {
        (Some(run), Some(teardown)) => {
            if run + teardown + STAGE_MARGIN > STAGE_TIMEOUT {
                problems.push(at(format!(
                    "--timeout {} + --teardown-timeout {} + {} margin exceed the {} stage timeout",
                    cc_ci_run::units::human(run),
                    cc_ci_run::units::human(teardown),
                    cc_ci_run::units::human(STAGE_MARGIN),
                    cc_ci_run::units::human(STAGE_TIMEOUT)
                )));
            }
        }
        _ => problems.push(at(
            "needs --timeout and --teardown-timeout (durations) below the stage timeout".into(),
        )),
    }
    problems
}

/// Checks a Drone file against the pipelines and rules `.drone.yml`'s
/// header promises. Returns every problem found (none: the file is good).
fn check_drone(text: &str) -> Vec<String> {
    let docs = match documents(text) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for d in &docs {
        let name = d["name"].as_str().unwrap_or("");
        if d["kind"].as_str() != Some("pipeline") || name.is_empty() {
            problems.push(format!(
                "every document is a pipeline with a name: {}",
                serde_norway::to_string(d).unwrap_or_default()
            ));
        }
        if names.contains(&name) {
            problems.push(format!("pipeline name `{name}` twice"));
        }
        names.push(name);
    }

    match pipeline(&docs, OWN_PIPELINE) {
        None => problems.push(format!(
            "no `{OWN_PIPELINE}` pipeline (the project's own CI)"
        )),
        Some(p) => {
            let steps = step_commands(p);
            for (step, needs) in OWN_STEPS {
                match steps.iter().find(|(n, _)| n == step) {
                    None => problems.push(format!("{OWN_PIPELINE}: no `{step}` step")),
                    Some((_, cmds)) if !cmds.iter().any(|c| c.contains(needs)) => problems.push(
                        format!("{OWN_PIPELINE}: step `{step}` does not run `{needs}`"),
                    ),
                    Some(_) => {}
                }
            }
            let all: Vec<String> = steps.iter().flat_map(|(_, c)| c.clone()).collect();
            for target in test_targets() {
                if ENGINE_TARGETS.contains(&target.as_str()) {
                    continue;
                }
                if !all.iter().any(|c| c.contains(&format!("--test {target}"))) {
                    problems.push(format!(
                        "{OWN_PIPELINE}: the test target `{target}` (no engine needed) is not run"
                    ));
                }
            }
        }
    }

    // The pull-request step tests the build's commit, which Drone reports
    // on; custom builds run only in the CI repository.
    if let Some(p) = pipeline(&docs, "recipe-pull-request") {
        let commands: Vec<String> = step_commands(p).into_iter().flat_map(|(_, c)| c).collect();
        if !commands
            .iter()
            .any(|c| c.contains("cc-ci-run run") && c.contains("--ref \"$DRONE_COMMIT_SHA\""))
        {
            problems.push(
                "recipe-pull-request: `--ref \"$DRONE_COMMIT_SHA\"`: test the build's commit, not the pull request's head at fetch time".into(),
            );
        }
    }
    for name in ["recipe-pull-request", "recipe-testme"] {
        if let Some(p) = pipeline(&docs, name) {
            problems.extend(check_comment_step(name, p));
        }
    }
    if let Some(p) = pipeline(&docs, "recipe-testme") {
        let include = strings(&p["trigger"]["repo"]["include"]);
        if include.is_empty() || include.iter().any(|r| r.starts_with('*')) {
            problems.push(
                "recipe-testme: `trigger.repo.include` names the CI repository (custom builds of any other repository are not `!testme`)".into(),
            );
        }
    }
    for (name, _) in RECIPE_PIPELINES {
        let Some(p) = pipeline(&docs, name) else {
            continue;
        };
        for (step, _) in step_commands(p) {
            let Some(s) = p["steps"]
                .as_sequence()
                .and_then(|v| v.iter().find(|s| s["name"].as_str() == Some(step.as_str())))
            else {
                continue;
            };
            if let Some(env) = s["environment"].as_mapping() {
                for k in env.keys().filter_map(Value::as_str) {
                    if cc_ci_run::host::host_owned(k) {
                        problems.push(format!(
                            "{name}: step `{step}` sets the host-owned {k} in its environment (exit 2 on a host with its settings file): pass a flag"
                        ));
                    }
                }
            }
        }
    }

    for (name, event) in RECIPE_PIPELINES {
        let Some(p) = pipeline(&docs, name) else {
            problems.push(format!("no `{name}` pipeline"));
            continue;
        };
        if p["type"].as_str() != Some("exec") {
            problems.push(format!("{name}: `type: exec` (the CI host's exec runner)"));
        }
        if !strings(&p["trigger"]["event"]).iter().any(|e| e == event) {
            problems.push(format!("{name}: does not trigger on `{event}`"));
        }
        let commands: Vec<String> = step_commands(p).into_iter().flat_map(|(_, c)| c).collect();
        let runs = commands
            .iter()
            .filter(|c| c.contains("cc-ci-run run"))
            .count();
        if runs != 1 {
            problems.push(format!(
                "{name}: {runs} commands call `cc-ci-run run`, expected one"
            ));
        }
        for c in &commands {
            problems.extend(check_recipe_command(name, c));
        }
    }
    problems
}

/// A recipe pipeline's `comment` step: after the test step, running when
/// it passed or failed, with the token from a secret (never a literal in
/// the file); in `recipe-testme`, naming the recipe's repository (the
/// build is the CI repository's, whose DRONE_REPO is not the recipe's).
fn check_comment_step(name: &str, p: &Value) -> Vec<String> {
    let at = |what: &str| format!("{name}: step `comment`: {what}");
    let steps = p["steps"].as_sequence().cloned().unwrap_or_default();
    let Some(i) = steps.iter().position(|s| {
        strings(&s["commands"])
            .iter()
            .any(|c| c.trim_start().starts_with("cc-ci-run comment"))
    }) else {
        return vec![at(
            "no step runs `cc-ci-run comment` (the verdict back to the pull request)",
        )];
    };
    let step = &steps[i];
    let mut problems = Vec::new();
    let runs_test = |s: &Value| {
        strings(&s["commands"])
            .iter()
            .any(|c| c.contains("cc-ci-run run"))
    };
    if !steps[..i].iter().any(runs_test) {
        problems.push(at("comes after the step that runs `cc-ci-run run`"));
    }
    let status = strings(&step["when"]["status"]);
    if !(status.iter().any(|s| s == "success") && status.iter().any(|s| s == "failure")) {
        problems.push(at(
            "`when: status: [success, failure]`: a red run needs its comment most",
        ));
    }
    match &step["environment"]["CCCI_FORGE_TOKEN"] {
        v if v["from_secret"].as_str().is_some_and(|s| !s.is_empty()) => {}
        _ => problems.push(at(
            "CCCI_FORGE_TOKEN comes `from_secret:` (a token written in the file is readable by anyone who can read the repository)",
        )),
    }
    let names_the_recipe = strings(&step["commands"])
        .iter()
        .any(|c| c.contains("--repo") && c.contains("$CCCI_RECIPE"));
    if name == "recipe-testme" && !names_the_recipe {
        problems.push(at(
            "`--repo OWNER/$CCCI_RECIPE`: this build's DRONE_REPO is the CI repository, not the recipe whose pull request asked",
        ));
    }
    problems
}

/// A copy of a Drone file without the document named `name`, as an editor
/// would cut it.
fn without_pipeline(text: &str, name: &str) -> String {
    text.split("\n---\n")
        .filter(|doc| !doc.lines().any(|l| l == format!("name: {name}")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn drone_yml_holds_the_expected_pipelines() {
    let problems = check_drone(&drone_yml());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn drone_check_rejects_a_copy_without_the_pull_request_pipeline() {
    let text = drone_yml();
    let copy = without_pipeline(&text, "recipe-pull-request");
    assert_ne!(copy, text, "the cut removed nothing");
    assert!(documents(&copy).is_ok(), "the copy is still valid YAML");
    let problems = check_drone(&copy);
    assert_eq!(
        problems,
        vec!["no `recipe-pull-request` pipeline".to_string()]
    );
}

#[test]
fn drone_check_rejects_each_broken_rule() {
    let text = drone_yml();
    let pr = "cc-ci-run run --recipe \"$DRONE_REPO_NAME\" --pr \"$DRONE_PULL_REQUEST\"";
    assert!(text.contains(pr), "the pull-request step changed: {pr}");
    // (what is broken, the copy, what the check must say)
    let cases: [(&str, String, &str); 20] = [
        (
            "no comment step",
            text.replace("      - cc-ci-run comment\n", "      - true\n"),
            "recipe-pull-request: step `comment`: no step runs `cc-ci-run comment`",
        ),
        (
            "no comment step for !testme",
            text.replace(
                "      - cc-ci-run comment --repo \"coop-cloud/$CCCI_RECIPE\"\n",
                "      - true\n",
            ),
            "recipe-testme: step `comment`: no step runs `cc-ci-run comment`",
        ),
        (
            "a !testme comment to the CI repository",
            text.replace(
                "      - cc-ci-run comment --repo \"coop-cloud/$CCCI_RECIPE\"\n",
                "      - cc-ci-run comment\n",
            ),
            "recipe-testme: step `comment`: `--repo OWNER/$CCCI_RECIPE`",
        ),
        (
            "comment only on success",
            text.replace("        - success\n        - failure\n", "        - success\n"),
            "`when: status: [success, failure]`",
        ),
        (
            "a literal token",
            text.replace(
                "      CCCI_FORGE_TOKEN:\n        from_secret: forge_token\n",
                "      CCCI_FORGE_TOKEN: abc123\n",
            ),
            "CCCI_FORGE_TOKEN comes `from_secret:`",
        ),
        (
            "a comment without a timeout is fine, a run without one is not",
            text.replace(" --teardown-timeout 10m\n\n  # The verdict", "\n\n  # The verdict"),
            "recipe-pull-request: needs --timeout and --teardown-timeout",
        ),
        (
            "pull request without the build's commit",
            text.replace(" --ref \"$DRONE_COMMIT_SHA\" --timeout 45m", " --timeout 45m"),
            "recipe-pull-request: `--ref \"$DRONE_COMMIT_SHA\"`",
        ),
        (
            "custom builds of any repository",
            text.replace("  repo:\n    include:\n      - toolshed/recipe-ci\n", ""),
            "recipe-testme: `trigger.repo.include`",
        ),
        (
            "no deploy step",
            text.replace("--test deploy", "--test depl0y"),
            "the test target `deploy` (no engine needed) is not run",
        ),
        (
            "no nix step",
            text.replace("--features nix-tests --test nix", "--features nix-tests"),
            "the test target `nix` (no engine needed) is not run",
        ),
        (
            "a host-owned setting in a step",
            text.replace(
                "  - name: recipe-ci\n    commands:\n      # CCCI_RECIPE",
                "  - name: recipe-ci\n    environment:\n      CCCI_STATE_DIR: /tmp/x\n    commands:\n      # CCCI_RECIPE",
            ),
            "sets the host-owned CCCI_STATE_DIR",
        ),
        (
            "exec",
            text.replace(pr, &format!("exec {pr}")),
            "`exec` replaces",
        ),
        (
            "braces",
            text.replace("$DRONE_PULL_REQUEST", "${DRONE_PULL_REQUEST}"),
            "substituted by the Drone server",
        ),
        (
            "backtick",
            text.replace("--recipe \"$DRONE_REPO_NAME\"", "--recipe `basename $PWD`"),
            "backtick",
        ),
        (
            "absolute path",
            text.replace(pr, &format!("/run/current-system/sw/bin/{pr}")),
            "call `cc-ci-run` by name",
        ),
        (
            "deadline past the stage",
            text.replace(
                "--timeout 45m --teardown-timeout 10m",
                "--timeout 50m --teardown-timeout 10m",
            ),
            "exceed the 60m00s stage timeout",
        ),
        (
            "no teardown bound",
            text.replace(" --teardown-timeout 10m", ""),
            "needs --timeout and --teardown-timeout",
        ),
        (
            "not exec",
            text.replacen("type: exec", "type: docker", 1),
            "recipe-push: `type: exec`",
        ),
        (
            "wrong event",
            text.replace("    - pull_request\n  repo:", "    - push\n  repo:"),
            "recipe-pull-request: does not trigger on `pull_request`",
        ),
        (
            "not YAML",
            text.replace("steps:", "steps:\n\t- bad"),
            "not valid YAML",
        ),
    ];
    for (what, copy, says) in cases {
        assert_ne!(copy, text, "{what}: the edit changed nothing");
        let problems = check_drone(&copy);
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{what}: the check does not say `{says}`: {problems:#?}"
        );
    }
}

/// Drone's exec runner writes a step's commands into a script like this
/// (runner-go's posix shell script: `set -e`, then each command after a
/// trace line) and runs `/bin/sh -e SCRIPT`.
fn drone_script(commands: &[String]) -> String {
    let mut s = String::from("\nset -e\n\n");
    for c in commands {
        let quoted = format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\""));
        s.push_str(&format!("\necho + {}\n{c}\n", quoted.replace('$', "\\$")));
    }
    s
}

/// A Drone exec step: the commands of `pipeline`'s steps as written, run as
/// `/bin/sh -e SCRIPT` in a fresh workspace with the environment Drone gives
/// (build metadata, HOME a fresh empty directory) plus the runner's
/// DRONE_RUNNER_ENVIRON (the fixture's CCCI_* settings) and `params`.
struct DroneStep {
    sh: Command,
    home: PathBuf,
    log: PathBuf,
}

fn drone_step(f: &Fixture, pipeline_name: &str, params: &[(&str, String)]) -> DroneStep {
    drone_named_step(f, pipeline_name, "recipe-ci", params, &[])
}

/// The step `step_name` of `pipeline_name` as [`drone_step`] runs it, with
/// the step's `environment:` added (a `from_secret` value looked up in
/// `secrets`, as the runner does).
fn drone_named_step(
    f: &Fixture,
    pipeline_name: &str,
    step_name: &str,
    params: &[(&str, String)],
    secrets: &[(&str, &str)],
) -> DroneStep {
    let docs = documents(&drone_yml()).expect(".drone.yml parses");
    let p = pipeline(&docs, pipeline_name).expect("pipeline exists");
    let step = p["steps"]
        .as_sequence()
        .and_then(|v| v.iter().find(|s| s["name"].as_str() == Some(step_name)))
        .unwrap_or_else(|| panic!("{pipeline_name} has a step {step_name}"));
    let commands = strings(&step["commands"]);
    let mut step_env = Vec::new();
    if let Some(env) = step["environment"].as_mapping() {
        for (k, v) in env {
            let k = k.as_str().expect("variable name").to_string();
            let v = match v["from_secret"].as_str() {
                Some(name) => secrets
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default(),
                None => v.as_str().unwrap_or_default().to_string(),
            };
            step_env.push((k, v));
        }
    }
    let root = f.tmp.path().join("drone");
    let (home, workspace, opt) = (
        root.join("home/drone"),
        root.join("drone/src"),
        root.join("opt"),
    );
    for d in [&home, &workspace, &opt] {
        std::fs::create_dir_all(d).unwrap();
    }
    let script = script(&opt, step_name, &drone_script(&commands));
    let log = root.join(format!("{step_name}.log"));
    let mut sh = Command::new("/bin/sh");
    sh.arg("-e").arg(&script).env_clear();
    // The runner's DRONE_RUNNER_ENVIRON: what the fixture's host sets.
    for (k, v) in f.cmd().get_envs() {
        if let (Some(k), Some(v)) = (k.to_str(), v) {
            if k.starts_with("CCCI_") || k == "DOCKER_HOST" {
                sh.env(k, v);
            }
        }
    }
    sh.env("PATH", test_path())
        .env("HOME", &home)
        .env("CI", "true")
        .env("DRONE", "true")
        .env("DRONE_REPO", "coop-cloud/example")
        .env("DRONE_REPO_NAME", "example")
        .env("DRONE_WORKSPACE", &workspace)
        .env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in params {
        sh.env(k, v);
    }
    // The step's own environment (its secrets) comes last and wins.
    for (k, v) in &step_env {
        sh.env(k, v);
    }
    sh.current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    DroneStep { sh, home, log }
}

/// Whether Drone runs `step` of `pipeline_name` given whether an earlier
/// step failed: its `when.status` (default: success only).
fn drone_runs_step(pipeline_name: &str, step_name: &str, build_failed: bool) -> bool {
    let docs = documents(&drone_yml()).expect(".drone.yml parses");
    let p = pipeline(&docs, pipeline_name).expect("pipeline exists");
    let step = p["steps"]
        .as_sequence()
        .and_then(|v| v.iter().find(|s| s["name"].as_str() == Some(step_name)))
        .expect("step exists");
    let status = strings(&step["when"]["status"]);
    let status = if status.is_empty() {
        vec!["success".to_string()]
    } else {
        status
    };
    status
        .iter()
        .any(|s| s == if build_failed { "failure" } else { "success" })
}

impl DroneStep {
    /// The step's output so far (stdout, then stderr), for failure messages.
    fn output(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

/// The sha of a ref in the example recipe's forge repository.
fn upstream_sha(f: &Fixture, git_ref: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(f.tmp.path().join("recipe/upstream.git"))
        .args(["rev-parse", git_ref])
        .output()
        .unwrap();
    assert!(out.status.success(), "git rev-parse {git_ref}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pull_request_params(f: &Fixture, build: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DRONE_BUILD_NUMBER", build.to_string()),
        ("DRONE_REPO", "coop-cloud/example".into()),
        ("DRONE_BUILD_EVENT", "pull_request".into()),
        ("DRONE_PULL_REQUEST", "1".into()),
        ("DRONE_COMMIT_SHA", upstream_sha(f, "refs/pull/1/head")),
    ]
}

fn assert_nothing_left(f: &Fixture, run_id: &str, domain: &str, step: &DroneStep) {
    wait_until("no process of the run", || {
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty()
    });
    let out = step.output();
    assert!(
        f.leftovers().is_empty(),
        "left on the fake swarm: {:?}\n{out}",
        f.leftovers()
    );
    assert!(f.lock_free("apps", domain), "app lock held\n{out}");
    assert!(f.lock_free("runs", run_id), "run lock held\n{out}");
    assert!(f.tree_gone(run_id), "run tree left\n{out}");
}

#[test]
fn drone_pull_request_step_as_written_passes_and_tears_down() {
    let f = Fixture::new();
    let mut step = drone_step(&f, "recipe-pull-request", &pull_request_params(&f, "4242"));
    let mut sh = step.sh.spawn().unwrap();
    let mut guard = KillOnPanic::default();
    guard.add(sh.id() as i32);
    let code = wait_exit(&mut sh);
    assert_eq!(code, 0, "step exit\n{}", step.output());
    let rec = f.record("drone-coop-cloud-example-4242");
    assert_eq!(rec["exit_code"], 0);
    assert_eq!(rec["pr"], 1, "DRONE_PULL_REQUEST reached the run");
    assert_eq!(rec["domain"], "example-pr1.ci.localhost");
    assert!(
        step.output().contains("+ cc-ci-run run --recipe"),
        "the runner's trace line shows the command as written\n{}",
        step.output()
    );
    assert_nothing_left(
        &f,
        "drone-coop-cloud-example-4242",
        "example-pr1.ci.localhost",
        &step,
    );
    let home: Vec<_> = std::fs::read_dir(&step.home).unwrap().collect();
    assert!(home.is_empty(), "the step wrote into HOME: {home:?}");
}

#[test]
fn drone_pull_request_step_cancelled_by_sigkill_of_sh_tears_down_with_143() {
    let f = Fixture::new();
    let mut params = pull_request_params(&f, "4243");
    // The install tier's test hangs, so the cancel lands mid-run.
    params.push(("CCCI_EXAMPLE_HANG", "install".into()));
    let mut step = drone_step(&f, "recipe-pull-request", &params);
    let mut sh = step.sh.spawn().unwrap();
    let mut guard = KillOnPanic::default();
    guard.add(sh.id() as i32);
    wait_for_file(&f.ready.join("test-install"));
    // Drone's cancel: SIGKILL of the step's sh alone.
    send(sh.id() as i32, Signal::SIGKILL);
    sh.wait().unwrap();
    let record = f.state.join("runs/drone-coop-cloud-example-4243/run.json");
    wait_until("the run record's exit code", || {
        std::fs::read_to_string(&record).is_ok_and(|t| t.contains("\"finished\": \""))
    });
    assert_eq!(
        f.record("drone-coop-cloud-example-4243")["exit_code"],
        143,
        "{}",
        step.output()
    );
    assert_nothing_left(
        &f,
        "drone-coop-cloud-example-4243",
        "example-pr1.ci.localhost",
        &step,
    );
}

#[test]
fn drone_testme_step_takes_the_bridge_parameters() {
    let f = Fixture::new();
    // A custom build's DRONE_COMMIT_SHA is the CI repository's commit, not
    // the recipe's: with CCCI_PR it must be ignored.
    let params = vec![
        ("DRONE_BUILD_NUMBER", "4244".to_string()),
        ("DRONE_REPO", "coop-cloud/recipes-ci".into()),
        ("DRONE_BUILD_EVENT", "custom".into()),
        (
            "DRONE_COMMIT_SHA",
            "0123456789abcdef0123456789abcdef01234567".into(),
        ),
        ("CCCI_RECIPE", "example".into()),
        ("CCCI_PR", "1".into()),
        ("CCCI_QUICK", "1".into()),
    ];
    let mut step = drone_step(&f, "recipe-testme", &params);
    let mut sh = step.sh.spawn().unwrap();
    let mut guard = KillOnPanic::default();
    guard.add(sh.id() as i32);
    assert_eq!(wait_exit(&mut sh), 0, "{}", step.output());
    let rec = f.record("drone-coop-cloud-recipes-ci-4244");
    assert_eq!(rec["pr"], 1);
    assert_eq!(rec["recipe"], "example");
    let steps: Vec<String> = f.ok_steps().into_iter().map(|(s, _)| s).collect();
    assert!(
        steps.contains(&"deploy-chaos".to_string()) && !steps.contains(&"deploy".to_string()),
        "CCCI_QUICK=1 took the quick lane (one chaos deploy): {steps:?}"
    );
    assert_nothing_left(
        &f,
        "drone-coop-cloud-recipes-ci-4244",
        "example-pr1.ci.localhost",
        &step,
    );
}

/// `!testme`'s verdict goes back to the recipe's pull request, red or
/// green: the custom build is the CI repository's, so the comment step
/// names the recipe's repository and takes the pull request from the run.
#[test]
fn drone_testme_comment_step_posts_the_verdict_on_the_recipes_pull_request() {
    for (build, fail, exits) in [
        ("4250", None, [Some(0), Some(0)]),
        ("4251", Some("install"), [Some(1), Some(0)]),
    ] {
        let f = Fixture::new();
        let forge = crate::forge::Forge::start(crate::forge::Answer::Status(201));
        let mut params = vec![
            ("DRONE_BUILD_NUMBER", build.to_string()),
            ("DRONE_REPO", "coop-cloud/recipes-ci".into()),
            ("DRONE_REPO_LINK", forge.repo_link("coop-cloud/recipes-ci")),
            ("DRONE_BUILD_EVENT", "custom".into()),
            ("CCCI_RECIPE", "example".into()),
            ("CCCI_PR", "1".into()),
            ("CCCI_QUICK", "1".into()),
        ];
        if let Some(tier) = fail {
            params.push(("CCCI_EXAMPLE_FAIL", tier.into()));
        }
        let steps = drone_pipeline(&f, "recipe-testme", &params);
        let got: Vec<StepExit> = steps.iter().map(|(_, c, _)| *c).collect();
        assert_eq!(got, exits, "{steps:#?}");
        let body = assert_one_comment(&f, &forge, &format!("drone-coop-cloud-recipes-ci-{build}"));
        let verdict = if fail.is_some() {
            "`failed` (exit 1)"
        } else {
            "`passed` (exit 0)"
        };
        assert!(body.contains(&format!("**Verdict:** {verdict}")), "{body}");
        assert_token_kept(&f, &steps);
    }
}

/// The token the simulated runner hands the comment step as the secret
/// `forge_token`.
const FORGE_TOKEN: &str = "ccci-test-token-3f9a1c77e0d2";

/// One step's exit code, or None when Drone skipped it.
type StepExit = Option<i32>;

/// The pull-request pipeline run as Drone runs it (see [`drone_pipeline`]).
fn drone_pull_request_pipeline(
    f: &Fixture,
    params: &[(&str, String)],
) -> Vec<(String, StepExit, String)> {
    drone_pipeline(f, "recipe-pull-request", params)
}

/// `pipeline_name` run as Drone runs it: each step in order as its own
/// `/bin/sh -e SCRIPT`, a step after a failed one only when its
/// `when.status` includes `failure`. Returns each step's exit and output.
fn drone_pipeline(
    f: &Fixture,
    pipeline_name: &str,
    params: &[(&str, String)],
) -> Vec<(String, StepExit, String)> {
    let docs = documents(&drone_yml()).expect(".drone.yml parses");
    let p = pipeline(&docs, pipeline_name).expect("pipeline exists");
    let names: Vec<String> = step_commands(p).into_iter().map(|(n, _)| n).collect();
    let mut failed = false;
    let mut out = Vec::new();
    for name in names {
        if !drone_runs_step(pipeline_name, &name, failed) {
            out.push((name, None, String::new()));
            continue;
        }
        let mut step = drone_named_step(
            f,
            pipeline_name,
            &name,
            params,
            &[("forge_token", FORGE_TOKEN)],
        );
        let mut sh = step.sh.spawn().unwrap();
        let mut guard = KillOnPanic::default();
        guard.add(sh.id() as i32);
        let code = wait_step(&mut sh);
        failed |= code != 0;
        out.push((name, Some(code), step.output()));
    }
    out
}

/// Waits for a whole step (a full run of the example recipe takes 20 to
/// 40 s on a busy machine, past [`BOUND`]): a hang still fails, at 3 min.
fn wait_step(child: &mut std::process::Child) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return code(status);
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the step {} did not end within 3 min",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        })
        .map(|e| e.into_path())
        .collect()
}

/// What `cc-ci-run summary RUN --format markdown` prints for the fixture.
fn markdown_of(f: &Fixture, run_id: &str) -> String {
    let out = f
        .cmd()
        .args(["summary", run_id, "--format", "markdown"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The forge got one comment for pull request 1 of coop-cloud/example,
/// with the token, whose body is the run's markdown summary.
fn assert_one_comment(f: &Fixture, forge: &crate::forge::Forge, run_id: &str) -> String {
    let reqs = forge.requests();
    assert_eq!(reqs.len(), 1, "one request: {reqs:#?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v1/repos/coop-cloud/example/issues/1/comments");
    assert_eq!(
        r.headers.get("authorization").map(String::as_str),
        Some(format!("token {FORGE_TOKEN}").as_str())
    );
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("the body is JSON");
    let body = json["body"].as_str().expect("a `body` string").to_string();
    assert_eq!(
        body,
        markdown_of(f, run_id),
        "the comment is the run's markdown"
    );
    body
}

/// The token appears in no step's output and in no file of the state
/// directory (log, record, reports).
fn assert_token_kept(f: &Fixture, steps: &[(String, StepExit, String)]) {
    for (name, _, output) in steps {
        assert!(
            !output.contains(FORGE_TOKEN),
            "the token is in step {name}'s output:\n{output}"
        );
    }
    let holding = files_holding(&f.state, FORGE_TOKEN);
    assert!(holding.is_empty(), "the token is in {holding:?}");
}

fn comment_params(
    f: &Fixture,
    build: &str,
    forge: &crate::forge::Forge,
) -> Vec<(&'static str, String)> {
    let mut params = pull_request_params(f, build);
    params.push(("DRONE_REPO_LINK", forge.repo_link("coop-cloud/example")));
    params
}

#[test]
fn drone_pull_request_comment_step_posts_the_verdict_of_a_green_run() {
    let f = Fixture::new();
    let forge = crate::forge::Forge::start(crate::forge::Answer::Status(201));
    let params = comment_params(&f, "4245", &forge);
    let steps = drone_pull_request_pipeline(&f, &params);
    let exits: Vec<(&str, StepExit)> = steps.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
    assert_eq!(
        exits,
        vec![("recipe-ci", Some(0)), ("comment", Some(0))],
        "{steps:#?}"
    );
    let body = assert_one_comment(&f, &forge, "drone-coop-cloud-example-4245");
    assert!(body.starts_with("### ✅"), "{body}");
    assert!(body.contains("**Verdict:** `passed` (exit 0)"), "{body}");
    assert!(body.contains("| `install` | 2 | 0 | 0 | 0 |"), "{body}");
    assert!(
        steps[1]
            .2
            .contains("posted the summary of run drone-coop-cloud-example-4245"),
        "{}",
        steps[1].2
    );
    assert_token_kept(&f, &steps);

    // A forge that refuses: the comment step fails visibly, and the run's
    // verdict (the record, recipe-ci's exit) is what it was.
    let before = f.record("drone-coop-cloud-example-4245");
    let refusing = crate::forge::Forge::start(crate::forge::Answer::Status(500));
    let params = comment_params(&f, "4245", &refusing);
    let mut step = drone_named_step(
        &f,
        "recipe-pull-request",
        "comment",
        &params,
        &[("forge_token", FORGE_TOKEN)],
    );
    let code = wait_step(&mut step.sh.spawn().unwrap());
    let out = step.output();
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("the forge refused the comment") && out.contains("HTTP 500"),
        "{out}"
    );
    assert!(
        out.contains("the stand-in forge answers 500"),
        "the forge's answer is shown: {out}"
    );
    assert!(!out.contains(FORGE_TOKEN), "{out}");
    assert_eq!(refusing.requests().len(), 1);
    assert_eq!(f.record("drone-coop-cloud-example-4245"), before);

    // A forge that does not answer: bounded by CCCI_FORGE_TIMEOUT.
    let hanging = crate::forge::Forge::start(crate::forge::Answer::Hang);
    let mut params = comment_params(&f, "4245", &hanging);
    params.push(("CCCI_FORGE_TIMEOUT", "2s".into()));
    let mut step = drone_named_step(
        &f,
        "recipe-pull-request",
        "comment",
        &params,
        &[("forge_token", FORGE_TOKEN)],
    );
    let started = std::time::Instant::now();
    let code = wait_step(&mut step.sh.spawn().unwrap());
    let out = step.output();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no answer from the forge"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(!out.contains(FORGE_TOKEN), "{out}");
    assert_eq!(f.record("drone-coop-cloud-example-4245"), before);

    // No token: exit 2 before anything is sent.
    let mut step = drone_named_step(&f, "recipe-pull-request", "comment", &params, &[]);
    let code = wait_step(&mut step.sh.spawn().unwrap());
    assert_eq!(code, 2, "{}", step.output());
    assert!(
        step.output().contains("CCCI_FORGE_TOKEN is not set"),
        "{}",
        step.output()
    );
    assert_eq!(hanging.requests().len(), 1, "nothing more was sent");
}

#[test]
fn drone_pull_request_comment_step_posts_the_failing_tests_of_a_red_run() {
    let f = Fixture::new();
    let forge = crate::forge::Forge::start(crate::forge::Answer::Status(201));
    let mut params = comment_params(&f, "4246", &forge);
    params.push(("CCCI_EXAMPLE_FAIL", "upgrade".into()));
    let steps = drone_pull_request_pipeline(&f, &params);
    let exits: Vec<(&str, StepExit)> = steps.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
    assert_eq!(
        exits,
        vec![("recipe-ci", Some(1)), ("comment", Some(0))],
        "the comment step runs after a failed test step: {steps:#?}"
    );
    let body = assert_one_comment(&f, &forge, "drone-coop-cloud-example-4246");
    assert!(body.starts_with("### ❌"), "{body}");
    assert!(
        body.contains("**Verdict:** `failed` (exit 1), decided in phase `test-upgrade`"),
        "{body}"
    );
    assert!(body.contains("#### Failing tests"), "{body}");
    assert!(
        body.contains("`upgrade` `00-deployed.sh` (`tests/00-deployed.sh`): `failed` `exit 1`"),
        "{body}"
    );
    assert!(
        body.contains("failing on purpose: CCCI_EXAMPLE_FAIL=upgrade (tier upgrade)"),
        "the failing test's last line: {body}"
    );
    assert_token_kept(&f, &steps);
    assert_eq!(f.record("drone-coop-cloud-example-4246")["exit_code"], 1);
}

/// The fenced blocks of a Markdown text whose info string is `info`.
fn fenced_blocks(markdown: &str, info: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_end() == format!("```{info}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```{info} block");
    blocks
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("read README.md")
}

/// The one command of the README this test does not run: it is the command
/// that runs this test, and running it here would recurse.
const RECURSIVE: &str = "cargo nextest run";

#[test]
fn readme_runnable_blocks_work_as_written() {
    let mut blocks = fenced_blocks(&readme(), "sh runnable");
    // The Set-up block first, wherever it stands: it builds the release
    // binary the other blocks call.
    blocks.sort_by_key(|b| !b.contains("scripts/demo.sh"));
    assert!(
        blocks.iter().any(|b| b.contains("scripts/demo.sh")),
        "the Set-up block is not marked `sh runnable`: {blocks:#?}"
    );
    let tmp = tempdir();
    let mut skipped = 0;
    for (i, block) in blocks.iter().enumerate() {
        let script: String = block
            .lines()
            .map(|line| {
                let command = line.split(" #").next().unwrap_or("").trim();
                if command == RECURSIVE {
                    skipped += 1;
                    format!(": skipped, it runs this test: {command}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let log = tmp.path().join(format!("block-{i}.log"));
        let status = Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(&script)
            .current_dir(repo())
            .env("CCCI_DEV_DEMO_DIR", tmp.path().join("demo"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .status()
            .unwrap();
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            code(status),
            0,
            "README block {i} failed:\n{block}\n--- output ---\n{out}"
        );
    }
    assert_eq!(
        skipped, 1,
        "`{RECURSIVE}` should be in a runnable block once"
    );
}

#[test]
fn readme_drone_excerpts_are_in_drone_yml() {
    let excerpts = fenced_blocks(&readme(), "yaml excerpt");
    assert!(!excerpts.is_empty(), "the README shows no pipeline excerpt");
    let drone = drone_yml();
    for e in excerpts {
        assert!(drone.contains(&e), "not in .drone.yml as written:\n{e}");
    }
}

#[test]
fn completions_cover_the_commands_and_hide_the_internal_ones() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ccci().args(["completions", shell]).output().unwrap();
        assert_eq!(code(out.status), 0, "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for cmd in ["run", "janitor", "unlock", "teardown-timeout"] {
            assert!(text.contains(cmd), "{shell}: `{cmd}` missing");
        }
        for hidden in ["__harness", "hold-lock", "lock-stress", "bench-lock"] {
            assert!(!text.contains(hidden), "{shell}: hidden `{hidden}` offered");
        }
    }
    let out = ccci().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(code(out.status), 2, "an unknown shell is a usage error");
}

#[test]
fn man_prints_the_main_page_and_each_command_page() {
    let out = ccci().arg("man").output().unwrap();
    assert_eq!(code(out.status), 0);
    let main = String::from_utf8_lossy(&out.stdout);
    assert!(main.contains(".TH cc-ci-run 1"), "{main}");
    assert!(main.contains("cc\\-ci\\-run\\-janitor(1)"), "{main}");
    assert!(!main.contains("harness"), "hidden command in the page");

    let out = ccci().args(["man", "run"]).output().unwrap();
    assert_eq!(code(out.status), 0);
    let run = String::from_utf8_lossy(&out.stdout);
    assert!(run.contains(".TH cc-ci-run-run 1"), "{run}");
    assert!(run.contains("teardown\\-timeout"), "{run}");
    assert!(run.contains("CCCI_TIMEOUT"), "env fallbacks are documented");

    let out = ccci().args(["man", "__harness"]).output().unwrap();
    assert_eq!(code(out.status), 2, "no page for a hidden command");
}

/// Whether Drone's trigger glob `pattern` matches `git_ref` (as its
/// matcher does: `*` within one path segment, `**` across segments).
fn drone_glob(pattern: &str, git_ref: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap().is_match(git_ref)
}

/// Whether a pipeline's trigger lets a build of `event` on `git_ref`
/// through: every condition must hold (Drone ANDs them).
fn triggers(p: &Value, event: &str, git_ref: &str) -> bool {
    let t = &p["trigger"];
    let events = strings(&t["event"]);
    if !events.is_empty() && !events.iter().any(|e| e == event) {
        return false;
    }
    let include = match &t["ref"] {
        Value::Sequence(_) => strings(&t["ref"]),
        v => strings(&v["include"]),
    };
    let exclude = strings(&t["ref"]["exclude"]);
    (include.is_empty() || include.iter().any(|g| drone_glob(g, git_ref)))
        && !exclude.iter().any(|g| drone_glob(g, git_ref))
}

#[test]
fn recipe_push_builds_the_default_branch_and_tags_only() {
    let docs = documents(&drone_yml()).unwrap();
    let push = pipeline(&docs, "recipe-push").unwrap();
    let pr = pipeline(&docs, "recipe-pull-request").unwrap();
    for (event, git_ref) in [
        ("push", "refs/heads/main"),
        ("push", "refs/heads/master"),
        ("tag", "refs/tags/1.2.0+3.4.5"),
        ("tag", "refs/tags/release/2"),
    ] {
        assert!(
            triggers(push, event, git_ref),
            "recipe-push skips {event} {git_ref}"
        );
    }
    // A pull request's branch pushed to the same repository: tested once,
    // by recipe-pull-request, not also as a push.
    for git_ref in [
        "refs/heads/fix-the-thing",
        "refs/heads/renovate/x",
        "refs/heads/mainline",
    ] {
        assert!(
            !triggers(push, "push", git_ref),
            "recipe-push builds {git_ref}"
        );
    }
    assert!(triggers(pr, "pull_request", "refs/pull/7/head"));
    assert!(!triggers(pr, "push", "refs/heads/fix-the-thing"));
}

#[test]
fn the_trigger_model_is_not_vacuous() {
    // Without the ref condition, recipe-push would take every branch: the
    // check above would fail on the old pipeline.
    let old = drone_yml().replace(
        "  ref:\n    include:\n      - refs/heads/main\n      - refs/heads/master\n      - refs/tags/**\n",
        "",
    );
    assert_ne!(old, drone_yml(), "the ref condition is not where expected");
    let docs = documents(&old).unwrap();
    let push = pipeline(&docs, "recipe-push").unwrap();
    assert!(triggers(push, "push", "refs/heads/fix-the-thing"));
    assert!(drone_glob("refs/tags/*", "refs/tags/1.0"));
    assert!(!drone_glob("refs/tags/*", "refs/tags/a/b"));
}

/// Every `--help` text of the binary: the top level (with the exit codes,
/// the environment and the files) and each subcommand's, hidden ones too.
fn all_help() -> String {
    use clap::CommandFactory;
    let mut text = String::new();
    let mut args: Vec<Vec<String>> = vec![vec![]];
    for sub in cc_ci_run::cli::Cli::command().get_subcommands() {
        args.push(vec![sub.get_name().to_string()]);
    }
    for a in args {
        let out = Command::new(bin())
            .args(&a)
            .arg("--help")
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(code(out.status), 0, "{a:?} --help");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

/// Flags of other programs the README shows (docker, abra, nix, cargo,
/// node_exporter, git, sudo): not cc-ci-run's, so not in its `--help`.
const OTHER_TOOLS_FLAGS: &[&str] = &[
    "--advertise-addr", // docker swarm init
    "--format",         // docker info / stack ls
    "--local",          // abra server add
    "--chaos",          // abra app deploy
    "--collector",      // node_exporter --collector.textfile.directory
    "--impure",         // nix build
    "--expr",           // nix build
    "--locked",         // cargo install
    "--path",           // cargo install
    "--profile",        // cargo nextest
    "--features",       // cargo nextest
    "--test",           // cargo nextest
    "--no-capture",     // cargo nextest
    "--check",          // scripts/modgraph.py
    "--shared",         // git clone
    "--sample-env",     // scripts/make-example-recipe.sh
    "--form",           // scripts/make-example-recipe.sh
];

/// `DRONE_*` names the README uses that are Drone's, not cc-ci-run's: the
/// exec runner's own settings (drone-runner-exec daemon/config.go) and the
/// step variables Drone sets (runner-go environ: DRONE_REPO_NAME).
const DRONE_NAMES: &[&str] = &[
    "DRONE_RUNNER_ENVFILE",
    "DRONE_RUNNER_ENVIRON",
    "DRONE_RUNNER_CAPACITY",
    "DRONE_RUNNER_NAME",
    "DRONE_RUNNER_LABELS",
    "DRONE_RPC_HOST",
    "DRONE_RPC_PROTO",
    "DRONE_RPC_SECRET",
    "DRONE_LIMIT_REPOS",
    "DRONE_LIMIT_EVENTS",
    "DRONE_LIMIT_TRUSTED",
    "DRONE_REPO_NAME",
];

/// Flags, variables and exit codes of `readme` that `--help` does not
/// know, and variables and exit codes of `--help` the README lacks.
fn check_readme_against_help(readme: &str, help: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let flag = regex::Regex::new(r"(?:^|[\s`(\[|])(--[a-z][a-z0-9-]*)").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in flag.captures_iter(readme) {
        let f = c[1].to_string();
        let known = help.contains(&format!("{f} "))
            || help.contains(&format!("{f}\n"))
            || help.contains(&format!("{f}="))
            || help.contains(&format!("{f},"))
            || help.contains(&format!("{f}]"));
        if !known && !OTHER_TOOLS_FLAGS.contains(&f.as_str()) && seen.insert(f.clone()) {
            problems.push(format!("flag {f} is not in any --help"));
        }
    }
    let var = regex::Regex::new(r"\b((?:CCCI|DRONE)_[A-Z0-9_]*[A-Z0-9])\b").unwrap();
    for c in var.captures_iter(readme) {
        let v = &c[1];
        let ours = help.contains(v);
        let reserved = cc_ci_run::manual::RESERVED_PREFIXES
            .iter()
            .any(|p| v.starts_with(p));
        // The README's examples of misspelt names (Settings).
        let typo = ["CCCI_TEST_TIMOUT", "CCCI_RETRIE"].contains(&v);
        if !ours && !reserved && !typo && !DRONE_NAMES.contains(&v) && seen.insert(v.to_string()) {
            problems.push(format!("variable {v} is not in --help"));
        }
    }
    for e in cc_ci_run::manual::ENVIRONMENT {
        if !readme.contains(e.name) {
            problems.push(format!("--help's variable {} is not in the README", e.name));
        }
    }
    // The Exit codes table: its first column against --help's codes.
    let table = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .map(|t| t.split("\n## ").next().unwrap_or(""))
        .unwrap_or("");
    let mut codes = std::collections::BTreeSet::new();
    for row in table.lines().filter(|l| l.starts_with("| ")) {
        let first = row.split('|').nth(1).unwrap_or("").trim();
        for n in first.split(", ").filter_map(|n| n.parse::<i32>().ok()) {
            codes.insert(n);
        }
    }
    for (code, _) in cc_ci_run::manual::EXIT_STATUS {
        if !codes.contains(code) {
            problems.push(format!(
                "exit code {code} of --help is not in the README's table"
            ));
        }
        if !help.contains(&format!("{code:>3}  ")) {
            problems.push(format!("exit code {code} is not in --help"));
        }
    }
    for c in codes {
        if !cc_ci_run::manual::EXIT_STATUS.iter().any(|(k, _)| *k == c) {
            problems.push(format!("exit code {c} of the README is not in --help"));
        }
    }
    problems
}

#[test]
fn readme_flags_variables_and_exit_codes_are_the_ones_help_lists() {
    let help = all_help();
    let problems = check_readme_against_help(&readme(), &help);
    assert!(problems.is_empty(), "{problems:#?}");
    // A flag, a variable or an exit code --help does not know is caught.
    let broken = readme()
        .replace("`--quick`", "`--quik`")
        .replace("`CCCI_QUICK`", "`CCCI_QUIK`")
        .replace("| 75 |", "| 76 |");
    let problems = check_readme_against_help(&broken, &help);
    for says in [
        "flag --quik is not in any --help",
        "variable CCCI_QUIK is not in --help",
        "exit code 76 of the README is not in --help",
        "exit code 75 of --help is not in the README's table",
    ] {
        assert!(problems.iter().any(|p| p == says), "{says}: {problems:#?}");
    }
}

/// GitHub's anchor of a heading: lowercase, only letters, digits, `-`, `_`
/// and spaces kept, spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// Links of the Markdown file at `file` (text `text`) that leave the
/// repository, or point at a file or anchor that does not exist.
fn check_links(file: &std::path::Path, text: &str) -> Vec<String> {
    let root = repo().canonicalize().unwrap();
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut problems = Vec::new();
    let name = file
        .strip_prefix(&root)
        .unwrap_or(file)
        .display()
        .to_string();
    if text.contains("../shared") || text.contains("SPEC.md") {
        problems.push(format!(
            "{name}: names a file outside the repository (SPEC.md)"
        ));
    }
    for c in link.captures_iter(text) {
        let target = &c[1];
        if target.contains("://") || target.starts_with("mailto:") {
            problems.push(format!("{name}: {target} leaves the repository"));
            continue;
        }
        let (path, frag) = target.split_once('#').unwrap_or((target, ""));
        let (dest, dest_text) = if path.is_empty() {
            (file.to_path_buf(), text.to_string())
        } else {
            let p = file.parent().unwrap().join(path);
            // Whether a link leaves is decided on its text first: `..` past
            // the root leaves wherever the checkout lies, whether or not
            // the file it names happens to exist on this machine.
            let mut lexical = std::path::PathBuf::new();
            for part in p.components() {
                match part {
                    std::path::Component::ParentDir => {
                        lexical.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => lexical.push(other),
                }
            }
            if !lexical.starts_with(&root) {
                problems.push(format!("{name}: {target} leaves the repository"));
                continue;
            }
            match p.canonicalize() {
                Ok(p) if p.starts_with(&root) => {
                    let t = std::fs::read_to_string(&p).unwrap_or_default();
                    (p, t)
                }
                Ok(_) => {
                    problems.push(format!("{name}: {target} leaves the repository"));
                    continue;
                }
                Err(_) => {
                    problems.push(format!("{name}: {target} does not exist"));
                    continue;
                }
            }
        };
        if !frag.is_empty() && !anchors(&dest_text).iter().any(|a| a == frag) {
            problems.push(format!(
                "{name}: {target}: no heading #{frag} in {}",
                dest.display()
            ));
        }
    }
    problems
}

#[test]
fn no_readme_or_docs_link_leaves_the_repository() {
    let mut files = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut problems = Vec::new();
    for f in &files {
        let f = f.canonicalize().unwrap();
        problems.extend(check_links(&f, &std::fs::read_to_string(&f).unwrap()));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // Each kind of bad link is caught.
    let readme = repo().join("README.md").canonicalize().unwrap();
    for (bad, says) in [
        ("[spec](../shared/SPEC.md)", "outside the repository"),
        ("[web](https://example.org/)", "leaves the repository"),
        ("[up](../../etc/passwd)", "leaves the repository"),
        // Past the root even where no such file exists (a checkout at
        // another depth than this machine's).
        ("[far](../../no-such-dir/x.md)", "leaves the repository"),
        ("[gone](docs/nothing.md)", "does not exist"),
        ("[anchor](#no-such-heading)", "no heading #no-such-heading"),
    ] {
        let p = check_links(&readme, &format!("{}\n{bad}\n", readme_text()));
        assert!(p.iter().any(|x| x.contains(says)), "{bad}: {p:#?}");
    }
}

fn readme_text() -> String {
    readme()
}
