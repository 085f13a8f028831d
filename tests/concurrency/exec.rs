//! `cc-ci-run exec`, the guarded wrapper of SPEC section 2, driven as a real
//! process: exit codes, Drone's cancel (SIGKILL of the step's `sh` alone),
//! signal forwarding and escalation, the end-of-life sweep, a parent that is
//! gone before the guard, descriptor hygiene and `--timeout`.
//!
//! Every step waits on something a process wrote (a pid file, a marker, a
//! line in a counter file, a reader on a FIFO) or on a process state in
//! /proc, always with the bound of `support::wait_until`. Time appears only
//! in assertions about the wrapper's own clock (the grace was honoured, a
//! deadline was not overslept), never as the way two processes meet.
//!
//! The stand-in commands never start a long-lived process *after* setting a
//! TERM trap: a child that `sh` forks runs the shell's handler until it
//! execs, so a SIGTERM that lands in that window (on a loaded machine, any
//! time before the child is first scheduled, and a later one coalesces with
//! it) is swallowed, and the program it execs lives on until the SIGKILL
//! after the grace. Background processes are started before the trap, and
//! after it the shell only idles in short foreground sleeps.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{self, KillOnPanic};

/// `cc-ci-run exec ARGS...` in `dir`, its log (stderr) in `dir/wrapper.err`.
fn exec_in(dir: &Path, args: &[&str]) -> Command {
    let mut c = support::ccci();
    c.current_dir(dir)
        .arg("exec")
        .args(args)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("wrapper.err")).expect("create wrapper.err"));
    c
}

fn spawn(mut cmd: Command) -> Child {
    cmd.spawn().expect("spawn")
}

/// What the wrapper logged.
fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("wrapper.err")).unwrap_or_default()
}

fn assert_gone(pids: &[(&str, i32)]) {
    for (what, pid) in pids {
        support::wait_until(&format!("{what} (pid {pid}) to be gone"), || {
            !support::alive(*pid)
        });
    }
}

#[test]
fn exit_code_is_the_commands_own_for_every_code() {
    let dir = support::tempdir();
    for want in [0, 1, 2, 3, 7, 42, 75, 125, 255] {
        let mut wrapper = spawn(exec_in(
            dir.path(),
            &["--", "sh", "-c", &format!("exit {want}")],
        ));
        assert_eq!(
            support::wait_exit(&mut wrapper),
            want,
            "log:\n{}",
            log(dir.path())
        );
    }
}

/// Bad input is exit 2 before the command starts, on `exec`'s own parse
/// path (the fast forms: a misspelt variable) and on clap's (a bad
/// `CCCI_GRACE`, a repeated option, no command): the error names the field.
#[test]
fn bad_input_is_exit_2_and_the_command_never_starts() {
    let dir = support::tempdir();
    let cmd = ["--", "sh", "-c", "echo ran > ran.marker"];
    #[allow(clippy::type_complexity)] // a table: args, one variable, the field named
    let cases: &[(&[&str], Option<(&str, &str)>, &str)] = &[
        (&cmd, Some(("CCCI_GARCE", "1s")), "CCCI_GARCE"),
        (&cmd, Some(("CCCI_GRACE", "soon")), "--grace"),
        (
            &[
                "--grace",
                "1s",
                "--grace",
                "2s",
                "sh",
                "-c",
                "echo ran > ran.marker",
            ],
            None,
            "--grace",
        ),
        (&["--grace", "1s"], None, "<CMD>"),
    ];
    for (args, var, names) in cases {
        let mut c = exec_in(dir.path(), args);
        if let Some((k, v)) = var {
            c.env(k, v);
        }
        let mut wrapper = spawn(c);
        assert_eq!(
            support::wait_exit(&mut wrapper),
            2,
            "exec {args:?} with {var:?}"
        );
        let err = log(dir.path());
        assert!(
            err.contains(names),
            "exec {args:?}: the error names {names}:\n{err}"
        );
        assert!(
            !dir.path().join("ran.marker").exists(),
            "exec {args:?} with {var:?}: the command ran"
        );
    }
}

