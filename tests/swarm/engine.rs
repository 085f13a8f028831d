//! A host whose `abra` deploys to the real swarm, and the engine-side checks
//! and clean-up every swarm test uses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

use crate::support::*;

/// `docker ARGS` → trimmed stdout lines (empty on failure).
pub fn docker(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Fails the test at once when no swarm answers, with the reason.
pub fn require_swarm() {
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(
        state.first().map(String::as_str),
        Some("active"),
        "the swarm tests need an active one-node swarm: docker swarm init --advertise-addr 127.0.0.1 (.ci/run does it)"
    );
}

static IMAGES: Once = Once::new();

/// Builds the example recipe's images once per test process.
pub fn build_images() {
    IMAGES.call_once(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/build-example-images.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the example images failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A runner host against the real swarm. Every stack it may create is named
/// from `domains`; dropping it removes whatever of them is left.
pub struct SwarmHost {
    pub tmp: tempfile::TempDir,
    pub state: PathBuf,
    pub abra_home: PathBuf,
    pub fake: PathBuf,
    pub ready: PathBuf,
    pub domains: Vec<String>,
}

/// A domain no other test uses: `example-b<N>.ci.localhost` (it matches
/// the janitor's default RUN_APP_RE), N from the test's name and our pid.
pub fn domain_for(test: &str, i: u32) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in test.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    format!(
        "example-b{}.ci.localhost",
        (h % 100_000) * 1000 + (std::process::id() as u64 % 100) * 10 + i as u64
    )
}

pub fn stack_of(domain: &str) -> String {
    let mut s = domain.replace('.', "_");
    s.truncate(45);
    s
}

impl SwarmHost {
    pub fn new(domains: Vec<String>) -> SwarmHost {
        SwarmHost::with_recipe_args(domains, &[])
    }

    /// A host whose example recipe is built with extra arguments of
    /// `make-example-recipe.sh` (`--sample-env KEY=VALUE`).
    pub fn with_recipe_args(domains: Vec<String>, args: &[&str]) -> SwarmHost {
        require_swarm();
        build_images();
        let tmp = tempdir();
        let out = Command::new("bash")
            .arg(repo().join("scripts/make-example-recipe.sh"))
            .args(args)
            .arg(tmp.path().join("recipe"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let abra_home = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap()
                .trim(),
        );
        let host = SwarmHost {
            state: tmp.path().join("state"),
            fake: tmp.path().join("fake"),
            ready: tmp.path().join("ready"),
            abra_home,
            tmp,
            domains,
        };
        for d in [&host.state, &host.fake, &host.ready] {
            std::fs::create_dir_all(d).unwrap();
        }
        host
    }

    fn path(&self) -> String {
        format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin:{}",
            bin().parent().unwrap().display(),
            repo().join("tests/fake-swarm").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The binary with this host's environment: the swarm-backed stand-in
    /// abra, the real docker.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", self.path())
            .env("HOME", self.tmp.path())
            .env("CCCI_STATE_DIR", &self.state)
            .env("CCCI_ABRA_HOME", &self.abra_home)
            .env("CCCI_FAKE_STATE", &self.fake)
            .env("CCCI_FAKE_BACKEND", "swarm")
            .env("CCCI_EXAMPLE_READY_DIR", &self.ready)
            .env("CCCI_CI_TESTS", self.tmp.path().join("ci-tests"))
            .env("CCCI_GRACE", "3s")
            .env("CCCI_TEARDOWN_TIMEOUT", "90s")
            .env("CCCI_CONVERGE_TIMEOUT", "60s")
            .env("CCCI_JANITOR", "off")
            // The example's app answers on its own host-mode port, which
            // the default app URL (https://{domain}/, no DNS here) does not
            // reach: the floor is off but in its own tests (floor.rs),
            // which point it at the port.
            .env("CCCI_FLOOR", "off")
            .stdin(Stdio::null());
        c
    }

    /// `run --recipe example --pr 1 --domain D ARGS`
    pub fn run_cmd(&self, domain: &str, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args([
            "run", "--recipe", "example", "--pr", "1", "--domain", domain,
        ])
        .args(args);
        c
    }

    /// The stand-in abra (swarm backend) with the canonical ABRA_DIR.
    pub fn abra(&self, args: &[&str]) -> std::process::Output {
        Command::new(repo().join("tests/fake-swarm/abra"))
            .args(args)
            .env("PATH", self.path())
            .env("ABRA_DIR", &self.abra_home)
            .env("CCCI_FAKE_STATE", &self.fake)
            .output()
            .unwrap()
    }

    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.fake.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn record(&self, run_id: &str) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.state.join("runs").join(run_id).join("run.json"))
                .unwrap(),
        )
        .unwrap()
    }

    pub fn lock_free(&self, kind: &str, name: &str) -> bool {
        let path = self
            .state
            .join("locks")
            .join(kind)
            .join(format!("{name}.lock"));
        !path.exists()
            || Command::new("flock")
                .arg("-n")
                .arg(&path)
                .arg("true")
                .status()
                .unwrap()
                .success()
    }

    pub fn tree_gone(&self, run_id: &str) -> bool {
        let root = self.state.join("runs").join(run_id);
        !root.join("abra").exists() && !root.join("work").exists()
    }

    pub fn wait_hang(&self, step: &str) -> i32 {
        wait_hang_in(&self.fake, step)
    }
}

