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
pub const BOUND: Duration = Duration::from_secs(30);

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

/// The process as /proc/PID/stat shows it, if it exists.
pub fn stat(pid: i32) -> Option<cc_ci_run::proc::ProcInfo> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    cc_ci_run::proc::parse_stat(&String::from_utf8_lossy(&bytes))
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

/// PATH for shell-driven tests: the built binary first (so a script can
/// call `cc-ci-run` the way a Drone step does), then the stand-ins.
pub fn test_path() -> String {
    format!(
        "{}:{}:{}",
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

/// A command for the binary with a clean environment: PATH with the
/// stand-ins first, and nothing inherited beyond what is set here.
pub fn ccci() -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                fake_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null());
    c
}

/// The exit code of a finished process, or 128+signal.
pub fn code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
