//! The suite's checkpoint: which tests passed so far in this run, so that
//! `--resume` after a crash (an OOM kill, a SIGKILL of the runner, a
//! self-protection stop) runs only what had not passed.
//!
//! It is a journal (`checkpoint.jsonl`, or `checkpoint-<tier>.jsonl`): a
//! header line naming the run id, ref and tier, then one line per test that
//! passed, appended by one `write(2)` to an `O_APPEND` descriptor when the
//! test finishes, before the runner announces the pass. A `write` that has
//! returned is in the page cache, which outlives the process: a SIGKILL of
//! the runner at any moment after a pass is announced loses nothing, and
//! no coalescing window delays a line. The journal is fdatasynced at the
//! end of the tier on every path (passed, failed, stopped by a signal or
//! self-protection), so a host crash after the tier loses nothing either;
//! one during the tier can lose the lines since the start or tear the last
//! one (a write cut short), which the reader ignores with a note: a rerun,
//! never a skipped test.
//!
//! Each attempt at the suite starts its journal afresh: the header and the
//! tests the resumed journal lists, written to a temporary file that
//! replaces the old journal (`rundir::write_atomic`: fsync, rename, fsync
//! of the directory). A reader sees the old journal or the new one, and
//! new lines never land after a torn one.
//!
//! A journal belongs to one run id, ref and tier; another's is ignored with
//! the reason (a new ref means new code: nothing it passed counts).
//!
//! Earlier releases wrote `checkpoint.json` (or `checkpoint-<tier>.json`),
//! one JSON object rewritten after each pass. It is still read when no
//! journal exists, so a runner upgraded between two attempts of one build
//! resumes what the older one passed; the new journal then takes its place
//! and the old file is removed.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The journal format this release writes (the header's `journal`).
const FORMAT: u32 = 1;

/// What a checkpoint says: the run, ref and tier, and the tests that passed.
/// Also the whole of the earlier JSON checkpoint, as it was on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub tier: Option<String>,
    /// Names of the tests that passed, in the order they passed.
    pub passed: Vec<String>,
    /// When it was written (RFC 3339, UTC); a journal's start.
    #[serde(default)]
    pub updated: String,
}

/// A journal's first line.
#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    run_id: String,
    #[serde(rename = "ref")]
    git_ref: String,
    tier: Option<String>,
    started: String,
}

/// Every later line: one test that passed.
#[derive(Serialize, Deserialize)]
struct Entry {
    passed: String,
}

/// The journal of a report directory for a tier: one file per tier, so the
/// tiers of one run that share a report directory keep theirs apart.
pub fn path(report_dir: &Path, tier: Option<&str>) -> PathBuf {
    report_dir.join(format!("{}.jsonl", stem(tier)))
}

/// The JSON checkpoint earlier releases wrote in place of [`path`].
pub fn legacy_path(report_dir: &Path, tier: Option<&str>) -> PathBuf {
    report_dir.join(format!("{}.json", stem(tier)))
}

fn stem(tier: Option<&str>) -> String {
    match tier {
        Some(t) => format!("checkpoint-{t}"),
        None => "checkpoint".into(),
    }
}

/// Whether an existing checkpoint applies to this attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Same run id, ref and tier: these tests already passed.
    Use(Vec<String>),
    /// Another run's (or ref's) checkpoint: why it is ignored.
    Ignore(String),
}

/// Pure: decides whether `cp` applies to run `run_id` at `git_ref` in `tier`.
pub fn decide(cp: &Checkpoint, run_id: &str, git_ref: &str, tier: Option<&str>) -> Resume {
    if cp.run_id != run_id {
        Resume::Ignore(format!(
            "the checkpoint is of run `{}`, not `{run_id}`",
            cp.run_id
        ))
    } else if cp.git_ref != git_ref {
        Resume::Ignore(format!(
            "the checkpoint is of ref `{}`, not `{git_ref}`: nothing it passed counts for new code",
            cp.git_ref
        ))
    } else if cp.tier.as_deref() != tier {
        Resume::Ignore(format!(
            "the checkpoint is of tier `{}`, not `{}`",
            cp.tier.as_deref().unwrap_or("(all)"),
            tier.unwrap_or("(all)")
        ))
    } else {
        Resume::Use(cp.passed.clone())
    }
}

/// A journal as read: its checkpoint, and what was ignored on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub checkpoint: Checkpoint,
    /// One sentence per ignored part (a torn last line, a damaged line).
    pub notes: Vec<String>,
}

