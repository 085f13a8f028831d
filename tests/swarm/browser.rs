//! The example recipe's browser test (`tests/40-page.sh`: pytest with
//! Playwright driving Debian's Chromium, `page_test.py`) on the real swarm,
//! through whole runs: green after install, upgrade and restore with each
//! page case a testcase of its own in the merged JUnit; and a pull request
//! whose page changed (its compose sets the app's PAGE_TITLE): red, the
//! failing case named in the summary and in the JUnit with its screenshot
//! kept in the report directory, attached, and linked from the timeline.
//! Each run prints what the browser test cost per tier (`--no-capture`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::converge::{push_pr, with_env};
use crate::engine::*;
use crate::junit;
use crate::support::*;

/// The python with playwright and pytest-playwright (`.ci/run`'s venv
/// through `CCCI_DEV_PLAYWRIGHT_PYTHON`) when it and Debian's Chromium are
/// here; otherwise a line saying what is missing, and a failure where
/// `CCCI_DEV_REQUIRE_PLAYWRIGHT` says they must be there (`.ci/run`).
fn playwright() -> Option<String> {
    let python = std::env::var("CCCI_DEV_PLAYWRIGHT_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let missing = match &python {
        None => Some("CCCI_DEV_PLAYWRIGHT_PYTHON is not set".to_string()),
        Some(p) if !Path::new("/usr/bin/chromium").exists() => {
            Some(format!("/usr/bin/chromium is not installed (python {p})"))
        }
        Some(p) => {
            let ok = Command::new(p)
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

/// `run --recipe example --pr N --domain D`, the browser test required.
fn run(host: &SwarmHost, domain: &str, pr: u32, run_id: &str, python: &str) -> (i32, String) {
    let out = host
        .cmd()
        .args(["run", "--recipe", "example", "--pr", &pr.to_string()])
        .args(["--domain", domain])
        .env("CCCI_RUN_ID", run_id)
        .env("CCCI_EXAMPLE_PLAYWRIGHT_PYTHON", python)
        .env("CCCI_EXAMPLE_REQUIRE_PLAYWRIGHT", "1")
        .output()
        .unwrap();
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PAGE: &str = "tests/40-page.sh";

/// The testcase name of one of page_test.py's cases.
fn case(name: &str) -> String {
    format!("{PAGE}::page_test::{name}[chromium]")
}

const CASES: [&str; 3] = ["test_title", "test_version", "test_data_written_at_install"];

fn report(host: &SwarmHost, run_id: &str) -> PathBuf {
    host.state.join("runs").join(run_id).join("report")
}

/// The run's merged junit.xml as quick-xml and junitparser read it (both
/// must agree, `junit::check`); junitparser is required where the browser
/// test is (`.ci/run` names its python in `CCCI_DEV_JUNIT_PYTHON`).
fn merged(path: &Path) -> junit::Doc {
    assert!(
        std::env::var_os("CCCI_DEV_REQUIRE_PLAYWRIGHT").is_none()
            || std::env::var_os("CCCI_DEV_JUNIT_PYTHON").is_some_and(|p| !p.is_empty()),
        "the browser test is required (CCCI_DEV_REQUIRE_PLAYWRIGHT): so is junitparser \
         (CCCI_DEV_JUNIT_PYTHON) to read its merged JUnit"
    );
    junit::check(path)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Prints, per tier, the browser test's time against the tier's tests
/// and against the whole tier (from the tier's report.json and the run's
/// record); returns (tier, page ms, tests ms).
fn overhead(host: &SwarmHost, run_id: &str) -> Vec<(String, u64, u64)> {
    let rec = host.record(run_id);
    let mut rows = Vec::new();
    for tier in ["install", "upgrade", "restore"] {
        let path = report(host, run_id).join(tier).join("report.json");
        if !path.exists() {
            continue;
        }
        let r = json(&path);
        let tests = r["tests"].as_array().unwrap();
        let ms = |t: &serde_json::Value| t["duration_ms"].as_u64().unwrap_or(0);
        let page = tests
            .iter()
            .find(|t| t["file"].as_str().unwrap_or("").ends_with("40-page.sh"))
            .map_or(0, ms);
        let all: u64 = tests.iter().map(ms).sum();
        // The tier: its deploy, its convergence and its tests.
        let phase = |name: String| {
            rec["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["duration_ms"].as_u64())
        };
        let test_phase = phase(format!("test-{tier}")).unwrap_or(0);
        let whole = test_phase
            + phase(tier.to_string()).unwrap_or(0)
            + phase(format!("{tier}-converge")).unwrap_or(0);
        let pct = |part: u64, of: u64| (part * 100).checked_div(of).unwrap_or(0);
        eprintln!(
            "browser overhead {run_id} {tier}: 40-page.sh {page} ms; the tier's tests {all} ms \
             ({}%); phase test-{tier} {test_phase} ms ({}%); the tier with deploy and \
             convergence {whole} ms ({}%)",
            pct(page, all),
            pct(page, test_phase),
            pct(page, whole)
        );
        rows.push((tier.to_string(), page, all));
    }
    rows
}

#[test]
fn the_example_recipes_browser_test_is_green_after_install_upgrade_and_restore_each_case_its_own_testcase(
) {
    let Some(python) = playwright() else { return };
    let d = domain_for("pw-green", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    let (exit, log) = run(&host, &d, 1, "pwgreen", &python);
    assert_eq!(exit, 0, "{log}");
    let doc = merged(&report(&host, "pwgreen").join("junit.xml"));
    for tier in ["install", "upgrade", "restore"] {
        for c in CASES {
            let got = doc
                .cases
                .iter()
                .find(|k| k.name == case(c) && k.suite == tier)
                .unwrap_or_else(|| panic!("no {c} in tier {tier}: {:?}", doc.kinds()));
            assert_eq!(got.kind, "passed", "{got:?}");
            assert_eq!(got.classname, format!("example.{tier}"), "{got:?}");
        }
    }
    // Each tier's line of the summary counts its cases beside its tests.
    let summary = log.rsplit("phase: finished").next().unwrap_or("");
    for tier in ["install", "upgrade", "restore"] {
        let line = summary
            .lines()
            .find(|l| l.contains(&format!("] tests {tier}: ")))
            .unwrap_or_else(|| panic!("no summary line for {tier}: {summary}"));
        assert!(
            line.contains("; cases: 3 passed, 0 failed, 0 skipped ("),
            "{line}"
        );
    }
    let shots = walk(&report(&host, "pwgreen").join("artifacts"));
    assert!(shots.is_empty(), "no screenshot when green: {shots:?}");
    let rows = overhead(&host, "pwgreen");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    assert!(host.tree_gone("pwgreen"), "run tree left");
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

/// A relative link as a browser resolves it against the page's directory.
fn resolve(page_dir: &Path, href: &str) -> PathBuf {
    assert!(!href.starts_with('/'), "a relative link: {href}");
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
    page_dir.join(String::from_utf8(out).unwrap())
}

#[test]
fn a_pull_request_that_changes_the_page_fails_its_case_with_the_screenshot_kept_attached_and_linked(
) {
    let Some(python) = playwright() else { return };
    let d = domain_for("pw-red", 0);
    let host = SwarmHost::new(vec![d.clone()]);
    // Pull request 2: pull request 1 with the page's title changed.
    push_pr(
        &host,
        2,
        |c| with_env(c, "PAGE_TITLE=ccci-example renamed by pull request 2"),
        &[],
    );
    let (exit, log) = run(&host, &d, 2, "pwred", &python);
    assert_eq!(exit, 1, "{log}");
    let rep = report(&host, "pwred");

    // The failing case named in the upgrade tier's summary, on stderr and
    // in the run's log, with its assertion.
    let run_log = std::fs::read_to_string(host.state.join("runs/pwred/run.log")).unwrap();
    for text in [&log, &run_log] {
        let table = text
            .split("summary of run pwred (tier upgrade):")
            .nth(1)
            .unwrap_or_else(|| panic!("no summary of the upgrade tier: {text}"));
        let row = table
            .lines()
            .find(|l| l.contains(&format!("  {}", case("test_title"))))
            .unwrap_or_else(|| panic!("no summary row for the failed case: {table}"));
        assert!(
            row.contains(" failed ") && row.contains("Page title expected to be 'ccci-example'"),
            "{row}"
        );
        assert!(
            table.contains("3 passed, 1 failed, 0 skipped; cases: 2 passed, 1 failed, 0 skipped"),
            "{table}"
        );
    }
    // Its own testcase with <failure>, the other cases passed; install
    // (release 1.1.0, the old title) stays green.
    let doc = merged(&rep.join("junit.xml"));
    let of = |tier: &str, c: &str| {
        doc.cases
            .iter()
            .find(|k| k.name == case(c) && k.suite == tier)
            .unwrap_or_else(|| panic!("no {c} in tier {tier}: {:?}", doc.kinds()))
            .clone()
    };
    for c in CASES {
        assert_eq!(of("install", c).kind, "passed");
    }
    let failed = of("upgrade", "test_title");
    assert_eq!(failed.kind, "failure", "{failed:?}");
    assert_eq!(failed.classname, "example.upgrade");
    assert!(
        failed.text.contains("renamed by pull request 2"),
        "{failed:?}"
    );
    assert_eq!(of("upgrade", "test_version").kind, "passed");
    assert_eq!(of("upgrade", "test_data_written_at_install").kind, "passed");

    // The screenshot in the report directory, a PNG.
    // pytest-playwright names the folder after the test's node id (the
    // test file's path relative to pytest's rootdir): only its end is fixed.
    let shot = walkdir::WalkDir::new(rep.join("artifacts/upgrade/page-upgrade"))
        .into_iter()
        .flatten()
        .find(|e| {
            e.file_name() == "test-failed-1.png"
                && e.path()
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| {
                        n.to_string_lossy()
                            .ends_with("page-test-py-test-title-chromium")
                    })
        })
        .map_or_else(
            || rep.join("artifacts/upgrade/page-upgrade/(no test_title screenshot)"),
            |e| e.into_path(),
        );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; artifacts: {:?}",
            shot.display(),
            walk(&rep.join("artifacts"))
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    // Attached in the JUnit, to the failed case's testcase.
    let xml = std::fs::read_to_string(rep.join("junit.xml")).unwrap();
    let attachment = format!("[[ATTACHMENT|{}]]", shot.display());
    let open = format!("<testcase name=\"{}\"", case("test_title"));
    let at = xml
        .match_indices(&open)
        .map(|(i, _)| i)
        .find(|i| xml[*i..].contains("example.upgrade"))
        .unwrap_or_else(|| panic!("no {open} in {xml}"));
    let testcase = &xml[at..at + xml[at..].find("</testcase>").unwrap()];
    assert!(testcase.contains("example.upgrade"), "{testcase}");
    assert!(testcase.contains(&attachment), "{testcase}");

    // Linked from the timeline page: the link resolves to the file.
    let page = host.state.join("timeline.html");
    let t = host
        .cmd()
        .args(["timeline", "--since", "1h", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(code(t.status), 0, "{}", String::from_utf8_lossy(&t.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let links = artifact_links(&html);
    let (_, href) = links
        .iter()
        .find(|(shown, _)| shown.ends_with("test-title-chromium/test-failed-1.png"))
        .unwrap_or_else(|| panic!("no link to the screenshot: {links:?}"));
    assert_eq!(
        std::fs::read(resolve(&host.state, href)).unwrap(),
        png,
        "{href}"
    );

    overhead(&host, "pwred");
    let left = leftovers(&host, &d);
    assert!(left.is_empty(), "left on the swarm: {left:?}");
    assert!(host.tree_gone("pwred"), "run tree left");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
