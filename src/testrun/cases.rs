//! Suites that report their own cases (SPEC section 6): a test gets
//! `CCCI_JUNIT_OUT`, a path in its own directory under the tier's report
//! directory (`cases/<test name>/junit.xml`); the JUnit it writes there
//! (`pytest --junitxml="$CCCI_JUNIT_OUT"`) is read back here, and each of
//! its testcases becomes a case of the test: a testcase of its own in the
//! tier's junit.xml and the run's, counted in the summary.
//!
//! # Reading
//!
//! The file is read with quick-xml, the parser quick-junit is built on,
//! and not with quick-junit's own reader: that one rejects what pytest
//! writes in practice (a `timestamp` without a UTC offset, as pytest 7
//! and earlier write it; a root `<testsuite>` without `<testsuites>`, as
//! many JUnit writers do). What is taken from the file is what JUnit
//! consumers agree on (Jenkins' and GitLab's readers): every `<testcase>`
//! under the root, nested suites included, with its `name`, `classname`,
//! `time` and result (`<failure>`, `<error>`, `<skipped>`, their `message`
//! and text). Anything else (properties, system-out, counts on the suites)
//! is left alone: the counts are computed from the testcases, never
//! trusted.
//!
//! A file that is not well-formed XML, whose root is not `<testsuites>` or
//! `<testsuite>`, or that ends before its root is closed (a pytest killed
//! while writing) is invalid: the test fails with a line saying so. No
//! file at all is no report: the test's own exit status decides alone.
//!
//! # Names
//!
//! A case is named `<test file>::<case>`, the test's file as the recipe
//! knows it (`tests/browser.py`), then the case as pytest's node id names
//! it: the testcase's `name`, after the last part of its `classname` when
//! that part is a class or another module (`TestPage::test_title`), not
//! when it only repeats the test file's own module name.

use std::io::Read;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use serde::Serialize;

/// The directory under the tier's report directory holding each test's
/// own directory.
pub const DIR: &str = "cases";
/// The variable that names the path.
pub const ENV: &str = "CCCI_JUNIT_OUT";
/// A report larger than this is not read (and the test fails, saying so).
pub const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// How much of a case's failure text is kept (its last bytes: an
/// assertion's explanation ends pytest's text).
pub const TEXT_BYTES: usize = 16 * 1024;

/// How one case ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseResult {
    Passed,
    /// `<failure>`: an assertion failed.
    Failed,
    /// `<error>`: the case could not run its check (a fixture failed).
    Error,
    Skipped,
}

impl CaseResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseResult::Passed => "passed",
            CaseResult::Failed => "failed",
            CaseResult::Error => "error",
            CaseResult::Skipped => "skipped",
        }
    }

    /// Counts against the test's verdict.
    pub fn is_failure(self) -> bool {
        matches!(self, CaseResult::Failed | CaseResult::Error)
    }
}

/// One `<testcase>` as the file holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCase {
    pub name: String,
    pub classname: String,
    pub result: CaseResult,
    pub message: Option<String>,
    pub text: String,
    pub time_ms: Option<u64>,
}

/// One case of a test, as the reports hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// `<test file>::<case>` (see the module header).
    pub name: String,
    pub result: CaseResult,
    /// The failure's, error's or skip's message.
    pub message: Option<String>,
    pub duration_ms: Option<u64>,
    /// The failure's text (its last [`TEXT_BYTES`]): in junit.xml, not in
    /// report.json.
    #[serde(skip)]
    pub text: String,
}

/// What a test's `CCCI_JUNIT_OUT` held after it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// No file: the test wrote no report.
    Missing,
    /// Not JUnit, and why.
    Invalid(String),
    Cases(Vec<RawCase>),
}

/// The path a test gets as `CCCI_JUNIT_OUT`.
pub fn path(report_dir: &Path, test_name: &str) -> PathBuf {
    report_dir.join(DIR).join(test_name).join("junit.xml")
}

/// Reads the file at `path` (see the module header).
pub fn read(path: &Path) -> Found {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Invalid(format!("cannot be read: {e}")),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
        return Found::Invalid(format!("cannot be read: {e}"));
    }
    if bytes.len() as u64 > MAX_BYTES {
        return Found::Invalid(format!("larger than {} MiB", MAX_BYTES / (1024 * 1024)));
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Found::Invalid("not UTF-8".into());
    };
    match parse(&text) {
        Ok(cases) => Found::Cases(cases),
        Err(why) => Found::Invalid(why),
    }
}

fn attr(e: &BytesStart, key: &[u8]) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|err| format!("a bad attribute: {err}"))?;
        if a.key.as_ref() == key {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| format!("a bad attribute value: {err}"))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// The text of an entity or character reference.
fn reference(name: &str, r: &quick_xml::events::BytesRef) -> Result<String, String> {
    Ok(match name {
        "lt" => "<".into(),
        "gt" => ">".into(),
        "amp" => "&".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        _ => match r.resolve_char_ref() {
            Ok(Some(c)) => c.to_string(),
            _ => return Err(format!("an unknown entity &{name};")),
        },
    })
}

