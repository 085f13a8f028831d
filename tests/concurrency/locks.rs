//! Locks with real flocks and real processes: util-linux interop both ways,
//! SIGKILL of a holder, the unlink/re-acquire race, close-on-exec, planted
//! symlinks, duplicate runs, and the `locks` and `unlock` commands.
//!
//! Every wait is on a line of output, a lock state in /proc/locks or a
//! process state, bounded by `support::BOUND`; none is a bare sleep.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cc_ci_run::lock::flock::holder::{parse_proc_locks, read_proc_locks};
use cc_ci_run::lock::flock::{self as lock, Acquire, TryLock};
use cc_ci_run::lock::{Kind, OwnerRecord, Wait};
use cc_ci_run::sys::latch::Latch;
use serde_json::Value;

use crate::support::{alive, ccci, code, tempdir, wait_until, BOUND};

/// A process whose stdout lines arrive on a channel, so a test can wait
/// for one with a bound instead of blocking forever.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, stderr: PathBuf) -> Proc {
        let err = std::fs::File::create(&stderr).unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next stdout line; panics after BOUND.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("no line from pid {}: {}", self.pid(), self.stderr_text()))
    }

    fn expect_line(&self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "stderr: {}", self.stderr_text());
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Closes stdin (a holder releases and exits) and returns the exit code.
    fn finish(mut self) -> i32 {
        drop(self.stdin.take());
        self.wait()
    }

    fn wait(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return code(status);
            }
            assert!(start.elapsed() < BOUND, "pid {} did not exit", self.pid());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test's own state directory.
struct State {
    dir: tempfile::TempDir,
}