/// What the engine still holds of `domain`'s stack: stack, containers,
/// volumes, secrets (and the env file).
pub fn leftovers(host: &SwarmHost, domain: &str) -> Vec<String> {
    let stack = stack_of(domain);
    let mut left = Vec::new();
    let label = format!("label=com.docker.stack.namespace={stack}");
    left.extend(
        docker(&["stack", "ls", "--format", "{{.Name}}"])
            .into_iter()
            .filter(|s| *s == stack)
            .map(|s| format!("stack {s}")),
    );
    left.extend(
        docker(&["ps", "-a", "-q", "--filter", &label])
            .into_iter()
            .map(|s| format!("container {s}")),
    );
    left.extend(
        docker(&["network", "ls", "-q", "--filter", &label])
            .into_iter()
            .map(|s| format!("network {s}")),
    );
    left.extend(
        docker(&["volume", "ls", "--format", "{{.Name}}"])
            .into_iter()
            .filter(|v| v.starts_with(&format!("{stack}_")))
            .map(|s| format!("volume {s}")),
    );
    left.extend(
        docker(&["secret", "ls", "--format", "{{.Name}}"])
            .into_iter()
            .filter(|v| v.starts_with(&format!("{stack}_")))
            .map(|s| format!("secret {s}")),
    );
    if host
        .abra_home
        .join("servers/default")
        .join(format!("{domain}.env"))
        .exists()
    {
        left.push(format!("env {domain}"));
    }
    left
}

/// Removes whatever of `stack` is on the engine (test clean-up, every path).
pub fn purge(stack: &str) {
    let _ = Command::new("docker")
        .args(["stack", "rm", stack])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let label = format!("label=com.docker.stack.namespace={stack}");
    let start = std::time::Instant::now();
    while !docker(&["ps", "-a", "-q", "--filter", &label]).is_empty()
        && start.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for v in docker(&["volume", "ls", "--format", "{{.Name}}"])
        .into_iter()
        .filter(|v| v.starts_with(&format!("{stack}_")))
    {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &v])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for s in docker(&["secret", "ls", "--format", "{{.Name}}"])
        .into_iter()
        .filter(|v| v.starts_with(&format!("{stack}_")))
    {
        let _ = Command::new("docker")
            .args(["secret", "rm", &s])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for SwarmHost {
    fn drop(&mut self) {
        // Nothing a test deployed outlives it, on every path: processes
        // first (they could deploy again), then the engine's objects.
        for pid in procs_with_env("CCCI_FAKE_STATE", &self.fake) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for d in &self.domains {
            purge(&stack_of(d));
        }
    }
}

pub fn env_file(host: &SwarmHost, domain: &str) -> PathBuf {
    host.abra_home
        .join("servers/default")
        .join(format!("{domain}.env"))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