#[test]
fn command_killed_by_a_signal_gives_128_plus_the_signal() {
    let dir = support::tempdir();
    for (name, n) in [
        ("TERM", 15),
        ("INT", 2),
        ("HUP", 1),
        ("KILL", 9),
        ("SEGV", 11),
    ] {
        // The shell kills itself; no core file (SEGV) is left behind.
        let body = format!("ulimit -c 0; kill -s {name} $$; exit 99");
        let mut wrapper = spawn(exec_in(dir.path(), &["--", "sh", "-c", &body]));
        assert_eq!(
            support::wait_exit(&mut wrapper),
            128 + n,
            "SIG{name}; log:\n{}",
            log(dir.path())
        );
    }
}

/// What a cancelled Drone step gets: the runner SIGKILLs the step's
/// `/bin/sh -e SCRIPT` and nothing else. The wrapper's PDEATHSIG turns that
/// into SIGTERM, which it forwards to the command's group; the command's trap
/// runs; and after the grace nothing of the tree is left, not even a helper
/// that ignores SIGTERM.
#[test]
fn drone_cancel_sigkill_of_the_step_shell_ends_the_whole_tree_after_the_trap() {
    let dir = support::tempdir();
    let d = dir.path();
    support::script(
        d,
        "child.sh",
        r#"sh -c 'trap "" TERM; echo $$ > stubborn.pid; exec sleep 1000' &
sleep 1000 &
echo $! > sleep.pid
trap 'echo TERM > term.marker; exit 0' TERM
echo $PPID > wrapper.pid
echo $$ > child.pid
wait
"#,
    );
    let step = support::script(
        d,
        "step.sh",
        "cc-ci-run exec -- sh child.sh\necho must-not-run > after.marker\n",
    );
    let mut guard = KillOnPanic::default();
    let mut sh = support::sh(d)
        .arg("-e")
        .arg(&step)
        .env("CCCI_GRACE", "1s")
        .stdout(Stdio::null())
        .stderr(File::create(d.join("wrapper.err")).expect("create wrapper.err"))
        .spawn()
        .expect("spawn the step shell");
    let sh_pid = guard.add(sh.id() as i32);
    // Every pid file is written after the trap (or the ignore) it depends on.
    let wrapper = guard.add(support::read_pid(&d.join("wrapper.pid")));
    let stubborn = guard.add(support::read_pid(&d.join("stubborn.pid")));
    let sleep = guard.add(support::read_pid(&d.join("sleep.pid")));
    let child = guard.add(support::read_pid(&d.join("child.pid")));
    assert_eq!(
        support::comm(wrapper).as_deref(),
        Some(&b"cc-ci-run"[..]),
        "the command's parent is the wrapper"
    );

    support::send(sh_pid, Signal::SIGKILL);
    assert_eq!(support::wait_exit(&mut sh), 128 + 9);

    support::wait_for_file(&d.join("term.marker"));
    assert_gone(&[
        ("the wrapper", wrapper),
        ("the command", child),
        ("the command's sleep", sleep),
        ("the helper that ignores SIGTERM", stubborn),
    ]);
    let log = log(d);
    assert!(
        log.contains("received SIGTERM: forwarding SIGTERM"),
        "PDEATHSIG reached the wrapper as SIGTERM; log:\n{log}"
    );
    assert!(
        !d.join("after.marker").exists(),
        "the step went on after the kill"
    );
}

