//! The suite's checkpoint: which tests passed so far in this run, written
//! after every test so that `--resume` after a crash (an OOM kill, a SIGKILL
//! of the runner, a self-protection stop) runs only what had not passed.
//!
//! The file is replaced atomically: one `write` of a temporary file in the
//! same directory, `fdatasync`, `rename` over the old one (see [`save`] for
//! why no directory fsync follows each rename). A reader (the next attempt)
//! therefore sees the previous checkpoint or the new one, never half of
//! one, even if the host loses power in between.
//!
//! A checkpoint belongs to one run id, ref and tier; a different one is
//! ignored with a message (a new ref means new code: nothing it passed
//! counts).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What is on disk (`checkpoint.json`, or `checkpoint-<tier>.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub tier: Option<String>,
    /// Names of the tests that passed, in the order they passed.
    pub passed: Vec<String>,
    /// When it was written (RFC 3339, UTC).
    #[serde(default)]
    pub updated: String,
}

/// The checkpoint file of a report directory for a tier: one file per tier,
/// so the tiers of one run that share a report directory keep theirs apart.
pub fn path(report_dir: &Path, tier: Option<&str>) -> PathBuf {
    match tier {
        Some(t) => report_dir.join(format!("checkpoint-{t}.json")),
        None => report_dir.join("checkpoint.json"),
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

/// Reads a checkpoint; a missing file is `None`, a damaged one an error.
pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read checkpoint {}", path.display()))
        }
    };
    let cp = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint {} is not valid", path.display()))?;
    Ok(Some(cp))
}

/// Writes `cp` to `path` atomically: one `write` of a temporary file,
/// `fdatasync`, `rename`; a failed write (a full disk) leaves the old
/// checkpoint and no temporary file.
///
/// No fsync of the directory follows the rename, on purpose: it would be a
/// second journal commit per test, for recency only. Atomicity does not
/// depend on it: the new file's data is on disk before the rename is
/// issued, so after a crash the name holds the old checkpoint or the new
/// one, whole. Recency is ordered by the journal: the rename is metadata in
/// the running transaction, and the journal commits transactions in order,
/// so the next checkpoint's `fdatasync` (which must commit its own new
/// inode) makes every earlier rename durable with it. What a crash can lose
/// is the newest rename alone: a rerun of the tests that had just passed,
/// which a SIGKILL of the runner costs anyway (see [`Writer`]). The last
/// checkpoint of a suite has no successor of its own, but the reports the
/// runner writes next into the same directory are fsynced
/// (`rundir::write_atomic`), and that commit carries the rename; a
/// directory fsync at the flush would only put a second commit on the path
/// from a cancel to the teardown.
pub fn save(path: &Path, cp: &Checkpoint) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(cp).context("failed to encode the checkpoint")?;
    text.push(b'\n');
    crate::rundir::replace(path, &text, crate::rundir::Durability::Data)
}

/// The least time between two checkpoint writes (see [`Writer`]).
const WRITE_GAP: Duration = Duration::from_millis(50);

enum Msg {
    Save(Checkpoint),
    Flush(mpsc::Sender<()>),
}

/// Writes checkpoints on a thread of its own, so that the fsyncs (a few
/// milliseconds each on a loaded CI disk, many times the cost of starting a
/// test) are off the path from one test to the next. Saves are written in
/// order; when several queue up, only the newest is written (it holds
/// everything the older ones did), and writes are at least [`WRITE_GAP`]
/// apart: a suite of quick tests would otherwise write (and allocate a new
/// inode for) a checkpoint per test, slowing the disk for the tests' own
/// output files. [`Writer::flush`] returns once everything sent before it
/// is on disk. Losing the runner (SIGKILL) before a write lands costs at
/// most a rerun of the tests that passed in the last [`WRITE_GAP`] and a
/// write; the file on disk is always one whole checkpoint.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(path: PathBuf) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let mut last_write: Option<Instant> = None;
                while let Ok(first) = rx.recv() {
                    let mut newest = None;
                    let mut acks = Vec::new();
                    let take = |m: Msg, newest: &mut Option<Checkpoint>, acks: &mut Vec<_>| match m
                    {
                        Msg::Save(cp) => *newest = Some(cp),
                        Msg::Flush(ack) => acks.push(ack),
                    };
                    take(first, &mut newest, &mut acks);
                    while let Ok(m) = rx.try_recv() {
                        take(m, &mut newest, &mut acks);
                    }
                    // Batching: a save that comes within WRITE_GAP of the
                    // last write waits out the gap and takes every save
                    // sent meanwhile; a flush (or the end) ends the wait.
                    if let Some(last) = last_write.filter(|_| acks.is_empty()) {
                        let until = last + WRITE_GAP;
                        while acks.is_empty() {
                            let now = Instant::now();
                            if now >= until {
                                break;
                            }
                            match rx.recv_timeout(until - now) {
                                Ok(m) => take(m, &mut newest, &mut acks),
                                Err(_) => break,
                            }
                        }
                    }
                    if let Some(cp) = newest {
                        // Said once per file (a full disk fails every
                        // save after the first); the tests go on, only a
                        // later --resume loses.
                        last_write = Some(Instant::now());
                        if let Err(e) = save(&path, &cp) {
                            crate::log::write_failed(
                                &format!("the checkpoint {}", path.display()),
                                &e,
                            );
                        }
                    }
                    for ack in acks {
                        let _ = ack.send(());
                    }
                }
            })
            .context("failed to start the checkpoint writer")?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `cp` to be written.
    pub(crate) fn save(&self, cp: &Checkpoint) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Save(cp.clone()));
        }
    }

    /// Waits until every checkpoint queued so far is written (durable with
    /// the next journal commit: see [`save`]).
    pub(crate) fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (ack, done) = mpsc::channel();
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv();
            }
        }
    }
}

impl Drop for Writer {
    /// Writes what is queued, then stops the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
