//! Shared helpers of the concurrency tests: the built binary, unique temp
//! directories, and waits that synchronise on files and process states
//! (with a generous bound that only turns a hang into a failure).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cc-ci-run binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cc-ci-run"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-ins for external programs (`abra`, `docker`, `git`).
pub fn fake_dir() -> PathBuf {
    repo().join("tests/fake")
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ccci-test-")
        .tempdir()
        .expect("create temp dir")
}

/// The bound on any wait in a test: a hang becomes a failure, never a pass.
/// A whole run now has four tiers (install, upgrade, backup, restore) and a
/// floor per tier; on the 2-core CI machine beside the other tests it took
/// more than 30 s, so the bound is 60 s (a longer bound only delays the
/// report of a real hang; nextest's own slow-timeout still ends the test).
pub const BOUND: Duration = Duration::from_secs(60);

/// Waits until `cond` holds, polling; panics with `what` after `BOUND`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path) {
    wait_until(&format!("file {}", path.display()), || path.exists());
}

/// Reads a file that holds a pid once it exists and is complete (ends in \n).
pub fn read_pid(path: &Path) -> i32 {
    let mut text = String::new();
    wait_until(&format!("pid in {}", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.trim().parse().expect("pid file holds a number")
}

/// Whether a process exists and is not a zombie. Reads bytes: a command
/// name cut inside a UTF-8 character must not make a live process look dead.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|p| !p.zombie)
}

/// Whether every thread of a process has exited, so that what it held (its
/// files, and with them its flocks) is released. A SIGKILLed process's
/// leader turns zombie at once, while another of its threads may still be
/// finishing a system call the kill cannot interrupt (an fdatasync on a
/// busy disk): until that thread is gone the lock is still held, and
/// [`alive`] alone would already say false.
pub fn exited_whole(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.filter_map(|t| t.ok()).all(|t| {
        std::fs::read(t.path().join("stat"))
            .ok()
            .and_then(|b| cc_ci_run::sys::procfs::parse_stat(&String::from_utf8_lossy(&b)))
            .is_none_or(|p| p.zombie)
    })
}

/// The process as /proc/PID/stat shows it, if it exists.
pub fn stat(pid: i32) -> Option<cc_ci_run::sys::procfs::ProcInfo> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    cc_ci_run::sys::procfs::parse_stat(&String::from_utf8_lossy(&bytes))
}

/// The command name of a process (raw bytes, without the newline).
pub fn comm(pid: i32) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Some(bytes)
}

/// The session of a process, if it exists.
pub fn session(pid: i32) -> Option<i32> {
    nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)))
        .ok()
        .map(|p| p.as_raw())
}

/// Sends `sig` to one process; panics if it does not exist (the test's
/// premise is then already wrong).
pub fn send(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("failed to send {sig} to {pid}: {e}"));
}

/// Waits, bounded, for a spawned process to exit; returns its code or
/// 128+signal.
pub fn wait_exit(child: &mut std::process::Child) -> i32 {
    let mut status = None;
    wait_until(&format!("process {} to exit", child.id()), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    code(status.expect("set when the wait ended"))
}

/// The complete lines of a file so far (none when it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete.lines().map(str::to_string).collect()
}

/// Writes a shell script into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    path
}

