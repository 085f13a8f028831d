//! The markdown summary (`views::summary`) read back by a CommonMark parser
//! with GFM tables, as the forge renders it: what a test printed stays in
//! code, the table keeps its columns, the size stays bounded. And the pure
//! parts of `comment`: the forge from Drone's link, the checks, the run id.

use std::collections::HashMap;

use cc_ci_run::cmd::comment::{
    check_forge, check_repo, curl_config, forge_from_link, run_id, split_answer,
};
use cc_ci_run::phase::Phase;
use cc_ci_run::rundir::{PhaseSpan, RunRecord, SkippedTier, TierTests, Watched};
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::verdict::Verdict;
use cc_ci_run::views::summary::{self, Failing, Summary, MARKDOWN_LIMIT};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// What a hostile or careless test prints.
const HOSTILE: [&str; 8] = [
    "| a | b | c |",
    "```",
    "</code></pre><script>alert(1)</script>",
    "@admin please look #12 and coop-cloud/other#3",
    "**not bold** _not em_ [link](https://evil.example/)",
    "\u{1b}[31mred\u{1b}[0m and a tab\there",
    "````` five backticks",
    "<img src=x onerror=alert(2)>",
];

fn record(verdict: &str) -> RunRecord {
    RunRecord {
        run_id: "drone-coop-cloud-example-7".into(),
        recipe: "example".into(),
        git_ref: "refs/pull/1/head".into(),
        sha: Some("eeaf2d2bbc0bb865460275ba16faf016e2569b3e".into()),
        pr: Some(1),
        domain: "example-pr1.ci.localhost".into(),
        host: "ci".into(),
        exit_code: Some(if verdict == "passed" { 0 } else { 1 }),
        verdict: Some(Verdict::parse(verdict).unwrap()),
        failed_phase: (verdict != "passed").then_some(Phase::Test(Tier::Upgrade)),
        base_version: Some("1.1.0+1.0".into()),
        phases: vec![
            PhaseSpan {
                name: Phase::Install,
                duration_ms: Some(1400),
                ..PhaseSpan::default()
            },
            PhaseSpan {
                name: Phase::Test(Tier::Upgrade),
                duration_ms: Some(3900),
                ..PhaseSpan::default()
            },
        ],
        tests: vec![
            TierTests {
                tier: "install".into(),
                passed: 2,
                report_dir: "/state/runs/x/report/install".into(),
                watch: vec![Watched {
                    service: "example_app".into(),
                    restarts: 0,
                    exits: vec![],
                }],
                ..TierTests::default()
            },
            TierTests {
                tier: "upgrade".into(),
                passed: 1,
                failed: if verdict == "passed" { 0 } else { 2 },
                skipped: 1,
                flaky: 1,
                report_dir: "/state/runs/x/report/upgrade".into(),
                watch: vec![Watched {
                    service: "example_app".into(),
                    restarts: 2,
                    exits: vec![],
                }],
                ..TierTests::default()
            },
        ],
        tiers_skipped: vec![SkippedTier {
            tier: "backup".into(),
            reason: "no deployed service carries an enabled backupbot.backup label".into(),
        }],
        warnings: vec!["app: paused update | settled after 10s".into()],
        artifacts: vec!["/state/runs/x/report/artifacts/upgrade/shot `1`.png".into()],
        ..RunRecord::default()
    }
}

fn hostile_failing(n: usize, lines: usize) -> Vec<Failing> {
    (0..n)
        .map(|i| Failing {
            tier: "upgrade".into(),
            name: format!("1{i}-`odd`|name.sh"),
            file: format!("tests/1{i}-`odd`|name.sh"),
            result: "failed".into(),
            reason: "exit 1 | <b>x</b>".into(),
            tail: HOSTILE
                .iter()
                .cycle()
                .take(lines)
                .map(|s| s.repeat(1 + i % 3))
                .collect(),
        })
        .collect()
}

/// Everything the parser saw, by kind.
#[derive(Default, Debug)]
struct Seen {
    html: Vec<String>,
    /// Text outside code, with the markup it sits in.
    text: Vec<(String, Vec<String>)>,
    code_spans: Vec<String>,
    code_blocks: Vec<String>,
    links: usize,
    table_rows: Vec<usize>,
}

