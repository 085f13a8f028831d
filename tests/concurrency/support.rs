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

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(") ")
                .map(|(_, r)| r.chars().next().unwrap_or('?'));
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
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
