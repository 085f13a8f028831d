//! `cc-ci-run summary RUN`: a finished run told from what outlives it, its
//! record (`runs/RUN/run.json`) and its reports (`report/<tier>/`), so it
//! works the morning after, when Drone has deleted the workspace and the
//! run tree is gone. Two renderings:
//!
//! - `text`: the summary block the run printed last (`rundir::summary_lines`);
//! - `markdown`: what `cc-ci-run comment` posts to the pull request:
//!   verdict and reason, tiers with their counts and restarts, tiers not
//!   run, failing tests with the last lines of their output, warnings,
//!   per-phase timings and artifacts.
//!
//! What a test printed (or a recipe's file named) is not ours: it may hold
//! `|`, backticks, HTML, `@mentions`, `#123` references. In the markdown it
//! only ever appears inside a code span or a fenced code block whose fence
//! is longer than any run of backticks in it, where Markdown interprets
//! nothing and the forge neither mentions nor cross-references; control
//! characters (ANSI colour) are dropped. The whole comment stays within
//! [`MARKDOWN_LIMIT`]: past it, tests' output lines are cut first.
//!
//! Every string of the record or the reports goes through [`shown`] before
//! it is printed: the one place a redaction of secrets applies.
//!
//! Rendering is pure ([`markdown`], over [`Summary`]); [`load`] reads the
//! files.

use std::fmt::Write as _;
use std::path::{Component, Path};

use anyhow::Result;

use crate::exit::Failure;
use crate::outcome::Outcome;
use crate::phase::Phase;
use crate::rundir::{RunRecord, TierTests};
use crate::verdict::Verdict;

/// The most bytes the markdown may have: below GitHub's 65,536 characters
/// and a MySQL `TEXT` column's 64 KiB, so the comment fits whatever stores
/// it (Gitea itself keeps comments in a `LONGTEXT`), and still reads as a
/// summary rather than a log.
pub const MARKDOWN_LIMIT: usize = 60_000;

/// How many failing tests the markdown lists (the rest are counted).
pub const MAX_FAILING: usize = 10;

/// How many last lines of a failing test's output the markdown quotes at
/// most, and how long each may be.
pub const TAIL_LINES: usize = 20;
pub const LINE_CHARS: usize = 240;

/// How much of a captured stream is read to find its last lines.
const TAIL_READ: u64 = 64 * 1024;

/// A failing test, from its tier's `report.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failing {
    pub tier: String,
    /// Its name (the file name).
    pub name: String,
    /// Its path as the recipe names it (`tests/00-deployed.sh`).
    pub file: String,
    /// `failed`, `timed-out`.
    pub result: String,
    /// What failed (`exit 1`, the timeout).
    pub reason: String,
    /// The last lines of its stderr (its stdout when stderr is empty).
    pub tail: Vec<String>,
}

/// What the markdown is made of: the record, and what its reports add.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub record: RunRecord,
    pub failing: Vec<Failing>,
    /// Reports that could not be read, one line each (said, never fatal).
    pub unreadable: Vec<String>,
}

/// The one function every string of the record and the reports passes
/// through before it is printed (text, markdown, the comment). The record
/// and the reports were written redacted; this hides, once more, what the
/// process's own set holds (`CCCI_REDACT` of the `summary` or `comment`
/// step), for records an earlier release wrote.
pub fn shown(text: &str) -> String {
    crate::redact::text(text).into_owned()
}

/// Reads run `id`'s record and its tiers' reports from the state
/// directory. An unknown run is exit 2; a record that does not parse is
/// exit 3; a report that cannot be read is noted in the summary.
pub fn load(state_dir: &Path, id: &str) -> Result<Summary> {
    let dir = crate::rundir::find_run(state_dir, id, "run.json", "record")?;
    let record =
        RunRecord::load(&dir.join("run.json")).map_err(|e| Failure::infra(format!("{e:#}")))?;
    let mut failing = Vec::new();
    let mut unreadable = Vec::new();
    for t in &record.tests {
        match tier_failing(t) {
            Ok(f) => failing.extend(f),
            Err(e) => unreadable.push(format!("{}: {e}", t.tier)),
        }
    }
    Ok(Summary {
        record,
        failing,
        unreadable,
    })
}

