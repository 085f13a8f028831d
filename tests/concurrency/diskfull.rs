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
    assert!(cc_ci_run::testrun::checkpoint::save(&cp_path, &cp).is_err());
    assert!(!cp_path.exists());

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
        leaked_unattributed: Vec::new(),
        tests: Vec::new(),
    };
    let tails = |_: &cc_ci_run::testrun::report::TestReport| Default::default();
    assert!(cc_ci_run::testrun::report::write(&report_dir, &report, &tails).is_err());

    let left = temp_files(&dir);
    assert!(left.is_empty(), "temporary files left: {left:?}");
    drop(disk);
}
