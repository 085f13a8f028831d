//! Everything a pull request's code prints is bounded (SPEC section 1):
//! `cc-ci-run test` driven as a real process over tests that flood their
//! streams, with small limits so the suite stays fast. The captured files,
//! the runner's stderr, its log and the JUnit keep a head and a tail with a
//! line saying what was dropped; the verdict and the exit status stand.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{self, code};

const LIMIT: u64 = 64 * 1024;
/// The dropped-bytes line, a marker and a lead newline: what a captured
/// file may hold past the limit.
const LINE_ROOM: u64 = 400;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: support::tempdir(),
        };
        std::fs::create_dir_all(f.tests()).unwrap();
        f
    }

    fn tests(&self) -> PathBuf {
        self.dir.path().join("tests")
    }

    fn report(&self) -> PathBuf {
        self.dir.path().join("report")
    }

    fn test(&self, name: &str, body: &str) {
        let path = self.tests().join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `cc-ci-run test` with `env` set: the limits are given as variables,
    /// so a binary that does not know them runs the tests all the same.
    fn run(&self, env: &[(&str, &str)]) -> Output {
        support::ccci()
            .current_dir(self.dir.path())
            .envs(env.iter().copied())
            .env("CCCI_DOCKER", "/bin/true")
            .args(["test", "--grace", "1s", "--report-dir"])
            .arg(self.report())
            .arg(self.tests())
            .output()
            .unwrap()
    }

    fn output(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.report().join("output").join(file)).unwrap()
    }

    fn result(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.report().join("report.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    }
}

/// The last `n` lines of `text`, for a failure's message.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What `seq -f 'line %07g' 1 N` prints.
fn numbered(n: u32) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("line {i:07}\n").into_bytes())
        .collect()
}

