//! Reading the JUnit a test writes to `CCCI_JUNIT_OUT` (SPEC section 6):
//! the shapes JUnit writers produce (pytest's `<testsuites>` root, a bare
//! `<testsuite>` root, nested suites, CDATA), what makes a file invalid,
//! and how a case is named.

use cc_ci_run::testrun::cases::{case_name, parse, CaseResult, RawCase};

fn raw(classname: &str, name: &str) -> RawCase {
    RawCase {
        name: name.into(),
        classname: classname.into(),
        result: CaseResult::Passed,
        message: None,
        text: String::new(),
        time_ms: None,
    }
}

/// A case as read: name, result, message, text.
type Read<'a> = (&'a str, CaseResult, Option<&'a str>, &'a str);

#[test]
fn every_testcase_of_the_shapes_junit_writers_produce_is_read() {
    // (what, document, [(name, result, message, text)])
    let table: &[(&str, &str, &[Read])] = &[
        (
            "pytest: <testsuites>, a message with character references",
            r#"<?xml version="1.0"?><testsuites><testsuite name="pytest" timestamp="2026-01-01T00:00:00.1"><testcase classname="m" name="a" time="0.5"/><testcase classname="m" name="b"><failure message="x&#10;y">E  1 &lt; 2</failure></testcase></testsuite></testsuites>"#,
            &[
                ("a", CaseResult::Passed, None, ""),
                ("b", CaseResult::Failed, Some("x\ny"), "E  1 < 2"),
            ],
        ),
        (
            "a bare <testsuite> root (older writers), an error, a skip",
            r#"<testsuite><testcase name="e"><error message="fixture">boom</error></testcase><testcase name="s"><skipped/></testcase></testsuite>"#,
            &[
                ("e", CaseResult::Error, Some("fixture"), "boom"),
                ("s", CaseResult::Skipped, None, ""),
            ],
        ),
        (
            "nested suites, CDATA, output ignored",
            r#"<testsuites><testsuite><testsuite><testcase name="n"><system-out>out</system-out><failure><![CDATA[a <raw> text]]></failure></testcase></testsuite></testsuite></testsuites>"#,
            &[("n", CaseResult::Failed, None, "a <raw> text")],
        ),
        (
            "a failure, then a teardown error: the failure stands",
            r#"<testsuites><testcase name="t"><failure message="first">f</failure><error message="teardown">e</error></testcase></testsuites>"#,
            &[("t", CaseResult::Failed, Some("first"), "f")],
        ),
        ("no testcases", r#"<testsuites/>"#, &[]),
    ];
    for (what, xml, want) in table {
        let got = parse(xml).unwrap_or_else(|e| panic!("{what}: {e}"));
        let got: Vec<_> = got
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.result,
                    c.message.as_deref(),
                    c.text.as_str(),
                )
            })
            .collect();
        assert_eq!(&got, want, "{what}");
    }
    let timed = parse(r#"<testsuite><testcase name="a" time="1.2345"/><testcase name="b" time="soon"/></testsuite>"#).unwrap();
    assert_eq!((timed[0].time_ms, timed[1].time_ms), (Some(1235), None));
}

#[test]
fn a_file_that_is_not_junit_says_why() {
    let table = [
        ("", "no root element"),
        ("   \n", "no root element"),
        ("<html/>", "its root element is <html>"),
        ("not xml <", "not well-formed XML"),
        (
            "<testsuites><testsuite></testsuites>",
            "not well-formed XML",
        ),
        ("<testsuites><testsuite><testcase name=\"a\">", "truncated"),
        ("<testsuites/><testsuites/>", "a second root element"),
        (
            "<testsuites><testcase name=\"&nope;\"/></testsuites>",
            "attribute",
        ),
    ];
    for (xml, why) in table {
        let err = parse(xml).expect_err(xml);
        assert!(err.contains(why), "{xml:?}: {err}");
    }
}

#[test]
fn a_case_is_named_as_pytest_names_it_under_the_tests_file() {
    let table = [
        (
            "tests/test_page.py",
            raw("test_page", "test_a"),
            "tests/test_page.py::test_a",
        ),
        (
            "tests/test_page.py",
            raw("tests.test_page", "test_a"),
            "tests/test_page.py::test_a",
        ),
        (
            "tests/test_page.py",
            raw("test_page.TestNav", "test_b[chromium]"),
            "tests/test_page.py::TestNav::test_b[chromium]",
        ),
        (
            "tests/browser",
            raw("test_page", "test_a"),
            "tests/browser::test_page::test_a",
        ),
        ("tests/run.sh", raw("", "check"), "tests/run.sh::check"),
    ];
    for (file, case, want) in table {
        assert_eq!(case_name(file, &case), want);
    }
}