fn parse(md: &str) -> Seen {
    let mut seen = Seen::default();
    let mut stack: Vec<String> = Vec::new();
    let mut in_block: Option<String> = None;
    let mut cells = 0;
    for ev in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match ev {
            Event::Html(h) | Event::InlineHtml(h) => seen.html.push(h.to_string()),
            Event::Start(Tag::CodeBlock(kind)) => {
                assert!(
                    matches!(kind, CodeBlockKind::Fenced(_)),
                    "only fenced blocks: {kind:?}"
                );
                in_block = Some(String::new());
            }
            Event::End(TagEnd::CodeBlock) => {
                seen.code_blocks.push(in_block.take().unwrap());
            }
            Event::Text(t) => match in_block.as_mut() {
                Some(b) => b.push_str(&t),
                None => seen.text.push((t.to_string(), stack.clone())),
            },
            Event::Code(c) => seen.code_spans.push(c.to_string()),
            Event::Start(Tag::Link { .. }) => seen.links += 1,
            Event::Start(Tag::TableRow) | Event::Start(Tag::TableHead) => cells = 0,
            Event::Start(Tag::TableCell) => cells += 1,
            Event::End(TagEnd::TableRow) | Event::End(TagEnd::TableHead) => {
                seen.table_rows.push(cells)
            }
            Event::Start(tag) => stack.push(format!("{tag:?}")),
            Event::End(_) => {
                stack.pop();
            }
            _ => {}
        }
    }
    seen
}

fn red_summary(n: usize, lines: usize) -> Summary {
    let mut record = record("failed");
    record.reason = Some("abra app deploy failed: `x` | <i>y</i> @someone".into());
    Summary {
        record,
        failing: hostile_failing(n, lines),
        unreadable: vec![],
    }
}

#[test]
fn what_tests_print_stays_in_code_spans_and_blocks() {
    let md = summary::markdown(&red_summary(2, HOSTILE.len()));
    let seen = parse(&md);
    assert!(
        seen.html.is_empty(),
        "HTML got through: {:?}\n{md}",
        seen.html
    );
    assert_eq!(seen.links, 0, "a link got through\n{md}");
    // Every hostile line is in a code block, whole (ANSI and tabs made plain).
    let blocks = seen.code_blocks.join("");
    for line in HOSTILE {
        let plain = line.replace("\u{1b}", "").replace('\t', " ");
        assert!(
            blocks.contains(&plain),
            "{plain:?} is not in a code block\n{md}"
        );
    }
    assert!(!blocks.contains('\u{1b}'), "control characters are dropped");
    // Nothing of them is text outside code: no mention, no reference, no emphasis.
    for (t, _) in &seen.text {
        for needle in [
            "@admin", "#12", "script", "not bold", "@someone", "<b>", "odd",
        ] {
            assert!(
                !t.contains(needle),
                "{needle:?} outside code in {t:?}\n{md}"
            );
        }
    }
    // The names and reasons with backticks and pipes are whole code spans.
    assert!(
        seen.code_spans.iter().any(|c| c == "10-`odd`|name.sh"),
        "{:?}",
        seen.code_spans
    );
    assert!(seen
        .code_spans
        .iter()
        .any(|c| c == "abra app deploy failed: `x` | <i>y</i> @someone"));
    // The table keeps its six columns in every row.
    assert_eq!(seen.table_rows, vec![6, 6, 6], "{md}");
}

#[test]
fn the_table_counts_tiers_and_restarts() {
    let md = summary::markdown(&red_summary(1, 1));
    assert!(md.contains("| `install` | 2 | 0 | 0 | 0 | none |"), "{md}");
    assert!(
        md.contains("| `upgrade` | 1 | 2 | 1 | 1 | `example_app` 2 |"),
        "{md}"
    );
    assert!(
        md.contains("`backup`: `no deployed service carries"),
        "{md}"
    );
    assert!(
        md.contains("`artifacts/upgrade/shot `1`.png`")
            || md.contains("``artifacts/upgrade/shot `1`.png``"),
        "{md}"
    );
    assert!(md.contains("decided in phase `test-upgrade`"), "{md}");
    assert!(
        md.contains("`eeaf2d2bbc0bb865460275ba16faf016e2569b3e`"),
        "{md}"
    );
    let green = summary::markdown(&Summary {
        record: record("passed"),
        ..Summary::default()
    });
    assert!(green.starts_with("### ✅"), "{green}");
    assert!(
        !green.contains("Failing tests") && !green.contains("Reason"),
        "{green}"
    );
}