/// PATH for everything a test starts: the built binary first (so a script
/// can call `cc-ci-run` the way a Drone step does), the stand-ins, then the
/// system's own directories before the inherited PATH, so `python3` is the
/// distribution's interpreter (a version-manager shim costs ~100 ms per
/// stand-in call).
pub fn test_path() -> String {
    format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin:{}",
        bin().parent().expect("binary has a directory").display(),
        fake_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `sh ARGS...` in `dir` with a clean environment and [`test_path`].
pub fn sh(dir: &Path) -> Command {
    let mut c = Command::new("sh");
    c.env_clear()
        .env("PATH", test_path())
        .env("HOME", std::env::temp_dir())
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

/// Creates a named pipe.
pub fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Writes one line into a named pipe once a reader has it open: the release
/// of a process blocked in `read _ < FIFO`. Opens without blocking and
/// retries, so a reader that never comes is a bounded failure, not a hang.
pub fn release(fifo: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = None;
    wait_until(&format!("a reader on {}", fifo.display()), || {
        file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .ok();
        file.is_some()
    });
    file.expect("opened")
        .write_all(b"go\n")
        .expect("write to the fifo");
}

/// SIGKILLs the recorded processes, and the process groups they lead, when
/// a test fails half-way, so a failed test does not leave its process tree
/// running on the CI host (a member that ignores SIGTERM survives the
/// PDEATHSIG of a killed wrapper). Does nothing when the test passes: by then
/// every pid must be gone and may be reused.
#[derive(Default)]
pub struct KillOnPanic(pub Vec<i32>);

impl KillOnPanic {
    pub fn add(&mut self, pid: i32) -> i32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            use nix::sys::signal::{kill, killpg, Signal::SIGKILL};
            for pid in self.0.iter().map(|p| nix::unistd::Pid::from_raw(*p)) {
                let _ = kill(pid, SIGKILL);
                let _ = killpg(pid, SIGKILL);
            }
        }
    }
}

/// `DOCKER_HOST` of a command given no engine: a socket that is never
/// there, so that no test reaches this machine's real engine by default.
pub const NO_ENGINE: &str = "unix:///nonexistent/ccci-no-engine.sock";

/// A command for the binary with a clean environment: PATH with the
/// stand-ins first, no engine, and nothing inherited beyond what is set
/// here.
pub fn ccci() -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", test_path())
        .env("HOME", std::env::temp_dir())
        .env("DOCKER_HOST", NO_ENGINE)
        .stdin(Stdio::null());
    c
}

/// The stand-in engine (tests/fake/engine) on a socket of its own,
/// answering from the fake swarm `fake`; stopped when dropped (and by
/// itself when this process dies or `fake` is removed).
pub struct StandInEngine {
    child: std::process::Child,
    /// `DOCKER_HOST` for it: `unix://SOCKET`.
    pub host: String,
}

impl StandInEngine {
    /// Starts it with its socket in `dir`; returns once it accepts (the
    /// socket is renamed into place after `listen`).
    pub fn start(dir: &Path, fake: &Path) -> StandInEngine {
        std::fs::create_dir_all(fake).unwrap();
        let socket = dir.join("engine.sock");
        let child = Command::new(fake_dir().join("engine"))
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(fake)
            .env_remove("CCCI_FAKE_STATE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the stand-in engine");
        wait_for_file(&socket);
        StandInEngine {
            child,
            host: format!("unix://{}", socket.display()),
        }
    }
}

impl Drop for StandInEngine {
    fn drop(&mut self) {
        // Unreaped, the pid is still this child's, exited or not.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// The exit code of a finished process, or 128+signal.
pub fn code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A host for `run` and `janitor` tests: a state dir, the example recipe
/// built as git repositories with a canonical abra home, and the fake swarm.
pub struct Fixture {
    /// Before `tmp`: stopped before its state is removed.
    pub engine: StandInEngine,
    pub tmp: tempfile::TempDir,
    pub state: PathBuf,
    pub abra_home: PathBuf,
    pub fake: PathBuf,
    pub ready: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_recipe_args(&[])
    }

    /// A fixture whose example recipe is built with extra arguments of
    /// `make-example-recipe.sh` (`--sample-env KEY=VALUE`).
    pub fn with_recipe_args(args: &[&str]) -> Fixture {
        let tmp = tempdir();
        let out = Command::new("bash")
            .arg(repo().join("scripts/make-example-recipe.sh"))
            .args(args)
            .arg(tmp.path().join("recipe"))
            .output()
            .expect("run make-example-recipe.sh");
        assert!(
            out.status.success(),
            "make-example-recipe.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let abra_home = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("abra home line")
                .trim(),
        );
        let state = tmp.path().join("state");
        let fake = tmp.path().join("fake");
        let ready = tmp.path().join("ready");
        for d in [&state, &fake, &ready] {
            std::fs::create_dir_all(d).unwrap();
        }
        Fixture {
            engine: StandInEngine::start(tmp.path(), &fake),
            tmp,
            state,
            abra_home,
            fake,
            ready,
        }
    }

    /// The binary with this host's environment.
    pub fn cmd(&self) -> Command {
        let mut c = ccci();
        c.env("CCCI_STATE_DIR", &self.state)
            .env("CCCI_ABRA_HOME", &self.abra_home)
            .env("CCCI_FAKE_STATE", &self.fake)
            .env("DOCKER_HOST", &self.engine.host)
            .env("CCCI_EXAMPLE_READY_DIR", &self.ready)
            .env("CCCI_CI_TESTS", self.tmp.path().join("ci-tests"))
            .env("CCCI_GRACE", "2s")
            .env("CCCI_TEARDOWN_TIMEOUT", "20s")
            .env("CCCI_CONVERGE_TIMEOUT", "10s")
            // The stand-in swarm's apps serve nothing (and the example's
            // port is served only on a real engine): the floor is off for
            // every fixture run but the floor's own tests, which serve on
            // 127.0.0.1 and remove this (tests/concurrency/floor.rs).
            .env("CCCI_FLOOR", "off");
        c
    }

    /// `cc-ci-run run --recipe example ARGS...`
    pub fn run_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.arg("run").arg("--recipe").arg("example").args(args);
        c
    }