impl State {
    fn new() -> State {
        State { dir: tempdir() }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn lock(&self, kind: Kind, name: &str) -> PathBuf {
        lock::lock_path(&self.path(), kind, name)
    }

    fn cmd(&self) -> Command {
        let mut c = ccci();
        c.env("CCCI_STATE_DIR", self.path());
        c
    }

    /// `__hold-lock KIND NAME ARGS...`, not yet waited on.
    fn start_hold(&self, kind: &str, name: &str, args: &[&str]) -> Proc {
        let mut c = self.cmd();
        c.args(["__hold-lock", kind, name]).args(args);
        let err = self.dir.path().join(format!("hold-{}.err", unique()));
        Proc::spawn(c, err)
    }

    /// A holder that has printed `held`.
    fn hold(&self, kind: &str, name: &str, args: &[&str]) -> Proc {
        let p = self.start_hold(kind, name, args);
        p.expect_line("held");
        p
    }

    /// Runs the binary to completion: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            code(out.status),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn locks_json(&self) -> Value {
        let (rc, out, err) = self.run(&["locks", "--json"]);
        assert_eq!(rc, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn report(&self, name: &str) -> Value {
        let json = self.locks_json();
        json["locks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no lock {name} in {json}"))
            .clone()
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// util-linux `flock -n FILE true`: true when it got the lock.
fn flock_n(path: &Path) -> bool {
    let st = Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .status()
        .unwrap();
    match st.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("flock(1) failed: {other:?}"),
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Pids /proc/locks lists on `path`'s inode: (granted, blocked).
fn kernel_locks(path: &Path) -> (Vec<i32>, Vec<i32>) {
    let ino = inode(path);
    let text = read_proc_locks().unwrap();
    let lines: Vec<_> = parse_proc_locks(&text)
        .into_iter()
        .filter(|l| l.class == "FLOCK" && l.ino == ino)
        .collect();
    (
        lines.iter().filter(|l| !l.blocked).map(|l| l.pid).collect(),
        lines.iter().filter(|l| l.blocked).map(|l| l.pid).collect(),
    )
}

fn wait_blocked(path: &Path, pid: i32) {
    wait_until(&format!("pid {pid} blocked on {}", path.display()), || {
        kernel_locks(path).1.contains(&pid)
    });
}

fn wait_granted(path: &Path) {
    wait_until(&format!("a flock on {}", path.display()), || {
        path.exists() && !kernel_locks(path).0.is_empty()
    });
}

#[test]
fn app_lock_held_by_ccci_makes_util_linux_flock_fail() {
    let s = State::new();
    let holder = s.hold("app", "a.example.org", &[]);
    let path = s.lock(Kind::App, "a.example.org");
    assert!(
        !flock_n(&path),
        "flock -n must fail while cc-ci-run holds it"
    );
    assert_eq!(holder.finish(), 0);
    assert!(flock_n(&path), "flock -n succeeds once released");
}

#[test]
fn lock_held_by_util_linux_flock_is_busy_and_listed_with_its_pid() {
    let s = State::new();
    let path = s.lock(Kind::App, "b.example.org");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // -o: only flock(1) itself holds the lock, not the `cat` it runs.
    let mut flock = Command::new("flock");
    flock.arg("-o").arg(&path).arg("cat");
    let fl = Proc::spawn(flock, s.dir.path().join("flock.err"));
    wait_granted(&path);

    let (rc, _, err) = s.run(&["__hold-lock", "app", "b.example.org", "--try"]);
    assert_eq!(rc, 75, "try must report Busy: {err}");
    assert!(err.contains("no owner record"), "{err}");

    let r = s.report("b.example.org");
    assert_eq!(r["state"], "held");
    assert_eq!(r["holder_pid"], fl.pid());
    assert_eq!(r["owner"], Value::Null);
    assert_eq!(r["owner_matches"], false);
    assert_eq!(fl.finish(), 0);
    assert_eq!(s.report("b.example.org")["state"], "free");
}

#[test]
fn taker_that_exited_is_corrected_to_the_process_that_keeps_the_lock() {
    let s = State::new();
    let path = s.lock(Kind::App, "c.example.org");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // The `flock` process takes the lock on the shell's fd 9 and exits;
    // the shell (then `cat`, same pid) keeps the open file description.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"exec 9>>"$1"; flock -x 9; echo ready; exec cat"#)
        .arg("sh")
        .arg(&path);
    let keeper = Proc::spawn(sh, s.dir.path().join("sh.err"));
    keeper.expect_line("ready");

    let r = s.report("c.example.org");
    assert_eq!(r["state"], "held", "{r}");
    assert_eq!(r["holder_pid"], keeper.pid(), "{r}");
    let taker = r["taker_pid"].as_i64().unwrap() as i32;
    assert_ne!(taker, keeper.pid(), "/proc/locks names the flock process");
    assert!(!alive(taker), "the taker has exited");

    let (rc, _, err) = s.run(&["unlock", "c.example.org"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains(&format!("pid {}", keeper.pid())), "{err}");

    assert_eq!(keeper.finish(), 0);
    assert_eq!(s.report("c.example.org")["state"], "free");
}

#[test]
fn sigkill_of_the_holder_frees_the_lock_for_a_blocked_waiter_at_once() {
    let s = State::new();
    let mut first = s.hold("app", "d.example.org", &["--run-id", "drone-1"]);
    let path = s.lock(Kind::App, "d.example.org");
    // The waiter only polls for progress once an hour: only the kernel's
    // release can wake it in time.
    let second = s.start_hold(
        "app",
        "d.example.org",
        &["--run-id", "drone-2", "--progress", "1h"],
    );
    wait_blocked(&path, second.pid());
    let waiting = second.stderr_text();
    assert!(
        waiting.contains("drone-1"),
        "the waiter names the holder: {waiting}"
    );

    let killed = Instant::now();
    first.kill();
    second.expect_line("held");
    assert!(killed.elapsed() < BOUND);
    let r = s.report("d.example.org");
    assert_eq!(r["holder_pid"], second.pid());
    assert_eq!(r["owner"]["run_id"], "drone-2");
    assert_eq!(second.finish(), 0);
}

#[test]
fn unlink_and_reacquire_race_never_admits_two_holders() {
    let s = State::new();
    let oracle = s.dir.path().join("oracle");
    let name = "race.example.org";
    // 3 acquirers + 2 unlockers, 2500 rounds each: 12,500 in all.
    let rounds = "2500";
    let mut procs = Vec::new();
    for unlocker in [false, false, false, true, true] {
        let mut c = s.cmd();
        c.args(["__lock-stress", name, "--iterations", rounds, "--oracle"])
            .arg(&oracle);
        if unlocker {
            c.arg("--unlocker");
        }
        procs.push((
            unlocker,
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
    }
    let mut unlocker_got = 0;
    for (unlocker, p) in procs {
        let out = p.wait_with_output().unwrap();
        assert_eq!(
            code(out.status),
            0,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let acquired: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        if unlocker {
            unlocker_got += acquired;
        } else {
            assert_eq!(acquired, 2500, "an acquirer gets every round");
        }
    }
    let log = std::fs::read_to_string(&oracle).unwrap();
    let mut inside: Option<(&str, &str)> = None;
    let mut holds = 0;
    for (n, line) in log.lines().enumerate() {
        let mut f = line.split(' ');
        let (what, pid, round) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        match (what, inside) {
            ("enter", None) => inside = Some((pid, round)),
            ("exit", Some(h)) if h == (pid, round) => {
                inside = None;
                holds += 1;
            }
            _ => panic!(
                "two holders at once at line {}: {line:?} while {inside:?} holds",
                n + 1
            ),
        }
    }
    assert_eq!(inside, None);
    assert_eq!(holds, 3 * 2500 + unlocker_got);
}

/// The descriptors of `pid` that are open on `path`'s inode.
fn fds_on(pid: i32, path: &Path) -> Vec<String> {
    let ino = inode(path);
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == ino))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn no_lock_descriptor_reaches_a_spawned_child() {
    let s = State::new();
    // A run lock taken at once, and an app lock taken after waiting (through
    // the waiter thread), each with a child started while holding it.
    let run = s.hold("run", "drone-5", &["--", "sleep", "300"]);
    let run_child: i32 = run.line().strip_prefix("child ").unwrap().parse().unwrap();
    let run_path = s.lock(Kind::Run, "drone-5");
    assert!(
        !fds_on(run.pid(), &run_path).is_empty(),
        "the holder has it open"
    );
    assert_eq!(fds_on(run_child, &run_path), Vec::<String>::new());

    let mut blocker = s.hold("app", "e.example.org", &[]);
    let app_path = s.lock(Kind::App, "e.example.org");
    let waiter = s.start_hold("app", "e.example.org", &["--", "sleep", "300"]);
    wait_blocked(&app_path, waiter.pid());
    blocker.kill();
    waiter.expect_line("held");
    let app_child: i32 = waiter
        .line()
        .strip_prefix("child ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(fds_on(app_child, &app_path), Vec::<String>::new());
    assert_eq!(fds_on(app_child, &run_path), Vec::<String>::new());

    assert_eq!(run.finish(), 0);
    assert_eq!(waiter.finish(), 0);
    wait_until("children gone", || !alive(run_child) && !alive(app_child));
}

#[test]
fn planted_symlink_at_a_lock_path_is_refused_and_its_target_untouched() {
    let s = State::new();
    let path = s.lock(Kind::App, "f.example.org");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let target = s.dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let (rc, _, err) = s.run(&["__hold-lock", "app", "f.example.org", "--try"]);
    assert_ne!(rc, 0);
    assert!(err.contains("symbolic link"), "{err}");
    let (rc, _, err) = s.run(&["__hold-lock", "app", "f.example.org", "--wait", "1s"]);
    assert_ne!(rc, 0);
    assert!(err.contains("symbolic link"), "{err}");
    let (rc, _, err) = s.run(&["unlock", "f.example.org"]);
    assert_ne!(rc, 0);
    assert!(err.contains("symbolic link"), "{err}");
    let (rc, out, err) = s.run(&["locks"]);
    assert_eq!(rc, 0);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(!out.contains("f.example.org"), "{out}");

    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());

    // A dangling symlink: its target is never created.
    let missing = s.dir.path().join("missing");
    let dangling = s.lock(Kind::Run, "drone-6");
    std::fs::create_dir_all(dangling.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let (rc, _, err) = s.run(&["__hold-lock", "run", "drone-6", "--try"]);
    assert_ne!(rc, 0, "{err}");
    assert!(!missing.exists());
}

#[test]
fn second_harness_with_the_same_run_id_exits_75_naming_the_holder() {
    let s = State::new();
    let first = s.hold("run", "drone-42", &["--run-id", "drone-42"]);
    let (rc, _, err) = s.run(&[
        "__hold-lock",
        "run",
        "drone-42",
        "--run-id",
        "drone-42",
        "--try",
    ]);
    assert_eq!(rc, 75, "{err}");
    let host = cc_ci_run::sys::procfs::hostname();
    for want in [
        format!("pid {}", first.pid()),
        host,
        "drone-42".into(),
        "since".into(),
    ] {
        assert!(err.contains(&want), "names {want}: {err}");
    }
    assert_eq!(first.finish(), 0);
    let again = s.hold("run", "drone-42", &["--try"]);
    assert_eq!(again.finish(), 0);
}

#[test]
fn unlock_refuses_a_held_lock_and_removes_a_free_one() {
    let s = State::new();
    let holder = s.hold("app", "g.example.org", &["--run-id", "drone-8"]);
    let path = s.lock(Kind::App, "g.example.org");
    let (rc, _, err) = s.run(&["unlock", "g.example.org"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.pid())) && err.contains("drone-8"),
        "{err}"
    );
    assert!(path.exists());
    assert_eq!(holder.finish(), 0);
    let (rc, _, err) = s.run(&["unlock", "g.example.org"]);
    assert_eq!(rc, 0, "{err}");
    assert!(!path.exists());
    let (rc, _, err) = s.run(&["unlock", "g.example.org"]);
    assert_eq!(rc, 1, "nothing left to remove: {err}");
}

#[test]
fn lock_left_by_a_killed_holder_is_free_keeps_its_record_and_can_be_unlocked() {
    let s = State::new();
    let mut holder = s.hold("run", "drone-9", &["--run-id", "drone-9"]);
    holder.kill();
    let r = s.report("drone-9");
    assert_eq!(r["state"], "free");
    assert_eq!(r["holder_pid"], Value::Null);
    assert_eq!(
        r["owner"]["run_id"], "drone-9",
        "the dead holder's record stays"
    );
    let (rc, _, err) = s.run(&["unlock", "drone-9"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("dead holder") && err.contains("drone-9"),
        "{err}"
    );
    assert!(!s.lock(Kind::Run, "drone-9").exists());
}

#[test]
fn unlock_terminate_stops_the_holder_run_and_removes_the_file() {
    let s = State::new();
    let mut holder = s.hold("run", "drone-10", &["--run-id", "drone-10"]);
    let (rc, _, err) = s.run(&["unlock", "drone-10", "--terminate", "--wait", "20s"]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    assert_eq!(holder.wait(), 143, "the holder got SIGTERM");
    assert!(!s.lock(Kind::Run, "drone-10").exists());
}

#[test]
fn unlock_terminate_refuses_a_holder_without_an_owner_record() {
    let s = State::new();
    let path = s.lock(Kind::App, "h.example.org");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut flock = Command::new("flock");
    flock.arg("-o").arg(&path).arg("cat");
    let fl = Proc::spawn(flock, s.dir.path().join("flock.err"));
    wait_granted(&path);
    let (rc, _, err) = s.run(&["unlock", "h.example.org", "--terminate", "--wait", "1s"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("no owner record"), "{err}");
    assert!(alive(fl.pid()), "nothing was signalled");
    assert!(path.exists());
    assert_eq!(fl.finish(), 0);
}

#[test]
fn bad_unlock_names_exit_2_and_touch_nothing() {
    let s = State::new();
    let long = "a".repeat(300);
    for bad in [
        "",
        "..",
        "../../etc/passwd",
        "a/b",
        "a b",
        "a;rm -rf",
        "$(id)",
        "Upper",
        &long,
    ] {
        let (rc, _, err) = s.run(&["unlock", bad]);
        assert_eq!(rc, 2, "{bad:?}: {err}");
        assert!(
            err.contains("app domain") && err.contains("run id"),
            "{err}"
        );
    }
    assert!(
        !s.path().exists(),
        "not even the state directory was created"
    );
    let (rc, _, _) = s.run(&["__hold-lock", "app", "../x"]);
    assert_eq!(rc, 2);
    assert!(!s.path().exists());
}

#[test]
fn locks_json_lists_app_and_run_locks_and_flags_old_ones() {
    let s = State::new();
    let (rc, out, _) = s.run(&["locks"]);
    assert_eq!((rc, out.as_str()), (0, "no locks\n"));
    assert!(!s.path().exists(), "locks creates nothing");

    let app = s.hold("app", "i.example.org", &["--run-id", "drone-11"]);
    let run = s.hold("run", "drone-11", &["--run-id", "drone-11"]);
    let (rc, out, err) = s.run_env(&["locks", "--json"], &[("CCCI_LOCK_MAX_AGE", "0s")]);
    assert_eq!(rc, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["max_age_secs"], 0);
    let locks = json["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 2);
    assert_eq!(
        (locks[0]["kind"].as_str(), locks[0]["name"].as_str()),
        (Some("app"), Some("i.example.org"))
    );
    assert_eq!(
        (locks[1]["kind"].as_str(), locks[1]["name"].as_str()),
        (Some("run"), Some("drone-11"))
    );
    for (l, p) in locks.iter().zip([app.pid(), run.pid()]) {
        for field in [
            "name",
            "kind",
            "path",
            "state",
            "holder_pid",
            "taker_pid",
            "owner",
            "owner_matches",
            "since",
            "age_secs",
            "over_max_age",
        ] {
            assert!(l.get(field).is_some(), "field {field} in {l}");
        }
        assert_eq!(l["state"], "held");
        assert_eq!(l["holder_pid"], p);
        assert_eq!(l["owner"]["pid"], p);
        assert_eq!(l["owner_matches"], true);
        assert_eq!(l["over_max_age"], true);
    }
    assert!(
        err.contains("CCCI_LOCK_MAX_AGE"),
        "a warning on stderr: {err}"
    );

    let (rc, _, err) = s.run_env(&["locks"], &[("CCCI_LOCK_MAX_AGE", "two hours")]);
    assert_eq!(rc, 2);
    assert!(err.contains("CCCI_LOCK_MAX_AGE"), "{err}");

    assert_eq!(app.finish(), 0);
    assert_eq!(run.finish(), 0);
    let r = s.report("i.example.org");
    assert_eq!(
        (r["state"].as_str(), &r["owner"]),
        (Some("free"), &Value::Null)
    );
}

// In-process: the blocking acquire's wake-ups (the library against a lock
// held by another open file description of this same process).

fn owner() -> OwnerRecord {
    OwnerRecord::for_self("drone-99", Kind::App)
}

#[test]
fn acquire_returns_cancelled_at_once_when_the_latch_is_set() {
    let s = State::new();
    let state = s.path();
    let held = match lock::try_acquire(&state, Kind::App, "j.example.org", &owner()).unwrap() {
        TryLock::Acquired(h) => h,
        TryLock::Busy(_) => panic!("fresh lock is busy"),
    };
    let latch = std::sync::Arc::new(Latch::new().unwrap());
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let latch = latch.clone();
        let state = state.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let r = lock::acquire(
                &state,
                Kind::App,
                "j.example.org",
                &owner(),
                Wait {
                    deadline: None,
                    cancel: Some(&latch),
                    progress_every: Duration::from_secs(3600),
                    progress: &mut |o, _| {
                        seen.push(o.cloned());
                        let _ = tx.send(());
                    },
                },
            );
            (r.map(|a| matches!(a, Acquire::Cancelled)), seen)
        })
    };
    rx.recv_timeout(BOUND)
        .expect("progress is reported when the lock is busy");
    latch.set();
    let (cancelled, seen) = waiter.join().unwrap();
    assert!(cancelled.unwrap(), "Cancelled");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].as_ref().map(|o| o.run_id.as_str()),
        Some("drone-99")
    );
    drop(held);
}

#[test]
fn acquire_times_out_at_its_deadline_and_then_leaves_the_lock_free() {
    let s = State::new();
    let state = s.path();
    let name = "k.example.org";
    let held = match lock::try_acquire(&state, Kind::App, name, &owner()).unwrap() {
        TryLock::Acquired(h) => h,
        TryLock::Busy(_) => panic!("fresh lock is busy"),
    };
    let deadline = Instant::now() + Duration::from_millis(200);
    let r = lock::acquire(
        &state,
        Kind::App,
        name,
        &owner(),
        Wait {
            deadline: Some(deadline),
            cancel: None,
            progress_every: Duration::ZERO,
            progress: &mut |_, _| {},
        },
    )
    .unwrap();
    assert!(matches!(r, Acquire::TimedOut));
    assert!(Instant::now() >= deadline);
    drop(held);
    // The abandoned waiter thread may be granted the lock; it lets go at
    // once, so a try succeeds soon after.
    let path = s.lock(Kind::App, name);
    wait_until("the abandoned waiter to let go", || flock_n(&path));
    let again = lock::try_acquire(&state, Kind::App, name, &owner()).unwrap();
    assert!(matches!(again, TryLock::Acquired(_)));
}

#[test]
fn acquire_wakes_when_the_holder_releases_and_writes_its_record() {
    let s = State::new();
    let state = s.path();
    let name = "l.example.org";
    let held = match lock::try_acquire(&state, Kind::App, name, &owner()).unwrap() {
        TryLock::Acquired(h) => h,
        TryLock::Busy(_) => panic!("fresh lock is busy"),
    };
    let path = held.path().to_path_buf();
    let waiter = {
        let state = state.clone();
        std::thread::spawn(move || {
            let me = OwnerRecord::for_self("drone-100", Kind::App);
            let r = lock::acquire(
                &state,
                Kind::App,
                name,
                &me,
                Wait {
                    deadline: None,
                    cancel: None,
                    progress_every: Duration::from_secs(3600),
                    progress: &mut |_, _| {},
                },
            )
            .unwrap();
            match r {
                Acquire::Acquired(h) => h,
                _ => panic!("acquire gave up"),
            }
        })
    };
    let me = std::process::id() as i32;
    wait_blocked(&path, me);
    drop(held);
    let got = waiter.join().unwrap();
    assert_eq!(lock::read_owner(&path).unwrap().run_id, "drone-100");
    got.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn lock_dirs_and_files_are_created_0755_and_0644_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let s = State::new();
    let c = s.cmd();
    let bin = c.get_program().to_owned();
    let mut sh = Command::new("sh");
    sh.env_clear();
    sh.arg("-c")
        .arg(r#"umask 077; exec "$0" "$@""#)
        .arg(bin)
        .args(["__hold-lock", "app", "m.example.org"]);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let held = Proc::spawn(sh, s.dir.path().join("umask.err"));
    held.expect_line("held");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let path = s.lock(Kind::App, "m.example.org");
    assert_eq!(mode(&path), 0o644);
    assert_eq!(mode(path.parent().unwrap()), 0o755);
    assert_eq!(mode(&s.path().join("locks")), 0o755);
    assert_eq!(held.finish(), 0);
}
