//! A full disk (SPEC section 1): a run whose state directory fills up says
//! so on stderr once, keeps its verdict, tears its app down and leaves no
//! temporary file; a janitor on a full disk still reaps an orphan (the flock
//! is the claim, the owner record only information).
//!
//! Kernel facilities are not mocked: each test mounts a real tmpfs as the
//! state directory and fills it with a file until the kernel says ENOSPC.
//! The tests run as root (here and in CI); a mount that fails is a test
//! failure, never a skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::janitor::orphan;
use crate::support::*;

/// A tmpfs mounted at a directory for the life of the value; unmounted on
/// every path (a failed assertion included) by `Drop`. Declare it after the
/// [`Fixture`] whose directory it covers, so it is dropped (unmounted)
/// before the fixture's temporary directory is removed.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (mount(8) syntax) at `path`, mode
    /// 0755: the run refuses a state directory writable by others, and a
    /// fresh tmpfs is 1777.
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "these tests need to mount a tmpfs (they run as root in CI): mount at {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Fills the filesystem: one file written until the kernel refuses with
    /// ENOSPC, then each of `top_up` (files the run appends to, its log)
    /// appended to until ENOSPC too: tmpfs allocates whole pages, and the
    /// slack in a file's last page would otherwise take a few more lines.
    /// ENOSPC is the premise of every test here, so anything else panics.
    fn fill(&self, top_up: &[&Path]) {
        let mut file = std::fs::File::create(self.path.join("fill")).unwrap();
        fill_until_enospc(&mut file, &[0u8; 64 * 1024]);
        for path in top_up {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open {} to top it up: {e}", path.display()));
            fill_until_enospc(&mut f, b"(test filler: the disk fills up here)\n");
        }
        // The premise: not one more byte fits in a new file.
        let probe = std::fs::write(self.path.join("probe"), b"x");
        assert!(
            probe
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC)),
            "the tmpfs is not full: {probe:?}"
        );
        let _ = std::fs::remove_file(self.path.join("probe"));
    }
}

/// Writes `chunk` to `file` until the kernel says ENOSPC.
fn fill_until_enospc(file: &mut std::fs::File, chunk: &[u8]) {
    loop {
        match file.write(chunk) {
            Ok(0) => panic!("a write of the filler wrote nothing"),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("filling the tmpfs failed otherwise: {e}"),
        }
    }
}

impl Tmpfs {
    /// Takes every inode left: empty files until the kernel says ENOSPC.
    /// (A tmpfs directory or empty file costs an inode, no block: only a
    /// filesystem out of inodes refuses them, as a full ext4 refuses a
    /// directory that needs a new block.)
    fn fill_inodes(&self) {
        let dir = self.path.join("inodes");
        std::fs::create_dir(&dir).unwrap();
        for i in 0.. {
            match std::fs::File::create(dir.join(i.to_string())) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
                Err(e) => panic!("taking the tmpfs's inodes failed otherwise: {e}"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: detaches even while a process of a failed test still has a
        // file open there, so the fixture's directory can go.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
    }
}

/// Every file under `dir` whose name marks it as a temporary file of an
/// atomic write (`*.tmp*`).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// The lines of a run's stderr that say the disk is full.
fn disk_full_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("warning: the disk is full"))
        .collect()
}

/// What every full-disk run must show, whatever its verdict: the disk-full
/// notice on stderr exactly once (naming the kernel's error), no failed
/// write said twice, no temporary file anywhere under the state directory,
/// the app torn down and every lock free.
fn assert_full_disk_run(f: &Fixture, run_id: &str, domain: &str, stderr: &str) {
    let full = disk_full_lines(stderr);
    assert_eq!(
        full.len(),
        1,
        "the disk-full notice must be said once: {full:#?}\n{stderr}"
    );
    assert!(
        full[0].to_lowercase().contains("no space left on device"),
        "the notice names the error: {}",
        full[0]
    );
    // Each kind of file that could not be written is said once, not per
    // line or per write.
    let mut said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("could not write"))
        .map(|l| l.split_once("] ").map_or(l, |(_, m)| m))
        .collect();
    let n = said.len();
    said.sort();
    said.dedup();
    assert_eq!(said.len(), n, "a failed write was said twice:\n{stderr}");
    let log = f.state.join("runs").join(run_id).join("run.log");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("could not write the log file {}", log.display()))),
        "stderr names the run log that could not be written:\n{stderr}"
    );
    let tmp = temp_files(&f.state);
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.lock_free("runs", run_id), "the run lock is held");
    assert!(f.lock_free("apps", domain), "the app lock is held");
    assert!(
        procs_with_env("CCCI_FAKE_STATE", &f.fake).is_empty(),
        "a process of the run is left"
    );
}

/// The run log after the run freed space (releasing the app lock truncates
/// its owner record, the run tree is removed at the end):
/// the lines it could not hold are marked as missing, and the lines after
/// the gap are in it again, down to the last.
fn assert_log_marks_its_gap(log: &Path, last: &str) {
    let text = std::fs::read_to_string(log).unwrap();
    let gap = text
        .find("line(s) missing here")
        .unwrap_or_else(|| panic!("the log does not mark its gap:\n{text}"));
    assert!(
        text[gap..].contains(last),
        "the log does not go on after its gap:\n{text}"
    );
    assert!(
        !text[gap..].contains("test filler"),
        "the gap note is not where the lines went missing:\n{text}"
    );
}

