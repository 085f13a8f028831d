//! The log's bookkeeping of failed writes (SPEC section 1, a full disk):
//! each file said once, the full disk said once, and the gap a log file
//! has once it can be written again.

use std::path::Path;

use cc_ci_run::log::{is_disk_full, Failures, Gap};

const ENOSPC: &str = "No space left on device (os error 28)";

#[test]
fn the_first_full_disk_failure_says_the_disk_is_full_with_the_error() {
    let mut f = Failures::new();
    let w = f
        .warning("the log file /s/runs/r/run.log", ENOSPC, true)
        .unwrap();
    assert!(w.starts_with("warning: the disk is full: "), "{w}");
    assert!(w.contains("the log file /s/runs/r/run.log"), "{w}");
    assert!(w.contains(ENOSPC), "{w}");
}

#[test]
fn a_file_that_fails_again_is_not_said_again() {
    let mut f = Failures::new();
    assert!(f
        .warning("the run record /s/run.json", ENOSPC, true)
        .is_some());
    for _ in 0..100 {
        assert_eq!(f.warning("the run record /s/run.json", ENOSPC, true), None);
    }
}

#[test]
fn later_files_on_a_full_disk_are_named_without_repeating_the_notice() {
    let mut f = Failures::new();
    let first = f
        .warning("the run record /s/run.json", ENOSPC, true)
        .unwrap();
    let second = f
        .warning("the checkpoint /s/report/checkpoint.json", ENOSPC, true)
        .unwrap();
    assert!(first.contains("the disk is full: "));
    assert!(
        second.contains("the checkpoint /s/report/checkpoint.json"),
        "{second}"
    );
    assert!(!second.contains("the disk is full: "), "{second}");
    assert!(!second.contains("No space left"), "{second}");
}

#[test]
fn another_error_is_said_with_its_text_and_is_not_called_a_full_disk() {
    let mut f = Failures::new();
    let w = f
        .warning(
            "the run record /s/run.json",
            "Permission denied (os error 13)",
            false,
        )
        .unwrap();
    assert!(w.contains("Permission denied"), "{w}");
    assert!(!w.contains("disk is full"), "{w}");
    // A full disk after it is still said as such, once.
    let full = f.warning("the log file /s/run.log", ENOSPC, true).unwrap();
    assert!(full.contains("the disk is full: "), "{full}");
}

#[test]
fn a_log_that_never_failed_has_no_gap_note() {
    assert_eq!(Gap::default().note("T [r] ", Path::new("/s/run.log")), None);
}

#[test]
fn the_gap_note_counts_the_missing_lines_and_names_the_first_error() {
    let mut g = Gap::default();
    g.failed(ENOSPC);
    g.failed("Input/output error (os error 5)");
    g.failed(ENOSPC);
    let note = g.note("T [r] ", Path::new("/s/run.log")).unwrap();
    assert!(note.contains("3 line(s) missing here"), "{note}");
    assert!(note.contains("/s/run.log"), "{note}");
    assert!(note.contains(ENOSPC), "{note}");
    // On a line of its own, even after a torn line, and one line long.
    assert!(note.starts_with("\nT [r] warning: "), "{note:?}");
    assert!(
        note.ends_with('\n') && note.trim().lines().count() == 1,
        "{note:?}"
    );
}

#[test]
fn a_closed_gap_is_not_noted_again() {
    let mut g = Gap::default();
    g.failed(ENOSPC);
    g.closed();
    assert_eq!(g.note("T ", Path::new("/s/run.log")), None);
    g.failed(ENOSPC);
    let note = g.note("T ", Path::new("/s/run.log")).unwrap();
    assert!(note.contains("1 line(s) missing here"), "{note}");
}

#[test]
fn disk_full_is_enospc_or_edquot_anywhere_in_the_chain() {
    let io = |code| anyhow::Error::from(std::io::Error::from_raw_os_error(code));
    assert!(is_disk_full(&io(libc::ENOSPC)));
    assert!(is_disk_full(&io(libc::EDQUOT)));
    assert!(is_disk_full(
        &io(libc::ENOSPC).context("failed to write /s/run.json")
    ));
    assert!(!is_disk_full(&io(libc::EACCES)));
    assert!(!is_disk_full(&anyhow::anyhow!("no space left on device")));
}