    /// The stand-in abra (file backend) with the canonical ABRA_DIR.
    pub fn abra(&self, args: &[&str]) -> std::process::Output {
        Command::new(fake_dir().join("abra"))
            .args(args)
            .env("ABRA_DIR", &self.abra_home)
            .env("CCCI_FAKE_STATE", &self.fake)
            .env("PATH", test_path())
            .output()
            .unwrap()
    }

    /// The stand-ins' call log, one JSON object per call event.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.fake.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("call log line is JSON"))
            .collect()
    }

    /// Finished abra steps of the log: (step, domain, argv) with result ok.
    pub fn ok_steps(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c["result"] == "ok" && c["prog"] == "abra")
            .map(|c| {
                (
                    c["step"].as_str().unwrap_or("").to_string(),
                    c["domain"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Names of everything the fake swarm still holds (stacks with
    /// services or lingering containers, volumes, secrets, env files).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for sub in ["volumes", "secrets", "containers", "networks"] {
            if let Ok(rd) = std::fs::read_dir(self.fake.join(sub)) {
                left.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.fake.join("stacks")) {
            for e in rd.filter_map(|e| e.ok()) {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap_or_default())
                        .unwrap_or_default();
                let services = v["services"]
                    .as_object()
                    .map(|m| !m.is_empty())
                    .unwrap_or(false);
                if services {
                    left.push(format!("stack {}", e.file_name().to_string_lossy()));
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.abra_home.join("servers/default")) {
            left.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("env {}", e.file_name().to_string_lossy())),
            );
        }
        left
    }

    /// The run record of `run_id`.
    pub fn record(&self, run_id: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.join("runs").join(run_id).join("run.json"))
            .expect("run record exists");
        serde_json::from_str(&text).expect("run record is JSON")
    }

    /// Whether a lock file is free: util-linux flock(1) can take it at once.
    pub fn lock_free(&self, kind: &str, name: &str) -> bool {
        let path = self
            .state
            .join("locks")
            .join(kind)
            .join(format!("{name}.lock"));
        if !path.exists() {
            return true;
        }
        Command::new("flock")
            .args(["-n", "-E", "99"])
            .arg(&path)
            .arg("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The per-run tree (ABRA_DIR and scratch) of `run_id` is gone.
    pub fn tree_gone(&self, run_id: &str) -> bool {
        let root = self.state.join("runs").join(run_id);
        !root.join("abra").exists() && !root.join("work").exists()
    }

    /// Waits for a hang marker of the stand-ins (`hang/STEP.PID`).
    pub fn wait_hang(&self, step: &str) -> i32 {
        wait_hang_in(&self.fake, step)
    }
}

/// The pids of every process whose environment holds `CCCI_FAKE_STATE=value`
/// (what a run started: harness, abra, tests), for "nothing left" checks.
/// A process whose leader is a zombie while another of its threads still
/// runs (see [`exited_whole`]) counts: its environment is read through
/// that thread.
pub fn procs_with_env(key: &str, value: &Path) -> Vec<i32> {
    let needle = format!("{key}={}", value.display());
    let me = std::process::id() as i32;
    let has = |path: String| {
        std::fs::read(path)
            .map(|b| b.split(|c| *c == 0).any(|kv| kv == needle.as_bytes()))
            .unwrap_or(false)
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != me)
        .filter(|p| {
            if alive(*p) {
                return has(format!("/proc/{p}/environ"));
            }
            // A zombie leader: any thread still running shares its memory.
            std::fs::read_dir(format!("/proc/{p}/task"))
                .into_iter()
                .flatten()
                .filter_map(|t| t.ok())
                .any(|t| has(t.path().join("environ").display().to_string()))
        })
        .collect()
}

/// Starts `flock FILE sleep 600` in a process group of its own and waits
/// until it holds the lock; killing the group (not only `flock`, whose
/// `sleep` child inherits the locked descriptor) releases it.
pub fn hold_with_flock(lock: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let child = Command::new("flock")
        .arg(lock)
        .args(["sleep", "600"])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_until("flock holds the lock", || {
        !Command::new("flock")
            .args(["-n"])
            .arg(lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    });
    child
}

/// Kills a process group started by [`hold_with_flock`], reaps its leader,
/// and waits until no live member is left: `sleep` holds the locked
/// descriptor too, and killpg returns before it has exited, so a lock check
/// right after the leader's wait could still see the lock held.
pub fn release_flock(mut child: std::process::Child) {
    let pgid = child.id() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    wait_until("the flock holder's group to exit", || {
        !std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(stat)
            .any(|p| p.pgid == pgid && !p.zombie)
    });
}

/// Waits for a stand-in's hang marker `FAKE_STATE/hang/STEP.PID`; returns PID.
pub fn wait_hang_in(fake_state: &Path, step: &str) -> i32 {
    let dir = fake_state.join("hang");
    let prefix = format!("{step}.");
    let mut pid = 0;
    wait_until(&format!("hang marker {step}"), || {
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .any(|name| {
                name.strip_prefix(&prefix)
                    .map(|p| pid = p.parse().unwrap_or(0))
                    .is_some()
            })
    });
    pid
}

/// Starts `cmd` the way Drone's exec runner starts a step: its command line
/// written to `dir/step.sh` and run as `/bin/sh -e step.sh`, with `cmd`'s
/// environment and nothing else. Cancel is a SIGKILL of that `sh` alone.
pub fn spawn_as_drone_step(cmd: &Command, dir: &Path) -> std::process::Child {
    let script = dir.join("step.sh");
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    std::fs::write(
        &script,
        format!(
            "'{}' {}\n",
            cmd.get_program().to_string_lossy(),
            args.join(" ")
        ),
    )
    .unwrap();
    let mut sh = Command::new("/bin/sh");
    sh.arg("-e").arg(&script).env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    sh.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `abra app new` and `app deploy` of release `1.0.0+1.0` at `domain`, as
/// an operator deploys an app outside cc-ci-run (no marker); `abra` runs
/// the stand-in with the canonical ABRA_DIR.
pub fn deploy_outside(domain: &str, abra: impl Fn(&[&str]) -> std::process::Output) {
    let new = [
        "app",
        "new",
        "example",
        "1.0.0+1.0",
        "-s",
        "default",
        "-D",
        domain,
        "-S",
        "-n",
    ];
    let deploy = ["app", "deploy", domain, "1.0.0+1.0", "-D", "-c", "-n"];
    for args in [&new[..], &deploy[..]] {
        let out = abra(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes the ownership marker a run writes into the env file right after
/// `app new`: what an orphan of a dead run carries (the janitor and a
/// run's pre-clean tear down nothing else).
pub fn mark_created_by_a_run(abra_home: &Path, domain: &str) {
    let env = abra_home
        .join("servers/default")
        .join(format!("{domain}.env"));
    let text = std::fs::read_to_string(&env).unwrap();
    let line = cc_ci_run::ext::abra::marker::line("drone-x-1", "ci1", "2026-01-01T00:00:00.000Z");
    std::fs::write(
        &env,
        cc_ci_run::ext::abra::marker::with_marker(&text, &line),
    )
    .unwrap();
}