/// A daemon that forks twice and calls setsid() leaves the command's
/// process group and session; the wrapper, as a child subreaper, still
/// inherits it and ends it before returning, even when it ignores SIGTERM.
#[test]
fn a_double_forked_setsid_daemon_does_not_outlive_exec() {
    let dir = support::tempdir();
    let d = dir.path();
    support::mkfifo(&d.join("release"));
    // Each daemon records "pid session" once it is set up; the command then
    // waits until the test has seen both, and exits 5.
    support::script(
        d,
        "child.sh",
        r#"( setsid sh -c 'read -r pid comm state ppid pgid sid rest < /proc/$$/stat
echo "$pid $sid" > plain.ids
exec sleep 1000' & )
( setsid sh -c 'trap "" TERM
read -r pid comm state ppid pgid sid rest < /proc/$$/stat
echo "$pid $sid" > stubborn.ids
exec sleep 1000' & )
read _ < release
exit 5
"#,
    );
    let mut guard = KillOnPanic::default();
    let mut wrapper = spawn(exec_in(d, &["--grace", "1s", "--", "sh", "child.sh"]));
    let wrapper_pid = guard.add(wrapper.id() as i32);
    // Both daemons are recorded before any check can fail and skip one.
    let daemons: Vec<(&str, i32, i32)> = ["plain.ids", "stubborn.ids"]
        .into_iter()
        .map(|name| {
            let path = d.join(name);
            support::wait_until(name, || support::lines(&path).len() == 1);
            let ids: Vec<i32> = support::lines(&path)[0]
                .split(' ')
                .map(|n| n.parse().expect("number"))
                .collect();
            (name, guard.add(ids[0]), ids[1])
        })
        .collect();
    for &(name, pid, sid) in &daemons {
        assert_eq!(sid, pid, "{name}: the daemon leads its own session");
        // Its intermediate parent exited: it was handed to the subreaper.
        support::wait_until(&format!("{name}: re-parented to the wrapper"), || {
            support::stat(pid).is_some_and(|p| p.ppid == wrapper_pid)
        });
    }

    support::release(&d.join("release"));
    assert_eq!(support::wait_exit(&mut wrapper), 5, "log:\n{}", log(d));
    // No wait here: the wrapper returns only once every descendant is reaped.
    for (name, pid, _) in daemons {
        assert!(!support::alive(pid), "{name}: daemon {pid} outlived exec");
    }
}

/// Regression: /proc/PID/stat of a process whose name (the first 15 bytes
/// of its file name) is cut inside a UTF-8 character is not valid UTF-8.
/// The sweep used to skip such a process, and since it was still the
/// wrapper's child, `exec` polled for it forever instead of returning.
#[test]
fn a_daemon_whose_name_is_not_utf8_does_not_hang_exec_or_outlive_it() {
    let dir = support::tempdir();
    let d = dir.path();
    // Nine two-byte characters: the kernel keeps 15 bytes, half a character.
    let name = "ééééééééé";
    std::os::unix::fs::symlink(which("sleep"), d.join(name)).expect("symlink sleep");
    support::mkfifo(&d.join("release"));
    support::script(
        d,
        "child.sh",
        &format!(
            r#"( setsid sh -c 'echo $$ > daemon.pid; exec "$PWD/{name}" 1000' & )
read _ < release
exit 5
"#
        ),
    );
    let mut guard = KillOnPanic::default();
    let mut wrapper = spawn(exec_in(d, &["--grace", "1s", "--", "sh", "child.sh"]));
    guard.add(wrapper.id() as i32);
    let daemon = guard.add(support::read_pid(&d.join("daemon.pid")));
    support::wait_until("the daemon to run under its cut name", || {
        support::comm(daemon).is_some_and(|c| std::str::from_utf8(&c).is_err())
    });

    support::release(&d.join("release"));
    assert_eq!(support::wait_exit(&mut wrapper), 5, "log:\n{}", log(d));
    assert!(!support::alive(daemon), "the daemon outlived exec");
}

fn which(program: &str) -> std::path::PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not found on PATH"))
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = support::tempdir();
    let d = dir.path();
    let mut guard = KillOnPanic::default();
    let mut wrapper = spawn(exec_in(
        d,
        &[
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo $$ > child.pid; exec sleep 1000",
        ],
    ));
    let wrapper_pid = guard.add(wrapper.id() as i32);
    let child = guard.add(support::read_pid(&d.join("child.pid")));

    let sent = Instant::now();
    support::send(wrapper_pid, Signal::SIGTERM);
    assert_eq!(
        support::wait_exit(&mut wrapper),
        128 + 9,
        "log:\n{}",
        log(d)
    );
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "SIGKILL came before the grace was over ({:?})",
        sent.elapsed()
    );
    assert!(!support::alive(child));
    let log = log(d);
    assert!(log.contains("grace expired: SIGKILL"), "log:\n{log}");
}