/// The `[cc-ci-run: N bytes dropped here` count of a captured file.
fn dropped_count(file: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(file);
    let at = text
        .find("[cc-ci-run: ")
        .unwrap_or_else(|| panic!("no dropped-bytes line in the captured file"));
    text[at + 12..].split(' ').next().unwrap().parse().unwrap()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn a_flooding_test_keeps_the_head_and_the_tail_of_each_stream_within_the_limit() {
    let f = Fixture::new();
    // 4 MB of numbered lines on stdout, 2 MB on stderr, last words, exit 3.
    f.test(
        "flood",
        "seq -f 'line %07g' 1 300000\n\
         seq -f \"noise %05g $(printf '%080d' 0)\" 1 20000 >&2\n\
         echo 'last words' >&2\n\
         exit 3",
    );
    let out = f.run(&[("CCCI_TEST_OUTPUT_LIMIT", "64K")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{}", last_lines(&stderr, 40));

    // The verdict and the exit status are the test's.
    let t = f.result("flood");
    assert_eq!(t["result"], "failed");
    assert_eq!(t["exit_code"], 3);
    let want = numbered(300_000);

    // The captured stdout: the first and last 32K, the dropped line between.
    let file = f.output("flood.stdout");
    assert!(
        (file.len() as u64) <= LIMIT + LINE_ROOM,
        "captured stdout is {} bytes",
        file.len()
    );
    assert_eq!(t["stdout_bytes"], want.len() as u64);
    let half = (LIMIT / 2) as usize;
    assert_eq!(&file[..half], &want[..half], "the head is the first 32K");
    assert_eq!(
        &file[file.len() - half..],
        &want[want.len() - half..],
        "the tail is the last 32K"
    );
    assert_eq!(dropped_count(&file), want.len() as u64 - LIMIT);
    assert!(String::from_utf8_lossy(&file).contains("--test-output-limit 64.0K"));

    // Stderr's captured file too, ending with the last words.
    let err = f.output("flood.stderr");
    assert!((err.len() as u64) <= LIMIT + LINE_ROOM, "{}", err.len());
    assert!(err.ends_with(b"noise 20000 00000000000000000000000000000000000000000000000000000000000000000000000000000000\nlast words\n"));
    assert!(dropped_count(&err) > 1_000_000);

    // The runner's stderr (the Drone step's log): the test's lines stop
    // after half the limit with a line naming the captured file, and its
    // last lines follow at its end; nothing of the middle.
    // Each stream's lines, as written (timestamp and tag included), take
    // at most the limit, and a few lines say what was held and skipped.
    for tag in ["[flood] ", "[flood stderr] "] {
        let shown: u64 = stderr
            .lines()
            .filter(|l| l.contains(tag))
            .map(|l| l.len() as u64 + 1)
            .sum();
        assert!(shown <= LIMIT + 1024, "{shown} bytes of {tag} lines");
        assert!(shown >= LIMIT - 1024, "{shown} bytes of {tag} lines");
    }
    let captured = f.report().join("output").join("flood.stdout");
    assert!(
        stderr.contains(&format!("(everything kept is in {})", captured.display())),
        "{}",
        last_lines(&stderr, 40)
    );
    assert!(stderr.contains("[flood] line 0000001"));
    assert!(stderr.contains("[flood] line 0300000"));
    assert!(!stderr.contains("[flood] line 0150000"));
    assert!(stderr.contains("[flood stderr] last words"));
    assert!(stderr.contains("bytes not shown here (the test wrote 3900000 bytes in all)"));

    // The log holds what stderr shows.
    let log = std::fs::metadata(f.report().join("runner.log"))
        .unwrap()
        .len();
    assert!(log < 2 * LIMIT + 16 * 1024, "runner.log is {log} bytes");

    // The JUnit keeps the tail, marked as truncated, with the exit status.
    let junit = std::fs::read_to_string(f.report().join("junit.xml")).unwrap();
    assert!(
        junit.contains("exit status: 3") || junit.contains("exit 3"),
        "{junit}"
    );
    assert!(junit.contains("[cc-ci-run: truncated: the last 16384 of the 3900000 bytes"));
    assert!(junit.contains("line 0300000"));
    assert!(junit.contains("last words"));
    assert!(!junit.contains("line 0150000"));
    assert!(
        dir_size(&f.report()) < 2 * (LIMIT + LINE_ROOM) + 2 * LIMIT + 96 * 1024,
        "the report directory is {} bytes",
        dir_size(&f.report())
    );
}

#[test]
fn a_long_line_without_a_newline_is_bounded_too() {
    let f = Fixture::new();
    // 3 MB of `x` and no newline at all, then a pass.
    f.test("line", "head -c 3000000 /dev/zero | tr '\\0' x\nexit 0");
    let out = f.run(&[("CCCI_TEST_OUTPUT_LIMIT", "64K")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{}", last_lines(&stderr, 20));
    let t = f.result("line");
    assert_eq!(t["result"], "passed");
    let file = f.output("line.stdout");
    assert!((file.len() as u64) <= LIMIT + LINE_ROOM, "{}", file.len());
    assert_eq!(t["stdout_bytes"], 3_000_000);
    assert_eq!(dropped_count(&file), 3_000_000 - LIMIT);
    // The head did not end a line: the dropped-bytes line starts its own.
    let text = String::from_utf8_lossy(&file);
    assert!(text.contains("x\n[cc-ci-run: "), "{}", &text[32760..32900]);
    assert!(text.ends_with(&"x".repeat(32 * 1024)));
    let shown: usize = stderr
        .lines()
        .filter(|l| l.contains("[line] "))
        .map(|l| l.len() + 1)
        .sum();
    assert!(
        shown <= LIMIT as usize + 1024,
        "{shown} bytes of the line shown"
    );
    // Its last piece is shown when it ends.
    assert!(stderr.contains("bytes not shown here (the test wrote 3000000 bytes in all)"));
}

#[test]
fn output_within_the_limit_is_kept_whole_and_unmarked() {
    let f = Fixture::new();
    f.test("quiet", "seq -f 'line %07g' 1 400\nexit 1");
    let out = f.run(&[("CCCI_TEST_OUTPUT_LIMIT", "64K")]);
    assert_eq!(code(out.status), 1);
    let file = f.output("quiet.stdout");
    assert_eq!(file, numbered(400));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("[quiet] line "))
            .count(),
        400
    );
    assert!(!stderr.contains("not shown"));
    let junit = std::fs::read_to_string(f.report().join("junit.xml")).unwrap();
    assert!(!junit.contains("truncated"), "{junit}");
}

#[test]
fn the_log_keeps_its_head_and_newest_lines_within_the_log_limit() {
    let f = Fixture::new();
    // Eight tests, each showing nearly 64K of lines: about 512K for the log.
    for k in 1..=8 {
        f.test(&format!("t{k}"), "seq -f 'line %07g' 1 4000");
    }
    let out = f.run(&[("CCCI_TEST_OUTPUT_LIMIT", "64K"), ("CCCI_LOG_LIMIT", "64K")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{}", last_lines(&stderr, 20));
    let log = std::fs::read_to_string(f.report().join("runner.log")).unwrap();
    assert!(
        log.len() <= 64 * 1024 + 1024,
        "runner.log is {} bytes",
        log.len()
    );
    // The head: the suite's first line; the tail: the summary's last.
    assert!(
        log.lines().next().unwrap().contains("running 8 test(s)"),
        "{}",
        &log[..300]
    );
    let last = stderr.lines().last().unwrap();
    assert!(log.ends_with(&format!("{last}\n")), "{last}");
    assert!(log.contains("bytes of this log dropped here: --log-limit 64.0K"));
    // Stderr had every line.
    assert!(stderr.len() > 256 * 1024, "{}", stderr.len());
}

#[test]
fn an_output_limit_out_of_range_is_bad_input_naming_it() {
    let f = Fixture::new();
    f.test("t", "exit 0");
    for (args, env) in [
        (vec!["--test-output-limit", "1K"], None),
        (vec!["--test-output-limit", "1G"], None),
        (vec!["--test-output-limit", "12 apples"], None),
        (vec![], Some(("CCCI_TEST_OUTPUT_LIMIT", "1MB"))),
        (vec!["--log-limit", "1K"], None),
    ] {
        let mut c = support::ccci();
        c.current_dir(f.dir.path())
            .args(["test", "--report-dir"])
            .arg(f.report())
            .args(&args)
            .arg(f.tests());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 2, "{args:?} {env:?}: {err}");
        let flag = if args.is_empty() {
            "test-output-limit"
        } else {
            &args[0][2..]
        };
        assert!(err.contains(flag), "{args:?} {env:?}: {err}");
        assert!(
            !f.report().exists(),
            "{args:?}: the report directory was made"
        );
    }
}

#[test]
fn a_run_keeps_its_log_and_reports_within_the_limits() {
    let f = support::Fixture::new();
    // A CI test of the example recipe that floods both streams, then passes.
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = support::script(
        &dir,
        "90-floods.sh",
        "#!/bin/sh\n# tier: install\nseq -f 'flood %07g' 1 200000\nseq -f 'noise %07g' 1 200000 >&2\necho 'last words'\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_RUN_ID", "flood")
        .env("CCCI_TEST_OUTPUT_LIMIT", "64K")
        .env("CCCI_LOG_LIMIT", "64K")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{}", last_lines(&stderr, 30));
    let run = f.state.join("runs/flood");
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(
        log.len() <= 64 * 1024 + 1024,
        "run.log is {} bytes",
        log.len()
    );
    assert!(log.contains("bytes of this log dropped here"), "{log}");
    // Its last lines are the summary's, as on stderr.
    let last = stderr.lines().last().unwrap();
    assert!(log.ends_with(&format!("{last}\n")), "{last}");
    let output = run.join("report/install/output");
    for stream in ["stdout", "stderr"] {
        let file = std::fs::read(output.join(format!("90-floods.sh.{stream}"))).unwrap();
        assert!(
            (file.len() as u64) <= LIMIT + LINE_ROOM,
            "{stream}: {}",
            file.len()
        );
    }
    let kept = std::fs::read_to_string(output.join("90-floods.sh.stdout")).unwrap();
    assert!(kept.ends_with("flood 0200000\nlast words\n"));
    // What the run left in the state directory: the log, two captured
    // files, the reports and the record.
    let grown = dir_size(&f.state);
    assert!(grown < 64 * 1024 + 2 * LIMIT + 256 * 1024, "{grown} bytes");
    // The step's log: the test's lines within the limit per stream.
    for tag in ["[90-floods.sh] ", "[90-floods.sh stderr] "] {
        let shown: u64 = stderr
            .lines()
            .filter(|l| l.contains(tag))
            .map(|l| l.len() as u64 + 1)
            .sum();
        assert!(shown <= LIMIT + 1024, "{shown} bytes of {tag} lines");
    }
}

/// At a limit whose half is under one piece of a long line (8 KiB), the
/// last line's end is still shown: the last bytes that fit, not "its last
/// 0 bytes" and nothing.
#[test]
fn a_small_limit_still_shows_the_end_of_a_long_last_line() {
    let f = Fixture::new();
    f.test(
        "line",
        "echo first\nhead -c 300000 /dev/zero | tr '\\0' x\necho -n END\nexit 0",
    );
    let out = f.run(&[("CCCI_TEST_OUTPUT_LIMIT", "16K")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{}", last_lines(&stderr, 20));
    let (_, after) = stderr
        .split_once("bytes not shown here (the test wrote 300009 bytes in all); its last ")
        .unwrap_or_else(|| panic!("{}", last_lines(&stderr, 10)));
    let n: usize = after
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(n > 1024, "its last {n} bytes");
    let last = after
        .lines()
        .nth(1)
        .and_then(|l| l.split_once("[line] "))
        .map(|(_, text)| text)
        .unwrap_or_else(|| panic!("{}", last_lines(&stderr, 10)));
    assert!(last.ends_with("xxEND"), "{last}");
    assert_eq!(last.len(), n, "the bytes it announced");
    let shown: usize = stderr
        .lines()
        .filter(|l| l.contains("[line] "))
        .map(|l| l.len() + 1)
        .sum();
    assert!(shown <= 16 * 1024 + 1024, "{shown} bytes shown");
}