/// The testcases of a JUnit document (see the module header), or why it
/// is not one.
pub fn parse(xml: &str) -> Result<Vec<RawCase>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut open: Vec<String> = Vec::new();
    let mut root_seen = false;
    let mut cases: Vec<RawCase> = Vec::new();
    // Inside a testcase (its index in `cases`), and inside its result.
    let mut case: Option<(usize, usize)> = None;
    let mut in_result: Option<usize> = None;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("not well-formed XML (at byte {at}): {e}"))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if !root_seen {
                    if tag != "testsuites" && tag != "testsuite" {
                        return Err(format!(
                            "its root element is <{tag}>, not <testsuites> or <testsuite>"
                        ));
                    }
                    root_seen = true;
                } else if open.is_empty() {
                    return Err(format!("a second root element <{tag}>"));
                }
                match tag.as_str() {
                    "testcase" if case.is_none() => {
                        let time_ms = attr(&e, b"time")?
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .filter(|s| s.is_finite() && *s >= 0.0)
                            .map(|s| (s * 1000.0).round() as u64);
                        cases.push(RawCase {
                            name: attr(&e, b"name")?.unwrap_or_default(),
                            classname: attr(&e, b"classname")?.unwrap_or_default(),
                            result: CaseResult::Passed,
                            message: None,
                            text: String::new(),
                            time_ms,
                        });
                        if !empty {
                            case = Some((cases.len() - 1, open.len()));
                        }
                    }
                    "failure" | "error" | "skipped" if case.is_some() && in_result.is_none() => {
                        let last = cases.last_mut().ok_or("a result outside a testcase")?;
                        let result = match tag.as_str() {
                            "failure" => CaseResult::Failed,
                            "error" => CaseResult::Error,
                            _ => CaseResult::Skipped,
                        };
                        // pytest writes a failed test's teardown error
                        // after its failure: the first red result stands.
                        if !last.result.is_failure() {
                            last.result = result;
                            last.message = attr(&e, b"message")?;
                            last.text.clear();
                            if !empty {
                                in_result = Some(open.len());
                            }
                        }
                    }
                    _ => {}
                }
                if !empty {
                    open.push(tag);
                }
            }
            Event::End(e) => {
                // quick-xml has checked that it closes the open element.
                let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                open.pop();
                if in_result == Some(open.len()) {
                    in_result = None;
                }
                if case.is_some_and(|(_, depth)| depth == open.len()) && tag == "testcase" {
                    case = None;
                }
            }
            Event::Text(t) if in_result.is_some() => {
                let text = t
                    .xml10_content()
                    .map_err(|e| format!("text that is not UTF-8: {e}"))?;
                if let Some(c) = cases.last_mut() {
                    c.text.push_str(&text);
                }
            }
            Event::CData(t) if in_result.is_some() => {
                let text = t
                    .decode()
                    .map_err(|e| format!("text that is not UTF-8: {e}"))?;
                if let Some(c) = cases.last_mut() {
                    c.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let text = reference(&name, &r)?;
                if in_result.is_some() {
                    if let Some(c) = cases.last_mut() {
                        c.text.push_str(&text);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("no root element (an empty file)".into());
    }
    if let Some(tag) = open.last() {
        return Err(format!(
            "it ends before <{tag}> is closed (truncated: {} element(s) still open)",
            open.len()
        ));
    }
    for c in &mut cases {
        keep_tail(&mut c.text, TEXT_BYTES);
    }
    Ok(cases)
}

/// Keeps the last `max` bytes of `text` (on a character boundary).
fn keep_tail(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut cut = text.len() - max;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.replace_range(..cut, "");
}

/// The name of a case of the test whose file is `test_file` (see the
/// module header).
pub fn case_name(test_file: &str, case: &RawCase) -> String {
    let base = test_file.rsplit('/').next().unwrap_or(test_file);
    let stem = base.split_once('.').map_or(base, |(s, _)| s);
    let last = case.classname.rsplit('.').next().unwrap_or("");
    if last.is_empty() || last == stem {
        format!("{test_file}::{}", case.name)
    } else {
        format!("{test_file}::{last}::{}", case.name)
    }
}

/// The cases of the test whose file is `test_file`, as the reports hold
/// them.
pub fn reports(test_file: &str, raw: &[RawCase]) -> Vec<CaseReport> {
    raw.iter()
        .map(|c| CaseReport {
            name: case_name(test_file, c),
            result: c.result,
            message: c.message.clone(),
            duration_ms: c.time_ms,
            text: c.text.clone(),
        })
        .collect()
}

/// Counts (passed, failed, skipped) of `cases`; an error is a failure.
pub fn counts<'a>(cases: impl IntoIterator<Item = &'a CaseReport>) -> (usize, usize, usize) {
    let (mut p, mut f, mut s) = (0, 0, 0);
    for c in cases {
        match c.result {
            CaseResult::Passed => p += 1,
            CaseResult::Failed | CaseResult::Error => f += 1,
            CaseResult::Skipped => s += 1,
        }
    }
    (p, f, s)
}
