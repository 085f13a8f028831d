//! Readers of the runner's junit.xml, shared by the unit and the
//! concurrency tests.
//!
//! - [`read`]: a strict reader built on quick-xml. It fails on anything
//!   that is not well-formed XML (mismatched tags, unknown entities, raw
//!   control characters), returns every testcase with its classname,
//!   `file`, kind (`passed`, `failure`, `error`, `skipped`), message,
//!   text and reruns (`<flakyFailure>`, `<rerunFailure>`, ...), and asserts that the counts of the root and of every testsuite
//!   are the counts of the testcases they hold (a constant `errors="0"`
//!   fails here).
//! - [`junitparser`]: the same facts as a real CI consumer reads them:
//!   junitparser (PyPI) run by the python that `CCCI_DEV_JUNIT_PYTHON` names
//!   (`.ci/run` installs it into a virtual environment).
//! - [`check`]: [`read`] always, and [`junitparser`] too when
//!   `CCCI_DEV_JUNIT_PYTHON` is set, asserting that both read the same file
//!   the same way. Without that variable (the README's test command on a
//!   machine without the venv) the quick-xml reading still asserts
//!   everything.

#![allow(dead_code)]

use std::path::Path;

use quick_xml::events::{BytesStart, Event};

/// One `<testcase>`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub classname: String,
    pub file: String,
    /// `passed`, `failure`, `error` or `skipped`.
    pub kind: String,
    pub message: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub text: String,
    /// Earlier attempts, in file order.
    pub reruns: Vec<Rerun>,
}

/// One `<flakyFailure>`, `<flakyError>`, `<rerunFailure>` or `<rerunError>`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Rerun {
    pub tag: String,
    pub message: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// Counts as the root element states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Totals {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

/// A whole file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Doc {
    pub totals: Totals,
    pub cases: Vec<Case>,
}

impl Doc {
    pub fn case(&self, name: &str) -> &Case {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no testcase {name:?} in {:#?}", self.cases))
    }

    pub fn kinds(&self) -> Vec<(String, String)> {
        self.cases
            .iter()
            .map(|c| (c.name.clone(), c.kind.clone()))
            .collect()
    }
}

fn attrs(e: &BytesStart) -> Vec<(String, String)> {
    e.attributes()
        .map(|a| {
            let a = a.expect("well-formed attribute");
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .expect("attribute with known entities only");
            (
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                v.into_owned(),
            )
        })
        .collect()
}

fn get(a: &[(String, String)], k: &str) -> String {
    a.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn count(a: &[(String, String)], k: &str) -> usize {
    get(a, k)
        .parse()
        .unwrap_or_else(|_| panic!("attribute {k} is not a count: {a:?}"))
}

fn totals_of(a: &[(String, String)]) -> Totals {
    Totals {
        tests: count(a, "tests"),
        failures: count(a, "failures"),
        errors: count(a, "errors"),
        skipped: count(a, "skipped"),
    }
}

fn tally(cases: &[Case]) -> Totals {
    let n = |k: &str| cases.iter().filter(|c| c.kind == k).count();
    Totals {
        tests: cases.len(),
        failures: n("failure"),
        errors: n("error"),
        skipped: n("skipped"),
    }
}

/// Reads junit.xml with quick-xml (see the module header).
pub fn read(xml: &str) -> Doc {
    for c in xml.chars() {
        assert!(
            (c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'),
            "raw control character {c:?} in XML"
        );
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut root: Option<Totals> = None;
    let mut suites: Vec<(String, Totals, usize)> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    // Inside a <failure>, <error> or <skipped>: its text is collected.
    let mut in_result = false;
    loop {
        let event = reader.read_event().expect("well-formed XML");
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let a = attrs(&e);
                match e.name().as_ref() {
                    b"testsuites" => root = Some(totals_of(&a)),
                    b"testsuite" => suites.push((get(&a, "name"), totals_of(&a), cases.len())),
                    b"testcase" => cases.push(Case {
                        suite: suites.last().map(|s| s.0.clone()).unwrap_or_default(),
                        name: get(&a, "name"),
                        classname: get(&a, "classname"),
                        file: get(&a, "file"),
                        kind: "passed".into(),
                        message: String::new(),
                        ty: String::new(),
                        text: String::new(),
                        reruns: Vec::new(),
                    }),
                    tag @ (b"flakyFailure" | b"flakyError" | b"rerunFailure" | b"rerunError") => {
                        let last = cases.last_mut().expect("a rerun inside a testcase");
                        last.reruns.push(Rerun {
                            tag: String::from_utf8_lossy(tag).into_owned(),
                            message: get(&a, "message"),
                            ty: get(&a, "type"),
                        });
                    }
                    kind @ (b"failure" | b"error" | b"skipped") => {
                        let last = cases.last_mut().expect("a result inside a testcase");
                        assert_eq!(last.kind, "passed", "two results in {}", last.name);
                        last.kind = String::from_utf8_lossy(kind).into_owned();
                        last.message = get(&a, "message");
                        last.ty = get(&a, "type");
                        in_result = !empty;
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") {
                    in_result = false;
                }
            }
            Event::Text(t) if in_result => {
                let text = t.xml10_content().expect("UTF-8 text");
                cases.last_mut().expect("a testcase").text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let ch = match name.as_str() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => r
                        .resolve_char_ref()
                        .expect("a valid character reference")
                        .unwrap_or_else(|| panic!("unknown entity &{name};")),
                };
                if in_result {
                    cases.last_mut().expect("a testcase").text.push(ch);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = root.expect("no <testsuites> root");
    // Every count is the count of what the element holds.
    for (i, (name, stated, first)) in suites.iter().enumerate() {
        let end = suites.get(i + 1).map_or(cases.len(), |s| s.2);
        assert_eq!(
            *stated,
            tally(&cases[*first..end]),
            "testsuite {name}: counts differ from its testcases"
        );
    }
    assert_eq!(root, tally(&cases), "root counts differ from the testcases");
    Doc {
        totals: root,
        cases,
    }
}

/// The file as junitparser reads it, when `CCCI_DEV_JUNIT_PYTHON` names a
/// python with junitparser installed; None without that variable.
pub fn junitparser(path: &Path) -> Option<Doc> {
    let python = std::env::var_os("CCCI_DEV_JUNIT_PYTHON").filter(|p| !p.is_empty())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/junit_check.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(path)
        .output()
        .expect("run the junitparser check");
    assert!(
        out.status.success(),
        "junitparser could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the junitparser check prints JSON"))
}

/// Reads `path` with quick-xml and, when available, with junitparser;
/// both must agree.
pub fn check(path: &Path) -> Doc {
    let xml = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("junit.xml at {}: {e}", path.display()));
    let doc = read(&xml);
    if let Some(other) = junitparser(path) {
        assert_eq!(
            doc,
            other,
            "quick-xml and junitparser read {} differently",
            path.display()
        );
    }
    doc
}

/// The old shape: (name, kind, message) per testcase.
pub fn parse_junit(xml: &str) -> Vec<(String, String, String)> {
    read(xml)
        .cases
        .into_iter()
        .map(|c| (c.name, c.kind, c.message))
        .collect()
}
