//! The spawner (`sys::spawn` on a `sys::spec::Spec`) called in this
//! process, its children read back through /proc: the process group or
//! session, the signal mask and dispositions, PDEATHSIG, resource limits,
//! the environment, the PATH search, and what an exec failure leaves.
//!
//! `spawn` returns once the child's exec is past its point of no return
//! (the parent sleeps in a vfork-style clone until then), so the set-up
//! the child made (group, mask, limits) is final when /proc is read; what
//! the exec itself does after that (closing the close-on-exec
//! descriptors, placing the new environment) is waited for: the stand-in
//! `sleep` is read once it sits in its nanosleep.
//!
//! Each test is its own process under nextest, so "no child left" is read
//! as: this process has no child at all.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use cc_ci_run::sys::spawn::{self, Child, Isolation, Status, Waited};
use cc_ci_run::sys::spec::{Environ, Spec, Stdio};
use nix::sys::resource::Resource;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::support::{self, KillOnPanic};

/// A line of /proc/PID/status, without its key, as a bit mask.
fn status_mask(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("a hex mask")
}

fn bit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

/// `sleep 1000` (found on the PATH) as `spec` places it.
fn sleeper(env: &Environ, isolation: Isolation) -> Spec<'_> {
    let mut s = Spec::new("sleep", env, isolation);
    s.arg("1000");
    s
}

/// Waits until `pid` is `sleep` blocked in its nanosleep: its exec is
/// complete.
fn asleep(pid: i32) {
    support::wait_until("the child to sleep", || {
        let nr = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
            });
        support::comm(pid).as_deref() == Some(&b"sleep"[..])
            && (nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep))
    });
}

fn end(mut child: Child) -> Status {
    child
        .terminate(Duration::from_secs(5))
        .expect("terminate the child")
}

fn wait(child: &mut Child) -> Status {
    let waited = child
        .wait(None, Some(Instant::now() + Duration::from_secs(30)))
        .expect("wait");
    assert_eq!(waited, Waited::Exited, "the child did not exit in 30 s");
    child.status().expect("reaped")
}

/// Whether this process has any child, exited or not (`waitid` with
/// WNOWAIT reaps nothing).
fn has_children() -> bool {
    let r = nix::sys::wait::waitid(
        nix::sys::wait::Id::All,
        nix::sys::wait::WaitPidFlag::WEXITED
            | nix::sys::wait::WaitPidFlag::WNOHANG
            | nix::sys::wait::WaitPidFlag::WNOWAIT,
    );
    r != Err(nix::errno::Errno::ECHILD)
}

fn io_kind(e: &anyhow::Error) -> Option<std::io::ErrorKind> {
    e.chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(|e| e.kind())
}

/// Group: the child leads a process group of its own in our session;
/// Session: a session of its own. Both start with the mask asked for (none
/// blocked by default, whatever the spawning thread blocks) and with
/// SIGPIPE at its default action although Rust's runtime ignores it here.
#[test]
fn a_child_leads_its_own_group_or_session_with_the_asked_mask_and_sigpipe_default() {
    let env = Environ::inherited();
    let me = std::process::id() as i32;
    assert_ne!(
        status_mask(me, "SigIgn:") & bit(Signal::SIGPIPE),
        0,
        "premise: this process ignores SIGPIPE"
    );
    let mut usr2 = SigSet::empty();
    usr2.add(Signal::SIGUSR2);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr2), None).expect("block");
    let mut guard = KillOnPanic::default();

    let group = spawn::spawn(&sleeper(&env, Isolation::Group)).expect("spawn");
    let pid = guard.add(group.pid.as_raw());
    let st = support::stat(pid).expect("stat");
    assert_eq!(st.pgid, pid, "the child leads its own process group");
    assert_eq!(
        support::session(pid),
        support::session(me),
        "in our session"
    );
    assert_eq!(status_mask(pid, "SigBlk:"), 0, "nothing blocked by default");
    assert_eq!(status_mask(pid, "SigIgn:") & bit(Signal::SIGPIPE), 0);
    end(group);

    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    let mut spec = sleeper(&env, Isolation::Session);
    spec.sigmask(usr1);
    let session = spawn::spawn(&spec).expect("spawn");
    let pid = guard.add(session.pid.as_raw());
    assert_eq!(
        support::session(pid),
        Some(pid),
        "the child leads a session"
    );
    assert_eq!(support::stat(pid).expect("stat").pgid, pid);
    assert_eq!(status_mask(pid, "SigBlk:"), bit(Signal::SIGUSR1));
    assert_eq!(end(session), Status::Signaled(libc::SIGTERM));
}