/// Pure: reads a journal's text. No header (or another format's) is an
/// error: nothing in the file can be trusted. A last line without its
/// newline is a write cut short (a host crash), and a line that is not an
/// entry is damage: each is ignored with a note, so the worst a damaged
/// journal costs is a rerun of the test it named. A test listed twice
/// counts once.
pub fn parse(text: &str) -> Result<Parsed> {
    let mut notes = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    // After the last newline: "" for a whole journal, a torn line if not.
    let tail = lines.pop().unwrap_or_default();
    if !tail.is_empty() {
        notes.push(format!(
            "its last line is torn ({} byte(s) with no newline: a write cut short), ignored",
            tail.len()
        ));
    }
    let Some(first) = lines.first() else {
        bail!("it has no header line");
    };
    let header: Header =
        serde_json::from_str(first).context("its first line is not a checkpoint journal header")?;
    if header.journal != FORMAT {
        bail!(
            "it is in journal format {}; this release reads format {FORMAT}",
            header.journal
        );
    }
    let mut passed: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, line) in lines.iter().enumerate().skip(1) {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => {
                if seen.insert(e.passed.clone()) {
                    passed.push(e.passed);
                }
            }
            Err(_) => notes.push(format!(
                "its line {} is not a journal entry ({} byte(s)), ignored",
                k + 1,
                line.len()
            )),
        }
    }
    Ok(Parsed {
        checkpoint: Checkpoint {
            run_id: header.run_id,
            git_ref: header.git_ref,
            tier: header.tier,
            passed,
            updated: header.started,
        },
        notes,
    })
}

/// A checkpoint found in a report directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub checkpoint: Checkpoint,
    /// The file it was read from (the journal, or the earlier JSON file).
    pub path: PathBuf,
    pub notes: Vec<String>,
}

/// Reads the tier's journal, or when there is none the JSON checkpoint of
/// an earlier release; neither is `None`, a damaged one an error.
pub fn load(report_dir: &Path, tier: Option<&str>) -> Result<Option<Loaded>> {
    let journal = path(report_dir, tier);
    if let Some(text) = read(&journal)? {
        let parsed = parse(&text)
            .with_context(|| format!("checkpoint {} is not valid", journal.display()))?;
        return Ok(Some(Loaded {
            checkpoint: parsed.checkpoint,
            path: journal,
            notes: parsed.notes,
        }));
    }
    let legacy = legacy_path(report_dir, tier);
    let Some(text) = read(&legacy)? else {
        return Ok(None);
    };
    let checkpoint = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint {} is not valid", legacy.display()))?;
    Ok(Some(Loaded {
        checkpoint,
        path: legacy,
        notes: vec!["it is the JSON checkpoint of an earlier release".into()],
    }))
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read checkpoint {}", path.display())),
    }
}

/// Pure: a journal's text holding `cp` (its `updated` is the header's
/// `started`).
pub fn render(cp: &Checkpoint) -> Result<Vec<u8>> {
    let header = Header {
        journal: FORMAT,
        run_id: cp.run_id.clone(),
        git_ref: cp.git_ref.clone(),
        tier: cp.tier.clone(),
        started: cp.updated.clone(),
    };
    let mut text = serde_json::to_vec(&header).context("failed to encode the journal header")?;
    text.push(b'\n');
    for name in &cp.passed {
        entry(&mut text, name)?;
    }
    Ok(text)
}

/// Appends one entry line to `buf`.
fn entry(buf: &mut Vec<u8>, name: &str) -> Result<()> {
    serde_json::to_writer(
        &mut *buf,
        &Entry {
            passed: name.to_string(),
        },
    )
    .context("failed to encode a journal entry")?;
    buf.push(b'\n');
    Ok(())
}

/// An open journal: [`Journal::passed`] appends, [`Journal::sync`] makes
/// what was appended durable.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// The line being written, kept to spare an allocation per test.
    line: Vec<u8>,
}

impl Journal {
    /// Starts the journal of this attempt in `report_dir`: the header of
    /// `cp` (run, ref, tier; `updated` is set to now) and the tests it lists
    /// as passed, replacing any earlier journal of the tier atomically and
    /// durably; then removes the tier's JSON checkpoint of an earlier
    /// release, which the journal supersedes. A failed write (a full disk)
    /// leaves the old files and no temporary file.
    pub fn create(report_dir: &Path, cp: &Checkpoint) -> Result<Journal> {
        let tier = cp.tier.as_deref();
        let path = path(report_dir, tier);
        let mut cp = cp.clone();
        cp.updated = crate::log::timestamp(SystemTime::now());
        crate::rundir::write_atomic(&path, &render(&cp)?)?;
        // O_APPEND: every write lands at the end, whatever the offset;
        // close-on-exec so no test inherits the descriptor.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        let legacy = legacy_path(report_dir, tier);
        match std::fs::remove_file(&legacy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                crate::say!(
                    "could not remove the earlier checkpoint {}: {e}",
                    legacy.display()
                );
            }
            _ => {}
        }
        Ok(Journal {
            file,
            path,
            line: Vec::with_capacity(128),
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends that test `name` passed: one `write(2)` of the whole line,
    /// so the line is whole in the file once it returns (a SIGKILL cannot
    /// cut a write to a regular file short; only a host crash can).
    pub fn passed(&mut self, name: &str) -> Result<()> {
        self.line.clear();
        entry(&mut self.line, name)?;
        self.file
            .write_all(&self.line)
            .with_context(|| format!("failed to append to {}", self.path.display()))
    }

    /// `fdatasync`: every line appended so far survives a host crash.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("failed to sync {}", self.path.display()))
    }
}
