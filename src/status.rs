//! `cc-ci-run status`: the runs known on this host, from their run records.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::rundir::{self, RunRecord};

/// One line of `status --json` (a JSON array of these on stdout).
#[derive(Debug, Serialize)]
pub struct RunStatus {
    /// `running`, `finished`, or `dead` (no finish recorded and its harness
    /// is gone: the janitor tidies it).
    pub state: &'static str,
    /// `passed` (0), `failed` (any other code), or null while unfinished.
    pub verdict: Option<&'static str>,
    #[serde(flatten)]
    pub record: RunRecord,
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The state of one record (pure but for the liveness probe).
pub fn state_of(r: &RunRecord) -> &'static str {
    if r.finished.is_some() {
        "finished"
    } else if alive(r.pid) {
        "running"
    } else {
        "dead"
    }
}

pub fn status(state_dir: &Path, json: bool) -> Result<i32> {
    let runs: Vec<RunStatus> = rundir::all_records(state_dir)
        .into_iter()
        .map(|(_, record)| RunStatus {
            state: state_of(&record),
            verdict: record
                .exit_code
                .map(|c| if c == 0 { "passed" } else { "failed" }),
            record,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &runs).context("failed to write status")?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<20} {:<9} {:<5} {:<18} {:<32} {:<25} FINISHED",
        "RUN", "STATE", "EXIT", "PHASE", "DOMAIN", "STARTED"
    )?;
    for r in &runs {
        writeln!(
            out,
            "{:<20} {:<9} {:<5} {:<18} {:<32} {:<25} {}",
            r.record.run_id,
            r.state,
            r.record
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.record.phase,
            r.record.domain,
            r.record.started,
            r.record.finished.as_deref().unwrap_or("-")
        )?;
    }
    Ok(0)
}
