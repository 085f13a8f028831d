//! The `.nix` parse check (`scripts/check-nix.sh`): every `.nix` file of
//! the repository parses, and a broken copy fails. Needs `nix-instantiate`
//! (Debian's `nix-bin`), which the README's test command does not list, so
//! this is a target of its own: built only with `--features nix-tests`;
//! `.ci/run` installs nix-bin and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../concurrency/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{code, repo, tempdir};

/// `scripts/check-nix.sh [DIR]`, with its exit code and output.
fn check_nix(dir: Option<&Path>) -> (i32, String) {
    assert!(
        Command::new("sh")
            .args(["-c", "command -v nix-instantiate"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success(),
        "nix-instantiate is missing: apt-get install -y nix-bin (.ci/run does)"
    );
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/check-nix.sh"));
    if let Some(d) = dir {
        c.arg(d);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    (
        code(out.status),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const NIX_FILES: [&str; 4] = [
    "flake.nix",
    "nix/package.nix",
    "nix/module.nix",
    "nix/shell.nix",
];

#[test]
fn every_nix_file_parses() {
    let (status, out) = check_nix(None);
    assert_eq!(status, 0, "{out}");
    for f in NIX_FILES {
        assert!(
            out.contains(&format!("ok    {f}\n")),
            "{f} not checked:\n{out}"
        );
    }
}

#[test]
fn nix_check_fails_on_a_broken_copy() {
    let tmp = tempdir();
    std::fs::create_dir(tmp.path().join("nix")).unwrap();
    for f in NIX_FILES {
        std::fs::copy(repo().join(f), tmp.path().join(f)).unwrap();
    }
    let (status, out) = check_nix(Some(tmp.path()));
    assert_eq!(status, 0, "the intact copy parses:\n{out}");

    let module = tmp.path().join("nix/module.nix");
    let text = std::fs::read_to_string(&module).unwrap();
    // A syntax error (the module's closing brace gone) and an unbound name
    // (a typo of a function in scope) each fail the check.
    let broken = [
        text.trim_end().strip_suffix('}').unwrap().to_string(),
        text.replacen("mkOption {", "mkOptoin {", 1),
    ];
    for b in broken {
        assert_ne!(b, text);
        std::fs::write(&module, &b).unwrap();
        let (status, out) = check_nix(Some(tmp.path()));
        assert_eq!(status, 1, "a broken module.nix passes:\n{out}");
        assert!(out.contains("FAIL  nix/module.nix"), "{out}");
    }

    let empty = tempdir();
    assert_eq!(check_nix(Some(empty.path())).0, 1, "no .nix file at all");
}

/// The README's host configuration (the ```` ```nix ci-host ```` block).
fn readme_host() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("```nix ci-host\n")
        .expect("the README shows a `nix ci-host` block");
    let body = &readme[start + "```nix ci-host\n".len()..];
    body[..body.find("\n```").unwrap()].to_string()
}

/// `nix-instantiate --eval` of nix/module.nix through
/// tests/nix/eval-module.nix for the host module `host` (Nix text):
/// Ok(the JSON it prints) or Err(its error output).
fn eval_module(host: &str) -> Result<serde_json::Value, String> {
    eval_module_file(host, &repo().join("nix/module.nix"))
}

/// As [`eval_module`], for the module at `module` (a changed copy).
fn eval_module_file(host: &str, module: &Path) -> Result<serde_json::Value, String> {
    let tmp = tempdir();
    let file = tmp.path().join("ci-host.nix");
    std::fs::write(&file, host).unwrap();
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo().join("tests/nix/eval-module.nix"))
        .arg("--arg")
        .arg("host")
        .arg(format!("import {}", file.display()))
        .arg("--arg")
        .arg("module")
        .arg(module)
        .env("NIX_STATE_DIR", tmp.path().join("nix-state"))
        .stdin(Stdio::null())
        .output()
        .expect("run nix-instantiate (Debian: apt-get install -y nix-bin)");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `KEY='VALUE'` lines of the runner's environment file, read as godotenv
/// reads single-quoted values (literally).
fn env_file(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = v.strip_prefix('\'').unwrap().strip_suffix('\'').unwrap();
            assert!(!v.contains('\''), "{l}");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_module_evaluates_with_the_readme_example() {
    let host = readme_host();
    let v = eval_module(&host).unwrap_or_else(|e| panic!("{e}\n{host}"));
    assert_eq!(v["enabled"], true);
    assert_eq!(v["failedAssertions"], serde_json::json!([]), "{v:#}");
    for opt in [
        "abraHome",
        "runner",
        "janitor",
        "metrics",
        "timelineFile",
        "protectedApps",
    ] {
        assert!(
            v["options"].as_array().unwrap().iter().any(|o| o == opt),
            "{opt}"
        );
    }
    // A configuration error (exit 2) is not restarted.
    assert_eq!(
        v["janitor"]["serviceConfig"]["RestartPreventExitStatus"],
        "2"
    );
    // The runner hands every setting to the steps through its environment
    // file, with values holding `,` and `:` intact, and nothing through
    // DRONE_RUNNER_ENVIRON (which splits at both).
    let runner = &v["runnerEnvironment"];
    assert!(runner.get("DRONE_RUNNER_ENVIRON").is_none(), "{runner:#}");
    assert!(runner["DRONE_RUNNER_ENVFILE"]
        .as_str()
        .unwrap()
        .starts_with("/nix/store/"));
    assert_eq!(unread_runner_variables(&v), Vec::<String>::new());
    assert_eq!(
        runner["DRONE_LIMIT_REPOS"],
        "coop-cloud/*,toolshed/recipe-ci"
    );
    let file = env_file(v["runnerEnvFile"].as_str().unwrap());
    let janitor_env: std::collections::BTreeMap<String, String> =
        serde_json::from_value(v["janitor"]["environment"].clone()).unwrap();
    assert_eq!(file, janitor_env, "steps and janitor see the same settings");
    // cc-ci-run's host settings file (/etc/cc-ci-run/host.env) holds the
    // same values: the steps' copies are then no change of a host-owned one.
    assert_eq!(env_file(v["hostFile"].as_str().unwrap()), file);
    // ... and the binary reads that file as the module writes it: every
    // name one it knows, every value quoted as it reads them (a bad file
    // would be exit 2 naming it; the state directory, /var/lib/cc-ci-run,
    // is missing on a test machine: 3).
    let tmp = tempdir();
    let host_env = tmp.path().join("host.env");
    std::fs::write(&host_env, v["hostFile"].as_str().unwrap()).unwrap();
    // The module's file leaves DOCKER_HOST to its default, as does the
    // environment of a `sudo -u cc-ci-run cc-ci-run status`.
    let out = support::ccci()
        .env_remove("DOCKER_HOST")
        .arg("--host-settings")
        .arg(&host_env)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(code(out.status), 2, "{err}");
    assert!(!err.contains("host settings"), "{err}");
    assert!(
        file.values().any(|x| x.contains(',')) && file.values().any(|x| x.contains(':')),
        "the README example should carry a value with `,` and one with `:`: {file:?}"
    );
    // node_exporter is on in the example: the metrics file goes to its
    // textfile collector's directory.
    let metrics = file["CCCI_METRICS_FILE"].clone();
    let dir = metrics.rsplit_once('/').unwrap().0;
    assert!(metrics.ends_with(".prom"));
    assert_eq!(
        v["nodeExporterFlags"],
        serde_json::json!([format!("--collector.textfile.directory={dir}")])
    );
    assert!(v["tmpfiles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().contains(dir)));
}

/// The variables drone-runner-exec reads from its own environment, each
/// with where its source reads it (drone-runners/drone-runner-exec,
/// `daemon/config.go`, struct `Config`: `envconfig:"NAME"` tags, read by
/// `envconfig.Process("", &config)` in `FromEnviron`). A name the module
/// sets that is not here is one the runner never reads: a misspelt name
/// (`DRONE_RUNNER_ENV_FILE`, the Docker runner's spelling) would leave
/// every step without its settings.
const RUNNER_READS: &[(&str, &str)] = &[
    ("DRONE_DEBUG", "daemon/config.go: Config.Debug"),
    ("DRONE_TRACE", "daemon/config.go: Config.Trace"),
    ("DRONE_LOG_FILE", "daemon/config.go: Config.Logger.File"),
    ("DRONE_RPC_PROTO", "daemon/config.go: Config.Client.Proto"),
    ("DRONE_RPC_HOST", "daemon/config.go: Config.Client.Host"),
    ("DRONE_RPC_SECRET", "daemon/config.go: Config.Client.Secret"),
    (
        "DRONE_RPC_SKIP_VERIFY",
        "daemon/config.go: Config.Client.SkipVerify",
    ),
    ("DRONE_PLATFORM_OS", "daemon/config.go: Config.Platform.OS"),
    (
        "DRONE_PLATFORM_ARCH",
        "daemon/config.go: Config.Platform.Arch",
    ),
    (
        "DRONE_UI_DISABLE",
        "daemon/config.go: Config.Dashboard.Disabled",
    ),
    (
        "DRONE_UI_USERNAME",
        "daemon/config.go: Config.Dashboard.Username",
    ),
    (
        "DRONE_UI_PASSWORD",
        "daemon/config.go: Config.Dashboard.Password",
    ),
    ("DRONE_HTTP_BIND", "daemon/config.go: Config.Server.Port"),
    ("DRONE_RUNNER_NAME", "daemon/config.go: Config.Runner.Name"),
    (
        "DRONE_RUNNER_CAPACITY",
        "daemon/config.go: Config.Runner.Capacity",
    ),
    (
        "DRONE_RUNNER_MAX_PROCS",
        "daemon/config.go: Config.Runner.Procs",
    ),
    (
        "DRONE_RUNNER_LABELS",
        "daemon/config.go: Config.Runner.Labels",
    ),
    (
        "DRONE_RUNNER_ENVIRON",
        "daemon/config.go: Config.Runner.Environ",
    ),
    // godotenv.Read(config.Runner.EnvFile) in FromEnviron; its values join
    // Runner.Environ, which engine/compiler/compiler.go gives every step.
    (
        "DRONE_RUNNER_ENVFILE",
        "daemon/config.go: Config.Runner.EnvFile",
    ),
    ("DRONE_RUNNER_PATH", "daemon/config.go: Config.Runner.Path"),
    // match.Func(Limit.Repos, Limit.Events, Limit.Trusted) in daemon/daemon.go.
    ("DRONE_LIMIT_REPOS", "daemon/config.go: Config.Limit.Repos"),
    (
        "DRONE_LIMIT_EVENTS",
        "daemon/config.go: Config.Limit.Events",
    ),
    (
        "DRONE_LIMIT_TRUSTED",
        "daemon/config.go: Config.Limit.Trusted",
    ),
    (
        "DRONE_SECRET_PLUGIN_ENDPOINT",
        "daemon/config.go: Config.Secret.Endpoint",
    ),
    (
        "DRONE_SECRET_PLUGIN_TOKEN",
        "daemon/config.go: Config.Secret.Token",
    ),
];

/// The runner unit's variables (the module's evaluation `v`) that
/// drone-runner-exec does not read, and a missing environment file.
fn unread_runner_variables(v: &serde_json::Value) -> Vec<String> {
    let runner = v["runnerEnvironment"]
        .as_object()
        .expect("the runner is on");
    let mut unread: Vec<String> = runner
        .keys()
        .filter(|k| !RUNNER_READS.iter().any(|(name, _)| name == k))
        .cloned()
        .collect();
    if !runner.contains_key("DRONE_RUNNER_ENVFILE") {
        unread.push("(no DRONE_RUNNER_ENVFILE: steps get no settings)".into());
    }
    unread
}

#[test]
fn every_runner_variable_the_module_sets_is_one_the_runner_reads() {
    let host = readme_host();
    let v = eval_module(&host).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unread_runner_variables(&v), Vec::<String>::new());
    // The environment file carries every setting a step needs.
    let file = env_file(v["runnerEnvFile"].as_str().unwrap());
    assert!(file.contains_key("CCCI_ABRA_HOME"), "{file:?}");

    // The module as it was (the Docker runner's spelling of the file's
    // variable) and a misspelt limit both fail the check, naming the name.
    let text = std::fs::read_to_string(repo().join("nix/module.nix")).unwrap();
    for (from, to) in [
        ("DRONE_RUNNER_ENVFILE =", "DRONE_RUNNER_ENV_FILE ="),
        ("DRONE_LIMIT_REPOS =", "DRONE_LIMIT_REPO ="),
    ] {
        let tmp = tempdir();
        let changed = text.replacen(from, to, 1);
        assert_ne!(changed, text, "{from}");
        let module = tmp.path().join("module.nix");
        std::fs::write(&module, changed).unwrap();
        let v = eval_module_file(&host, &module).unwrap_or_else(|e| panic!("{e}"));
        let unread = unread_runner_variables(&v);
        let name = to.trim_end_matches(" =");
        assert!(unread.iter().any(|u| u == name), "{to}: {unread:?}");
    }
}

#[test]
fn the_module_requires_a_repository_limit_and_keeps_registry_credentials_out_of_the_store() {
    let host = readme_host();
    let unlimited = host.replace(
        "limitRepos = [ \"coop-cloud/*\" \"toolshed/recipe-ci\" ];",
        "",
    );
    assert_ne!(unlimited, host);
    let v = eval_module(&unlimited).unwrap();
    let failed = v["failedAssertions"].to_string();
    assert!(failed.contains("runner.limitRepos"), "{failed}");
    assert!(v["runnerEnvironment"].get("DRONE_LIMIT_REPOS").is_none());

    let with = |line: &str| eval_module(&readme_host_with(line)).unwrap();
    // The README's example sets dockerConfig: DOCKER_CONFIG reaches steps
    // and janitor; a store path is refused.
    let v = eval_module(&host).unwrap();
    assert_eq!(v["failedAssertions"], serde_json::json!([]), "{v:#}");
    let file = env_file(v["runnerEnvFile"].as_str().unwrap());
    assert_eq!(file["DOCKER_CONFIG"], "/var/lib/cc-ci-run/docker");
    assert_eq!(
        v["janitor"]["environment"]["DOCKER_CONFIG"],
        "/var/lib/cc-ci-run/docker"
    );
    // Not every login shell's: other users' docker would read it.
    assert!(v["systemEnvironment"].get("DOCKER_CONFIG").is_none());
    assert_eq!(
        env_file(v["hostFile"].as_str().unwrap())["DOCKER_CONFIG"],
        "/var/lib/cc-ci-run/docker"
    );
    let store = host.replace(
        "dockerConfig = \"/var/lib/cc-ci-run/docker\";",
        "dockerConfig = \"/nix/store/x-docker\";",
    );
    assert_ne!(store, host);
    let v = eval_module(&store).unwrap();
    assert!(
        v["failedAssertions"].to_string().contains("dockerConfig"),
        "{v:#}"
    );
    let v = with("runner.limitEvents = [ \"pull_request\" \"custom\" ];");
    assert_eq!(
        v["runnerEnvironment"]["DRONE_LIMIT_EVENTS"],
        "pull_request,custom"
    );
}

/// The README's host with `line` added to its services.cc-ci-run.
fn readme_host_with(line: &str) -> String {
    let host = readme_host();
    let h = host.replace(
        "    enable = true;\n    abraHome",
        &format!("    enable = true;\n    {line}\n    abraHome"),
    );
    assert_ne!(h, host);
    h
}

fn failed_assertions(v: &serde_json::Value) -> String {
    v["failedAssertions"].to_string()
}

#[test]
fn the_module_passes_a_nixpkgs_review() {
    let v = eval_module(&readme_host()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["failedAssertions"], serde_json::json!([]), "{v:#}");
    // Both units need the engine, and are hardened; each may write only
    // the state, the abra home and the metrics directory.
    for unit in ["janitor", "runner"] {
        let unit = if unit == "runner" {
            v["runnerUnit"].clone()
        } else {
            v["janitor"].clone()
        };
        assert_eq!(unit["requires"], serde_json::json!(["docker.service"]));
        assert!(unit["after"].to_string().contains("docker.service"));
        let sc = &unit["serviceConfig"];
        assert_eq!(sc["NoNewPrivileges"], true, "{sc:#}");
        assert_eq!(sc["PrivateTmp"], true);
        assert_eq!(sc["ProtectSystem"], "strict");
        assert_eq!(
            sc["ReadWritePaths"],
            serde_json::json!([
                "/var/lib/cc-ci-run",
                "/var/lib/cc-ci-run/abra",
                "/var/lib/cc-ci-run-metrics",
                "/var/lib/cc-ci-run/docker"
            ])
        );
    }
    assert_eq!(v["janitor"]["serviceConfig"]["TimeoutStopSec"], "360s");
    // abra and docker: on the PATH and named by their store paths.
    let env = &v["janitor"]["environment"];
    assert!(env["CCCI_ABRA"]
        .as_str()
        .unwrap()
        .ends_with("-abra/bin/abra"));
    assert!(env["CCCI_DOCKER"]
        .as_str()
        .unwrap()
        .ends_with("-docker/bin/docker"));
    // curl (`comment`) by its store path too.
    assert!(env["CCCI_CURL"]
        .as_str()
        .unwrap()
        .ends_with("-curl/bin/curl"));
    let path = v["janitor"]["path"].to_string();
    assert!(path.contains("-abra") && path.contains("-docker"), "{path}");
    // The module's own user, with the abra home it owns.
    assert!(v["users"]["users"]["cc-ci-run"].is_object(), "{v:#}");
    assert!(v["tmpfiles"]
        .to_string()
        .contains("d /var/lib/cc-ci-run/abra 0750 cc-ci-run cc-ci-run"));
    assert!(v["tmpfiles"]
        .to_string()
        .contains("d /var/lib/cc-ci-run/docker 0700 cc-ci-run cc-ci-run"));
    assert_eq!(v["meta"]["maintainers"], serde_json::json!([]));

    // A user the host names is the host's: the module defines none.
    let v = eval_module(&readme_host_with("user = \"ci\";")).unwrap();
    assert_eq!(v["users"]["users"], serde_json::Value::Null, "{v:#}");
    assert!(v["users"]["groups"]["cc-ci-run"].is_object());

    // Secrets never go to the store: a path literal is not a path string,
    // and a store path is refused by an assertion.
    let e = eval_module(&readme_host().replace(
        "environmentFile = \"/run/secrets/drone-runner\";",
        "environmentFile = ./drone-runner;",
    ))
    .unwrap_err();
    assert!(
        e.contains("runner.environmentFile: not a strMatching"),
        "{e}"
    );
    let v = eval_module(&readme_host().replace(
        "environmentFile = \"/run/secrets/drone-runner\";",
        "environmentFile = \"/nix/store/0000-secret\";",
    ))
    .unwrap();
    assert!(failed_assertions(&v).contains("runner.environmentFile is in the Nix store"));

    // The janitor's stop must outlast a teardown; days are durations.
    let v = eval_module(&readme_host_with("janitor.stopTimeout = \"5m\";")).unwrap();
    assert!(failed_assertions(&v).contains("stopTimeout (5m) must exceed teardownTimeout (5m)"));
    let v = eval_module(&readme_host_with("recordRetention = \"14d\";")).unwrap();
    assert_eq!(v["failedAssertions"], serde_json::json!([]), "{v:#}");

    // extraSettings cannot shadow a typed option.
    let v = eval_module(&readme_host_with(
        "extraSettings.CCCI_STATE_DIR = \"/tmp/x\";",
    ))
    .unwrap();
    assert!(
        failed_assertions(&v)
            .contains("extraSettings sets what a typed option sets: CCCI_STATE_DIR"),
        "{v:#}"
    );
}

#[test]
fn the_stub_refuses_an_option_without_a_description_or_a_required_value() {
    let text = std::fs::read_to_string(repo().join("nix/module.nix")).unwrap();
    let tmp = tempdir();
    let module = tmp.path().join("module.nix");
    let changed = text.replacen(
        "description = \"DRONE_LIMIT_EVENTS: the build events this runner accepts (empty: all).\";",
        "",
        1,
    );
    assert_ne!(changed, text);
    std::fs::write(&module, changed).unwrap();
    let e = eval_module_file(&readme_host(), &module).unwrap_err();
    assert!(e.contains("runner.limitEvents: has no description"), "{e}");

    let host = readme_host();
    let no_abra = host.replace("abraPackage = abra;", "");
    assert_ne!(no_abra, host);
    let e = eval_module(&no_abra).unwrap_err();
    assert!(
        e.contains("abraPackage: has no default and is not set"),
        "{e}"
    );
}

#[test]
fn the_module_asserts_docker_and_refuses_unquotable_values() {
    let host = readme_host();
    let no_docker = host.replace("virtualisation.docker.enable = true;", "");
    assert_ne!(no_docker, host);
    let v = eval_module(&no_docker).unwrap();
    let failed = v["failedAssertions"].to_string();
    assert!(failed.contains("virtualisation.docker.enable"), "{failed}");

    let quote = host.replace(
        "enable = true;\n    abraHome",
        "enable = true;\n    extraSettings.CCCI_DOMAIN = \"it's\";\n    abraHome",
    );
    assert_ne!(quote, host);
    let v = eval_module(&quote).unwrap();
    assert!(
        v["failedAssertions"].to_string().contains("CCCI_DOMAIN"),
        "{v:#}"
    );
}

#[test]
fn the_module_checks_option_types_and_wires_metrics_only_with_node_exporter() {
    let host = readme_host();
    let bad = host.replace("capacity = 4;", "capacity = 0;");
    assert_ne!(bad, host);
    let e = eval_module(&bad).unwrap_err();
    assert!(e.contains("runner.capacity: not a positive integer"), "{e}");
    let typo = host.replace("abraHome =", "abraHom =");
    assert!(eval_module(&typo)
        .unwrap_err()
        .contains("abraHom: no such option"));

    let no_node = host.replace("services.prometheus.exporters.node.enable = true;", "");
    assert_ne!(no_node, host);
    let v = eval_module(&no_node).unwrap();
    assert!(v["janitor"]["environment"]
        .get("CCCI_METRICS_FILE")
        .is_none());
    assert_eq!(v["nodeExporterFlags"], serde_json::Value::Null);
}

#[test]
fn flake_lock_is_what_nix_computes_offline() {
    let tmp = tempdir();
    for f in ["flake.nix", "flake.lock"] {
        std::fs::copy(repo().join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::create_dir(tmp.path().join("nix")).unwrap();
    for f in ["module.nix", "package.nix", "shell.nix"] {
        std::fs::copy(repo().join("nix").join(f), tmp.path().join("nix").join(f)).unwrap();
    }
    let out = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "--option",
            "build-users-group",
            "",
            "flake",
            "metadata",
            "--json",
        ])
        .arg(format!("path:{}", tmp.path().display()))
        .stdin(Stdio::null())
        .output()
        .expect("run nix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("flake.lock")).unwrap()).unwrap();
    assert_eq!(
        meta["locks"], committed,
        "flake.lock differs from what nix computes"
    );
}
