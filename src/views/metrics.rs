//! Metrics (SPEC section 7): with `CCCI_METRICS_FILE` set, every run and
//! every janitor sweep rewrites a Prometheus text-format file for
//! node_exporter's textfile collector. Label cardinality is bounded by the
//! host's recipes: the only labels are `recipe` and `verdict`, never a run
//! id or an app domain.
//!
//! Counters must only grow, but run records are pruned after their
//! retention: so the counts live in a tally (`metrics.json` in the state
//! directory), seeded from the records the first time and then advanced by
//! one run or one sweep at a time under an exclusive `flock` on
//! `metrics.lock` (two runs ending together would otherwise lose one's
//! increment). The file itself is written atomically (a temporary file in
//! the same directory, then rename), so the collector never reads half of
//! it; the temporary name does not end in `.prom`, which the collector
//! ignores.
//!
//! [`render`] is pure; [`after_run`] and [`after_sweep`] are the two calls
//! the run and the janitor make, and never change an exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Env;
use crate::exit::Failure;
use crate::log::parse_timestamp;
use crate::rundir::RunRecord;
use crate::say;
use crate::verdict::Verdict;
use crate::views::Outputs;

/// The variable naming the metrics file.
pub const FILE_VAR: &str = "CCCI_METRICS_FILE";

/// The file CCCI_METRICS_FILE names (None: unset or empty). It must be an
/// absolute path ending in `.prom` (the only files the textfile collector
/// reads) in an existing directory, and not a directory itself; anything
/// else is exit 2 naming the variable.
pub fn file_from_env(env: &Env) -> Result<Option<PathBuf>> {
    let Some(v) = env.get(FILE_VAR).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(v);
    let bad = |rule: &str| Err(Failure::usage(format!("invalid {FILE_VAR} {v:?}: {rule}")));
    if !path.is_absolute() {
        return bad("must be an absolute path");
    }
    if path.is_dir() {
        return bad("is a directory; name a file ending in .prom inside it");
    }
    if path.extension().is_none_or(|e| e != "prom") {
        return bad("must end in .prom (node_exporter's textfile collector reads only those)");
    }
    match path.parent() {
        Some(d) if d.is_dir() => Ok(Some(path)),
        _ => bad("its directory does not exist"),
    }
}

/// What a recipe's last run left.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    /// Unix seconds when it finished.
    pub finished: f64,
    pub duration_secs: f64,
    /// None: the record had no verdict (kept as `unknown`, the label).
    #[serde(with = "verdict_label")]
    pub verdict: Option<Verdict>,
}

/// The `verdict` label of a run: its verdict's word, `unknown` without one.
fn label_of(verdict: Option<Verdict>) -> &'static str {
    verdict.map_or(verdict_label::UNKNOWN, Verdict::as_str)
}

/// A verdict in the tally as its label: the word, or `unknown` for none.
mod verdict_label {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::verdict::Verdict;

    pub(super) const UNKNOWN: &str = "unknown";