/// The failing tests of one tier, from its `report.json`.
fn tier_failing(t: &TierTests) -> std::result::Result<Vec<Failing>, String> {
    let dir = Path::new(&t.report_dir);
    let path = dir.join("report.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} does not parse: {e}", path.display()))?;
    let tests = report["tests"].as_array().cloned().unwrap_or_default();
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    Ok(tests
        .iter()
        .filter(|v| {
            v["result"]
                .as_str()
                .and_then(Outcome::parse)
                .is_some_and(Outcome::is_failure)
        })
        .map(|v| {
            let stderr = output_tail(dir, v["stderr"].as_str());
            let tail = if stderr.is_empty() {
                output_tail(dir, v["stdout"].as_str())
            } else {
                stderr
            };
            Failing {
                tier: t.tier.clone(),
                name: field(v, "name"),
                file: field(v, "file"),
                result: field(v, "result"),
                reason: field(v, "reason"),
                tail,
            }
        })
        .collect())
}

/// The last [`TAIL_LINES`] non-empty lines of a captured stream named
/// relative to the report directory (`output/NAME.stderr`); nothing for a
/// name that would leave it or a file that cannot be read.
fn output_tail(dir: &Path, rel: Option<&str>) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(rel) = rel.map(Path::new) else {
        return Vec::new();
    };
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Vec::new();
    }
    let Ok(mut f) = std::fs::File::open(dir.join(rel)) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL_READ);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    // A read that started mid-file starts mid-line: that line is dropped.
    if from > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let lines: Vec<String> = lines
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
}