/// Unlike nextest's "second signal means SIGKILL now", a later signal is
/// forwarded again (SPEC section 2): the command's TERM trap sees both.
#[test]
fn a_second_sigterm_during_the_grace_is_forwarded_again() {
    let dir = support::tempdir();
    let d = dir.path();
    support::script(
        d,
        "child.sh",
        r#"n=0
trap 'n=$((n + 1)); echo $n >> terms; if [ $n -ge 2 ]; then exit 7; fi' TERM
echo $$ > child.pid
while :; do sleep 0.1; done
"#,
    );
    let terms = d.join("terms");
    let mut guard = KillOnPanic::default();
    // A grace far beyond the test's bound: only the second SIGTERM can end
    // the command in time.
    let mut wrapper = spawn(exec_in(d, &["--grace", "1h", "--", "sh", "child.sh"]));
    let wrapper_pid = guard.add(wrapper.id() as i32);
    guard.add(support::read_pid(&d.join("child.pid")));

    support::send(wrapper_pid, Signal::SIGTERM);
    support::wait_until("the first SIGTERM to reach the trap", || {
        support::lines(&terms).len() == 1
    });
    support::send(wrapper_pid, Signal::SIGTERM);
    assert_eq!(support::wait_exit(&mut wrapper), 7, "log:\n{}", log(d));
    assert_eq!(support::lines(&terms), ["1", "2"]);
}

#[test]
fn sigint_and_sighup_reach_the_command_as_sigterm() {
    for sig in [Signal::SIGINT, Signal::SIGHUP] {
        let dir = support::tempdir();
        let d = dir.path();
        support::script(
            d,
            "child.sh",
            r#"trap 'echo TERM >> got; exit 0' TERM
trap 'echo INT >> got; exit 1' INT
trap 'echo HUP >> got; exit 1' HUP
echo $$ > child.pid
while :; do sleep 0.1; done
"#,
        );
        let mut guard = KillOnPanic::default();
        let mut wrapper = spawn(exec_in(d, &["--grace", "1h", "--", "sh", "child.sh"]));
        let wrapper_pid = guard.add(wrapper.id() as i32);
        guard.add(support::read_pid(&d.join("child.pid")));

        support::send(wrapper_pid, sig);
        assert_eq!(
            support::wait_exit(&mut wrapper),
            0,
            "{sig}; log:\n{}",
            log(d)
        );
        assert_eq!(support::lines(&d.join("got")), ["TERM"], "{sig}");
    }
}