/// PDEATHSIG is the spawning thread's: when the thread that spawned the
/// child ends, the child gets SIGTERM (and another thread reaps it).
#[test]
fn the_child_gets_sigterm_when_the_spawning_thread_ends() {
    let env = Environ::inherited();
    let mut guard = KillOnPanic::default();
    let mut child = std::thread::scope(|s| {
        s.spawn(|| spawn::spawn(&sleeper(&env, Isolation::Group)).expect("spawn"))
            .join()
            .expect("the spawning thread")
    });
    guard.add(child.pid.as_raw());
    assert_eq!(wait(&mut child), Status::Signaled(libc::SIGTERM));
}

/// The limits asked for are the child's, soft and hard, as /proc shows.
#[test]
fn the_child_starts_with_the_asked_resource_limits() {
    let env = Environ::inherited();
    let mut guard = KillOnPanic::default();
    let mut spec = sleeper(&env, Isolation::Group);
    spec.rlimit(Resource::RLIMIT_NOFILE, 32, 48)
        .rlimit(Resource::RLIMIT_CPU, 100, 101);
    let child = spawn::spawn(&spec).expect("spawn");
    let pid = guard.add(child.pid.as_raw());
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let row = |name: &str| -> Vec<String> {
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {limits}"));
        line[name.len()..]
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("Max open files")[..2], ["32", "48"]);
    assert_eq!(row("Max cpu time")[..2], ["100", "101"]);
    end(child);
}

/// An exec that fails is the kernel's errno in the error's chain (what
/// `exec` maps to 127 and 126), the step is named when it is not the exec,
/// and the child that failed is reaped before `spawn` returns.
#[test]
fn an_exec_failure_carries_the_errno_and_leaves_no_child() {
    let dir = support::tempdir();
    let d = dir.path();
    let env = Environ::inherited();
    let plain = support::script(d, "plain", "#!/bin/sh\nexit 0\n");
    assert!(!has_children(), "premise: no child yet");

    let missing = spawn::spawn(&Spec::new(d.join("missing"), &env, Isolation::Group))
        .expect_err("a missing program");
    assert_eq!(io_kind(&missing), Some(std::io::ErrorKind::NotFound));
    assert!(
        format!("{missing:#}").starts_with("failed to start"),
        "{missing:#}"
    );
    assert!(!has_children(), "a failed child was left unreaped");

    let denied =
        spawn::spawn(&Spec::new(&plain, &env, Isolation::Group)).expect_err("not executable");
    assert_eq!(io_kind(&denied), Some(std::io::ErrorKind::PermissionDenied));
    assert!(!has_children(), "a failed child was left unreaped");

    let mut spec = Spec::new("true", &env, Isolation::Group);
    spec.cwd(d.join("no-such-dir"));
    let chdir = spawn::spawn(&spec).expect_err("a missing directory");
    assert_eq!(io_kind(&chdir), Some(std::io::ErrorKind::NotFound));
    assert!(format!("{chdir:#}").contains("chdir"), "{chdir:#}");
    assert!(!has_children(), "a failed child was left unreaped");
}

