//! Suites that report their own cases (SPEC section 6), from the real
//! binary: a test writes JUnit shaped as pytest writes it to its
//! `CCCI_JUNIT_OUT`; each case becomes a testcase of its own in the tier's
//! and the run's junit.xml, counted in the summary, a failed case fails a
//! test that exited 0, and a file that is not JUnit fails the test with a
//! line saying so. Every junit.xml is read with quick-xml, and with
//! junitparser too when `CCCI_DEV_JUNIT_PYTHON` names its python.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::support::{self, code, Fixture};

/// JUnit as pytest 7 writes it (`--junitxml`, family xunit2): a
/// `<testsuites>` root, a timestamp without a UTC offset, module-level
/// cases classed by the module, a class's cases by `module.Class`, an
/// assertion's text with escaped characters, a skip with its reason.
const PYTEST_JUNIT: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="1.234" timestamp="2026-12-07T05:00:00.123456" hostname="ci"><testcase classname="test_page" name="test_version" time="0.310" /><testcase classname="test_page" name="test_data" time="0.120"><failure message="AssertionError: assert 'v1' == 'v2'&#10;  - v2&#10;  + v1">page = &lt;Page url='http://127.0.0.1/'&gt;

    def test_data(page):
&gt;       assert page.text == 'v2'
E       AssertionError: assert 'v1' == 'v2'

test_page.py:12: AssertionError</failure></testcase><testcase classname="test_page" name="test_later" time="0.000"><skipped type="pytest.skip" message="needs the restore tier">test_page.py:20: needs the restore tier</skipped></testcase><testcase classname="test_page.TestNav" name="test_link[chromium]" time="0.200" /></testsuite></testsuites>"#;

/// A standalone `cc-ci-run test` over `tests/` with its reports in
/// `report/`.
struct Suite {
    dir: tempfile::TempDir,
}

impl Suite {
    fn new() -> Suite {
        let s = Suite {
            dir: support::tempdir(),
        };
        std::fs::create_dir_all(s.tests()).unwrap();
        s
    }

    fn tests(&self) -> PathBuf {
        self.dir.path().join("tests")
    }

    fn report(&self) -> PathBuf {
        self.dir.path().join("report")
    }