/// `text` as one line of printable characters: control characters (ANSI
/// colour, carriage returns, NUL) dropped, newlines and tabs made spaces,
/// cut at `max` characters with `…`.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The longest run of backticks in `text`.
fn longest_backticks(text: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// `text` (one line) as a Markdown code span: nothing inside is markup.
/// The delimiter is one backtick longer than any run inside; a space pads
/// content that starts or ends with a backtick (CommonMark strips one).
pub fn code(text: &str) -> String {
    let text = one_line(&shown(text), LINE_CHARS);
    if text.is_empty() {
        return "` `".to_string();
    }
    let fence = "`".repeat(longest_backticks(&text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// `lines` as a fenced code block whose fence no line can close.
pub fn code_block(lines: &[String]) -> String {
    let lines: Vec<String> = lines
        .iter()
        .map(|l| one_line(&shown(l), LINE_CHARS))
        .collect();
    let longest = lines
        .iter()
        .map(|l| longest_backticks(l))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let mut out = format!("{fence}text\n");
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// An artifact's name as the comment shows it: its path from the report
/// directory's `artifacts/` on (`artifacts/install/shot.png`).
fn artifact_name(path: &str) -> String {
    match path.rfind("/artifacts/") {
        Some(at) => path[at + 1..].to_string(),
        None => Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string()),
    }
}

/// The first 12 characters of the tested commit, as the heading shows it.
fn short_sha(sha: Option<&str>) -> String {
    sha.map(|s| s.chars().take(12).collect())
        .unwrap_or_else(|| "unresolved".into())
}

/// The verdict's mark and word for the heading.
fn verdict_mark(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Passed) => "✅",
        Some(Verdict::Cancelled | Verdict::Duplicate) => "⚪",
        _ => "❌",
    }
}

/// The markdown of a run, within [`MARKDOWN_LIMIT`]: with every output
/// line first, then fewer lines per failing test, then none.
pub fn markdown(s: &Summary) -> String {
    for lines in [TAIL_LINES, 5, 0] {
        let text = render(s, lines);
        if text.len() <= MARKDOWN_LIMIT {
            return text;
        }
    }
    // Still too long (thousands of warnings or artifacts): cut at a line,
    // outside any code block (only the tails, now gone, had blocks).
    let text = render(s, 0);
    let mut cut = MARKDOWN_LIMIT - 200;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').unwrap_or(0);
    format!(
        "{}\n\n_… cut at {} bytes: `cc-ci-run summary` on the CI host has the rest._\n",
        &text[..cut],
        MARKDOWN_LIMIT
    )
}

/// The markdown with at most `tail_lines` lines of each failing test.
fn render(s: &Summary, tail_lines: usize) -> String {
    let r = &s.record;
    let verdict = r.verdict.map_or("unknown", Verdict::as_str);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### {} cc-ci-run: {} {} at {}",
        verdict_mark(r.verdict),
        code(&r.recipe),
        code(verdict),
        code(&short_sha(r.sha.as_deref()))
    );
    md.push('\n');
    let exit = r
        .exit_code
        .map(|c| format!("exit {c}"))
        .unwrap_or_else(|| "no exit code".into());
    let _ = write!(md, "**Verdict:** {} ({exit})", code(verdict));
    if let Some(p) = r.failed_phase {
        let _ = write!(md, ", decided in phase {}", code(&p.to_string()));
    }
    md.push_str("  \n");
    if let Some(why) = &r.reason {
        let _ = writeln!(md, "**Reason:** {}  ", code(why));
    } else if r.verdict == Some(Verdict::Failed) {
        let n: usize = r.tests.iter().map(|t| t.failed).sum();
        let _ = writeln!(md, "**Reason:** {n} test(s) failed  ");
    }
    if r.tests.is_empty() {
        md.push_str("**Tests:** none ran  \n");
    }
    let _ = writeln!(
        md,
        "Run {} · recipe {} · ref {} · tested {} · app {}{}",
        code(&r.run_id),
        code(&r.recipe),
        code(&r.git_ref),
        code(r.sha.as_deref().unwrap_or("unresolved")),
        code(&r.domain),
        match &r.base_version {
            Some(b) => format!(" · base {}", code(b)),
            None => String::new(),
        }
    );

    if !r.tests.is_empty() {
        md.push_str("\n| tier | passed | failed | skipped | flaky | restarts while watched |\n");
        md.push_str("|---|---:|---:|---:|---:|---|\n");
        for t in &r.tests {
            let restarts: Vec<String> = t
                .watch
                .iter()
                .filter(|w| w.restarts > 0)
                .map(|w| format!("{} {}", code(&w.service), w.restarts))
                .collect();
            let restarts = if t.watch.is_empty() {
                "-".to_string()
            } else if restarts.is_empty() {
                "none".to_string()
            } else {
                restarts.join(", ")
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                code(&t.tier).replace('|', "\\|"),
                t.passed,
                t.failed,
                t.skipped,
                t.flaky,
                restarts.replace('|', "\\|")
            );
        }
    }
    if !r.tiers_skipped.is_empty() {
        md.push_str("\n**Tiers not run:**\n\n");
        for t in &r.tiers_skipped {
            let _ = writeln!(md, "- {}: {}", code(&t.tier), code(&t.reason));
        }
    }

    if !s.failing.is_empty() {
        md.push_str("\n#### Failing tests\n\n");
        for f in s.failing.iter().take(MAX_FAILING) {
            let _ = writeln!(
                md,
                "- {} {} ({}): {} {}",
                code(&f.tier),
                code(&f.name),
                code(&f.file),
                code(&f.result),
                code(&f.reason)
            );
            let tail = &f.tail[f.tail.len().saturating_sub(tail_lines)..];
            if !tail.is_empty() {
                md.push('\n');
                for line in code_block(tail).lines() {
                    let _ = writeln!(md, "  {line}");
                }
                md.push('\n');
            }
        }
        if s.failing.len() > MAX_FAILING {
            let _ = writeln!(
                md,
                "- … and {} more (the reports on the CI host list them)",
                s.failing.len() - MAX_FAILING
            );
        }
    }
    if !r.warnings.is_empty() || !s.unreadable.is_empty() {
        md.push_str("\n#### Warnings\n\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {}", code(w));
        }
        for u in &s.unreadable {
            let _ = writeln!(md, "- report not readable: {}", code(u));
        }
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .filter(|p| p.name != Phase::Started)
        .map(|p| match p.duration_ms {
            Some(d) => format!(
                "{} {}",
                code(&p.name.to_string()),
                crate::units::human(std::time::Duration::from_millis(d))
            ),
            None => code(&p.name.to_string()),
        })
        .collect();
    if !phases.is_empty() {
        let _ = writeln!(md, "\n**Timings:** {}", phases.join(" · "));
    }
    if let Some(w) = r.lock.as_ref().and_then(|l| l.wait_ms) {
        let _ = writeln!(
            md,
            "\n**App lock wait:** {}",
            crate::units::human(std::time::Duration::from_millis(w))
        );
    }
    if !r.artifacts.is_empty() {
        md.push_str("\n**Artifacts** (kept with the reports on the CI host):\n\n");
        for a in &r.artifacts {
            let _ = writeln!(md, "- {}", code(&artifact_name(a)));
        }
    }
    let _ = writeln!(
        md,
        "\n_cc-ci-run {} on {} · the log: {} on the CI host_",
        env!("CARGO_PKG_VERSION"),
        code(&r.host),
        code(&format!("cc-ci-run logs {}", r.run_id))
    );
    md
}

/// The text rendering: the summary block the run printed last.
pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    for line in crate::rundir::summary_lines(&s.record) {
        out.push_str(&shown(&line));
        out.push('\n');
    }
    for f in &s.failing {
        out.push_str(&shown(&format!(
            "failed in {}: {} ({}) {}\n",
            f.tier, f.name, f.result, f.reason
        )));
    }
    for u in &s.unreadable {
        out.push_str(&shown(&format!("report not readable: {u}\n")));
    }
    out
}
