//! The head-and-tail rule of SPEC section 1: a test stream's [`HeadTail`]
//! and the log file's [`LogCap`] (with [`CappedFile`] on a real file).

use cc_ci_run::log::{CappedFile, LogCap};
use cc_ci_run::testrun::cap::HeadTail;

/// Feeds `data` in pieces of `step`, returning the head bytes as a writer
/// would get them and the kept tail.
fn feed(limit: u64, data: &[u8], step: usize) -> (HeadTail, Vec<u8>, Vec<u8>) {
    let mut c = HeadTail::new(limit);
    let mut head = Vec::new();
    for piece in data.chunks(step) {
        let n = c.push(piece);
        head.extend_from_slice(&piece[..n]);
    }
    let (a, b) = c.tail_from(0);
    let tail = [a, b].concat();
    (c, head, tail)
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn output_within_the_limit_is_all_kept_and_nothing_is_dropped() {
    for n in [0, 1, 50, 99, 100] {
        let data = bytes(n);
        let (c, head, tail) = feed(100, &data, 7);
        assert_eq!([head, tail].concat(), data, "{n} bytes");
        assert_eq!(c.dropped(), 0);
        assert_eq!(c.dropped_line("stdout"), None);
    }
}

#[test]
fn past_the_limit_the_first_and_last_halves_are_kept_whatever_the_pieces() {
    let data = bytes(10_000);
    for step in [1, 3, 49, 50, 51, 64, 1000, 10_000] {
        let (c, head, tail) = feed(100, &data, step);
        assert_eq!(head, &data[..50], "step {step}");
        assert_eq!(tail, &data[10_000 - 50..], "step {step}");
        assert_eq!(c.dropped(), 10_000 - 100);
        assert_eq!(c.total(), 10_000);
        assert_eq!(c.tail_start(), 10_000 - 50);
    }
}

#[test]
fn the_tail_from_an_offset_skips_what_was_shown() {
    let data = bytes(1000);
    let (c, _, _) = feed(100, &data, 33);
    let (a, b) = c.tail_from(980);
    assert_eq!([a, b].concat(), &data[980..]);
    // Before the kept tail: clamped to it.
    let (a, b) = c.tail_from(10);
    assert_eq!([a, b].concat(), &data[950..]);
    let (a, b) = c.tail_from(5000);
    assert!(a.is_empty() && b.is_empty());
}

#[test]
fn the_dropped_bytes_line_counts_and_starts_a_line_of_its_own() {
    let (c, _, _) = feed(4096, &[b'x'; 100_000], 4096);
    let line = c.dropped_line("stdout").unwrap();
    assert!(line.starts_with("\n[cc-ci-run: 95904 bytes dropped here: the test wrote 100000 bytes to stdout; --test-output-limit 4.0K keeps the first 2.0K and the last 2.0K]"), "{line}");
    assert!(line.ends_with("]\n"));
    let lines: Vec<u8> = b"abc\n".repeat(10_000);
    let (c, _, _) = feed(4096, &lines, 512);
    assert!(c
        .dropped_line("stderr")
        .unwrap()
        .starts_with("[cc-ci-run: "));
}

#[test]
fn a_log_under_half_its_limit_is_appended_as_is() {
    let mut cap = LogCap::new(1000, 0);
    for _ in 0..10 {
        assert_eq!(cap.before(50), None);
        cap.appended(50);
    }
    assert_eq!(cap.head_end(), None);
    assert_eq!(cap.size(), 500);
}

#[test]
fn a_log_past_its_limit_drops_the_oldest_of_its_newest_lines() {
    let mut cap = LogCap::new(4096, 0);
    let mut dropped_at = None;
    for i in 0..200u64 {
        if let Some(from) = cap.before(40) {
            dropped_at.get_or_insert(i);
            assert!(from > cap.head_end().unwrap());
            cap.dropped(from, 100);
        }
        cap.appended(40);
        assert!(cap.size() <= 4096, "line {i}: {}", cap.size());
    }
    assert_eq!(cap.head_end(), Some(2040));
    assert!(dropped_at.is_some());
}

#[test]
fn a_capped_log_file_keeps_its_head_the_dropped_line_and_its_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut f = CappedFile::open(&path, 64 * 1024).unwrap();
    for i in 0..20_000 {
        f.append(format!("T line {i:06}\n").as_bytes(), "T ")
            .unwrap();
        if i % 997 == 0 {
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= 64 * 1024, "after line {i}: {len}");
        }
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() <= 64 * 1024);
    assert!(text.starts_with("T line 000000\nT line 000001\n"));
    assert!(text.ends_with("T line 019999\n"));
    // Whole lines only, in order, with one dropped-bytes line in between.
    let lines: Vec<&str> = text.lines().collect();
    let marks: Vec<usize> = (0..lines.len())
        .filter(|&k| lines[k].contains("bytes of this log dropped here"))
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    let nums = |ls: &[&str]| -> Vec<u32> {
        ls.iter()
            .map(|l| l.trim_start_matches("T line ").parse().unwrap())
            .collect()
    };
    let head = nums(&lines[..marks[0]]);
    let tail = nums(&lines[marks[0] + 1..]);
    assert_eq!(head, (0..head.len() as u32).collect::<Vec<_>>());
    let first = tail[0];
    assert_eq!(tail, (first..20_000).collect::<Vec<_>>());
    // At least a quarter of the limit of newest lines.
    assert!(tail.len() * 14 >= 16 * 1024, "{} lines kept", tail.len());
    // The count is what is missing.
    let said: u64 = lines[marks[0]]
        .split("... ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(said, u64::from(first - head.len() as u32) * 14);
    // Reopened (a report directory used again): appends go on, bounded.
    drop(f);
    let mut f = CappedFile::open(&path, 64 * 1024).unwrap();
    for i in 0..20_000 {
        f.append(format!("U line {i:06}\n").as_bytes(), "U ")
            .unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len <= 64 * 1024 + 32 * 1024, "{len}");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .ends_with("U line 019999\n"));
}