    /// A bash test that writes `junit` (when given) to its
    /// `CCCI_JUNIT_OUT`, then exits `exit`.
    fn test(&self, name: &str, junit: Option<&str>, exit: i32) {
        let write = match junit {
            Some(xml) => {
                let src = self.dir.path().join(format!("{name}.junit"));
                std::fs::write(&src, xml).unwrap();
                format!("cp '{}' \"$CCCI_JUNIT_OUT\"", src.display())
            }
            None => String::new(),
        };
        let path = self.tests().join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\n# timeout: 30s\nset -eu\n\
                 [ -d \"$(dirname \"$CCCI_JUNIT_OUT\")\" ]\n{write}\nexit {exit}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn run(&self) -> Output {
        let mut c = support::ccci();
        c.current_dir(self.dir.path())
            .env("CCCI_DOCKER", support::fake_dir().join("docker"))
            .env("CCCI_FAKE_STATE", self.dir.path().join("fake"))
            .args(["test", "--grace", "1s", "--report-dir"])
            .arg(self.report())
            .arg(self.tests())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = c.output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn json(&self) -> Value {
        let text = std::fs::read_to_string(self.report().join("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn test_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {report}"))
}

fn cases_of(t: &Value) -> Vec<(String, String)> {
    t["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_tests_own_cases_are_testcases_counted_and_a_failed_case_fails_it_though_it_exited_0() {
    let s = Suite::new();
    s.test("test_page.py", Some(PYTEST_JUNIT), 0);
    // Writes no report: its exit status alone decides it.
    s.test("plain", None, 0);
    let out = s.run();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");

    let report = s.json();
    let page = test_of(&report, "test_page.py");
    let file = page["file"].as_str().unwrap();
    let case = |c: &str| format!("{file}::{c}");
    assert_eq!(page["result"], "failed", "{page}");
    assert_eq!(page["status"], "exit 0");
    assert_eq!(
        page["reason"], "1 of its 4 case(s) failed, though it exited 0",
        "{page}"
    );
    assert_eq!(page["junit"], "cases/test_page.py/junit.xml");
    assert_eq!(
        cases_of(page),
        [
            (case("test_version"), "passed".to_string()),
            (case("test_data"), "failed".into()),
            (case("test_later"), "skipped".into()),
            (case("TestNav::test_link[chromium]"), "passed".into()),
        ]
    );
    assert_eq!(page["cases"][0]["duration_ms"], 310);
    let plain = test_of(&report, "plain");
    assert_eq!(plain["result"], "passed");
    assert_eq!(plain["cases"], serde_json::json!([]));
    assert_eq!(plain["junit"], Value::Null);
    assert_eq!(
        (
            &report["cases_passed"],
            &report["cases_failed"],
            &report["cases_skipped"]
        ),
        (&2.into(), &1.into(), &1.into())
    );
    assert_eq!(
        (&report["passed"], &report["failed"]),
        (&1.into(), &1.into())
    );

    // The summary names the failing case on its own row, with its
    // message, and counts the cases beside the tests.
    let row = log
        .lines()
        .find(|l| l.contains(&format!("  {}", case("test_data"))))
        .unwrap_or_else(|| panic!("no row for the failed case in {log}"));
    assert!(row.contains("failed"), "{row}");
    assert!(
        row.contains("(AssertionError: assert 'v1' == 'v2')"),
        "{row}"
    );
    assert!(
        log.contains(
            "1 passed, 1 failed, 0 skipped; cases: 2 passed, 1 failed, 1 skipped (exit 1)"
        ),
        "{log}"
    );

    // junit.xml: the test's own testcase, then one per case, of the same
    // classname; the failure's message and text kept, the skip skipped.
    let doc = crate::junit::check(&s.report().join("junit.xml"));
    let names: Vec<String> = doc.cases.iter().map(|c| c.name.clone()).collect();
    let at = names.iter().position(|n| n == "test_page.py").unwrap();
    assert_eq!(
        names[at..at + 5],
        [
            "test_page.py".to_string(),
            case("test_version"),
            case("test_data"),
            case("test_later"),
            case("TestNav::test_link[chromium]"),
        ],
        "the test's testcase, then its cases in file order"
    );
    assert_eq!(names.len(), 6, "{names:?}");
    let data = doc.case(&case("test_data"));
    assert_eq!(data.kind, "failure");
    // The writer keeps a message's line breaks raw in the attribute,
    // which every XML reader turns into spaces; report.json keeps them.
    assert!(
        data.message
            .starts_with("AssertionError: assert 'v1' == 'v2' "),
        "{data:?}"
    );
    assert_eq!(
        page["cases"][1]["message"],
        "AssertionError: assert 'v1' == 'v2'\n  - v2\n  + v1"
    );
    assert!(
        data.text.contains(
            "page = <Page url='http://127.0.0.1/'>\n\n    def test_data(page):\n>       assert"
        ),
        "{data:?}"
    );
    assert_eq!(data.classname, doc.case("test_page.py").classname);
    assert_eq!(data.file, file);
    assert_eq!(doc.case(&case("test_later")).kind, "skipped");
    assert_eq!(
        doc.case(&case("test_later")).message,
        "needs the restore tier"
    );
    assert_eq!(doc.case("test_page.py").kind, "failure");
    assert_eq!(doc.case("test_page.py").message, page["reason"]);
    assert_eq!(doc.case("plain").kind, "passed");
    assert_eq!(
        (doc.totals.tests, doc.totals.failures, doc.totals.skipped),
        (6, 2, 1)
    );
}

/// A bash test writing `junit`, exiting 0: failed, and the line saying
/// why names the variable and `rule`.
fn fails_saying(s: &Suite, log: &str, name: &str, rule: &str) {
    let report = s.json();
    let t = test_of(&report, name);
    assert_eq!(t["result"], "failed", "{t}");
    assert_eq!(t["status"], "exit 0", "{t}");
    let reason = t["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "its CCCI_JUNIT_OUT ({}) is not valid JUnit: ",
            s.report()
                .join("cases")
                .join(name)
                .join("junit.xml")
                .display()
        )),
        "{reason}"
    );
    assert!(reason.contains(rule), "{name}: {reason}");
    assert!(
        log.contains(&format!("{name}: {reason}")),
        "the log says why {name} failed: {log}"
    );
    assert_eq!(t["cases"], serde_json::json!([]), "{t}");
}

#[test]
fn junit_that_is_not_valid_or_is_truncated_fails_the_test_saying_so() {
    let s = Suite::new();
    s.test("garbage", Some("this is not <xml"), 0);
    // pytest killed while it wrote: the root never closed.
    let cut = &PYTEST_JUNIT[..PYTEST_JUNIT
        .find("<testcase classname=\"test_page\" name=\"test_later\"")
        .unwrap()];
    s.test("truncated", Some(cut), 0);
    s.test("html", Some("<html><body>hello</body></html>"), 0);
    s.test("empty", Some(""), 0);
    s.test(
        "mismatched",
        Some("<testsuites><testsuite><testcase name=\"a\"></testsuite></testsuites>"),
        0,
    );
    let out = s.run();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(code(out.status), 1, "{log}");
    fails_saying(&s, &log, "garbage", "not well-formed XML");
    fails_saying(&s, &log, "truncated", "truncated");
    fails_saying(&s, &log, "html", "its root element is <html>");
    fails_saying(&s, &log, "empty", "no root element");
    fails_saying(&s, &log, "mismatched", "not well-formed XML");
    let doc = crate::junit::check(&s.report().join("junit.xml"));
    assert_eq!(doc.totals.tests, 5, "one testcase per test, no cases");
    assert!(doc.case("truncated").message.contains("is not valid JUnit"));
}

#[test]
fn a_failing_exit_stands_beside_passing_cases_and_a_stale_report_is_not_read_again() {
    let s = Suite::new();
    let green = PYTEST_JUNIT
        .replace(
            r#"<testcase classname="test_page" name="test_data" time="0.120"><failure"#,
            r#"<testcase classname="test_page" name="test_data" time="0.120"><system-out"#,
        )
        .replace("AssertionError</failure>", "AssertionError</system-out>");
    s.test("crashes", Some(&green), 3);
    let out = s.run();
    assert_eq!(code(out.status), 1);
    let report = s.json();
    let t = test_of(&report, "crashes");
    assert_eq!(t["result"], "failed");
    assert_eq!(t["reason"], "exit 3");
    assert_eq!(report["cases_failed"], 0);
    assert_eq!(report["cases_passed"], 3);
    // The next run of a test that writes nothing: the file the earlier
    // run left is gone, so its cases are not counted again.
    s.test("crashes", None, 0);
    let out = s.run();
    assert_eq!(code(out.status), 0);
    let report = s.json();
    assert_eq!(test_of(&report, "crashes")["cases"], serde_json::json!([]));
    assert!(!s.report().join("cases/crashes/junit.xml").exists());
}

/// A CI test of the example recipe under `run` writing pytest's JUnit.
fn ci_test(f: &Fixture, name: &str) -> PathBuf {
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let src = f.tmp.path().join("pytest.junit");
    std::fs::write(&src, PYTEST_JUNIT).unwrap();
    let path = support::script(
        &dir,
        name,
        &format!(
            "#!/bin/sh\n# tier: install\n# timeout: 30s\ncp '{}' \"$CCCI_JUNIT_OUT\"\n\
             printf png >\"$CCCI_ARTIFACTS/test_data.png\"\nexit 1\n",
            src.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn merged(state: &Path, run: &str) -> crate::junit::Doc {
    crate::junit::check(&state.join(format!("runs/{run}/report/junit.xml")))
}

#[test]
fn under_a_run_the_cases_join_the_tiers_and_the_merged_junit_with_the_recipes_classname() {
    let f = Fixture::new();
    ci_test(&f, "70-pytest.sh");
    let out = f
        .run_cmd(&["--quick"])
        .env("CCCI_RUN_ID", "suites")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{log}");
    let file = "tests/example/70-pytest.sh";
    let doc = merged(&f.state, "suites");
    let data = doc.case(&format!("{file}::test_page::test_data"));
    assert_eq!(data.kind, "failure");
    assert_eq!(data.classname, "example.install");
    assert_eq!(data.suite, "install");
    assert_eq!(
        doc.case(&format!("{file}::TestNav::test_link[chromium]"))
            .classname,
        "example.install"
    );
    let tier = crate::junit::check(&f.state.join("runs/suites/report/install/junit.xml"));
    let own: Vec<_> = doc
        .cases
        .iter()
        .filter(|c| c.suite == "install")
        .cloned()
        .collect();
    assert_eq!(tier.cases, own, "the merged file holds the tier's cases");
    // The run's summary counts the cases beside the tests.
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    assert!(
        summary.contains("failed, 0 skipped; cases: 2 passed, 1 failed, 1 skipped ("),
        "{summary}"
    );
    let rec = f.record("suites");
    assert_eq!(rec["tests"][0]["cases_failed"], 1, "{rec}");

    // The screenshot it left is attached to its testcase and to its
    // failed case's (GitLab reads a testcase's system-out), not to the
    // cases that passed nor to the tier's other test.
    let shot = f
        .state
        .join("runs/suites/report/artifacts/install/test_data.png");
    assert!(shot.is_file());
    let attachment = format!("[[ATTACHMENT|{}]]", shot.display());
    let xml = std::fs::read_to_string(f.state.join("runs/suites/report/junit.xml")).unwrap();
    let testcase = |name: &str| -> String {
        let open = format!("<testcase name=\"{name}\"");
        let at = xml
            .find(&open)
            .unwrap_or_else(|| panic!("no {name} in {xml}"));
        let rest = &xml[at..];
        let end = rest.find("</testcase>").map_or(rest.len(), |e| e);
        let next = rest[1..].find("<testcase ").map_or(rest.len(), |n| n + 1);
        rest[..end.min(next)].to_string()
    };
    assert!(testcase("70-pytest.sh").contains(&attachment), "{xml}");
    assert!(
        testcase(&format!("{file}::test_page::test_data")).contains(&attachment),
        "{xml}"
    );
    assert!(!testcase(&format!("{file}::test_page::test_version")).contains("ATTACHMENT"));
    assert!(!testcase("00-deployed.sh").contains("ATTACHMENT"), "{xml}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(f.state.join("runs/suites/report/install/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        test_of(&report, "70-pytest.sh")["artifacts"],
        serde_json::json!([shot.display().to_string()])
    );
    assert_eq!(
        test_of(&report, "00-deployed.sh")["artifacts"],
        serde_json::json!([])
    );
    crate::junit::check(&f.state.join("runs/suites/report/junit.xml"));
}

/// The artifact links of a timeline page: (shown name, href).
fn artifact_links(html: &str) -> Vec<(String, String)> {
    html.split(r#"<a class="artifact" href=""#)
        .skip(1)
        .map(|rest| {
            let (href, rest) = rest.split_once("\">").unwrap();
            let (shown, _) = rest.split_once("</a>").unwrap();
            (shown.to_string(), href.to_string())
        })
        .collect()
}

/// A link as a browser resolves it against the page's directory.
fn resolve(page_dir: &Path, href: &str) -> PathBuf {
    let bytes = href.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&href[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    assert!(!href.starts_with('/'), "a relative link: {href}");
    page_dir.join(String::from_utf8(out).unwrap())
}

#[test]
fn the_timeline_page_links_a_runs_artifacts_relative_to_where_it_sits() {
    let f = Fixture::new();
    let dir = f.tmp.path().join("ci-tests/example");
    std::fs::create_dir_all(&dir).unwrap();
    let path = support::script(
        &dir,
        "80-shot.sh",
        "#!/bin/sh\n# tier: install\nprintf 'png' >\"$CCCI_ARTIFACTS/failed page #1.png\"\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The page a run refreshes, outside the state directory.
    let www = f.tmp.path().join("www/timeline.html");
    std::fs::create_dir_all(www.parent().unwrap()).unwrap();
    let out = f
        .run_cmd(&["--quick"])
        .env("CCCI_RUN_ID", "shots")
        .env("CCCI_TIMELINE_FILE", &www)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = f
        .state
        .join("runs/shots/report/artifacts/install/failed page #1.png");
    assert_eq!(std::fs::read(&kept).unwrap(), b"png");

    // In the state directory (`--out`), the same page on stdout (links
    // relative to the state directory), and the one the run refreshed.
    let in_state = f.state.join("timeline.html");
    let w = f
        .cmd()
        .args(["timeline", "--since", "1h", "--out"])
        .arg(&in_state)
        .output()
        .unwrap();
    assert_eq!(code(w.status), 0, "{}", String::from_utf8_lossy(&w.stderr));
    let stdout = f
        .cmd()
        .args(["timeline", "--since", "1h"])
        .output()
        .unwrap();
    assert_eq!(code(stdout.status), 0);
    for (html, page_dir) in [
        (std::fs::read_to_string(&in_state).unwrap(), f.state.clone()),
        (String::from_utf8(stdout.stdout).unwrap(), f.state.clone()),
        (
            std::fs::read_to_string(&www).unwrap(),
            www.parent().unwrap().to_path_buf(),
        ),
    ] {
        let links = artifact_links(&html);
        assert_eq!(links.len(), 1, "{links:?}");
        let (shown, href) = &links[0];
        assert_eq!(shown, "install/failed page #1.png");
        let target = resolve(&page_dir, href);
        assert_eq!(
            std::fs::read(&target)
                .unwrap_or_else(|e| panic!("{href} from {}: {e}", page_dir.display())),
            b"png"
        );
    }
    let html = std::fs::read_to_string(&in_state).unwrap();
    assert!(
        html.contains(r#"href="runs/shots/report/artifacts/install/failed%20page%20%231.png""#),
        "{html}"
    );
}

/// The example app (examples/recipe/image/server.c) built for this host
/// and serving on 127.0.0.1; killed when dropped.
struct ExampleApp {
    child: std::process::Child,
    port: u16,
}

impl ExampleApp {
    fn start(dir: &Path, version: &str) -> ExampleApp {
        let bin = dir.join("server");
        let cc = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "gcc".into()))
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(format!("-DVERSION=\"{version}\""))
            .arg(support::repo().join("examples/recipe/image/server.c"))
            .output()
            .unwrap();
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        // A free port: the kernel picks one, the server binds it after us.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&bin)
            .env("PORT", port.to_string())
            .env("DATA_DIR", &data)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let app = ExampleApp { child, port };
        support::wait_until("the example app listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        app
    }

    fn put_data(&self, body: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /data HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    }
}

impl Drop for ExampleApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The python with playwright and pytest-playwright (`.ci/run`'s venv
/// through `CCCI_DEV_PLAYWRIGHT_PYTHON`) and Debian's Chromium, or why the
/// browser test cannot run here: a line, and a failure where
/// `CCCI_DEV_REQUIRE_PLAYWRIGHT` says they must be there.
fn playwright() -> Option<String> {
    let python = std::env::var("CCCI_DEV_PLAYWRIGHT_PYTHON").ok();
    let missing = match &python {
        None => Some("CCCI_DEV_PLAYWRIGHT_PYTHON is not set".to_string()),
        Some(p) if !Path::new("/usr/bin/chromium").exists() => {
            Some(format!("/usr/bin/chromium is not installed (python {p})"))
        }
        Some(p) => {
            let ok = std::process::Command::new(p)
                .args(["-c", "import playwright, pytest_playwright"])
                .status()
                .is_ok_and(|s| s.success());
            (!ok).then(|| format!("{p} lacks playwright or pytest-playwright"))
        }
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("CCCI_DEV_REQUIRE_PLAYWRIGHT").is_none(),
            "the browser test is required (CCCI_DEV_REQUIRE_PLAYWRIGHT) but {why}"
        );
        eprintln!("skipped: the example recipe's browser test needs Playwright: {why}");
        return None;
    }
    python
}

#[test]
fn the_example_recipes_browser_test_reports_each_case_and_a_changed_page_fails_its_case_with_a_screenshot(
) {
    let Some(python) = playwright() else { return };
    let s = Suite::new();
    let app = ExampleApp::start(s.dir.path(), "1.1.0");
    app.put_data("ccci-example marker of the browser test");
    // The recipe's page_test.py, run as 40-page.sh runs it, against the
    // app on 127.0.0.1; EXPECT_VERSION is what the page must show.
    let page_test = support::repo().join("examples/recipe/tests/page_test.py");
    let artifacts = s.report().join("artifacts");
    let wrapper = s.tests().join("browser.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# timeout: 3m\nset -eu\nexport PYTHONDONTWRITEBYTECODE=1\n\
             export PAGE_URL=http://127.0.0.1:{port}/page EXPECT_DATA='ccci-example marker of the browser test'\n\
             exec '{python}' -m pytest '{page_test}' -p no:cacheprovider -q \
             --junitxml=\"$CCCI_JUNIT_OUT\" --screenshot only-on-failure \
             --output '{artifacts}/page'\n",
            port = app.port,
            page_test = page_test.display(),
            artifacts = artifacts.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |version: &str| {
        let mut c = support::ccci();
        c.current_dir(s.dir.path())
            .env("CCCI_DOCKER", support::fake_dir().join("docker"))
            .env("CCCI_FAKE_STATE", s.dir.path().join("fake"))
            .env("EXPECT_VERSION", version)
            .args(["test", "--report-dir"])
            .arg(s.report())
            .arg(s.tests())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = std::time::Instant::now();
        let out = c.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{log}");
        eprintln!("browser suite: {:?} in all", started.elapsed());
        (code(out.status), log)
    };
    let case = |c: &str| format!("{}::page_test::{c}[chromium]", wrapper.display());

    // The page as the app serves it: green, three cases.
    let (exit, log) = run("1.1.0");
    assert_eq!(exit, 0, "{log}");
    let report = s.json();
    let t = test_of(&report, "browser.sh");
    assert_eq!(
        cases_of(t),
        [
            (case("test_title"), "passed".to_string()),
            (case("test_version"), "passed".into()),
            (case("test_data_written_at_install"), "passed".into()),
        ]
    );
    eprintln!("pytest process: {} ms", t["duration_ms"]);
    assert!(!artifacts.join("page").exists(), "no screenshot when green");

    // The page changed (it shows 1.1.0 where 2.0.0 is expected): red, the
    // failing case named in the summary and as its own testcase, its
    // screenshot in the report directory.
    let (exit, log) = run("2.0.0");
    assert_eq!(exit, 1, "{log}");
    let row = log
        .lines()
        .find(|l| l.contains(&format!("  {}", case("test_version"))))
        .unwrap_or_else(|| panic!("no summary row for the failed case: {log}"));
    assert!(row.contains("failed"), "{row}");
    assert!(
        log.contains("cases: 2 passed, 1 failed, 0 skipped"),
        "{log}"
    );
    let doc = crate::junit::check(&s.report().join("junit.xml"));
    let failed = doc.case(&case("test_version"));
    assert_eq!(failed.kind, "failure");
    assert!(failed.text.contains("ccci-example 2.0.0"), "{failed:?}");
    assert_eq!(doc.case(&case("test_title")).kind, "passed");
    // pytest-playwright names the folder after the test's node id, which
    // holds the test file's path relative to pytest's rootdir: it differs
    // with where the checkout lies, so only its end is fixed.
    let shots: Vec<_> = walkdir::WalkDir::new(artifacts.join("page"))
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_name() == "test-failed-1.png"
                && e.path()
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| {
                        n.to_string_lossy()
                            .ends_with("page-test-py-test-version-chromium")
                    })
        })
        .map(|e| e.into_path())
        .collect();
    assert_eq!(
        shots.len(),
        1,
        "one screenshot of test_version under {}: {shots:?}",
        artifacts.display()
    );
    let shot = &shots[0];
    let png = std::fs::read(shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
}
