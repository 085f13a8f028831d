//! `cc-ci-run history`: finished runs from their records, newest first,
//! filtered by domain, recipe, verdict and age; which run held which app
//! domain when, and who waited behind whom, from the records' lock timings.
//! The selection and the table are pure; only [`command`] reads the state
//! directory (through `rundir::scan`, which never writes or locks).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::HistoryArgs;
use crate::exit;
use crate::log::parse_timestamp;
use crate::phase::Phase;
use crate::rundir::RunRecord;
use crate::units::human;
use crate::verdict::Verdict;

/// What to list (validated).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub domain: Option<String>,
    pub recipe: Option<String>,
    pub verdict: Option<Verdict>,
    /// Only runs started at or after this time.
    pub since: Option<SystemTime>,
}

impl Filter {
    /// Validates the flags (exit 2 naming the field); `now` anchors `--since`.
    pub fn new(args: &HistoryArgs, now: SystemTime) -> Result<Filter> {
        if let Some(d) = &args.domain {
            crate::config::names::check_domain("--domain", d)?;
        }
        if let Some(r) = &args.recipe {
            crate::config::names::check_label("--recipe", r)?;
        }
        Ok(Filter {
            domain: args.domain.clone(),
            recipe: args.recipe.clone(),
            verdict: args.verdict,
            since: args
                .since
                .map(|d| now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)),
        })
    }

    fn keeps(&self, r: &RunRecord) -> bool {
        r.finished.is_some()
            && self.domain.as_ref().is_none_or(|d| *d == r.domain)
            && self.recipe.as_ref().is_none_or(|x| *x == r.recipe)
            && self.verdict.is_none_or(|v| r.verdict == Some(v))
            && self
                .since
                .is_none_or(|s| parse_timestamp(&r.started).is_some_and(|started| started >= s))
    }
}

/// One line of `history --json` (an array of these on stdout).
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub run_id: String,
    pub recipe: String,
    pub domain: String,
    pub verdict: Option<Verdict>,
    pub failed_phase: Option<Phase>,
    pub exit_code: Option<i32>,
    pub started: String,
    pub finished: Option<String>,
    pub duration_ms: Option<u64>,
    /// From the lock timings: asked for, got, gave back, and the wait.
    pub lock_requested: Option<String>,
    pub lock_acquired: Option<String>,
    pub lock_released: Option<String>,
    pub lock_wait_ms: Option<u64>,
    /// The run that held this domain's lock when this one asked for it
    /// (whom it waited behind), if any of the records says so.
    pub waited_for: Option<String>,
}

fn ms_between(a: &str, b: &str) -> Option<u64> {
    let (a, b) = (parse_timestamp(a)?, parse_timestamp(b)?);
    Some(b.duration_since(a).unwrap_or_default().as_millis() as u64)
}

/// The entries of `records` that `filter` keeps, newest first (pure).
/// `waited_for` is looked up among all records, filtered or not.
pub fn select(records: &[RunRecord], filter: &Filter) -> Vec<Entry> {
    // Per domain, (acquired, released, run) of every run that held its
    // lock, by acquisition time: the holder a request waited behind is
    // found by a binary search, not a scan of every record (10,000 records
    // with waits would be 10^8 comparisons).
    let now = SystemTime::now();
    let mut holds: HashMap<&str, Vec<(SystemTime, SystemTime, &str)>> = HashMap::new();
    for r in records {
        let Some(l) = r.lock.as_ref() else { continue };
        let Some(acquired) = l.acquired.as_deref().and_then(parse_timestamp) else {
            continue;
        };
        let released = l
            .released
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(now);
        holds
            .entry(l.domain.as_str())
            .or_default()
            .push((acquired, released, r.run_id.as_str()));
    }
    for h in holds.values_mut() {
        h.sort_unstable();
    }
    let mut out: Vec<Entry> = records
        .iter()
        .filter(|r| filter.keeps(r))
        .map(|r| {
            let lock = r.lock.as_ref();
            let requested = lock.and_then(|l| parse_timestamp(&l.requested));
            let waited_for = match (lock, requested) {
                (Some(l), Some(req)) if l.wait_ms.unwrap_or(0) > 0 => holds
                    .get(l.domain.as_str())
                    .and_then(|h| holder_at(h, req, &r.run_id))
                    .map(str::to_string),
                _ => None,
            };
            Entry {
                run_id: r.run_id.clone(),
                recipe: r.recipe.clone(),
                domain: r.domain.clone(),
                verdict: r.verdict,
                failed_phase: r.failed_phase,
                exit_code: r.exit_code,
                started: r.started.clone(),
                finished: r.finished.clone(),
                duration_ms: r
                    .finished
                    .as_deref()
                    .and_then(|f| ms_between(&r.started, f)),
                lock_requested: lock.map(|l| l.requested.clone()),
                lock_acquired: lock.and_then(|l| l.acquired.clone()),
                lock_released: lock.and_then(|l| l.released.clone()),
                lock_wait_ms: lock.and_then(|l| l.wait_ms),
                waited_for,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.started
            .cmp(&a.started)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    out
}

/// How many holds before a request `holder_at` looks at.
const HOLDER_WALK: usize = 16;

/// The run whose hold of a domain covers `at` (acquired at or before it,
/// released after it), other than `me`; `holds` sorted by acquisition.
/// Holds of one domain do not overlap, so the latest one acquired by `at`
/// is the answer; the short walk back only matters for records that
/// disagree (a clock stepped between hosts), and is bounded so a run whose
/// holder's record is gone costs a few comparisons, not the whole history.
fn holder_at<'a>(
    holds: &[(SystemTime, SystemTime, &'a str)],
    at: SystemTime,
    me: &str,
) -> Option<&'a str> {
    let upto = holds.partition_point(|(acquired, _, _)| *acquired <= at);
    holds[..upto]
        .iter()
        .rev()
        .take(HOLDER_WALK)
        .find(|(_, released, id)| at < *released && *id != me)
        .map(|h| h.2)
}

/// The table `history` prints (pure).
pub fn table(entries: &[Entry]) -> String {
    let header = [
        "RUN",
        "RECIPE",
        "DOMAIN",
        "VERDICT",
        "FAILED PHASE",
        "STARTED",
        "DURATION",
        "LOCK WAIT",
        "WAITED FOR",
    ];
    use crate::table::dash;
    let dur = |ms: Option<u64>| dash(ms.map(|m| human(Duration::from_millis(m))));
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for e in entries {
        rows.push(vec![
            e.run_id.clone(),
            e.recipe.clone(),
            e.domain.clone(),
            dash(e.verdict.map(|v| v.to_string())),
            dash(e.failed_phase.map(|p| p.to_string())),
            e.started.clone(),
            dur(e.duration_ms),
            dur(e.lock_wait_ms),
            dash(e.waited_for.clone()),
        ]);
    }
    crate::table::render(&rows)
}

/// `cc-ci-run history`.
pub(crate) fn command(state_dir: &Path, args: &HistoryArgs) -> Result<i32> {
    let filter = Filter::new(args, SystemTime::now())?;
    let records = crate::rundir::load_records(state_dir)?;
    let entries = select(&records, &filter);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &entries).context("failed to write the history")?;
        writeln!(out).context("failed to write the history")?;
    } else {
        out.write_all(table(&entries).as_bytes())
            .context("failed to write the history")?;
    }
    out.flush().context("failed to write the history")?;
    Ok(exit::OK)
}
