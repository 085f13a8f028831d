//! `cc-ci-run status` and `cc-ci-run logs`: what an operator reads the
//! morning after, from the state directory alone (Drone deleted the
//! workspace and dropped a cancelled step's output).
//!
//! Liveness comes from each run's run lock as the kernel reports it
//! (`/proc/locks`, confirmed through the holders' descriptors), never from
//! a pid alone: a dead run's pid may belong to an unrelated process by now,
//! and a zombie holds nothing. Nothing here takes a lock or writes a file.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit;
use crate::lock::flock::holder::{self, FileId, Holder};
use crate::lock::{self, Kind};
use crate::rundir::RunRecord;
use crate::sys::wait::Backoff;

/// One line of `status --json` (a JSON array of these on stdout).
#[derive(Debug, Serialize)]
pub(crate) struct RunStatus {
    /// The run directory's name (the run id).
    pub id: String,
    /// `running` (its run lock is held), `finished`, `dead` (no finish
    /// recorded and its run lock is free: the janitor marks it abandoned),
    /// or `unreadable` (its run.json does not parse: kept for an operator).
    pub state: &'static str,
    /// Why the record is unreadable (only for `unreadable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub record: Option<RunRecord>,
}

/// The state of a record given whether its run lock is held (pure).
pub(crate) fn state_of(r: &RunRecord, lock_held: bool) -> &'static str {
    if lock_held && r.finished.is_none() {
        "running"
    } else if r.finished.is_some() {
        "finished"
    } else {
        "dead"
    }
}

/// Whether each run's run lock is held now (one read of `/proc/locks`).
fn run_locks_held(state_dir: &Path, ids: &[&str]) -> Vec<bool> {
    let metas: Vec<Option<FileId>> = ids
        .iter()
        .map(|id| {
            std::fs::symlink_metadata(lock::flock::lock_path(state_dir, Kind::Run, id))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| FileId::of(&m))
        })
        .collect();
    let files: Vec<FileId> = metas.iter().flatten().copied().collect();
    let mut views = holder::inspect(&files).into_iter();
    metas
        .iter()
        .map(|m| match m {
            Some(_) => views
                .next()
                .is_some_and(|v| matches!(v.holder, Holder::Held { .. })),
            None => false,
        })
        .collect()
}

/// The runs known on this host, oldest first.
pub(crate) fn collect(state_dir: &Path) -> Result<Vec<RunStatus>> {
    let scanned = crate::rundir::scan(state_dir)?;
    let ids: Vec<&str> = scanned.iter().map(|(id, _)| id.as_str()).collect();
    let held = run_locks_held(state_dir, &ids);
    Ok(scanned
        .into_iter()
        .zip(held)
        .map(|((id, rec), held)| match rec {
            Ok(r) => RunStatus {
                id,
                state: state_of(&r, held),
                error: None,
                record: Some(r),
            },
            Err(e) => RunStatus {
                id,
                state: if held { "running" } else { "unreadable" },
                error: Some(e),
                record: None,
            },
        })
        .collect())
}

/// The table `status` prints (pure).
pub(crate) fn table(runs: &[RunStatus]) -> String {
    let header = [
        "RUN",
        "STATE",
        "VERDICT",
        "EXIT",
        "FAILED PHASE",
        "PHASE",
        "DOMAIN",
        "STARTED",
        "FINISHED",
    ];
    use crate::table::dash;
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in runs {
        let rec = r.record.as_ref();
        rows.push(vec![
            r.id.clone(),
            r.state.to_string(),
            dash(rec.and_then(|x| x.verdict).map(|v| v.to_string())),
            dash(rec.and_then(|x| x.exit_code).map(|c| c.to_string())),
            dash(rec.and_then(|x| x.failed_phase).map(|p| p.to_string())),
            dash(rec.map(|x| x.phase.to_string())),
            dash(rec.map(|x| x.domain.clone())),
            dash(rec.map(|x| x.started.clone())),
            match (rec, &r.error) {
                (_, Some(e)) => e.clone(),
                (Some(x), None) => dash(x.finished.clone()),
                (None, None) => "-".into(),
            },
        ]);
    }
    crate::table::render(&rows)
}

/// `cc-ci-run status [--json] [--watch]`.
pub(crate) fn status(state_dir: &Path, json: bool, watch: bool) -> Result<i32> {
    loop {
        let runs = collect(state_dir)?;
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &runs).context("failed to write status")?;
            writeln!(out).context("failed to write status")?;
        } else {
            if watch {
                // Clear the screen and home the cursor: a redraw, as watch(1).
                write!(out, "\x1b[H\x1b[2J").context("failed to write status")?;
            }
            out.write_all(table(&runs).as_bytes())
                .context("failed to write status")?;
        }
        out.flush().context("failed to write status")?;
        if !watch {
            return Ok(exit::OK);
        }
        drop(out);
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `cc-ci-run logs RUN [--follow]`: the run's log from the state directory
/// (kept after the run tree is gone). `--follow` streams a live run's log
/// until the run finishes and exits with the run's exit code.
pub(crate) fn logs(state_dir: &Path, id: &str, follow: bool) -> Result<i32> {
    use std::io::Read;
    let dir = crate::rundir::find_run(state_dir, id, "run.log", "log")?;
    let path = dir.join("run.log");
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    // Copies what was appended since the last call (a regular file's read
    // position stays at the old end; later appends are read from there).
    let mut drain = |file: &mut std::fs::File, out: &mut std::io::StdoutLock| -> Result<u64> {
        use std::io::Seek;
        let mut copied = 0u64;
        // Shorter than what was read: the run dropped old lines to keep
        // within --log-limit (they are gone); go on from its new end.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if file.stream_position().is_ok_and(|at| at > len) {
            file.seek(std::io::SeekFrom::Start(len))
                .with_context(|| format!("failed to read {}", path.display()))?;
            out.write_all(
                b"... (the run dropped older lines of its log here to keep within --log-limit)\n",
            )
            .context("failed to write the log")?;
        }
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("failed to read {}", path.display()))?;
            if n == 0 {
                break;
            }
            copied += n as u64;
            out.write_all(&buf[..n])
                .context("failed to write the log")?;
        }
        out.flush().context("failed to write the log")?;
        Ok(copied)
    };
    drain(&mut file, &mut out)?;
    if !follow {
        return Ok(exit::OK);
    }
    let record = dir.join("run.json");
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let mut last_growth = Instant::now();
    loop {
        let rec = RunRecord::load(&record).ok();
        let held = run_locks_held(state_dir, &[id])
            .first()
            .copied()
            .unwrap_or(false);
        let finished = rec.as_ref().and_then(|r| r.exit_code);
        if drain(&mut file, &mut out)? > 0 {
            last_growth = Instant::now();
            backoff.reset();
        }
        match finished {
            // The record says finished: the log's last lines are written
            // before it (and the janitor pass after it is read too).
            Some(code) if !held => {
                drain(&mut file, &mut out)?;
                return Ok(code);
            }
            None if !held && last_growth.elapsed() > Duration::from_secs(1) => {
                drain(&mut file, &mut out)?;
                crate::say!(
                    "run {id} is not running and recorded no exit code: it died (see `status`)"
                );
                return Ok(exit::INFRA);
            }
            _ => {}
        }
        std::thread::sleep(backoff.delay());
        backoff.double();
    }
}