#[test]
fn the_markdown_stays_within_its_limit_and_keeps_its_blocks_closed() {
    // 40 failing tests of 20 lines each: ~200 KB of output lines.
    let s = red_summary(40, 20);
    let md = summary::markdown(&s);
    assert!(md.len() <= MARKDOWN_LIMIT, "{} bytes", md.len());
    let seen = parse(&md);
    assert!(seen.html.is_empty());
    assert!(md.contains("and 30 more"), "only the first ten are listed");
    // Whatever was cut, the verdict and the table are still there.
    assert!(md.contains("**Verdict:**") && md.contains("| tier |"));
    assert_eq!(seen.table_rows, vec![6, 6, 6]);
    // Thousands of warnings: cut at a line, said.
    let mut many = red_summary(1, 1);
    many.record.warnings = (0..5000)
        .map(|i| format!("warning {i} {}", "x".repeat(40)))
        .collect();
    let md = summary::markdown(&many);
    assert!(md.len() <= MARKDOWN_LIMIT, "{} bytes", md.len());
    assert!(
        md.contains("cut at 60000 bytes"),
        "{}",
        &md[md.len() - 300..]
    );
}

#[test]
fn the_forge_is_drones_repo_link_without_the_repository() {
    assert_eq!(
        forge_from_link(
            "https://git.coopcloud.tech/coop-cloud/example",
            "coop-cloud/example"
        )
        .as_deref(),
        Some("https://git.coopcloud.tech")
    );
    assert_eq!(
        forge_from_link("https://example.org/git/o/r/", "o/r").as_deref(),
        Some("https://example.org/git")
    );
    assert_eq!(forge_from_link("https://example.org/o/other", "o/r"), None);
    assert_eq!(forge_from_link("o/r", "o/r"), None);
    assert_eq!(
        check_forge("forge", "https://git.example.org/").unwrap(),
        "https://git.example.org"
    );
    for bad in [
        "ftp://x",
        "https://",
        "https://a b",
        "https://x/\"",
        "https://u:p@x",
        "http://x/?q",
        "git.example.org",
    ] {
        let e = check_forge("forge", bad).unwrap_err().to_string();
        assert!(
            e.contains("invalid forge") && e.contains("base URL"),
            "{bad}: {e}"
        );
    }
    check_repo("repo", "coop-cloud/example.rs_x-1").unwrap();
    for bad in ["coop-cloud", "a/b/c", "../x", "a/..", "a /b", "a/b;c", "/b"] {
        let e = check_repo("repo", bad).unwrap_err().to_string();
        assert!(e.contains("OWNER/NAME"), "{bad}: {e}");
    }
}

#[test]
fn the_run_is_this_builds_unless_named() {
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        run_id(
            None,
            &env(&[
                ("DRONE_REPO", "Coop-Cloud/example"),
                ("DRONE_BUILD_NUMBER", "42")
            ])
        )
        .unwrap(),
        "drone-coop-cloud-example-42"
    );
    assert_eq!(
        run_id(Some("manual-1"), &env(&[("CCCI_RUN_ID", "x")])).unwrap(),
        "manual-1"
    );
    let e = run_id(None, &env(&[])).unwrap_err().to_string();
    assert!(e.contains("give RUN"), "{e}");
    let e = run_id(Some("../etc"), &env(&[])).unwrap_err().to_string();
    assert!(e.contains("run id"), "{e}");
}

#[test]
fn curl_reads_the_answer_and_its_status() {
    assert_eq!(split_answer("{\"id\":1}\n201"), (Some(201), "{\"id\":1}"));
    assert_eq!(split_answer("\n500"), (Some(500), ""));
    assert_eq!(split_answer("000"), (Some(0), ""));
    // The configuration quotes what it carries: one line per option.
    let c = curl_config(
        "http://127.0.0.1:1/api/v1/repos/o/r/issues/1/comments",
        "t0k\"en",
        "a \"quote\" and a \\ backslash\nand a newline",
        std::time::Duration::from_secs(5),
    );
    assert!(
        c.contains("header = \"Authorization: token t0k\\\"en\""),
        "{c}"
    );
    assert!(c.lines().all(|l| !l.is_empty()), "{c}");
    assert!(c.contains("max-time = 5"), "{c}");
}