    pub(super) fn serialize<S: Serializer>(v: &Option<Verdict>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::label_of(*v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Verdict>, D::Error> {
        let text = String::deserialize(d)?;
        if text == UNKNOWN {
            return Ok(None);
        }
        Verdict::parse(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("unknown verdict {text:?}")))
    }
}

/// The persistent counts behind the counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    /// recipe → verdict label → finished runs (keyed by the label, not a
    /// [`Verdict`]: a run without one counts as `unknown`, and the file
    /// lists the labels in their words' order).
    #[serde(default)]
    pub runs: BTreeMap<String, BTreeMap<String, u64>>,
    #[serde(default)]
    pub last: BTreeMap<String, LastRun>,
    /// recipe → (lock waits counted, their sum in seconds).
    #[serde(default)]
    pub lock_waits: BTreeMap<String, (u64, f64)>,
    #[serde(default)]
    pub janitor_sweeps: u64,
    #[serde(default)]
    pub janitor_reaped: u64,
    #[serde(default)]
    pub janitor_failed: u64,
    /// Unix seconds of the last sweep (0: none yet).
    #[serde(default)]
    pub janitor_last_sweep: f64,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Tally {
    /// Counts one finished run (a record without `finished` is not counted).
    pub fn add_run(&mut self, r: &RunRecord) {
        let Some(finished) = r.finished.as_deref().and_then(parse_timestamp) else {
            return;
        };
        *self
            .runs
            .entry(r.recipe.clone())
            .or_default()
            .entry(label_of(r.verdict).to_string())
            .or_default() += 1;
        let started = parse_timestamp(&r.started).unwrap_or(finished);
        let newer = self
            .last
            .get(&r.recipe)
            .is_none_or(|l| l.finished <= unix(finished));
        if newer {
            self.last.insert(
                r.recipe.clone(),
                LastRun {
                    finished: unix(finished),
                    duration_secs: finished
                        .duration_since(started)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    verdict: r.verdict,
                },
            );
        }
        if let Some(ms) = r.lock.as_ref().and_then(|l| l.wait_ms) {
            let w = self.lock_waits.entry(r.recipe.clone()).or_default();
            w.0 += 1;
            w.1 += ms as f64 / 1000.0;
        }
    }

    /// The first tally of a host: every finished record it still has.
    pub fn seed(records: &[RunRecord]) -> Tally {
        let mut t = Tally::default();
        for r in records {
            t.add_run(r);
        }
        t
    }

    pub fn add_sweep(&mut self, reaped: usize, failed: usize, at: SystemTime) {
        self.janitor_sweeps += 1;
        self.janitor_reaped += reaped as u64;
        self.janitor_failed += failed as u64;
        self.janitor_last_sweep = unix(at);
    }
}

/// The app locks held now (from the kernel), and the age of the oldest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeldLocks {
    pub held: usize,
    pub oldest_age_secs: u64,
}

/// A label value as the text format wants it (`\`, `"` and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value: Go's float formatting rules are what Prometheus parses;
/// Rust's `{}` of a finite f64 is a subset of it.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

/// The metrics file (pure).
pub fn render(t: &Tally, locks: HeldLocks) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "ccci_runs_total",
        "counter",
        "Finished cc-ci-run runs by recipe and verdict.",
    );
    for (recipe, verdicts) in &t.runs {
        for (verdict, n) in verdicts {
            let _ = writeln!(
                o,
                "ccci_runs_total{{recipe=\"{}\",verdict=\"{}\"}} {n}",
                label(recipe),
                label(verdict)
            );
        }
    }
    family(
        &mut o,
        "ccci_last_run_timestamp_seconds",
        "gauge",
        "When the recipe's last run finished (Unix time).",
    );
    for (recipe, l) in &t.last {
        let _ = writeln!(
            o,
            "ccci_last_run_timestamp_seconds{{recipe=\"{}\"}} {}",
            label(recipe),
            num(l.finished)
        );
    }
    family(
        &mut o,
        "ccci_last_run_duration_seconds",
        "gauge",
        "How long the recipe's last run took, start to finish.",
    );
    for (recipe, l) in &t.last {
        let _ = writeln!(
            o,
            "ccci_last_run_duration_seconds{{recipe=\"{}\"}} {}",
            label(recipe),
            num(l.duration_secs)
        );
    }
    family(
        &mut o,
        "ccci_last_run_passed",
        "gauge",
        "1 when the recipe's last run passed, 0 otherwise.",
    );
    for (recipe, l) in &t.last {
        let _ = writeln!(
            o,
            "ccci_last_run_passed{{recipe=\"{}\"}} {}",
            label(recipe),
            u8::from(l.verdict == Some(Verdict::Passed))
        );
    }
    family(
        &mut o,
        "ccci_lock_wait_seconds",
        "summary",
        "Time runs waited for their app-domain lock.",
    );
    for (recipe, (n, sum)) in &t.lock_waits {
        let r = label(recipe);
        let _ = writeln!(
            o,
            "ccci_lock_wait_seconds_sum{{recipe=\"{r}\"}} {}",
            num(*sum)
        );
        let _ = writeln!(o, "ccci_lock_wait_seconds_count{{recipe=\"{r}\"}} {n}");
    }
    family(
        &mut o,
        "ccci_app_locks_held",
        "gauge",
        "App-domain locks held now (flock backend, from the kernel).",
    );
    let _ = writeln!(o, "ccci_app_locks_held {}", locks.held);
    family(
        &mut o,
        "ccci_app_lock_oldest_age_seconds",
        "gauge",
        "Age of the oldest held app-domain lock (0 when none is held).",
    );
    let _ = writeln!(
        o,
        "ccci_app_lock_oldest_age_seconds {}",
        locks.oldest_age_secs
    );
    family(
        &mut o,
        "ccci_janitor_sweeps_total",
        "counter",
        "Janitor sweeps completed.",
    );
    let _ = writeln!(o, "ccci_janitor_sweeps_total {}", t.janitor_sweeps);
    family(
        &mut o,
        "ccci_janitor_reaped_total",
        "counter",
        "Orphaned apps the janitor tore down.",
    );
    let _ = writeln!(o, "ccci_janitor_reaped_total {}", t.janitor_reaped);
    family(
        &mut o,
        "ccci_janitor_reap_failures_total",
        "counter",
        "Orphaned apps whose teardown by the janitor failed.",
    );
    let _ = writeln!(o, "ccci_janitor_reap_failures_total {}", t.janitor_failed);
    family(
        &mut o,
        "ccci_janitor_last_sweep_timestamp_seconds",
        "gauge",
        "When the janitor last completed a sweep (Unix time; 0: never).",
    );
    let _ = writeln!(
        o,
        "ccci_janitor_last_sweep_timestamp_seconds {}",
        num(t.janitor_last_sweep)
    );
    o
}