/// The wrapper's parent is gone before the wrapper even runs: its `sh`
/// started it in the background and exited. Made deterministic with a FIFO:
/// the parent P (in a session of its own, like Drone's `sh` is in the
/// runner's) starts C = `sh c.sh &` and exits; C blocks reading the FIFO;
/// the test reaps P, sees C re-parented, and only then releases C, which
/// execs the wrapper. The wrapper's first look at its parent thus already
/// sees the reaper. The test process makes itself a child subreaper so that
/// the reaper is the test, which can collect the wrapper's exit code.
#[test]
fn a_parent_gone_before_the_wrapper_started_is_detected() {
    let dir = support::tempdir();
    let d = dir.path();
    let _subreaper = Subreaper::become_one();
    support::mkfifo(&d.join("go"));
    support::script(
        d,
        "c.sh",
        r#"echo $$ > wrapper.pid
read _ < go
exec cc-ci-run exec --grace 1h -- sh -c 'echo $$ > child.pid; exec sleep 1000' 2> wrapper.err
"#,
    );
    let mut guard = KillOnPanic::default();
    let mut parent = support::sh(d);
    parent
        .args(["-c", "sh c.sh & exit 0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; nothing else runs in the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut parent, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut parent = parent.spawn().expect("spawn the parent");
    guard.add(parent.id() as i32);
    let c = guard.add(support::read_pid(&d.join("wrapper.pid")));
    assert_eq!(support::wait_exit(&mut parent), 0);
    let me = std::process::id() as i32;
    support::wait_until("C to be re-parented to the test", || {
        support::stat(c).is_some_and(|p| p.ppid == me)
    });
    assert_ne!(support::session(c), support::session(me));

    support::release(&d.join("go"));
    let code = wait_pid(c);
    let log = log(d);
    // The command is `exec sleep 1000` and the grace is 1h: only the
    // wrapper's SIGTERM at start can end it within the test's bound, and the
    // wrapper exits with the command's own code for that death.
    assert_eq!(code, 128 + 15, "log:\n{log}");
    assert!(log.contains("parent already gone at start"), "log:\n{log}");
    assert!(
        log.contains("the command ended: killed by SIGTERM"),
        "log:\n{log}"
    );
}

/// Waits, bounded, for a child of the test that std did not spawn (one
/// re-parented to us) and returns its exit code or 128+signal.
fn wait_pid(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut code = None;
    support::wait_until(&format!("process {pid} to exit"), || {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).expect("waitpid")
        {
            WaitStatus::Exited(_, c) => code = Some(c),
            WaitStatus::Signaled(_, s, _) => code = Some(128 + s as i32),
            _ => {}
        }
        code.is_some()
    });
    code.expect("set when the wait ended")
}

/// Makes the test process a child subreaper for the guard's lifetime.
/// nextest runs each test in its own process; under `cargo test` other
/// tests' orphans may become our zombies meanwhile, which is harmless (only
/// the one pid above is ever reaped here).
struct Subreaper;

impl Subreaper {
    fn become_one() -> Subreaper {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}

/// The wrapper is started with an extra descriptor (7) that is not
/// close-on-exec, as a CI runner's leaked pipe would be; the command sees
/// only 0, 1 and 2.
#[test]
fn no_descriptor_beyond_stdio_reaches_the_command() {
    let dir = support::tempdir();
    let d = dir.path();
    let start = support::script(
        d,
        "start.sh",
        r#"exec 7</dev/null
exec cc-ci-run exec --grace 1h -- sh -c 'echo $$ > child.pid; exec sleep 1000' 2> wrapper.err
"#,
    );
    let mut guard = KillOnPanic::default();
    let mut wrapper = support::sh(d)
        .arg(&start)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let wrapper_pid = guard.add(wrapper.id() as i32);
    let child = guard.add(support::read_pid(&d.join("child.pid")));
    // Look once the command sits in its sleep: comm says "sleep" from the
    // exec on, but the dynamic linker and setlocale then open (and close)
    // libc and the locale files on fd 3, which a look taken in between
    // would count. Blocked in nanosleep, it holds only what it got.
    support::wait_until("the command to block in its sleep", || {
        support::comm(child).as_deref() == Some(&b"sleep"[..]) && in_nanosleep(child)
    });
    assert_eq!(
        support::comm(wrapper_pid).as_deref(),
        Some(&b"cc-ci-run"[..])
    );
    assert!(
        cc_ci_run::sys::procfs::open_fds(wrapper_pid).contains(&7),
        "premise: the wrapper holds the extra descriptor"
    );
    assert_eq!(
        cc_ci_run::sys::procfs::open_fds(child),
        Vec::<i32>::new(),
        "descriptors above 2 reached the command"
    );

    support::send(wrapper_pid, Signal::SIGTERM);
    assert_eq!(
        support::wait_exit(&mut wrapper),
        128 + 15,
        "log:\n{}",
        log(d)
    );
}

/// Whether `pid` is blocked in nanosleep or clock_nanosleep, by the system
/// call number that /proc/PID/syscall gives first.
fn in_nanosleep(pid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep)
}

/// `--timeout`: SIGTERM to the command's group at the deadline and exit
/// 142. The command (`exec sleep 1000`) has no trap, so it dies of the
/// signal whenever it lands, and the wrapper says so; the grace (1h) rules
/// out that it was the SIGKILL.
#[test]
fn timeout_sends_sigterm_and_exits_142() {
    let dir = support::tempdir();
    let d = dir.path();
    let mut guard = KillOnPanic::default();
    let started = Instant::now();
    let mut wrapper = spawn(exec_in(
        d,
        &[
            "--timeout",
            "300ms",
            "--grace",
            "1h",
            "--",
            "sh",
            "-c",
            "exec sleep 1000",
        ],
    ));
    guard.add(wrapper.id() as i32);
    assert_eq!(support::wait_exit(&mut wrapper), 142, "log:\n{}", log(d));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let log = log(d);
    assert!(log.contains("deadline reached"), "log:\n{log}");
    assert!(
        log.contains("the command ended: killed by SIGTERM"),
        "log:\n{log}"
    );
}

/// A line of /proc/PID/status (`SigBlk:`, ...), without its key.
fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// The wrapper takes its signals from a signalfd on its one thread: while
/// the command runs the wrapper has no other thread, the command starts
/// with nothing blocked (the wrapper keeps SIGTERM, SIGINT and SIGHUP
/// blocked for the signalfd, and gives the command its starting mask
/// back), and each signal is still forwarded (SPEC section 2).
#[test]
fn the_wrapper_waits_on_one_thread_and_the_command_starts_unblocked() {
    let dir = support::tempdir();
    let d = dir.path();
    support::script(
        d,
        "child.sh",
        // The sleep starts before the trap (see the module header); the
        // shell then only runs builtins, and ends at the second TERM.
        r#"sleep 1000 &
trap 'echo TERM >> terms; [ "$(wc -l < terms)" -ge 2 ] && exit 0' TERM
echo $$ > child.pid
echo $PPID > wrapper.pid
while :; do wait; done
"#,
    );
    let mut guard = KillOnPanic::default();
    let mut wrapper = spawn(exec_in(d, &["--grace", "30s", "--", "sh", "child.sh"]));
    let pid = guard.add(wrapper.id() as i32);
    assert_eq!(support::read_pid(&d.join("wrapper.pid")), pid);
    // The command leads its own session, out of the wrapper's group: a
    // failing assertion must end it too (it outlives one TERM by design).
    guard.add(support::read_pid(&d.join("child.pid")));
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read the wrapper's tasks")
        .count();
    assert_eq!(tasks, 1, "the wrapper runs no thread beside its main one");
    // The spawner blocks every signal around its clone and restores the
    // mask once the child has exec'd: the command can be this far before
    // the wrapper is scheduled again, so the wrapper's steady mask is
    // waited for (a wrapper that kept another mask never gets there).
    support::wait_until(
        "the wrapper to keep SIGHUP, SIGINT and SIGTERM blocked for its signalfd, and only those (SigBlk 0000000000004003)",
        || status_field(pid, "SigBlk:").as_deref() == Some("0000000000004003"),
    );
    // The command's own mask as it starts: grep, exec'd by the wrapper
    // itself, reads its /proc/self/status. (A shell reading its own
    // `/proc/$$/status` is no witness: dash blocks every signal around
    // each fork it makes, so the file may show that instant.)
    let out = exec_in(d, &["--", "grep", "SigBlk", "/proc/self/status"])
        .stdout(Stdio::piped())
        .output()
        .expect("run grep under the wrapper");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "SigBlk:\t0000000000000000",
        "the command starts with the wrapper's starting mask (nothing blocked)"
    );
    // Forwarded on the first signal, and again on the second.
    support::send(pid, Signal::SIGHUP);
    support::wait_until("the first forwarded SIGTERM", || {
        support::lines(&d.join("terms")).len() == 1
    });
    support::send(pid, Signal::SIGINT);
    support::wait_until("the second forwarded SIGTERM", || {
        support::lines(&d.join("terms")).len() == 2
    });
    assert_eq!(support::wait_exit(&mut wrapper), 0, "log:\n{}", log(d));
    let log = log(d);
    assert!(log.contains("received SIGHUP: forwarding SIGTERM"), "{log}");
    assert!(log.contains("received SIGINT: forwarding SIGTERM"), "{log}");
}