#[test]
fn run_on_a_disk_full_before_it_starts_is_exit_3_and_says_so_once() {
    let f = Fixture::new();
    let disk = Tmpfs::mount(&f.state, "4M");
    let domain = "example-pr31.ci.localhost";
    disk.fill(&[]);
    let out = f
        .run_cmd(&["--pr", "1", "--domain", domain, "--quick"])
        .env("CCCI_RUN_ID", "full-before")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 3, "{stderr}");
    // The line that explains exit 3 reaches stderr although the log cannot
    // hold it.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("error: fetching the recipe failed")),
        "no error line explains exit 3:\n{stderr}"
    );
    assert!(
        stderr.contains("run full-before finished: exit 3"),
        "{stderr}"
    );
    assert_full_disk_run(&f, "full-before", domain, &stderr);
    drop(disk);
}

#[test]
fn run_whose_disk_fills_during_its_passing_tests_stays_green() {
    let f = Fixture::new();
    let disk = Tmpfs::mount(&f.state, "16M");
    let domain = "example-pr32.ci.localhost";
    const RUN: &str = "full-green";
    // A CI test of the recipe that pauses (on a named pipe) until the disk
    // is full, then passes: everything after it (its output, the report,
    // the checkpoint, the records, the teardown lines) meets a full disk.
    let fifo = f.tmp.path().join("go");
    mkfifo(&fifo);
    let paused = f.ready.join("ci-test-paused");
    let ci = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&ci).unwrap();
    let test = script(
        &ci,
        "50-waits-for-a-full-disk.sh",
        &format!(
            "#!/bin/sh\n# tier: install\nset -eu\n: > '{}'\nread _ < '{}'\necho 'the disk is full now; this test passes'\n",
            paused.display(),
            fifo.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&test, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = f.tmp.path().join("run.err");
    let mut guard = KillOnPanic::default();
    let mut run = f
        .run_cmd(&["--pr", "1", "--domain", domain, "--quick"])
        .env("CCCI_RUN_ID", RUN)
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    guard.add(run.id() as i32);
    wait_for_file(&paused);
    let log = f.state.join("runs").join(RUN).join("run.log");
    disk.fill(&[&log]);
    release(&fifo);
    let c = wait_exit(&mut run);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(c, 0, "a full disk turned a green run red:\n{stderr}");
    assert!(stderr.contains("3 passed, 0 failed"), "{stderr}");
    assert!(
        stderr.contains("run full-green finished: exit 0"),
        "{stderr}"
    );
    // The teardown lines reach stderr.
    assert!(stderr.contains("phase: teardown"), "{stderr}");
    assert_full_disk_run(&f, RUN, domain, &stderr);
    assert_log_marks_its_gap(&log, "run full-green finished: exit 0");
    drop(disk);
}

#[test]
fn run_whose_disk_fills_during_its_tests_keeps_its_red_verdict() {
    let f = Fixture::new();
    let disk = Tmpfs::mount(&f.state, "16M");
    let domain = "example-pr33.ci.localhost";
    const RUN: &str = "full-tests";
    let err = f.tmp.path().join("run.err");
    let mut guard = KillOnPanic::default();
    let mut run = f
        .run_cmd(&["--pr", "1", "--domain", domain, "--quick"])
        .env("CCCI_RUN_ID", RUN)
        .env("CCCI_EXAMPLE_HANG", "install")
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    guard.add(run.id() as i32);
    wait_for_file(&f.ready.join("test-install"));
    let log = f.state.join("runs").join(RUN).join("run.log");
    disk.fill(&[&log]);
    // The paused test (it `exec`s sleep) dies: a failed test, so the run is
    // red, with its report and checkpoint still to be written.
    let test = procs_with_env("CCCI_FAKE_STATE", &f.fake)
        .into_iter()
        .find(|p| comm(*p).as_deref() == Some(b"sleep".as_slice()))
        .expect("the paused test's sleep");
    send(test, Signal::SIGKILL);
    let c = wait_exit(&mut run);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(c, 1, "a full disk changed a red run's verdict:\n{stderr}");
    assert!(
        stderr.contains("run full-tests finished: exit 1"),
        "{stderr}"
    );
    assert!(stderr.contains("phase: teardown"), "{stderr}");
    assert_full_disk_run(&f, RUN, domain, &stderr);
    assert_log_marks_its_gap(&log, "run full-tests finished: exit 1");
    drop(disk);
}

#[test]
fn janitor_reaps_an_orphan_on_a_full_disk() {
    let f = Fixture::new();
    let disk = Tmpfs::mount(&f.state, "1M");
    let domain = "example-pr34.ci.localhost";
    orphan(&f, domain);
    disk.fill(&[]);
    let out = f.cmd().args(["janitor", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{stderr}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["reaped"], serde_json::json!([domain]), "{stderr}");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    assert!(f.lock_free("apps", domain));
    let tmp = temp_files(&f.state);
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    drop(disk);
}

/// `cc-ci-run test` whose report directory is on a disk with no block and
/// no inode left: the tests run and decide the exit code; their output,
/// checkpoint and reports cannot be written, which is said once.
#[test]
fn test_runner_on_a_full_disk_runs_the_tests_and_keeps_their_verdict() {
    let tmp = tempdir();
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "1M,nr_inodes=64");
    let report = disk.path.join("report");
    std::fs::create_dir(&report).unwrap();
    disk.fill(&[]);
    disk.fill_inodes();
    for (fails, want) in [(false, 0), (true, 1)] {
        let tests = tmp.path().join(format!("tests-{fails}"));
        std::fs::create_dir(&tests).unwrap();
        let body = if fails {
            "echo 'this test fails' >&2; exit 1"
        } else {
            "echo 'this test passes'"
        };
        let t = script(&tests, "10-t.sh", &format!("#!/bin/sh\n{body}\n"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = ccci()
            .env("CCCI_DOCKER", fake_dir().join("docker"))
            .env("CCCI_FAKE_STATE", tmp.path().join("fake"))
            .args(["test", "--grace", "1s", "--report-dir"])
            .arg(&report)
            .arg(&tests)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), want, "{stderr}");
        let said = if fails {
            "[10-t.sh stderr] this test fails"
        } else {
            "[10-t.sh] this test passes"
        };
        assert!(
            stderr.contains(said),
            "the test's output is lost:\n{stderr}"
        );
        let full = disk_full_lines(&stderr);
        assert_eq!(full.len(), 1, "{full:#?}\n{stderr}");
        assert!(
            stderr.contains("could not write the test output files"),
            "{stderr}"
        );
    }
    let left = temp_files(&disk.path);
    assert!(left.is_empty(), "temporary files left: {left:?}");
    drop(disk);
}

/// Each atomic writer on a full disk: the write fails, the old content is
/// intact, and no temporary file is left (the run record and the env file
/// rewrite go through `rundir::write_atomic`).
#[test]
fn atomic_writes_on_a_full_disk_fail_and_leave_no_temporary_file() {
    let tmp = tempdir();
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "1M");
    let dir = disk.path.clone();
    let record = dir.join("run.json");
    std::fs::write(&record, b"old\n").unwrap();
    let cp_path = cc_ci_run::testrun::checkpoint::path(&dir, Some("install"));
    let cp_old = cc_ci_run::testrun::checkpoint::legacy_path(&dir, Some("install"));
    std::fs::write(&cp_old, b"old\n").unwrap();
    let report_dir = dir.join("report");
    std::fs::create_dir_all(&report_dir).unwrap();
    disk.fill(&[]);

    let e = cc_ci_run::rundir::write_atomic(&record, &[b'x'; 10_000])
        .expect_err("a write to a full disk fails");
    assert!(
        format!("{e:#}").contains("No space left on device"),
        "{e:#}"
    );
    assert_eq!(std::fs::read(&record).unwrap(), b"old\n");

    let cp = cc_ci_run::testrun::checkpoint::Checkpoint {
        run_id: "r".into(),
        git_ref: "abc".into(),
        tier: Some("install".into()),
        passed: vec!["00-a.sh".into()],
        updated: String::new(),
    };
    // The journal is started by one atomic write: on a full disk it fails,
    // and the earlier checkpoint it would supersede is still there.
    assert!(cc_ci_run::testrun::checkpoint::Journal::create(&dir, &cp).is_err());
    assert!(!cp_path.exists());
    assert_eq!(std::fs::read(&cp_old).unwrap(), b"old\n");

    let report = cc_ci_run::testrun::report::Report {
        run_id: "r".into(),
        git_ref: "abc".into(),
        tier: None,
        started: String::new(),
        finished: String::new(),
        duration_ms: 0,
        exit_code: 0,
        stopped: None,
        stop_reason: None,
        workers: 1,
        passed: 0,
        failed: 0,
        skipped: 0,
        flaky: 0,
        cases_passed: 0,
        cases_failed: 0,
        cases_skipped: 0,
        leaked_unattributed: Vec::new(),
        tests: Vec::new(),
    };
    let tails = |_: &cc_ci_run::testrun::report::TestReport| Default::default();
    assert!(cc_ci_run::testrun::report::write(&report_dir, &report).is_err());
    assert!(cc_ci_run::testrun::junit::write_tier(&report_dir, &report, "tests", &tails).is_err());
    // The run's merged junit.xml goes through the same writer.
    let run = cc_ci_run::rundir::RunRecord {
        recipe: "example".into(),
        verdict: Some(cc_ci_run::verdict::Verdict::Infra),
        failed_phase: Some(cc_ci_run::phase::Phase::Fetch),
        ..Default::default()
    };
    let log = dir.join("run.log");
    assert!(cc_ci_run::testrun::junit::write_run(&dir, &run, 3, None, &log).is_err());
    assert!(!dir.join("junit.xml").exists());

    let left = temp_files(&dir);
    assert!(left.is_empty(), "temporary files left: {left:?}");
    drop(disk);
}