/// A program name without `/` is searched in the PATH of the child's
/// environment, as execvp does: a match that is not executable is passed
/// over for a later one, and is the error (EACCES) only when nothing runs.
#[test]
fn the_path_search_uses_the_childs_path_and_passes_over_a_non_executable_match() {
    let dir = support::tempdir();
    let d = dir.path();
    for sub in ["a", "b", "empty"] {
        std::fs::create_dir(d.join(sub)).expect("mkdir");
    }
    support::script(&d.join("a"), "prog", "#!/bin/sh\nexit 1\n");
    let good = support::script(&d.join("b"), "prog", "#!/bin/sh\nexit 7\n");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = |dirs: &[&str]| {
        dirs.iter()
            .map(|s| d.join(s).display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let run = |dirs: &[&str]| {
        let mut env = Environ::inherited();
        env.set("PATH", "/nonexistent");
        let mut spec = Spec::new("prog", &env, Isolation::Group);
        // The child's PATH (an override of the base) is searched, not ours.
        spec.env("PATH", path(dirs));
        spawn::spawn(&spec).map(|mut c| wait(&mut c))
    };
    assert_eq!(run(&["a", "b"]).expect("spawn"), Status::Exited(7));
    let denied = run(&["empty", "a"]).expect_err("only a non-executable match");
    assert_eq!(io_kind(&denied), Some(std::io::ErrorKind::PermissionDenied));
    let missing = run(&["empty"]).expect_err("no match");
    assert_eq!(io_kind(&missing), Some(std::io::ErrorKind::NotFound));
    assert!(!has_children());
}

/// A variable set on the spec replaces the base's entry of the same name
/// (glibc's getenv takes the first of duplicates): the child's environ
/// holds each name once, with the last value set.
#[test]
fn an_override_replaces_the_base_variable_and_never_duplicates_it() {
    let mut env = Environ::inherited();
    env.set("CCCI_SPAWN_A", "base");
    env.set("CCCI_SPAWN_B", "first");
    env.set("CCCI_SPAWN_B", "second");
    let mut guard = KillOnPanic::default();
    let mut spec = sleeper(&env, Isolation::Group);
    spec.env("CCCI_SPAWN_A", "over").env("CCCI_SPAWN_A", "last");
    spec.env("CCCI_SPAWN_C", "new");
    let child = spawn::spawn(&spec).expect("spawn");
    let pid = guard.add(child.pid.as_raw());
    asleep(pid);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let vars: Vec<&[u8]> = environ
        .split(|b| *b == 0)
        .filter(|v| v.starts_with(b"CCCI_SPAWN_"))
        .collect();
    let mut sorted = vars.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            &b"CCCI_SPAWN_A=last"[..],
            b"CCCI_SPAWN_B=second",
            b"CCCI_SPAWN_C=new"
        ]
    );
    end(child);
}

/// Stdio goes where it was asked, the working directory is set, and a
/// file the kernel cannot execute (a script without `#!`, ENOEXEC) runs
/// under /bin/sh, as execvp runs it.
#[test]
fn stdio_cwd_and_a_script_without_shebang_run_as_execvp_would() {
    use std::io::{Read, Seek};
    let dir = support::tempdir();
    let d = dir.path();
    let bare = support::script(d, "bare", "pwd\necho \"$0 $1\" >&2\nexit 3\n");
    std::fs::set_permissions(&bare, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    let env = Environ::inherited();
    let mut spec = Spec::new(&bare, &env, Isolation::Group);
    spec.arg("one")
        .cwd(d)
        .stdin(Stdio::Null)
        .stdout(Stdio::Fd(out.as_fd()))
        .stderr(Stdio::Fd(err.as_fd()));
    assert_eq!(spec.program(), OsStr::new(&bare));
    let mut child = spawn::spawn(&spec).expect("spawn");
    drop(spec);
    assert_eq!(wait(&mut child), Status::Exited(3));
    let read = |f: &mut std::fs::File| {
        let mut s = String::new();
        f.rewind().expect("rewind");
        f.read_to_string(&mut s).expect("read");
        s
    };
    let canonical = d.canonicalize().expect("canonicalize");
    assert_eq!(read(&mut out).trim(), canonical.display().to_string());
    assert_eq!(
        read(&mut err).trim(),
        format!("{} one", bare.display()),
        "run as `/bin/sh FILE ARGS`"
    );
}

/// Spawned children do not get this process's descriptors: a descriptor
/// opened without close-on-exec stays here.
#[test]
fn no_descriptor_beyond_stdio_reaches_a_spawned_child() {
    let env = Environ::inherited();
    let mut guard = KillOnPanic::default();
    // SAFETY: plain system call; the descriptor is closed below.
    let leaked = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 2, "premise: a descriptor without close-on-exec");
    let child = spawn::spawn(&sleeper(&env, Isolation::Group)).expect("spawn");
    let pid = guard.add(child.pid.as_raw());
    asleep(pid);
    assert_eq!(cc_ci_run::sys::procfs::open_fds(pid), Vec::<i32>::new());
    // SAFETY: our own descriptor, opened above.
    unsafe { libc::close(leaked) };
    end(child);
}