/// Held app locks, from the kernel's view of the lock files.
fn held_locks(state_dir: &Path) -> HeldLocks {
    let Ok(reports) = crate::lock::report::collect(state_dir, Duration::MAX) else {
        return HeldLocks::default();
    };
    let held: Vec<u64> = reports
        .iter()
        .filter(|r| r.kind == crate::lock::Kind::App && r.state == crate::lock::report::State::Held)
        .map(|r| r.age_secs.unwrap_or(0))
        .collect();
    HeldLocks {
        held: held.len(),
        oldest_age_secs: held.iter().copied().max().unwrap_or(0),
    }
}

/// Under the tally's lock: load (or seed from the records), advance with
/// `step` (told whether the tally was seeded just now), save, and rewrite
/// the metrics file.
fn update(state_dir: &Path, out: &Path, step: impl FnOnce(&mut Tally, bool)) -> Result<()> {
    let lock_path = state_dir.join("metrics.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&lock_path)
        .with_context(|| format!("failed to open {}", lock_path.display()))?;
    // Held until `_held` drops at the end: tally read, step, tally write and
    // the file's rewrite are one critical section.
    let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;
    let tally_path = state_dir.join("metrics.json");
    let (mut tally, seeded) = match std::fs::read(&tally_path) {
        Ok(bytes) => (
            serde_json::from_slice(&bytes)
                .with_context(|| format!("failed to parse {}", tally_path.display()))?,
            false,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (Tally::seed(&crate::rundir::load_records(state_dir)?), true)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read {}", tally_path.display()))
        }
    };
    step(&mut tally, seeded);
    let text = serde_json::to_vec_pretty(&tally).context("failed to encode the metrics tally")?;
    crate::rundir::write_output(&tally_path, &text)?;
    crate::rundir::write_output(out, render(&tally, held_locks(state_dir)).as_bytes())
}

/// After a run (its record final): counts it, rewrites the metrics file,
/// and refreshes the timeline page, where `outputs` name them. Failures
/// are said and never change the run's exit code.
pub(crate) fn after_run(state_dir: &Path, record: &RunRecord, outputs: &Outputs) {
    if let Some(out) = &outputs.metrics {
        // A tally seeded from the records just now already counts this
        // run (its record was final before this call): not twice.
        if let Err(e) = update(state_dir, out, |t, seeded| {
            if !seeded {
                t.add_run(record);
            }
        }) {
            say!("warning: could not write the metrics file: {e:#}");
        }
    }
    if let Some(out) = &outputs.timeline {
        if let Err(e) = crate::views::timeline::refresh(state_dir, out) {
            say!("warning: could not refresh the timeline page: {e:#}");
        }
    }
}

/// After a janitor sweep (not a dry run): counts its reaps and failures and
/// rewrites the metrics file, where `outputs` name it. Failures are said,
/// never raised.
pub(crate) fn after_sweep(
    state_dir: &Path,
    outputs: &Outputs,
    reaped: usize,
    failed: usize,
    dry_run: bool,
) {
    if dry_run {
        return;
    }
    if let Some(out) = &outputs.metrics {
        let now = SystemTime::now();
        if let Err(e) = update(state_dir, out, |t, _| t.add_sweep(reaped, failed, now)) {
            say!("warning: could not write the metrics file: {e:#}");
        }
    }
}
